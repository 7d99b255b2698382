//! The mapper: raw-queue events → windows → claimed, sealed batches → merge jobs.
//!
//! Order of the protocol for one batch (each step is idempotent; `docs/aws-protocol.md` shows what
//! a crash after each leaves and how it recovers):
//! 1. write the manifest (candidate objects) under the work prefix;
//! 2. create the batch item `open`, leased to this mapper;
//! 3. claim each object in a transaction that checks the batch is still open and ours;
//! 4. seal the batch (no claim can join it afterwards);
//! 5. send the merge job, then mark the batch `queued`;
//! 6. delete the raw messages whose objects are all in queued (or committed) batches.
//!
//! An object already claimed by another batch is a duplicate event or a redelivery: if that batch
//! was left open by a mapper whose lease expired, or sealed without its job sent, this mapper
//! finishes it (seal, send) — so no claim is ever stranded.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flowmerge_protocol::claim::claim_batch;
use flowmerge_protocol::classify::{Class, classify_key};
use flowmerge_protocol::fault;
use flowmerge_protocol::job::{FORMAT_VERSION, Manifest, MergeJob, is_raw_log_key};
use flowmerge_protocol::ports::{BatchRecord, BatchState, Claim, ClaimLedger, JobQueue};
use flowmerge_protocol::store::key_path;
use flowmerge_protocol::{Batch, BatchId, ObjectRef, SourceKind, Window, window_of};
use flowmerge_telemetry::{SpanContext, add_links, inject, metrics, span_context};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tracing::Instrument;

use crate::config::MapperConfig;
use crate::error::Result;
use crate::events;
use crate::ledger::{DynamoLedger, now};
use crate::queue::{Received, SqsQueue, record_wait};
use crate::shutdown::Shutdown;

/// Links from a batch's span to the message spans it gathers, at most.
const MAX_LINKS: usize = 128;

pub struct Mapper {
    cfg: MapperConfig,
    raw: Arc<dyn JobQueue>,
    merge: Arc<dyn JobQueue>,
    ledger: Arc<dyn ClaimLedger>,
    work: Arc<dyn ObjectStore>,
    /// Identity of this process in batch leases.
    owner: String,
}

/// A raw message held while its objects wait in open batches.
struct Held {
    receipt: String,
    /// Objects of the message not yet in a queued batch.
    pending: usize,
    /// Some object could not be placed now (its batch is still being claimed by a live mapper).
    retry: bool,
}

/// Where an object's batch is filled: its bucket, source and window.
type Slot = (String, SourceKind, Window);

/// A window's batch being filled.
struct Open {
    bucket: String,
    source: SourceKind,
    window: Window,
    objects: Vec<ObjectRef>,
    /// Messages announcing each object (duplicate events of one object share its entry).
    messages: HashMap<(String, Option<String>), Vec<String>>,
    bytes: u64,
    opened: Instant,
    /// Spans of the messages whose objects are here: the batch's span links to them.
    links: Vec<SpanContext>,
}

/// Counts of one flush, for logs.
#[derive(Debug, Default)]
struct Flushed {
    claimed: usize,
    duplicates: usize,
    retry: usize,
}

impl Mapper {
    pub async fn new(
        cfg: MapperConfig,
        sqs: aws_sdk_sqs::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        work: Arc<dyn ObjectStore>,
    ) -> Result<Self> {
        // Everything the mapper will use is checked now: a wrong name stops it at start.
        let raw =
            SqsQueue::open_checked(sqs.clone(), "FLOWMERGE_RAW_QUEUE_URL", &cfg.raw_queue_url)
                .await?;
        let merge = SqsQueue::open_checked(
            sqs,
            "FLOWMERGE_MERGE_QUEUE_URL",
            &cfg.common.merge_queue_url,
        )
        .await?;
        let ledger = DynamoLedger::new(dynamodb, &cfg.common.table, cfg.common.ledger_ttl);
        ledger.check().await?;
        let work_var = cfg.common.work_var();
        crate::store::check_bucket(
            &*work,
            work_var,
            &cfg.common.work.url_of(&cfg.common.work.prefix),
            &cfg.common.work.prefix,
        )
        .await?;
        Ok(Self::with_ports(
            cfg,
            Arc::new(raw),
            Arc::new(merge),
            Arc::new(ledger),
            work,
        ))
    }

    /// A mapper over any adapters of the ports (the AWS ones in [`Mapper::new`]).
    pub fn with_ports(
        cfg: MapperConfig,
        raw: Arc<dyn JobQueue>,
        merge: Arc<dyn JobQueue>,
        ledger: Arc<dyn ClaimLedger>,
        work: Arc<dyn ObjectStore>,
    ) -> Self {
        let owner = format!(
            "mapper-{}-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into()),
            std::process::id(),
            chrono::Utc::now().timestamp_millis()
        );
        Self {
            cfg,
            raw,
            merge,
            ledger,
            work,
            owner,
        }
    }

    /// Runs until shutdown is requested, then flushes the batches it holds and returns.
    pub async fn run(&self, shutdown: Shutdown) -> Result<()> {
        let vis = self.cfg.common.visibility_timeout;
        let mut held: HashMap<String, Held> = HashMap::new();
        let mut open: BTreeMap<Slot, Open> = BTreeMap::new();
        let mut last_heartbeat = Instant::now();
        tracing::info!(queue = self.raw.name(), owner = %self.owner, "mapper started");
        while !shutdown.requested() {
            let wait = open
                .values()
                .map(|o| {
                    (o.opened + self.cfg.batch_max_wait).saturating_duration_since(Instant::now())
                })
                .min()
                .unwrap_or(Duration::from_secs(20))
                .clamp(Duration::from_secs(1), Duration::from_secs(20));
            let received = tokio::select! {
                _ = shutdown.wait() => break,
                r = self.raw.receive_jobs(10, wait, vis) => r,
            };
            match received {
                Ok(messages) => {
                    for m in messages {
                        let id = m.message_id.clone();
                        if let Err(e) = self.intake(m, &mut held, &mut open).await {
                            // The message is not deleted: SQS delivers it again.
                            tracing::error!(message_id = %id, error = %e, "taking in a raw message failed");
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "receive failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            let due: Vec<_> = open
                .iter()
                .filter(|(_, o)| o.opened.elapsed() >= self.cfg.batch_max_wait)
                .map(|(k, _)| k.clone())
                .collect();
            for k in due {
                if let Some(o) = open.remove(&k) {
                    self.flush_logged(o, &mut held).await;
                }
            }
            if last_heartbeat.elapsed() >= vis / 3 && !held.is_empty() {
                let receipts: Vec<String> = held.values().map(|h| h.receipt.clone()).collect();
                if let Err(e) = self.raw.extend_all(&receipts, vis).await {
                    tracing::warn!(error = %e, "extending visibility of held messages failed");
                }
                last_heartbeat = Instant::now();
            }
        }
        tracing::info!(batches = open.len(), "flushing open batches before exit");
        while let Some((_, o)) = open.pop_first() {
            self.flush_logged(o, &mut held).await;
        }
        Ok(())
    }

    /// Flushes a batch; an error is logged, not fatal: every step is idempotent and the messages
    /// not deleted come back from SQS.
    async fn flush_logged(&self, open: Open, held: &mut HashMap<String, Held>) {
        if let Err(e) = self.flush(open, held).await {
            tracing::error!(error = %e, "finishing a batch failed; its messages return to the queue");
        }
    }

    /// Takes in one raw message: its objects join their windows' open batches.
    async fn intake(
        &self,
        m: Received,
        held: &mut HashMap<String, Held>,
        open: &mut BTreeMap<Slot, Open>,
    ) -> Result<()> {
        let span = tracing::info_span!(
            "receive raw message",
            otel.kind = "consumer",
            messaging.system = "aws_sqs",
            messaging.operation.type = "receive",
            messaging.destination.name = self.raw.name(),
            messaging.message.id = %m.message_id,
            objects = tracing::field::Empty,
        );
        record_wait(self.raw.name(), &m);
        let link = span_context(&span);
        self.intake_in(m, held, open, link).instrument(span).await
    }

    async fn intake_in(
        &self,
        m: Received,
        held: &mut HashMap<String, Held>,
        open: &mut BTreeMap<Slot, Open>,
        link: Option<SpanContext>,
    ) -> Result<()> {
        let objects = match events::decode(&m.body) {
            Ok(o) => o,
            Err(reason) => {
                // Left in the queue: after the redrive policy's receive count it lands in the DLQ.
                tracing::error!(message_id = %m.message_id, %reason, receive_count = m.receive_count, "undecodable raw message");
                return Ok(());
            }
        };
        // Each object's source from its key (AWS's layout, then the extension); a key that says
        // nothing is read as flow logs, whose reader names what is wrong with it.
        let objects: Vec<_> = objects
            .into_iter()
            .filter_map(|o| {
                if !is_raw_log_key(&o.key) {
                    tracing::debug!(bucket = %o.bucket, key = %o.key, "not a raw log object: skipped");
                    return None;
                }
                match classify_key(&o.key) {
                    Class::Source(kind) => Some((kind, o)),
                    Class::Unknown => Some((SourceKind::Vpcflow, o)),
                    Class::Skip(why) => {
                        tracing::debug!(bucket = %o.bucket, key = %o.key, why, "not data: skipped");
                        None
                    }
                }
            })
            .collect();
        tracing::Span::current().record("objects", objects.len());
        if objects.is_empty() {
            self.raw.ack(&m.receipt_handle).await?;
            return Ok(());
        }
        if held.contains_key(&m.message_id) {
            // The same delivery seen twice within one hold (SQS at-least-once): keep the first.
            return Ok(());
        }
        held.insert(
            m.message_id.clone(),
            Held {
                receipt: m.receipt_handle,
                pending: objects.len(),
                retry: false,
            },
        );
        for (source, o) in objects {
            let window = window_of(&o.key, o.event_time, self.cfg.window_size);
            let slot = (o.bucket.clone(), source, window);
            let full = open
                .get(&slot)
                .is_some_and(|b| !self.cfg.limits.admits(b.objects.len(), b.bytes, o.size));
            if full && let Some(b) = open.remove(&slot) {
                self.flush_logged(b, held).await;
            }
            let batch = open.entry(slot.clone()).or_insert_with(|| Open {
                bucket: o.bucket.clone(),
                source,
                window,
                objects: Vec::new(),
                messages: HashMap::new(),
                bytes: 0,
                opened: Instant::now(),
                links: Vec::new(),
            });
            if let Some(l) = &link
                && batch.links.len() < MAX_LINKS
                && !batch.links.contains(l)
            {
                batch.links.push(l.clone());
            }
            let id = (o.key.clone(), o.etag.clone());
            let owners = batch.messages.entry(id).or_default();
            if owners.is_empty() {
                batch.bytes += o.size;
                batch.objects.push(ObjectRef {
                    key: o.key,
                    size: o.size,
                    etag: o.etag,
                    last_modified: o.event_time,
                });
            }
            owners.push(m.message_id.clone());
            // A full batch goes now, not when the next object arrives or its wait runs out.
            let full = self.cfg.limits.is_full(batch.objects.len(), batch.bytes);
            if full && let Some(b) = open.remove(&slot) {
                self.flush_logged(b, held).await;
            }
        }
        Ok(())
    }

    /// Claims, seals and queues one batch, then deletes (or releases) the messages it settled.
    async fn flush(&self, open: Open, held: &mut HashMap<String, Held>) -> Result<()> {
        let Open {
            bucket,
            source,
            window,
            objects,
            messages,
            links,
            ..
        } = open;
        let batch = Batch::new(&bucket, window, objects).of_source(source);
        let span = tracing::info_span!(
            "batch",
            otel.kind = "producer",
            messaging.system = "aws_sqs",
            messaging.operation.type = "send",
            messaging.destination.name = self.merge.name(),
            batch.id = %batch.id,
            batch.source = %source,
            batch.window = %window.stamp(),
            batch.objects = batch.objects.len(),
            batch.bytes = batch.bytes(),
        );
        add_links(&span, links);
        let settled = match self.place(&bucket, &batch).instrument(span.clone()).await {
            Ok(s) => s,
            Err(e) => {
                // Nothing is lost: every step is idempotent. Hand the messages back to SQS, to be
                // batched again once this batch's lease has run out.
                let receipts: Vec<String> = messages
                    .values()
                    .flatten()
                    .filter_map(|msg| held.remove(msg))
                    .map(|h| h.receipt)
                    .collect();
                tracing::error!(
                    batch_id = %batch.id, error = %e, messages = receipts.len(),
                    "batch failed; its messages return to the queue"
                );
                if let Err(e) = self.raw.extend_all(&receipts, self.cfg.claim_lease).await {
                    tracing::warn!(error = %e, "releasing messages failed; they return after their visibility timeout");
                }
                return Ok(());
            }
        };
        let mut counts = Flushed::default();
        let mut done: Vec<String> = Vec::new();
        let mut release: Vec<String> = Vec::new();
        for (object, outcome) in batch.objects.iter().zip(settled) {
            match outcome {
                Placed::Claimed => counts.claimed += 1,
                Placed::Duplicate => counts.duplicates += 1,
                Placed::Retry => counts.retry += 1,
            }
            let owners = messages
                .get(&(object.key.clone(), object.etag.clone()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            for msg in owners {
                let Some(h) = held.get_mut(msg) else { continue };
                h.pending = h.pending.saturating_sub(1);
                h.retry |= outcome == Placed::Retry;
                if h.pending == 0
                    && let Some(h) = held.remove(msg)
                {
                    match h.retry {
                        true => release.push(h.receipt),
                        false => done.push(h.receipt),
                    }
                }
            }
        }
        metrics::get()
            .objects_batched
            .add(counts.claimed as u64, &[]);
        tracing::info!(
            batch_id = %batch.id, %source, window = %window.stamp(), bucket = %bucket,
            objects = batch.objects.len(), claimed = counts.claimed,
            duplicates = counts.duplicates, retry_later = counts.retry,
            "batch flushed"
        );
        fault::point("before-delete");
        self.raw.ack_all(&done).await?;
        if !release.is_empty() {
            // Back when the batch that holds them has been finished by its mapper or expired.
            self.raw.extend_all(&release, self.cfg.claim_lease).await?;
        }
        Ok(())
    }

    /// Puts each object of `batch` into a queued batch: this one or the one that claimed it first.
    async fn place(&self, bucket: &str, batch: &Batch) -> Result<Vec<Placed>> {
        let manifest_key = self.cfg.common.work.key(&format!(
            "manifests/{}-{}.json",
            batch.window.stamp(),
            batch.id
        ));
        let manifest = Manifest::new(bucket, batch);
        self.work
            .put(
                &key_path(&manifest_key),
                PutPayload::from(Bytes::from(manifest.to_json())),
            )
            .await?;
        fault::point("after-manifest");

        let lease_until = now() + self.cfg.claim_lease.as_secs().max(1) as i64;
        let manifest = self.cfg.common.work.url_of(&manifest_key);
        let claimed = claim_batch(
            &*self.ledger,
            bucket,
            batch,
            &self.owner,
            lease_until,
            manifest,
        )
        .await?;
        let sent_ours = claimed.to_send;
        if sent_ours {
            self.send_job(&claimed.record).await?;
        }
        let claims = claimed.claims;

        // Settle every object; batches of others are looked up once each.
        let mut others: HashMap<BatchId, bool> = HashMap::new();
        let mut placed = Vec::with_capacity(claims.len());
        for claim in claims {
            let p = match claim {
                Claim::Mine if sent_ours => Placed::Claimed,
                // Our lease ran out and another mapper sealed the batch: it sends the job.
                Claim::Mine => match self.settle_other(&batch.id, &mut others).await? {
                    true => Placed::Claimed,
                    false => Placed::Retry,
                },
                Claim::Taken(other) => match self.settle_other(&other, &mut others).await? {
                    true => Placed::Duplicate,
                    false => Placed::Retry,
                },
                Claim::Closed => Placed::Retry,
            };
            placed.push(p);
        }
        Ok(placed)
    }

    /// Makes sure another batch's job is queued (finishing what a crashed mapper left); true once
    /// it is, false if its mapper is still claiming.
    async fn settle_other(&self, id: &BatchId, seen: &mut HashMap<BatchId, bool>) -> Result<bool> {
        if let Some(s) = seen.get(id) {
            return Ok(*s);
        }
        let settled = match self.ledger.batch(id).await? {
            None => false,
            Some(rec) => match rec.state {
                BatchState::Queued | BatchState::Committed | BatchState::Empty => true,
                BatchState::Sealed => {
                    tracing::info!(batch_id = %id, "sending the job of a batch sealed by a crashed mapper");
                    self.send_job(&rec).await?;
                    true
                }
                BatchState::Open if rec.lease_until < now() => {
                    tracing::info!(batch_id = %id, owner = %rec.owner, "sealing a batch abandoned by its mapper");
                    self.ledger.seal_abandoned(id).await?;
                    // Sealed now, by us or by a competitor: either way its job may be sent again
                    // safely (mergers skip committed batches and rewrite the same key).
                    match self.ledger.batch(id).await? {
                        Some(r) if r.state == BatchState::Sealed => {
                            self.send_job(&r).await?;
                            true
                        }
                        Some(r) => r.state != BatchState::Open,
                        None => false,
                    }
                }
                BatchState::Open => false,
            },
        };
        seen.insert(id.clone(), settled);
        Ok(settled)
    }

    /// Sends a sealed batch's merge job, then records it as queued.
    async fn send_job(&self, rec: &BatchRecord) -> Result<()> {
        let job = MergeJob {
            v: FORMAT_VERSION,
            batch_id: rec.id.clone(),
            source: rec.source,
            window: rec.window,
            manifest: rec.manifest.clone(),
        };
        // The job carries the batch span's W3C context: the merger's span continues this trace.
        let trace = inject(&tracing::Span::current());
        let message_id = self.merge.send_job(&job.to_json(), &trace).await?;
        tracing::debug!(batch_id = %rec.id, %message_id, queue = self.merge.name(), "merge job sent");
        fault::point("after-send");
        self.ledger.mark_queued(&rec.id).await?;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placed {
    /// Claimed by the batch just queued.
    Claimed,
    /// Already in another queued or committed batch (duplicate event or redelivery).
    Duplicate,
    /// Its batch is still being claimed by a live mapper: try again later.
    Retry,
}
