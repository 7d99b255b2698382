//! Rollups of partitions whose rows do not fit in memory at once (docs/architecture.md,
//! "Bounded rollups").
//!
//! The partition's files are read a slice of rows at a time and dealt into buckets on local
//! disk: rows that may merge — equal in the source's [`Source::bucket_key`] columns — into one
//! bucket by a stable hash of those values, the rows of a source that never merges in turn. Each
//! bucket is then merged alone, through the source's own [`Source::remerge`] with its rows
//! grouped by file as the whole partition's would be, and kept as one sorted part. An output file
//! is its buckets' parts in order, each part its own row groups, as a batch too large to sort at
//! once is written. The number of buckets follows from the inputs' estimated size and the
//! memory limit, so the same inputs and limit give the same bytes.

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
/// [`file_estimate`]: an hour of 1.44M flow rows estimated at 307 MB peaked at 702 MiB (2.4×), a
/// day of 300,000 CloudTrail events estimated at 178 MB at 574 MiB (3.4×: `eventid` made unique,
/// then sorted).
pub(super) const AT_ONCE_SHARE: u64 = 4;

/// The estimated rows of one bucket: this part of the memory limit. A bucket is merged as a
/// partition is at once (about three times its estimate) while the rows being dealt wait
/// beside it; measured peaks under a 256 MiB limit: 229 MiB (3.8M flow rows), 234 MiB (300,000
/// CloudTrail events).
const BUCKET_SHARE: u64 = 16;

/// The most buckets: a bucket's file is open while rows are dealt.
const MAX_BUCKETS: u64 = 256;

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
    /// Rows `slice` (offset, length) of the file, or all of them.
    pub fn read(&self, slice: Option<(usize, usize)>) -> Result<DataFrame> {
        let read = match &self.body {
            Body::Memory(body) => ParquetReader::new(std::io::Cursor::new(body.clone()))
                .with_slice(slice)
                .finish(),
            Body::Disk(path) => {
                let file = std::fs::File::open(path).map_err(|e| spill_error(path, e))?;
                ParquetReader::new(file).with_slice(slice).finish()
            }
        };
        read.map_err(|e| self.unreadable(e))
    }

    /// The file's footer and its columns as a frame of no rows.
    pub fn metadata(&self) -> Result<(Arc<FileMetadata>, DataFrame)> {
        fn read<R: MmapBytesReader>(
            mut reader: ParquetReader<R>,
        ) -> PolarsResult<(Arc<FileMetadata>, DataFrame)> {
            let metadata = reader.get_metadata()?.clone();
            let schema = Schema::from_arrow_schema(reader.schema()?.as_ref());
            Ok((metadata, DataFrame::empty_with_schema(&schema)))
        }
        let read = match &self.body {
            Body::Memory(body) => read(ParquetReader::new(std::io::Cursor::new(body.clone()))),
            Body::Disk(path) => {
                let file = std::fs::File::open(path).map_err(|e| spill_error(path, e))?;
                read(ParquetReader::new(file))
            }
        };
        read.map_err(|e| self.unreadable(e))
    }

    fn unreadable(&self, e: impl std::fmt::Display) -> Error {
        Error::Rollup(format!("{}: not readable Parquet: {e}", self.key))
    }
}

/// What `rows` rows of these column chunks take in memory, estimated from a footer: each value's
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

/// How many buckets rows of `estimate` bytes are dealt into under `memory_limit` — a multiple of
/// `outputs`, so that each output file gets the same number — and the bytes of rows dealt that
/// may wait in memory.
pub(super) fn bucket_count(estimate: u64, memory_limit: u64, outputs: usize) -> (usize, u64) {
    let per_bucket = (memory_limit / BUCKET_SHARE).max(1);
    let buckets = estimate.div_ceil(per_bucket).clamp(1, MAX_BUCKETS) as usize;
    (
        buckets.div_ceil(outputs.max(1)) * outputs.max(1),
        per_bucket,
    )
}

/// The partition merged in `buckets` ([`bucket_count`]) and written as `outputs` files, each its
/// buckets' sorted parts in order; and the rows written. `footers` are the inputs' own
/// ([`Input::metadata`]).
pub(super) fn merge_in_buckets(
    source: &dyn Source,
    inputs: &[Input],
    footers: Vec<(Arc<FileMetadata>, DataFrame)>,
    remerge: &RemergeOptions,
    (buckets, pending_limit): (usize, u64),
    dir: &Arc<SpillDir>,
    outputs: usize,
) -> Result<(Vec<Written>, u64)> {
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

    let mut dealer = Dealer::new(source, &template, buckets, pending_limit, dir)?;
    for (index, (input, md)) in inputs.iter().zip(&metadata).enumerate() {
        let mut offset = 0;
        for group in &md.row_groups {
            let rows = group.num_rows();
            let bytes = memory_estimate(group.parquet_columns().iter()).max(1);
            // Slices of about a bucket's bytes each.
            let step = ((rows as u64 * dealer.pending_limit) / bytes).clamp(1, rows.max(1) as u64);
            let mut done = 0;
            while done < rows {
                let len = (step as usize).min(rows - done);
                let df = input.read(Some((offset + done, len)))?;
                let df = source.rows_of_file(&input.name, df, remerge)?;
                dealer.deal(df, index as u32)?;
                done += len;
            }
            offset += rows;
        }
        // A fetched copy is not needed again.
        if let Body::Disk(path) = &input.body {
            std::fs::remove_file(path).map_err(|e| spill_error(path, e))?;
        }
    }
    let dealt = dealer.finish()?;

    // Each bucket merged alone, its rows grouped by file as remerge takes them.
    let mut parts = Vec::with_capacity(buckets);
    let mut written_rows = 0u64;
    let plain = template.drop(FILE_COLUMN)?;
    for bucket in dealt {
        let files = match bucket {
            Some(path) => by_file(SpillDir::read(&path)?, inputs)?,
            None => Vec::new(),
        };
        let files = match files.is_empty() {
            // A bucket no row went to still gives a part with every column.
            true => vec![(inputs[0].name.clone(), plain.clone())],
            false => files,
        };
        let mut merged = source.remerge(files, remerge)?;
        written_rows += merged.height() as u64;
        parts.push((dir.write(&mut merged)?, merged.height()));
    }
    let per_output = buckets / outputs.max(1);
    let mut written = Vec::with_capacity(outputs);
    let mut parts = parts.into_iter();
    for _ in 0..outputs {
        let (files, heights): (Vec<PathBuf>, Vec<usize>) = parts.by_ref().take(per_output).unzip();
        let rows = Rows::Parts {
            files,
            rows: heights.into_iter().sum(),
            dir: Arc::clone(dir),
        };
        written.push(write_rows(rows, Effort::Rollup)?);
    }
    Ok((written, written_rows))
}

/// A bucket's rows split by the file they came from, in file order, without the file column.
fn by_file(df: DataFrame, inputs: &[Input]) -> Result<Vec<(String, DataFrame)>> {
    let file = df.column(FILE_COLUMN)?.u32()?.clone();
    let df = df.drop(FILE_COLUMN)?;
    let mut out = Vec::new();
    let mut start = 0;
    // Rows were dealt file after file: each file's rows are one run.
    while start < df.height() {
        let index = file.get(start).unwrap_or_default();
        let mut end = start + 1;
        while end < df.height() && file.get(end) == Some(index) {
            end += 1;
        }
        let name = inputs
            .get(index as usize)
            .map(|i| i.name.clone())
            .ok_or_else(|| {
                Error::Rollup(format!("a dealt row names file {index}, not an input"))
            })?;
        out.push((name, df.slice(start as i64, end - start)));
        start = end;
    }
    Ok(out)
}

/// Deals rows into bucket files: a bucket's rows wait in memory until all the waiting rows
/// reach `pending_limit` bytes, then every bucket's are appended to its file as a row group.
struct Dealer<'a> {
    source: &'a dyn Source,
    template: &'a DataFrame,
    pending: Vec<Vec<DataFrame>>,
    pending_bytes: u64,
    pending_limit: u64,
    files: Vec<Option<(PathBuf, BatchedWriter<std::fs::File>)>>,
    dir: &'a SpillDir,
    /// Rows dealt in turn so far (a source whose rows never merge).
    turn: u64,
}

impl<'a> Dealer<'a> {
    fn new(
        source: &'a dyn Source,
        template: &'a DataFrame,
        buckets: usize,
        pending_limit: u64,
        dir: &'a SpillDir,
    ) -> Result<Self> {
        Ok(Self {
            source,
            template,
            pending: (0..buckets).map(|_| Vec::new()).collect(),
            pending_bytes: 0,
            pending_limit: pending_limit.max(1),
            files: (0..buckets).map(|_| None).collect(),
            dir,
            turn: 0,
        })
    }

    /// Deals `df`, rows of input `file`.
    fn deal(&mut self, df: DataFrame, file: u32) -> Result<()> {
        let mut df = polars::functions::concat_df_diagonal(&[self.template.clear(), df])?;
        df.with_column(Column::new(FILE_COLUMN.into(), vec![file; df.height()]))?;
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
            self.pending_bytes += part.estimated_size() as u64;
            self.pending[bucket].push(part);
        }
        if self.pending_bytes >= self.pending_limit {
            self.flush()?;
        }
        Ok(())
    }

    /// Each row's bucket: a stable hash (XXH3, chained) of the names and values of its bucket
    /// key columns, by name, a null left out — so a column a file lacks is as a null — or, with
    /// no such column, the next bucket in turn.
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
        let mut hashes = vec![0u64; df.height()];
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
            if waiting.is_empty() {
                continue;
            }
            let mut parts = std::mem::take(waiting).into_iter();
            let Some(mut df) = parts.next() else { continue };
            for part in parts {
                df.vstack_mut_owned(part)?;
            }
            let writer = match &mut self.files[bucket] {
                Some((_, writer)) => writer,
                slot @ None => {
                    let (path, file) = self.dir.create_file()?;
                    let writer = ParquetWriter::new(file)
                        .with_compression(ParquetCompression::Uncompressed)
                        .with_statistics(StatisticsOptions::empty())
                        .batched(self.template.schema())?;
                    &mut slot.insert((path, writer)).1
                }
            };
            df.rechunk_mut();
            writer.write_batch(&df)?;
        }
        self.pending_bytes = 0;
        Ok(())
    }

    /// The bucket files, finished: `None` for a bucket no row went to.
    fn finish(mut self) -> Result<Vec<Option<PathBuf>>> {
        self.flush()?;
        self.files
            .into_iter()
            .map(|slot| {
                slot.map(|(path, writer)| {
                    writer.finish()?;
                    Ok(path)
                })
                .transpose()
            })
            .collect()
    }
}
