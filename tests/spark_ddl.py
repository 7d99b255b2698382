"""Spark reads flowmerge's output through the tables `flowmerge ddl` prints.

Run by tests/cli.rs (`spark_reads_every_table_through_flowmerge_ddl`), which checks what this
prints against the Parquet files themselves. For each table this creates it twice in Spark's own
Hive metastore (Derby, in a temporary folder):

- `--dialect hive`: the statements as printed, `MSCK REPAIR TABLE` included;
- the Athena DDL (the default): Spark ignores partition projection, so each partition folder is
  added by hand with the value the projection would give it — what a Spark user of the Athena
  table does.

and prints, as one JSON object per table and dialect: the row count, every column's non-null
count, a full scan's row count (every value decoded into Spark's types), and for the Hive table
the rows per partition as its partition columns read.

Usage: spark_ddl.py FLOWMERGE_BIN TABLE_SPEC...
  where TABLE_SPEC is `name:source:prefix[:monthly]` (prefix: the local folder `ddl --output`
  names, as file://prefix). The last line printed is the JSON report.
"""

import glob
import json
import os
import re
import subprocess
import sys
import tempfile

from pyspark.sql import SparkSession


def ddl(flowmerge, prefix, source, monthly, table, dialect):
    args = [flowmerge, "ddl", "--output", f"file://{prefix}", "--source", source]
    args += ["--table", table, "--dialect", dialect]
    if monthly:
        args.append("--monthly")
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def statements(text):
    """The statements of a DDL text, comment lines left out."""
    code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("--"))
    return [s.strip() for s in code.split(";\n") if s.strip().rstrip(";")]


def partition_columns(text):
    keys = re.search(r"PARTITIONED BY \((.*)\)", text).group(1)
    return [k.split("`")[1] for k in keys.split(",")]


def counts(spark, table, partition_keys, by_partition):
    columns = [f.name for f in spark.table(table).schema.fields if f.name not in partition_keys]
    row = spark.sql(
        "SELECT count(*), " + ", ".join(f"count(`{c}`)" for c in columns) + f" FROM {table}"
    ).collect()[0]
    result = {
        "rows": row[0],
        "non_null": dict(zip(columns, row[1:])),
        "scanned": len(spark.sql(f"SELECT * FROM {table}").collect()),
    }
    if by_partition:
        keys = ", ".join(f"`{c}`" for c in partition_keys)
        result["partitions"] = {
            "/".join(str(v) for v in r[:-1]): r[-1]
            for r in spark.sql(f"SELECT {keys}, count(*) FROM {table} GROUP BY {keys}").collect()
        }
    return result


def main():
    flowmerge, specs = sys.argv[1], sys.argv[2:]
    with tempfile.TemporaryDirectory(prefix="flowmerge-spark-") as meta:
        report = read_tables(flowmerge, specs, meta)
    print(json.dumps(report, sort_keys=True))


def read_tables(flowmerge, specs, meta):
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("flowmerge-ddl")
        .config("spark.sql.warehouse.dir", os.path.join(meta, "warehouse"))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={meta}")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .enableHiveSupport()
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    report = {}
    for spec in specs:
        name, source, prefix, *rest = spec.split(":")
        monthly = rest == ["monthly"]

        hive = f"hive_{name}"
        text = ddl(flowmerge, prefix, source, monthly, hive, "hive")
        for statement in statements(text):
            spark.sql(statement)
        report[f"{name}/hive"] = counts(spark, hive, partition_columns(text), True)

        athena = f"athena_{name}"
        text = ddl(flowmerge, prefix, source, monthly, athena, "athena")
        for statement in statements(text):
            spark.sql(statement)
        location = re.search(r"LOCATION 'file://(.*)'", text).group(1)
        folders = sorted(
            {os.path.dirname(p) for p in glob.glob(f"{location}**/*.parquet", recursive=True)}
        )
        for folder in folders:
            path = folder[len(location):]
            if source == "dns":
                day, server = path.rsplit("/server=", 1)
                values = f"partition_day = '{day}', server = '{server}'"
            else:
                values = f"{partition_columns(text)[0]} = '{path}'"
            spark.sql(f"ALTER TABLE {athena} ADD PARTITION ({values}) LOCATION 'file://{folder}'")
        report[f"{name}/athena"] = counts(spark, athena, partition_columns(text), False)
    spark.stop()
    return report


if __name__ == "__main__":
    main()
