//! `flowmerge compact INPUT OUTPUT`: the whole pipeline on one machine. A planner lists INPUT,
//! keeps the objects the ledger has not seen, batches them per window, claims each batch and
//! queues it; workers merge batches concurrently and commit them. Batches a crash left claimed
//! but uncommitted are run again first, under the same id, so they overwrite their own output.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::Args;
use flowmerge_core::batch::{Batch, BatchLimits, ObjectRef, SourceKind, plan_batches};
use flowmerge_core::claim::claim_batch;
use flowmerge_core::exec::{
    BatchReport, ExecOptions, Executed, ProgressHook, execute, list_objects,
};
use flowmerge_core::formats::dns::DnsOptions;
use flowmerge_core::formats::vpcflow::ParseOptions;
use flowmerge_core::memory::{MemoryLimits, default_memory_limit};
use flowmerge_core::ports::{BatchState, ClaimLedger, JobQueue};
use flowmerge_core::source::{Class, SNIFF_BYTES, classify_key, sniff};
use flowmerge_core::store::key_path;
use flowmerge_core::window::window_size;
use flowmerge_local::ledger::Retry;
use flowmerge_local::{MemoryQueue, SqliteLedger};
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{store, usage};

/// `--window`: a duration with its unit that divides an hour.
fn window_arg(text: &str) -> std::result::Result<i64, String> {
    window_size(text).map_err(|e| e.to_string())
}

/// A count that must be at least 1.
fn positive(text: &str) -> std::result::Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{text:?} is not a whole number of at least 1")),
    }
}

/// `--dns-timeout`: a duration with its unit, in nanoseconds.
fn duration_ns(text: &str) -> std::result::Result<i64, String> {
    flowmerge_core::window::parse_duration(text)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .map_err(|e| e.to_string())
}

fn positive_u64(text: &str) -> std::result::Result<u64, String> {
    positive(text).map(|n| n as u64)
}

#[derive(Args, Debug)]
pub struct CompactArgs {
    /// Raw flow logs: a directory or object-store URL (file://, s3://bucket/prefix), listed
    /// recursively (AWS's AWSLogs/<account>/vpcflowlogs/<region>/YYYY/MM/DD/ layout or flat).
    pub input: String,
    /// Where Parquet goes: a directory or object-store URL.
    pub output: String,
    /// Window size, with its unit (30s, 1m, 5m, 15m, 1h); must divide an hour. Records merge
    /// only within the same window.
    #[arg(long, default_value = "5m", value_parser = window_arg, value_name = "DURATION")]
    pub window: i64,
    /// Field list for objects without a header line (AWS names, e.g. "version account-id ..."
    /// or the console's "${version} ${account-id} ..."). Without it, header-less objects must
    /// have the 14 default v2 fields.
    #[arg(long)]
    pub format: Option<String>,
    /// SQLite ledger of what was merged [default: OUTPUT/_flowmerge/ledger.sqlite for a local
    /// OUTPUT; required otherwise].
    #[arg(long)]
    pub ledger: Option<std::path::PathBuf>,
    /// Batches merged at once.
    #[arg(long, default_value_t = 2, value_parser = positive)]
    pub concurrency: usize,
    /// Objects fetched at once within a batch.
    #[arg(long, default_value_t = 32, value_parser = positive)]
    pub fetch_concurrency: usize,
    /// Most objects in one batch (one output file).
    #[arg(long, default_value_t = BatchLimits::default().max_objects, value_parser = positive)]
    pub batch_max_objects: usize,
    /// Most raw bytes in one batch, in MiB.
    #[arg(long, default_value_t = BatchLimits::default().max_bytes / (1024 * 1024), value_parser = positive_u64)]
    pub batch_max_mib: u64,
    /// DNS captures: UDP and TCP ports DNS is read on, comma-separated.
    #[arg(long, default_value = "53", value_parser = |t: &str| DnsOptions::parse_ports(t), value_name = "PORTS")]
    pub dns_ports: std::vec::Vec<u16>,
    /// DNS captures: how long (capture time) a query waits for its response before it becomes a
    /// `dns_rcode` -1 row.
    #[arg(long, default_value = "2s", value_parser = duration_ns, value_name = "DURATION")]
    pub dns_timeout: i64,
    /// DNS captures: the key folder whose child names the capture server (`…/dns/<server>/…`).
    #[arg(long, default_value = "dns", value_name = "NAME")]
    pub dns_server_folder: String,
    /// Try every quarantined object again (objects quarantined under other reading options,
    /// such as another --format, are tried again without it).
    #[arg(long)]
    pub retry_quarantined: bool,
    /// Delete each raw object from INPUT once its batch is committed (never before; quarantined
    /// objects are kept). Objects a crash left between a commit and their delete are deleted by
    /// the next run.
    #[arg(long)]
    pub delete_merged: bool,
    /// Peak memory of the batches merged at once (split between them), e.g. 768MiB or 4GiB.
    /// Beyond it folded flow keys spill to --spill-dir [default: 60% of the cgroup's memory
    /// limit, or of the machine's memory].
    #[arg(long, env = "FLOWMERGE_MEMORY_LIMIT", value_parser = crate::rollup::size_arg, value_name = "SIZE")]
    pub memory_limit: Option<u64>,
    /// Where merges spill [default: the system's temporary folder].
    #[arg(long, env = "FLOWMERGE_SPILL_DIR", value_name = "DIR")]
    pub spill_dir: Option<std::path::PathBuf>,
    /// An object that decodes to more than this is quarantined, one stored larger without being
    /// fetched [default: a quarter of a batch's memory limit per parsing thread, at least 16MiB].
    #[arg(long, value_parser = crate::rollup::size_arg, value_name = "SIZE")]
    pub max_object_size: Option<u64>,
    /// Print the summary as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What a run did, printed at the end.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub input: String,
    pub output: String,
    #[serde(skip)]
    pub output_prefix: String,
    pub batches: u64,
    pub batches_failed: u64,
    /// Objects merged (or quarantined) by this run.
    pub objects: u64,
    pub objects_quarantined: u64,
    /// Objects of INPUT that earlier runs merged: not read again.
    pub objects_already_merged: u64,
    /// Raw objects deleted from INPUT (`--delete-merged`).
    pub objects_deleted: u64,
    /// Objects read by this run that held no record.
    pub objects_empty: u64,
    /// Objects that are not data (CloudTrail digest and Insights files, JSON documents without
    /// records): skipped, never quarantined.
    pub objects_skipped: u64,
    /// Quarantined objects handed back for another try at the start of this run.
    pub quarantined_retried: u64,
    /// Objects quarantined in the ledger after this run (this run's and earlier runs').
    pub quarantined_remaining: u64,
    pub records_in: u64,
    pub rows_out: u64,
    pub files_out: u64,
    pub bytes_in: u64,
    pub decoded_bytes: u64,
    pub bytes_out: u64,
    pub elapsed_seconds: f64,
    pub output_keys: Vec<String>,
    pub quarantined: Vec<QuarantineLine>,
    pub empty: Vec<String>,
    /// Keys of the skipped objects, with why.
    pub skipped: Vec<String>,
    /// Records of read objects that are not data (non-DNS packets, malformed DNS messages).
    pub records_skipped: u64,
    /// Captures that end inside a packet (cut off); every complete packet was read.
    pub truncated: Vec<String>,
    /// Files written per table (`vpcflowlogs`, `cloudtrail`).
    pub tables: std::collections::BTreeMap<String, u64>,
    pub failures: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct QuarantineLine {
    pub key: String,
    pub reason: String,
}

impl Summary {
    fn add(&mut self, r: &BatchReport) {
        self.batches += 1;
        self.objects += r.objects;
        self.objects_quarantined += r.quarantined.len() as u64;
        self.objects_empty += r.empty.len() as u64;
        self.empty.extend(r.empty.iter().cloned());
        self.records_in += r.records_in;
        self.rows_out += r.rows_out;
        self.bytes_in += r.bytes_in;
        self.decoded_bytes += r.decoded_bytes;
        self.bytes_out += r.bytes_out;
        self.objects_skipped += r.skipped.len() as u64;
        self.records_skipped += r.skipped_records;
        self.truncated.extend(r.truncated.iter().cloned());
        self.skipped.extend(
            r.skipped
                .iter()
                .map(|k| format!("{k} (JSON without CloudTrail records)")),
        );
        for k in &r.output_keys {
            self.files_out += 1;
            self.output_keys.push(k.clone());
            if let Some(table) = table_of(k, &self.output_prefix) {
                *self.tables.entry(table).or_default() += 1;
            }
        }
        self.quarantined
            .extend(r.quarantined.iter().map(|q| QuarantineLine {
                key: q.object.key.clone(),
                reason: q.reason.clone(),
            }));
    }
}

/// The options objects are read with, as recorded beside quarantined objects: a change of them
/// makes the next run try those objects again.
fn read_options(parse: &ParseOptions) -> String {
    match &parse.headerless_format {
        None => String::new(),
        Some(fields) => format!("format={}", fields.join(",")),
    }
}

pub async fn run(args: CompactArgs) -> Result<Summary> {
    let started = Instant::now();
    let parse =
        ParseOptions::with_format(args.format.as_deref()).map_err(|e| usage(format!("--{e}")))?;
    if args.ledger.is_none() && !store::is_local(&args.output) {
        return Err(usage(format!(
            "--ledger PATH is required when OUTPUT ({}) is not a local directory",
            args.output
        )));
    }
    // Everything that can be checked is checked before the run writes anything.
    let input = store::open("INPUT", &args.input, false)?;
    store::preflight("INPUT", &input).await?;
    // A remote OUTPUT is opened (and checked) now; a local one is created only once the input
    // has been listed, so a run that cannot start leaves no directory behind.
    let remote_output = match store::is_local(&args.output) {
        true => None,
        false => {
            let output = store::open("OUTPUT", &args.output, false)?;
            store::preflight("OUTPUT", &output).await?;
            Some(output)
        }
    };
    let mut listed = list_objects(&*input.store, Some(&input.prefix))
        .await
        .map_err(|e| match e {
            flowmerge_core::Error::Store(e) => store::store_error("INPUT", &input.display, &e),
            other => anyhow!(other).context(format!("listing INPUT {}", input.display)),
        })?;

    let output = match remote_output {
        Some(output) => output,
        None => store::open("OUTPUT", &args.output, true)?,
    };
    let ledger_path = match (&args.ledger, &output.local_dir) {
        (Some(p), _) => p.clone(),
        (None, Some(dir)) => {
            let work = dir.join("_flowmerge");
            std::fs::create_dir_all(&work).with_context(|| format!("{}", work.display()))?;
            work.join("ledger.sqlite")
        }
        (None, None) => {
            return Err(usage(
                "--ledger PATH is required when OUTPUT is not a local directory",
            ));
        }
    };
    let ledger = Arc::new(SqliteLedger::open(&ledger_path)?.reading_with(read_options(&parse)));
    let limits = BatchLimits {
        max_objects: args.batch_max_objects,
        max_bytes: args.batch_max_mib * 1024 * 1024,
    };

    let quarantined_retried = ledger
        .release_quarantined(match args.retry_quarantined {
            true => Retry::All,
            false => Retry::OptionsChanged,
        })
        .await?;
    if let Some(dir) = &input.local_dir {
        identify_by_content(dir, &ledger, &mut listed).await?;
    }

    // Work a crash left behind first, then what is new.
    let pending = ledger.pending().await.map_err(|e| anyhow!(e))?;
    let listed_count = listed.len() as u64;
    let all_listed = match args.delete_merged {
        true => listed.clone(),
        false => Vec::new(),
    };
    let new = ledger.unclaimed(listed).await.map_err(|e| anyhow!(e))?;
    let objects_already_merged = listed_count - new.len() as u64;
    // Merged objects that a crash (or a run without --delete-merged) left behind.
    let leftovers_deleted = match args.delete_merged {
        true => delete_leftovers(&*input.store, &ledger, all_listed, &new).await?,
        false => 0,
    };
    // Each object's source: from its key, or from its first bytes when the key says nothing.
    // Digest and Insights files are not data: counted, never claimed.
    let (by_source, skipped) = sort_by_source(&*input.store, new).await?;
    let mut planned = Vec::new();
    for (kind, objects) in by_source {
        planned.extend(
            plan_batches(&input.scope, objects, args.window, limits)
                .into_iter()
                .map(|b| b.of_source(kind)),
        );
    }
    let (total_objects, total_bytes) = pending
        .iter()
        .chain(&planned)
        .flat_map(|b| &b.objects)
        .fold((0u64, 0u64), |(n, b), o| (n + 1, b + o.size));
    tracing::info!(
        pending = pending.len(),
        planned = planned.len(),
        objects = total_objects,
        "planned"
    );

    let progress = progress_bar(total_objects, total_bytes);
    // The in-process counterpart of the SQS merge queue (the same JobQueue port and suite).
    let queue = Arc::new(MemoryQueue::new());
    let producing = Arc::new(AtomicBool::new(true));
    // Told when the producer is done or a job is acknowledged: a worker waiting for a job then
    // looks again whether the run is over, instead of waiting out its poll.
    let settled = Arc::new(tokio::sync::Notify::new());
    let exec = ExecOptions {
        parse,
        dns: DnsOptions {
            ports: args.dns_ports.clone(),
            timeout_ns: args.dns_timeout,
            server_folder: args.dns_server_folder.clone(),
        },
        fetch_concurrency: args.fetch_concurrency,
        output_prefix: output.prefix.clone(),
        progress: Some(progress_hook(&progress, total_objects)),
        delete_merged: args.delete_merged,
        memory: MemoryLimits::new(
            args.memory_limit.unwrap_or_else(default_memory_limit) / args.concurrency as u64,
            args.spill_dir.clone(),
            args.max_object_size,
        ),
    };

    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (queue, producing) = (Arc::clone(&queue), Arc::clone(&producing));
            let settled = Arc::clone(&settled);
            let ledger = Arc::clone(&ledger);
            let (input, output) = (Arc::clone(&input.store), Arc::clone(&output.store));
            let exec = exec.clone();
            tokio::spawn(async move {
                let mut done: Vec<std::result::Result<BatchReport, String>> = Vec::new();
                loop {
                    let woken = settled.notified();
                    tokio::pin!(woken);
                    woken.as_mut().enable();
                    if !producing.load(Ordering::Acquire) && queue.is_idle() {
                        break;
                    }
                    // The in-process queue takes a job in one step: dropping the receive for
                    // the wake-up cannot lose one.
                    let received = tokio::select! {
                        r = queue.receive_jobs(1, Duration::from_millis(200), JOB_VISIBILITY) => r,
                        () = &mut woken => continue,
                    };
                    let delivery = match received {
                        Ok(mut d) if !d.is_empty() => d.remove(0),
                        Ok(_) => continue,
                        Err(e) => {
                            done.push(Err(format!("job queue: {e}")));
                            break;
                        }
                    };
                    let outcome = run_job(&delivery.body, &input, &output, &ledger, &exec).await;
                    match outcome {
                        Ok(Executed::Merged(report)) => done.push(Ok(report)),
                        // Pending batches are uncommitted by definition: nothing to count.
                        Ok(Executed::AlreadyCommitted) => {}
                        Err(e) => done.push(Err(e)),
                    }
                    // Done either way in this run: a failed batch stays claimed in the ledger
                    // and the next run retries it.
                    if let Err(e) = queue.ack(&delivery.receipt_handle).await {
                        done.push(Err(format!("job queue: {e}")));
                    }
                    settled.notify_waiters();
                }
                done
            })
        })
        .collect();

    let producer = async {
        let send = |batch: &Batch| {
            let body = serde_json::to_string(batch).map_err(|e| anyhow!(e));
            let queue = Arc::clone(&queue);
            async move { queue.send_job(&body?, &[]).await.map_err(|e| anyhow!(e)) }
        };
        for batch in pending {
            send(&batch).await?;
        }
        // The claim protocol of the mapper, with a lease that is over at once: compact sends
        // its batches itself in this run, and a run after a crash finishes (seals) what this
        // one left open without waiting. A lease only saves work; the conditions keep an
        // object in one batch even when runs overlap (docs/aws-protocol.md).
        let owner = format!(
            "compact-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_millis()
        );
        for batch in planned {
            let lease_until = chrono::Utc::now().timestamp() - 1;
            let claimed = claim_batch(
                &*ledger,
                &input.scope,
                &batch,
                &owner,
                lease_until,
                String::new(),
            )
            .await
            .map_err(|e| anyhow!(e))?;
            if claimed.to_send {
                let owned = Batch {
                    objects: claimed.owned(&batch),
                    ..batch
                };
                send(&owned).await?;
                ledger
                    .mark_queued(&owned.id)
                    .await
                    .map_err(|e| anyhow!(e))?;
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    let produced = producer.await;
    producing.store(false, Ordering::Release);
    settled.notify_waiters();

    let mut summary = Summary {
        input: input.display.clone(),
        output: output.display.clone(),
        output_prefix: output.prefix.clone(),
        objects_already_merged,
        objects_deleted: leftovers_deleted,
        quarantined_retried,
        objects_skipped: skipped.len() as u64,
        skipped,
        ..Default::default()
    };
    for w in workers {
        for outcome in w.await? {
            match outcome {
                Ok(r) => summary.add(&r),
                Err(e) => {
                    summary.batches_failed += 1;
                    summary.failures.push(e);
                }
            }
        }
    }
    progress.finish_and_clear();
    produced?;
    if args.delete_merged {
        summary.objects_deleted += summary.objects - summary.objects_quarantined;
    }
    summary.quarantined_remaining = ledger.quarantined_count().await?;
    summary.output_keys.sort();
    summary.empty.sort();
    summary.elapsed_seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// How long a job stays in a compact worker's hand; nothing else could take it over in one
/// process, so it only has to outlast the longest batch.
const JOB_VISIBILITY: Duration = Duration::from_secs(24 * 3600);

/// One merge job: the batch protocol (docs/contracts.md §6), the same as the merger's.
async fn run_job(
    body: &str,
    input: &Arc<dyn object_store::ObjectStore>,
    output: &Arc<dyn object_store::ObjectStore>,
    ledger: &SqliteLedger,
    exec: &ExecOptions,
) -> std::result::Result<Executed, String> {
    let batch: Batch = serde_json::from_str(body).map_err(|e| format!("merge job: {e}"))?;
    execute(Arc::clone(input), Arc::clone(output), ledger, &batch, exec)
        .await
        .map_err(|e| format!("batch {} ({}): {e:#}", batch.id, batch.window))
}

/// Deletes the objects of `listed` (but those in `new`) whose batch is committed and which were
/// not quarantined; returns how many.
async fn delete_leftovers(
    store: &dyn object_store::ObjectStore,
    ledger: &SqliteLedger,
    listed: Vec<ObjectRef>,
    new: &[ObjectRef],
) -> Result<u64> {
    let fresh: std::collections::HashSet<&str> = new.iter().map(|o| o.key.as_str()).collect();
    let merged: Vec<ObjectRef> = listed
        .into_iter()
        .filter(|o| !fresh.contains(o.key.as_str()))
        .collect();
    let quarantined: std::collections::HashSet<String> = ledger
        .quarantined()
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let owners = ledger.claims("", &merged).await.map_err(|e| anyhow!(e))?;
    let mut committed: std::collections::HashMap<String, bool> = Default::default();
    let mut deleted = Vec::new();
    for (o, owner) in merged.iter().zip(owners) {
        let Some(batch) = owner else { continue };
        if quarantined.contains(&o.key) {
            continue;
        }
        let done = match committed.get(&batch.0) {
            Some(done) => *done,
            None => {
                let rec = ledger.batch(&batch).await.map_err(|e| anyhow!(e))?;
                let done = rec.is_some_and(|r| r.state == BatchState::Committed);
                committed.insert(batch.0.clone(), done);
                done
            }
        };
        if done {
            deleted.push(o.key.as_str());
        }
    }
    flowmerge_core::exec::delete_keys(store, deleted.iter().copied()).await;
    Ok(deleted.len() as u64)
}

/// The table folder of an output key: the first part below the output prefix.
fn table_of(key: &str, prefix: &str) -> Option<String> {
    let rest = key
        .strip_prefix(prefix.trim_matches('/'))
        .unwrap_or(key)
        .trim_start_matches('/');
    rest.split('/').next().map(str::to_owned)
}

/// Sorts objects by source ([`classify_key`], then [`sniff`] on the first bytes of those whose
/// key says nothing); returns them per source, and the keys of those that are not data.
async fn sort_by_source(
    store: &dyn object_store::ObjectStore,
    objects: Vec<ObjectRef>,
) -> Result<(
    std::collections::BTreeMap<SourceKind, Vec<ObjectRef>>,
    Vec<String>,
)> {
    let mut by_source: std::collections::BTreeMap<SourceKind, Vec<ObjectRef>> = Default::default();
    let mut skipped = Vec::new();
    let mut unknown = Vec::new();
    for o in objects {
        match classify_key(&o.key) {
            Class::Source(kind) => by_source.entry(kind).or_default().push(o),
            Class::Skip(why) => skipped.push(format!("{} ({why})", o.key)),
            Class::Unknown => unknown.push(o),
        }
    }
    let sniffed: Vec<(SourceKind, ObjectRef)> = futures::stream::iter(unknown)
        .map(|o| async move {
            let end = o.size.min(SNIFF_BYTES);
            let head = match end {
                0 => bytes::Bytes::new(),
                _ => object_store::ObjectStoreExt::get_range(store, &key_path(&o.key), 0..end)
                    .await
                    .with_context(|| format!("reading the first bytes of {}", o.key))?,
            };
            Ok::<_, anyhow::Error>((sniff(&head), o))
        })
        .buffered(8)
        .try_collect()
        .await?;
    for (kind, o) in sniffed {
        by_source.entry(kind).or_default().push(o);
    }
    for objects in by_source.values_mut() {
        objects.sort_by(|a, b| a.key.cmp(&b.key));
    }
    Ok((by_source, skipped))
}

/// Local files get a content digest as their identity. The local store's ETag is made of inode,
/// mtime and size, so `cp -a`, `mv` across file systems or `touch` would make the same bytes look
/// like a new object and merge them twice. The digest is remembered per key with the store's ETag,
/// so an unchanged file is read only once, in the run that first sees it.
async fn identify_by_content(
    dir: &Path,
    ledger: &SqliteLedger,
    objects: &mut [ObjectRef],
) -> Result<()> {
    let known = ledger.digests().await?;
    let mut todo: Vec<usize> = Vec::new();
    for (i, o) in objects.iter_mut().enumerate() {
        let store_etag = o.etag.clone().unwrap_or_default();
        match known.get(&o.key) {
            Some((etag, size, digest)) if *etag == store_etag && *size == o.size => {
                o.etag = Some(digest.clone());
            }
            _ => todo.push(i),
        }
    }
    // Objects a ledger of an earlier version claimed under the store's ETag keep that identity,
    // or upgrading would merge them again.
    let candidates: Vec<ObjectRef> = todo.iter().map(|&i| objects[i].clone()).collect();
    let unclaimed: std::collections::HashSet<String> = ledger
        .unclaimed(candidates)
        .await
        .map_err(|e| anyhow!(e))?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let (todo, legacy): (Vec<usize>, Vec<usize>) = todo
        .into_iter()
        .partition(|&i| unclaimed.contains(&objects[i].key));
    let legacy = legacy
        .into_iter()
        .map(|i| (i, objects[i].etag.clone().unwrap_or_default()))
        .collect::<Vec<_>>();
    let digests: Vec<(usize, String)> = futures::stream::iter(todo)
        .map(|i| {
            let path = dir.join(&objects[i].key);
            async move {
                let digest = tokio::task::spawn_blocking(move || file_digest(&path)).await??;
                Ok::<_, anyhow::Error>((i, digest))
            }
        })
        .buffer_unordered(4)
        .try_collect()
        .await?;
    let mut remember = Vec::with_capacity(digests.len());
    for (i, digest) in digests.into_iter().chain(legacy) {
        let o = &mut objects[i];
        remember.push((
            o.key.clone(),
            o.etag.clone().unwrap_or_default(),
            o.size,
            digest.clone(),
        ));
        o.etag = Some(digest);
    }
    ledger.remember_digests(remember).await?;
    Ok(())
}

/// `sha256:<hex>` of a file's bytes.
fn file_digest(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// The bar counts raw bytes (what the time goes into); the message counts objects and records.
/// indicatif hides it when stderr is not a terminal; `wide_bar` fits it to the terminal's width.
fn progress_bar(objects: u64, bytes: u64) -> ProgressBar {
    let progress = ProgressBar::new(bytes);
    let style = ProgressStyle::with_template(
        "{spinner} {wide_bar} {binary_bytes}/{binary_total_bytes} {msg} {eta_label}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key(
        "eta_label",
        |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = match s.pos() {
                0 => write!(w, "ETA -"),
                _ => write!(w, "ETA {}", indicatif::HumanDuration(s.eta())),
            };
        },
    )
    .progress_chars("=> ");
    progress.set_style(style);
    progress.set_message(format!("0/{objects} obj"));
    progress.enable_steady_tick(Duration::from_millis(200));
    progress
}

fn progress_hook(progress: &ProgressBar, total_objects: u64) -> ProgressHook {
    let progress = progress.clone();
    let objects = Arc::new(AtomicU64::new(0));
    let records = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    ProgressHook(Arc::new(move |bytes, recs| {
        let n = objects.fetch_add(1, Ordering::Relaxed) + 1;
        let r = records.fetch_add(recs, Ordering::Relaxed) + recs;
        let rate = r as f64 / started.elapsed().as_secs_f64().max(1e-3);
        progress.set_message(format!(
            "{n}/{total_objects} obj {} rec {}/s",
            human_count(r as f64),
            human_count(rate)
        ));
        progress.inc(bytes);
    }))
}

/// 1234567 → "1.23M".
fn human_count(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.2}G", n / 1e9),
        n if n >= 1e6 => format!("{:.2}M", n / 1e6),
        n if n >= 1e4 => format!("{:.1}k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

fn ratio(a: u64, b: u64) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.1}×", a as f64 / b as f64)
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The human summary.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    if s.batches == 0 && s.failures.is_empty() {
        line(format!(
            "flowmerge compact {} → {}: nothing new ({} objects already merged)",
            s.input, s.output, s.objects_already_merged
        ));
    } else {
        let rate = s.records_in as f64 / s.elapsed_seconds.max(1e-9);
        line(format!("flowmerge compact {} → {}", s.input, s.output));
        line(format!(
            "  batches       {} ({} failed)",
            s.batches, s.batches_failed
        ));
        line(format!(
            "  objects       {} ({} quarantined, {} empty; {} already merged)",
            s.objects, s.objects_quarantined, s.objects_empty, s.objects_already_merged
        ));
        line(format!("  records in    {}", s.records_in));
        line(format!(
            "  rows out      {} ({} fewer)",
            s.rows_out,
            ratio(s.records_in, s.rows_out)
        ));
        line(format!(
            "  files out     {} ({} fewer)",
            s.files_out,
            ratio(s.objects, s.files_out)
        ));
        line(format!(
            "  bytes in      {} ({} decoded)",
            human_bytes(s.bytes_in),
            human_bytes(s.decoded_bytes)
        ));
        let size = match s.bytes_out > s.bytes_in {
            true => format!(
                "{} larger than the raw objects",
                ratio(s.bytes_out, s.bytes_in)
            ),
            false => format!(
                "{} smaller than the raw objects",
                ratio(s.bytes_in, s.bytes_out)
            ),
        };
        line(format!(
            "  bytes out     {} ({size})",
            human_bytes(s.bytes_out)
        ));
        line(format!(
            "  elapsed       {:.2} s ({:.0} records/s)",
            s.elapsed_seconds, rate
        ));
    }
    if s.tables.len() > 1 {
        let tables: Vec<String> = s
            .tables
            .iter()
            .map(|(t, n)| format!("{t} ({n} files)"))
            .collect();
        line(format!("  tables        {}", tables.join(", ")));
    }
    if s.records_skipped > 0 {
        line(format!(
            "  records skipped {} (packets that are not DNS, malformed DNS messages)",
            s.records_skipped
        ));
    }
    if !s.truncated.is_empty() {
        line("captures cut off inside a packet (every complete packet was read):".into());
        for k in &s.truncated {
            line(format!("  {k}"));
        }
    }
    if !s.skipped.is_empty() {
        line(format!("skipped objects (not data): {}", s.skipped.len()));
        for k in &s.skipped {
            line(format!("  {k}"));
        }
    }
    if s.quarantined_retried > 0 {
        line(format!(
            "retried {} quarantined objects from earlier runs",
            s.quarantined_retried
        ));
    }
    if !s.quarantined.is_empty() {
        line("quarantined objects:".into());
        for q in &s.quarantined {
            line(format!("  {}", q.reason));
        }
    }
    if !s.empty.is_empty() {
        line("empty objects (no records):".into());
        for k in &s.empty {
            line(format!("  {k}"));
        }
    }
    if s.quarantined_remaining > 0 {
        line(format!(
            "{} objects remain quarantined (fix the cause, then run with --retry-quarantined)",
            s.quarantined_remaining
        ));
    }
    if !s.failures.is_empty() {
        line("failed batches (claimed; the next run retries them):".into());
        for f in &s.failures {
            line(format!("  {f}"));
        }
    }
    out
}
