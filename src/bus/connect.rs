//! Opening the NATS connection, with the guards the sync client lacks.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::bounded;

use super::error::BusError;
use super::security::{BusAuth, BusSecurity};
use crate::counters::Counters;
use crate::logging::Throttle;
use crate::redact::redact_url;
use crate::topics::WORKER_NAME;

/// What the bus needs from the configuration; `config` resolves it, typed, from the settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BusSettings {
    pub urls: Vec<String>,
    pub enabled: bool,
    pub heartbeat_interval: Duration,
    /// How long one connection attempt may take before we call the bus unavailable.
    pub connect_timeout: Duration,
    /// Consume `TOPICS` through JetStream instead of core subscriptions.
    pub durable: bool,
    pub stream: StreamConfig,
    /// Authentication and TLS; its `Debug` shows no secret.
    pub security: BusSecurity,
}

/// Durable mode's stream and consumers: used as they are when they exist, created with these
/// settings when not.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    pub name: String,
    pub max_age: Duration,
    pub max_bytes: u64,
    /// How long JetStream waits for an ack before delivering a message again.
    pub ack_wait: Duration,
}

/// The NATS client's own warnings: at most one logged per period, the rest counted.
static CLIENT_WARNINGS: Throttle = Throttle::new(Duration::from_secs(10));

/// Longest pause between two reconnect attempts after the server went away.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Connects once, bounded by `settings.connect_timeout`.
///
/// The client's `connect` has no handshake timeout: a peer that accepts TCP but never speaks
/// NATS would block it forever (docs/nats.md pitfall 1). So the attempt runs on its own thread and
/// we stop waiting at the deadline; that thread ends whenever the peer gives up.
///
/// `closing` is set by whoever closes the connection on purpose, so that the disconnect it
/// causes is not reported as a lost connection.
pub fn open(
    settings: &BusSettings,
    counters: &Arc<Counters>,
    closing: &Arc<AtomicBool>,
) -> Result<nats::Connection, BusError> {
    let counters = counters.clone();
    let hooks = Hooks {
        name: WORKER_NAME,
        on_reconnect: Arc::new(move || Counters::bump(&counters.reconnects)),
        on_disconnect: Arc::new(|| {}),
    };
    open_with(settings, &hooks, closing)
}

/// Who connects, and what else happens when the connection goes and comes back.
#[derive(Clone)]
pub struct Hooks {
    /// The connection's name on the server (`ttp`, `ttp-bridge`).
    pub name: &'static str,
    pub on_reconnect: Arc<dyn Fn() + Send + Sync>,
    /// Called when the connection is lost, not when we close it.
    pub on_disconnect: Arc<dyn Fn() + Send + Sync>,
}

/// [`open`] for any client of ours.
pub fn open_with(
    settings: &BusSettings,
    hooks: &Hooks,
    closing: &Arc<AtomicBool>,
) -> Result<nats::Connection, BusError> {
    dial(
        &settings.urls,
        &settings.security,
        settings.connect_timeout,
        hooks,
        closing,
    )
}

/// [`open_with`] for a client that needs no more than where to connect and how: the
/// `publish` command.
pub fn dial(
    urls: &[String],
    security: &BusSecurity,
    connect_timeout: Duration,
    hooks: &Hooks,
    closing: &Arc<AtomicBool>,
) -> Result<nats::Connection, BusError> {
    let urls = urls.join(",");
    let shown = redact_url(&urls);
    let options = options(security, hooks, closing).map_err(|source| BusError::Connect {
        urls: shown.clone(),
        source,
    })?;
    let (result_tx, result_rx) = bounded(1);
    let attempt_urls = urls.clone();
    thread::Builder::new()
        .name("nats-connect".into())
        .spawn(move || {
            // If we stopped waiting, the send fails and the late connection is dropped here.
            let _ = result_tx.send(options.connect(attempt_urls.as_str()));
        })
        .map_err(BusError::Spawn)?;
    match result_rx.recv_timeout(connect_timeout) {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(source)) => Err(BusError::Connect {
            urls: shown,
            source,
        }),
        Err(_) => Err(BusError::ConnectTimedOut {
            urls: shown,
            timeout: connect_timeout,
        }),
    }
}

/// The client's options. Never log them: their `Debug` prints passwords and tokens (docs/nats.md
/// pitfall 15).
fn options(
    security: &BusSecurity,
    hooks: &Hooks,
    closing: &Arc<AtomicBool>,
) -> std::io::Result<nats::Options> {
    let on_reconnect = hooks.on_reconnect.clone();
    let on_disconnect = hooks.on_disconnect.clone();
    let closing = closing.clone();
    let mut options = match &security.auth {
        BusAuth::None => nats::Options::new(),
        BusAuth::UserPassword { user, password } => {
            nats::Options::with_user_pass(user, password.expose())
        }
        BusAuth::Token(token) => nats::Options::with_token(token.expose()),
        // Checked when the settings were read; an error here says nothing of the content.
        BusAuth::Credentials(text) => nats::Options::with_static_credentials(text.expose())
            .map_err(|_| std::io::Error::other("the NATS credentials could not be parsed"))?,
        BusAuth::NKey(seed) => {
            let pair = nkeys::KeyPair::from_seed(seed.expose())
                .map_err(|_| std::io::Error::other("the nkey seed could not be parsed"))?;
            let public = pair.public_key();
            nats::Options::with_nkey(&public, move |nonce| pair.sign(nonce).unwrap_or_default())
        }
    };
    if let Some(ca) = &security.tls.ca {
        options = options.add_root_certificate(ca);
    }
    if let Some((cert, key)) = &security.tls.client_cert {
        options = options.client_cert(cert, key);
    }
    if security.tls.required() {
        options = options.tls_required(true);
    }
    Ok(options
        .with_name(hooks.name)
        .no_echo()
        // The first connect is tried once (our poll-only loop retries it); after that the
        // client itself retries for as long as it takes (docs/nats.md pitfalls 2 and 3).
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .disconnect_callback(move || {
            if !closing.load(Ordering::SeqCst) {
                on_disconnect();
                log::warn!("lost the connection to NATS; reconnecting");
            }
        })
        .reconnect_callback(move || {
            on_reconnect();
            log::info!("reconnected to NATS");
        })
        // The default callback prints with eprintln!; route it through the logger, once per
        // period: the client reports every message a flood makes it drop.
        .error_callback(move |err| {
            if let Some(held) = CLIENT_WARNINGS.pass() {
                if held > 0 {
                    log::warn!(
                        "NATS client: {err} (and {held} more client warnings in the last {:?})",
                        CLIENT_WARNINGS.period()
                    );
                } else {
                    log::warn!("NATS client: {err}");
                }
            }
        })
        .close_callback(|| log::debug!("NATS connection closed by the client")))
}

/// No pause before the first try of a server, then 100 ms doubling up to 2 s, plus up to
/// 250 ms of jitter so a fleet of appliances does not reconnect in lockstep.
fn reconnect_delay(attempt: usize) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let doublings = (attempt - 1).min(5) as u32;
    let base = Duration::from_millis(100 * 2u64.pow(doublings)).min(MAX_RECONNECT_DELAY);
    let jitter_ms = RandomState::new().hash_one(attempt) % 250;
    base + Duration::from_millis(jitter_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_starts_at_zero_and_stays_bounded() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        for attempt in 1..100 {
            let delay = reconnect_delay(attempt);
            assert!(delay >= Duration::from_millis(100), "{attempt}: {delay:?}");
            assert!(delay < MAX_RECONNECT_DELAY + Duration::from_millis(250));
        }
    }
}
