//! VPC flow logs: the field catalogue, the parser, and the combiner that folds records by flow
//! key as they are parsed.

pub mod combine;
pub mod fields;
pub mod parse;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use polars::prelude::*;

pub use combine::{Combiner, FoldedSize, ObjectStats, Room, combine_object};
pub use parse::{ParseOptions, ParsedObject, parse_object, parse_text};

use parse::Layout;

use crate::error::Result;
use crate::exec::{BatchReport, ProgressHook};
use crate::memory::{LazySpillDir, MemoryLimits, PART_FOLDERS, SPILL_PARTS, SpillDir, spill_error};
use crate::merge::{Finish, merge_frames};
use crate::source::{Incoming, Merged, ReadOptions, RemergeOptions, Rows, Source, read_each};
use crate::window::Window;

/// The dataset folder under the output prefix.
pub const DATASET: &str = "vpcflowlogs";

/// VPC flow logs: records of one flow key in one window merged into one row (sum, min, max, or,
/// count), written to the window's hour partition.
pub struct VpcFlow;

impl Source for VpcFlow {
    fn dataset(&self) -> &'static str {
        DATASET
    }

    fn merge(
        &self,
        window: Window,
        incoming: Incoming,
        opts: &ReadOptions,
        progress: Option<&ProgressHook>,
    ) -> Result<Merged> {
        let (rows, report) = merge_incoming(incoming, opts, window.start, progress)?;
        Ok(Merged {
            partitions: rows.map(|r| (window.partition(), r)).into_iter().collect(),
            report,
        })
    }

    /// Rows of the same key and window merge again (a late batch's rows join the first
    /// batch's), through the same plan as a batch's.
    fn remerge(&self, files: Vec<(String, DataFrame)>, opts: &RemergeOptions) -> Result<DataFrame> {
        let frames = files
            .into_iter()
            .map(|(name, df)| Self::windowed(&name, df, opts.merge_window))
            .collect::<Result<Vec<_>>>()?;
        // Rows are unique per key and window within a file, so when no window is in two files
        // (no late batch, no coarser merge window) there is nothing to merge: only sort.
        let finish = match windows_disjoint(&frames)? {
            true => Finish::Sorted,
            false => Finish::Final,
        };
        Ok(merge_frames(frames, finish)?)
    }

    fn rows_of_file(&self, name: &str, df: DataFrame, opts: &RemergeOptions) -> Result<DataFrame> {
        Self::windowed(name, df, opts.merge_window)
    }

    /// Rows merge when their flow keys are equal (and their windows, which a bucket need not
    /// split by).
    fn bucket_key(&self, column: &str) -> bool {
        column != fields::WINDOW_START && fields::role_of_column(column) == fields::Role::Key
    }
}

impl VpcFlow {
    /// A file's rows with their `window_start` (files of earlier releases name it only in their
    /// file name), moved to windows of `merge_window` seconds if asked.
    fn windowed(name: &str, df: DataFrame, merge_window: Option<i64>) -> Result<DataFrame> {
        let df = match df.get_column_index(fields::WINDOW_START) {
            Some(_) => df,
            None => {
                let start = name
                    .get(..14)
                    .and_then(crate::rollup::window_of_stamp)
                    .ok_or_else(|| {
                        crate::Error::Rollup(format!(
                            "{name}: no window_start column and no window in the file name"
                        ))
                    })?;
                with_window_start(df, start)?
            }
        };
        // Window starts are Unix seconds after 1970: the remainder floors them.
        Ok(match merge_window {
            None => df,
            Some(w) => df
                .lazy()
                .with_column(
                    (col(fields::WINDOW_START) - col(fields::WINDOW_START) % lit(w))
                        .alias(fields::WINDOW_START),
                )
                .collect()?,
        })
    }
}

/// Whether no `window_start` value occurs in more than one frame.
fn windows_disjoint(frames: &[DataFrame]) -> PolarsResult<bool> {
    let mut seen = std::collections::HashSet::new();
    for df in frames {
        let windows = df.column(fields::WINDOW_START)?.unique()?;
        for w in windows.i64()?.iter() {
            if !seen.insert(w) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Adds the `window_start` column (every row of a batch has its window) in its canonical place,
/// just before `merged_records`. It is added after the merge, not before, so that the batch's
/// hash aggregation does not hash a constant.
pub fn with_window_start(mut df: DataFrame, start: i64) -> PolarsResult<DataFrame> {
    let column = Int64Chunked::full(fields::WINDOW_START.into(), start, df.height()).into_column();
    let at = df
        .get_column_names()
        .iter()
        .position(|n| fields::column_rank(n.as_str()) > fields::column_rank(fields::WINDOW_START))
        .unwrap_or(df.width());
    df.insert_column(at, column)?;
    Ok(df)
}

/// Parses a batch's objects in parallel as they arrive, quarantining the bad ones, and merges
/// everything. Each worker thread folds the records it parses into its own [`Combiner`] (a hash
/// table on the flow key), so memory follows the batch's distinct keys rather than its records;
/// polars then merges the threads' tables into the batch's rows.
///
/// The folded keys are bounded by `MemoryLimits::fold_bytes`: beyond it a thread spills its
/// table to local disk in [`SPILL_PARTS`] hash parts (by the string key columns, so rows that
/// the merge would group are always in the same part), and each part is merged on its own at the
/// end. A window with more rows than `MemoryLimits::sorted_rows` is written as its parts, each
/// sorted, one after the other; otherwise it is one sorted frame, the same frame whether or not
/// anything spilled.
fn merge_incoming(
    incoming: Incoming,
    opts: &ReadOptions,
    window_start: i64,
    progress: Option<&ProgressHook>,
) -> Result<(Option<Rows>, BatchReport)> {
    let memory = &opts.memory;
    let threads = rayon::current_num_threads().max(1);
    // Each thread's table starts half as large again as the last batch's largest grew (a
    // table that outgrows its room copies all of it once more), within a quarter of the
    // thread's share of the fold's memory, so that room it does not use never makes it spill
    // much sooner.
    let room = last_room()
        .times(3, 2)
        .within(memory.fold_bytes / threads as u64 / 4);
    tracing::debug!(
        entries = room.entries,
        bytes = room.bytes(),
        "room of the threads' tables"
    );
    let state = FoldState {
        combiners: (0..threads)
            .map(|_| Mutex::new(Combiner::with_room(room)))
            .collect(),
        held: AtomicU64::new(0),
        budget: memory.fold_bytes,
        spill: LazySpillDir::new(&memory.spill_dir),
        parts: Mutex::new(vec![Vec::new(); SPILL_PARTS]),
        failed: Mutex::new(None),
    };
    let (read, mut report) = read_each(
        incoming,
        progress,
        |object, body| {
            // This thread's own combiner: the lock is never contended.
            let slot = rayon::current_thread_index().unwrap_or(0) % state.combiners.len();
            let mut combiner = state.combiners[slot]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let before = combiner.held_bytes();
            let stats = combine_object(
                &object.key,
                body,
                &opts.vpcflow,
                &memory.decode,
                &mut combiner,
            )
            .map_err(|e| e.to_string());
            // A combiner only grows, until it spills.
            let after = combiner.held_bytes();
            let grew = after.saturating_sub(before);
            let held = state.held.fetch_add(grew, Ordering::Relaxed) + grew;
            if held > state.budget {
                let table = std::mem::take(&mut *combiner);
                drop(combiner);
                state.held.fetch_sub(after, Ordering::Relaxed);
                if let Err(e) = state.spill(table) {
                    state.fail(e);
                }
            }
            stats
        },
        |stats| stats.records,
    )?;
    if let Some(e) = state
        .failed
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
    {
        return Err(e);
    }

    for (object, stats) in read {
        report.records_in += stats.records;
        report.decoded_bytes += stats.decoded_bytes;
        if stats.records == 0 {
            report.empty.push(object.key);
        }
    }
    let combiners = state
        .combiners
        .into_iter()
        .map(|c| c.into_inner().unwrap_or_else(PoisonError::into_inner));
    let rows = match state.spill.into_inner() {
        None => {
            let combiners: Vec<Combiner> = combiners.collect();
            remember_room(combiners.iter().map(Combiner::largest_table));
            // The threads' tables folded into one: with one layout its rows are the merge's
            // rows already, and polars only orders them (no group-by of every row again).
            let mut all = Combiner::default();
            for combiner in combiners {
                all.absorb(combiner);
            }
            if all.live_entries() > memory.sorted_rows as u64 {
                // More keys than one sort may hold: written in parts, as a spilled fold is (the
                // parts depend on the rows, not on whether they were spilled).
                let spill = SpillDir::new(&memory.spill_dir)?;
                let mut parts = vec![Vec::new(); SPILL_PARTS];
                parts_of(all, &spill, &mut parts, 0)?;
                return Ok((
                    Some(merge_spilled(spill, parts, window_start, memory)?),
                    report,
                ));
            }
            let finish = match all.single_layout() {
                true => Finish::Sorted,
                false => Finish::Final,
            };
            let frames = all.into_frames()?;
            if frames.is_empty() {
                return Ok((None, report));
            }
            Some(Rows::Frame(with_window_start(
                merge_frames(frames, finish)?,
                window_start,
            )?))
        }
        Some(spill) => {
            let spill = spill?;
            let mut parts = state
                .parts
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner);
            // What the threads still hold is spilled too: each part is then folded from its
            // files alone.
            for combiner in combiners {
                parts_of(combiner, &spill, &mut parts, 0)?;
            }
            Some(merge_spilled(spill, parts, window_start, memory)?)
        }
    };
    Ok((rows, report))
}

/// The largest table a thread built in the last batch that did not spill: the room
/// ([`Room`]) the next batch's tables reserve. One per process: batches of one pipeline are
/// alike in size, and a wrong guess costs only untouched room or a doubling, never output.
static LAST_ROOM: Mutex<Room> = Mutex::new(Room::NONE);

fn last_room() -> Room {
    *LAST_ROOM.lock().unwrap_or_else(PoisonError::into_inner)
}

fn remember_room(tables: impl Iterator<Item = Room>) {
    if let Some(largest) = tables.max_by_key(|r| r.entries) {
        *LAST_ROOM.lock().unwrap_or_else(PoisonError::into_inner) = largest;
    }
}

/// What the parsing threads share while they fold.
struct FoldState {
    combiners: Vec<Mutex<Combiner>>,
    /// Bytes held by all the combiners.
    held: AtomicU64,
    budget: u64,
    /// The batch's spill folder, made at the first spill.
    spill: LazySpillDir,
    /// Spilled files per hash part, with the layout of the table each is of.
    parts: Mutex<Vec<SpilledPart>>,
    failed: Mutex<Option<crate::Error>>,
}

impl FoldState {
    /// Writes a combiner's folded keys to disk, in hash parts.
    fn spill(&self, table: Combiner) -> Result<()> {
        let dir = self.spill.get()?;
        let mut written = vec![Vec::new(); SPILL_PARTS];
        parts_of(table, dir, &mut written, 0)?;
        tracing::debug!(tables = written[0].len(), "folded keys spilled");
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        for (part, files) in parts.iter_mut().zip(written) {
            part.extend(files);
        }
        Ok(())
    }

    fn fail(&self, e: crate::Error) {
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        failed.get_or_insert(e);
    }
}

/// One hash part's spilled files, each with the layout of the table it is of.
type SpilledPart = Vec<(std::path::PathBuf, Arc<Layout>)>;

/// Spills a combiner's tables into `dir`, one file per table and hash part of `level`, added to
/// `parts`.
fn parts_of(
    combiner: Combiner,
    dir: &SpillDir,
    parts: &mut [SpilledPart],
    level: u32,
) -> Result<()> {
    combiner
        .spill_parts(SPILL_PARTS, level, |p, layout| {
            let (path, file) = dir.create().map_err(std::io::Error::other)?;
            parts[p].push((path, Arc::clone(layout)));
            Ok(file)
        })
        .map_err(|e| spill_error(dir.path(), e))
}

/// A part's merged rows, spilled: the file and how many rows it holds.
type FoldedPart = (std::path::PathBuf, usize);

/// Levels of hash parts below the first: four bits of a 64-bit hash each.
const MAX_LEVEL: u32 = 16;

/// What folding one hash part gave: its sorted rows, or the parts it was split into.
enum Folded {
    Rows(FoldedPart),
    Split(Vec<SpilledPart>),
}

/// Folds one hash part's spilled files (`level` 0 for the first parts, below that a part's
/// own parts).
///
/// A part with at most `part_rows` distinct keys and `part_bytes` of them is one sorted frame,
/// spilled in turn. A larger one is written as its [`SPILL_PARTS`] parts of the next level, in
/// order: its keys are spilled again by the next level's hash as soon as the fold crosses a
/// bound, so a part never holds more than the bounds, whatever the batch, and those parts are
/// folded the same way. Which parts are split depends only on their distinct keys
/// ([`FoldedSize`]), so the same batch and limit give the same files, however the fold spilled.
fn fold_part(
    files: &SpilledPart,
    dir: &SpillDir,
    window_start: i64,
    level: u32,
    memory: &MemoryLimits,
) -> Result<Folded> {
    let too_large = |size: FoldedSize| {
        level < MAX_LEVEL && (size.entries > memory.part_rows || size.bytes > memory.part_bytes)
    };
    let mut combiner = Combiner::default();
    let mut split: Option<Vec<SpilledPart>> = None;
    for (path, layout) in files {
        let bytes = SpillDir::take(path)?;
        combiner
            .fold_spilled(layout, &bytes)
            .map_err(|e| crate::Error::Spill(format!("{}: {e}", path.display())))?;
        if too_large(combiner.folded_size()) {
            let parts = split.get_or_insert_with(|| vec![Vec::new(); SPILL_PARTS]);
            parts_of(std::mem::take(&mut combiner), dir, parts, level + 1)?;
        }
    }
    if let Some(mut parts) = split {
        parts_of(combiner, dir, &mut parts, level + 1)?;
        tracing::debug!(
            level,
            "a part larger than its bounds is written as its parts"
        );
        return Ok(Folded::Split(parts));
    }
    // As after an unspilled fold: one layout's table holds the merge's rows already.
    let finish = match combiner.single_layout() {
        true => Finish::Sorted,
        false => Finish::Final,
    };
    let frames = combiner.into_frames()?;
    let mut part = with_window_start(merge_frames(frames, finish)?, window_start)?;
    Ok(Folded::Rows((dir.write(&mut part)?, part.height())))
}

/// A hash part waiting to be folded, and where it is among the window's parts: its number at
/// each level, so the parts' rows are written in the order of these paths.
struct PartTask {
    path: Vec<u8>,
    files: SpilledPart,
}

/// The parts [`merge_spilled`]'s folders share.
struct PartQueue {
    /// Parts not yet taken; the last is taken first, so a split part's own parts are folded
    /// before the next first-level part (its spill files wait on disk no longer than needed).
    waiting: Vec<PartTask>,
    /// Parts waiting or being folded: the folders stop when none is left.
    left: usize,
    failed: Option<crate::Error>,
    /// A thread panicked: the others stop.
    stopped: bool,
}

/// Folds each hash part's spilled files on its own (a part's rows are all the rows of its
/// keys), then gives the window's rows: one sorted frame when there are at most `sorted_rows`
/// of them (the frame an unspilled merge gives), or the sorted parts in order.
fn merge_spilled(
    dir: SpillDir,
    parts: Vec<SpilledPart>,
    window_start: i64,
    memory: &MemoryLimits,
) -> Result<Rows> {
    // Parts are folded side by side, [`PART_FOLDERS`] at most, each holding only its own keys
    // (`MemoryLimits::part_rows` is set for that many).
    let threads = rayon::current_num_threads().clamp(1, PART_FOLDERS as usize);
    let leaves = fold_all(parts, threads, |task| {
        let level = task.path.len() as u32 - 1;
        fold_part(&task.files, &dir, window_start, level, memory)
    })?;
    let rows: usize = leaves.iter().map(|(_, height)| height).sum();
    let merged: Vec<std::path::PathBuf> = leaves.into_iter().map(|(file, _)| file).collect();
    if rows > memory.sorted_rows {
        return Ok(Rows::Parts {
            files: merged,
            rows,
            dir: Arc::new(dir),
        });
    }
    let frames = merged
        .iter()
        .map(|f| SpillDir::read(f))
        .collect::<Result<Vec<_>>>()?;
    Ok(Rows::Frame(merge_frames(frames, Finish::Sorted)?))
}

/// Folds every part with `fold` on `threads` threads, and returns the rows of every part not
/// split, in the order of their paths: a split part's own parts, in order, where it would be.
/// The parts of a split part go back in the queue, so a window whose keys all fall in one part
/// still has every thread busy. The threads are plain ones, not rayon tasks: a rayon task
/// waiting on the sort's parallel work would take up another part meanwhile, and hold many
/// parts at once. The first error stops every thread; so does a panic, which is then passed on.
fn fold_all(
    parts: Vec<SpilledPart>,
    threads: usize,
    fold: impl Fn(&PartTask) -> Result<Folded> + Sync,
) -> Result<Vec<FoldedPart>> {
    let waiting: Vec<PartTask> = parts
        .into_iter()
        .enumerate()
        .rev()
        .map(|(p, files)| PartTask {
            path: vec![p as u8],
            files,
        })
        .collect();
    let queue = Mutex::new(PartQueue {
        left: waiting.len(),
        waiting,
        failed: None,
        stopped: false,
    });
    let changed = Condvar::new();
    let leaves: Mutex<Vec<(Vec<u8>, FoldedPart)>> = Mutex::new(Vec::new());
    let lock = || queue.lock().unwrap_or_else(PoisonError::into_inner);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let _stop = StopOnPanic {
                    queue: &queue,
                    changed: &changed,
                };
                loop {
                    let task = {
                        let mut q = lock();
                        loop {
                            if q.failed.is_some() || q.stopped || q.left == 0 {
                                return;
                            }
                            if let Some(task) = q.waiting.pop() {
                                break task;
                            }
                            q = changed.wait(q).unwrap_or_else(PoisonError::into_inner);
                        }
                    };
                    let done = fold(&task);
                    let mut q = lock();
                    match done {
                        Ok(Folded::Rows(part)) => leaves
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push((task.path, part)),
                        Ok(Folded::Split(parts)) => {
                            q.left += parts.len();
                            for (p, files) in parts.into_iter().enumerate().rev() {
                                let mut path = task.path.clone();
                                path.push(p as u8);
                                q.waiting.push(PartTask { path, files });
                            }
                        }
                        // The batch fails: no thread takes another part.
                        Err(e) => {
                            q.failed.get_or_insert(e);
                        }
                    }
                    q.left -= 1;
                    changed.notify_all();
                }
            });
        }
    });
    let queue = queue.into_inner().unwrap_or_else(PoisonError::into_inner);
    if let Some(e) = queue.failed {
        return Err(e);
    }
    let mut leaves = leaves.into_inner().unwrap_or_else(PoisonError::into_inner);
    leaves.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(leaves.into_iter().map(|(_, part)| part).collect())
}

/// Stops the other threads of [`fold_all`] when the one it belongs to panics: they would wait
/// for its part forever, and the scope passes a thread's panic on only once all have ended.
struct StopOnPanic<'a> {
    queue: &'a Mutex<PartQueue>,
    changed: &'a Condvar,
}

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .stopped = true;
            self.changed.notify_all();
        }
    }
}

/// A row's first-level hash part: a stable hash (FNV-1a) of its [`PART_COLUMNS`] values, in
/// that order, `None` for a null or a column the layout lacks (as the merge's union makes it).
pub(crate) fn part_of<'a>(values: impl Iterator<Item = Option<&'a [u8]>>) -> usize {
    let h = values.fold(FNV_OFFSET, part_mix);
    (h % SPILL_PARTS as u64) as usize
}

/// A row's hash part at `level` (1 to [`MAX_LEVEL`]) within its part of the level above: four
/// bits of a stable hash (XXH3) of every key column's name and value, by name, nulls and
/// columns the layout lacks left out — so two layouts' entries of one merged row agree, and
/// rows alike in the first level's columns (one pair of addresses, many ports) spread out.
pub(crate) fn sub_part_of<'a>(
    named: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
    level: u32,
    scratch: &mut Vec<u8>,
) -> usize {
    scratch.clear();
    for (name, value) in named {
        if let Some(value) = value {
            scratch.extend_from_slice(name.as_bytes());
            scratch.push(0);
            scratch.extend_from_slice(&(value.len() as u32).to_le_bytes());
            scratch.extend_from_slice(value);
        }
    }
    let h = xxhash_rust::xxh3::xxh3_64(scratch);
    let shift = 64 - 4 * level.clamp(1, MAX_LEVEL);
    ((h >> shift) & 0xf) as usize
}

/// Key columns whose values choose a row's hash part: strings, which the merge compares by
/// their bytes as the hash does.
const PART_COLUMNS: [&str; 4] = ["account_id", "interface_id", "srcaddr", "dstaddr"];

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// One part column's value mixed into a part hash. A marker byte keeps null apart from the
/// empty string and values from each other.
fn part_mix(h: u64, value: Option<&[u8]>) -> u64 {
    let h = fnv(h, &[u8::from(value.is_some())]);
    fnv(h, value.unwrap_or_default())
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::ObjectRef;
    use crate::memory::MemoryLimits;

    const HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";

    /// Objects whose keys repeat across them (so spilled parts must merge again), a null key
    /// and a second layout.
    fn objects() -> Vec<crate::source::Fetched> {
        let mut out = Vec::new();
        for o in 0..12u32 {
            let mut text = format!("{HEADER}\n");
            for r in 0..400u32 {
                let k = (r * 7 + o * 13) % 900;
                text.push_str(&format!(
                    "2 {} eni-{} 10.0.{}.{} 10.1.0.{} {} {} 6 {} {} {} {} ACCEPT OK\n",
                    100 + k % 3,
                    k % 5,
                    k % 7,
                    k,
                    o % 2,
                    1024 + k,
                    // Three spellings of one port: the merge's typed group-by makes them one.
                    ["443", "+443", "0443"][(o % 3) as usize],
                    r + 1,
                    r * 40,
                    1000 + r,
                    1060 + o
                ));
            }
            text.push_str("2 100 eni-0 - - - - - - - 1000 1100 - NODATA\n");
            out.push(text);
        }
        out.push("version srcaddr dstaddr action\n2 10.0.0.1 10.9.9.9 ACCEPT\n".into());
        out.into_iter()
            .enumerate()
            .map(|(i, t)| {
                let object = ObjectRef {
                    key: format!("o{i}.log"),
                    size: t.len() as u64,
                    etag: None,
                    last_modified: 0,
                };
                (object, Ok(bytes::Bytes::from(t)))
            })
            .collect()
    }

    fn merged(memory: &MemoryLimits) -> Rows {
        let opts = ReadOptions {
            memory: memory.clone(),
            ..ReadOptions::default()
        };
        let incoming = Incoming::from_fetched(objects());
        let (rows, report) = merge_incoming(incoming, &opts, 900, None).unwrap();
        assert!(report.quarantined.is_empty(), "{:?}", report.quarantined);
        rows.unwrap()
    }

    /// The frames of spilled parts, in order; each is sorted.
    fn parts_of_rows(rows: &Rows) -> Vec<DataFrame> {
        let Rows::Parts { files, .. } = rows else {
            panic!("{rows:?}");
        };
        let parts: Vec<DataFrame> = files.iter().map(|f| SpillDir::read(f).unwrap()).collect();
        for p in &parts {
            let sorted = merge_frames(vec![p.clone()], Finish::Sorted).unwrap();
            assert!(p.equals_missing(&sorted), "each part is sorted");
        }
        parts
    }

    /// The sorted parts `memory` writes the test objects in, with every object's fold spilled
    /// and with none spilled: the same parts both ways, which together are `want`'s rows.
    fn parts_spilled_or_not(memory: &MemoryLimits, want: &DataFrame) -> Vec<DataFrame> {
        let [spilled, unspilled] = [1, 1 << 30].map(|fold_bytes| {
            let rows = merged(&MemoryLimits {
                fold_bytes,
                ..memory.clone()
            });
            assert_eq!(rows.height(), want.height());
            let frames = parts_of_rows(&rows);
            let got = merge_frames(frames.clone(), Finish::Sorted).unwrap();
            assert!(got.equals_missing(want), "{got}\n{want}");
            frames
        });
        assert_eq!(spilled.len(), unspilled.len());
        for (s, u) in spilled.iter().zip(&unspilled) {
            assert!(s.equals_missing(u), "{s}\n{u}");
        }
        spilled
    }

    #[test]
    fn spilling_gives_the_frame_an_unspilled_merge_gives() {
        let plenty = MemoryLimits::new(1 << 30, None, None);
        let Rows::Frame(want) = merged(&plenty) else {
            panic!("a small batch is one frame");
        };
        // The plain merge (typed frames, polars' group-by) gives the same frame.
        let plain: Vec<DataFrame> = objects()
            .into_iter()
            .flat_map(|(o, body)| {
                parse_text(&o.key, &body.unwrap(), &ParseOptions::default())
                    .unwrap()
                    .frames
            })
            .collect();
        let plain = with_window_start(merge_frames(plain, Finish::Final).unwrap(), 900).unwrap();
        assert!(want.equals_missing(&plain), "{want}\n{plain}");
        assert_eq!(
            want.column("dstport")
                .unwrap()
                .as_materialized_series()
                .drop_nulls()
                .n_unique()
                .unwrap(),
            1,
            "one port, however spelled"
        );
        let spill_dir = tempfile::tempdir().unwrap();
        // Every object spills its fold; the parts still fit one sort: the very same frame.
        let tight = MemoryLimits {
            fold_bytes: 1,
            spill_dir: spill_dir.path().to_path_buf(),
            ..plenty.clone()
        };
        let Rows::Frame(got) = merged(&tight) else {
            panic!("rows under sorted_rows are one frame");
        };
        assert!(got.equals_missing(&want), "{got}\n{want}");
        // More rows than one sort may hold: the sorted parts, which together are the same rows,
        // and part by part the same whether the fold spilled or not (the output is the parts
        // in order).
        let parts = MemoryLimits {
            sorted_rows: 10,
            ..tight.clone()
        };
        parts_spilled_or_not(&parts, &want);
        assert_eq!(
            std::fs::read_dir(spill_dir.path()).unwrap().count(),
            0,
            "spill folders are removed"
        );
        assert_eq!(
            want.column(fields::WINDOW_START)
                .unwrap()
                .i64()
                .unwrap()
                .get(0),
            Some(900)
        );
    }

    #[test]
    fn split_parts_come_back_in_path_order_and_a_panic_stops_every_folder() {
        // What a part holds is the fold's business, not the queue's: empty parts here.
        let parts = |n: usize| vec![SpilledPart::new(); n];
        // Part 1 is split into two; each leaf's file is named by its path.
        let folded = fold_all(parts(3), 2, |task| {
            Ok(match task.path.as_slice() {
                [1] => Folded::Split(parts(2)),
                path => Folded::Rows((format!("{path:?}").into(), path.len())),
            })
        })
        .unwrap();
        let names: Vec<String> = folded
            .iter()
            .map(|(file, _)| file.display().to_string())
            .collect();
        assert_eq!(names, ["[0]", "[1, 0]", "[1, 1]", "[2]"]);

        // A folder that panics must not leave the other waiting for its part: the call ends,
        // with the panic. (Without the stop, this thread would never send.)
        let (sent, got) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let result = std::panic::catch_unwind(|| {
                fold_all(parts(4), 2, |task| match task.path.as_slice() {
                    // The first part taken.
                    [0] => panic!("a folder fails"),
                    // Parts that split for as long as they are taken: only a stop ends the
                    // other folder.
                    _ => Ok(Folded::Split(parts(1))),
                })
            });
            let _ = sent.send(result.is_err());
        });
        let panicked = got
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the folders stopped after one panicked");
        assert!(panicked, "the panic is passed on");
    }

    #[test]
    fn part_hashes_are_stable_and_follow_the_merged_row() {
        // The part of a key is part of the output's bytes, so the hashes must never change:
        // FNV-1a's and XXH3's published test vectors.
        assert_eq!(fnv(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2d06_8005_38d3_94c2);
        let a = Some(b"a".as_slice());
        assert_eq!(
            part_of([a, None].into_iter()),
            part_of([a, None].into_iter())
        );
        // Below the first level, a column a layout lacks is a null, as the merge's union
        // makes it: a two-column layout's entry and a three-column one's with a null agree.
        let mut scratch = Vec::new();
        for level in 1..=MAX_LEVEL {
            let two = sub_part_of([("a", a), ("c", a)].into_iter(), level, &mut scratch);
            let three = sub_part_of(
                [("a", a), ("b", None), ("c", a)].into_iter(),
                level,
                &mut scratch,
            );
            assert_eq!(two, three);
        }
        // Rows alike in the first level's columns but for a port spread over the parts below.
        let ports: std::collections::HashSet<usize> = (0..200u32)
            .map(|port| {
                let port = port.to_string();
                let named = [("account_id", a), ("dstport", Some(port.as_bytes()))];
                sub_part_of(named.into_iter(), 1, &mut scratch)
            })
            .collect();
        assert_eq!(ports.len(), SPILL_PARTS);
    }

    /// A window whose parts hold more keys than a part may is written as the parts of those
    /// parts, each sorted, in order: together the window's rows, and the same files whether
    /// the fold spilled or not.
    #[test]
    fn parts_larger_than_their_bounds_are_split_the_same_way_spilled_or_not() {
        let plenty = MemoryLimits::new(1 << 30, None, None);
        let Rows::Frame(want) = merged(&plenty) else {
            panic!("a small batch is one frame");
        };
        let spill_dir = tempfile::tempdir().unwrap();
        let limits = MemoryLimits {
            sorted_rows: 10,
            part_rows: 12,
            spill_dir: spill_dir.path().to_path_buf(),
            ..plenty.clone()
        };
        let frames = parts_spilled_or_not(&limits, &want);
        assert!(
            frames.len() > SPILL_PARTS,
            "parts of parts: {} files",
            frames.len()
        );
        assert!(
            frames.iter().all(|f| f.height() <= 12),
            "no part over its bound"
        );
        // A bound on the parts' bytes splits them too.
        let limits = MemoryLimits {
            sorted_rows: 10,
            part_bytes: 1_000,
            spill_dir: spill_dir.path().to_path_buf(),
            ..plenty.clone()
        };
        assert!(parts_spilled_or_not(&limits, &want).len() > SPILL_PARTS);
        assert_eq!(
            std::fs::read_dir(spill_dir.path()).unwrap().count(),
            0,
            "spill folders are removed"
        );
    }
}
