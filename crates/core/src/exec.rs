//! Running one batch: fetch its objects (bounded concurrency), parse them in parallel while
//! folding records by flow key, merge the folds with polars, write zstd Parquet under the batch's
//! deterministic key. An object whose *content* is bad, or that no longer exists, is quarantined
//! with its reason and the rest of the batch lands; any other failure to fetch it (throttling, a
//! 5xx, a timeout, credentials) fails the whole batch, which runs again later — a batch never
//! commits without records it could not read.
//! Shared by `flowmerge compact` and the merger service.

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use polars::io::parquet::write::{BatchedWriter, get_encodings};
use polars::polars_utils::compression::ZstdLevel;
use polars::prelude::*;
use polars_arrow::array::{Array, DictionaryArray, PrimitiveArray, Utf8ViewArray};
use polars_arrow::datatypes::IntegerType;
use polars_parquet::write::{
    CompressedPage, Encoding, ParquetType, Version, WriteOptions, array_to_columns, compress,
};
use rayon::prelude::*;
use tracing::Instrument;

use crate::batch::{Batch, ObjectRef};
use crate::error::Result;
use crate::fault;
use crate::formats::vpcflow::ParseOptions;
use crate::job::is_raw_log_key;
use crate::layout::output_key;
use crate::memory::{MemoryLimits, SpillDir, spill_error};
use crate::ports::CommitLedger;
use crate::sort::{FirstSeen, int_min_max};
use crate::source::{Arrival, Incoming, Rows};
use crate::store::key_path;

pub use flowmerge_protocol::report::{BatchReport, Quarantined};

/// How a batch runs.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    pub parse: ParseOptions,
    /// How DNS captures are read.
    pub dns: crate::formats::dns::DnsOptions,
    /// Objects fetched at once.
    pub fetch_concurrency: usize,
    /// Output prefix inside the output store.
    pub output_prefix: String,
    /// Told of every object once it has been read (for progress bars).
    pub progress: Option<ProgressHook>,
    /// Delete the batch's raw objects (all but the quarantined) once it is committed.
    pub delete_merged: bool,
    /// The batch's memory bound and spill folder.
    pub memory: MemoryLimits,
}

/// Called with each object read: its raw bytes and its records (0 if it was quarantined). Called
/// from the parsing threads, so it must be cheap and thread-safe.
#[derive(Clone)]
pub struct ProgressHook(pub Arc<dyn Fn(u64, u64) + Send + Sync>);

impl std::fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressHook")
    }
}

/// Why fetching an object failed. Only `Gone` is about the object itself; everything else is the
/// store's or the network's trouble and must not be mistaken for bad input.
enum FetchError {
    /// The object no longer exists (deleted or replaced after it was listed or announced).
    Gone(String),
    /// Throttling, a 5xx, a timeout, credentials: the batch fails and is retried.
    Transient(object_store::Error),
}

/// What became of a batch handed to [`execute`].
#[derive(Debug)]
// One value per batch: boxing the report would save nothing worth the indirection.
#[allow(clippy::large_enum_variant)]
pub enum Executed {
    Merged(BatchReport),
    /// The ledger had it committed already: nothing was read or written.
    AlreadyCommitted,
}

/// The batch protocol, the one place it is written: skip a committed batch; fetch, merge and
/// write it ([`run_batch`]); record its quarantined objects; commit it. The output exists before
/// the commit, and a retry rewrites the same key with the same bytes, so a crash at any fault
/// point (`after-write`, `before-commit`, `after-commit`) is recovered by running the batch again.
/// `flowmerge compact` and the merger service both call this; only their ledgers differ.
pub async fn execute(
    input: Arc<dyn ObjectStore>,
    output: Arc<dyn ObjectStore>,
    ledger: &dyn CommitLedger,
    batch: &Batch,
    opts: &ExecOptions,
) -> Result<Executed> {
    if ledger.is_committed(&batch.id).await.map_err(ledger_error)? {
        return Ok(Executed::AlreadyCommitted);
    }
    let report = run_batch(Arc::clone(&input), output, batch, opts).await?;
    fault::point("after-write");
    if !report.quarantined.is_empty() {
        ledger
            .quarantine(batch, &report.quarantined)
            .await
            .map_err(ledger_error)?;
    }
    fault::point("before-commit");
    ledger
        .commit_batch(&report)
        .instrument(tracing::info_span!("commit", batch.id = %batch.id))
        .await
        .map_err(ledger_error)?;
    fault::point("after-commit");
    if opts.delete_merged {
        delete_merged(&*input, batch, &report).await;
    }
    Ok(Executed::Merged(report))
}

/// Deletes a committed batch's raw objects but the quarantined ones. A failure is logged, not
/// returned: the batch is committed, and the object is only left for the bucket's lifecycle.
pub async fn delete_merged(input: &dyn ObjectStore, batch: &Batch, report: &BatchReport) {
    let kept: std::collections::HashSet<&str> = report
        .quarantined
        .iter()
        .map(|q| q.object.key.as_str())
        .collect();
    let keys = batch.objects.iter().map(|o| o.key.as_str());
    delete_keys(input, keys.filter(|k| !kept.contains(k))).await;
}

/// Deletes raw objects that are merged; one gone already is fine, a failure is logged.
pub async fn delete_keys<'a>(input: &dyn ObjectStore, keys: impl Iterator<Item = &'a str>) {
    for key in keys {
        match input.delete(&key_path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!(key, error = %e, "deleting a merged object failed"),
        }
    }
}

fn ledger_error(e: crate::ports::LedgerError) -> crate::Error {
    crate::Error::Ledger(e.to_string())
}

/// Fetches, parses, merges and writes one batch.
pub async fn run_batch(
    input: Arc<dyn ObjectStore>,
    output: Arc<dyn ObjectStore>,
    batch: &Batch,
    opts: &ExecOptions,
) -> Result<BatchReport> {
    let fetch_span = tracing::info_span!(
        "fetch",
        objects = batch.objects.len(),
        bytes = batch.bytes(),
        concurrency = opts.fetch_concurrency
    );
    // Objects are fetched while earlier ones are parsed: at most `read_ahead_bytes` of fetched
    // bytes wait at once (an object larger than that is fetched alone).
    let budget = opts.memory.read_ahead_bytes;
    let permits = Arc::new(tokio::sync::Semaphore::new(
        permits_of(budget, budget) as usize
    ));
    let (tx, rx) = tokio::sync::mpsc::channel(opts.fetch_concurrency.max(1));
    let objects = batch.objects.clone();
    let concurrency = opts.fetch_concurrency.max(1);
    let max_object = opts.memory.decode.max_object_bytes;
    let fetching = tokio::spawn(
        async move {
            let mut arrivals = futures::stream::iter(objects.into_iter().enumerate())
                .map(|(index, o)| {
                    let (input, permits) = (Arc::clone(&input), Arc::clone(&permits));
                    async move {
                        // Stored larger than it may decode to (decoding does not make an object
                        // smaller): quarantined unfetched, so that its bytes are never held.
                        if o.size > max_object {
                            let reason = too_large(&o.key, o.size, max_object);
                            return Ok(Arrival { index, fetched: (o, Err(reason)), permit: None });
                        }
                        let permit = permits
                            .acquire_many_owned(permits_of(o.size, budget))
                            .await
                            .ok();
                        let fetched = match fetch(&*input, &o.key).await {
                            Ok(body) => (o, Ok(body)),
                            Err(FetchError::Gone(reason)) => (o, Err(reason)),
                            Err(FetchError::Transient(e)) => {
                                tracing::warn!(key = %o.key, error = %e, "fetch failed: the batch will be retried");
                                return Err(crate::Error::Fetch { key: o.key.clone(), source: e });
                            }
                        };
                        Ok(Arrival { index, fetched, permit })
                    }
                })
                .buffered(concurrency);
            while let Some(arrival) = arrivals.next().await {
                let failed = arrival.is_err();
                // The reader has stopped (it failed): nothing more to fetch.
                if tx.send(arrival).await.is_err() || failed {
                    break;
                }
            }
        }
        .instrument(fetch_span),
    );

    let read = crate::source::ReadOptions {
        vpcflow: opts.parse.clone(),
        dns: opts.dns.clone(),
        memory: opts.memory.clone(),
    };
    let progress = opts.progress.clone();
    let source = crate::source::implementation(batch.source);
    let window = batch.window;
    let merge_span = tracing::info_span!(
        "parse and merge",
        source = %batch.source,
        objects = batch.objects.len(),
        records_in = tracing::field::Empty,
        rows_out = tracing::field::Empty,
        quarantined = tracing::field::Empty
    );
    let merged = tokio::task::spawn_blocking(move || {
        let _entered = merge_span.enter();
        let r = source.merge(window, Incoming::new(rx), &read, progress.as_ref());
        if let Ok(m) = &r {
            merge_span.record("records_in", m.report.records_in);
            merge_span.record(
                "rows_out",
                m.partitions.iter().map(|(_, d)| d.height()).sum::<usize>(),
            );
            merge_span.record("quarantined", m.report.quarantined.len());
        }
        r
    })
    .await;
    // The reader is done (or failed): stop fetching what it will not read.
    fetching.abort();
    let merged = merged??;
    let mut report = merged.report;
    report.batch_id = Some(batch.id.clone());
    report.window = Some(batch.window);
    report.objects = batch.objects.len() as u64;

    for (partition, rows) in merged.partitions {
        let height = rows.height();
        if height == 0 {
            continue;
        }
        report.rows_out += height as u64;
        let key = output_key(&opts.output_prefix, source.dataset(), &partition, batch);
        let write_span = tracing::info_span!(
            "write",
            key = %key,
            rows = height,
            bytes = tracing::field::Empty
        );
        let written = tokio::task::spawn_blocking(move || write_rows(rows, Effort::Merge))
            .instrument(write_span.clone())
            .await??;
        let bytes = written.len();
        report.bytes_out += bytes;
        write_span.record("bytes", bytes);
        // The file is visible whole or not at all: a single PUT (or a local write-then-rename),
        // or for a file written from spilled parts a multipart upload, which S3 makes visible
        // only when it is completed (and the local store by a rename).
        upload(&*output, &key_path(&key), written)
            .instrument(write_span)
            .await?;
        report.output_keys.push(key);
    }
    Ok(report)
}

/// A written Parquet file: in memory, or on local disk when it was written from spilled parts
/// (such a file grows with the window, so it is not held in memory).
pub(crate) enum Written {
    Body(Vec<u8>),
    File {
        path: std::path::PathBuf,
        len: u64,
        /// Keeps the file until it is uploaded.
        _dir: Arc<SpillDir>,
    },
}

impl Written {
    /// The file's bytes.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Written::Body(body) => body.len() as u64,
            Written::File { len, .. } => *len,
        }
    }
}

/// The bytes of a multipart upload's parts but the last: above S3's 5 MiB least part, and few
/// enough parts (S3 allows 10,000) for any file a batch writes.
const UPLOAD_PART_BYTES: usize = 16 << 20;

/// Stores a written file at `path`: a body with one PUT, a file on disk as a multipart upload
/// read one part at a time, aborted if a part fails.
pub(crate) async fn upload(
    output: &dyn ObjectStore,
    path: &object_store::path::Path,
    written: Written,
) -> Result<()> {
    // The spill folder is kept until the upload ends: dropping it removes the file.
    let (file, len, _dir) = match written {
        Written::Body(body) => {
            output.put(path, PutPayload::from(body)).await?;
            return Ok(());
        }
        Written::File {
            path: file,
            len,
            _dir,
        } => (file, len, _dir),
    };
    let mut upload = output.put_multipart(path).await?;
    let sent = async {
        let mut reader = tokio::fs::File::open(&file)
            .await
            .map_err(|e| spill_error(&file, e))?;
        let mut left = len;
        while left > 0 {
            let n = left.min(UPLOAD_PART_BYTES as u64) as usize;
            let mut part = vec![0; n];
            tokio::io::AsyncReadExt::read_exact(&mut reader, &mut part)
                .await
                .map_err(|e| spill_error(&file, e))?;
            upload.put_part(PutPayload::from(part)).await?;
            left -= n as u64;
        }
        Ok::<_, crate::Error>(())
    }
    .await;
    match sent {
        Ok(()) => {
            upload.complete().await?;
            Ok(())
        }
        Err(e) => {
            if let Err(abort) = upload.abort().await {
                tracing::warn!(error = %abort, "aborting a failed multipart upload failed");
            }
            Err(e)
        }
    }
}

/// The object's bytes. object_store has already retried what its retry policy retries.
async fn fetch(store: &dyn ObjectStore, key: &str) -> std::result::Result<Bytes, FetchError> {
    let got = async { store.get(&key_path(key)).await?.bytes().await };
    got.await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => FetchError::Gone(format!(
            "{key}: no longer exists (deleted after it was listed)"
        )),
        other => FetchError::Transient(other),
    })
}

/// Why an object of `size` bytes, past the per-object bound, is quarantined without being fetched.
fn too_large(key: &str, size: u64, bound: u64) -> String {
    let iec = |n: u64| bytesize::ByteSize::b(n).display().iec().to_string();
    format!(
        "{key}: {} stored, more than the per-object bound ({}; see --max-object-size): not fetched",
        iec(size),
        iec(bound)
    )
}

/// The read-ahead permits an object of `size` bytes takes (KiB; at most the whole budget, so a
/// large object is fetched alone rather than never).
fn permits_of(size: u64, budget: u64) -> u32 {
    (size.min(budget) / 1024).clamp(1, u64::from(u32::MAX >> 4)) as u32
}

/// How hard zstd works on a Parquet file's pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effort {
    /// Batches as they are merged: zstd level 1. Pages are already dictionary- and
    /// RLE-encoded, so level 3 (zstd's default) made the benchmark's files only 0.25–0.35%
    /// smaller, for 5–7% of a merge's CPU time (docs/architecture.md, "Compression level").
    Merge,
    /// Closed partitions rolled up, written once and then read by every query: zstd's default
    /// level (3).
    Rollup,
}

/// zstd Parquet with full statistics.
pub fn write_parquet(df: &mut DataFrame, effort: Effort) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut writer = output_writer(&mut body, effort).batched(df.schema())?;
    write_row_groups(&mut writer, df, effort)?;
    writer.finish()?;
    drop(writer);
    Ok(body)
}

fn output_writer<W: std::io::Write>(body: W, effort: Effort) -> ParquetWriter<W> {
    ParquetWriter::new(body)
        .with_compression(compression(effort))
        .with_statistics(StatisticsOptions::full())
}

fn compression(effort: Effort) -> ParquetCompression {
    ParquetCompression::Zstd(match effort {
        Effort::Merge => ZstdLevel::try_new(1).ok(),
        Effort::Rollup => None,
    })
}

/// Writes `df` as row groups of at most [`ROW_GROUP_ROWS`] rows, each column's pages encoded as
/// [`encoding_of`] chooses for the whole frame (polars' writer would dictionary-encode every
/// integer column with fewer distinct values than three quarters of its rows), the columns of a
/// row group in parallel as polars does.
fn write_row_groups<W: std::io::Write>(
    writer: &mut BatchedWriter<W>,
    df: &mut DataFrame,
    effort: Effort,
) -> Result<()> {
    let options = WriteOptions {
        statistics: StatisticsOptions::full(),
        version: Version::V1,
        compression: compression(effort).into(),
        data_page_size: None,
    };
    // polars' encodings, one per leaf of each column, but for the integer columns.
    let defaults = get_encodings(&df.schema().to_arrow(CompatLevel::newest()));
    let encodings: Vec<Vec<Encoding>> = df
        .columns()
        .par_iter()
        .zip(defaults.par_iter())
        .map(|(column, default)| encoding_of(column, default))
        .collect::<PolarsResult<_>>()?;
    let df = polars::frame::chunk_df_for_writing(df, ROW_GROUP_ROWS)?;
    let types = writer.parquet_schema().fields().to_vec();
    for batch in df.iter_chunks(CompatLevel::newest(), false) {
        if batch.is_empty() {
            continue;
        }
        let columns: Vec<Vec<CompressedPage>> = batch
            .columns()
            .par_iter()
            .zip(types.par_iter().zip(&encodings))
            .map(|(array, (type_, encoding))| column_pages(array, type_, encoding, options))
            .collect::<PolarsResult<_>>()?;
        writer.write_row_group(batch.len() as u64, &columns)?;
    }
    Ok(())
}

/// One column of a row group as compressed pages.
fn column_pages(
    array: &ArrayRef,
    type_: &ParquetType,
    encoding: &[Encoding],
    options: WriteOptions,
) -> PolarsResult<Vec<CompressedPage>> {
    let dictionary = match encoding {
        [Encoding::RleDictionary] => few_valued_dictionary(array.as_ref()),
        _ => None,
    };
    compressed_pages(
        dictionary.as_ref().unwrap_or(array),
        type_,
        encoding,
        options,
    )
}

/// `array` encoded by polars' writer and compressed.
fn compressed_pages(
    array: &ArrayRef,
    type_: &ParquetType,
    encoding: &[Encoding],
    options: WriteOptions,
) -> PolarsResult<Vec<CompressedPage>> {
    let mut pages = Vec::new();
    // A leaf per encoding: one for a flat column.
    for leaf in array_to_columns(array, type_.clone(), options, encoding)? {
        for page in leaf {
            pages.push(compress(page?, Vec::new(), options.compression)?);
        }
    }
    Ok(pages)
}

/// A text column of few distinct values as the dictionary array polars' writer would make of it
/// (keys in the order values are first seen, a null's key 0 under the column's validity), built
/// looking a value up only where it differs from the row before: sorted and low-cardinality
/// columns (accounts, interfaces, actions, statuses) come in long runs, and polars hashes every
/// row twice, once to estimate the column's cardinality and once to build the dictionary.
/// `None` — polars' own path, which may still dictionary-encode it — for any other column, for
/// one with more than 256 values among its first 4,096 rows, and for one with more distinct values
/// than an eighth of its rows: far below the three quarters past which polars writes a column
/// plain, so the column is encoded, and written, as polars would have done it.
fn few_valued_dictionary(array: &dyn Array) -> Option<ArrayRef> {
    let text = array.as_any().downcast_ref::<Utf8ViewArray>()?;
    let rows = text.len();
    if rows == 0 {
        return None;
    }
    // polars dictionary-encodes a column of up to 128 rows whatever it holds.
    let most = if rows <= 128 { rows } else { rows / 8 };
    let mut seen = FirstSeen::default();
    let mut keys: Vec<u32> = Vec::with_capacity(rows);
    for (row, value) in text.iter().enumerate() {
        if row == DICTIONARY_SAMPLE_ROWS && seen.values.len() > DICTIONARY_SAMPLE_VALUES {
            return None;
        }
        keys.push(value.map_or(0, |s| seen.id(s)));
        if seen.values.len() > most {
            return None;
        }
    }
    let validity = text.validity().filter(|v| v.unset_bits() > 0).cloned();
    let keys = PrimitiveArray::<u32>::try_new(ArrowDataType::UInt32, keys.into(), validity).ok()?;
    let values = Utf8ViewArray::from_slice_values(&seen.values);
    let dtype =
        ArrowDataType::Dictionary(IntegerType::UInt32, Box::new(text.dtype().clone()), false);
    let dictionary = DictionaryArray::<u32>::try_new(dtype, keys, values.boxed()).ok()?;
    Some(dictionary.boxed())
}

/// The rows [`few_valued_dictionary`] looks at first, and the most values they may hold.
const DICTIONARY_SAMPLE_ROWS: usize = 4096;
const DICTIONARY_SAMPLE_VALUES: usize = 256;

/// How a column's values are encoded. An integer column is dictionary-encoded only when it has
/// at most one distinct value in [`PLAIN_FROM`] rows; ports, byte counts and the like are
/// written plain. Measured on the benchmark's files, zstd packs the plain integers of a column
/// with more values than that into fewer bytes than a dictionary and its bit-packed indexes
/// (13–15% fewer for `bytes`, 4–20% for ports), and skipping the dictionary skips hashing every
/// value; below it the dictionary wins (7–25% for `start`, `end`, `packets`). The count is exact,
/// so the same rows are always encoded, and written, the same way. Every other column keeps
/// polars' encodings, `default` (strings are dictionary-encoded unless three quarters of them
/// are distinct).
fn encoding_of(column: &Column, default: &[Encoding]) -> PolarsResult<Vec<Encoding>> {
    let many = match column.dtype() {
        DataType::Int32 => {
            let ca = column.i32()?;
            let values = ca.iter().flatten().map(i64::from);
            has_many_values(values, int_min_max(ca), ca.len())
        }
        DataType::Int64 => {
            let ca = column.i64()?;
            has_many_values(ca.iter().flatten(), int_min_max(ca), ca.len())
        }
        _ => return Ok(default.to_vec()),
    };
    Ok(vec![match many {
        true => Encoding::Plain,
        false => Encoding::RleDictionary,
    }])
}

/// Whether `values` (between `min` and `max`, of a column of `rows`) hold more than one distinct
/// value per [`PLAIN_FROM`] rows. A span narrower than that cannot; a span of up to
/// [`BITMAP_SPAN`] is counted in a bitmap, a wider one in a hash set; both stop as soon as the
/// answer is known.
fn has_many_values(
    values: impl Iterator<Item = i64>,
    min_max: Option<(i64, i64)>,
    rows: usize,
) -> bool {
    let Some((min, max)) = min_max else {
        return false;
    };
    let most = rows / PLAIN_FROM;
    let span = max.abs_diff(min);
    if span < most as u64 {
        return false;
    }
    let mut distinct = 0;
    if span < BITMAP_SPAN {
        let mut seen = vec![0u64; (span / 64 + 1) as usize];
        for v in values {
            let at = v.abs_diff(min);
            let (word, bit) = ((at / 64) as usize, 1u64 << (at % 64));
            if seen[word] & bit == 0 {
                seen[word] |= bit;
                distinct += 1;
                if distinct > most {
                    return true;
                }
            }
        }
        return false;
    }
    let mut seen = hashbrown::HashSet::with_capacity(most + 1);
    values.filter(|&v| seen.insert(v)).nth(most).is_some()
}

/// An integer column with more than one distinct value per this many rows is written plain.
const PLAIN_FROM: usize = 10;

/// The widest span of values counted in a bitmap (1 MiB of it).
const BITMAP_SPAN: u64 = 1 << 23;

/// A partition's rows as one Parquet file: a frame as [`write_parquet`] writes it, in memory,
/// or spilled parts read back one at a time and written in order, each as its own row groups,
/// to a file of the spill folder.
pub(crate) fn write_rows(rows: Rows, effort: Effort) -> Result<Written> {
    let (files, dir) = match rows {
        Rows::Frame(mut df) => return Ok(Written::Body(write_parquet(&mut df, effort)?)),
        Rows::Parts { files, dir, .. } => (files, dir),
    };
    let (path, mut file) = dir.create()?;
    let mut files = files.iter();
    if let Some(first) = files.next() {
        let mut part = SpillDir::read(first)?;
        let mut writer = output_writer(&mut file, effort).batched(part.schema())?;
        loop {
            part.rechunk_mut();
            write_row_groups(&mut writer, &mut part, effort)?;
            match files.next() {
                Some(file) => part = SpillDir::read(file)?,
                None => break,
            }
        }
        writer.finish()?;
    }
    std::io::Write::flush(&mut file).map_err(|e| spill_error(&path, e))?;
    let len = file
        .get_ref()
        .metadata()
        .map_err(|e| spill_error(&path, e))?
        .len();
    Ok(Written::File {
        path,
        len,
        _dir: dir,
    })
}

/// Rows per row group: polars' default, which [`write_parquet`] uses too.
const ROW_GROUP_ROWS: usize = 512 * 512;

/// Lists every raw log object under `prefix` (recursively), skipping `_`/`.`-prefixed folders
/// and files such as our own `_flowmerge/` work area, and Parquet output.
pub async fn list_objects(store: &dyn ObjectStore, prefix: Option<&str>) -> Result<Vec<ObjectRef>> {
    let prefix = prefix.filter(|p| !p.is_empty()).map(key_path);
    let metas: Vec<_> = store.list(prefix.as_ref()).try_collect().await?;
    let mut objects: Vec<ObjectRef> = metas
        .into_iter()
        .filter(|m| is_raw_log_key(m.location.as_ref()))
        .map(|m| ObjectRef {
            key: m.location.to_string(),
            size: m.size,
            etag: m.e_tag,
            last_modified: m.last_modified.timestamp(),
        })
        .collect();
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text columns that [`few_valued_dictionary`] takes are encoded to the bytes polars' own
    /// path gives them; the others are left to it.
    #[test]
    fn few_valued_text_is_encoded_as_polars_encodes_it() {
        let options = WriteOptions {
            statistics: StatisticsOptions::full(),
            version: Version::V1,
            compression: compression(Effort::Merge).into(),
            data_page_size: None,
        };
        let field = polars_arrow::datatypes::Field::new("s".into(), ArrowDataType::Utf8View, true);
        let type_ = polars_parquet::write::to_parquet_type(&field).unwrap();
        let runs = |rows: usize, values: usize| -> Vec<Option<String>> {
            (0..rows)
                .map(|i| (i % 13 != 5).then(|| format!("value-{}", i / 7 % values)))
                .collect()
        };
        let cases: [(&str, Vec<Option<String>>, bool); 7] = [
            ("runs of three values, nulls", runs(5000, 3), true),
            (
                "100 distinct values in 100 rows",
                runs(700, 100)[..100].to_vec(),
                true,
            ),
            (
                "an eighth distinct",
                (0..800).map(|i| Some((i % 100).to_string())).collect(),
                true,
            ),
            (
                "more than an eighth",
                (0..800).map(|i| Some((i % 101).to_string())).collect(),
                false,
            ),
            (
                "all distinct",
                (0..1000).map(|i| Some(i.to_string())).collect(),
                false,
            ),
            ("many values in the first rows", runs(100_000, 1000), false),
            ("all null", vec![None; 300], true),
        ];
        for (what, values, taken) in cases {
            let column =
                StringChunked::from_iter_options("s".into(), values.iter().map(|v| v.as_deref()));
            let array: ArrayRef = column.rechunk().downcast_iter().next().unwrap().to_boxed();
            let encoding = [Encoding::RleDictionary];
            assert_eq!(
                few_valued_dictionary(array.as_ref()).is_some(),
                taken,
                "{what}"
            );
            let ours = column_pages(&array, &type_, &encoding, options).unwrap();
            let theirs = compressed_pages(&array, &type_, &encoding, options).unwrap();
            assert_eq!(format!("{ours:?}"), format!("{theirs:?}"), "{what}");
        }
    }

    #[test]
    fn integer_columns_with_many_values_are_written_plain() {
        let count = |values: &[i64], rows| {
            let min_max = values
                .iter()
                .min()
                .copied()
                .zip(values.iter().max().copied());
            has_many_values(values.iter().copied(), min_max, rows)
        };
        // 100 rows: plain from 11 distinct values on.
        let ten: Vec<i64> = (0..100).map(|i| i % 10 * 97).collect();
        let eleven: Vec<i64> = (0..100).map(|i| i % 11 * 97).collect();
        assert!(!count(&ten, 100), "ten values in a bitmap");
        assert!(count(&eleven, 100), "eleven values in a bitmap");
        // Spans wider than the bitmap go through the hash set, with the same answer.
        let wide = |n: i64| -> Vec<i64> { (0..100).map(|i| i % n * (1 << 40) - 5).collect() };
        assert!(!count(&wide(10), 100));
        assert!(count(&wide(11), 100));
        // A span narrower than a tenth of the rows cannot hold more values.
        assert!(!count(&[3, 4, 5, 3], 1000));
        // All null: nothing to count.
        assert!(!has_many_values(std::iter::empty(), None, 10));

        let column = |name: &str, values: Vec<Option<i64>>| Column::new(name.into(), values);
        let distinct = column("bytes", (0..50).map(Some).collect());
        let few = column(
            "start",
            (0..50).map(|i| (i % 3 != 0).then_some(i % 4)).collect(),
        );
        let default = [Encoding::RleDictionary];
        assert_eq!(encoding_of(&distinct, &default).unwrap(), [Encoding::Plain]);
        assert_eq!(encoding_of(&few, &default).unwrap(), default);
        let ports = Column::new(
            "srcport".into(),
            (0..50).map(|i| i * 7).collect::<Vec<i32>>(),
        );
        assert_eq!(encoding_of(&ports, &default).unwrap(), [Encoding::Plain]);
        // Other columns keep polars' encodings, whatever they are.
        let text = Column::new("action".into(), vec!["ACCEPT"; 50]);
        assert_eq!(
            encoding_of(&text, &[Encoding::Plain]).unwrap(),
            [Encoding::Plain]
        );
    }

    /// The writer's pages, whichever encoding each column gets, read back as the frame written,
    /// nulls included, over more than one row group; and the same frame gives the same bytes.
    #[test]
    fn written_files_read_back_as_written() {
        let rows = ROW_GROUP_ROWS + 1000;
        let mut df = df!(
            "bytes" => (0..rows as i64).map(|i| (i % 7 != 0).then_some(i * 1_000_003)).collect::<Vec<_>>(),
            "start" => (0..rows as i64).map(|i| (i % 5 != 0).then_some(1_793_491_200 + i % 300)).collect::<Vec<_>>(),
            "srcport" => (0..rows as i32).map(|i| i % 60_000).collect::<Vec<_>>(),
            "protocol" => (0..rows as i32).map(|i| [6, 17, 1][i as usize % 3]).collect::<Vec<_>>(),
            "srcaddr" => (0..rows).map(|i| (i % 11 != 0).then(|| format!("10.0.{}.{}", i / 256 % 256, i % 256))).collect::<Vec<_>>(),
            "action" => (0..rows).map(|i| ["ACCEPT", "REJECT"][i % 2]).collect::<Vec<_>>(),
        )
        .unwrap();
        let want = df.clone();
        for effort in [Effort::Merge, Effort::Rollup] {
            let body = write_parquet(&mut df, effort).unwrap();
            let got = ParquetReader::new(std::io::Cursor::new(body.clone()))
                .finish()
                .unwrap();
            assert!(got.equals_missing(&want), "{got}\n{want}");
            assert_eq!(
                write_parquet(&mut df, effort).unwrap(),
                body,
                "deterministic"
            );
        }
    }
}
