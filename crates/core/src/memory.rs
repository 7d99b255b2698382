//! The memory a batch may use, and the local disk it spills to when that is not enough.
//!
//! One number, the memory limit, is split between the stages of a batch so that its peak stays
//! under the limit whatever the batch holds (docs/architecture.md, "Bounded memory"):
//!
//! | share | what |
//! |---|---|
//! | 1/8 | read-ahead: fetched objects waiting to be parsed |
//! | 1/4 | decoded objects being read, per batch (split between the parsing threads) |
//! | 1/4 | folded flow keys, across the parsing threads; beyond it they spill |
//! | rest | the merge and the write of what was folded or spilled |
//!
//! CloudTrail and DNS rows are not folded: a batch holds at most an eighth of the limit of its
//! read objects (decoded bytes; the raw bytes of later ones wait on disk) and sorts the rows of
//! at most an eighth at once, writing a larger batch as sorted parts.
//!
//! A spilled or large window is folded back part by part, two parts at a time, each within half
//! of the limit (`part_rows`, `part_bytes`); a larger part is split into parts of its own.
//!
//! The default limit is 60% of the cgroup's memory limit (a Fargate task's size), or of the
//! machine's memory when there is none.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::Result;
use crate::formats::decode::DecodeLimits;

/// How much memory a batch may use, and where it spills. [`MemoryLimits::new`] derives every
/// share from one limit; the fields are public so tests can set one share alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Where folded keys spill (a temporary folder per batch is made inside it).
    pub spill_dir: PathBuf,
    /// Bounds of each object's decoding.
    pub decode: DecodeLimits,
    /// Fetched bytes that may wait to be parsed.
    pub read_ahead_bytes: u64,
    /// Bytes of folded flow keys held across the parsing threads before they spill.
    pub fold_bytes: u64,
    /// Rows a window's merged flows may have to be sorted as one frame; more are written in
    /// hash parts, each sorted ([`SPILL_PARTS`]).
    pub sorted_rows: usize,
    /// Distinct keys one hash part of a large window may have to be one sorted frame; a part
    /// with more is written as its own hash parts (`formats::vpcflow::fold_part`).
    pub part_rows: u64,
    /// Bytes of distinct keys (keys and metrics) one hash part may hold, as for `part_rows`.
    pub part_bytes: u64,
    /// CloudTrail and DNS: decoded bytes of read objects a batch holds in memory until it merges
    /// them; past it, later objects' raw bytes wait in the spill folder and are read then.
    pub held_bytes: u64,
    /// CloudTrail and DNS: decoded bytes of the objects whose rows are sorted as one part; a
    /// batch of more is written as sorted parts, its objects taken in key order.
    pub rows_part_bytes: u64,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        Self::new(default_memory_limit(), None, None)
    }
}

/// Share of the detected memory taken by default: the rest is the process's own, the
/// allocator's slack and the page cache spill files go through.
pub const DEFAULT_SHARE_PERCENT: u64 = 60;

/// A decoded object may hold at least this much, whatever the limit.
const MIN_OBJECT_BYTES: u64 = 16 << 20;

impl MemoryLimits {
    /// Limits for `memory` bytes: the per-object bound is a quarter of it split between the
    /// parsing threads unless `max_object_bytes` says otherwise; spills go to `spill_dir` or the
    /// system's temporary folder.
    pub fn new(memory: u64, spill_dir: Option<PathBuf>, max_object_bytes: Option<u64>) -> Self {
        let threads = rayon::current_num_threads().max(1) as u64;
        let per_object = (memory / 4 / threads).max(MIN_OBJECT_BYTES);
        Self {
            spill_dir: spill_dir.unwrap_or_else(std::env::temp_dir),
            decode: DecodeLimits {
                max_object_bytes: max_object_bytes.unwrap_or(per_object),
                ..DecodeLimits::default()
            },
            read_ahead_bytes: (memory / 8).max(1 << 20),
            fold_bytes: memory / 4,
            sorted_rows: (memory / ROW_BYTES) as usize,
            // Parts are folded two at a time (`PART_FOLDERS`), each within its half of the
            // limit. A constant, not the machine's cores: the parts a window is written in
            // depend on these bounds, and the same batch and limit must give the same bytes.
            part_rows: memory / ROW_BYTES / PART_FOLDERS,
            part_bytes: memory / 4 / PART_FOLDERS,
            held_bytes: (memory / 8).max(1 << 20),
            rows_part_bytes: (memory / 8).max(1 << 20),
        }
    }
}

/// What one merged flow row costs while it is merged and sorted (measured: about 700 bytes per
/// key in the fold and the polars merge together, docs/architecture.md).
pub const ROW_BYTES: u64 = 700;

/// Hash parts of a spilled or large window: fixed, so the same batch gives the same file.
pub const SPILL_PARTS: usize = 16;

/// Hash parts of a large window folded at once, each within `1 / PART_FOLDERS` of the limit.
pub const PART_FOLDERS: u64 = 2;

/// The memory limit when none is given: [`DEFAULT_SHARE_PERCENT`] of the cgroup's limit, or of
/// the machine's memory, or 2 GiB when neither can be read.
pub fn default_memory_limit() -> u64 {
    let total = cgroup_limit()
        .or_else(machine_memory)
        .map(|t| t / 100 * DEFAULT_SHARE_PERCENT);
    total.unwrap_or(2 << 30)
}

/// cgroup v2's `memory.max`, or v1's `memory.limit_in_bytes`; `None` when unlimited.
fn cgroup_limit() -> Option<u64> {
    for file in [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ] {
        if let Ok(text) = std::fs::read_to_string(file) {
            // v1 says "unlimited" with a huge number, v2 with "max".
            if let Ok(n) = text.trim().parse::<u64>()
                && n < (1 << 50)
            {
                return Some(n);
            }
        }
    }
    None
}

/// `MemTotal` of /proc/meminfo.
fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The write buffer of a spill file: a spill writes [`SPILL_PARTS`] files at once per table.
const SPILL_BUFFER: usize = 64 << 10;

/// A batch's spill folder: removed with everything in it when dropped.
#[derive(Debug)]
pub struct SpillDir {
    dir: tempfile::TempDir,
    next: std::sync::atomic::AtomicUsize,
}

impl SpillDir {
    pub fn new(parent: &Path) -> Result<Self> {
        std::fs::create_dir_all(parent).map_err(|e| spill_error(parent, e))?;
        let dir = tempfile::Builder::new()
            .prefix("flowmerge-spill-")
            .tempdir_in(parent)
            .map_err(|e| spill_error(parent, e))?;
        Ok(Self {
            dir,
            next: Default::default(),
        })
    }

    /// Writes `df` to a new file of the folder (uncompressed Parquet: written once, read once).
    pub fn write(&self, df: &mut DataFrame) -> Result<PathBuf> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.path().join(format!("{n:06}.parquet"));
        let file = std::fs::File::create(&path).map_err(|e| spill_error(&path, e))?;
        ParquetWriter::new(std::io::BufWriter::new(file))
            .with_compression(ParquetCompression::Uncompressed)
            .with_statistics(StatisticsOptions::empty())
            .finish(df)?;
        Ok(path)
    }

    /// A new, empty file of the folder, buffered, for bytes of the caller's own form.
    pub fn create(&self) -> Result<(PathBuf, std::io::BufWriter<std::fs::File>)> {
        let (path, file) = self.create_file()?;
        Ok((path, std::io::BufWriter::with_capacity(SPILL_BUFFER, file)))
    }

    /// A new, empty file of the folder, unbuffered (for a writer that buffers on its own).
    pub fn create_file(&self) -> Result<(PathBuf, std::fs::File)> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.path().join(format!("{n:06}.bin"));
        let file = std::fs::File::create(&path).map_err(|e| spill_error(&path, e))?;
        Ok((path, file))
    }

    /// The bytes of a file [`SpillDir::create`] made, which is removed.
    pub fn take(path: &Path) -> Result<Vec<u8>> {
        let bytes = std::fs::read(path).map_err(|e| spill_error(path, e))?;
        std::fs::remove_file(path).map_err(|e| spill_error(path, e))?;
        Ok(bytes)
    }

    /// The folder's path, for error messages.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Reads back a file [`SpillDir::write`] wrote, and removes it.
    pub fn read(path: &Path) -> Result<DataFrame> {
        let file = std::fs::File::open(path).map_err(|e| spill_error(path, e))?;
        let df = ParquetReader::new(file).finish()?;
        std::fs::remove_file(path).map_err(|e| spill_error(path, e))?;
        Ok(df)
    }
}

/// A batch's spill folder, made when first needed: most batches never spill.
#[derive(Debug)]
pub(crate) struct LazySpillDir {
    parent: PathBuf,
    dir: std::sync::OnceLock<Result<SpillDir>>,
}

impl LazySpillDir {
    /// A folder to be made in `parent`.
    pub fn new(parent: &Path) -> Self {
        Self {
            parent: parent.to_path_buf(),
            dir: std::sync::OnceLock::new(),
        }
    }

    /// The folder, made now if it is not yet (an error to make it is the same error later).
    pub fn get(&self) -> Result<&SpillDir> {
        self.dir
            .get_or_init(|| SpillDir::new(&self.parent))
            .as_ref()
            .map_err(|e| crate::Error::Spill(e.to_string()))
    }

    /// The folder, if anything asked for it.
    pub fn into_inner(self) -> Option<Result<SpillDir>> {
        self.dir.into_inner()
    }
}

/// A spill file's or folder's I/O error, naming it.
pub(crate) fn spill_error(path: &Path, e: std::io::Error) -> crate::Error {
    crate::Error::Spill(format!("{}: {e}", path.display()))
}
