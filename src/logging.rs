//! Log set-up: `RUST_LOG` decides, `info` by default, always to stderr.
//!
//! Under systemd (`JOURNAL_STREAM` set) lines carry a `<N>` syslog priority prefix and no
//! timestamp, so journald files them at the right level and does not stamp them twice.

use std::io::Write;

use env_logger::{Builder, Env, WriteStyle};

pub fn init() {
    let mut builder = Builder::from_env(Env::default().default_filter_or("info"));
    builder.write_style(WriteStyle::Auto);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.format(|out, record| {
            writeln!(
                out,
                "<{}>{}: {}",
                syslog_priority(record.level()),
                record.target(),
                record.args()
            )
        });
    }
    // A second init (tests) is harmless; keep the first logger.
    let _ = builder.try_init();
}

fn syslog_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}
