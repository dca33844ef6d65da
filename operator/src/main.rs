//! The `tideway-operator` binary: `crd` prints the CustomResourceDefinitions,
//! `run` will run the controllers (not implemented yet).

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
    /// Run the controllers (not implemented yet).
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
            let _settings = args.validate()?;
            anyhow::bail!(
                "`run` is not implemented yet: the reconcile loop, leader election and HTTP endpoint come next"
            )
        }
    }
}
