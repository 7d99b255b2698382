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
use crate::memory::MemoryLimits;
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
        let limits = &opts.memory.decode;
        let (read, mut report) = read_each(
            incoming,
            progress,
            |o, body| cloudtrail::read_object(&o.key, body, limits).map_err(|e| e.to_string()),
            |r| r.events.len() as u64,
        )?;
        let mut objects = Vec::new();
        for (object, read) in read {
            report.records_in += read.events.len() as u64;
            report.decoded_bytes += read.decoded_bytes;
            if read.skipped {
                report.skipped.push(object.key.clone());
            } else if read.events.is_empty() {
                report.empty.push(object.key.clone());
            }
            objects.push((object.key, read.events));
        }
        let partitions = frames(cloudtrail::merge(objects)?);
        Ok(Merged { partitions, report })
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
        let (read, mut report) = read_each(
            incoming,
            progress,
            |o, body| {
                dns::read_object(&o.key, body, &opts.dns, &opts.memory.decode)
                    .map_err(|e| e.to_string())
            },
            |r| r.rows.len() as u64,
        )?;
        let mut rows = Vec::new();
        for (object, read) in read {
            report.records_in += read.queries + read.responses;
            report.decoded_bytes += read.decoded_bytes;
            if read.stats.truncated {
                report.truncated.push(object.key.clone());
            }
            report.skipped_records += read.stats.skipped_packets + read.malformed;
            if read.rows.is_empty() {
                report.empty.push(object.key.clone());
            }
            rows.extend(read.rows);
        }
        Ok(Merged {
            partitions: frames(dns::merge(rows)?),
            report,
        })
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
