//! Rollups of partitions whose rows do not fit in memory at once (docs/architecture.md,
//! "Bounded rollups").
//!
//! The partition's files are read a slice of rows at a time and dealt into buckets on local
//! disk: rows that may merge — equal in the source's [`Source::bucket_key`] columns — into one
//! bucket by a stable hash of those values, the rows of a source that never merges in turn. A
//! bucket still too large is dealt again by the next level of the hash. Each bucket is then
//! merged alone, through the source's own [`Source::remerge`] with its rows grouped by file as
//! the whole partition's would be, and kept as one sorted part. An output file is its buckets'
//! parts in order, each part its own row groups, as a batch too large to sort at once is
//! written. The buckets follow from the inputs' estimated size and the memory limit alone, so
//! the same inputs and limit give the same bytes.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use polars::io::mmap::MmapBytesReader;
use polars::io::parquet::write::BatchedWriter;
use polars::prelude::*;
use polars_parquet::parquet::metadata::FileMetadata;
use polars_parquet::parquet::schema::types::PhysicalType;

use crate::error::{Error, Result};
use crate::exec::{Effort, Written, write_rows};
use crate::memory::{SpillDir, spill_error};
use crate::source::{RemergeOptions, Rows, Source};

/// A partition is merged at once, in memory, while its rows are estimated at no more than this
/// part of the memory limit. The merge holds them about three times over, measured against
/// [`file_estimate`]: an hour of 1.44M flow rows estimated at 307 MB peaked at 686 MiB (2.3×), a
/// day of 300,000 CloudTrail events estimated at 178 MB at 565 MiB (3.3×: `eventid` made unique,
/// then sorted).
pub(super) const AT_ONCE_SHARE: u64 = 4;

/// The estimated rows of one bucket merged: this part of the memory limit. A bucket is merged as
/// a partition is at once (about three times its estimate); the rest of the limit is the
/// allocator's: with `MIMALLOC_PURGE_DELAY=0` a CloudTrail day rolled up under 256 MiB peaked at
/// 154 MiB, with mimalloc's default delay (freed pages kept a while) at 248–279 MiB.
const BUCKET_SHARE: u64 = 24;

/// Rows dealt that may wait in memory before they are appended to their buckets' files: this
/// part of the memory limit. A slice of rows read to be dealt is half as much: it is held
/// about four times over while it is dealt (read, given every column, taken per bucket, stacked).
const PENDING_SHARE: u64 = 32;

/// The most buckets rows are dealt into at once (more when the outputs are more): a bucket still
/// larger than a bucket's share is dealt again, by the next level of the hash, into as many as
/// it needs up to this. Few open files, and row groups of a useful size, whatever the partition.
const FANOUT: usize = 16;

/// Levels of dealing at most: 16^8 buckets. A bucket whose rows all go to one bucket of the next
/// level (one key) is merged as it is.
const MAX_LEVEL: u32 = 8;

/// The column that carries each dealt row's input file (its index in the inputs).
const FILE_COLUMN: &str = "__flowmerge_rollup_file";

/// One input file of a rollup: its bytes in memory, or fetched to local disk.
pub(super) struct Input {
    pub key: String,
    pub name: String,
    pub body: Body,
}

pub(super) enum Body {
    Memory(Bytes),
    /// A file of the rollup's spill folder.
    Disk(PathBuf),
}

impl Input {
    /// Rows `slice` (offset, length) of the file, or all of them; with its `footer` (from
    /// [`Input::metadata`]) it is not read again.
    pub fn read(
        &self,
        slice: Option<(usize, usize)>,
        footer: Option<&Arc<FileMetadata>>,
    ) -> Result<DataFrame> {
        let mut reader = self.reader()?;
        if let Some(footer) = footer {
            reader.set_metadata(Arc::clone(footer));
        }
        reader
            .with_slice(slice)
            .finish()
            .map_err(|e| self.unreadable(e))
    }

    /// The file's footer and its columns as a frame of no rows.
    pub fn metadata(&self) -> Result<(Arc<FileMetadata>, DataFrame)> {
        let mut reader = self.reader()?;
        let mut read = || -> PolarsResult<_> {
            let metadata = reader.get_metadata()?.clone();
            let schema = Schema::from_arrow_schema(reader.schema()?.as_ref());
            Ok((metadata, DataFrame::empty_with_schema(&schema)))
        };
        read().map_err(|e| self.unreadable(e))
    }

    fn reader(&self) -> Result<ParquetReader<Box<dyn MmapBytesReader>>> {
        let bytes: Box<dyn MmapBytesReader> = match &self.body {
            Body::Memory(body) => Box::new(std::io::Cursor::new(body.clone())),
            Body::Disk(path) => {
                Box::new(std::fs::File::open(path).map_err(|e| spill_error(path, e))?)
            }
        };
        Ok(ParquetReader::new(bytes))
    }

    fn unreadable(&self, e: impl std::fmt::Display) -> Error {
        Error::Rollup(format!("{}: not readable Parquet: {e}", self.key))
    }
}

/// What the rows of these column chunks take in memory, estimated from a footer: each value's
/// width in an arrow column (a string's view is 16 bytes) plus the uncompressed bytes of its
/// pages (a string's own bytes, at most).
fn memory_estimate<'a>(
    columns: impl Iterator<Item = &'a polars_parquet::parquet::metadata::ColumnChunkMetadata>,
) -> u64 {
    columns
        .map(|c| {
            let width = match c.physical_type() {
                PhysicalType::Boolean => 1,
                PhysicalType::Int32 | PhysicalType::Float => 4,
                PhysicalType::Int64 | PhysicalType::Double => 8,
                PhysicalType::Int96
                | PhysicalType::ByteArray
                | PhysicalType::FixedLenByteArray(_) => 16,
            };
            c.num_values().max(0) as u64 * width + c.uncompressed_size().max(0) as u64
        })
        .sum()
}

/// A file's rows in memory, estimated from its footer.
pub(super) fn file_estimate(metadata: &FileMetadata) -> u64 {
    metadata
        .row_groups
        .iter()
        .map(|g| memory_estimate(g.parquet_columns().iter()))
        .sum()
}

/// The partition merged in buckets ([`FANOUT`] at first, a multiple of `outputs`; a bucket
/// still too large dealt again) and written as `outputs` files, each the sorted parts of its
/// buckets in order; the rows written and the parts. `footers` are the inputs' own
/// ([`Input::metadata`]).
pub(super) fn merge_in_buckets(
    source: &dyn Source,
    inputs: &[Input],
    footers: Vec<(Arc<FileMetadata>, DataFrame)>,
    remerge: &RemergeOptions,
    memory_limit: u64,
    dir: &Arc<SpillDir>,
    outputs: usize,
) -> Result<(Vec<Written>, u64, usize)> {
    let outputs = outputs.max(1);
    let mut metadata = Vec::with_capacity(inputs.len());
    let mut columns = Vec::with_capacity(inputs.len() + 1);
    for (input, (md, empty)) in inputs.iter().zip(footers) {
        columns.push(source.rows_of_file(&input.name, empty, remerge)?);
        metadata.push(md);
    }
    // Every file's columns, as remerge would see them, and the file each row came from.
    columns.push(DataFrame::new(
        0,
        vec![Column::new_empty(FILE_COLUMN.into(), &DataType::UInt32)],
    )?);
    let template = polars::functions::concat_df_diagonal(&columns)?;
    drop(columns);
    let estimate: u64 = metadata.iter().map(|m| file_estimate(m)).sum();
    let rows: usize = metadata.iter().map(|m| m.num_rows).sum();
    let buckets = Buckets {
        row_bytes: estimate as f64 / rows.max(1) as f64,
        source,
        inputs,
        remerge,
        template: &template,
        plain: template.drop(FILE_COLUMN)?,
        bucket_bytes: (memory_limit / BUCKET_SHARE).max(1),
        pending_bytes: (memory_limit / PENDING_SHARE).max(1),
        dir,
    };
    let first = buckets.fanout(estimate).div_ceil(outputs) * outputs;
    let mut dealer = buckets.dealer(first, 0);
    for (index, (input, md)) in inputs.iter().zip(&metadata).enumerate() {
        let row_bytes = |g: &polars_parquet::parquet::metadata::RowGroupMetadata| {
            memory_estimate(g.parquet_columns().iter()) as f64 / g.num_rows().max(1) as f64
        };
        buckets.each_slice(md, row_bytes, |slice| {
            let df = input.read(Some(slice), Some(md))?;
            let mut df = source.rows_of_file(&input.name, df, remerge)?;
            df.with_column(Column::new(
                FILE_COLUMN.into(),
                vec![index as u32; df.height()],
            ))?;
            dealer.deal(df)
        })?;
        // A fetched copy is not needed again.
        if let Body::Disk(path) = &input.body {
            std::fs::remove_file(path).map_err(|e| spill_error(path, e))?;
        }
    }

    // Each bucket merged alone (or dealt again), its rows grouped by file as remerge takes them.
    let per_output = first / outputs;
    let mut parts: Vec<Vec<(PathBuf, usize)>> = vec![Vec::new(); outputs];
    for (i, bucket) in dealer.finish()?.into_iter().enumerate() {
        let into = &mut parts[i / per_output];
        match bucket {
            Some(path) => buckets.merge(path, 1, into)?,
            // A bucket no row went to still gives a part with every column.
            None => {
                into.push(buckets.write(vec![(inputs[0].name.clone(), buckets.plain.clone())])?)
            }
        }
    }
    let mut written = Vec::with_capacity(outputs);
    let (mut rows_out, mut count) = (0, 0);
    for parts in parts {
        count += parts.len();
        let (files, heights): (Vec<PathBuf>, Vec<usize>) = parts.into_iter().unzip();
        let rows: usize = heights.into_iter().sum();
        rows_out += rows as u64;
        let rows = Rows::Parts {
            files,
            rows,
            dir: Arc::clone(dir),
        };
        written.push(write_rows(rows, Effort::Rollup)?);
    }
    Ok((written, rows_out, count))
}

/// What merging in buckets needs throughout.
struct Buckets<'a> {
    source: &'a dyn Source,
    inputs: &'a [Input],
    remerge: &'a RemergeOptions,
    /// Every column a dealt row has: the inputs' (as remerge sees them), and [`FILE_COLUMN`].
    template: &'a DataFrame,
    /// The same without [`FILE_COLUMN`].
    plain: DataFrame,
    /// The estimated rows a bucket may have to be merged.
    bucket_bytes: u64,
    /// The inputs' estimated bytes per row ([`file_estimate`]): a bucket's rows are estimated
    /// from their number, its spill file (plain, uncompressed) being no measure of them.
    row_bytes: f64,
    /// Rows dealt that may wait in memory.
    pending_bytes: u64,
    dir: &'a Arc<SpillDir>,
}

impl<'a> Buckets<'a> {
    /// The buckets rows of `estimate` bytes are dealt into: as many as they need, at most
    /// [`FANOUT`].
    fn fanout(&self, estimate: u64) -> usize {
        (estimate.div_ceil(self.bucket_bytes) as usize).clamp(1, FANOUT)
    }

    fn dealer(&self, buckets: usize, level: u32) -> Dealer<'a> {
        Dealer {
            source: self.source,
            template: self.template,
            pending: (0..buckets).map(|_| Vec::new()).collect(),
            waiting: 0,
            pending_limit: self.pending_bytes,
            files: (0..buckets).map(|_| None).collect(),
            dir: Arc::clone(self.dir),
            level,
            turn: 0,
        }
    }

    /// Calls `each` with the row ranges of a file, each within a row group and of about half the
    /// bytes rows may wait in memory (`row_bytes`: a row group's bytes per row).
    fn each_slice(
        &self,
        md: &FileMetadata,
        row_bytes: impl Fn(&polars_parquet::parquet::metadata::RowGroupMetadata) -> f64,
        mut each: impl FnMut((usize, usize)) -> Result<()>,
    ) -> Result<()> {
        let mut offset = 0;
        for group in &md.row_groups {
            let rows = group.num_rows();
            let step = (self.pending_bytes as f64 / 2.0 / row_bytes(group).max(1.0)) as usize;
            let step = step.clamp(1, rows.max(1));
            let mut done = 0;
            while done < rows {
                let len = step.min(rows - done);
                each((offset + done, len))?;
                done += len;
            }
            offset += rows;
        }
        Ok(())
    }

    /// Merges the bucket file at `path` (dealt at `level - 1`) into sorted parts, appended to
    /// `parts`: one part, or, when its rows are estimated at more than a bucket may hold, the
    /// parts of the buckets it is dealt into at `level`.
    fn merge(&self, path: PathBuf, level: u32, parts: &mut Vec<(PathBuf, usize)>) -> Result<()> {
        let file = std::fs::File::open(&path).map_err(|e| spill_error(&path, e))?;
        let md = ParquetReader::new(file).get_metadata()?.clone();
        let estimate = (md.num_rows as f64 * self.row_bytes) as u64;
        if estimate > self.bucket_bytes && level <= MAX_LEVEL {
            let mut dealer = self.dealer(self.fanout(estimate).max(2), level);
            self.each_slice(
                &md,
                |_| self.row_bytes,
                |slice| {
                    let file = std::fs::File::open(&path).map_err(|e| spill_error(&path, e))?;
                    let mut reader = ParquetReader::new(file);
                    reader.set_metadata(Arc::clone(&md));
                    dealer.deal(reader.with_slice(Some(slice)).finish()?)
                },
            )?;
            let dealt = dealer.finish()?;
            std::fs::remove_file(&path).map_err(|e| spill_error(&path, e))?;
            // Rows of one key cannot be split: merged as they are.
            let split = dealt.iter().filter(|b| b.is_some()).count() > 1;
            for sub in dealt.into_iter().flatten() {
                match split {
                    true => self.merge(sub, level + 1, parts)?,
                    false => self.merge(sub, MAX_LEVEL + 1, parts)?,
                }
            }
            return Ok(());
        }
        let files = by_file(SpillDir::read(&path)?, self.inputs)?;
        parts.push(self.write(files)?);
        Ok(())
    }

    /// One bucket's rows, per file, merged by the source and spilled as a sorted part.
    fn write(&self, files: Vec<(String, DataFrame)>) -> Result<(PathBuf, usize)> {
        let mut merged = self.source.remerge(files, self.remerge)?;
        Ok((self.dir.write(&mut merged)?, merged.height()))
    }
}

/// A bucket's rows split by the file they came from, in file order, without the file column.
fn by_file(df: DataFrame, inputs: &[Input]) -> Result<Vec<(String, DataFrame)>> {
    let files = df.column(FILE_COLUMN)?.u32()?.clone();
    let df = df.drop(FILE_COLUMN)?;
    // Rows were dealt file after file: each file's rows are one run.
    let mut runs: Vec<(u32, usize, usize)> = Vec::new();
    for (row, file) in files.iter().enumerate() {
        let file = file.unwrap_or_default();
        match runs.last_mut() {
            Some((last, _, len)) if *last == file => *len += 1,
            _ => runs.push((file, row, 1)),
        }
    }
    runs.into_iter()
        .map(|(file, start, len)| {
            let input = inputs.get(file as usize).ok_or_else(|| {
                Error::Rollup(format!("a dealt row names file {file}, not an input"))
            })?;
            Ok((input.name.clone(), df.slice(start as i64, len)))
        })
        .collect()
}

/// Deals rows into bucket files: a bucket's rows wait in memory until all the waiting rows
/// reach `pending_limit` bytes, then every bucket's are appended to its file as a row group.
struct Dealer<'a> {
    source: &'a dyn Source,
    template: &'a DataFrame,
    pending: Vec<Vec<DataFrame>>,
    waiting: u64,
    pending_limit: u64,
    files: Vec<Option<BucketFile>>,
    dir: Arc<SpillDir>,
    /// Which hash a row's bucket is taken from: each level's is its own.
    level: u32,
    /// Rows dealt in turn so far (a source whose rows never merge).
    turn: u64,
}

/// A bucket's spill file: uncompressed Parquet, written through a buffer shared with its writer
/// so that it is flushed, and its errors seen, when the writer is done.
struct BucketFile {
    path: PathBuf,
    buffer: SharedBuffer,
    writer: BatchedWriter<SharedBuffer>,
}

#[derive(Clone)]
struct SharedBuffer(Arc<std::sync::Mutex<std::io::BufWriter<std::fs::File>>>);

impl SharedBuffer {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::io::BufWriter<std::fs::File>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::io::Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lock().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.lock().flush()
    }
}

impl Dealer<'_> {
    /// Deals `df`: rows with every column of the template (those a file lacks are null).
    fn deal(&mut self, df: DataFrame) -> Result<()> {
        let df = polars::functions::concat_df_diagonal(&[self.template.clear(), df])?;
        let buckets = self.buckets_of(&df)?;
        let mut rows: Vec<Vec<IdxSize>> = vec![Vec::new(); self.pending.len()];
        for (row, bucket) in buckets.into_iter().enumerate() {
            rows[bucket].push(row as IdxSize);
        }
        for (bucket, rows) in rows.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let part = df.take(&IdxCa::from_vec("".into(), rows))?;
            self.waiting += part.estimated_size() as u64;
            self.pending[bucket].push(part);
        }
        if self.waiting >= self.pending_limit {
            self.flush()?;
        }
        Ok(())
    }

    /// Each row's bucket: a stable hash (XXH3, chained from the level) of the names and values
    /// of its bucket key columns, by name, a null left out — so a column a file lacks is as a
    /// null — or, with no such column, the next bucket in turn.
    fn buckets_of(&mut self, df: &DataFrame) -> Result<Vec<usize>> {
        let n = self.pending.len() as u64;
        let mut keys: Vec<&Column> = df
            .columns()
            .iter()
            .filter(|c| c.name().as_str() != FILE_COLUMN && self.source.bucket_key(c.name()))
            .collect();
        if keys.is_empty() {
            let first = self.turn;
            self.turn += df.height() as u64;
            return Ok((0..df.height() as u64)
                .map(|i| ((first + i) % n) as usize)
                .collect());
        }
        keys.sort_by(|a, b| a.name().cmp(b.name()));
        let mut hashes = vec![u64::from(self.level); df.height()];
        for column in keys {
            let text = column.cast(&DataType::String)?;
            let name = column.name().as_bytes();
            for (h, value) in hashes.iter_mut().zip(text.str()?.iter()) {
                if let Some(value) = value {
                    *h = xxhash_rust::xxh3::xxh3_64_with_seed(name, *h);
                    *h = xxhash_rust::xxh3::xxh3_64_with_seed(value.as_bytes(), *h);
                }
            }
        }
        Ok(hashes.into_iter().map(|h| (h % n) as usize).collect())
    }

    /// Appends every bucket's waiting rows to its file.
    fn flush(&mut self) -> Result<()> {
        for (bucket, waiting) in self.pending.iter_mut().enumerate() {
            let mut parts = std::mem::take(waiting).into_iter();
            let Some(mut df) = parts.next() else { continue };
            for part in parts {
                df.vstack_mut_owned(part)?;
            }
            let file = match &mut self.files[bucket] {
                Some(file) => file,
                slot @ None => {
                    let (path, file) = self.dir.create()?;
                    let buffer = SharedBuffer(Arc::new(std::sync::Mutex::new(file)));
                    let writer = ParquetWriter::new(buffer.clone())
                        .with_compression(ParquetCompression::Uncompressed)
                        .with_statistics(StatisticsOptions::empty())
                        .batched(self.template.schema())?;
                    slot.insert(BucketFile {
                        path,
                        buffer,
                        writer,
                    })
                }
            };
            df.rechunk_mut();
            file.writer.write_batch(&df)?;
        }
        self.waiting = 0;
        Ok(())
    }

    /// The bucket files, finished: `None` for a bucket no row went to.
    fn finish(mut self) -> Result<Vec<Option<PathBuf>>> {
        self.flush()?;
        self.files
            .into_iter()
            .map(|slot| {
                slot.map(|file| {
                    file.writer.finish()?;
                    drop(file.writer);
                    std::io::Write::flush(&mut *file.buffer.lock())
                        .map_err(|e| spill_error(&file.path, e))?;
                    Ok(file.path)
                })
                .transpose()
            })
            .collect()
    }
}
