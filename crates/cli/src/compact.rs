//! `flowmerge compact INPUT OUTPUT`: the whole pipeline on one machine. A planner lists INPUT,
//! keeps the objects the ledger has not seen, batches them per window, claims each batch and
//! queues it; workers merge batches concurrently and commit them. Batches a crash left claimed
//! but uncommitted are run again first, under the same id, so they overwrite their own output.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use flowmerge_core::batch::{Batch, BatchLimits, plan_batches};
use flowmerge_core::exec::{BatchReport, ExecOptions, list_objects, run_batch};
use flowmerge_core::fault;
use flowmerge_core::formats::vpcflow::ParseOptions;
use flowmerge_core::ports::Ledger;
use flowmerge_core::window::window_size;
use flowmerge_local::{LocalQueue, SqliteLedger};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::store;

#[derive(Args, Debug)]
pub struct CompactArgs {
    /// Raw flow logs: a directory or object-store URL (file://, s3://bucket/prefix), listed
    /// recursively (AWS's AWSLogs/<account>/vpcflowlogs/<region>/YYYY/MM/DD/ layout or flat).
    pub input: String,
    /// Where Parquet goes: a directory or object-store URL.
    pub output: String,
    /// Window size: records merge only within the same window.
    #[arg(long, default_value = "5m")]
    pub window: String,
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
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Objects fetched at once within a batch.
    #[arg(long, default_value_t = 32)]
    pub fetch_concurrency: usize,
    /// Most objects in one batch (one output file).
    #[arg(long, default_value_t = BatchLimits::default().max_objects)]
    pub batch_max_objects: usize,
    /// Most raw bytes in one batch, in MiB.
    #[arg(long, default_value_t = BatchLimits::default().max_bytes / (1024 * 1024))]
    pub batch_max_mib: u64,
    /// Print the summary as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What a run did, printed at the end.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub input: String,
    pub output: String,
    pub batches: u64,
    pub batches_failed: u64,
    pub objects: u64,
    pub objects_quarantined: u64,
    pub records_in: u64,
    pub rows_out: u64,
    pub files_out: u64,
    pub bytes_in: u64,
    pub decoded_bytes: u64,
    pub bytes_out: u64,
    pub elapsed_seconds: f64,
    pub output_keys: Vec<String>,
    pub quarantined: Vec<QuarantineLine>,
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
        self.records_in += r.records_in;
        self.rows_out += r.rows_out;
        self.bytes_in += r.bytes_in;
        self.decoded_bytes += r.decoded_bytes;
        self.bytes_out += r.bytes_out;
        if let Some(k) = &r.output_key {
            self.files_out += 1;
            self.output_keys.push(k.clone());
        }
        self.quarantined
            .extend(r.quarantined.iter().map(|q| QuarantineLine {
                key: q.object.key.clone(),
                reason: q.reason.clone(),
            }));
    }
}

pub async fn run(args: CompactArgs) -> Result<Summary> {
    let started = Instant::now();
    let window = window_size(&args.window).context("--window")?;
    let parse =
        ParseOptions::with_format(args.format.as_deref()).map_err(|e| anyhow!("--format: {e}"))?;
    let input = store::open(&args.input, false).context("INPUT")?;
    let output = store::open(&args.output, true).context("OUTPUT")?;
    let ledger_path = match (&args.ledger, &output.local_dir) {
        (Some(p), _) => p.clone(),
        (None, Some(dir)) => {
            let work = dir.join("_flowmerge");
            std::fs::create_dir_all(&work).with_context(|| format!("{}", work.display()))?;
            work.join("ledger.sqlite")
        }
        (None, None) => bail!("--ledger PATH is required when OUTPUT is not a local directory"),
    };
    let ledger = Arc::new(SqliteLedger::open(&ledger_path)?);
    let limits = BatchLimits {
        max_objects: args.batch_max_objects.max(1),
        max_bytes: args.batch_max_mib.max(1) * 1024 * 1024,
    };

    // Work a crash left behind first, then what is new.
    let pending = ledger.pending().await.map_err(|e| anyhow!(e))?;
    let listed = list_objects(&*input.store, Some(&input.prefix))
        .await
        .context("listing INPUT")?;
    let new = ledger.unclaimed(listed).await.map_err(|e| anyhow!(e))?;
    let planned = plan_batches(new, window, limits);
    let total: u64 = pending
        .iter()
        .chain(&planned)
        .map(|b| b.objects.len() as u64)
        .sum();
    tracing::info!(
        pending = pending.len(),
        planned = planned.len(),
        objects = total,
        "planned"
    );

    let progress = ProgressBar::new(total);
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} merging [{bar:40}] {pos}/{len} objects, {msg} ({eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    progress.enable_steady_tick(Duration::from_millis(200));

    let queue: Arc<LocalQueue<Batch>> = Arc::new(LocalQueue::new(args.concurrency.max(1)));
    let exec = ExecOptions {
        parse,
        fetch_concurrency: args.fetch_concurrency,
        output_prefix: output.prefix.clone(),
    };

    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let queue = Arc::clone(&queue);
            let ledger = Arc::clone(&ledger);
            let (input, output) = (Arc::clone(&input.store), Arc::clone(&output.store));
            let exec = exec.clone();
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut done: Vec<std::result::Result<BatchReport, String>> = Vec::new();
                while let Some(batch) = queue.receive().await {
                    let id = batch.id.clone();
                    let outcome = async {
                        let report =
                            run_batch(Arc::clone(&input), Arc::clone(&output), &batch, &exec)
                                .await?;
                        fault::point("after-write");
                        // Commit only after the Parquet exists (DESIGN §6.1).
                        ledger.commit(&report).await.map_err(|e| anyhow!(e))?;
                        fault::point("after-commit");
                        Ok::<_, anyhow::Error>(report)
                    }
                    .await
                    .map_err(|e| format!("batch {id} ({}): {e:#}", batch.window));
                    progress.inc(batch.objects.len() as u64);
                    if let Ok(r) = &outcome {
                        progress.set_message(format!("{} records", r.records_in));
                    }
                    done.push(outcome);
                }
                done
            })
        })
        .collect();

    let producer = async {
        for batch in pending {
            queue
                .send(batch)
                .await
                .map_err(|_| anyhow!("queue closed"))?;
        }
        for batch in planned {
            let owned = ledger.claim(&batch).await.map_err(|e| anyhow!(e))?;
            fault::point("after-claim");
            if !owned.objects.is_empty() {
                queue
                    .send(owned)
                    .await
                    .map_err(|_| anyhow!("queue closed"))?;
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    let produced = producer.await;
    queue.close().await;

    let mut summary = Summary {
        input: input.display.clone(),
        output: output.display.clone(),
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
    summary.output_keys.sort();
    summary.elapsed_seconds = started.elapsed().as_secs_f64();
    Ok(summary)
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
    let rate = s.records_in as f64 / s.elapsed_seconds.max(1e-9);
    let mut out = format!(
        "flowmerge compact {} → {}\n\
         \x20 batches       {} ({} failed)\n\
         \x20 objects       {} ({} quarantined)\n\
         \x20 records in    {}\n\
         \x20 rows out      {} ({} fewer)\n\
         \x20 files out     {} ({} fewer)\n\
         \x20 bytes in      {} ({} decoded)\n\
         \x20 bytes out     {} ({} smaller than the raw objects)\n\
         \x20 elapsed       {:.2} s ({:.0} records/s)\n",
        s.input,
        s.output,
        s.batches,
        s.batches_failed,
        s.objects,
        s.objects_quarantined,
        s.records_in,
        s.rows_out,
        ratio(s.records_in, s.rows_out),
        s.files_out,
        ratio(s.objects, s.files_out),
        human_bytes(s.bytes_in),
        human_bytes(s.decoded_bytes),
        human_bytes(s.bytes_out),
        ratio(s.bytes_in, s.bytes_out),
        s.elapsed_seconds,
        rate,
    );
    if !s.quarantined.is_empty() {
        out.push_str("quarantined objects:\n");
        for q in &s.quarantined {
            out.push_str(&format!("  {}\n", q.reason));
        }
    }
    if !s.failures.is_empty() {
        out.push_str("failed batches (claimed; the next run retries them):\n");
        for f in &s.failures {
            out.push_str(&format!("  {f}\n"));
        }
    }
    out
}
