//! `ttp-worker`: parse the command line, then hand over to the daemon or to one of
//! `commands`, and turn what it returns into an exit status.

use std::io;
use std::process::ExitCode;

use clap::error::ErrorKind;

use ttp_worker::cli::{
    BridgeArgs, Cli, Command, EngineArgs, PublishArgs, StoreArgs, TagArgs, TagsArgs,
};
use ttp_worker::commands::{self, Failure};
use ttp_worker::config::{self, Config, ReadSource};
use ttp_worker::tagging::EngineOptions;
use ttp_worker::{bridge, daemon, logging};

/// Exit status for a bad flag or setting, as for any command-line usage error.
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse_args() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    // A daemon's log is its account of itself; a command's output is its answer, and its log
    // only the problems met on the way.
    logging::init(match cli.command {
        None | Some(Command::Bridge(_)) => log::LevelFilter::Info,
        Some(_) => log::LevelFilter::Warn,
    });
    match cli.command {
        None => run_daemon(&cli),
        Some(Command::Tag(args)) => tag(&args),
        Some(Command::CheckRules(args)) => check_rules(&args),
        Some(Command::Tags(args)) => tags(&args),
        Some(Command::Stats(args)) => stats(&args),
        Some(Command::Bridge(args)) => bridge(&args),
        Some(Command::Publish(args)) => publish(&args),
    }
}

fn publish(args: &PublishArgs) -> ExitCode {
    let config = match config::resolve_publish(args, env) {
        Ok(config) => config,
        Err(err) => return fail(USAGE_ERROR, err),
    };
    let input = match commands::tag::open_input(args.input.as_deref()) {
        Ok(input) => input,
        Err(err) => return fail(USAGE_ERROR, err),
    };
    let result = commands::publish::run(&config, input, io::stderr());
    finish_with_malformed(result.map(|summary| summary.malformed))
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
        Ok(cause) if cause.is_failure() => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(err) if err.is_usage() => fail(USAGE_ERROR, err),
        Err(err) => fail(1, err),
    }
}

fn bridge(args: &BridgeArgs) -> ExitCode {
    let config = match config::resolve_bridge(args, env) {
        Ok(config) => config,
        Err(err) => return fail(USAGE_ERROR, err),
    };
    match bridge::run(&config) {
        Ok(()) => ExitCode::SUCCESS,
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
    let input = match commands::tag::open_input(args.input.as_deref()) {
        Ok(input) => input,
        Err(err) => return fail(USAGE_ERROR, err),
    };
    let out = io::BufWriter::new(io::stdout().lock());
    let listing = if args.all {
        commands::tag::Listing::All
    } else {
        commands::tag::Listing::FirstPerUuid
    };
    let result = commands::tag::run(&options, listing, input, out, io::stderr());
    finish_with_malformed(result.map(|summary| summary.malformed))
}

fn check_rules(args: &EngineArgs) -> ExitCode {
    let options = match engine_options(args) {
        Ok(options) => options,
        Err(code) => return code,
    };
    match commands::check_rules::run(&options, io::stdout().lock(), io::stderr()) {
        Ok(verdict) if verdict.passed() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        result => finish(result),
    }
}

fn db_path(args: &StoreArgs) -> Result<std::path::PathBuf, ExitCode> {
    config::resolve_db(&args.db, &env).map_err(|err| fail(USAGE_ERROR, err))
}

fn tags(args: &TagsArgs) -> ExitCode {
    let out = io::BufWriter::new(io::stdout().lock());
    if args.pending {
        // Held messages live in the worker's own store, whatever else is configured.
        let db = match db_path(&args.store) {
            Ok(db) => db,
            Err(code) => return code,
        };
        return finish(commands::tags::run_pending(
            &db,
            args.limit,
            args.format,
            out,
        ));
    }
    let query = commands::tags::query(args);
    match read_source(&args.store) {
        Ok(ReadSource::Local(db)) => finish(commands::tags::run(&db, &query, args.format, out)),
        Ok(ReadSource::Decnet(settings)) => finish(commands::tags::run_decnet(
            &settings,
            &query,
            args.format,
            out,
        )),
        Err(code) => code,
    }
}

fn stats(args: &StoreArgs) -> ExitCode {
    let out = io::stdout().lock();
    match read_source(args) {
        Ok(ReadSource::Local(db)) => finish(commands::stats::run(&db, out)),
        Ok(ReadSource::Decnet(settings)) => finish(commands::stats::run_decnet(&settings, out)),
        Err(code) => code,
    }
}

fn read_source(args: &StoreArgs) -> Result<ReadSource, ExitCode> {
    config::resolve_read_source(args, &env).map_err(|err| fail(USAGE_ERROR, err))
}

/// Success, a closed output pipe (quietly), or exit 1 with the one-line reason.
fn finish<T>(result: Result<T, impl Failure>) -> ExitCode {
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) if err.closed_pipe() => ExitCode::SUCCESS,
        Err(err) if err.unreadable_input() => fail(USAGE_ERROR, err),
        Err(err) => fail(1, err),
    }
}

/// [`finish`] for a command that read lines: one that was not an envelope (reported on its line,
/// and in the summary) is a problem found, so the status is 1 although every other line went
/// through.
fn finish_with_malformed(result: Result<u64, impl Failure>) -> ExitCode {
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(err) => finish(Err::<(), _>(err)),
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
