//! `ttp-worker`: parse the command line, then hand over to the library.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::process::ExitCode;

use clap::error::ErrorKind;

use ttp_worker::cli::{Cli, Command, EngineArgs, StoreArgs, TagArgs, TagsArgs};
use ttp_worker::config::{self, Config};
use ttp_worker::store::{TagsQuery, run_stats, run_tags};
use ttp_worker::tagging::EngineOptions;
use ttp_worker::tagging::commands::{run_check_rules, run_tag};
use ttp_worker::{daemon, logging};

/// Exit status for a bad flag or setting, as for any command-line usage error.
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse_args() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    logging::init();
    match cli.command {
        None => run_daemon(&cli),
        Some(Command::Tag(args)) => tag(&args),
        Some(Command::CheckRules(args)) => check_rules(&args),
        Some(Command::Tags(args)) => tags(&args),
        Some(Command::Stats(args)) => stats(&args),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn run_daemon(cli: &Cli) -> ExitCode {
    let config = match Config::resolve(&cli.run, env) {
        Ok(config) => config,
        Err(err) => return fail(USAGE_ERROR, err),
    };
    match daemon::run(&config) {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) if err.is_usage() => fail(USAGE_ERROR, err),
        Err(err) => fail(1, err),
    }
}

fn engine_options(args: &EngineArgs) -> Result<EngineOptions, ExitCode> {
    config::resolve_engine(args, &env).map_err(|err| fail(USAGE_ERROR, err))
}

fn tag(args: &TagArgs) -> ExitCode {
    let options = match engine_options(&args.engine) {
        Ok(options) => options,
        Err(code) => return code,
    };
    let input: Box<dyn BufRead> = match args.input.as_deref() {
        None => Box::new(io::stdin().lock()),
        Some(path) if path == Path::new("-") => Box::new(io::stdin().lock()),
        Some(path) => match File::open(path) {
            Ok(file) => Box::new(BufReader::new(file)),
            Err(err) => {
                return fail(
                    USAGE_ERROR,
                    format!("cannot read {}: {err}", path.display()),
                );
            }
        },
    };
    let stdout = io::stdout().lock();
    match run_tag(&options, input, io::BufWriter::new(stdout), io::stderr()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => fail(1, err),
    }
}

fn check_rules(args: &EngineArgs) -> ExitCode {
    match engine_options(args) {
        Ok(options) => {
            let status = run_check_rules(&options, io::stdout().lock(), io::stderr());
            ExitCode::from(u8::try_from(status).unwrap_or(1))
        }
        Err(code) => code,
    }
}

fn db_path(args: &StoreArgs) -> Result<std::path::PathBuf, ExitCode> {
    config::resolve_db(&args.db, &env).map_err(|err| fail(USAGE_ERROR, err))
}

fn tags(args: &TagsArgs) -> ExitCode {
    let db = match db_path(&args.store) {
        Ok(db) => db,
        Err(code) => return code,
    };
    let query = TagsQuery {
        attacker: args.attacker.clone(),
        identity: args.identity.clone(),
        session: args.session.clone(),
        techniques: args.technique.clone(),
        since: args.since,
        limit: args.limit,
    };
    match run_tags(
        &db,
        &query,
        args.format,
        io::BufWriter::new(io::stdout().lock()),
    ) {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => fail(1, err),
    }
}

fn stats(args: &StoreArgs) -> ExitCode {
    let db = match db_path(args) {
        Ok(db) => db,
        Err(code) => return code,
    };
    match run_stats(&db, io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(1, err),
    }
}

fn fail(status: u8, err: impl std::fmt::Display) -> ExitCode {
    eprintln!("ttp-worker: {err}");
    ExitCode::from(status)
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
