//! Rollup: the second stage. Batches leave a small Parquet file per window in each partition;
//! once a partition is *closed* (its time is over and its newest file is older than the minimum
//! age) its files are rewritten into one file — or parts of at most the target size — through
//! the source's own merge ([`crate::source::Source::remerge`]), and the files it replaces are
//! deleted. CloudTrail's closed months can also be aggregated into a table of their own
//! ([`Level::Month`]), the rolled-up day partitions staying where they are.
//!
//! The protocol (docs/contracts.md §7), under a lease on the partition in the ledger:
//! 1. finish the partition's current rollup if a crash interrupted it: a `committed` one has the
//!    files it replaces deleted, a `writing` one has its outputs deleted and is `aborted`;
//! 2. list the partition: files of committed (or forgotten) batches and of rollups are data,
//!    files of batches still in flight are left for the next run;
//! 3. record the rollup as `writing` (id, outputs, replaced), write its outputs, record it
//!    `committed`, delete the files it replaces, record it `done`.
//!
//! The output names are a function of the inputs, so a run after a crash at any step gives the
//! same files, and a second run over a rolled-up partition finds nothing to do.
//!
//! A partition whose rows are estimated at more than a quarter of the memory limit is merged in
//! buckets instead of at once ([`spill`]); its inputs are fetched to local disk once together
//! they are more than an eighth of it.

mod spill;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::batch::{BatchId, SourceKind};
use crate::error::{Error, Result};
use crate::exec::{Effort, Written, upload, write_parquet};
use crate::fault;
use crate::memory::{SpillDir, default_memory_limit, spill_error};
use crate::ports::{BatchState, ClaimLedger, RollupLedger, RollupRecord, RollupState};
use crate::store::key_path;

/// File names of rollup outputs start with this; batch outputs start with their window stamp.
pub const ROLLUP_FILE_PREFIX: &str = "rollup-";

/// The folder of the CloudTrail monthly table, below `--into`.
pub const MONTHLY_DATASET: &str = "cloudtrail_monthly";

/// Which partitions a rollup rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Each partition of the source's own table in place: hours of flow logs, days of CloudTrail
    /// and DNS.
    Native,
    /// CloudTrail months, into the monthly table (`<into>/cloudtrail_monthly/year=/month=/`).
    Month,
}

impl Level {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "native" | "hour" | "day" => Some(Self::Native),
            "month" => Some(Self::Month),
            _ => None,
        }
    }
}

/// How a rollup runs.
#[derive(Clone, Debug)]
pub struct RollupOptions {
    /// The output prefix the tables are under (as for batches).
    pub output_prefix: String,
    /// A partition is closed once its time is over and its newest file is older than this.
    pub min_age_secs: i64,
    /// Outputs larger than this are split into parts.
    pub target_size: u64,
    /// Flow logs: a coarser window that rows merge in (e.g. 3600 for hourly rows).
    pub merge_window: Option<i64>,
    /// [`Level::Month`]: the prefix the monthly table goes under.
    pub monthly_prefix: Option<String>,
    /// How long a partition's lease lasts (renewed every third of it while the partition is read
    /// and merged, and before the outputs are written): short enough that a crashed runner's
    /// partition is free again soon.
    pub lease_secs: i64,
    /// Input files fetched at once.
    pub fetch_concurrency: usize,
    /// The caller knows that no other runner is alive (`flowmerge rollup` holds a file lock on its
    /// ledger): leases of others are left over from crashed runs and are taken over at once.
    pub take_over_leases: bool,
    /// Peak memory of one partition's rollup: past a quarter of it (estimated from the inputs'
    /// footers) the partition is merged in buckets on local disk ([`spill`]).
    pub memory_limit: u64,
    /// Where inputs too large to hold and buckets go (a temporary folder is made inside).
    pub spill_dir: PathBuf,
}

impl Default for RollupOptions {
    fn default() -> Self {
        Self {
            output_prefix: String::new(),
            min_age_secs: 3600,
            target_size: 512 * 1024 * 1024,
            merge_window: None,
            monthly_prefix: None,
            lease_secs: 900,
            fetch_concurrency: 8,
            take_over_leases: false,
            memory_limit: default_memory_limit(),
            spill_dir: std::env::temp_dir(),
        }
    }
}

/// One partition to roll up: the job a rollup queue carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionJob {
    pub v: u32,
    pub source: SourceKind,
    pub level: Level,
    /// The folder written (its key below the store's root).
    pub partition: String,
    /// The folder read (recursively): the partition itself, or a month of day partitions.
    pub input: String,
}

/// A message of the rollup queue: `{"kind":"scan"}` (the schedule's: find the due partitions and
/// queue a job for each), or one partition's job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RollupJob {
    Scan,
    Partition(PartitionJob),
}

/// What a rollup of one partition did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupReport {
    pub partition: String,
    pub id: String,
    pub inputs: u64,
    pub rows_in: u64,
    pub rows_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Keys written.
    pub outputs: Vec<String>,
    /// Keys deleted (replaced by the outputs).
    pub deleted: Vec<String>,
    /// Files of batches still in flight, left for the next run.
    pub in_flight: u64,
    /// Files in the partition that flowmerge did not write: never read or deleted.
    pub foreign: u64,
    /// Whether an interrupted rollup was finished or undone first.
    pub recovered: bool,
    /// Milliseconds from the first output's PUT to the last delete: how long a reader listing
    /// the partition could see both the outputs and the files they replace.
    pub exposed_ms: u64,
    /// Buckets the partition was merged in, one sorted part of an output each; 0 when it was
    /// merged at once.
    #[serde(default)]
    pub buckets: u64,
}

/// What became of a partition.
#[derive(Debug, PartialEq, Eq)]
pub enum RollupOutcome {
    Rolled(RollupReport),
    /// Nothing to do (the reason says why); `recovered` if an interrupted rollup was finished.
    Skipped {
        reason: &'static str,
        recovered: bool,
    },
    /// Another runner holds the partition's lease.
    Busy,
}

/// A Parquet file of ours in a partition.
#[derive(Clone, Debug)]
struct File {
    key: String,
    name: String,
    /// The folder it is in.
    dir: String,
    size: u64,
    last_modified: i64,
}

/// What a file name says it is.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Batch(BatchId),
    Rollup(String),
    Foreign,
}

fn kind_of(name: &str) -> Kind {
    let Some(stem) = name.strip_suffix(".parquet") else {
        return Kind::Foreign;
    };
    if let Some(rest) = stem.strip_prefix(ROLLUP_FILE_PREFIX) {
        return match rest.split_once('-') {
            Some((id, _part)) if !id.is_empty() => Kind::Rollup(id.to_owned()),
            _ => Kind::Foreign,
        };
    }
    match stem.split_once('-') {
        Some((stamp, id)) if window_of_stamp(stamp).is_some() && !id.is_empty() => {
            Kind::Batch(BatchId(id.to_owned()))
        }
        _ => Kind::Foreign,
    }
}

/// The window start of a batch file's `YYYYMMDDTHHMMZ` stamp.
pub fn window_of_stamp(stamp: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%MZ")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

/// The time range `[start, end)` of a Hive partition path (`year=…/month=…[/day=…[/hour=…]]`,
/// other levels such as `server=` ignored), Unix seconds.
pub fn partition_range(rel: &str) -> Option<(i64, i64)> {
    let mut parts: BTreeMap<&str, u32> = BTreeMap::new();
    for seg in rel.split('/') {
        if let Some((k, v)) = seg.split_once('=')
            && matches!(k, "year" | "month" | "day" | "hour")
        {
            parts.insert(k, v.parse().ok()?);
        }
    }
    let year = *parts.get("year")? as i32;
    let month = *parts.get("month")?;
    let start_of = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp());
    match (parts.get("day"), parts.get("hour")) {
        (Some(&day), hour) => {
            let s = start_of(NaiveDate::from_ymd_opt(year, month, day)?)?;
            Some(match hour {
                Some(&h) if h < 24 => (s + h as i64 * 3600, s + (h as i64 + 1) * 3600),
                Some(_) => return None,
                None => (s, s + 86_400),
            })
        }
        (None, _) => {
            let s = start_of(NaiveDate::from_ymd_opt(year, month, 1)?)?;
            let next = match month {
                12 => NaiveDate::from_ymd_opt(year + 1, 1, 1)?,
                m => NaiveDate::from_ymd_opt(year, m + 1, 1)?,
            };
            Some((s, start_of(next)?))
        }
    }
}

fn join(prefix: &str, rel: &str) -> String {
    let prefix = prefix.trim_matches('/');
    match prefix.is_empty() {
        true => rel.to_owned(),
        false => format!("{prefix}/{rel}"),
    }
}

/// Our Parquet files under `prefix`, recursively (`_`/`.`-prefixed names and folders skipped).
async fn list(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<File>> {
    let metas: Vec<_> = store.list(Some(&key_path(prefix))).try_collect().await?;
    let mut files: Vec<File> = metas
        .into_iter()
        .filter_map(|m| {
            let key = m.location.to_string();
            let rel = key.strip_prefix(prefix.trim_matches('/')).unwrap_or(&key);
            if rel
                .split('/')
                .any(|seg| seg.starts_with('_') || seg.starts_with('.'))
                || !key.ends_with(".parquet")
            {
                return None;
            }
            let (dir, name) = key.rsplit_once('/').unwrap_or(("", &key));
            Some(File {
                name: name.to_owned(),
                dir: dir.to_owned(),
                size: m.size,
                last_modified: m.last_modified.timestamp(),
                key,
            })
        })
        .collect();
    files.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(files)
}

/// The partitions of `source` that look due (closed, and more than one file, or batch files to
/// re-window): one job each. [`run_partition`] decides for certain, under the partition's lease.
/// `monthly` is the store of the monthly table ([`Level::Month`]; else unused).
pub async fn plan(
    store: &dyn ObjectStore,
    monthly: &dyn ObjectStore,
    source: SourceKind,
    level: Level,
    opts: &RollupOptions,
    now: i64,
) -> Result<Vec<PartitionJob>> {
    let dataset = crate::source::implementation(source).dataset();
    let table = join(&opts.output_prefix, dataset);
    let files = list(store, &table).await?;
    // Group by the folder written: the file's own folder, or its month's monthly folder.
    let mut groups: BTreeMap<(String, String), Vec<&File>> = BTreeMap::new();
    for f in &files {
        let rel = f
            .dir
            .strip_prefix(&table)
            .unwrap_or(&f.dir)
            .trim_matches('/');
        let (partition, input) = match level {
            Level::Native => (f.dir.clone(), f.dir.clone()),
            Level::Month => {
                let Some(month) = month_of(rel) else { continue };
                let into = opts.monthly_prefix.as_deref().unwrap_or("");
                (
                    join(into, &format!("{MONTHLY_DATASET}/{month}")),
                    join(&table, &month),
                )
            }
        };
        groups.entry((partition, input)).or_default().push(f);
    }
    let mut jobs = Vec::new();
    for ((partition, input), group) in groups {
        let rel = input.strip_prefix(&table).unwrap_or(&input);
        let Some((_, end)) = partition_range(rel) else {
            continue;
        };
        let newest = group.iter().map(|f| f.last_modified).max().unwrap_or(0);
        if !closed(end, newest, opts.min_age_secs, now) {
            continue;
        }
        let due = match level {
            Level::Native => needs_rollup(group.iter().map(|f| f.name.as_str()), opts.merge_window),
            // A month is due when any of its files is newer than the monthly output.
            Level::Month => {
                let written = list(monthly, &partition).await?;
                let output = written.iter().map(|f| f.last_modified).min();
                output.is_none_or(|t| newest >= t)
            }
        };
        if due {
            jobs.push(PartitionJob {
                v: 1,
                source,
                level,
                partition,
                input,
            });
        }
    }
    Ok(jobs)
}

/// Whether a partition holding these files is rewritten in place: it holds more than one file
/// and they are not the parts of one rollup — or, with a merge window, batch files remain.
fn needs_rollup<'a>(names: impl Iterator<Item = &'a str>, merge_window: Option<i64>) -> bool {
    let kinds: Vec<Kind> = names.map(kind_of).collect();
    let rollups: HashSet<&str> = kinds
        .iter()
        .filter_map(|k| match k {
            Kind::Rollup(id) => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let batches = kinds.iter().any(|k| matches!(k, Kind::Batch(_)));
    let one_rollup = !batches && rollups.len() == 1;
    (kinds.len() > 1 && !one_rollup) || (merge_window.is_some() && batches)
}

fn closed(end: i64, newest: i64, min_age: i64, now: i64) -> bool {
    end.saturating_add(min_age) <= now && newest.saturating_add(min_age) <= now
}

/// `year=YYYY/month=MM` of a partition path below the table.
fn month_of(rel: &str) -> Option<String> {
    let mut it = rel.split('/');
    let (y, m) = (it.next()?, it.next()?);
    (y.starts_with("year=") && m.starts_with("month=")).then(|| format!("{y}/{m}"))
}

/// Rolls up one partition (the protocol in the module's notes): `job.input` is read from `input`,
/// `job.partition` written in `output` (the same store but for the monthly table, which may live
/// elsewhere). `owner` names this runner in the lease.
pub async fn run_partition(
    input: Arc<dyn ObjectStore>,
    output: Arc<dyn ObjectStore>,
    batches: &dyn ClaimLedger,
    ledger: &dyn RollupLedger,
    job: &PartitionJob,
    opts: &RollupOptions,
    owner: &str,
) -> Result<RollupOutcome> {
    let now = || Utc::now().timestamp();
    let lease = |t: i64| t + opts.lease_secs.max(1);
    let led = |e: crate::ports::LedgerError| Error::Ledger(e.to_string());
    // Taking over: as if every other lease were over.
    let over_at = match opts.take_over_leases {
        true => i64::MAX,
        false => now(),
    };
    let Some(current) = ledger
        .lease_partition(&job.partition, owner, lease(now()), over_at)
        .await
        .map_err(led)?
    else {
        return Ok(RollupOutcome::Busy);
    };
    let stores = Stores { input, output };
    let outcome = roll(&stores, batches, ledger, job, opts, owner, current).await;
    // The lease is released whatever happened: a failed rollup is retried by the next job.
    ledger
        .release_partition(&job.partition, owner)
        .await
        .map_err(led)?;
    outcome
}

struct Stores {
    input: Arc<dyn ObjectStore>,
    output: Arc<dyn ObjectStore>,
}

#[allow(clippy::too_many_arguments)]
async fn roll(
    stores: &Stores,
    batches: &dyn ClaimLedger,
    ledger: &dyn RollupLedger,
    job: &PartitionJob,
    opts: &RollupOptions,
    owner: &str,
    current: Option<RollupRecord>,
) -> Result<RollupOutcome> {
    let now = || Utc::now().timestamp();
    let led = |e: crate::ports::LedgerError| Error::Ledger(e.to_string());
    let lost = || Error::Ledger(format!("{}: the partition's lease was lost", job.partition));
    let put = |rec: RollupRecord| async move {
        match ledger.put_rollup(&rec, owner, now()).await.map_err(led)? {
            true => Ok(()),
            false => Err(lost()),
        }
    };

    // 1. An interrupted rollup first.
    let mut recovered = false;
    let mut writing_id = None;
    if let Some(rec) = current {
        match rec.state {
            RollupState::Committed => {
                delete_all(&*stores.output, &job.partition, &rec.replaced).await?;
                put(RollupRecord {
                    state: RollupState::Done,
                    ..rec
                })
                .await?;
                recovered = true;
            }
            RollupState::Writing => {
                delete_all(&*stores.output, &job.partition, &rec.outputs).await?;
                writing_id = Some(rec.id.clone());
                put(RollupRecord {
                    state: RollupState::Aborted,
                    ..rec
                })
                .await?;
                recovered = true;
            }
            // An abandoned attempt's files (a runner that outlived its lease) are not data.
            RollupState::Aborted => writing_id = Some(rec.id),
            RollupState::Done => {}
        }
    }

    // 2. What is there.
    let table = join(
        &opts.output_prefix,
        crate::source::implementation(job.source).dataset(),
    );
    let listed = list(&*stores.input, &job.input).await?;
    let mut report = RollupReport {
        partition: job.partition.clone(),
        recovered,
        ..Default::default()
    };
    let mut inputs = Vec::new();
    for f in &listed {
        match kind_of(&f.name) {
            Kind::Foreign => report.foreign += 1,
            // Outputs of an abandoned attempt (a runner whose lease ran out) are not data.
            Kind::Rollup(id) if writing_id.as_deref() == Some(id.as_str()) => {
                delete_all(&*stores.input, &f.dir, std::slice::from_ref(&f.name)).await?;
            }
            Kind::Rollup(_) => inputs.push(f.clone()),
            Kind::Batch(id) => {
                let state = batches.batch(&id).await.map_err(led)?.map(|b| b.state);
                match state {
                    // A batch the ledger no longer knows (expired, or another ledger's) wrote
                    // its file long ago: data.
                    None | Some(BatchState::Committed) => inputs.push(f.clone()),
                    Some(_) => report.in_flight += 1,
                }
            }
        }
    }
    let skipped = |reason| Ok(RollupOutcome::Skipped { reason, recovered });
    let rel = job.input.strip_prefix(&table).unwrap_or(&job.input);
    let Some((_, end)) = partition_range(rel) else {
        return skipped("not a partition path");
    };
    let newest = listed.iter().map(|f| f.last_modified).max().unwrap_or(0);
    if !closed(end, newest, opts.min_age_secs, now()) {
        return skipped("not closed yet");
    }
    if inputs.is_empty() {
        return skipped("no data");
    }
    let id = rollup_id(job, opts, &inputs);
    let bytes_in: u64 = inputs.iter().map(|f| f.size).sum();
    let parts = bytes_in.div_ceil(opts.target_size.max(1)).max(1);
    let outputs: Vec<String> = (0..parts)
        .map(|i| format!("{ROLLUP_FILE_PREFIX}{id}-{i:04}.parquet"))
        .collect();
    let existing: Vec<File> = match job.level {
        Level::Native => Vec::new(),
        Level::Month => list(&*stores.output, &job.partition).await?,
    };
    let replaced: Vec<String> = match job.level {
        Level::Native => {
            if !needs_rollup(inputs.iter().map(|f| f.name.as_str()), opts.merge_window) {
                return skipped("rolled up already");
            }
            inputs.iter().map(|f| f.name.clone()).collect()
        }
        Level::Month => {
            let have: HashSet<&str> = existing.iter().map(|f| f.name.as_str()).collect();
            if have.len() == outputs.len() && outputs.iter().all(|o| have.contains(o.as_str())) {
                return skipped("rolled up already");
            }
            existing
                .iter()
                .map(|f| f.name.clone())
                .filter(|n| !outputs.contains(n))
                .collect()
        }
    };
    report.id = id.clone();
    report.inputs = inputs.len() as u64;
    report.bytes_in = bytes_in;

    // 3. Read, merge, write, commit, delete.
    let span =
        tracing::info_span!("rollup", partition = %job.partition, id = %id, inputs = inputs.len());
    // Inputs larger together than an eighth of the limit wait on local disk.
    let dir = match bytes_in > opts.memory_limit / 8 {
        true => Some(Arc::new(SpillDir::new(&opts.spill_dir)?)),
        false => None,
    };
    let source = crate::source::implementation(job.source);
    let remerge = crate::source::RemergeOptions {
        merge_window: opts.merge_window,
    };
    let (memory_limit, spill_dir, parts) =
        (opts.memory_limit, opts.spill_dir.clone(), outputs.len());
    let read_and_merge = async {
        let files = fetch_all(&stores.input, &inputs, opts.fetch_concurrency, dir.clone()).await?;
        tokio::task::spawn_blocking(move || {
            merge_partition(
                source,
                files,
                &remerge,
                memory_limit,
                &spill_dir,
                dir,
                parts,
            )
        })
        .await?
    };
    let renew = || async {
        match ledger
            .lease_partition(&job.partition, owner, now() + opts.lease_secs.max(1), now())
            .await
            .map_err(led)?
        {
            Some(_) => Ok(()),
            None => Err(lost()),
        }
    };
    // The lease is renewed while a large partition is fetched and merged, so that another runner
    // does not take it meanwhile, and once more before writing.
    let every = std::time::Duration::from_secs((opts.lease_secs / 3).max(1) as u64);
    let merged = keeping_lease(read_and_merge.instrument(span.clone()), renew, every).await?;
    renew().await?;
    report.rows_in = merged.rows_in;
    report.rows_out = merged.rows_out;
    report.buckets = merged.buckets;
    let mut rec = RollupRecord {
        partition: job.partition.clone(),
        id: id.clone(),
        state: RollupState::Writing,
        source: job.source,
        outputs: outputs.clone(),
        replaced: replaced.clone(),
        inputs: inputs.len() as u64,
        rows: merged.rows_out,
    };
    put(rec.clone()).await?;
    // Every part is encoded before the first PUT: the window in which a reader may see rows
    // twice (from the first PUT to the last delete) holds only requests, no encoding.
    let written = match merged.rows {
        Merge::AtOnce(merged) => {
            let height = merged.height();
            let per_part = height.div_ceil(outputs.len()).max(1);
            let mut bodies = Vec::with_capacity(outputs.len());
            for i in 0..outputs.len() {
                let mut part = merged.slice((i * per_part) as i64, per_part);
                let body =
                    tokio::task::spawn_blocking(move || write_parquet(&mut part, Effort::Rollup))
                        .await??;
                bodies.push(Written::Body(body));
            }
            bodies
        }
        Merge::Written(files) => files,
    };
    let exposed = std::time::Instant::now();
    let keys: Vec<String> = outputs
        .iter()
        .map(|name| format!("{}/{name}", job.partition))
        .collect();
    report.bytes_out = written.iter().map(Written::len).sum();
    let puts: Vec<_> = keys
        .iter()
        .zip(written)
        .map(|(key, written)| {
            let (store, path) = (Arc::clone(&stores.output), key_path(key));
            async move { upload(&*store, &path, written).await }
        })
        .collect();
    futures::stream::iter(puts)
        .buffer_unordered(4)
        .try_collect::<Vec<_>>()
        .instrument(span.clone())
        .await?;
    report.outputs = keys;
    fault::point("rollup-after-write");
    rec.state = RollupState::Committed;
    put(rec.clone()).await?;
    fault::point("rollup-after-commit");
    // The first file alone, so that a crash can be injected between deletes; the rest at once.
    let (first, rest) = replaced.split_at(replaced.len().min(1));
    delete_all(&*stores.output, &job.partition, first).await?;
    fault::point("rollup-during-deletes");
    delete_all(&*stores.output, &job.partition, rest).await?;
    report.deleted = replaced
        .iter()
        .map(|name| format!("{}/{name}", job.partition))
        .collect();
    report.exposed_ms = exposed.elapsed().as_millis() as u64;
    rec.state = RollupState::Done;
    put(rec).await?;
    tracing::info!(partition = %job.partition, id = %id, inputs = report.inputs, rows = report.rows_out, "rolled up");
    Ok(RollupOutcome::Rolled(report))
}

/// A hash of what the rollup reads and how it merges: equal inputs give equal output names.
fn rollup_id(job: &PartitionJob, opts: &RollupOptions, inputs: &[File]) -> String {
    let mut h = Sha256::new();
    h.update(b"flowmerge-rollup-v1\0");
    h.update(job.partition.as_bytes());
    h.update([0]);
    h.update(opts.merge_window.unwrap_or(0).to_be_bytes());
    h.update(opts.target_size.to_be_bytes());
    for f in inputs {
        h.update(f.key.as_bytes());
        h.update([0]);
        h.update(f.size.to_be_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

/// Deletes `names` in `dir` with the store's bulk delete (S3's DeleteObjects, 1,000 keys a call);
/// one that is gone already is fine (a retry of the deletes).
async fn delete_all(store: &dyn ObjectStore, dir: &str, names: &[String]) -> Result<()> {
    let paths: Vec<object_store::Result<object_store::path::Path>> = names
        .iter()
        .map(|n| Ok(key_path(&format!("{dir}/{n}"))))
        .collect();
    let results: Vec<_> = store
        .delete_stream(futures::stream::iter(paths).boxed())
        .collect()
        .await;
    for r in results {
        match r {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Runs `work`, calling `renew` (the partition's lease) every `every` meanwhile; a renewal that
/// fails fails the rollup. A merge already running on a blocking thread finishes on its own.
async fn keeping_lease<T, R>(
    work: impl std::future::Future<Output = Result<T>>,
    renew: impl Fn() -> R,
    every: std::time::Duration,
) -> Result<T>
where
    R: std::future::Future<Output = Result<()>>,
{
    let mut work = std::pin::pin!(work);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = ticks.tick() => renew().await?,
        }
    }
}

/// A partition's rows merged: at once, or in buckets and written already.
struct Merged {
    rows: Merge,
    rows_in: u64,
    rows_out: u64,
    buckets: u64,
}

enum Merge {
    AtOnce(DataFrame),
    /// The output files, in order.
    Written(Vec<Written>),
}

/// Merges a partition's files: at once while their rows are estimated at no more than a quarter
/// of `memory_limit`, else in buckets ([`spill::merge_in_buckets`]) written as `outputs` files.
fn merge_partition(
    source: &'static dyn crate::source::Source,
    files: Vec<spill::Input>,
    remerge: &crate::source::RemergeOptions,
    memory_limit: u64,
    spill_dir: &std::path::Path,
    dir: Option<Arc<SpillDir>>,
    outputs: usize,
) -> Result<Merged> {
    let footers = files
        .iter()
        .map(spill::Input::metadata)
        .collect::<Result<Vec<_>>>()?;
    let estimate = footers
        .iter()
        .map(|(m, _)| spill::file_estimate(m))
        .sum::<u64>();
    let rows_in = footers.iter().map(|(m, _)| m.num_rows as u64).sum();
    if estimate <= memory_limit / spill::AT_ONCE_SHARE {
        let frames = files
            .iter()
            .zip(&footers)
            .map(|(f, (footer, _))| Ok((f.name.clone(), f.read(None, Some(footer))?)))
            .collect::<Result<Vec<_>>>()?;
        drop(files);
        let merged = source.remerge(frames, remerge)?;
        return Ok(Merged {
            rows_in,
            rows_out: merged.height() as u64,
            rows: Merge::AtOnce(merged),
            buckets: 0,
        });
    }
    let dir = match dir {
        Some(dir) => dir,
        None => Arc::new(SpillDir::new(spill_dir)?),
    };
    tracing::info!(
        estimate,
        memory_limit,
        "rows too many to merge at once: merging in buckets"
    );
    let (written, rows_out, parts) = spill::merge_in_buckets(
        source,
        &files,
        footers,
        remerge,
        memory_limit,
        &dir,
        outputs,
    )?;
    Ok(Merged {
        rows_in,
        rows_out,
        buckets: parts as u64,
        rows: Merge::Written(written),
    })
}

/// Fetches the inputs, in key order, a few at once: into memory, or with `dir` each to a file
/// of it as it streams in. A file that vanished fails the rollup (someone changed the partition
/// meanwhile): the next run starts over.
async fn fetch_all(
    store: &Arc<dyn ObjectStore>,
    inputs: &[File],
    concurrency: usize,
    dir: Option<Arc<SpillDir>>,
) -> Result<Vec<spill::Input>> {
    futures::stream::iter(inputs.iter().cloned())
        .map(|f| {
            let (store, dir) = (Arc::clone(store), dir.clone());
            async move {
                let got = store.get(&key_path(&f.key)).await?;
                let body = match dir {
                    None => spill::Body::Memory(got.bytes().await?),
                    Some(dir) => {
                        let (path, file) = dir.create_file()?;
                        let mut file = tokio::fs::File::from_std(file);
                        let mut stream = got.into_stream();
                        while let Some(chunk) = stream.next().await {
                            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk?)
                                .await
                                .map_err(|e| spill_error(&path, e))?;
                        }
                        tokio::io::AsyncWriteExt::flush(&mut file)
                            .await
                            .map_err(|e| spill_error(&path, e))?;
                        spill::Body::Disk(path)
                    }
                };
                Ok::<_, Error>(spill::Input {
                    key: f.key,
                    name: f.name,
                    body,
                })
            }
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_paths_give_their_time_range() {
        let day = 86_400;
        let nov1 = 1_793_491_200; // 2026-11-01T00:00Z
        assert_eq!(
            partition_range("year=2026/month=11/day=01/hour=02"),
            Some((nov1 + 7200, nov1 + 10_800))
        );
        assert_eq!(
            partition_range("/year=2026/month=11/day=01/server=ns1"),
            Some((nov1, nov1 + day))
        );
        assert_eq!(
            partition_range("year=2026/month=11"),
            Some((nov1, nov1 + 30 * day))
        );
        assert_eq!(
            partition_range("year=2026/month=12").map(|r| r.1 - r.0),
            Some(31 * day)
        );
        assert_eq!(partition_range("year=2026/month=13"), None);
        assert_eq!(partition_range("year=2026/month=11/day=01/hour=24"), None);
        assert_eq!(partition_range("flat"), None);
    }

    #[test]
    fn file_names_say_what_wrote_them() {
        assert_eq!(
            kind_of("20261101T0005Z-0123456789abcdef.parquet"),
            Kind::Batch(BatchId("0123456789abcdef".into()))
        );
        assert_eq!(
            kind_of("rollup-89abcdef01234567-0000.parquet"),
            Kind::Rollup("89abcdef01234567".into())
        );
        assert_eq!(kind_of("part-00000.parquet"), Kind::Foreign);
        assert_eq!(kind_of("20261101T0005Z-x.csv"), Kind::Foreign);
        assert_eq!(window_of_stamp("20261101T0005Z"), Some(1_793_491_500));
    }

    /// The lease is renewed while the work runs, and a renewal that fails ends the wait with its
    /// error even if the work would never end.
    #[tokio::test]
    async fn a_long_rollup_keeps_renewing_its_lease_and_stops_when_it_is_lost() {
        let every = std::time::Duration::from_millis(1);
        let renewed = std::sync::atomic::AtomicUsize::new(0);
        let (done, finished) = tokio::sync::watch::channel(0usize);
        // The work ends once the lease has been renewed three times.
        let work = async {
            let mut finished = finished.clone();
            finished
                .wait_for(|n| *n >= 3)
                .await
                .map_err(|e| Error::Rollup(e.to_string()))?;
            Ok("merged")
        };
        let renew = || async {
            let n = renewed.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            done.send_replace(n);
            Ok(())
        };
        // A bound, not a synchronisation: the work ends on the renewals alone.
        let kept = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            keeping_lease(work, renew, every),
        )
        .await;
        assert_eq!(kept.ok().and_then(|r| r.ok()), Some("merged"));
        assert!(renewed.load(std::sync::atomic::Ordering::SeqCst) >= 3);

        let lost = || async { Err(Error::Ledger("the partition's lease was lost".into())) };
        let never = std::future::pending::<Result<()>>();
        let stopped = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            keeping_lease(never, lost, every),
        )
        .await;
        match stopped {
            Ok(Err(Error::Ledger(e))) => assert!(e.contains("lost"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn closed_needs_the_time_over_and_the_newest_file_old_enough() {
        assert!(closed(100, 50, 10, 110));
        assert!(!closed(100, 50, 10, 109));
        assert!(!closed(100, 105, 10, 110));
        assert!(closed(100, 105, 0, 105));
    }
}
