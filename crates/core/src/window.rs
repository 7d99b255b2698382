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

/// Parses a duration such as `30s`, `5m`, `1h`, `1d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let invalid = |reason: &str| Error::Invalid {
        what: "duration",
        reason: format!("{text:?}: {reason} (examples: 30s, 5m, 1h)"),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().map_err(|_| invalid("expected a number"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        "ms" => return Ok(Duration::from_millis(n)),
        _ => return Err(invalid("unknown unit")),
    };
    Ok(Duration::from_secs(secs))
}

/// A window size in whole seconds that divides a day, so windows never straddle an hour partition
/// in a surprising way.
pub fn window_size(text: &str) -> Result<i64> {
    let d = parse_duration(text)?;
    let secs = d.as_secs() as i64;
    if secs == 0 || d.subsec_nanos() != 0 || 86_400 % secs != 0 {
        return Err(Error::Invalid {
            what: "window",
            reason: format!("{text:?}: must be whole seconds that divide a day (e.g. 1m, 5m, 1h)"),
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
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(window_size("1h").unwrap(), 3600);
        assert!(window_size("7m").is_err());
        assert!(window_size("0s").is_err());
    }
}
