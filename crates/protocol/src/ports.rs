//! Ports: what the pipeline needs from a ledger and a queue. [`ClaimLedger`] is the claim side,
//! which [`crate::claim::claim_batch`] drives for `flowmerge compact` and the mapper alike;
//! [`CommitLedger`] is the merge side, which `flowmerge_core::exec::execute` drives for compact and the
//! merger; [`JobQueue`] carries jobs between them. Each is implemented by `flowmerge-local`
//! (SQLite, in process) and `flowmerge-aws` (DynamoDB, SQS), and both adapters pass the same
//! `flowmerge_core::conformance` suite.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::batch::{Batch, BatchId, ObjectRef, SourceKind};
use crate::report::{BatchReport, Quarantined};
use crate::window::Window;

pub type LedgerError = Box<dyn std::error::Error + Send + Sync>;

/// Where a batch is in its life (docs/aws-protocol.md): open → sealed → queued → committed, or
/// sealed → empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchState {
    /// A claimer (a mapper, a compact run) is claiming objects for it under a lease.
    Open,
    /// Its objects are frozen; its job may not have been sent yet.
    Sealed,
    /// Its merge job is durably queued.
    Queued,
    /// Its output is written and recorded.
    Committed,
    /// Sealed without any object (every candidate belonged to other batches).
    Empty,
}

impl BatchState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Sealed => "sealed",
            Self::Queued => "queued",
            Self::Committed => "committed",
            Self::Empty => "empty",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => Self::Open,
            "sealed" => Self::Sealed,
            "queued" => Self::Queued,
            "committed" => Self::Committed,
            "empty" => Self::Empty,
            _ => return None,
        })
    }
}

/// A batch as the claim side of a ledger records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRecord {
    pub id: BatchId,
    pub state: BatchState,
    /// Who holds the lease while the batch is open.
    pub owner: String,
    /// End of the lease, Unix seconds: after it, anyone may take the batch over or seal it.
    pub lease_until: i64,
    /// Where the batch's manifest is (`s3://…` for the mapper; empty where the job carries its
    /// objects itself, as in `flowmerge compact`).
    pub manifest: String,
    pub window: Window,
    pub source: SourceKind,
}

/// Outcome of claiming one object for a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The object is now (or already was) claimed by this open batch.
    Mine,
    /// The object belongs to this batch (possibly our own, sealed meanwhile by someone else).
    Taken(BatchId),
    /// The object is unclaimed but our batch is no longer open for us (our lease expired and
    /// another claimer sealed it): leave the object for a later batch.
    Closed,
}

/// The claim side of a ledger: batches opened under a lease, objects claimed conditionally, the
/// batch sealed before its job is sent. Every object belongs to at most one batch, and a batch's
/// objects are frozen before anyone merges it. Implemented by SQLite (`flowmerge-local`) and
/// DynamoDB (`flowmerge-aws`), both held to `flowmerge_core::conformance::claim_ledger_conformance`.
///
/// Objects are named by `scope` (the bucket on S3, empty for a local directory) and their key
/// and etag, as in [`BatchId::new`].
#[async_trait]
pub trait ClaimLedger: Send + Sync {
    /// Creates the batch in state `open`, leased as `rec` says. If it exists already (a retry of
    /// the same objects), changes nothing and returns it.
    async fn open_batch(&self, rec: &BatchRecord) -> Result<Option<BatchRecord>, LedgerError>;

    /// The batch, read consistently; `None` if unknown.
    async fn batch(&self, id: &BatchId) -> Result<Option<BatchRecord>, LedgerError>;

    /// Claims objects for `batch`, provided it is still open and leased to `owner`: one outcome
    /// per object, in order. An object claimed by another batch stays there.
    async fn claim_all(
        &self,
        scope: &str,
        objects: &[ObjectRef],
        batch: &BatchId,
        owner: &str,
    ) -> Result<Vec<Claim>, LedgerError>;

    /// The batch that claimed each object, in order (`None`: unclaimed).
    async fn claims(
        &self,
        scope: &str,
        objects: &[ObjectRef],
    ) -> Result<Vec<Option<BatchId>>, LedgerError>;

    /// Seals `owner`'s open batch; false if it is not open or not `owner`'s.
    async fn seal(&self, id: &BatchId, owner: &str) -> Result<bool, LedgerError>;

    /// Seals an open batch whose lease has run out (its claimer died); false otherwise.
    async fn seal_abandoned(&self, id: &BatchId) -> Result<bool, LedgerError>;

    /// Takes over an open batch whose lease has run out; false otherwise.
    async fn take_over(
        &self,
        id: &BatchId,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, LedgerError>;

    /// sealed → queued, once its job is durably sent; false if it was not sealed.
    async fn mark_queued(&self, id: &BatchId) -> Result<bool, LedgerError>;

    /// sealed → empty, for a batch left without objects; false if it was not sealed.
    async fn mark_empty(&self, id: &BatchId) -> Result<bool, LedgerError>;
}

/// The merge side of a ledger: what a batch's execution reads and records.
#[async_trait]
pub trait CommitLedger: Send + Sync {
    /// Whether the batch is committed already (a redelivered job, a rerun after a crash).
    async fn is_committed(&self, batch: &BatchId) -> Result<bool, LedgerError>;

    /// Records the batch's quarantined objects with their reasons, before its commit.
    /// Idempotent: a retried batch records the same objects again.
    async fn quarantine(&self, batch: &Batch, objects: &[Quarantined]) -> Result<(), LedgerError>;

    /// Records the batch as committed with its counts and output (which exists by now).
    /// Idempotent: committing a committed batch again changes nothing and is not an error.
    async fn commit_batch(&self, report: &BatchReport) -> Result<(), LedgerError>;
}

/// Where a partition's current rollup is (docs/contracts.md §7): writing → committed → done, or
/// writing → aborted when a crash left its outputs unrecorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollupState {
    /// Its outputs may be (partly) written; nothing may read them as data yet.
    Writing,
    /// Its outputs are whole and recorded: the files it replaces are deleted next.
    Committed,
    /// The files it replaced are gone.
    Done,
    /// Given up (a crash, or a lease lost before the commit): its outputs were deleted.
    Aborted,
}

impl RollupState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Writing => "writing",
            Self::Committed => "committed",
            Self::Done => "done",
            Self::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "writing" => Self::Writing,
            "committed" => Self::Committed,
            "done" => Self::Done,
            "aborted" => Self::Aborted,
            _ => return None,
        })
    }
}

/// A partition's current rollup, as the ledger holds it: one per partition, replaced by the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollupRecord {
    /// The folder the rollup writes into (its key below the store's root), e.g.
    /// `out/vpcflowlogs/year=2026/month=11/day=01/hour=00`.
    pub partition: String,
    /// The rollup's id: a hash of its inputs and options; its files are `rollup-<id>-NNNN.parquet`.
    pub id: String,
    pub state: RollupState,
    pub source: SourceKind,
    /// File names (in `partition`) of the files written.
    pub outputs: Vec<String>,
    /// File names (in `partition`) of the files the outputs replace: deleted after the commit.
    pub replaced: Vec<String>,
    /// Input files read, rows written.
    pub inputs: u64,
    pub rows: u64,
}

/// The rollup side of a ledger: a lease per partition, so that one partition is never rolled up
/// twice at once, and the partition's current rollup, written under that lease. Implemented by
/// SQLite and DynamoDB, both held to `flowmerge_core::conformance::rollup_ledger_conformance`.
#[async_trait]
pub trait RollupLedger: Send + Sync {
    /// Leases `partition` to `owner` until `lease_until` (Unix seconds) if it is free, its lease
    /// is over at `now`, or `owner` holds it already. `Ok(None)`: someone else holds it. Otherwise
    /// the partition's current rollup, if it ever had one.
    async fn lease_partition(
        &self,
        partition: &str,
        owner: &str,
        lease_until: i64,
        now: i64,
    ) -> Result<Option<Option<RollupRecord>>, LedgerError>;

    /// Records `rec` as its partition's current rollup, provided `owner` holds the partition's
    /// lease at `now`; false (and nothing written) otherwise.
    async fn put_rollup(
        &self,
        rec: &RollupRecord,
        owner: &str,
        now: i64,
    ) -> Result<bool, LedgerError>;

    /// Ends `owner`'s lease of the partition (nothing if it is not `owner`'s).
    async fn release_partition(&self, partition: &str, owner: &str) -> Result<(), LedgerError>;
}

pub type QueueError = Box<dyn std::error::Error + Send + Sync>;

/// A job received from a [`JobQueue`]: invisible to other receivers until it is acknowledged,
/// released, or its visibility runs out (then it is delivered again).
#[derive(Clone, Debug)]
pub struct Delivery {
    pub message_id: String,
    /// Names this delivery for `extend`, `ack` and `release`.
    pub receipt_handle: String,
    pub body: String,
    /// String attributes (W3C `traceparent` travels here).
    pub attributes: HashMap<String, String>,
    /// How many times the job has been delivered (1 on first delivery).
    pub receive_count: u32,
    /// When it was first sent, Unix milliseconds.
    pub sent_at_ms: Option<i64>,
}

/// A queue of jobs with at-least-once delivery and visibility timeouts, as SQS has them:
/// implemented by SQS (`flowmerge-aws`) and in process (`flowmerge-local`), both held to the
/// suite in `flowmerge_core::conformance`.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Queues a job durably; returns its message id.
    async fn send_job(
        &self,
        body: &str,
        attributes: &[(String, String)],
    ) -> Result<String, QueueError>;

    /// Up to `max` jobs, waiting at most `wait` for the first; each stays invisible to other
    /// receivers for `visibility`.
    async fn receive_jobs(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, QueueError>;

    /// Keeps a job in hand invisible for `visibility` more (a heartbeat).
    async fn extend(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError>;

    /// The job is done: it is never delivered again.
    async fn ack(&self, receipt: &str) -> Result<(), QueueError>;

    /// Hands the job back at once, for another receiver (visibility 0).
    async fn release(&self, receipt: &str) -> Result<(), QueueError>;

    /// The queue's name, for logs, spans and metrics.
    fn name(&self) -> &str;

    /// Acknowledges many jobs (SQS does ten per call).
    async fn ack_all(&self, receipts: &[String]) -> Result<(), QueueError> {
        for r in receipts {
            self.ack(r).await?;
        }
        Ok(())
    }

    /// Sets the visibility of many jobs in hand (SQS does ten per call).
    async fn extend_all(
        &self,
        receipts: &[String],
        visibility: Duration,
    ) -> Result<(), QueueError> {
        for r in receipts {
            self.extend(r, visibility).await?;
        }
        Ok(())
    }
}
