//! Time windows: records merge only with records of the same window. A raw object's window comes
//! from the timestamp AWS puts in its name, floored to the window size.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A half-open interval `[start, start + size)` of Unix seconds, aligned to `size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    pub start: i64,
    pub size: i64,
}

impl Window {
    /// The window of `size` seconds that holds the instant `ts` (Unix seconds).
    pub fn containing(ts: i64, size: i64) -> Self {
        Self {
            start: ts.div_euclid(size) * size,
            size,
        }
    }

    fn start_time(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.start, 0).unwrap_or(DateTime::UNIX_EPOCH)
    }

    /// `YYYYMMDDTHHMMZ`, as in AWS object names and in our output file names.
    pub fn stamp(&self) -> String {
        self.start_time().format("%Y%m%dT%H%MZ").to_string()
    }

    /// The Hive partition path of the window start: `year=YYYY/month=MM/day=DD/hour=HH`.
    pub fn partition(&self) -> String {
        let t = self.start_time();
        format!(
            "year={:04}/month={:02}/day={:02}/hour={:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour()
        )
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}s", self.stamp(), self.size)
    }
}

/// The timestamp in an AWS log object name: the last `_YYYYMMDDTHHMMZ_` (or `_…Z.`) run in the
/// key's file name, e.g. `123_vpcflowlogs_us-east-1_fl-1_20210902T2145Z_c2ed8707.log.gz`.
pub fn timestamp_in_key(key: &str) -> Option<i64> {
    let name = key.rsplit('/').next().unwrap_or(key).as_bytes();
    // 8 digits, 'T', 4 digits, 'Z' = 14 bytes, preceded by '_'.
    (1..name.len().saturating_sub(13)).rev().find_map(|i| {
        let s = &name[i..i + 14];
        let shaped = name[i - 1] == b'_'
            && s[..8].iter().all(u8::is_ascii_digit)
            && s[8] == b'T'
            && s[9..13].iter().all(u8::is_ascii_digit)
            && s[13] == b'Z';
        if !shaped {
            return None;
        }
        let text = std::str::from_utf8(s).ok()?;
        chrono::NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%MZ")
            .ok()
            .map(|t| t.and_utc().timestamp())
    })
}

/// The window of a raw object: from the timestamp in its name, else from its last-modified time.
pub fn window_of(key: &str, last_modified: i64, size: i64) -> Window {
    Window::containing(timestamp_in_key(key).unwrap_or(last_modified), size)
}

/// Parses a duration with its unit: `30s`, `5m`, `1h`, `1h 30m`, `30d` (humantime's syntax). A bare
/// number is refused rather than read as seconds: `--window 5` is far more likely a typo for `5m`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    humantime::parse_duration(text).map_err(|e| {
        let reason = match text.chars().all(|c| c.is_ascii_digit()) && !text.is_empty() {
            true => "a unit is needed".to_owned(),
            false => e.to_string(),
        };
        Error::Invalid {
            what: "duration",
            reason: format!("{text:?}: {reason} (examples: 30s, 5m, 1h)"),
        }
    })
}

/// A window size in whole seconds that divides an hour, so that a window never crosses the hour
/// partition its rows are written to.
pub fn window_size(text: &str) -> Result<i64> {
    let d = parse_duration(text)?;
    let secs = d.as_secs() as i64;
    if secs == 0 || d.subsec_nanos() != 0 || 3_600 % secs != 0 {
        return Err(Error::Invalid {
            what: "window",
            reason: format!(
                "{text:?}: must divide an hour evenly, so a window never spans two hour \
                 partitions (e.g. 1m, 5m, 10m, 15m, 30m, 1h)"
            ),
        });
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_from_aws_name() {
        let k = "AWSLogs/123/vpcflowlogs/us-east-1/2021/09/02/123_vpcflowlogs_us-east-1_fl-01b07217476488e53_20210902T2145Z_c2ed8707.log.gz";
        let ts = timestamp_in_key(k).unwrap();
        assert_eq!(Window::containing(ts, 300).stamp(), "20210902T2145Z");
        assert_eq!(
            Window::containing(ts, 3600).partition(),
            "year=2021/month=09/day=02/hour=21"
        );
        assert_eq!(timestamp_in_key("flat/file.log"), None);
        assert_eq!(timestamp_in_key("x_20211302T2145Z_h.log"), None, "month 13");
    }

    #[test]
    fn window_floors_and_falls_back() {
        let w = window_of("a/b_20210902T2147Z_h.log.gz", 0, 300);
        assert_eq!(w.stamp(), "20210902T2145Z");
        assert_eq!(
            window_of("plain.log", 1_000_000_123, 300).start,
            1_000_000_200 - 300
        );
        assert_eq!(Window::containing(-1, 300).start, -300);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        let bare = parse_duration("90").unwrap_err().to_string();
        assert!(bare.contains("a unit is needed"), "{bare}");
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("abc").is_err());
        assert_eq!(window_size("1h").unwrap(), 3600);
        assert_eq!(window_size("30s").unwrap(), 30);
        for bad in ["7m", "0s", "2h", "5", "1d", "1500ms"] {
            let err = window_size(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
