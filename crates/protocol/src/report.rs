//! What a merged batch reports: the objects it left out and why, and its counts. The merger's
//! commit carries it into the ledger, and `flowmerge compact --json` prints it.

use serde::{Deserialize, Serialize};

use crate::batch::{BatchId, ObjectRef};
use crate::window::Window;

/// An object left out of its batch, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub object: ObjectRef,
    pub reason: String,
}

/// What a batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReport {
    pub batch_id: Option<BatchId>,
    pub window: Option<Window>,
    /// Keys of the Parquet files written, one per partition the batch has rows in (none if it
    /// had no record).
    pub output_keys: Vec<String>,
    pub objects: u64,
    pub records_in: u64,
    pub rows_out: u64,
    pub bytes_in: u64,
    pub decoded_bytes: u64,
    pub bytes_out: u64,
    pub quarantined: Vec<Quarantined>,
    /// Keys of objects that were read but held no record (empty, or a header only).
    #[serde(default)]
    pub empty: Vec<String>,
    /// Keys of objects that are not data of their source (a JSON document that holds no
    /// CloudTrail records, such as a digest file): skipped, not quarantined.
    #[serde(default)]
    pub skipped: Vec<String>,
    /// Keys of captures that end inside a packet (cut off): every complete packet was read.
    #[serde(default)]
    pub truncated: Vec<String>,
    /// Records of read objects that are not data (non-DNS packets, malformed DNS messages).
    #[serde(default)]
    pub skipped_records: u64,
}
