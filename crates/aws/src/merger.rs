//! The merger: merge-queue jobs → Parquet under the batch's deterministic key → commit.
//!
//! For each job: skip it if the batch is committed; read the manifest; keep the objects whose
//! claim is this batch (claims are frozen once the batch is sealed, before the job was sent); run
//! the batch protocol, `flowmerge_core::execute` (the same code as `flowmerge compact`), with the
//! DynamoDB ledger's merge side ([`DynamoCommitLedger`]: quarantined objects on their claims and
//! as JSON records under the work prefix, then the commit); delete the job. A crash anywhere
//! before the delete makes SQS deliver the job again, and the retry rewrites the same key with the
//! same bytes. Jobs that keep failing reach the DLQ.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flowmerge_core::BatchReport;
use flowmerge_core::exec::{ExecOptions, Executed, execute};
use flowmerge_core::job::{Manifest, MergeJob};
use flowmerge_core::ports::{CommitLedger, JobQueue, LedgerError};
use flowmerge_core::store::{key_path, split_s3_url};
use flowmerge_core::{Batch, BatchId, Quarantined};
use flowmerge_telemetry::{continue_from, metrics};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::config::{MergerConfig, RollupConfig, S3Location};
use crate::error::{AwsError, Result};
use crate::ledger::{DynamoLedger, now, object_pk};
use crate::queue::{Received, SqsQueue};
use crate::shutdown::Shutdown;
use crate::store::s3_bucket;
use flowmerge_core::SourceKind;
use flowmerge_core::ports::{BatchState, ClaimLedger};
use flowmerge_core::rollup::{Level, RollupJob, RollupOptions, RollupOutcome, plan, run_partition};

pub struct Merger {
    cfg: MergerConfig,
    queue: SqsQueue,
    /// Rollup jobs (`FLOWMERGE_ROLLUP_QUEUE_URL`), if this merger runs them.
    rollup_queue: Option<SqsQueue>,
    /// Names this merger in the rollup leases it takes.
    owner: String,
    ledger: DynamoLedger,
    /// One object store per bucket, opened on first use.
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

/// What became of one job.
#[derive(Debug)]
// One value per job: boxing the report would save nothing worth the indirection.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    Merged(BatchReport),
    AlreadyCommitted,
}

impl Merger {
    pub async fn new(
        cfg: MergerConfig,
        sqs: aws_sdk_sqs::Client,
        dynamodb: aws_sdk_dynamodb::Client,
    ) -> Result<Self> {
        // Everything the merger will use is checked now: a wrong name stops it at start.
        let queue = SqsQueue::open_checked(
            sqs.clone(),
            "FLOWMERGE_MERGE_QUEUE_URL",
            &cfg.common.merge_queue_url,
        )
        .await?;
        let rollup_queue = match &cfg.rollup {
            None => None,
            Some(r) => Some(
                SqsQueue::open_checked(sqs.clone(), "FLOWMERGE_ROLLUP_QUEUE_URL", &r.queue_url)
                    .await?,
            ),
        };
        let ledger = DynamoLedger::new(dynamodb, &cfg.common.table, cfg.common.ledger_ttl);
        ledger.check().await?;
        let merger = Self {
            cfg,
            queue,
            rollup_queue,
            owner: format!(
                "merger-{}-{}",
                std::process::id(),
                chrono::Utc::now().timestamp_millis()
            ),
            ledger,
            stores: Mutex::new(HashMap::new()),
        };
        let (output, work) = (&merger.cfg.common.output, &merger.cfg.common.work);
        for (var, loc) in [
            ("FLOWMERGE_OUTPUT", output),
            (merger.cfg.common.work_var(), work),
        ] {
            let store = merger.store(&loc.bucket)?;
            crate::store::check_bucket(&*store, var, &loc.url_of(&loc.prefix), &loc.prefix).await?;
        }
        Ok(merger)
    }

    fn store(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
        let mut stores = self
            .stores
            .lock()
            .map_err(|_| AwsError::Invalid("store cache poisoned".into()))?;
        if let Some(s) = stores.get(bucket) {
            return Ok(Arc::clone(s));
        }
        let s = s3_bucket(bucket)?;
        stores.insert(bucket.to_owned(), Arc::clone(&s));
        Ok(s)
    }

    /// Runs `concurrency` receive loops until shutdown; each finishes (or releases) its job.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) -> Result<()> {
        tracing::info!(
            queue = self.queue.name(),
            concurrency = self.cfg.concurrency,
            "merger started"
        );
        let mut loops = tokio::task::JoinSet::new();
        for _ in 0..self.cfg.concurrency {
            let me = Arc::clone(&self);
            let shutdown = shutdown.clone();
            loops.spawn(async move {
                me.receive_loop(&me.queue, &shutdown, |m| me.handle_guarded(m, &shutdown))
                    .await
            });
        }
        // One rollup at a time per merger: rollups are few (hourly) and each may be large.
        if let Some(queue) = self.rollup_queue.clone() {
            let me = Arc::clone(&self);
            let shutdown = shutdown.clone();
            tracing::info!(queue = queue.name(), "running rollup jobs");
            loops.spawn(async move {
                me.receive_loop(&queue, &shutdown, |m| {
                    me.rollup_guarded(&queue, m, &shutdown)
                })
                .await
            });
        }
        while let Some(r) = loops.join_next().await {
            r.map_err(|e| AwsError::Invalid(format!("merger loop failed: {e}")))?;
        }
        Ok(())
    }

    /// Receives from `queue` one message at a time until shutdown, handing each to `handle`.
    async fn receive_loop<F, Fut>(&self, queue: &SqsQueue, shutdown: &Shutdown, handle: F)
    where
        F: Fn(Received) -> Fut,
        Fut: Future<Output = ()>,
    {
        let vis = self.cfg.common.visibility_timeout;
        while !shutdown.requested() {
            let received = tokio::select! {
                _ = shutdown.wait() => break,
                r = queue.receive(1, Duration::from_secs(20), vis) => r,
            };
            match received {
                Ok(messages) => {
                    for m in messages {
                        handle(m).await;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "receive failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Handles one message while extending its visibility; on shutdown, lets it finish for up to
    /// the drain timeout, then releases it (visibility 0) for another merger.
    async fn handle_guarded(&self, m: Received, shutdown: &Shutdown) {
        let span = tracing::info_span!(
            "merge job",
            otel.kind = "consumer",
            messaging.system = "aws_sqs",
            messaging.operation.type = "process",
            messaging.destination.name = self.queue.name(),
            messaging.message.id = %m.message_id,
            messaging.message.delivery_count = m.receive_count,
            batch.id = tracing::field::Empty,
            records_in = tracing::field::Empty,
            records_out = tracing::field::Empty,
            bytes_in = tracing::field::Empty,
            bytes_out = tracing::field::Empty,
            quarantined = tracing::field::Empty,
        );
        // Continue the mapper's trace: its batch span's context travels in the job's attributes.
        continue_from(&span, &m.attributes);
        let started = Instant::now();
        crate::queue::record_wait(self.queue.name(), &m);
        let work = self.handle(&m).instrument(span.clone());
        if let Some(r) = self.guarded(&self.queue, &m, shutdown, work).await {
            match r {
                Ok(Outcome::Merged(report)) => {
                    let mx = metrics::get();
                    mx.records_in.add(report.records_in, &[]);
                    mx.records_out.add(report.rows_out, &[]);
                    mx.bytes_in.add(report.bytes_in, &[]);
                    mx.bytes_out.add(report.bytes_out, &[]);
                    mx.quarantined.add(report.quarantined.len() as u64, &[]);
                    mx.batch_latency
                        .record(started.elapsed().as_secs_f64(), &[]);
                    span.record("records_in", report.records_in);
                    span.record("records_out", report.rows_out);
                    span.record("bytes_in", report.bytes_in);
                    span.record("bytes_out", report.bytes_out);
                    span.record("quarantined", report.quarantined.len());
                    tracing::info!(
                    message_id = %m.message_id,
                    batch_id = %report.batch_id.as_ref().map(|b| b.0.as_str()).unwrap_or(""),
                    objects = report.objects, records_in = report.records_in, rows_out = report.rows_out,
                    bytes_in = report.bytes_in, bytes_out = report.bytes_out,
                    quarantined = report.quarantined.len(),
                    output = %report.output_keys.join(","),
                    "batch committed"
                    )
                }
                Ok(Outcome::AlreadyCommitted) => {
                    tracing::info!(message_id = %m.message_id, "batch already committed: job dropped")
                }
                Err(e) => tracing::error!(
                    message_id = %m.message_id, receive_count = m.receive_count, error = %e,
                    "job failed; SQS will deliver it again (then to the DLQ)"
                ),
            }
        }
    }

    /// Runs `work` for message `m` of `queue` while extending its visibility; on shutdown, lets it
    /// finish for up to the drain timeout, then releases the message (visibility 0) for another
    /// merger and returns `None`.
    async fn guarded<T>(
        &self,
        queue: &SqsQueue,
        m: &Received,
        shutdown: &Shutdown,
        work: impl Future<Output = T>,
    ) -> Option<T> {
        let vis = self.cfg.common.visibility_timeout;
        let receipt = m.receipt_handle.as_str();
        tokio::pin!(work);
        let heartbeat = async {
            loop {
                tokio::time::sleep(vis / 3).await;
                if let Err(e) = queue.extend(receipt, vis).await {
                    tracing::warn!(error = %e, message_id = %m.message_id, "extending visibility failed");
                }
            }
        };
        let drain = async {
            shutdown.wait().await;
            tokio::time::sleep(self.cfg.drain_timeout).await;
        };
        tokio::select! {
            r = &mut work => Some(r),
            _ = heartbeat => None,
            _ = drain => {
                tracing::warn!(message_id = %m.message_id, "drain timeout: releasing the job for another merger");
                if let Err(e) = queue.release(receipt).await {
                    tracing::warn!(error = %e, "releasing the job failed; it returns after its visibility timeout");
                }
                None
            }
        }
    }

    /// Merges one job's batch and commits it; deletes the job.
    pub async fn handle(&self, m: &Received) -> Result<Outcome> {
        let job = MergeJob::from_json(&format!("message {}", m.message_id), &m.body)?;
        tracing::Span::current().record("batch.id", job.batch_id.0.as_str());
        if let Some(rec) = self.ledger.batch(&job.batch_id).await?
            && rec.state == BatchState::Committed
        {
            self.queue.ack(&m.receipt_handle).await?;
            return Ok(Outcome::AlreadyCommitted);
        }
        let (mbucket, mkey) = split_s3_url(&job.manifest).ok_or_else(|| {
            AwsError::Invalid(format!(
                "job {}: manifest {:?} is not an s3:// URL",
                job.batch_id, job.manifest
            ))
        })?;
        let body = self
            .store(&mbucket)?
            .get(&key_path(&mkey))
            .await?
            .bytes()
            .instrument(tracing::info_span!("read manifest", key = %mkey))
            .await?;
        let manifest = Manifest::from_json(&job.manifest, &body)?;

        let claims = self
            .ledger
            .claims(&manifest.bucket, &manifest.objects)
            .instrument(tracing::info_span!(
                "read claims",
                objects = manifest.objects.len()
            ))
            .await?;
        let objects: Vec<_> = manifest
            .objects
            .iter()
            .zip(&claims)
            .filter(|(_, by)| by.as_ref() == Some(&job.batch_id))
            .map(|(o, _)| o.clone())
            .collect();
        let batch = manifest.batch_of(objects);

        let input = self.store(&manifest.bucket)?;
        let output = self.store(&self.cfg.common.output.bucket)?;
        let opts = ExecOptions {
            parse: self.cfg.parse.clone(),
            dns: self.cfg.dns.clone(),
            fetch_concurrency: self.cfg.fetch_concurrency,
            output_prefix: self.cfg.common.output.prefix.clone(),
            progress: None,
            delete_merged: self.cfg.delete_merged,
            memory: self.cfg.memory.clone(),
        };
        let ledger = DynamoCommitLedger {
            ledger: self.ledger.clone(),
            bucket: manifest.bucket.clone(),
            work_store: self.store(&self.cfg.common.work.bucket)?,
            work: self.cfg.common.work.clone(),
        };
        // The batch protocol (docs/contracts.md §6), the same code as `flowmerge compact`'s.
        let outcome = execute(input, output, &ledger, &batch, &opts).await?;
        self.queue.ack(&m.receipt_handle).await?;
        Ok(match outcome {
            Executed::Merged(report) => Outcome::Merged(report),
            Executed::AlreadyCommitted => Outcome::AlreadyCommitted,
        })
    }
}

/// What became of one rollup job.
#[derive(Debug)]
pub enum RollupDone {
    /// A scan: how many partition jobs it queued.
    Scanned(usize),
    Partition(RollupOutcome),
}

/// Rollup jobs (docs/aws-protocol.md): the schedule sends `{"kind":"scan"}` hourly; a scan lists
/// the tables and queues one `partition` job per partition that looks due; a partition job runs
/// the rollup protocol (`flowmerge_core::rollup`, the same code as `flowmerge rollup`) under the
/// partition's lease in the ledger, so that one partition never runs twice at once.
impl Merger {
    fn rollup_options(&self, r: &RollupConfig, source: SourceKind) -> RollupOptions {
        RollupOptions {
            output_prefix: self.cfg.common.output.prefix.clone(),
            min_age_secs: r.min_age.as_secs() as i64,
            target_size: r.target_size,
            merge_window: r.merge_window.filter(|_| source == SourceKind::Vpcflow),
            monthly_prefix: r.monthly.as_ref().map(|m| m.prefix.clone()),
            fetch_concurrency: self.cfg.fetch_concurrency,
            lease_secs: r.lease.as_secs() as i64,
            memory_limit: self.cfg.job_memory_limit,
            spill_dir: self.cfg.memory.spill_dir.clone(),
            ..RollupOptions::default()
        }
    }

    /// The store the monthly table is written to (the output's when none is configured).
    fn monthly_store(&self, r: &RollupConfig) -> Result<Arc<dyn ObjectStore>> {
        match &r.monthly {
            Some(m) => self.store(&m.bucket),
            None => self.store(&self.cfg.common.output.bucket),
        }
    }

    async fn rollup_guarded(&self, queue: &SqsQueue, m: Received, shutdown: &Shutdown) {
        let span = tracing::info_span!(
            "rollup job",
            otel.kind = "consumer",
            messaging.system = "aws_sqs",
            messaging.operation.type = "process",
            messaging.destination.name = queue.name(),
            messaging.message.id = %m.message_id,
            messaging.message.delivery_count = m.receive_count,
        );
        continue_from(&span, &m.attributes);
        let work = self.handle_rollup(queue, &m).instrument(span);
        match self.guarded(queue, &m, shutdown, work).await {
            Some(Ok(RollupDone::Scanned(n))) => {
                tracing::info!(message_id = %m.message_id, partitions = n, "rollup scan queued its partitions")
            }
            Some(Ok(RollupDone::Partition(RollupOutcome::Rolled(r)))) => tracing::info!(
                partition = %r.partition, id = %r.id, inputs = r.inputs, rows_out = r.rows_out,
                bytes_in = r.bytes_in, bytes_out = r.bytes_out, deleted = r.deleted.len(),
                recovered = r.recovered, "partition rolled up"
            ),
            Some(Ok(RollupDone::Partition(outcome))) => {
                tracing::info!(message_id = %m.message_id, ?outcome, "rollup job: nothing to do")
            }
            Some(Err(e)) => tracing::error!(
                message_id = %m.message_id, receive_count = m.receive_count, error = %e,
                "rollup job failed; SQS will deliver it again (then to the DLQ)"
            ),
            None => {}
        }
    }

    /// Runs one rollup job and deletes it.
    pub async fn handle_rollup(&self, queue: &SqsQueue, m: &Received) -> Result<RollupDone> {
        let Some(r) = &self.cfg.rollup else {
            return Err(AwsError::Invalid(
                "rollup job without FLOWMERGE_ROLLUP_QUEUE_URL".into(),
            ));
        };
        let job: RollupJob = serde_json::from_str(&m.body).map_err(|e| {
            AwsError::Invalid(format!("rollup job {}: {e}: {}", m.message_id, m.body))
        })?;
        let output = self.store(&self.cfg.common.output.bucket)?;
        let monthly = self.monthly_store(r)?;
        let done = match job {
            RollupJob::Scan => {
                let now = chrono::Utc::now().timestamp();
                let mut jobs = Vec::new();
                for &source in SourceKind::ALL {
                    let opts = self.rollup_options(r, source);
                    jobs.extend(
                        plan(&*output, &*monthly, source, Level::Native, &opts, now).await?,
                    );
                }
                if r.monthly.is_some() {
                    let opts = self.rollup_options(r, SourceKind::Cloudtrail);
                    jobs.extend(
                        plan(
                            &*output,
                            &*monthly,
                            SourceKind::Cloudtrail,
                            Level::Month,
                            &opts,
                            now,
                        )
                        .await?,
                    );
                }
                let trace = flowmerge_telemetry::inject(&tracing::Span::current());
                for job in &jobs {
                    let body = serde_json::to_string(&RollupJob::Partition(job.clone()))
                        .map_err(|e| AwsError::Invalid(e.to_string()))?;
                    queue.send(&body, &trace).await?;
                }
                RollupDone::Scanned(jobs.len())
            }
            RollupJob::Partition(job) => {
                let opts = self.rollup_options(r, job.source);
                let written = match job.level {
                    Level::Month => Arc::clone(&monthly),
                    Level::Native => Arc::clone(&output),
                };
                let outcome = run_partition(
                    output,
                    written,
                    &self.ledger,
                    &self.ledger,
                    &job,
                    &opts,
                    &self.owner,
                )
                .await?;
                if outcome == RollupOutcome::Busy {
                    // Another merger holds the partition (or held it and died: its lease runs
                    // out). Not deleted: the job returns after its visibility timeout.
                    return Ok(RollupDone::Partition(outcome));
                }
                RollupDone::Partition(outcome)
            }
        };
        queue.ack(&m.receipt_handle).await?;
        Ok(done)
    }
}

/// The merge side of the DynamoDB ledger ([`CommitLedger`]): batch states and counts in the
/// table, quarantined objects both there (on their claim) and as JSON records under the work
/// prefix, `<work>/quarantine/<batch>/<sha256(bucket/key)>.json`.
#[derive(Clone)]
pub struct DynamoCommitLedger {
    pub ledger: DynamoLedger,
    /// The bucket of the batch's raw objects (object items are keyed by bucket and key).
    pub bucket: String,
    pub work_store: Arc<dyn ObjectStore>,
    pub work: S3Location,
}

impl DynamoCommitLedger {
    async fn write_quarantine_record(&self, batch: &str, q: &Quarantined) -> Result<()> {
        let bucket = &self.bucket;
        let digest =
            hex::encode(&Sha256::digest(format!("{bucket}/{}", q.object.key).as_bytes())[..8]);
        let key = self.work.key(&format!("quarantine/{batch}/{digest}.json"));
        let record = serde_json::json!({
            "bucket": bucket,
            "key": q.object.key,
            "etag": q.object.etag,
            "size": q.object.size,
            "batch_id": batch,
            "reason": q.reason,
            "quarantined_at": now(),
        });
        let body = serde_json::to_vec_pretty(&record).unwrap_or_default();
        self.work_store
            .put(&key_path(&key), PutPayload::from(Bytes::from(body)))
            .await?;
        tracing::warn!(bucket = %bucket, key = %q.object.key, batch_id = batch, reason = %q.reason, "object quarantined");
        Ok(())
    }
}

#[async_trait::async_trait]
impl CommitLedger for DynamoCommitLedger {
    async fn is_committed(&self, batch: &BatchId) -> Result<bool, LedgerError> {
        let rec = self.ledger.batch(batch).await?;
        Ok(rec.is_some_and(|r| r.state == BatchState::Committed))
    }

    async fn quarantine(&self, batch: &Batch, objects: &[Quarantined]) -> Result<(), LedgerError> {
        for q in objects {
            let pk = object_pk(&self.bucket, &q.object.key, q.object.etag.as_deref());
            self.ledger.quarantine(&pk, &batch.id, &q.reason).await?;
            self.write_quarantine_record(&batch.id.0, q).await?;
        }
        Ok(())
    }

    async fn commit_batch(&self, report: &BatchReport) -> Result<(), LedgerError> {
        let id = report
            .batch_id
            .clone()
            .ok_or("commit of a report without a batch id")?;
        // False when it was committed already (a concurrent retry): the same output, fine.
        self.ledger.commit(&id, report).await?;
        Ok(())
    }
}
