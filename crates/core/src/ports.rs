//! Ports: what the pipeline needs from a ledger. [`CommitLedger`] is the merge side, which
//! [`crate::exec::execute`] drives for `flowmerge compact` and the merger alike; it is implemented
//! by `flowmerge-local` (SQLite) and `flowmerge-aws` (DynamoDB), and both pass the same
//! [`crate::conformance`] suite. [`Ledger`] is compact's claim side (the mapper's claims, with
//! leases and seals, live in the DynamoDB adapter).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::batch::{Batch, BatchId, ObjectRef};
use crate::exec::{BatchReport, Quarantined};

pub type LedgerError = Box<dyn std::error::Error + Send + Sync>;

/// State of a batch in the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchState {
    /// Objects claimed, output not yet committed.
    Claimed,
    /// Output written and recorded.
    Committed,
}

/// Durable record of which raw object went into which batch, and which batches are done.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// The objects of `candidates` (by key and etag) that no batch has claimed yet.
    async fn unclaimed(&self, candidates: Vec<ObjectRef>) -> Result<Vec<ObjectRef>, LedgerError>;

    /// Claims the batch's objects for it, conditionally: an object already claimed by another
    /// batch stays with that batch. Returns the batch restricted to the objects it now owns
    /// (re-claiming the same batch is idempotent and returns all of them).
    async fn claim(&self, batch: &Batch) -> Result<Batch, LedgerError>;

    /// Batches claimed but not committed: work a crash left behind, to run again.
    async fn pending(&self) -> Result<Vec<Batch>, LedgerError>;

    async fn state(&self, batch: &BatchId) -> Result<Option<BatchState>, LedgerError>;
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
/// suite in [`crate::conformance`].
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
}
