//! Configuration of the services, from the environment only. Every variable is listed in
//! [`MAPPER_VARS`] / [`MERGER_VARS`] (the CDK app's test checks it sets exactly these) and in the
//! README with its default. A missing or bad value is an error naming the variable, at start.

use std::time::Duration;

use flowmerge_core::BatchLimits;
use flowmerge_core::formats::vpcflow::ParseOptions;
use flowmerge_core::store::split_s3_url;
use flowmerge_core::window::{parse_duration, window_size};

use crate::error::{AwsError, Result};

/// Variables the mapper reads (besides the standard AWS and OTEL ones).
pub const MAPPER_VARS: &[&str] = &[
    "FLOWMERGE_RAW_QUEUE_URL",
    "FLOWMERGE_MERGE_QUEUE_URL",
    "FLOWMERGE_TABLE",
    "FLOWMERGE_OUTPUT",
    "FLOWMERGE_WORK",
    "FLOWMERGE_WINDOW",
    "FLOWMERGE_BATCH_MAX_WAIT",
    "FLOWMERGE_BATCH_MAX_OBJECTS",
    "FLOWMERGE_BATCH_MAX_BYTES",
    "FLOWMERGE_VISIBILITY_TIMEOUT",
    "FLOWMERGE_CLAIM_LEASE",
    "FLOWMERGE_LEDGER_TTL",
    "FLOWMERGE_LOG",
];

/// Variables the merger reads (besides the standard AWS and OTEL ones).
pub const MERGER_VARS: &[&str] = &[
    "FLOWMERGE_MERGE_QUEUE_URL",
    "FLOWMERGE_TABLE",
    "FLOWMERGE_OUTPUT",
    "FLOWMERGE_WORK",
    "FLOWMERGE_MERGER_CONCURRENCY",
    "FLOWMERGE_FETCH_CONCURRENCY",
    "FLOWMERGE_FORMAT",
    "FLOWMERGE_VISIBILITY_TIMEOUT",
    "FLOWMERGE_DRAIN_TIMEOUT",
    "FLOWMERGE_LEDGER_TTL",
    "FLOWMERGE_LOG",
];

/// A bucket and a key prefix inside it (no surrounding slashes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

impl S3Location {
    pub fn parse(var: &'static str, url: &str) -> Result<Self> {
        let (bucket, prefix) = split_s3_url(url).ok_or_else(|| AwsError::Config {
            var,
            reason: format!("{url:?} is not an s3://bucket/prefix URL"),
        })?;
        Ok(Self { bucket, prefix })
    }

    /// `prefix/rest`, or `rest` at the bucket's root.
    pub fn key(&self, rest: &str) -> String {
        match self.prefix.is_empty() {
            true => rest.to_owned(),
            false => format!("{}/{rest}", self.prefix),
        }
    }

    pub fn url_of(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

/// Settings both services share.
#[derive(Clone, Debug)]
pub struct Common {
    pub merge_queue_url: String,
    pub table: String,
    pub output: S3Location,
    /// Manifests and quarantine records; default `<output>/_flowmerge`, which Athena ignores.
    pub work: S3Location,
    /// Whether `work` is the default under the output (no FLOWMERGE_WORK).
    pub work_from_output: bool,
    /// How long a received message stays invisible; the services extend it every third of it.
    pub visibility_timeout: Duration,
    /// How long ledger items are kept (DynamoDB TTL); longer than SQS's 14-day retention.
    pub ledger_ttl: Duration,
}

impl Common {
    /// The variable that set the work location: FLOWMERGE_WORK, or FLOWMERGE_OUTPUT it defaults to.
    pub fn work_var(&self) -> &'static str {
        match self.work_from_output {
            true => "FLOWMERGE_OUTPUT",
            false => "FLOWMERGE_WORK",
        }
    }
}

#[derive(Clone, Debug)]
pub struct MapperConfig {
    pub common: Common,
    pub raw_queue_url: String,
    pub window_size: i64,
    pub batch_max_wait: Duration,
    pub limits: BatchLimits,
    /// How long a mapper owns a batch it is claiming for before another may seal it.
    pub claim_lease: Duration,
}

#[derive(Clone, Debug)]
pub struct MergerConfig {
    pub common: Common,
    /// Jobs merged at once.
    pub concurrency: usize,
    /// Objects fetched at once per job.
    pub fetch_concurrency: usize,
    pub parse: ParseOptions,
    /// On SIGTERM, how long the job in hand may run before it is released.
    pub drain_timeout: Duration,
}

/// Reads variables through `get` (the process environment in production, a map in tests).
pub struct Env<F: Fn(&str) -> Option<String>> {
    get: F,
}

pub fn process_env() -> Env<impl Fn(&str) -> Option<String>> {
    Env::new(|k: &str| std::env::var(k).ok())
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn new(get: F) -> Self {
        Self { get }
    }

    /// The value, with empty meaning unset.
    pub fn optional(&self, var: &'static str) -> Option<String> {
        (self.get)(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, var: &'static str, what: &str) -> Result<String> {
        self.optional(var).ok_or_else(|| AwsError::Config {
            var,
            reason: format!("not set ({what})"),
        })
    }

    pub fn duration(&self, var: &'static str, default: &str) -> Result<Duration> {
        let text = self.optional(var).unwrap_or_else(|| default.to_owned());
        let d = parse_duration(&text).map_err(|e| AwsError::Config {
            var,
            reason: e.to_string(),
        })?;
        Ok(d)
    }

    pub fn count(&self, var: &'static str, default: usize) -> Result<usize> {
        match self.optional(var) {
            None => Ok(default),
            Some(t) => match t.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(AwsError::Config {
                    var,
                    reason: format!("{t:?} is not a positive whole number"),
                }),
            },
        }
    }

    /// Bytes: a whole number, optionally with KiB, MiB, GiB (or K, M, G, KB, MB, GB as powers of 1024).
    pub fn bytes(&self, var: &'static str, default: u64) -> Result<u64> {
        let Some(t) = self.optional(var) else {
            return Ok(default);
        };
        parse_bytes(&t).ok_or_else(|| AwsError::Config {
            var,
            reason: format!("{t:?} is not a size (examples: 536870912, 512MiB, 1GiB)"),
        })
    }

    fn common(&self) -> Result<Common> {
        let output_url = self.required(
            "FLOWMERGE_OUTPUT",
            "s3://bucket/prefix for the Parquet output",
        )?;
        let output = S3Location::parse("FLOWMERGE_OUTPUT", &output_url)?;
        let work_from_output = self.optional("FLOWMERGE_WORK").is_none();
        let work = match self.optional("FLOWMERGE_WORK") {
            Some(url) => S3Location::parse("FLOWMERGE_WORK", &url)?,
            None => S3Location {
                bucket: output.bucket.clone(),
                prefix: output.key("_flowmerge"),
            },
        };
        let visibility_timeout = self.duration("FLOWMERGE_VISIBILITY_TIMEOUT", "5m")?;
        if visibility_timeout < Duration::from_secs(3)
            || visibility_timeout > Duration::from_secs(43_200)
        {
            return Err(AwsError::Config {
                var: "FLOWMERGE_VISIBILITY_TIMEOUT",
                reason: "must be between 3s and 12h (SQS's limit)".into(),
            });
        }
        Ok(Common {
            merge_queue_url: self
                .required("FLOWMERGE_MERGE_QUEUE_URL", "URL of the SQS merge queue")?,
            table: self.required("FLOWMERGE_TABLE", "name of the DynamoDB ledger table")?,
            output,
            work,
            work_from_output,
            visibility_timeout,
            ledger_ttl: self.duration("FLOWMERGE_LEDGER_TTL", "30d")?,
        })
    }

    pub fn mapper(&self) -> Result<MapperConfig> {
        let window_text = self
            .optional("FLOWMERGE_WINDOW")
            .unwrap_or_else(|| "5m".into());
        let window_size = window_size(&window_text).map_err(|e| AwsError::Config {
            var: "FLOWMERGE_WINDOW",
            reason: e.to_string(),
        })?;
        Ok(MapperConfig {
            raw_queue_url: self.required(
                "FLOWMERGE_RAW_QUEUE_URL",
                "URL of the SQS queue S3 notifies",
            )?,
            common: self.common()?,
            window_size,
            batch_max_wait: self.duration("FLOWMERGE_BATCH_MAX_WAIT", "60s")?,
            limits: BatchLimits {
                max_objects: self.count("FLOWMERGE_BATCH_MAX_OBJECTS", 1000)?,
                max_bytes: self.bytes("FLOWMERGE_BATCH_MAX_BYTES", 512 << 20)?,
            },
            claim_lease: self.duration("FLOWMERGE_CLAIM_LEASE", "2m")?,
        })
    }

    pub fn merger(&self) -> Result<MergerConfig> {
        let parse = ParseOptions::with_format(self.optional("FLOWMERGE_FORMAT").as_deref())
            .map_err(|e| AwsError::Config {
                var: "FLOWMERGE_FORMAT",
                reason: e.to_string(),
            })?;
        Ok(MergerConfig {
            common: self.common()?,
            concurrency: self.count("FLOWMERGE_MERGER_CONCURRENCY", 1)?,
            fetch_concurrency: self.count("FLOWMERGE_FETCH_CONCURRENCY", 16)?,
            parse,
            drain_timeout: self.duration("FLOWMERGE_DRAIN_TIMEOUT", "20s")?,
        })
    }
}

fn parse_bytes(t: &str) -> Option<u64> {
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult).filter(|b| *b > 0)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::new(move |k: &str| m.get(k).cloned())
    }

    const BASE: &[(&str, &str)] = &[
        ("FLOWMERGE_RAW_QUEUE_URL", "http://q/raw"),
        ("FLOWMERGE_MERGE_QUEUE_URL", "http://q/merge"),
        ("FLOWMERGE_TABLE", "t"),
        ("FLOWMERGE_OUTPUT", "s3://out/flows/"),
    ];

    #[test]
    fn defaults_are_documented_values() {
        let m = env(BASE).mapper().unwrap();
        assert_eq!(m.window_size, 300);
        assert_eq!(m.batch_max_wait, Duration::from_secs(60));
        assert_eq!(m.limits, BatchLimits::default());
        assert_eq!(
            m.common.output,
            S3Location {
                bucket: "out".into(),
                prefix: "flows".into()
            }
        );
        assert_eq!(m.common.work.prefix, "flows/_flowmerge");
        assert_eq!(m.common.visibility_timeout, Duration::from_secs(300));
        let w = env(BASE).merger().unwrap();
        assert_eq!((w.concurrency, w.fetch_concurrency), (1, 16));
        assert_eq!(w.drain_timeout, Duration::from_secs(20));
    }

    #[test]
    fn bad_or_missing_values_name_the_variable() {
        let mut pairs = BASE.to_vec();
        pairs.retain(|(k, _)| *k != "FLOWMERGE_TABLE");
        let err = env(&pairs).mapper().unwrap_err().to_string();
        assert!(
            err.contains("FLOWMERGE_TABLE") && err.contains("not set"),
            "{err}"
        );

        for (var, bad) in [
            ("FLOWMERGE_BATCH_MAX_WAIT", "soon"),
            ("FLOWMERGE_WINDOW", "7x"),
            ("FLOWMERGE_BATCH_MAX_OBJECTS", "0"),
            ("FLOWMERGE_BATCH_MAX_BYTES", "lots"),
            ("FLOWMERGE_OUTPUT", "/local/dir"),
            ("FLOWMERGE_VISIBILITY_TIMEOUT", "1s"),
        ] {
            let mut pairs = BASE.to_vec();
            pairs.push((var, bad));
            let err = env(&pairs).mapper().unwrap_err().to_string();
            assert!(err.contains(var), "{var}: {err}");
        }
        let mut pairs = BASE.to_vec();
        pairs.push(("FLOWMERGE_MERGER_CONCURRENCY", "-1"));
        let err = env(&pairs).merger().unwrap_err().to_string();
        assert!(err.contains("FLOWMERGE_MERGER_CONCURRENCY"), "{err}");
    }

    #[test]
    fn sizes_and_durations_accept_units() {
        let mut pairs = BASE.to_vec();
        pairs.extend([
            ("FLOWMERGE_BATCH_MAX_BYTES", "64MiB"),
            ("FLOWMERGE_BATCH_MAX_WAIT", "3s"),
        ]);
        let m = env(&pairs).mapper().unwrap();
        assert_eq!(m.limits.max_bytes, 64 << 20);
        assert_eq!(m.batch_max_wait, Duration::from_secs(3));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("1G"), Some(1 << 30));
        assert_eq!(parse_bytes("0"), None);
    }
}
