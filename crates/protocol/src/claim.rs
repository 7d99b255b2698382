//! The claim protocol, written once for `flowmerge compact` and the mapper (docs/aws-protocol.md):
//! open the batch under a lease, claim its objects conditionally, seal it. After
//! [`claim_batch`], a sealed batch's objects are frozen and it is the caller's to send (the mapper
//! queues a merge job, compact hands the batch to its workers) and then to mark queued.
//!
//! Each step is idempotent and a crash between any two leaves a state that the next claimer
//! finishes: a batch left open is sealed once its lease runs out ([`ClaimLedger::seal_abandoned`]),
//! a sealed one has its job sent again (mergers skip committed batches and rewrite the same key).

use crate::batch::{Batch, ObjectRef};
use crate::fault;
use crate::ports::{BatchRecord, BatchState, Claim, ClaimLedger, LedgerError};

/// What [`claim_batch`] did.
#[derive(Clone, Debug)]
pub struct Claimed {
    /// The batch as this call opened it (state `open` at the time).
    pub record: BatchRecord,
    /// One outcome per object of the batch, in order.
    pub claims: Vec<Claim>,
    /// This call sealed the batch and it owns at least one object: its job is the caller's to
    /// send, then to mark queued.
    pub to_send: bool,
}

impl Claimed {
    /// The objects of `batch` that it owns (those claimed [`Claim::Mine`]).
    pub fn owned(&self, batch: &Batch) -> Vec<ObjectRef> {
        batch
            .objects
            .iter()
            .zip(&self.claims)
            .filter(|(_, c)| **c == Claim::Mine)
            .map(|(o, _)| o.clone())
            .collect()
    }
}

/// Opens `batch` (objects of `scope`) leased to `owner` until `lease_until` (Unix seconds),
/// claims its objects and seals it. A batch of the same objects that exists already (a retry
/// after a crash) is taken over once its lease has run out; while another claimer holds it, its
/// objects are only looked up. A sealed batch left without objects is marked empty.
///
/// Fault points: `after-claim`, `after-seal`.
pub async fn claim_batch(
    ledger: &dyn ClaimLedger,
    scope: &str,
    batch: &Batch,
    owner: &str,
    lease_until: i64,
    manifest: String,
) -> Result<Claimed, LedgerError> {
    let record = BatchRecord {
        id: batch.id.clone(),
        state: BatchState::Open,
        owner: owner.to_owned(),
        lease_until,
        manifest,
        window: batch.window,
        source: batch.source,
    };
    let ours = match ledger.open_batch(&record).await? {
        None => true,
        Some(existing) if existing.state == BatchState::Open => {
            ledger.take_over(&batch.id, owner, lease_until).await?
        }
        Some(_) => false,
    };
    let claims = match ours {
        true => {
            ledger
                .claim_all(scope, &batch.objects, &batch.id, owner)
                .await?
        }
        // Not ours to claim for: learn where each object is.
        false => ledger
            .claims(scope, &batch.objects)
            .await?
            .into_iter()
            .map(|b| b.map_or(Claim::Closed, Claim::Taken))
            .collect(),
    };
    fault::point("after-claim");
    let mut to_send = false;
    if ours && ledger.seal(&batch.id, owner).await? {
        fault::point("after-seal");
        if claims.contains(&Claim::Mine) {
            to_send = true;
        } else {
            ledger.mark_empty(&batch.id).await?;
        }
    }
    Ok(Claimed {
        record,
        claims,
        to_send,
    })
}
