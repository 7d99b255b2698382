//! The merge plan: union of per-format frames (schema superset) → group by the merge key →
//! sum / min / max / bit-or / count → canonical column order and sort. Aggregation is associative,
//! so partial merges of chunks can be merged again: that is what bounds memory on large batches.

use polars::prelude::*;

use crate::formats::vpcflow::fields::{self, MERGED_RECORDS, Role};

/// Columns the output is sorted by first, so Parquet row-group statistics prune well.
const SORT_PREFIX: &[&str] = &["account_id", "interface_id", "srcaddr", "dstaddr"];

/// Whether the merged frame gets its final column order and sort (only the last merge needs it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    Partial,
    Final,
    /// The rows are known to be unique per merge key already (a rollup of files whose windows do
    /// not overlap): no aggregation, only the final column order and sort — the same frame
    /// [`Finish::Final`] would give, without hashing every row.
    Sorted,
}

/// Merges frames of raw records (no `merged_records` column: each row counts 1) and/or of earlier
/// merges (with `merged_records`) into one frame with one row per merge key.
pub fn merge_frames(frames: Vec<DataFrame>, finish: Finish) -> PolarsResult<DataFrame> {
    let (plan, by) = merge_plan(frames, finish)?;
    let merged = plan.collect()?;
    match finish {
        Finish::Partial => Ok(merged),
        Finish::Final | Finish::Sorted => crate::sort::sort_rows(merged, &by),
    }
}

/// The lazy plan of [`merge_frames`], up to its sort, and the columns to sort by (none for
/// [`Finish::Partial`]).
fn merge_plan(
    frames: Vec<DataFrame>,
    finish: Finish,
) -> PolarsResult<(LazyFrame, Vec<PlSmallStr>)> {
    let mut columns: Vec<(PlSmallStr, DataType)> = Vec::new();
    for df in &frames {
        for (name, dtype) in df.schema().iter() {
            if !columns.iter().any(|(n, _)| n == name) {
                columns.push((name.clone(), dtype.clone()));
            }
        }
    }
    if !columns.iter().any(|(n, _)| n == MERGED_RECORDS) {
        columns.push((MERGED_RECORDS.into(), DataType::Int64));
    }
    columns
        .sort_by(|a, b| fields::column_rank(a.0.as_str()).cmp(&fields::column_rank(b.0.as_str())));

    let inputs: Vec<LazyFrame> = frames
        .into_iter()
        .map(|df| {
            let counted = df.get_column_index(MERGED_RECORDS).is_some();
            let lf = df.lazy();
            if counted {
                lf
            } else {
                lf.with_column(lit(1i64).cast(DataType::Int64).alias(MERGED_RECORDS))
            }
        })
        .collect();
    let union = match inputs.len() {
        0 => {
            let schema: Schema = columns
                .iter()
                .cloned()
                .map(|(n, d)| Field::new(n, d))
                .collect();
            DataFrame::empty_with_schema(&schema).lazy()
        }
        1 => inputs.into_iter().next().unwrap_or_default(),
        _ => concat_lf_diagonal(inputs, UnionArgs::default())?,
    };

    let keys: Vec<Expr> = columns
        .iter()
        .filter(|(n, _)| fields::role_of_column(n) == Role::Key)
        .map(|(n, _)| col(n.clone()))
        .collect();
    let aggs: Vec<Expr> = columns
        .iter()
        .filter_map(|(n, dtype)| aggregate(n, dtype))
        .collect();
    let order: Vec<Expr> = columns.iter().map(|(n, _)| col(n.clone())).collect();

    let merged = if finish == Finish::Sorted {
        union
    } else if keys.is_empty() {
        union.select(aggs)
    } else {
        union.group_by(keys).agg(aggs)
    };
    Ok(match finish {
        Finish::Partial => (merged, Vec::new()),
        Finish::Final | Finish::Sorted => (merged.select(order), sort_columns(&columns)),
    })
}

/// The columns the output is ordered by: [`SORT_PREFIX`], then the other key columns in column
/// order.
fn sort_columns(columns: &[(PlSmallStr, DataType)]) -> Vec<PlSmallStr> {
    let mut by: Vec<PlSmallStr> = SORT_PREFIX
        .iter()
        .filter(|c| columns.iter().any(|(n, _)| n == *c))
        .map(|c| PlSmallStr::from(*c))
        .collect();
    for (n, _) in columns {
        if fields::role_of_column(n) == Role::Key && !by.contains(n) {
            by.push(n.clone());
        }
    }
    by
}

/// The aggregate of a metric column; `None` for key columns. A group whose values are all null
/// stays null (polars' `sum` would give 0).
fn aggregate(name: &PlSmallStr, dtype: &DataType) -> Option<Expr> {
    let c = || col(name.clone());
    let guarded = |e: Expr| {
        when(c().count().gt(lit(0u32)))
            .then(e)
            .otherwise(lit(Null {}).cast(dtype.clone()))
            .alias(name.clone())
    };
    match fields::role_of_column(name) {
        Role::Key => None,
        Role::Sum => Some(guarded(c().sum())),
        Role::BitOr => Some(guarded(c().bitwise_or())),
        Role::Min => Some(c().min().alias(name.clone())),
        Role::Max => Some(c().max().alias(name.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two already-merged frames of other windows, nulls and an extra column in one: skipping the
    /// aggregation (`Sorted`) gives exactly the frame the aggregation gives.
    #[test]
    fn sorted_equals_final_when_rows_are_unique_per_key() {
        let a = df!(
            "account_id" => ["2", "1", "1"],
            "srcaddr" => [Some("10.0.0.2"), None, Some("10.0.0.1")],
            "packets" => [Some(5i64), None, Some(7)],
            "tcp_flags" => [Some(2i32), Some(18), None],
            "window_start" => [300i64, 300, 300],
            "merged_records" => [2i64, 1, 3],
        )
        .unwrap();
        let b = df!(
            "account_id" => ["1", "1"],
            "srcaddr" => [Some("10.0.0.1"), Some("10.0.0.9")],
            "packets" => [Some(1i64), Some(4)],
            "tcp_flags" => [Some(1i32), Some(2)],
            "vpc_id" => ["vpc-1", "vpc-2"],
            "window_start" => [600i64, 600],
            "merged_records" => [1i64, 1],
        )
        .unwrap();
        let merged = merge_frames(vec![a.clone(), b.clone()], Finish::Final).unwrap();
        let sorted = merge_frames(vec![a, b], Finish::Sorted).unwrap();
        assert_eq!(merged.schema(), sorted.schema());
        assert!(merged.equals_missing(&sorted), "{merged}\n{sorted}");
        assert_eq!(sorted.height(), 5);
    }
}
