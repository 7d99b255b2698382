//! Raw objects, batches and merge jobs: what the mapper (or `flowmerge compact`'s planner) hands to
//! a merger. A batch id is a pure function of its window and objects, so a retried batch writes the
//! same output key and overwrites itself instead of duplicating.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::window::{Window, window_of};

/// A raw log object as listed or announced by an event.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Key (path) inside the input store.
    pub key: String,
    pub size: u64,
    /// Identity of this version of the object; a replaced object is a new object.
    pub etag: Option<String>,
    /// Unix seconds.
    pub last_modified: i64,
}

/// Deterministic identifier of a batch: 16 hex digits of SHA-256 over window and objects.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchId(pub String);

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl BatchId {
    /// The id of a batch of these objects of one `scope` in this window, independent of their
    /// order. The scope is where the objects live — the bucket on S3 (equal keys in two buckets
    /// make different batches), empty for a local directory — so `flowmerge compact` over a bucket
    /// and the mapper give the same objects the same id, and the same output key.
    pub fn new(scope: &str, window: &Window, objects: &[ObjectRef]) -> Self {
        let mut parts: Vec<(&str, &str)> = objects
            .iter()
            .map(|o| (o.key.as_str(), o.etag.as_deref().unwrap_or("")))
            .collect();
        parts.sort_unstable();
        let mut h = Sha256::new();
        h.update(window.start.to_be_bytes());
        h.update(window.size.to_be_bytes());
        if !scope.is_empty() {
            h.update(b"scope\0");
            h.update(scope.as_bytes());
            h.update([0]);
        }
        for (key, etag) in parts {
            h.update(key.as_bytes());
            h.update([0]);
            h.update(etag.as_bytes());
            h.update([0]);
        }
        Self(hex::encode(&h.finalize()[..8]))
    }
}

/// The kind of log a batch holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Vpcflow,
    Cloudtrail,
    Dns,
}

impl SourceKind {
    /// Every source, in the order compact reports them.
    pub const ALL: &'static [SourceKind] =
        &[SourceKind::Vpcflow, SourceKind::Cloudtrail, SourceKind::Dns];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Vpcflow => "vpcflow",
            SourceKind::Cloudtrail => "cloudtrail",
            SourceKind::Dns => "dns",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Objects of one window merged into one output file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub id: BatchId,
    pub source: SourceKind,
    pub window: Window,
    pub objects: Vec<ObjectRef>,
}

impl Batch {
    /// A batch of objects of one scope (see [`BatchId::new`]).
    pub fn new(scope: &str, window: Window, objects: Vec<ObjectRef>) -> Self {
        Self {
            id: BatchId::new(scope, &window, &objects),
            source: SourceKind::Vpcflow,
            window,
            objects,
        }
    }

    /// The same batch, of another source (the id does not depend on it: an object is of one
    /// source only).
    pub fn of_source(self, source: SourceKind) -> Self {
        Self { source, ..self }
    }

    pub fn bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }
}

/// Limits on one batch: more objects or bytes than this in a window make several batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_objects: usize,
    pub max_bytes: u64,
}

impl BatchLimits {
    /// Whether a batch of `objects` objects and `bytes` bytes may take one more object of `size`
    /// bytes. An empty batch takes any object, however large.
    pub fn admits(&self, objects: usize, bytes: u64, size: u64) -> bool {
        objects == 0 || (objects < self.max_objects.max(1) && bytes + size <= self.max_bytes)
    }

    /// Whether a batch is full: no object could join it.
    pub fn is_full(&self, objects: usize, bytes: u64) -> bool {
        objects >= self.max_objects.max(1) || bytes >= self.max_bytes
    }
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_objects: 1000,
            max_bytes: 512 * 1024 * 1024,
        }
    }
}

/// Groups objects by window (size in seconds) and cuts each window into batches within `limits`,
/// in key order so the same listing always gives the same batches. `scope` as for
/// [`BatchId::new`]. The mapper cuts its batches by the same [`BatchLimits`] as they fill.
pub fn plan_batches(
    scope: &str,
    objects: Vec<ObjectRef>,
    window_size: i64,
    limits: BatchLimits,
) -> Vec<Batch> {
    let mut by_window: BTreeMap<Window, Vec<ObjectRef>> = BTreeMap::new();
    for o in objects {
        by_window
            .entry(window_of(&o.key, o.last_modified, window_size))
            .or_default()
            .push(o);
    }
    let mut batches = Vec::new();
    for (window, mut objects) in by_window {
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        let mut current: Vec<ObjectRef> = Vec::new();
        let mut bytes = 0u64;
        for o in objects {
            if !limits.admits(current.len(), bytes, o.size) {
                batches.push(Batch::new(scope, window, std::mem::take(&mut current)));
                bytes = 0;
            }
            bytes += o.size;
            current.push(o);
        }
        if !current.is_empty() {
            batches.push(Batch::new(scope, window, current));
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, size: u64) -> ObjectRef {
        ObjectRef {
            key: key.into(),
            size,
            etag: Some(format!("e-{key}")),
            last_modified: 0,
        }
    }

    #[test]
    fn batch_ids_are_deterministic_and_order_free() {
        let w = Window::containing(600, 300);
        let a = [obj("a_20210902T2145Z_x.log", 1), obj("b", 2)];
        let b = [a[1].clone(), a[0].clone()];
        let id = |scope: &str, objects: &[ObjectRef]| BatchId::new(scope, &w, objects);
        assert_eq!(id("", &a), id("", &b));
        assert_eq!(id("", &a).0.len(), 16);
        assert_ne!(id("", &a), id("", &a[..1]));
        let mut changed = a.clone();
        changed[0].etag = Some("other".into());
        assert_ne!(id("", &a), id("", &changed));
        assert_ne!(id("bucket", &a), id("", &a));
        assert_eq!(id("bucket", &a), id("bucket", &b));
    }

    #[test]
    fn batches_split_by_window_and_limits() {
        let objs: Vec<_> = (0..5)
            .map(|i| obj(&format!("x_20210902T21{:02}Z_{i}.log", i * 3), 10))
            .collect();
        let b = plan_batches("", objs.clone(), 300, BatchLimits::default());
        assert_eq!(b.len(), 3, "windows 2100, 2105, 2110");
        assert_eq!(b.iter().map(|b| b.objects.len()).sum::<usize>(), 5);
        let limits = BatchLimits {
            max_objects: 1,
            max_bytes: u64::MAX,
        };
        assert_eq!(plan_batches("", objs.clone(), 3600, limits).len(), 5);
        let limits = BatchLimits {
            max_objects: 100,
            max_bytes: 25,
        };
        assert_eq!(plan_batches("", objs, 3600, limits).len(), 3);
    }
}
