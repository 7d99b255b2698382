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
use crate::window::Window;

/// A fetched object: its bytes, or why it could not be read (quarantined).
pub type Fetched = (ObjectRef, std::result::Result<Bytes, String>);

/// A batch's rows, per partition of its table.
#[derive(Debug, Default)]
pub struct Merged {
    /// `(partition path below the table folder, rows)`, e.g. `year=2026/month=11/day=01`.
    pub partitions: Vec<(String, DataFrame)>,
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
        fetched: Vec<Fetched>,
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
}

impl SourceKind {
    /// Every source, in the order compact reports them.
    pub const ALL: &'static [SourceKind] =
        &[SourceKind::Vpcflow, SourceKind::Cloudtrail, SourceKind::Dns];

    /// The implementation of this source.
    pub fn source(self) -> &'static dyn Source {
        match self {
            SourceKind::Vpcflow => &crate::formats::vpcflow::VpcFlow,
            SourceKind::Cloudtrail => &CloudTrail,
            SourceKind::Dns => &DnsCaptures,
        }
    }

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

/// What a key says about an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Source(SourceKind),
    /// Not data (a CloudTrail digest or Insights file): skipped and counted, never quarantined.
    Skip(&'static str),
    /// The key says nothing: look at the content ([`sniff`]).
    Unknown,
}

/// Classifies an object by its key: AWS's delivery layout (`AWSLogs/…/CloudTrail/…`,
/// `…/vpcflowlogs/…`), then the extension (`.json`, `.ndjson`, `.jsonl` → CloudTrail; `.log`,
/// `.txt` → flow logs; `.pcap`, `.pcapng`, `.cap` → DNS captures; with or without `.gz`).
pub fn classify_key(key: &str) -> Class {
    let folders: Vec<&str> = key.split('/').collect();
    let folders = &folders[..folders.len().saturating_sub(1)];
    let has = |name: &str| folders.iter().any(|f| f.eq_ignore_ascii_case(name));
    if has("CloudTrail-Digest") {
        return Class::Skip("CloudTrail digest file");
    }
    if has("CloudTrail-Insight") {
        return Class::Skip("CloudTrail Insights file (not read: see the README)");
    }
    if has("CloudTrail") {
        return Class::Source(SourceKind::Cloudtrail);
    }
    if has("vpcflowlogs") {
        return Class::Source(SourceKind::Vpcflow);
    }
    let name = key.rsplit('/').next().unwrap_or(key).to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if [".json", ".ndjson", ".jsonl"]
        .iter()
        .any(|ext| name.ends_with(ext))
    {
        return Class::Source(SourceKind::Cloudtrail);
    }
    if [".log", ".txt"].iter().any(|ext| name.ends_with(ext)) {
        return Class::Source(SourceKind::Vpcflow);
    }
    if [".pcap", ".pcapng", ".cap"]
        .iter()
        .any(|ext| name.ends_with(ext))
    {
        return Class::Source(SourceKind::Dns);
    }
    Class::Unknown
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

/// Reads fetched objects in parallel with `read`, telling `progress` of each (its bytes and
/// `records` of what was read). Returns what was read per object, and a report with the raw bytes
/// and the quarantined objects (those that could not be fetched as gone, or not read).
fn read_each<T: Send>(
    fetched: Vec<Fetched>,
    progress: Option<&ProgressHook>,
    read: impl Fn(&ObjectRef, &[u8]) -> std::result::Result<T, String> + Sync,
    records: impl Fn(&T) -> u64 + Sync,
) -> (Vec<(ObjectRef, T)>, BatchReport) {
    let outcomes: Vec<std::result::Result<T, String>> = fetched
        .par_iter()
        .map(|(object, body)| {
            let body = body.as_ref().map_err(Clone::clone)?;
            let got = read(object, body);
            if let Some(hook) = progress {
                (hook.0)(object.size, got.as_ref().map_or(0, &records));
            }
            got
        })
        .collect();
    let mut report = BatchReport::default();
    let mut ok = Vec::with_capacity(outcomes.len());
    for ((object, _), outcome) in fetched.into_iter().zip(outcomes) {
        report.bytes_in += object.size;
        match outcome {
            Ok(t) => ok.push((object, t)),
            Err(reason) => {
                tracing::warn!(key = %object.key, %reason, "object quarantined");
                report.quarantined.push(Quarantined { object, reason });
            }
        }
    }
    (ok, report)
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
        fetched: Vec<Fetched>,
        _opts: &ReadOptions,
        progress: Option<&ProgressHook>,
    ) -> Result<Merged> {
        let (read, mut report) = read_each(
            fetched,
            progress,
            |o, body| cloudtrail::read_object(&o.key, body).map_err(|e| e.to_string()),
            |r| r.events.len() as u64,
        );
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
        let partitions = cloudtrail::merge(objects)?;
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
        fetched: Vec<Fetched>,
        opts: &ReadOptions,
        progress: Option<&ProgressHook>,
    ) -> Result<Merged> {
        let (read, mut report) = read_each(
            fetched,
            progress,
            |o, body| dns::read_object(&o.key, body, &opts.dns).map_err(|e| e.to_string()),
            |r| r.rows.len() as u64,
        );
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
            partitions: dns::merge(rows)?,
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
    fn keys_are_classified_by_layout_then_extension() {
        use Class::*;
        use SourceKind::*;
        for (key, want) in [
            (
                "AWSLogs/o-abc123/111122223333/CloudTrail/us-east-1/2022/01/03/111122223333_CloudTrail_us-east-1_20220103T1915Z_LwA4RXRzImDPnQAL.json.gz",
                Source(Cloudtrail),
            ),
            (
                "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2022/01/03/x.json.gz",
                Skip("CloudTrail digest file"),
            ),
            (
                "AWSLogs/111122223333/vpcflowlogs/us-east-1/2021/09/02/x.log.gz",
                Source(Vpcflow),
            ),
            ("exports/trail.ndjson", Source(Cloudtrail)),
            ("exports/trail.JSON", Source(Cloudtrail)),
            ("flows/a.log", Source(Vpcflow)),
            ("flows/CloudTrail.log", Source(Vpcflow)),
            ("flows/noext", Unknown),
        ] {
            assert_eq!(classify_key(key), want, "{key}");
        }
        assert!(matches!(
            classify_key("AWSLogs/1/CloudTrail-Insight/us-east-1/2022/01/03/x.json.gz"),
            Skip(_)
        ));
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
