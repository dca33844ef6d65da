//! `tideway-broker`: parses flags (and TIDEWAY_* variables), sets up
//! logging and runs the broker until SIGTERM/SIGINT.

use clap::Parser;
use tideway_broker::config::{Args, BrokerConfig};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let filter = match EnvFilter::try_new(&args.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: invalid value '{}' for '--log': {e}", args.log);
            return std::process::ExitCode::from(2);
        }
    };
    // The filter is reloadable: admin SetLogFilter changes it at runtime.
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    tideway_broker::logging::install(
        &args.log,
        Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())),
    );
    let mut config = BrokerConfig::from_args(&args);
    if let Some(path) = &args.rack_file {
        match tideway_broker::config::read_rack_file(path, tideway_broker::config::RACK_FILE_WAIT) {
            Ok(rack) => config.rack = rack,
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tideway_broker::run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
