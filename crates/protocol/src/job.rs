//! Messages between the mapper and the merger (docs/contracts.md §5). A merge job is small and names a
//! manifest object that lists the batch's raw objects: a batch of a thousand objects does not fit
//! in an SQS message. Both are versioned JSON (`"v": 1`); a reader rejects versions it does not know.

use serde::{Deserialize, Serialize};

use crate::batch::{Batch, BatchId, ObjectRef, SourceKind};
use crate::error::{Error, Result};
use crate::window::Window;

/// Version of the job and manifest formats this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// "Merge this batch": the body of a merge-queue message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeJob {
    pub v: u32,
    pub batch_id: BatchId,
    pub source: SourceKind,
    pub window: Window,
    /// `s3://bucket/key` of the batch's [`Manifest`].
    pub manifest: String,
}

/// The raw objects of one batch, all in one bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub v: u32,
    pub batch_id: BatchId,
    pub source: SourceKind,
    pub window: Window,
    pub bucket: String,
    pub objects: Vec<ObjectRef>,
}

impl Manifest {
    pub fn new(bucket: &str, batch: &Batch) -> Self {
        Self {
            v: FORMAT_VERSION,
            batch_id: batch.id.clone(),
            source: batch.source,
            window: batch.window,
            bucket: bucket.to_owned(),
            objects: batch.objects.clone(),
        }
    }

    /// The batch this manifest describes, restricted to `objects`.
    pub fn batch_of(&self, objects: Vec<ObjectRef>) -> Batch {
        Batch {
            id: self.batch_id.clone(),
            source: self.source,
            window: self.window,
            objects,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and numbers always serialises.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn from_json(what: &str, body: &[u8]) -> Result<Self> {
        let m: Self = serde_json::from_slice(body).map_err(|e| Error::Invalid {
            what: "manifest",
            reason: format!("{what}: {e}"),
        })?;
        check_version("manifest", what, m.v)?;
        Ok(m)
    }
}

impl MergeJob {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(what: &str, body: &str) -> Result<Self> {
        let j: Self = serde_json::from_str(body).map_err(|e| Error::Invalid {
            what: "merge job",
            reason: format!("{what}: {e}"),
        })?;
        check_version("merge job", what, j.v)?;
        Ok(j)
    }
}

fn check_version(kind: &'static str, what: &str, v: u32) -> Result<()> {
    if v == FORMAT_VERSION {
        return Ok(());
    }
    Err(Error::Invalid {
        what: kind,
        reason: format!("{what}: version {v} is not supported (this build reads {FORMAT_VERSION})"),
    })
}

/// Whether a key names a raw log object: not under a `_`/`.`-prefixed folder (our own `_flowmerge/`
/// work area, Spark/Athena markers) and not our Parquet output.
pub fn is_raw_log_key(key: &str) -> bool {
    !key.is_empty()
        && !key.ends_with('/')
        && !key.ends_with(".parquet")
        && !key
            .split('/')
            .any(|part| part.starts_with('_') || part.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_and_reject_unknown_versions() {
        let job = MergeJob {
            v: FORMAT_VERSION,
            batch_id: BatchId("0011223344556677".into()),
            source: SourceKind::Vpcflow,
            window: Window::containing(600, 300),
            manifest: "s3://b/_flowmerge/manifests/x.json".into(),
        };
        let text = job.to_json();
        assert_eq!(MergeJob::from_json("m", &text).unwrap(), job);
        let v2 = text.replace("\"v\":1", "\"v\":2");
        let err = MergeJob::from_json("msg-1", &v2).unwrap_err().to_string();
        assert!(err.contains("msg-1") && err.contains("version 2"), "{err}");
        assert!(MergeJob::from_json("m", "{}").is_err());
    }

    #[test]
    fn raw_log_keys_exclude_work_area_and_output() {
        assert!(is_raw_log_key(
            "AWSLogs/1/vpcflowlogs/us-east-1/2026/11/01/1_vpcflowlogs_x.log.gz"
        ));
        assert!(is_raw_log_key("flat/with space é.log"));
        assert!(!is_raw_log_key("out/_flowmerge/manifests/a.json"));
        assert!(!is_raw_log_key("out/vpcflowlogs/year=2026/x.parquet"));
        assert!(!is_raw_log_key("dir/"));
        assert!(!is_raw_log_key(".hidden/x.log"));
    }
}
