//! The control listener: DECNET's dashboard stops a worker by publishing
//! `{"action": "stop"}` on `system.ttp.control` (docs/bus.md §5.2).
//!
//! DECNET's own listener dies on a non-object payload and leaves the worker unstoppable over
//! the bus; this one ignores anything that is not a stop and keeps listening.

use std::io;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, select};
use serde_json::Value;

use crate::channels::{ControlSender, ShutdownCause};
use crate::envelope::Envelope;

/// What a control message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlRequest {
    Stop {
        requested_by: String,
    },
    /// Anything else; the reason is logged at debug.
    Ignore(String),
}

/// Reads one control message body.
pub fn interpret(body: &[u8]) -> ControlRequest {
    let envelope = match Envelope::decode(body) {
        Ok(envelope) => envelope,
        Err(reason) => {
            return ControlRequest::Ignore(format!("malformed control message: {reason}"));
        }
    };
    match envelope.payload.get("action") {
        Some(Value::String(action)) if action == "stop" => ControlRequest::Stop {
            requested_by: match envelope.payload.get("requested_by") {
                Some(Value::String(who)) => crate::logging::clip(who).into_owned(),
                _ => "<unknown>".to_owned(),
            },
        },
        Some(Value::String(action)) if action == "start" => {
            ControlRequest::Ignore("\"start\" is systemd's job, not ours".to_owned())
        }
        Some(Value::String(action)) => {
            ControlRequest::Ignore(format!("unknown action {:?}", crate::logging::clip(action)))
        }
        Some(other) => ControlRequest::Ignore(format!("action is not a string: {other}")),
        None => ControlRequest::Ignore("no action".to_owned()),
    }
}

/// Starts the listener thread; it ends when `stop` closes.
pub fn spawn_listener(
    subscription: nats::Subscription,
    control: ControlSender,
    stop: Receiver<()>,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            loop {
                select! {
                    recv(subscription.receiver()) -> message => {
                        let Ok(message) = message else { break };
                        act_on(interpret(&message.data), &control);
                    }
                    recv(stop) -> _ => break,
                }
            }
            if let Err(err) = subscription.unsubscribe() {
                log::debug!("unsubscribing from the control subject: {err}");
            }
        })
}

fn act_on(request: ControlRequest, control: &ControlSender) {
    match request {
        ControlRequest::Stop { requested_by } => {
            log::info!("stop requested over the bus by {requested_by}");
            control.stop(ShutdownCause::Control { requested_by });
        }
        ControlRequest::Ignore(reason) => log::debug!("control message ignored: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop(by: &str) -> ControlRequest {
        ControlRequest::Stop {
            requested_by: by.into(),
        }
    }

    #[test]
    fn stop_is_obeyed_and_names_who_asked() {
        let body = br#"{"v":1,"type":"control","payload":{"action":"stop","requested_by":"admin","ts":1777703100.2499}}"#;
        assert_eq!(interpret(body), stop("admin"));
        assert_eq!(
            interpret(br#"{"payload":{"action":"stop"}}"#),
            stop("<unknown>")
        );
        assert_eq!(
            interpret(br#"{"payload":{"action":"stop","requested_by":5}}"#),
            stop("<unknown>")
        );
    }

    #[test]
    fn a_long_requester_is_kept_clipped() {
        let body = format!(
            r#"{{"payload":{{"action":"stop","requested_by":"{}"}}}}"#,
            "o".repeat(100_000)
        );
        let ControlRequest::Stop { requested_by } = interpret(body.as_bytes()) else {
            panic!("not a stop");
        };
        assert!(requested_by.ends_with("… (100000 bytes)"), "{requested_by}");
        assert!(requested_by.len() < 250);
    }

    #[test]
    fn everything_else_is_ignored() {
        let ignored: [&[u8]; 9] = [
            br#"{"payload":{"action":"start"}}"#,
            br#"{"payload":{"action":"STOP"}}"#,
            br#"{"payload":{"action":"reload"}}"#,
            br#"{"payload":{"action":5}}"#,
            br#"{"payload":{}}"#,
            br#"{"payload":["stop"]}"#,
            br#"{"payload":"stop"}"#,
            b"not json",
            b"",
        ];
        for body in ignored {
            assert!(
                matches!(interpret(body), ControlRequest::Ignore(_)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn repeated_stops_do_not_block_the_listener() {
        let (control, requests) = crate::channels::control_channel();
        for _ in 0..20 {
            act_on(stop("admin"), &control);
        }
        assert!(requests.try_take().is_some());
        drop(requests);
        act_on(stop("admin"), &control);
    }
}
