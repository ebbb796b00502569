//! Human-friendly durations and sizes for settings: `7d`, `90m`, `1G`.

use std::time::Duration;

/// Why a duration or size could not be read; the caller names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("expected a number with an optional unit, e.g. {example}")]
    Unparsable { example: &'static str },
    #[error("must be greater than 0")]
    NotPositive,
    #[error("is too large")]
    TooLarge,
}

/// `30s`, `15m`, `24h`, `7d`, `2w`, or plain seconds (`3600`, `0.5`).
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    const UNITS: [(&str, f64); 5] = [
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
        ("d", 86_400.0),
        ("w", 604_800.0),
    ];
    let example = "30s, 15m, 24h or 7d";
    let (number, scale) =
        split_unit(text.trim(), &UNITS).ok_or(UnitError::Unparsable { example })?;
    let secs = number * scale;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(UnitError::NotPositive);
    }
    Duration::try_from_secs_f64(secs).map_err(|_| UnitError::TooLarge)
}

/// `512M`, `1G`, `64K` (powers of 1024, optional trailing `B`/`iB`), or plain bytes.
pub fn parse_bytes(text: &str) -> Result<u64, UnitError> {
    const UNITS: [(&str, f64); 4] = [
        ("k", 1024.0),
        ("m", 1024.0 * 1024.0),
        ("g", 1024.0 * 1024.0 * 1024.0),
        ("t", 1024.0 * 1024.0 * 1024.0 * 1024.0),
    ];
    let example = "1073741824, 512M or 1G";
    let lowered = text.trim().to_ascii_lowercase();
    let bare = lowered
        .strip_suffix("ib")
        .or_else(|| lowered.strip_suffix('b'))
        .unwrap_or(&lowered);
    let (number, scale) = split_unit(bare, &UNITS).ok_or(UnitError::Unparsable { example })?;
    let bytes = number * scale;
    if !bytes.is_finite() || bytes < 1.0 {
        return Err(UnitError::NotPositive);
    }
    if bytes > i64::MAX as f64 {
        return Err(UnitError::TooLarge);
    }
    Ok(bytes as u64)
}

/// Splits `12.5h` into `(12.5, 3600.0)`; a bare number has scale 1.
fn split_unit(text: &str, units: &[(&str, f64)]) -> Option<(f64, f64)> {
    let (digits, scale) = units
        .iter()
        .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|d| (d, *scale)))
        .unwrap_or((text, 1.0));
    let number: f64 = digits.trim().parse().ok()?;
    Some((number, scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration(" 0.5 "), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Err(UnitError::NotPositive));
        assert_eq!(parse_duration("-1h"), Err(UnitError::NotPositive));
        assert!(matches!(
            parse_duration("soon"),
            Err(UnitError::Unparsable { .. })
        ));
        assert!(matches!(
            parse_duration("5y"),
            Err(UnitError::Unparsable { .. })
        ));
        assert_eq!(parse_duration("1e300d"), Err(UnitError::TooLarge));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("64K"), Ok(65_536));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("2gb"), Ok(2 << 30));
        assert_eq!(parse_bytes("0"), Err(UnitError::NotPositive));
        assert!(matches!(
            parse_bytes("lots"),
            Err(UnitError::Unparsable { .. })
        ));
        assert_eq!(parse_bytes("1e30"), Err(UnitError::TooLarge));
    }
}
