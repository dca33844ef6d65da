//! The `tideway-operator` binary: `crd` prints the CustomResourceDefinitions,
//! `run` runs the controllers (see `tideway_operator::run`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tideway_operator::crd::{render_all_crds_yaml, render_crd_files};
use tideway_operator::settings::RunArgs;

/// Kubernetes operator for Tideway clusters and topics.
#[derive(Parser)]
#[command(name = "tideway-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every CustomResourceDefinition as multi-document YAML, or with
    /// `--dir` write one `<name>.yaml` per CRD into each directory given.
    Crd {
        /// Write the files here instead of printing (repeatable).
        #[arg(long)]
        dir: Vec<PathBuf>,
    },
    /// Run the MessageCluster, Topic and ConsumerAutoscaler controllers.
    Run(RunArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tideway-operator: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Crd { dir } if !dir.is_empty() => {
            let files = render_crd_files()?;
            for dir in &dir {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                for (name, yaml) in &files {
                    let path = dir.join(name);
                    std::fs::write(&path, yaml)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                }
            }
            Ok(())
        }
        Command::Crd { .. } => {
            let yaml = render_all_crds_yaml()?;
            std::io::stdout()
                .lock()
                .write_all(yaml.as_bytes())
                .context("writing CRDs to stdout")?;
            Ok(())
        }
        Command::Run(args) => {
            let settings = args.validate()?;
            let filter =
                tracing_subscriber::EnvFilter::try_new(&settings.log).with_context(|| {
                    format!(
                        "--log (TIDEWAY_LOG) {:?} is not a valid filter",
                        settings.log
                    )
                })?;
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_target(true)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .init();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the tokio runtime")?
                .block_on(tideway_operator::run::run(settings))
        }
    }
}
