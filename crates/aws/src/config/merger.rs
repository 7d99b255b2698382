//! The merger's settings (`FLOWMERGE_*` of the merger in [`VARIABLES`](super::VARIABLES)): the
//! engine's options (formats, DNS, memory), so only with the engine (feature `merger`).

use std::time::Duration;

use bytesize::ByteSize;
use flowmerge_core::formats::dns::DnsOptions;
use flowmerge_core::formats::vpcflow::ParseOptions;
use flowmerge_core::memory::{MemoryLimits, default_memory_limit};
use flowmerge_protocol::window::window_size;
use serde::Deserialize;

use super::{Common, Env, S3Location, Workers};
use crate::error::{AwsError, Result};

#[derive(Clone, Debug)]
pub struct MergerConfig {
    pub common: Common,
    /// Jobs merged at once.
    pub concurrency: usize,
    /// Objects fetched at once per job.
    pub fetch_concurrency: usize,
    pub parse: ParseOptions,
    /// How DNS captures are read.
    pub dns: DnsOptions,
    /// On SIGTERM, how long the job in hand may run before it is released.
    pub drain_timeout: Duration,
    /// Delete raw objects once their batch is committed.
    pub delete_merged: bool,
    /// Each job's memory bound (the limit split between the jobs merged at once).
    pub memory: MemoryLimits,
    /// The memory limit of one job: FLOWMERGE_MEMORY_LIMIT split between the batch jobs merged
    /// at once and, when this merger runs rollup jobs, the one rollup beside them.
    pub job_memory_limit: u64,
    /// Rollup jobs, if this merger runs them.
    pub rollup: Option<RollupConfig>,
}

/// The merger's rollup settings (`FLOWMERGE_ROLLUP_*`).
#[derive(Clone, Debug)]
pub struct RollupConfig {
    pub queue_url: String,
    pub min_age: Duration,
    pub target_size: u64,
    /// How long a partition's lease lasts.
    pub lease: Duration,
    /// Flow logs: window seconds rows merge in.
    pub merge_window: Option<i64>,
    /// Where the CloudTrail monthly table goes.
    pub monthly: Option<S3Location>,
}

#[derive(Deserialize)]
struct MergerVars {
    merger_concurrency: usize,
    fetch_concurrency: usize,
    memory_limit: Option<ByteSize>,
    spill_dir: Option<std::path::PathBuf>,
    max_object_size: Option<ByteSize>,
    format: Option<String>,
    dns_ports: String,
    #[serde(with = "humantime_serde")]
    dns_timeout: std::time::Duration,
    dns_server_folder: String,
    #[serde(with = "humantime_serde")]
    drain_timeout: std::time::Duration,
    delete_merged: bool,
    rollup_queue_url: Option<String>,
    #[serde(with = "humantime_serde")]
    rollup_min_age: std::time::Duration,
    rollup_target_size: ByteSize,
    #[serde(with = "humantime_serde")]
    rollup_lease: std::time::Duration,
    rollup_merge_window: Option<String>,
    rollup_monthly: Option<String>,
}

impl Env {
    pub fn merger(&self) -> Result<MergerConfig> {
        self.check(Workers::Merger)?;
        let w: MergerVars = self.read()?;
        let parse =
            ParseOptions::with_format(w.format.as_deref()).map_err(|e| AwsError::Config {
                var: "FLOWMERGE_FORMAT",
                reason: e.to_string(),
            })?;
        let ports = DnsOptions::parse_ports(&w.dns_ports).map_err(|reason| AwsError::Config {
            var: "FLOWMERGE_DNS_PORTS",
            reason,
        })?;
        // The batch jobs at once, and one rollup beside them.
        let jobs = w.merger_concurrency.max(1) + usize::from(w.rollup_queue_url.is_some());
        let job_memory_limit = w
            .memory_limit
            .map_or_else(default_memory_limit, |b| b.as_u64())
            / jobs as u64;
        Ok(MergerConfig {
            common: self.common()?,
            concurrency: w.merger_concurrency,
            fetch_concurrency: w.fetch_concurrency,
            parse,
            dns: DnsOptions {
                ports,
                timeout_ns: w.dns_timeout.as_nanos().min(i64::MAX as u128) as i64,
                server_folder: w.dns_server_folder,
            },
            drain_timeout: w.drain_timeout,
            delete_merged: w.delete_merged,
            memory: MemoryLimits::new(
                job_memory_limit,
                w.spill_dir,
                w.max_object_size.map(|b| b.as_u64()),
            ),
            job_memory_limit,
            rollup: match w.rollup_queue_url {
                None => None,
                Some(queue_url) => Some(RollupConfig {
                    queue_url,
                    min_age: w.rollup_min_age,
                    target_size: w.rollup_target_size.as_u64(),
                    lease: w.rollup_lease,
                    merge_window: match &w.rollup_merge_window {
                        None => None,
                        Some(text) => Some(window_size(text).map_err(|e| AwsError::Config {
                            var: "FLOWMERGE_ROLLUP_MERGE_WINDOW",
                            reason: e.to_string(),
                        })?),
                    },
                    monthly: match &w.rollup_monthly {
                        None => None,
                        Some(url) => Some(S3Location::parse("FLOWMERGE_ROLLUP_MONTHLY", url)?),
                    },
                }),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{BASE, env};

    #[test]
    fn merger_defaults_are_the_documented_values() {
        let w = env(BASE).merger().unwrap();
        assert_eq!((w.concurrency, w.fetch_concurrency), (1, 16));
        assert_eq!(w.drain_timeout, std::time::Duration::from_secs(20));
    }

    #[test]
    fn bad_merger_values_name_the_variable() {
        let mut pairs = BASE.to_vec();
        pairs.push(("FLOWMERGE_MERGER_CONCURRENCY", "-1"));
        let err = env(&pairs).merger().unwrap_err().to_string();
        assert!(err.contains("FLOWMERGE_MERGER_CONCURRENCY"), "{err}");
    }
}
