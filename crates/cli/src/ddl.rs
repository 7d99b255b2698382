//! `flowmerge ddl`: the Athena table over compact's output — every documented field with the type
//! it has in our Parquet, `merged_records`, and partition projection on year/month/day/hour so
//! no `MSCK REPAIR` or crawler is needed.

use anyhow::{Result, bail};
use clap::Args;
use flowmerge_core::formats::vpcflow::fields::{FIELDS, FieldType, MERGED_RECORDS};
use flowmerge_core::layout::VPCFLOW_DATASET;

#[derive(Args, Debug)]
pub struct DdlArgs {
    /// The compact output the table reads: s3://bucket/prefix (as given to `compact`).
    #[arg(long)]
    pub output: String,
    /// Table name (optionally database-qualified, e.g. logs.vpc_flow_logs).
    #[arg(long, default_value = "vpc_flow_logs")]
    pub table: String,
    /// First year of the projected partitions.
    #[arg(long, default_value_t = 2015)]
    pub first_year: u32,
}

/// Athena (Hive DDL) type of a field type.
pub fn athena_type(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Int32 => "int",
        FieldType::Int64 => "bigint",
        FieldType::String => "string",
    }
}

/// The `(column, athena type)` list of the table, in output column order.
pub fn columns() -> Vec<(&'static str, &'static str)> {
    FIELDS
        .iter()
        .map(|f| (f.column, athena_type(f.ty)))
        .chain([(MERGED_RECORDS, "bigint")])
        .collect()
}

pub fn render(args: &DdlArgs) -> Result<String> {
    let base = args.output.trim_end_matches('/');
    if !base.contains("://") {
        bail!("--output {base}: give the location Athena reads, e.g. s3://bucket/prefix");
    }
    let location = format!("{base}/{VPCFLOW_DATASET}/");
    let cols = columns()
        .iter()
        .map(|(c, t)| format!("  `{c}` {t}"))
        .collect::<Vec<_>>()
        .join(",\n");
    Ok(format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS {table} (\n{cols}\n)\n\
PARTITIONED BY (`year` string, `month` string, `day` string, `hour` string)\n\
STORED AS PARQUET\n\
LOCATION '{location}'\n\
TBLPROPERTIES (\n\
  'parquet.compression' = 'ZSTD',\n\
  'projection.enabled' = 'true',\n\
  'projection.year.type' = 'integer',\n\
  'projection.year.range' = '{first_year},2099',\n\
  'projection.year.digits' = '4',\n\
  'projection.month.type' = 'integer',\n\
  'projection.month.range' = '1,12',\n\
  'projection.month.digits' = '2',\n\
  'projection.day.type' = 'integer',\n\
  'projection.day.range' = '1,31',\n\
  'projection.day.digits' = '2',\n\
  'projection.hour.type' = 'integer',\n\
  'projection.hour.range' = '0,23',\n\
  'projection.hour.digits' = '2',\n\
  'storage.location.template' = '{location}year=${{year}}/month=${{month}}/day=${{day}}/hour=${{hour}}'\n\
);\n",
        table = args.table,
        first_year = args.first_year,
    ))
}
