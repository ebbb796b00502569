//! Keeps credentials out of logs, `--help` and error messages.
//!
//! NATS URLs may carry `user:password@` or a token; the client's own `Debug` output prints
//! them (docs/nats.md pitfall 15), so every URL we show goes through here first.

/// Replaces the user-info part of every URL in a comma-separated list with `***`.
pub fn redact_url(text: &str) -> String {
    text.split(',')
        .map(redact_one)
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_one(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    match url[authority_start..authority_end].rfind('@') {
        Some(at) => format!(
            "{}***{}",
            &url[..authority_start],
            &url[authority_start + at..]
        ),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_hidden() {
        assert_eq!(redact_url("nats://u:p@host:4222"), "nats://***@host:4222");
        assert_eq!(redact_url("token@host"), "***@host");
        assert_eq!(
            redact_url("nats://a:4222,tls://s3cr3t@b:1/x@y"),
            "nats://a:4222,tls://***@b:1/x@y"
        );
        assert_eq!(redact_url("nats://p@ss@host"), "nats://***@host");
    }

    #[test]
    fn urls_without_credentials_are_unchanged() {
        for url in ["nats://127.0.0.1:4222", "host", "tls://h/path@x"] {
            assert_eq!(redact_url(url), url);
        }
    }
}
