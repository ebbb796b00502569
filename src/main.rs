//! `ttp-worker`: parse the command line, then hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use ttp_worker::cli::Cli;
use ttp_worker::config::Config;
use ttp_worker::{daemon, logging};

/// Exit status for a bad flag or setting, as for any command-line usage error.
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    logging::init();
    let config = match Config::resolve(&cli.run.to_flags(), |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("ttp-worker: {err}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    match daemon::run(&config) {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// `--help` and `--version` print as usual; every real error becomes one line and exit 2.
fn usage_error(err: clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        _ => {
            let rendered = err.to_string();
            let first_line = rendered.lines().next().unwrap_or("invalid command line");
            let message = first_line.strip_prefix("error: ").unwrap_or(first_line);
            eprintln!("ttp-worker: {message} (see ttp-worker --help)");
            ExitCode::from(USAGE_ERROR)
        }
    }
}
