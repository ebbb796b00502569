//! ttp-worker: tags DECNET honeypot telemetry with MITRE ATT&CK techniques.
//!
//! The binary in `main.rs` is a thin shell over this library so that tests can drive every
//! part — the envelope codec, the subjects, the main loop — without a process in between.

pub mod bridge;
pub mod bus;
pub mod channels;
pub mod cli;
pub mod commands;
pub mod config;
pub mod counters;
pub mod daemon;
pub mod decnet_db;
pub mod envelope;
pub mod logging;
pub mod memory;
pub mod redact;
pub mod store;
pub mod tagging;
pub mod topics;
pub mod units;
