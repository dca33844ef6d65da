//! `tideway`: a small Kafka client for people beside kcat and for the
//! consumer Deployment that the operator's autoscaler scales. Parses the
//! command line (args), sets up logging to stderr, runs one subcommand and
//! turns its outcome into an exit code: 0 done, 1 failed, 2 bad usage.
//! The Kafka protocol is librdkafka's (rdkafka crate); nothing here speaks it.

mod args;
mod client;
mod consume;
mod lag;
mod produce;
mod rate;
mod table;
mod topics;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::args::{Cli, Command};
use crate::consume::Stop;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match EnvFilter::try_new(&cli.common.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: invalid value '{}' for '--log': {e}", cli.common.log);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", format_error(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text
/// the previous message already ends with (rdkafka's errors repeat their source).
fn format_error(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

async fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match &cli.command {
        Command::Topics(args) => topics::run(&cli.common, args, &mut out).await?,
        Command::Lag(args) => lag::run(&cli.common, args, &mut out)?,
        Command::Produce(args) => {
            let summary = produce::run(&cli.common, args, &mut out)?;
            if !summary.succeeded() {
                let first = summary
                    .first_error
                    .as_deref()
                    .unwrap_or("no delivery report");
                eprintln!(
                    "error: {} of {} records were not acknowledged; first error: {first}",
                    summary.sent - summary.acked,
                    summary.sent
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Consume(args) => {
            let summary = consume::run(&cli.common, args, &mut out).await?;
            let commit = match &summary.final_commit {
                Ok(true) => "offsets committed".to_string(),
                Ok(false) => "nothing left to commit".to_string(),
                Err(e) => format!("FINAL COMMIT FAILED: {e}"),
            };
            let line = format!(
                "consumed {} records from {} as a member of group {}; {commit}",
                summary.consumed,
                args.topics.join(","),
                args.group
            );
            // With --print, stdout carries the records; the summary goes beside the logs.
            if args.print {
                eprintln!("{line}");
            } else {
                writeln!(out, "{line}")?;
            }
            let failed = match summary.stop {
                Stop::Signal(_) | Stop::CountReached => false,
                Stop::Output(e) => {
                    eprintln!("error: writing records to stdout: {e}");
                    true
                }
                Stop::Fatal(e) => {
                    eprintln!("error: the consumer failed for good: {e}");
                    true
                }
            };
            if failed || summary.final_commit.is_err() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_causes_are_shown_once() {
        let e = anyhow::Error::from(std::io::Error::other("refused"))
            .context("wrapping: refused")
            .context("fetching");
        assert_eq!(format_error(&e), "fetching: wrapping: refused");
    }
}
