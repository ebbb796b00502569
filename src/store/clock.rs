//! Timestamps as the store writes them, and the `--since` durations operators type.
//!
//! `created_at` is stored as fixed-width ISO-8601 UTC text with microseconds
//! (`2026-05-01T12:34:56.789012Z`). Fixed width makes text order equal time order, so an index
//! on it serves "newest first" and `--since` is a plain string comparison; text keeps the
//! column readable in the `sqlite3` shell, and it is what DECNET's own UI shows. A hand-written
//! formatter avoids pulling a date crate onto small appliances for one function.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats `t` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`. Times before 1970 (a broken clock) are
/// written as the epoch rather than failing an insert over a column nobody keys on.
pub fn format_utc(t: SystemTime) -> String {
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let micros = since_epoch.subsec_micros();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Formats `t` as `YYYY-MM-DD HH:MM:SS.ffffff`, UTC without a zone: how DECNET's object mapper
/// writes a date-time into SQLite (docs/decnet-db.md §3).
pub fn format_sql_utc(t: SystemTime) -> String {
    let mut text = format_utc(t);
    text.pop(); // the `Z`
    text.replace_range(10..11, " ");
    text
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`),
/// clamped to year 9999 so the text stays fixed-width.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Past 9999-12-31 the fixed width would break; no real clock gets there.
    let days = days.min(2_932_896);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The instant `ago` before `now`, formatted for comparison with `created_at`; a duration
/// reaching before 1970 means "everything".
pub fn cutoff(now: SystemTime, ago: Duration) -> String {
    format_utc(now.checked_sub(ago).unwrap_or(UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, micros * 1000)
    }

    #[test]
    fn formats_as_decnet_writes_sqlite_date_times() {
        assert_eq!(
            format_sql_utc(at(1_777_703_010, 512_100)),
            "2026-05-02 06:23:30.512100"
        );
    }

    #[test]
    fn formats_fixed_width_utc() {
        assert_eq!(format_utc(at(0, 0)), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29 (leap day in a century leap year) 12:34:56.789012
        assert_eq!(
            format_utc(at(951_827_696, 789_012)),
            "2000-02-29T12:34:56.789012Z"
        );
        assert_eq!(
            format_utc(at(1_767_225_599, 999_999)),
            "2025-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            format_utc(at(1_767_225_600, 0)),
            "2026-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            format_utc(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000000Z"
        );
        assert!(format_utc(at(400_000_000_000, 0)).starts_with("9999-12-31T"));
    }

    #[test]
    fn text_order_is_time_order() {
        let times = [0, 59, 3600, 86_399, 86_400, 951_827_696, 1_767_225_600];
        let texts: Vec<String> = times.iter().map(|s| format_utc(at(*s, 0))).collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, sorted);
    }

    #[test]
    fn cutoff_before_epoch_is_everything() {
        assert_eq!(
            cutoff(at(10, 0), Duration::from_secs(100)),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            cutoff(at(3600, 0), Duration::from_secs(60)),
            "1970-01-01T00:59:00.000000Z"
        );
    }
}
