//! VPC flow logs: the field catalogue, the parser, and the combiner that folds records by flow
//! key as they are parsed.

pub mod combine;
pub mod fields;
pub mod parse;

use std::sync::{Mutex, PoisonError};

use polars::prelude::*;
use rayon::prelude::*;

pub use combine::{Combiner, ObjectStats, combine_object};
pub use parse::{ParseOptions, ParsedObject, parse_object, parse_text};

use crate::error::Result;
use crate::exec::{BatchReport, ProgressHook, Quarantined};
use crate::merge::{Finish, merge_frames};
use crate::source::{Fetched, Merged, ReadOptions, RemergeOptions, Source};
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
        fetched: Vec<Fetched>,
        opts: &ReadOptions,
        progress: Option<&ProgressHook>,
    ) -> Result<Merged> {
        let (df, report) = merge_fetched(fetched, &opts.vpcflow, progress)?;
        let df = df
            .map(|df| with_window_start(df, window.start))
            .transpose()?;
        Ok(Merged {
            partitions: df.map(|df| (window.partition(), df)).into_iter().collect(),
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

/// Parses fetched objects in parallel, quarantining the bad ones, and merges everything. Each
/// worker thread folds the records it parses into its own [`Combiner`] (a hash table on the flow
/// key), so memory is bounded by the batch's distinct keys per thread rather than by its
/// records; polars then merges the threads' tables into the batch's rows.
fn merge_fetched(
    fetched: Vec<Fetched>,
    parse: &ParseOptions,
    progress: Option<&ProgressHook>,
) -> Result<(Option<DataFrame>, BatchReport)> {
    let combiners: Vec<Mutex<Combiner>> = (0..rayon::current_num_threads().max(1))
        .map(|_| Mutex::default())
        .collect();
    let outcomes: Vec<std::result::Result<ObjectStats, String>> = fetched
        .par_iter()
        .map(|(object, body)| {
            let body = body.as_ref().map_err(Clone::clone)?;
            // This thread's own combiner: the lock is never contended.
            let slot = rayon::current_thread_index().unwrap_or(0) % combiners.len();
            let mut combiner = combiners[slot]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let stats =
                combine_object(&object.key, body, parse, &mut combiner).map_err(|e| e.to_string());
            if let Some(hook) = progress {
                (hook.0)(object.size, stats.as_ref().map_or(0, |s| s.records));
            }
            stats
        })
        .collect();

    let mut report = BatchReport::default();
    for ((object, _), outcome) in fetched.iter().zip(outcomes) {
        report.bytes_in += object.size;
        match outcome {
            Ok(stats) => {
                report.records_in += stats.records;
                report.decoded_bytes += stats.decoded_bytes;
                if stats.records == 0 {
                    report.empty.push(object.key.clone());
                }
            }
            Err(reason) => {
                tracing::warn!(key = %object.key, %reason, "object quarantined");
                report.quarantined.push(Quarantined {
                    object: object.clone(),
                    reason,
                });
            }
        }
    }
    drop(fetched);
    let mut frames = Vec::new();
    for combiner in combiners {
        frames.extend(
            combiner
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .into_frames()?,
        );
    }
    let merged = match frames.is_empty() {
        true => None,
        false => Some(merge_frames(frames, Finish::Final)?),
    };
    Ok((merged, report))
}
