//! `flowmerge ddl`: the table over one source's output — every column with the type it has in our
//! Parquet — for Athena (the default) or for engines that read a Hive metastore (`--dialect hive`:
//! Spark, which the tests run; Hive and Trino's Hive connector take the same DDL).
//!
//! Athena's table has partition projection, so no `MSCK REPAIR` or crawler is needed: one `date`
//! column whose format spells the Hive path (`year=…/month=…/day=…`, and `/hour=…` for flow
//! logs), ranging from `--first-year` to `NOW`, so an unfiltered query enumerates only the
//! partitions that can exist, not every hour to 2099. The same table, as JSON (`--format json`),
//! is what the CDK app builds its Glue tables from (`infra-cdk/lib/*-table.json`; a test keeps them
//! equal). Other engines ignore projection, so the Hive table is partitioned by the path's own keys
//! (`year`, `month`, … as `int`, DNS's `server` as `string`) and `MSCK REPAIR TABLE`, printed after
//! it, registers the partitions found under the location.

use anyhow::Result;
use clap::{Args, ValueEnum};
use flowmerge_core::SourceKind;
use flowmerge_core::formats::cloudtrail;
use flowmerge_core::formats::vpcflow::fields::{FIELDS, FieldType, MERGED_RECORDS, WINDOW_START};
use serde::Serialize;

#[derive(Args, Debug)]
pub struct DdlArgs {
    /// The compact output the table reads: s3://bucket/prefix (as given to `compact`), or
    /// file:///path for a local one.
    #[arg(long)]
    pub output: String,
    /// Which source's table.
    #[arg(long, value_enum, default_value_t = SourceArg::Vpcflow)]
    pub source: SourceArg,
    /// Table name, optionally database-qualified [default: vpc_flow_logs, cloudtrail_logs,
    /// dns_queries].
    #[arg(long)]
    pub table: Option<String>,
    /// First year of the projected partitions (they run to NOW).
    #[arg(long, default_value_t = 2015)]
    pub first_year: u32,
    /// DNS only: the capture servers, comma-separated. Given, `server` is an `enum` projection over
    /// them; otherwise `injected` (every query then names its server(s) in WHERE).
    #[arg(long, value_delimiter = ',')]
    pub servers: Vec<String>,
    /// CloudTrail only: the monthly table `flowmerge rollup --level month --into PREFIX` writes
    /// (`--output` is then that PREFIX), partitioned by month.
    #[arg(long)]
    pub monthly: bool,
    /// `sql` (the DDL) or `json` (the Athena table as the CDK app reads it).
    #[arg(long, value_enum, default_value_t = DdlFormat::Sql)]
    pub format: DdlFormat,
    /// `athena` (partition projection) or `hive` (Spark, Hive, Trino's Hive connector: the path's
    /// own partition keys, registered by the `MSCK REPAIR TABLE` printed after the table).
    #[arg(long, value_enum, default_value_t = Dialect::Athena)]
    pub dialect: Dialect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Dialect {
    Athena,
    Hive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SourceArg {
    Vpcflow,
    Cloudtrail,
    Dns,
}

impl From<SourceArg> for SourceKind {
    fn from(s: SourceArg) -> Self {
        match s {
            SourceArg::Vpcflow => SourceKind::Vpcflow,
            SourceArg::Cloudtrail => SourceKind::Cloudtrail,
            SourceArg::Dns => SourceKind::Dns,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DdlFormat {
    Sql,
    Json,
}

/// Athena (Hive DDL) type of a flow-log field type.
pub fn athena_type(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Int32 => "int",
        FieldType::Int64 => "bigint",
        FieldType::String => "string",
    }
}

#[derive(Debug, Serialize)]
pub struct NameType {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
}

/// A table as Glue stores it; `${location}` in parameters stands for the table's location.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableSpec {
    pub comment: String,
    pub name: String,
    pub dataset: String,
    pub columns: Vec<NameType>,
    pub partition_keys: Vec<NameType>,
    /// In the order the DDL prints them.
    #[serde(serialize_with = "in_order")]
    pub parameters: Vec<(String, String)>,
}

fn in_order<S: serde::Serializer>(v: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|(k, v)| (k, v)))
}

fn nt(name: &str, ty: &str) -> NameType {
    NameType {
        name: name.into(),
        ty: ty.into(),
    }
}

/// The table of a source, its projection starting in `first_year`; `servers` names the DNS
/// capture servers for an `enum` projection (empty: `injected`).
pub fn spec(source: SourceKind, first_year: u32, servers: &[String], monthly: bool) -> TableSpec {
    let typed = |cols: Vec<(&str, &str)>| cols.into_iter().map(|(c, t)| nt(c, t)).collect();
    let (name, dataset, columns): (&str, &str, Vec<NameType>) = match source {
        SourceKind::Vpcflow => (
            "vpc_flow_logs",
            flowmerge_core::formats::vpcflow::DATASET,
            FIELDS
                .iter()
                .map(|f| nt(f.column, athena_type(f.ty)))
                .chain([nt(WINDOW_START, "bigint"), nt(MERGED_RECORDS, "bigint")])
                .collect(),
        ),
        SourceKind::Cloudtrail => (
            "cloudtrail_logs",
            cloudtrail::DATASET,
            typed(cloudtrail::athena_columns()),
        ),
        SourceKind::Dns => (
            "dns_queries",
            flowmerge_core::formats::dns::DATASET,
            typed(flowmerge_core::formats::dns::athena_columns()),
        ),
    };
    let (name, dataset) = match monthly {
        true => (
            "cloudtrail_logs_monthly",
            flowmerge_core::rollup::MONTHLY_DATASET,
        ),
        false => (name, dataset),
    };
    // Flow logs are partitioned by hour, the other tables by day, the monthly table by month.
    let (column, format, range_start, unit) = match source {
        _ if monthly => (
            "partition_month",
            "'year='yyyy'/month='MM",
            format!("year={first_year}/month=01"),
            "MONTHS",
        ),
        SourceKind::Vpcflow => (
            "partition_hour",
            "'year='yyyy'/month='MM'/day='dd'/hour='HH",
            format!("year={first_year}/month=01/day=01/hour=00"),
            "HOURS",
        ),
        SourceKind::Cloudtrail | SourceKind::Dns => (
            "partition_day",
            "'year='yyyy'/month='MM'/day='dd",
            format!("year={first_year}/month=01/day=01"),
            "DAYS",
        ),
    };
    let dns = source == SourceKind::Dns;
    let p = |k: &str| format!("projection.{column}.{k}");
    let mut parameters: Vec<(String, String)> = [
        ("parquet.compression".to_owned(), "ZSTD".to_owned()),
        ("projection.enabled".into(), "true".into()),
        (p("type"), "date".into()),
        (p("format"), format.into()),
        (p("range"), format!("{range_start},NOW")),
        (p("interval"), "1".into()),
        (p("interval.unit"), unit.into()),
    ]
    .into();
    let mut partition_keys = vec![nt(column, "string")];
    let mut template = format!("${{location}}${{{column}}}/");
    if dns {
        partition_keys.push(nt("server", "string"));
        template.push_str("server=${server}/");
        match servers.is_empty() {
            true => parameters.push(("projection.server.type".into(), "injected".into())),
            false => {
                parameters.push(("projection.server.type".into(), "enum".into()));
                parameters.push(("projection.server.values".into(), servers.join(",")));
            }
        }
    }
    parameters.push(("storage.location.template".into(), template));
    TableSpec {
        comment: format!(
            "The Athena/Glue table over flowmerge's {source}{} output, as `flowmerge ddl --source {source}{} --format json` prints it (a test keeps this file equal to that output).",
            if monthly { " monthly" } else { "" },
            if monthly { " --monthly" } else { "" }
        ),
        name: name.into(),
        dataset: dataset.into(),
        columns,
        partition_keys,
        parameters,
    }
}

/// The partition keys of the output's Hive path (`year=2026/month=11/…`), for engines without
/// partition projection: the date's parts as numbers (the path's zero-padded `month=01` reads as
/// 1), DNS's capture server as text.
fn path_partition_keys(source: SourceKind, monthly: bool) -> Vec<NameType> {
    let parts: &[&str] = match source {
        _ if monthly => &["year", "month"],
        SourceKind::Vpcflow => &["year", "month", "day", "hour"],
        SourceKind::Cloudtrail | SourceKind::Dns => &["year", "month", "day"],
    };
    let mut keys: Vec<NameType> = parts.iter().map(|p| nt(p, "int")).collect();
    if source == SourceKind::Dns {
        keys.push(nt("server", "string"));
    }
    keys
}

/// A Hive DDL string literal: single-quoted, or double-quoted when the text holds a single quote
/// (the date formats quote their literal parts).
fn literal(text: &str) -> String {
    match text.contains('\'') {
        true => format!("\"{text}\""),
        false => format!("'{text}'"),
    }
}

pub fn render(args: &DdlArgs) -> Result<String> {
    if args.monthly && args.source != SourceArg::Cloudtrail {
        return Err(crate::usage(
            "--monthly is the CloudTrail monthly table: add --source cloudtrail",
        ));
    }
    let spec = spec(
        args.source.into(),
        args.first_year,
        &args.servers,
        args.monthly,
    );
    let hive = args.dialect == Dialect::Hive;
    if hive && args.format == DdlFormat::Json {
        return Err(crate::usage(
            "--format json is the Athena table the CDK app builds: leave out --dialect hive",
        ));
    }
    if hive && !args.servers.is_empty() {
        return Err(crate::usage(
            "--servers names the servers of Athena's projection: the Hive table's come from MSCK REPAIR TABLE",
        ));
    }
    if args.format == DdlFormat::Json {
        return Ok(serde_json::to_string_pretty(&spec)? + "\n");
    }
    let base = args.output.trim_end_matches('/');
    if !base.contains("://") {
        return Err(crate::usage(format!(
            "--output {base}: give the location the engine reads, e.g. s3://bucket/prefix (file:///path for a local folder)"
        )));
    }
    let location = format!("{base}/{}/", spec.dataset);
    let listed = |cols: &[NameType], indent: &str, sep: &str| {
        cols.iter()
            .map(|c| format!("{indent}`{}` {}", c.name, c.ty))
            .collect::<Vec<_>>()
            .join(sep)
    };
    let table = args.table.as_deref().unwrap_or(&spec.name);
    let cols = listed(&spec.columns, "  ", ",\n");
    let partition_keys = match hive {
        true => path_partition_keys(args.source.into(), args.monthly),
        false => spec.partition_keys,
    };
    let parts = listed(&partition_keys, "", ", ");
    let parameters = match hive {
        // Projection and the location template mean nothing outside Athena.
        true => spec
            .parameters
            .into_iter()
            .filter(|(k, _)| k == "parquet.compression")
            .collect(),
        false => spec.parameters,
    };
    let props = parameters
        .iter()
        .map(|(k, v)| {
            format!(
                "  '{k}' = {}",
                literal(&v.replace("${location}", &location))
            )
        })
        .collect::<Vec<_>>()
        .join(",\n");
    let mut ddl = format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS {table} (\n{cols}\n)\n\
PARTITIONED BY ({parts})\n\
STORED AS PARQUET\n\
LOCATION '{location}'\n\
TBLPROPERTIES (\n{props}\n);\n"
    );
    if hive {
        ddl.push_str(&format!(
            "\n-- Registers the partitions under the location: run it again after new ones appear.\n\
MSCK REPAIR TABLE {table};\n"
        ));
    }
    Ok(ddl)
}
