//! Configuration of the services, from the environment only.
//!
//! [`VARIABLES`] is the one place where each variable's name, workers, default and meaning are
//! written: the typed settings are read from it with `envy` (defaults from the table, overlaid by
//! the environment), `--print-config-reference` prints it as the README's table, and the compose
//! and CDK checks take their lists of variables from that output. A missing or bad value is an
//! error naming the variable, at start.

use std::collections::HashMap;
use std::time::Duration;

use bytesize::ByteSize;
use flowmerge_protocol::BatchLimits;
use flowmerge_protocol::store::split_s3_url;
use flowmerge_protocol::window::window_size;
use serde::Deserialize;

use crate::error::{AwsError, Result};

// The merger's settings name the engine's options: only with the engine (feature `merger`).
#[cfg(feature = "merger")]
mod merger;
#[cfg(feature = "merger")]
pub use merger::{MergerConfig, RollupConfig};

/// Which worker reads a variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers {
    Mapper,
    Merger,
    Both,
}

impl Workers {
    fn includes(self, worker: Workers) -> bool {
        self == Workers::Both || self == worker
    }

    fn label(self) -> &'static str {
        match self {
            Self::Mapper => "mapper",
            Self::Merger => "merger",
            Self::Both => "both",
        }
    }
}

/// What a value must look like; checked before it is read, so a bad one is named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// `s3://bucket/prefix`.
    S3Url,
    /// humantime: `3s`, `5m`, `1h 30m`, `30d`; a unit is required.
    Duration,
    /// A window: a duration that divides an hour.
    Window,
    /// bytesize: `536870912`, `512MiB`, `1GiB` (`MB`, `GB` are powers of 1000).
    Size,
    /// A whole number of at least 1.
    Count,
    /// `true` or `false`.
    Bool,
}

/// One variable of the workers' configuration.
#[derive(Clone, Copy, Debug)]
pub struct Var {
    pub name: &'static str,
    pub workers: Workers,
    /// `None`: required (or unset by default where `required` is false).
    pub default: Option<&'static str>,
    pub required: bool,
    pub kind: Kind,
    /// For tests only: documented, never set by a deployment.
    pub tests_only: bool,
    pub meaning: &'static str,
}

const fn var(
    name: &'static str,
    workers: Workers,
    default: Option<&'static str>,
    kind: Kind,
    meaning: &'static str,
) -> Var {
    Var {
        name,
        workers,
        default,
        required: false,
        kind,
        tests_only: false,
        meaning,
    }
}

const fn required(name: &'static str, workers: Workers, kind: Kind, meaning: &'static str) -> Var {
    Var {
        required: true,
        ..var(name, workers, None, kind, meaning)
    }
}

use Workers::{Both, Mapper, Merger};

/// Every variable the workers read (besides the standard `AWS_*` and `OTEL_*` ones).
pub const VARIABLES: &[Var] = &[
    required(
        "FLOWMERGE_RAW_QUEUE_URL",
        Mapper,
        Kind::Text,
        "SQS queue the raw bucket notifies (S3 events, EventBridge \"Object Created\", or either through SNS); a URL, or a queue name looked up at start",
    ),
    required(
        "FLOWMERGE_MERGE_QUEUE_URL",
        Both,
        Kind::Text,
        "SQS queue of merge jobs; a URL or a queue name",
    ),
    required(
        "FLOWMERGE_TABLE",
        Both,
        Kind::Text,
        "DynamoDB ledger table (key `pk` string, TTL on `expires_at`)",
    ),
    required(
        "FLOWMERGE_OUTPUT",
        Both,
        Kind::S3Url,
        "`s3://bucket/prefix` for the Parquet output",
    ),
    var(
        "FLOWMERGE_WORK",
        Both,
        None,
        Kind::S3Url,
        "`s3://bucket/prefix` for manifests and quarantine records; unset: `<output>/_flowmerge` (Athena ignores `_` folders)",
    ),
    var(
        "FLOWMERGE_WINDOW",
        Mapper,
        Some("5m"),
        Kind::Window,
        "merge window; must divide an hour",
    ),
    var(
        "FLOWMERGE_BATCH_MAX_WAIT",
        Mapper,
        Some("60s"),
        Kind::Duration,
        "how long a window's batch stays open for more objects",
    ),
    var(
        "FLOWMERGE_BATCH_MAX_OBJECTS",
        Mapper,
        Some("1000"),
        Kind::Count,
        "objects per batch; a full batch is sent at once",
    ),
    var(
        "FLOWMERGE_BATCH_MAX_BYTES",
        Mapper,
        Some("512MiB"),
        Kind::Size,
        "raw bytes per batch",
    ),
    var(
        "FLOWMERGE_CLAIM_LEASE",
        Mapper,
        Some("2m"),
        Kind::Duration,
        "how long a mapper owns a batch it is claiming for; after it, another mapper may finish the batch",
    ),
    var(
        "FLOWMERGE_MERGER_CONCURRENCY",
        Merger,
        Some("1"),
        Kind::Count,
        "jobs merged at once",
    ),
    var(
        "FLOWMERGE_FETCH_CONCURRENCY",
        Merger,
        Some("16"),
        Kind::Count,
        "objects fetched at once per job",
    ),
    var(
        "FLOWMERGE_MEMORY_LIMIT",
        Merger,
        None,
        Kind::Size,
        "peak memory of the jobs merged at once (FLOWMERGE_MERGER_CONCURRENCY batch jobs, and one rollup job with FLOWMERGE_ROLLUP_QUEUE_URL), split between them; beyond it folded flow keys spill, and large rollups merge in buckets, in FLOWMERGE_SPILL_DIR; unset: 60% of the task's cgroup memory limit",
    ),
    var(
        "FLOWMERGE_SPILL_DIR",
        Merger,
        None,
        Kind::Text,
        "local folder merges spill to; unset: the system's temporary folder",
    ),
    var(
        "FLOWMERGE_MAX_OBJECT_SIZE",
        Merger,
        None,
        Kind::Size,
        "an object that decodes to more is quarantined (one stored larger is not fetched); unset: a quarter of the job's memory limit per parsing thread (at least 16MiB)",
    ),
    var(
        "FLOWMERGE_FORMAT",
        Merger,
        None,
        Kind::Text,
        "field list for objects without a header line (as `compact --format`); unset: the default v2 format",
    ),
    var(
        "FLOWMERGE_DNS_PORTS",
        Merger,
        Some("53"),
        Kind::Text,
        "DNS captures: UDP and TCP ports DNS is read on, comma-separated",
    ),
    var(
        "FLOWMERGE_DNS_TIMEOUT",
        Merger,
        Some("2s"),
        Kind::Duration,
        "DNS captures: how long (capture time) a query waits for its response before it is a `dns_rcode` -1 row",
    ),
    var(
        "FLOWMERGE_DNS_SERVER_FOLDER",
        Merger,
        Some("dns"),
        Kind::Text,
        "DNS captures: the key folder whose child names the capture server (`…/dns/<server>/…`)",
    ),
    var(
        "FLOWMERGE_DELETE_MERGED",
        Merger,
        Some("false"),
        Kind::Bool,
        "delete each raw object once its batch is committed (never before; quarantined objects are kept; a merger killed between the commit and the deletes leaves those objects to the bucket's lifecycle)",
    ),
    var(
        "FLOWMERGE_ROLLUP_QUEUE_URL",
        Merger,
        None,
        Kind::Text,
        "SQS queue of rollup jobs (the schedule's scans, and one job per partition); a URL or a queue name; unset: this merger runs no rollups",
    ),
    var(
        "FLOWMERGE_ROLLUP_MIN_AGE",
        Merger,
        Some("1h"),
        Kind::Duration,
        "a partition is rolled up once its hour (flow logs) or day (CloudTrail, DNS) is over and its newest file is older than this",
    ),
    var(
        "FLOWMERGE_ROLLUP_LEASE",
        Merger,
        Some("15m"),
        Kind::Duration,
        "how long a merger holds a partition it rolls up (renewed every third of it while it works); a crashed merger's partition is free again after it",
    ),
    var(
        "FLOWMERGE_ROLLUP_TARGET_SIZE",
        Merger,
        Some("512MiB"),
        Kind::Size,
        "rolled-up files larger than this are split into parts",
    ),
    var(
        "FLOWMERGE_ROLLUP_MERGE_WINDOW",
        Merger,
        None,
        Kind::Window,
        "flow logs: the window rows merge in when rolled up (e.g. `1h`); unset: their batch window",
    ),
    var(
        "FLOWMERGE_ROLLUP_MONTHLY",
        Merger,
        None,
        Kind::S3Url,
        "`s3://bucket/prefix` the CloudTrail monthly table (`cloudtrail_monthly/`) goes under; unset: no monthly aggregation",
    ),
    var(
        "FLOWMERGE_DRAIN_TIMEOUT",
        Merger,
        Some("20s"),
        Kind::Duration,
        "on SIGTERM, how long the job in hand may finish before it is released",
    ),
    var(
        "FLOWMERGE_VISIBILITY_TIMEOUT",
        Both,
        Some("5m"),
        Kind::Duration,
        "visibility of received messages (3s to 12h); extended every third of it while held",
    ),
    var(
        "FLOWMERGE_LEDGER_TTL",
        Both,
        Some("30d"),
        Kind::Duration,
        "lifetime of ledger items (DynamoDB TTL); longer than SQS's 14-day retention",
    ),
    var(
        "FLOWMERGE_LOG",
        Both,
        Some("info"),
        Kind::Text,
        "log filter (`info`, `info,flowmerge_core=debug`); logs are JSON lines unless stdout is a terminal; one that does not parse stops the worker at start",
    ),
    Var {
        tests_only: true,
        ..var(
            "FLOWMERGE_FAULT",
            Both,
            None,
            Kind::Text,
            "tests only: exit with code 86 at a protocol step (mapper `after-manifest`, `after-claim`, `after-seal`, `after-send`, `before-delete`; merger `after-write`, `before-commit`, `after-commit`, and in rollup jobs `rollup-after-write`, `rollup-after-commit`, `rollup-during-deletes`)",
        )
    },
];

/// The variables a worker reads, tests-only ones excluded.
pub fn vars_of(worker: Workers) -> Vec<&'static str> {
    VARIABLES
        .iter()
        .filter(|v| v.workers.includes(worker) && !v.tests_only)
        .map(|v| v.name)
        .collect()
}

/// The reference of [`VARIABLES`] as the README's Markdown table (`--print-config-reference`).
pub fn reference_markdown() -> String {
    let mut out = String::from("| variable | worker | default | meaning |\n|---|---|---|---|\n");
    for v in VARIABLES {
        let default = match (v.default, v.required) {
            (Some(d), _) => format!("`{d}`"),
            (None, true) => "required".to_owned(),
            (None, false) => "unset".to_owned(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {default} | {} |\n",
            v.name,
            v.workers.label(),
            v.meaning
        ));
    }
    out
}

/// Checks one value against its kind, naming the variable when it does not fit.
fn check(v: &Var, value: &str) -> Result<()> {
    let bad = |reason: String| AwsError::Config {
        var: v.name,
        reason,
    };
    match v.kind {
        Kind::Text => Ok(()),
        Kind::S3Url => S3Location::parse(v.name, value).map(|_| ()),
        Kind::Duration => humantime::parse_duration(value).map(|_| ()).map_err(|e| {
            bad(format!(
                "{value:?} is not a duration with its unit ({e}; examples: 3s, 5m, 1h)"
            ))
        }),
        Kind::Window => window_size(value)
            .map(|_| ())
            .map_err(|e| bad(e.to_string())),
        Kind::Size => value
            .parse::<ByteSize>()
            .ok()
            .filter(|b| b.as_u64() > 0)
            .map(|_| ())
            .ok_or_else(|| {
                bad(format!(
                    "{value:?} is not a size (examples: 536870912, 512MiB, 1GiB)"
                ))
            }),
        Kind::Bool => match value {
            "true" | "false" => Ok(()),
            _ => Err(bad(format!("{value:?} is not true or false"))),
        },
        Kind::Count => match value.parse::<usize>() {
            Ok(n) if n > 0 => Ok(()),
            _ => Err(bad(format!(
                "{value:?} is not a whole number of at least 1"
            ))),
        },
    }
}

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

/// The settings both workers read, as envy reads them (field = variable without `FLOWMERGE_`).
#[derive(Deserialize)]
struct CommonVars {
    merge_queue_url: String,
    table: String,
    output: String,
    work: Option<String>,
    #[serde(with = "humantime_serde")]
    visibility_timeout: std::time::Duration,
    #[serde(with = "humantime_serde")]
    ledger_ttl: std::time::Duration,
}

#[derive(Deserialize)]
struct MapperVars {
    raw_queue_url: String,
    window: String,
    #[serde(with = "humantime_serde")]
    batch_max_wait: std::time::Duration,
    batch_max_objects: usize,
    batch_max_bytes: ByteSize,
    #[serde(with = "humantime_serde")]
    claim_lease: std::time::Duration,
}

/// The configuration's variables: the table's defaults overlaid by the environment's values
/// (empty counts as unset).
pub struct Env {
    values: HashMap<String, String>,
}

pub fn process_env() -> Env {
    Env::new(std::env::vars())
}

impl Env {
    pub fn new(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut values: HashMap<String, String> = VARIABLES
            .iter()
            .filter_map(|v| Some((v.name.to_owned(), v.default?.to_owned())))
            .collect();
        for (k, v) in vars {
            let v = v.trim();
            if k.starts_with("FLOWMERGE_") && !v.is_empty() {
                values.insert(k, v.to_owned());
            }
        }
        Self { values }
    }

    /// Checks the worker's variables: required ones set, each value of its kind — so an error
    /// names the variable, which envy's own errors do not always do.
    fn check(&self, worker: Workers) -> Result<()> {
        for v in VARIABLES.iter().filter(|v| v.workers.includes(worker)) {
            match self.values.get(v.name) {
                Some(value) => check(v, value)?,
                None if v.required => {
                    return Err(AwsError::Config {
                        var: v.name,
                        reason: format!("not set ({})", v.meaning),
                    });
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Reads the (checked) variables with envy into `T`.
    fn read<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        envy::prefixed("FLOWMERGE_")
            .from_iter(self.values.clone())
            .map_err(|e| AwsError::Invalid(format!("configuration: {e}")))
    }

    fn common(&self) -> Result<Common> {
        let c: CommonVars = self.read()?;
        let output = S3Location::parse("FLOWMERGE_OUTPUT", &c.output)?;
        let work_from_output = c.work.is_none();
        let work = match &c.work {
            Some(url) => S3Location::parse("FLOWMERGE_WORK", url)?,
            None => S3Location {
                bucket: output.bucket.clone(),
                prefix: output.key("_flowmerge"),
            },
        };
        let vis = c.visibility_timeout;
        if vis < std::time::Duration::from_secs(3) || vis > std::time::Duration::from_secs(43_200) {
            return Err(AwsError::Config {
                var: "FLOWMERGE_VISIBILITY_TIMEOUT",
                reason: "must be between 3s and 12h (SQS's limit)".into(),
            });
        }
        Ok(Common {
            merge_queue_url: c.merge_queue_url,
            table: c.table,
            output,
            work,
            work_from_output,
            visibility_timeout: vis,
            ledger_ttl: c.ledger_ttl,
        })
    }

    pub fn mapper(&self) -> Result<MapperConfig> {
        self.check(Workers::Mapper)?;
        let m: MapperVars = self.read()?;
        let window_size = window_size(&m.window).map_err(|e| AwsError::Config {
            var: "FLOWMERGE_WINDOW",
            reason: e.to_string(),
        })?;
        Ok(MapperConfig {
            common: self.common()?,
            raw_queue_url: m.raw_queue_url,
            window_size,
            batch_max_wait: m.batch_max_wait,
            limits: BatchLimits {
                max_objects: m.batch_max_objects,
                max_bytes: m.batch_max_bytes.as_u64(),
            },
            claim_lease: m.claim_lease,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn env(pairs: &[(&str, &str)]) -> Env {
        Env::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    pub(super) const BASE: &[(&str, &str)] = &[
        ("FLOWMERGE_RAW_QUEUE_URL", "http://q/raw"),
        ("FLOWMERGE_MERGE_QUEUE_URL", "http://q/merge"),
        ("FLOWMERGE_TABLE", "t"),
        ("FLOWMERGE_OUTPUT", "s3://out/flows/"),
    ];

    #[test]
    fn defaults_are_the_documented_values() {
        let m = env(BASE).mapper().unwrap();
        assert_eq!(m.window_size, 300);
        assert_eq!(m.batch_max_wait, std::time::Duration::from_secs(60));
        assert_eq!(m.limits, BatchLimits::default());
        assert_eq!(
            m.common.output,
            S3Location {
                bucket: "out".into(),
                prefix: "flows".into()
            }
        );
        assert_eq!(m.common.work.prefix, "flows/_flowmerge");
        assert_eq!(
            m.common.visibility_timeout,
            std::time::Duration::from_secs(300)
        );
        // Every default in the table is a valid value of its kind.
        for v in VARIABLES {
            if let Some(d) = v.default {
                check(v, d).unwrap();
            }
        }
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
            ("FLOWMERGE_BATCH_MAX_WAIT", "90"),
            ("FLOWMERGE_WINDOW", "7x"),
            ("FLOWMERGE_WINDOW", "7m"),
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
    }

    #[test]
    fn sizes_and_durations_accept_units_and_empty_means_unset() {
        let mut pairs = BASE.to_vec();
        pairs.extend([
            ("FLOWMERGE_BATCH_MAX_BYTES", "64MiB"),
            ("FLOWMERGE_BATCH_MAX_WAIT", "3s"),
            ("FLOWMERGE_CLAIM_LEASE", ""),
        ]);
        let m = env(&pairs).mapper().unwrap();
        assert_eq!(m.limits.max_bytes, 64 << 20);
        assert_eq!(m.batch_max_wait, std::time::Duration::from_secs(3));
        assert_eq!(m.claim_lease, std::time::Duration::from_secs(120));
    }

    #[test]
    fn the_reference_lists_every_variable_once() {
        let table = reference_markdown();
        for v in VARIABLES {
            assert_eq!(
                table.matches(&format!("`{}`", v.name)).count(),
                1,
                "{}",
                v.name
            );
        }
        assert!(vars_of(Workers::Mapper).contains(&"FLOWMERGE_RAW_QUEUE_URL"));
        assert!(!vars_of(Workers::Merger).contains(&"FLOWMERGE_RAW_QUEUE_URL"));
        assert!(!vars_of(Workers::Merger).contains(&"FLOWMERGE_FAULT"));
    }
}
