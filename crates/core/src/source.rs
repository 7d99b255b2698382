//! Sources: what differs between the kinds of log flowmerge carries, behind one trait. A source
//! says how its objects' records are read and merged and into which table they go; everything
//! else — batching, claims, the batch protocol, the output key scheme — is shared.
//!
//! Which source an object belongs to is decided by [`classify_key`] (AWS's key layout first, then
//! the file extension) and, when the key says nothing, by [`sniff`] over the object's first bytes.

use std::io::Read;

use bytes::Bytes;
use polars::prelude::*;
use rayon::prelude::*;

use crate::batch::{ObjectRef, SourceKind};
use crate::error::Result;
use crate::exec::{BatchReport, ProgressHook, Quarantined};
use crate::formats::cloudtrail;
use crate::formats::dns::{self, DnsOptions};
use crate::formats::vpcflow::ParseOptions;
use crate::memory::{LazySpillDir, MemoryLimits, SpillDir, spill_error};
use crate::window::Window;

pub use flowmerge_protocol::classify::{Class, classify_key};

/// A fetched object: its bytes, or why it could not be read (quarantined).
pub type Fetched = (ObjectRef, std::result::Result<Bytes, String>);

/// One object of a batch as it arrives from the fetch: its place in the batch, its bytes, and
/// its share of the read-ahead budget, given back when the object is dropped after reading.
pub struct Arrival {
    pub index: usize,
    pub fetched: Fetched,
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A batch's objects in the order they are fetched, while later ones are still being fetched
/// (bounded read-ahead). An `Err` is a fetch that failed for a reason that is not the object's
/// (throttling, a timeout): the batch fails, and nothing after it is read.
pub struct Incoming {
    rx: tokio::sync::mpsc::Receiver<Result<Arrival>>,
}

impl Incoming {
    pub fn new(rx: tokio::sync::mpsc::Receiver<Result<Arrival>>) -> Self {
        Self { rx }
    }

    /// Objects fetched already (tests, tools).
    pub fn from_fetched(fetched: Vec<Fetched>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(fetched.len().max(1));
        for (index, fetched) in fetched.into_iter().enumerate() {
            // The channel holds them all: this never waits nor fails.
            let _ = tx.try_send(Ok(Arrival {
                index,
                fetched,
                permit: None,
            }));
        }
        Self { rx }
    }
}

impl Iterator for Incoming {
    type Item = Result<Arrival>;

    /// Blocks until the next object is fetched (call it off the async runtime).
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.blocking_recv()
    }
}

/// Rows of one partition of a batch.
#[derive(Debug)]
pub enum Rows {
    /// One frame, written as it is.
    Frame(DataFrame),
    /// Parts spilled to local disk, each sorted, written in order as the file's row groups (a
    /// window with more rows than the memory limit sorts at once).
    Parts {
        files: Vec<std::path::PathBuf>,
        rows: usize,
        /// Keeps the files until they are written.
        dir: std::sync::Arc<crate::memory::SpillDir>,
    },
}

impl Rows {
    pub fn height(&self) -> usize {
        match self {
            Rows::Frame(df) => df.height(),
            Rows::Parts { rows, .. } => *rows,
        }
    }
}

/// A batch's rows, per partition of its table.
#[derive(Debug, Default)]
pub struct Merged {
    /// `(partition path below the table folder, rows)`, e.g. `year=2026/month=11/day=01`.
    pub partitions: Vec<(String, Rows)>,
    pub report: BatchReport,
}

/// One kind of log.
pub trait Source: Send + Sync {
    /// The table's folder under the output prefix.
    fn dataset(&self) -> &'static str;

    /// Reads and merges a batch's objects (on a blocking thread): quarantines the bad ones, and
    /// returns the rows per partition and what each object held.
    fn merge(
        &self,
        window: Window,
        incoming: Incoming,
        opts: &ReadOptions,
        progress: Option<&ProgressHook>,
    ) -> Result<Merged>;

    /// Merges the rows of one partition's files again, for a rollup: `files` pairs each file's
    /// name with its rows, in name order. The result keeps the source's output contract (columns,
    /// types, sort) and is a pure function of its input.
    fn remerge(&self, files: Vec<(String, DataFrame)>, opts: &RemergeOptions) -> Result<DataFrame>;

    /// A file's rows as [`Source::remerge`] reads them, for a rollup too large to merge at once
    /// (`rollup::spill`), which deals rows into buckets before it merges them: what remerge does
    /// to each file on its own first (flow logs: the `window_start` column added and moved to
    /// the merge window). It must be idempotent: remerge does it again.
    fn rows_of_file(
        &self,
        _name: &str,
        df: DataFrame,
        _opts: &RemergeOptions,
    ) -> Result<DataFrame> {
        Ok(df)
    }

    /// For the same rollup: whether `column` is one of the columns that rows which may merge
    /// agree on; rows equal in all of them go to one bucket. A source whose rows never merge
    /// says `false` for every column, and its rows are dealt out in turn.
    fn bucket_key(&self, column: &str) -> bool;
}

/// How a rollup merges rows again.
#[derive(Clone, Debug, Default)]
pub struct RemergeOptions {
    /// Flow logs: rows merge within windows of this many seconds instead of their own.
    pub merge_window: Option<i64>,
}

/// The frames stacked in order, with the columns of `order` in that order (a column a file lacks
/// is null).
pub(crate) fn stack(
    files: Vec<(String, DataFrame)>,
    order: &[(&str, &str)],
) -> PolarsResult<LazyFrame> {
    let frames: Vec<LazyFrame> = files.into_iter().map(|(_, df)| df.lazy()).collect();
    let stacked = match frames.len() {
        1 => frames.into_iter().next().unwrap_or_default(),
        _ => concat_lf_diagonal(frames, UnionArgs::default())?,
    };
    Ok(stacked.select(order.iter().map(|(c, _)| col(*c)).collect::<Vec<_>>()))
}

/// How each source reads its objects.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    pub vpcflow: ParseOptions,
    pub dns: DnsOptions,
    /// The batch's memory bounds (decoding, folding, spilling).
    pub memory: MemoryLimits,
}

/// The implementation of a source.
pub fn implementation(kind: SourceKind) -> &'static dyn Source {
    match kind {
        SourceKind::Vpcflow => &crate::formats::vpcflow::VpcFlow,
        SourceKind::Cloudtrail => &CloudTrail,
        SourceKind::Dns => &DnsCaptures,
    }
}

/// How many bytes of an object [`sniff`] wants.
pub const SNIFF_BYTES: u64 = 4096;

/// The source of an object whose key says nothing, from its first bytes (gzip or plain): JSON is
/// CloudTrail, a pcap or pcapng magic is a DNS capture, anything else is read as flow logs (whose
/// reader says what is wrong with it).
pub fn sniff(head: &[u8]) -> SourceKind {
    let mut text = Vec::new();
    let head = if head.starts_with(&[0x1f, 0x8b]) {
        // A prefix of a gzip stream: take what decompresses, the error at its cut is expected.
        let _ = flate2::read::MultiGzDecoder::new(head)
            .take(SNIFF_BYTES * 4)
            .read_to_end(&mut text);
        &text[..]
    } else {
        head
    };
    if crate::formats::dns::capture::is_capture_magic(head) {
        return SourceKind::Dns;
    }
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    match head.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | Some(b'[') => SourceKind::Cloudtrail,
        _ => SourceKind::Vpcflow,
    }
}

/// Reads a batch's objects in parallel with `read` as they arrive, telling `progress` of each
/// (its bytes and `records` of what was read). Returns what was read per object in batch order,
/// and a report with the raw bytes and the quarantined objects (those that could not be fetched
/// as gone, or not read); or the first fetch error.
pub(crate) fn read_each<T: Send>(
    incoming: Incoming,
    progress: Option<&ProgressHook>,
    read: impl Fn(&ObjectRef, &[u8]) -> std::result::Result<T, String> + Sync,
    records: impl Fn(&T) -> u64 + Sync,
) -> Result<(Vec<(ObjectRef, T)>, BatchReport)> {
    let outcomes = for_each_arrival(incoming, |object, body| {
        let got = read(object, body);
        if let Some(hook) = progress {
            (hook.0)(object.size, got.as_ref().map_or(0, &records));
        }
        got
    })?;
    let mut report = BatchReport::default();
    let mut ok = Vec::with_capacity(outcomes.len());
    for (object, outcome) in outcomes {
        report.bytes_in += object.size;
        match outcome {
            Ok(t) => ok.push((object, t)),
            Err(reason) => {
                tracing::warn!(key = %object.key, %reason, "object quarantined");
                report.quarantined.push(Quarantined { object, reason });
            }
        }
    }
    Ok((ok, report))
}

/// Runs `read` on every object as it arrives, on the rayon pool (each object's bytes are dropped,
/// and its read-ahead share given back, once it is read). Returns the outcomes in batch order; an
/// object that could not be fetched has its reason as the outcome. A fetch error stops the
/// reading and is returned.
fn for_each_arrival<T: Send>(
    incoming: Incoming,
    read: impl Fn(&ObjectRef, &[u8]) -> std::result::Result<T, String> + Sync,
) -> Result<Vec<(ObjectRef, std::result::Result<T, String>)>> {
    let failed: std::sync::Mutex<Option<crate::Error>> = std::sync::Mutex::new(None);
    let mut outcomes: Vec<(usize, ObjectRef, std::result::Result<T, String>)> = incoming
        .map_while(|arrival| match arrival {
            Ok(a) => Some(a),
            Err(e) => {
                *failed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                None
            }
        })
        .par_bridge()
        .map(|arrival| {
            let Arrival {
                index,
                fetched: (object, body),
                permit,
            } = arrival;
            let outcome = match &body {
                Ok(bytes) => read(&object, bytes),
                Err(reason) => Err(reason.clone()),
            };
            drop((body, permit));
            (index, object, outcome)
        })
        .collect();
    if let Some(e) = failed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Err(e);
    }
    outcomes.sort_unstable_by_key(|(index, _, _)| *index);
    Ok(outcomes.into_iter().map(|(_, o, r)| (o, r)).collect())
}

/// Partitions of one frame each.
fn frames(partitions: Vec<(String, DataFrame)>) -> Vec<(String, Rows)> {
    partitions
        .into_iter()
        .map(|(p, df)| (p, Rows::Frame(df)))
        .collect()
}

/// An object of a source whose rows a batch holds until it merges them (CloudTrail, DNS): what
/// was read, or — once the batch holds [`MemoryLimits::held_bytes`] of decoded objects — its raw
/// bytes in the batch's spill folder, read when its turn comes.
enum Held<T> {
    Read(T),
    Spilled(std::path::PathBuf),
}

/// `raw` kept in a new file of the batch's spill folder.
fn keep<T>(spill: &LazySpillDir, raw: &[u8]) -> Result<Held<T>> {
    let (path, mut file) = spill.get()?.create()?;
    std::io::Write::write_all(&mut file, raw)
        .and_then(|()| std::io::Write::flush(&mut file))
        .map_err(|e| spill_error(&path, e))?;
    Ok(Held::Spilled(path))
}

/// How a source whose rows a batch holds reads an object.
trait ReadRows: Sync {
    type Read: Send;
    /// Reads one object (an error quarantines it).
    fn read(&self, object: &ObjectRef, raw: &[u8]) -> std::result::Result<Self::Read, String>;
    /// The object's decoded size: what it costs to hold.
    fn decoded(read: &Self::Read) -> u64;
    /// Its records, for the progress bar.
    fn records(read: &Self::Read) -> u64;
}

/// How such a source merges what it read, objects in key order.
trait MergeRows<T> {
    /// Adds the next object's rows, and accounts for it in `report`.
    fn add(&mut self, object: &ObjectRef, read: T, report: &mut BatchReport);
    /// The rows added since the last call, per partition (in partition order), each sorted.
    fn take(&mut self) -> PolarsResult<Vec<(String, DataFrame)>>;
}

/// A batch of a source whose rows are held, within its memory limit. Objects are read in
/// parallel as they arrive until the batch holds [`MemoryLimits::held_bytes`] of them (decoded);
/// the raw bytes of the rest are kept in the spill folder and read later, a few at a time in
/// parallel. Then the objects are added in key order, and every
/// [`MemoryLimits::rows_part_bytes`] of them taken out as a sorted part. One part is one frame
/// per partition, as a batch was before it had parts; more are written in order as each
/// partition's row groups (`Rows::Parts`). Where parts end depends only on the objects' keys and
/// decoded sizes, so the same batch and limit give the same files, whichever objects were held
/// and whichever spilled.
fn merge_held<R: ReadRows>(
    reader: &R,
    merge: &mut impl MergeRows<R::Read>,
    incoming: Incoming,
    memory: &MemoryLimits,
    progress: Option<&ProgressHook>,
) -> Result<Merged> {
    let spill = LazySpillDir::new(&memory.spill_dir);
    let held_bytes = std::sync::atomic::AtomicU64::new(0);
    let told = |object: &ObjectRef, records: u64| {
        if let Some(hook) = progress {
            (hook.0)(object.size, records);
        }
    };
    // An object's outcome: quarantined (its reason), or held — unless keeping its raw bytes
    // failed, which is the local disk's fault, not the object's: the batch fails.
    let (arrived, mut report) = read_each(
        incoming,
        None,
        |object, raw| {
            if held_bytes.load(std::sync::atomic::Ordering::Relaxed) >= memory.held_bytes {
                return Ok(keep(&spill, raw));
            }
            let got = reader.read(object, raw);
            told(object, got.as_ref().map_or(0, R::records));
            let got = got?;
            held_bytes.fetch_add(R::decoded(&got), std::sync::atomic::Ordering::Relaxed);
            Ok(Ok(Held::Read(got)))
        },
        |_| 0,
    )?;
    let mut arrived = arrived
        .into_iter()
        .map(|(object, held)| held.map(|held| (object, held)))
        .collect::<Result<Vec<_>>>()?;
    arrived.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    // Per partition, its parts' files in order and their rows.
    type Parted = std::collections::BTreeMap<String, (Vec<std::path::PathBuf>, usize)>;
    let mut parts = Parted::new();
    let write_part = |merge: &mut dyn MergeRows<R::Read>, parts: &mut Parted| -> Result<()> {
        let dir = spill.get()?;
        for (partition, mut df) in merge.take()? {
            let rows = df.height();
            let path = dir.write(&mut df)?;
            let part = parts.entry(partition).or_default();
            part.0.push(path);
            part.1 += rows;
        }
        Ok(())
    };
    let last = arrived.len();
    let mut part_bytes = 0u64;
    let mut objects = arrived.into_iter().enumerate().peekable();
    let mut batch = Vec::new();
    while objects.peek().is_some() {
        // The next objects, as many as there are threads to read the spilled ones at once.
        batch.clear();
        batch.extend(objects.by_ref().take(rayon::current_num_threads().max(1)));
        let reads = batch
            .par_drain(..)
            .map(|(n, (object, held))| {
                let got = match held {
                    Held::Read(got) => Ok(got),
                    Held::Spilled(path) => {
                        let raw = SpillDir::take(&path)?;
                        let got = reader.read(&object, &raw);
                        told(&object, got.as_ref().map_or(0, R::records));
                        got
                    }
                };
                Ok((n, object, got))
            })
            .collect::<Result<Vec<_>>>()?;
        for (n, object, got) in reads {
            match got {
                Ok(got) => {
                    part_bytes += R::decoded(&got);
                    merge.add(&object, got, &mut report);
                }
                Err(reason) => {
                    tracing::warn!(key = %object.key, %reason, "object quarantined");
                    report.quarantined.push(Quarantined { object, reason });
                }
            }
            if part_bytes >= memory.rows_part_bytes && n + 1 < last {
                write_part(merge, &mut parts)?;
                part_bytes = 0;
            }
        }
    }
    if parts.is_empty() {
        return Ok(Merged {
            partitions: frames(merge.take()?),
            report,
        });
    }
    write_part(merge, &mut parts)?;
    // The parts' folder, which writing them made.
    let dir = spill
        .into_inner()
        .ok_or_else(|| crate::Error::Spill("parts without a spill folder".into()))??;
    let dir = std::sync::Arc::new(dir);
    let partitions = parts
        .into_iter()
        .map(|(partition, (files, rows))| {
            (
                partition,
                Rows::Parts {
                    files,
                    rows,
                    dir: dir.clone(),
                },
            )
        })
        .collect();
    Ok(Merged { partitions, report })
}

/// CloudTrail (`formats::cloudtrail`): one row per event, each `eventID` once, partitioned by
/// the day of its own time.
pub struct CloudTrail;

impl Source for CloudTrail {
    fn dataset(&self) -> &'static str {
        cloudtrail::DATASET
    }

    fn merge(
        &self,
        _window: Window,
        incoming: Incoming,
        opts: &ReadOptions,
        progress: Option<&ProgressHook>,
    ) -> Result<Merged> {
        merge_held(
            &CloudTrailReader(&opts.memory.decode),
            &mut cloudtrail::Merge::default(),
            incoming,
            &opts.memory,
            progress,
        )
    }

    /// Each `eventid` once across the files (the first by file name wins), sorted as a batch is.
    fn remerge(&self, files: Vec<(String, DataFrame)>, _: &RemergeOptions) -> Result<DataFrame> {
        let by: Vec<PlSmallStr> = cloudtrail::SORT_COLUMNS
            .iter()
            .map(|c| (*c).into())
            .collect();
        let n = by.len();
        Ok(stack(files, &cloudtrail::athena_columns())?
            .unique_stable_generic(Some(vec![col("eventid")]), UniqueKeepStrategy::First)
            .sort(
                by,
                SortMultipleOptions::default()
                    .with_maintain_order(true)
                    .with_order_descending_multi(vec![false; n]),
            )
            .collect()?)
    }

    /// Copies of one event are one row.
    fn bucket_key(&self, column: &str) -> bool {
        column == "eventid"
    }
}

/// DNS captures (`formats::dns`): one row per query joined with its response, partitioned by day
/// and capture server.
pub struct DnsCaptures;

impl Source for DnsCaptures {
    fn dataset(&self) -> &'static str {
        dns::DATASET
    }

    fn merge(
        &self,
        _window: Window,
        incoming: Incoming,
        opts: &ReadOptions,
        progress: Option<&ProgressHook>,
    ) -> Result<Merged> {
        merge_held(
            &DnsReader(opts),
            &mut DnsRows::default(),
            incoming,
            &opts.memory,
            progress,
        )
    }

    /// The files' rows sorted again by domain, time and capture file (stable, so rows of one
    /// capture keep their order).
    fn remerge(&self, files: Vec<(String, DataFrame)>, _: &RemergeOptions) -> Result<DataFrame> {
        let by: Vec<PlSmallStr> = ["dns_domainname", "time", "pcap_file"]
            .into_iter()
            .map(PlSmallStr::from)
            .collect();
        Ok(stack(files, &dns::athena_columns())?
            .sort(
                by,
                SortMultipleOptions::default()
                    .with_maintain_order(true)
                    .with_order_descending_multi(vec![false; 3]),
            )
            .collect()?)
    }

    /// No two rows merge.
    fn bucket_key(&self, _column: &str) -> bool {
        false
    }
}

/// How a CloudTrail batch reads its objects.
struct CloudTrailReader<'a>(&'a crate::formats::decode::DecodeLimits);

impl ReadRows for CloudTrailReader<'_> {
    type Read = cloudtrail::ReadObject;

    fn read(&self, object: &ObjectRef, raw: &[u8]) -> std::result::Result<Self::Read, String> {
        cloudtrail::read_object(&object.key, raw, self.0).map_err(|e| e.to_string())
    }

    fn decoded(read: &Self::Read) -> u64 {
        read.decoded_bytes
    }

    fn records(read: &Self::Read) -> u64 {
        read.events.len() as u64
    }
}

impl MergeRows<cloudtrail::ReadObject> for cloudtrail::Merge {
    fn add(&mut self, object: &ObjectRef, read: cloudtrail::ReadObject, report: &mut BatchReport) {
        report.records_in += read.events.len() as u64;
        report.decoded_bytes += read.decoded_bytes;
        if read.skipped {
            report.skipped.push(object.key.clone());
        } else if read.events.is_empty() {
            report.empty.push(object.key.clone());
        }
        cloudtrail::Merge::add(self, read.events);
    }

    fn take(&mut self) -> PolarsResult<Vec<(String, DataFrame)>> {
        self.take_days()
    }
}

/// How a DNS batch reads its captures.
struct DnsReader<'a>(&'a ReadOptions);

impl ReadRows for DnsReader<'_> {
    type Read = dns::ReadCapture;

    fn read(&self, object: &ObjectRef, raw: &[u8]) -> std::result::Result<Self::Read, String> {
        dns::read_object(&object.key, raw, &self.0.dns, &self.0.memory.decode)
            .map_err(|e| e.to_string())
    }

    fn decoded(read: &Self::Read) -> u64 {
        read.decoded_bytes
    }

    fn records(read: &Self::Read) -> u64 {
        read.rows.len() as u64
    }
}

/// A DNS batch's rows, joined per capture: merging them only sorts them.
#[derive(Default)]
struct DnsRows(Vec<dns::Row>);

impl MergeRows<dns::ReadCapture> for DnsRows {
    fn add(&mut self, object: &ObjectRef, read: dns::ReadCapture, report: &mut BatchReport) {
        report.records_in += read.queries + read.responses;
        report.decoded_bytes += read.decoded_bytes;
        if read.stats.truncated {
            report.truncated.push(object.key.clone());
        }
        report.skipped_records += read.stats.skipped_packets + read.malformed;
        if read.rows.is_empty() {
            report.empty.push(object.key.clone());
        }
        self.0.extend(read.rows);
    }

    fn take(&mut self) -> PolarsResult<Vec<(String, DataFrame)>> {
        dns::merge(std::mem::take(&mut self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Window;

    /// CloudTrail objects `o00.json` … : 40 events each over two days, ids unique but for object 7,
    /// whose first ten repeat object 2's ids under another event name; object 5 is not JSON.
    fn cloudtrail_objects() -> Vec<Fetched> {
        (0..12)
            .map(|o| {
                let text = if o == 5 {
                    "{not json".to_owned()
                } else {
                    let events: Vec<String> = (0..40)
                        .map(|i| {
                            let (id, name) = match (o, i) {
                                (7, 0..10) => (format!("e-2-{i}"), "Copy"),
                                _ => (format!("e-{o}-{i}"), ["GetObject", "PutObject"][i % 2]),
                            };
                            format!(
                                r#"{{"eventVersion":"1.08","eventID":"{id}","eventTime":"2026-11-0{}T00:{:02}:00Z","eventSource":"s3.amazonaws.com","eventName":"{name}","recipientAccountId":"11112222333{}","requestParameters":{{"n":{i}}}}}"#,
                                1 + i % 2,
                                o,
                                i % 3
                            )
                        })
                        .collect();
                    format!(r#"{{"Records":[{}]}}"#, events.join(","))
                };
                let object = ObjectRef {
                    key: format!("o{o:02}.json"),
                    size: text.len() as u64,
                    etag: None,
                    last_modified: 0,
                };
                (object, Ok(Bytes::from(text)))
            })
            // Arriving in reverse: the result must not depend on it.
            .rev()
            .collect()
    }

    /// Each partition's frames, in order: the frame, or the parts' frames.
    fn frames_of(merged: &Merged) -> Vec<(String, Vec<DataFrame>)> {
        merged
            .partitions
            .iter()
            .map(|(p, rows)| {
                let frames = match rows {
                    Rows::Frame(df) => vec![df.clone()],
                    Rows::Parts { files, .. } => files
                        .iter()
                        .map(|f| {
                            let file = std::fs::File::open(f).unwrap();
                            ParquetReader::new(file).finish().unwrap()
                        })
                        .collect(),
                };
                (p.clone(), frames)
            })
            .collect()
    }

    /// Asserts that each of a partition's `parts` is sorted by `by` and that together, sorted,
    /// they are `want`; returns them so.
    fn sorted_parts_are(
        partition: &str,
        parts: &[DataFrame],
        want: &DataFrame,
        by: &[&str],
    ) -> DataFrame {
        let sorted = |df: &DataFrame| {
            df.sort(
                by.iter().map(|c| PlSmallStr::from(*c)).collect::<Vec<_>>(),
                SortMultipleOptions::default().with_maintain_order(true),
            )
            .unwrap()
        };
        for part in parts {
            assert!(
                part.equals_missing(&sorted(part)),
                "{partition}: each part is sorted"
            );
        }
        let mut all = parts[0].clone();
        for part in &parts[1..] {
            all.vstack_mut(part).unwrap();
        }
        let got = sorted(&all);
        assert!(got.equals_missing(want), "{partition}:\n{got}\n{want}");
        got
    }

    /// A CloudTrail batch past its memory share: the objects past `held_bytes` wait on disk, and
    /// the rows are sorted in parts of `rows_part_bytes` of objects. Together the parts hold the
    /// rows the unbounded batch writes — each eventID once, the first copy by object key even when
    /// the copies fall in different parts — each part sorted, the same parts every time.
    #[test]
    fn a_cloudtrail_batch_past_its_memory_share_is_written_in_sorted_parts() {
        let spill = tempfile::tempdir().unwrap();
        let plenty = ReadOptions {
            memory: MemoryLimits::new(1 << 30, Some(spill.path().to_path_buf()), None),
            ..ReadOptions::default()
        };
        let window = Window::containing(0, 300);
        let merge = |opts: &ReadOptions| {
            CloudTrail
                .merge(
                    window,
                    Incoming::from_fetched(cloudtrail_objects()),
                    opts,
                    None,
                )
                .unwrap()
        };
        let whole = merge(&plenty);
        let quarantined = |m: &Merged| -> Vec<String> {
            m.report
                .quarantined
                .iter()
                .map(|q| q.object.key.clone())
                .collect()
        };
        assert_eq!(quarantined(&whole), ["o05.json"]);
        assert_eq!(whole.report.records_in, 11 * 40);
        let whole_frames = frames_of(&whole);
        assert_eq!(whole_frames.len(), 2, "two days");
        assert!(
            whole_frames.iter().all(|(_, f)| f.len() == 1),
            "one frame each"
        );

        // An object's text is about 9 KB: parts of three objects, every object but the first
        // waiting on disk.
        let tight = ReadOptions {
            memory: MemoryLimits {
                held_bytes: 1,
                rows_part_bytes: 25_000,
                ..plenty.memory.clone()
            },
            ..ReadOptions::default()
        };
        let parted = merge(&tight);
        assert_eq!(quarantined(&parted), ["o05.json"]);
        assert_eq!(parted.report.records_in, whole.report.records_in);
        assert_eq!(parted.report.decoded_bytes, whole.report.decoded_bytes);
        let parted_frames = frames_of(&parted);
        assert_eq!(
            frames_of(&merge(&tight)),
            parted_frames,
            "the same parts every time"
        );
        for ((day, want), (parted_day, parts)) in whole_frames.into_iter().zip(parted_frames) {
            assert_eq!(day, parted_day);
            assert!(parts.len() >= 3, "{day}: {} parts", parts.len());
            let got = sorted_parts_are(&day, &parts, &want[0], cloudtrail::SORT_COLUMNS);
            let names = got.column("eventname").unwrap().str().unwrap();
            assert!(
                !names.iter().any(|n| n == Some("Copy")),
                "object 2's copies are kept, not object 7's"
            );
        }
        assert_eq!(
            std::fs::read_dir(spill.path()).unwrap().count(),
            1,
            "the parted batch's folder"
        );
        // Local disk that cannot be spilled to is not the objects' fault: the batch fails, and
        // nothing is quarantined.
        let not_a_folder = spill.path().join("file");
        std::fs::write(&not_a_folder, b"").unwrap();
        let no_disk = ReadOptions {
            memory: MemoryLimits {
                spill_dir: not_a_folder,
                ..tight.memory.clone()
            },
            ..ReadOptions::default()
        };
        let failed = CloudTrail.merge(
            window,
            Incoming::from_fetched(cloudtrail_objects()),
            &no_disk,
            None,
        );
        assert!(matches!(failed, Err(crate::Error::Spill(_))), "{failed:?}");
        std::fs::remove_file(spill.path().join("file")).unwrap();
        drop((whole, parted));
        assert_eq!(
            std::fs::read_dir(spill.path()).unwrap().count(),
            0,
            "removed with their rows"
        );
    }

    /// The real DNS captures (`../shared/realdata`, or `FLOWMERGE_REALDATA`), as objects of one
    /// server: one batch of them in parts of one capture each gives the rows of the whole batch.
    #[test]
    fn a_dns_batch_past_its_memory_share_is_written_in_sorted_parts() {
        let realdata = std::env::var_os("FLOWMERGE_REALDATA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../../shared/realdata")
            })
            .join("dns_pcap");
        let mut fetched: Vec<Fetched> = Vec::new();
        for tool in std::fs::read_dir(&realdata).unwrap() {
            for file in std::fs::read_dir(tool.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                // Each capture twice, so that a day's rows come from more than one object.
                for copy in ["a", "b"] {
                    let object = ObjectRef {
                        key: format!("dns/ns1/{copy}-{name}"),
                        size: bytes.len() as u64,
                        etag: None,
                        last_modified: 0,
                    };
                    fetched.push((object, Ok(Bytes::from(bytes.clone()))));
                }
            }
        }
        assert!(
            fetched.len() >= 16,
            "{} captures in {}",
            fetched.len(),
            realdata.display()
        );
        let spill = tempfile::tempdir().unwrap();
        let plenty = ReadOptions {
            memory: MemoryLimits::new(1 << 30, Some(spill.path().to_path_buf()), None),
            ..ReadOptions::default()
        };
        let tight = ReadOptions {
            memory: MemoryLimits {
                held_bytes: 30_000,
                rows_part_bytes: 1,
                ..plenty.memory.clone()
            },
            ..ReadOptions::default()
        };
        let merge = |opts: &ReadOptions| {
            DnsCaptures
                .merge(
                    Window::containing(0, 300),
                    Incoming::from_fetched(fetched.clone()),
                    opts,
                    None,
                )
                .unwrap()
        };
        let (whole, parted) = (merge(&plenty), merge(&tight));
        assert_eq!(parted.report, whole.report);
        let (whole, parted) = (frames_of(&whole), frames_of(&parted));
        assert_eq!(parted.len(), whole.len());
        assert!(
            parted.iter().any(|(_, parts)| parts.len() > 1),
            "the rows come in parts"
        );
        for ((partition, want), (_, parts)) in whole.into_iter().zip(parted) {
            sorted_parts_are(
                &partition,
                &parts,
                &want[0],
                &["dns_domainname", "time", "pcap_file"],
            );
        }
    }

    #[test]
    fn content_decides_when_the_key_cannot() {
        assert_eq!(sniff(b"  \n{\"Records\":[]}"), SourceKind::Cloudtrail);
        assert_eq!(sniff(b"\xEF\xBB\xBF[{}]"), SourceKind::Cloudtrail);
        assert_eq!(sniff(b"version account-id"), SourceKind::Vpcflow);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, "[{\"eventID\":1}]".repeat(1000).as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            sniff(&gz[..gz.len() / 2]),
            SourceKind::Cloudtrail,
            "a cut gzip prefix"
        );
    }
}
