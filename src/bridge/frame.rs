//! DECNET's socket-bus framing (docs/decnet-bus.md §2): an ASCII header line `VERB args`, a
//! 4-byte big-endian body length, then the body.
//!
//! Everything here comes from another process and is treated as hostile: every length is
//! checked before anything is allocated for it, and a bad frame is an error the caller answers
//! by dropping the connection, as DECNET's broker does.

use std::io::{self, BufRead, Read};

/// The longest header line, its LF included.
pub const MAX_HEADER: usize = 4096;
/// The largest body.
pub const MAX_BODY: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Hello,
    Pub,
    Sub,
    Unsub,
    Evt,
    Bye,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Hello => "HELLO",
            Verb::Pub => "PUB",
            Verb::Sub => "SUB",
            Verb::Unsub => "UNSUB",
            Verb::Evt => "EVT",
            Verb::Bye => "BYE",
        }
    }

    fn parse(text: &str) -> Option<Verb> {
        Some(match text {
            "HELLO" => Verb::Hello,
            "PUB" => Verb::Pub,
            "SUB" => Verb::Sub,
            "UNSUB" => Verb::Unsub,
            "EVT" => Verb::Evt,
            "BYE" => Verb::Bye,
            _ => return None,
        })
    }
}

/// One frame as read: the verb, what followed it on the header line (trimmed), the raw body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub verb: Verb,
    pub args: String,
    pub body: Vec<u8>,
}

/// Why a frame was refused. [`FrameError::kind`] names it for counting.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("header line longer than {MAX_HEADER} bytes")]
    HeaderTooLong,
    #[error("header line is not ASCII")]
    HeaderNotAscii,
    #[error("empty header line")]
    EmptyHeader,
    #[error("unknown verb {0:?}")]
    UnknownVerb(String),
    #[error("body of {0} bytes is over the {MAX_BODY}-byte limit")]
    BodyTooLong(usize),
    #[error("the connection ended inside a frame")]
    Truncated,
    #[error("header argument {0:?} holds a line break or is not ASCII")]
    BadArgument(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl FrameError {
    /// The counter a refused frame goes to; `None` for an I/O error, which is not the peer's
    /// doing.
    pub fn kind(&self) -> Option<&'static str> {
        Some(match self {
            FrameError::HeaderTooLong | FrameError::BodyTooLong(_) => "oversized",
            FrameError::HeaderNotAscii => "not_ascii",
            FrameError::EmptyHeader | FrameError::UnknownVerb(_) | FrameError::BadArgument(_) => {
                "bad_header"
            }
            FrameError::Truncated => "truncated",
            FrameError::Io(_) => return None,
        })
    }
}

/// Reads one frame; `Ok(None)` at a clean end of the stream, before a frame starts.
pub fn read_frame(reader: &mut impl BufRead) -> Result<Option<Frame>, FrameError> {
    let mut header = Vec::with_capacity(64);
    reader
        .by_ref()
        .take(MAX_HEADER as u64)
        .read_until(b'\n', &mut header)?;
    if header.is_empty() {
        return Ok(None);
    }
    if header.last() != Some(&b'\n') {
        return Err(if header.len() == MAX_HEADER {
            FrameError::HeaderTooLong
        } else {
            FrameError::Truncated
        });
    }
    if !header.is_ascii() {
        return Err(FrameError::HeaderNotAscii);
    }
    let line = std::str::from_utf8(&header)
        .map_err(|_| FrameError::HeaderNotAscii)?
        .trim_end_matches(['\r', '\n']);
    if line.is_empty() {
        return Err(FrameError::EmptyHeader);
    }
    let (verb, args) = line.split_once(' ').unwrap_or((line, ""));
    let verb = Verb::parse(verb).ok_or_else(|| FrameError::UnknownVerb(verb.to_owned()))?;

    let mut length = [0u8; 4];
    read_exactly(reader, &mut length)?;
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_BODY {
        return Err(FrameError::BodyTooLong(length));
    }
    let mut body = vec![0u8; length];
    read_exactly(reader, &mut body)?;
    Ok(Some(Frame {
        verb,
        args: args.trim().to_owned(),
        body,
    }))
}

fn read_exactly(reader: &mut impl Read, buf: &mut [u8]) -> Result<(), FrameError> {
    reader.read_exact(buf).map_err(|err| match err.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(err),
    })
}

/// One frame's bytes, refused when DECNET's broker would refuse it.
pub fn encode(verb: Verb, args: &str, body: &[u8]) -> Result<Vec<u8>, FrameError> {
    if !args.is_ascii() || args.contains(['\n', '\r']) {
        return Err(FrameError::BadArgument(args.to_owned()));
    }
    if body.len() > MAX_BODY {
        return Err(FrameError::BodyTooLong(body.len()));
    }
    let header = if args.is_empty() {
        format!("{}\n", verb.as_str())
    } else {
        format!("{} {args}\n", verb.as_str())
    };
    if header.len() > MAX_HEADER {
        return Err(FrameError::HeaderTooLong);
    }
    let mut out = Vec::with_capacity(header.len() + 4 + body.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Option<Frame>, FrameError> {
        read_frame(&mut io::BufReader::new(bytes))
    }

    #[test]
    fn a_frame_reads_back_as_it_was_written() {
        let bytes = encode(Verb::Pub, "ttp.tagged", br#"{"payload":{}}"#).unwrap();
        assert!(bytes.starts_with(b"PUB ttp.tagged\n\0\0\0\x0e{"));
        let frame = read(&bytes).unwrap().unwrap();
        assert_eq!(frame.verb, Verb::Pub);
        assert_eq!(frame.args, "ttp.tagged");
        assert_eq!(frame.body, br#"{"payload":{}}"#);
    }

    #[test]
    fn frames_follow_each_other_and_the_stream_ends_cleanly() {
        let mut bytes = encode(Verb::Hello, "ttp-bridge", b"").unwrap();
        bytes.extend(encode(Verb::Bye, "", b"").unwrap());
        let mut reader = io::BufReader::new(&bytes[..]);
        assert_eq!(read_frame(&mut reader).unwrap().unwrap().verb, Verb::Hello);
        let bye = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!((bye.verb, bye.args.as_str()), (Verb::Bye, ""));
        assert!(read_frame(&mut reader).unwrap().is_none());
    }

    #[test]
    fn a_crlf_header_is_taken() {
        let frame = read(b"EVT a.b\r\n\0\0\0\0").unwrap().unwrap();
        assert_eq!((frame.verb, frame.args.as_str()), (Verb::Evt, "a.b"));
    }

    #[test]
    fn hostile_frames_are_refused_by_kind() {
        let long = vec![b'A'; MAX_HEADER + 10];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (long, "oversized"),
            (b"EVT a\n\x00\x10\x00\x01".to_vec(), "oversized"),
            ("EVT caf\u{e9}\n\0\0\0\0".as_bytes().to_vec(), "not_ascii"),
            (b"\n\0\0\0\0".to_vec(), "bad_header"),
            (b"NOPE x\n\0\0\0\0".to_vec(), "bad_header"),
            (b"EVT a.b".to_vec(), "truncated"),
            (b"EVT a.b\n\0\0".to_vec(), "truncated"),
            (b"EVT a.b\n\0\0\0\x05{}".to_vec(), "truncated"),
        ];
        for (bytes, kind) in cases {
            let err = read(&bytes).unwrap_err();
            assert_eq!(
                err.kind(),
                Some(kind),
                "{err} for {:?}",
                &bytes[..bytes.len().min(20)]
            );
        }
    }

    #[test]
    fn the_limits_are_exact() {
        let mut header = vec![b'E', b'V', b'T', b' '];
        header.resize(MAX_HEADER - 1, b'x');
        header.push(b'\n');
        header.extend_from_slice(&0u32.to_be_bytes());
        assert!(
            read(&header).unwrap().is_some(),
            "a header of exactly the limit is taken"
        );

        let body = vec![b' '; MAX_BODY];
        assert!(encode(Verb::Pub, "a", &body).is_ok());
        assert!(matches!(
            encode(Verb::Pub, "a", &[&body[..], b" "].concat()),
            Err(FrameError::BodyTooLong(_))
        ));
    }

    #[test]
    fn arguments_that_would_break_the_header_are_not_written() {
        for args in ["a\nPUB b", "caf\u{e9}", "x\r"] {
            assert!(matches!(
                encode(Verb::Pub, args, b"{}"),
                Err(FrameError::BadArgument(_))
            ));
        }
    }
}
