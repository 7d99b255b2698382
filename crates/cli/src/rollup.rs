//! `flowmerge rollup OUTPUT`: compacts the closed partitions of compact's tables into one file
//! each (or parts of at most `--target-size`), through each source's own merge, and deletes the
//! files they replace — crash-safe and idempotent (`flowmerge_core::rollup`). With `--level
//! month --into PREFIX`, CloudTrail's closed months go into their own table instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use flowmerge_core::batch::SourceKind;
use flowmerge_core::memory::default_memory_limit;
use flowmerge_core::rollup::{
    Level, PartitionJob, RollupOptions, RollupOutcome, plan, run_partition,
};
use flowmerge_local::SqliteLedger;
use futures::StreamExt;
use serde::Serialize;

use crate::{store, usage};

fn source_arg(text: &str) -> std::result::Result<SourceKind, String> {
    SourceKind::parse(text)
        .ok_or_else(|| format!("{text:?} is not one of vpcflow, cloudtrail, dns"))
}

fn level_arg(text: &str) -> std::result::Result<Level, String> {
    Level::parse(text).ok_or_else(|| format!("{text:?} is not one of native, month"))
}

fn duration_arg(text: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))
}

/// A size with its unit (`512MiB`, `1GiB`, or bytes), more than 0.
pub(crate) fn size_arg(text: &str) -> std::result::Result<u64, String> {
    match text.parse::<bytesize::ByteSize>() {
        Ok(b) if b.as_u64() > 0 => Ok(b.as_u64()),
        Ok(_) => Err("must be more than 0".into()),
        Err(e) => Err(format!("{text:?}: {e} (e.g. 512MiB, 1GiB)")),
    }
}

fn merge_window_arg(text: &str) -> std::result::Result<i64, String> {
    flowmerge_core::window::window_size(text).map_err(|e| e.to_string())
}

#[derive(Args, Debug)]
pub struct RollupArgs {
    /// compact's OUTPUT: a directory or object-store URL.
    pub output: String,
    /// The tables to roll up (repeat, or comma-separate) [default: all].
    #[arg(long = "source", value_delimiter = ',', value_parser = source_arg, value_name = "SOURCE")]
    pub sources: Vec<SourceKind>,
    /// A partition is closed, and rolled up, once its hour (flow logs) or day (CloudTrail, DNS)
    /// is over and its newest file is older than this.
    #[arg(long, default_value = "1h", value_parser = duration_arg, value_name = "DURATION")]
    pub min_age: Duration,
    /// Outputs larger than this (estimated from the inputs' size) are split into parts.
    #[arg(long, default_value = "512MiB", value_parser = size_arg, value_name = "SIZE")]
    pub target_size: u64,
    /// Flow logs: merge rows into windows of this size (e.g. 1h for hourly rows) instead of their
    /// batch windows; must divide an hour. Use one value for a table's whole life.
    #[arg(long, value_parser = merge_window_arg, value_name = "DURATION")]
    pub merge_window: Option<i64>,
    /// native: each partition in place (hours of flow logs, days of CloudTrail and DNS). month:
    /// CloudTrail's closed months into the table `--into PREFIX/cloudtrail_monthly/`.
    #[arg(long, default_value = "native", value_parser = level_arg, value_name = "LEVEL")]
    pub level: Level,
    /// With `--level month`: a directory or object-store URL the monthly table goes under.
    #[arg(long, value_name = "PREFIX")]
    pub into: Option<String>,
    /// SQLite ledger of compact [default: OUTPUT/_flowmerge/ledger.sqlite for a local OUTPUT;
    /// required otherwise].
    #[arg(long)]
    pub ledger: Option<std::path::PathBuf>,
    /// Partitions rolled up at once.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Peak memory of the partitions rolled up at once (split between them), e.g. 768MiB or
    /// 4GiB. A partition whose rows are estimated at more than a quarter of its share is merged in
    /// buckets on --spill-dir, each bucket a sorted part of the output [default: 60% of the
    /// cgroup's memory limit, or of the machine's memory].
    #[arg(long, env = "FLOWMERGE_MEMORY_LIMIT", value_parser = size_arg, value_name = "SIZE")]
    pub memory_limit: Option<u64>,
    /// Where large rollups fetch their inputs and deal their buckets [default: the system's
    /// temporary folder].
    #[arg(long, env = "FLOWMERGE_SPILL_DIR", value_name = "DIR")]
    pub spill_dir: Option<std::path::PathBuf>,
    /// Print the summary as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What a run did.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub output: String,
    /// Partitions that looked due.
    pub partitions_due: u64,
    pub partitions_rolled: u64,
    /// Due partitions that turned out to need nothing (rolled up already, or not closed).
    pub partitions_skipped: u64,
    /// Partitions another rollup held.
    pub partitions_busy: u64,
    /// Rollups a crash had interrupted, finished or undone by this run.
    pub recovered: u64,
    pub files_in: u64,
    pub files_out: u64,
    pub files_deleted: u64,
    pub rows_in: u64,
    pub rows_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Files of batches still being merged: left for the next run.
    pub files_in_flight: u64,
    /// Files flowmerge did not write: never touched.
    pub files_foreign: u64,
    /// The longest time, in milliseconds, a partition held both a rollup's outputs and the files
    /// they replace (from the first PUT to the last delete).
    pub max_exposed_ms: u64,
    /// Partitions too large to merge at once, merged in buckets on local disk.
    pub partitions_in_buckets: u64,
    pub elapsed_seconds: f64,
    pub output_keys: Vec<String>,
    pub failures: Vec<String>,
}

pub async fn run(args: RollupArgs) -> Result<Summary> {
    let started = Instant::now();
    if args.concurrency == 0 {
        return Err(usage("--concurrency must be at least 1"));
    }
    if args.merge_window.is_some()
        && !args.sources.is_empty()
        && !args.sources.contains(&SourceKind::Vpcflow)
    {
        return Err(usage(
            "--merge-window applies to flow logs (--source vpcflow)",
        ));
    }
    let sources: Vec<SourceKind> = match (args.level, args.sources.is_empty()) {
        (Level::Month, _) => {
            if args.sources.iter().any(|s| *s != SourceKind::Cloudtrail) {
                return Err(usage(
                    "--level month is for CloudTrail only (--source cloudtrail)",
                ));
            }
            vec![SourceKind::Cloudtrail]
        }
        (Level::Native, true) => SourceKind::ALL.to_vec(),
        (Level::Native, false) => args.sources.clone(),
    };
    let output = store::open("OUTPUT", &args.output, false)?;
    store::preflight("OUTPUT", &output).await?;
    let monthly = match (args.level, &args.into) {
        (Level::Month, None) => {
            return Err(usage(
                "--level month needs --into PREFIX (where the monthly table goes)",
            ));
        }
        (Level::Month, Some(into)) => {
            let loc = store::open("--into", into, true)?;
            store::preflight("--into", &loc).await?;
            Some(loc)
        }
        (Level::Native, Some(_)) => return Err(usage("--into goes with --level month")),
        (Level::Native, None) => None,
    };
    let ledger_path = match (&args.ledger, &output.local_dir) {
        (Some(p), _) => p.clone(),
        (None, Some(dir)) => dir.join("_flowmerge").join("ledger.sqlite"),
        (None, None) => {
            return Err(usage(
                "--ledger PATH is required when OUTPUT is not a local directory",
            ));
        }
    };
    if !ledger_path.exists() {
        return Err(usage(format!(
            "{}: no ledger (run flowmerge compact into OUTPUT first, or name it with --ledger)",
            ledger_path.display()
        )));
    }
    // One rollup per ledger at a time: with the lock held, a lease someone else holds in the
    // ledger is a crashed run's, and is taken over instead of waited out.
    let lock_path = ledger_path.with_extension("rollup.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("{}: cannot create", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(usage(format!(
                "another flowmerge rollup is running on {} (it holds {})",
                ledger_path.display(),
                lock_path.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(anyhow::Error::new(e).context(format!("locking {}", lock_path.display())));
        }
    }
    let ledger = Arc::new(SqliteLedger::open(&ledger_path)?);
    let opts = RollupOptions {
        output_prefix: output.prefix.clone(),
        min_age_secs: args.min_age.as_secs() as i64,
        target_size: args.target_size,
        merge_window: args.merge_window,
        monthly_prefix: monthly.as_ref().map(|m| m.prefix.clone()),
        take_over_leases: true,
        memory_limit: args.memory_limit.unwrap_or_else(default_memory_limit)
            / args.concurrency as u64,
        spill_dir: args.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
        ..RollupOptions::default()
    };
    let written = monthly.as_ref().map_or(&output.store, |m| &m.store);
    let now = chrono::Utc::now().timestamp();
    let mut jobs: Vec<PartitionJob> = Vec::new();
    for source in sources {
        let mut source_opts = opts.clone();
        if source != SourceKind::Vpcflow {
            source_opts.merge_window = None;
        }
        jobs.extend(
            plan(
                &*output.store,
                &**written,
                source,
                args.level,
                &source_opts,
                now,
            )
            .await
            .with_context(|| format!("listing the {source} table in {}", output.display))?,
        );
    }
    let owner = format!(
        "rollup-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let mut summary = Summary {
        output: output.display.clone(),
        partitions_due: jobs.len() as u64,
        ..Default::default()
    };
    let outcomes: Vec<(PartitionJob, _)> = futures::stream::iter(jobs)
        .map(|job| {
            let (input, out) = (Arc::clone(&output.store), Arc::clone(written));
            let (ledger, owner) = (Arc::clone(&ledger), owner.clone());
            let mut opts = opts.clone();
            if job.source != SourceKind::Vpcflow {
                opts.merge_window = None;
            }
            async move {
                let r = run_partition(input, out, &*ledger, &*ledger, &job, &opts, &owner).await;
                (job, r)
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    for (job, outcome) in outcomes {
        match outcome {
            Ok(RollupOutcome::Rolled(r)) => {
                summary.partitions_rolled += 1;
                summary.recovered += u64::from(r.recovered);
                summary.files_in += r.inputs;
                summary.files_out += r.outputs.len() as u64;
                summary.files_deleted += r.deleted.len() as u64;
                summary.rows_in += r.rows_in;
                summary.rows_out += r.rows_out;
                summary.bytes_in += r.bytes_in;
                summary.bytes_out += r.bytes_out;
                summary.files_in_flight += r.in_flight;
                summary.files_foreign += r.foreign;
                summary.max_exposed_ms = summary.max_exposed_ms.max(r.exposed_ms);
                summary.partitions_in_buckets += u64::from(r.buckets > 0);
                summary.output_keys.extend(r.outputs);
            }
            Ok(RollupOutcome::Skipped { recovered, .. }) => {
                summary.partitions_skipped += 1;
                summary.recovered += u64::from(recovered);
            }
            Ok(RollupOutcome::Busy) => summary.partitions_busy += 1,
            Err(e) => summary.failures.push(format!("{}: {e:#}", job.partition)),
        }
    }
    drop(lock);
    summary.output_keys.sort();
    summary.failures.sort();
    summary.elapsed_seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

pub fn render(s: &Summary) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut out = format!(
        "rolled up {} of {} due partitions of {} ({} skipped, {} busy, {} recovered): \
         {} files ({:.1} MiB, {} rows) into {} ({:.1} MiB, {} rows), {} deleted, in {:.1}s\n",
        s.partitions_rolled,
        s.partitions_due,
        s.output,
        s.partitions_skipped,
        s.partitions_busy,
        s.recovered,
        s.files_in,
        mib(s.bytes_in),
        s.rows_in,
        s.files_out,
        mib(s.bytes_out),
        s.rows_out,
        s.files_deleted,
        s.elapsed_seconds
    );
    if s.files_in_flight > 0 {
        out.push_str(&format!(
            "{} files of batches still being merged were left for the next run\n",
            s.files_in_flight
        ));
    }
    if s.partitions_in_buckets > 0 {
        out.push_str(&format!(
            "{} partitions too large to merge at once under the memory limit were merged in \
             buckets, each a sorted part of its file\n",
            s.partitions_in_buckets
        ));
    }
    for f in &s.failures {
        out.push_str(&format!("failed: {f}\n"));
    }
    out
}
