//! The one duration grammar of every flag and spec field: humantime's (`250ms`, `15s`, `3m`,
//! `1h 30m`, and `0`).

use std::time::Duration;

/// Parses a duration such as `250ms`, `15s`, `3m` or `1h 30m`; a bare `0` is zero. A number
/// without a unit is rejected: `5` could mean seconds or minutes.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration such as 250ms, 15s, 3m or 1h 30m ({e})"))
}

/// Formats a duration the way [`parse_duration`] reads it (`3m`, `1s 500ms`).
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_units_and_zero_needs_none() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 15s "), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        for bad in ["", "5", "-1s", "soon", "5x"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn formatted_durations_parse_back() {
        for d in [Duration::from_millis(1500), Duration::from_secs(180), Duration::ZERO] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
