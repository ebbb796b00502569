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

/// Everything between the scheme and the last `@` is taken for credentials. A password or
/// token may hold `/`, `?` or `#` (and then the URL does not parse as one), so the authority's
/// usual end cannot be trusted to end the secret; a NATS URL has no path that would lose by it.
fn redact_one(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    match url[authority_start..].rfind('@') {
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
            redact_url("nats://a:4222,tls://s3cr3t@b:1"),
            "nats://a:4222,tls://***@b:1"
        );
        assert_eq!(redact_url("nats://p@ss@host"), "nats://***@host");
    }

    #[test]
    fn a_secret_holding_url_syntax_is_hidden_too() {
        for url in [
            "nats://ttp:Pw/Slash@host:4222",
            "nats://ttp:Pw?q#f@host:4222",
            "tok/en@host",
        ] {
            let shown = redact_url(url);
            assert!(
                shown.starts_with("nats://***@") || shown == "***@host",
                "{shown}"
            );
            for secret in ["Pw", "Slash", "tok", "en@"] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
        }
    }

    #[test]
    fn urls_without_credentials_are_unchanged() {
        for url in ["nats://127.0.0.1:4222", "host", "tls://h/path"] {
            assert_eq!(redact_url(url), url);
        }
    }
}
