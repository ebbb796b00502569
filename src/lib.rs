//! ttp-worker: tags DECNET honeypot telemetry with MITRE ATT&CK techniques.
//!
//! The binary in `main.rs` is a thin shell over this library so that tests can drive every
//! part — the envelope codec, the subjects, the main loop — without a process in between.

pub mod envelope;
pub mod tagging;
pub mod topics;
