"""flowmerge compact vs DuckDB (read_csv with an explicit schema, GROUP BY, ORDER BY, zstd Parquet)
on the same generated files, in the same run. Prints records/s of both and their ratio, peak RSS,
output bytes, and the rate of plain gzip decoding of the same files (zcat, one core)."""

import argparse
import glob
import gzip
import json
import os
import shutil
import subprocess
import sys
import time

V2 = {
    "version": "INTEGER", "account_id": "VARCHAR", "interface_id": "VARCHAR", "srcaddr": "VARCHAR",
    "dstaddr": "VARCHAR", "srcport": "INTEGER", "dstport": "INTEGER", "protocol": "INTEGER",
    "packets": "BIGINT", "bytes": "BIGINT", "start": "BIGINT", "end": "BIGINT",
    "action": "VARCHAR", "log_status": "VARCHAR",
}
RUNS = 3
KEYS = ["version", "account_id", "interface_id", "srcaddr", "dstaddr", "srcport", "dstport",
        "protocol", "action", "log_status"]

DUCKDB_SCRIPT = r"""
import duckdb, sys, json, time
raw, out, columns, keys = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute("SET enable_progress_bar = false")
cols = ", ".join(f"'{k}': '{v}'" for k, v in columns.items())
keys_sql = ", ".join(keys)
started = time.perf_counter()
con.execute(f'''
COPY (
  SELECT {keys_sql}, win,
         sum(packets) AS packets, sum(bytes) AS bytes, min(start) AS start, max("end") AS "end",
         count(*) AS merged_records
  FROM (
    SELECT *, time_bucket(INTERVAL 5 MINUTE,
             strptime(regexp_extract(filename, '_(\d{{8}}T\d{{4}})Z_', 1), '%Y%m%dT%H%M')) AS win
    FROM read_csv('{raw}/**/*.log.gz', delim = ' ', header = true, auto_detect = false,
                  columns = {{{cols}}}, nullstr = '-', compression = 'gzip', filename = true)
  )
  GROUP BY ALL
  ORDER BY account_id, interface_id, srcaddr, dstaddr
) TO '{out}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (win))
''')
print(time.perf_counter() - started)
"""


def peak_rss_of(cmd):
    """Runs cmd under /usr/bin/time -f %M (KiB); returns (seconds, peak RSS bytes, stdout)."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 3):
        sys.exit(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    rss_kib = int(proc.stderr.decode().strip().splitlines()[-1])
    return elapsed, rss_kib * 1024, proc.stdout


def tree_bytes(path, pattern):
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(path, pattern), recursive=True))


def generate(fm, raw, accounts, minutes, files, records):
    shutil.rmtree(raw, ignore_errors=True)
    subprocess.run([fm, "gen", raw, "--accounts", str(accounts), "--minutes", str(minutes),
                    "--files-per-minute", str(files), "--records-per-file", str(records)],
                   check=True, capture_output=True)


def generate_distinct(raw, files, records):
    """The worst case for a merge: one window, every record a flow of its own (nothing merges)."""
    shutil.rmtree(raw, ignore_errors=True)
    acct = "111122223333"
    folder = os.path.join(raw, f"AWSLogs/{acct}/vpcflowlogs/us-east-1/2026/11/01")
    os.makedirs(folder)
    header = " ".join(k.replace("_", "-") for k in V2) + "\n"
    n = 0
    for f in range(files):
        lines = [header]
        for r in range(records):
            n += 1
            lines.append(f"2 {acct} eni-{f:017x} 10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255} "
                         f"172.16.{r % 256}.{f % 256} {1024 + r} 443 6 {r % 97 + 1} {r * 13 + 40} "
                         f"1793491397 1793491423 ACCEPT OK\n")
        name = f"{acct}_vpcflowlogs_us-east-1_fl-0123456789abcdef0_20261101T0003Z_{f:08x}.log.gz"
        with gzip.open(os.path.join(folder, name), "wt", compresslevel=6) as out:
            out.write("".join(lines))


def compare(fm, work, name, shape, files=None, records=None):
    raw = os.path.join(work, name, "raw")
    if shape == "distinct":
        generate_distinct(raw, files, records)
    else:
        generate(fm, raw, *shape)
        records = shape[3]
    n_files = len(glob.glob(f"{raw}/**/*.log.gz", recursive=True))
    n_records = n_files * records

    # Plain gzip decoding of the same files, one core: the floor of any reader.
    listing = glob.glob(f"{raw}/**/*.log.gz", recursive=True)
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", 'xargs -0 zcat > /dev/null'], input="\0".join(listing).encode(), check=True)
    zcat_s = time.perf_counter() - t0

    # One warm-up run each, then the best of RUNS: the VM's first run after idling is slow.
    out = os.path.join(work, name, "flowmerge")
    best = None
    for _ in range(RUNS + 1):
        shutil.rmtree(out, ignore_errors=True)
        run = peak_rss_of([fm, "compact", raw, out, "--json"])
        best = run if best is None or run[0] < best[0] else best
    fm_s, fm_rss, fm_stdout = best
    summary = json.loads(fm_stdout)
    assert summary["batches_failed"] == 0, summary["failures"]
    assert summary["records_in"] == n_records, summary
    fm_bytes = tree_bytes(out, "vpcflowlogs/**/*.parquet")

    # DuckDB writes one file per window, like flowmerge; its time is the query's own, without
    # the interpreter's start-up.
    duck_out = os.path.join(work, name, "duckdb")
    duck_s, duck_rss = None, 0
    for _ in range(RUNS + 1):
        shutil.rmtree(duck_out, ignore_errors=True)
        _, rss, stdout = peak_rss_of([sys.executable, "-c", DUCKDB_SCRIPT, raw, duck_out,
                                      json.dumps(V2), json.dumps(KEYS)])
        t = float(stdout.decode().split()[-1])
        if duck_s is None or t < duck_s:
            duck_s, duck_rss = t, rss
    duck_bytes = tree_bytes(duck_out, "**/*.parquet")

    import duckdb
    duck_rows = duckdb.connect().execute(
        f"SELECT count(*) FROM read_parquet('{duck_out}/**/*.parquet')").fetchall()[0][0]
    fm_rows = summary["rows_out"]
    assert duck_rows == fm_rows, f"row counts differ: duckdb {duck_rows}, flowmerge {fm_rows}"

    r = {
        "set": name, "files": n_files, "records": n_records, "rows_out": fm_rows,
        "flowmerge_seconds": round(fm_s, 3), "duckdb_seconds": round(duck_s, 3),
        "flowmerge_records_per_s": round(n_records / fm_s), "duckdb_records_per_s": round(n_records / duck_s),
        "speed_ratio": round(duck_s / fm_s, 2),
        "zcat_records_per_s": round(n_records / zcat_s),
        "flowmerge_vs_zcat": round(zcat_s / fm_s, 2),
        "flowmerge_peak_rss_mib": round(fm_rss / 2**20, 1), "duckdb_peak_rss_mib": round(duck_rss / 2**20, 1),
        "flowmerge_output_bytes": fm_bytes, "duckdb_output_bytes": duck_bytes,
        "output_ratio": round(fm_bytes / duck_bytes, 3),
    }
    print(f"\n== {name}: {n_files} files, {n_records:,} records → {fm_rows:,} rows")
    print(f"  flowmerge  {r['flowmerge_records_per_s']:>12,} records/s  {fm_s:7.2f} s  peak RSS {r['flowmerge_peak_rss_mib']:7.1f} MiB  output {fm_bytes:>11,} B")
    print(f"  duckdb     {r['duckdb_records_per_s']:>12,} records/s  {duck_s:7.2f} s  peak RSS {r['duckdb_peak_rss_mib']:7.1f} MiB  output {duck_bytes:>11,} B")
    print(f"  zcat       {r['zcat_records_per_s']:>12,} records/s  {zcat_s:7.2f} s  (plain gzip decoding, one core)")
    print(f"  ratios: speed {r['speed_ratio']}× DuckDB, {r['flowmerge_vs_zcat']}× zcat; output {r['output_ratio']}× DuckDB's bytes")
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flowmerge", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB")
    if a.quick:
        sets = [("quick", (2, 5, 2, 200)), ("quick-distinct", "distinct", 20, 100)]
    else:
        # accounts, minutes, objects per account and minute, records per object
        sets = [("720-files", (8, 30, 3, 2000)), ("1000-file-batch", (8, 5, 25, 3000)),
                ("1000-file-batch-distinct", "distinct", 1000, 3000)]
    results = [compare(a.flowmerge, a.work, *s) for s in sets]
    with open(os.path.join(a.work, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nresults: {os.path.join(a.work, 'results.json')}")


if __name__ == "__main__":
    main()
