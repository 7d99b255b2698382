"""flowmerge rollup on a day of generated flow logs, against DuckDB doing the same rollup (read an
hour's batch files, GROUP BY key and window, ORDER BY, one zstd Parquet file) in the same run.

Prints: raw objects and bytes, files and bytes after compact and after the rollup, the file-count
reduction against the raw objects (goal >= 99.9%), storage against the raw gzip (goal >= 50%
smaller), rollup time per GB of compacted Parquet for both, and their ratio; and the same rollup
under a memory limit far below an hour's rows (merged in buckets): its time, ratio and peak."""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

from bench import KEYS, peak_rss_of, tree_bytes

DUCKDB_ROLLUP = r"""
import duckdb, glob, json, os, sys, time
table, out, keys = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute("SET enable_progress_bar = false")
keys_sql = ", ".join(keys)
started = time.perf_counter()
for hour in sorted(glob.glob(os.path.join(table, "year=*/month=*/day=*/hour=*"))):
    dest = os.path.join(out, os.path.relpath(hour, table))
    os.makedirs(dest, exist_ok=True)
    con.execute(f'''
    COPY (
      SELECT {keys_sql}, window_start,
             sum(packets) AS packets, sum(bytes) AS bytes, min(start) AS start, max("end") AS "end",
             sum(merged_records) AS merged_records
      FROM read_parquet('{hour}/*.parquet')
      GROUP BY ALL
      ORDER BY account_id, interface_id, srcaddr, dstaddr
    ) TO '{dest}/rollup.parquet' (FORMAT parquet, COMPRESSION zstd)
    ''')
print(time.perf_counter() - started)
"""


# The memory limit of the bounded rollup: an hour of the default day is about 6 MB of batch
# Parquet, estimated at several times more rows than the quarter of this limit a partition may
# take at once. At so small a limit much of the peak is fixed cost, the allocator's slack among it,
# which grows over the day's 24 partitions (docs/architecture.md, "Bounded rollups"): the row is
# there for the time and the same rows, not to show the limit held.
BOUNDED_LIMIT = "128MiB"


def count(path, pattern):
    return len(glob.glob(os.path.join(path, pattern), recursive=True))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flowmerge", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--accounts", type=int, default=8)
    ap.add_argument("--files-per-minute", type=int, default=3)
    ap.add_argument("--records-per-file", type=int, default=2000)
    a = ap.parse_args()
    fm = a.flowmerge
    os.makedirs(a.work, exist_ok=True)
    raw = os.path.join(a.work, "day-raw")
    shape = [str(a.accounts), str(a.hours * 60), str(a.files_per_minute), str(a.records_per_file)]
    marker = os.path.join(raw, ".shape")
    if not (os.path.exists(marker) and open(marker).read() == " ".join(shape)):
        shutil.rmtree(raw, ignore_errors=True)
        print(f"generating {a.accounts} accounts x {a.hours} h ...", flush=True)
        subprocess.run([fm, "gen", raw, "--accounts", shape[0], "--minutes", shape[1],
                        "--files-per-minute", shape[2], "--records-per-file", shape[3]],
                       check=True, capture_output=True)
        open(marker, "w").write(" ".join(shape))
    raw_objects = count(raw, "**/*.log.gz")
    raw_bytes = tree_bytes(raw, "**/*.log.gz")

    out = os.path.join(a.work, "day-out")
    shutil.rmtree(out, ignore_errors=True)
    secs, rss, _ = peak_rss_of([fm, "compact", raw, out])
    table = os.path.join(out, "vpcflowlogs")
    batch_files = count(table, "**/*.parquet")
    batch_bytes = tree_bytes(table, "**/*.parquet")
    print(f"compact: {raw_objects} objects -> {batch_files} files in {secs:.1f}s, peak {rss / 2**20:.0f} MiB",
          flush=True)

    # DuckDB rolls up a copy of the same batch files, before flowmerge deletes them.
    peer_in = os.path.join(a.work, "day-peer-in")
    peer_out = os.path.join(a.work, "day-peer-out")
    for d in (peer_in, peer_out):
        shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(table, peer_in)
    python = sys.executable
    _, duck_rss, stdout = peak_rss_of([python, "-c", DUCKDB_ROLLUP, peer_in, peer_out, json.dumps(KEYS)])
    duck_secs = float(stdout.decode().strip().splitlines()[-1])

    # The same rollup, of a copy, under a memory limit far below an hour's rows: every hour is
    # merged in buckets on local disk (one partition at a time, so the limit is all its own).
    bounded = os.path.join(a.work, "day-bounded")
    shutil.rmtree(bounded, ignore_errors=True)
    shutil.copytree(out, bounded)
    bounded_secs, bounded_rss, stdout = peak_rss_of(
        [fm, "rollup", bounded, "--min-age", "0s", "--json", "--concurrency", "1",
         "--memory-limit", BOUNDED_LIMIT])
    bounded_summary = json.loads(stdout)
    shutil.rmtree(bounded, ignore_errors=True)

    started = time.perf_counter()
    fm_secs, fm_rss, stdout = peak_rss_of([fm, "rollup", out, "--min-age", "0s", "--json"])
    summary = json.loads(stdout)
    rolled_files = count(table, "**/*.parquet")
    rolled_bytes = tree_bytes(table, "**/*.parquet")
    peer_bytes = tree_bytes(peer_out, "**/*.parquet")
    gb = batch_bytes / 1e9

    def row(name, files, size):
        print(f"  {name:<26} {files:>8} files {size / 2**20:>10.1f} MiB")

    print(f"\nA day of flow logs ({a.accounts} accounts x {a.hours} h, "
          f"{a.files_per_minute} objects per account and minute, {a.records_per_file} records each)")
    row("raw gzip objects", raw_objects, raw_bytes)
    row("after compact", batch_files, batch_bytes)
    row("after rollup", rolled_files, rolled_bytes)
    row("DuckDB's rollup", count(peer_out, "**/*.parquet"), peer_bytes)
    print(f"  file count vs raw objects: {100 * (1 - rolled_files / raw_objects):.3f}% fewer (goal >= 99.9%)")
    print(f"  storage vs raw gzip:       {100 * (1 - rolled_bytes / raw_bytes):.1f}% smaller (goal >= 50%)")
    print(f"  rollup: flowmerge {fm_secs:.2f}s ({fm_secs / gb:.2f} s/GB, peak {fm_rss / 2**20:.0f} MiB), "
          f"DuckDB {duck_secs:.2f}s ({duck_secs / gb:.2f} s/GB, peak {duck_rss / 2**20:.0f} MiB); "
          f"flowmerge/DuckDB speed ratio {duck_secs / fm_secs:.2f}x")
    print(f"  under --memory-limit {BOUNDED_LIMIT}: flowmerge {bounded_secs:.2f}s, peak "
          f"{bounded_rss / 2**20:.0f} MiB, {bounded_summary['partitions_in_buckets']} of "
          f"{bounded_summary['partitions_rolled']} hours merged in buckets; "
          f"flowmerge/DuckDB speed ratio {duck_secs / bounded_secs:.2f}x")
    print(f"  longest time a partition held both its rollup and the files it replaced: "
          f"{summary['max_exposed_ms']} ms; rows {summary['rows_in']} -> {summary['rows_out']}")
    if rolled_files != len(glob.glob(os.path.join(table, "year=*/month=*/day=*/hour=*"))):
        sys.exit("not one file per partition")
    if (bounded_summary["rows_in"], bounded_summary["rows_out"]) != (summary["rows_in"], summary["rows_out"]):
        sys.exit(f"the bounded rollup's rows differ: {bounded_summary}")


if __name__ == "__main__":
    main()
