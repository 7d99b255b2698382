"""flowmerge compact vs DuckDB (read_csv with an explicit schema, GROUP BY, ORDER BY, zstd Parquet;
for real-like and no-merge traffic also without ORDER BY) on the same generated files, in the same
run, the two run alternately. Prints records/s of both,
the median of the per-pair speed ratios, peak RSS, flowmerge's user and system CPU time, output
bytes, and the rate of plain gzip decoding of the same files (zcat on every core, and on one)."""

import argparse
import statistics
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
# Measured runs of each tool per set, after one warm-up (BENCH_RUNS; more pairs settle a ratio
# near a target's line, at the cost of time).
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
if RUNS < 1:
    sys.exit(f"BENCH_RUNS={RUNS}: at least one run is needed")
ORDER_BY = "  ORDER BY account_id, interface_id, srcaddr, dstaddr\n"
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
# The same query without ORDER BY: less work than flowmerge's sorted files, but what a user who
# only wants the rows might run, so the benchmark reports that ratio too (the harder one).
DUCKDB_UNSORTED_SCRIPT = DUCKDB_SCRIPT.replace(ORDER_BY, "")
assert DUCKDB_UNSORTED_SCRIPT != DUCKDB_SCRIPT and ORDER_BY in DUCKDB_SCRIPT


def measured(cmd, want_code=(0,)):
    """Runs cmd under /usr/bin/time; returns (seconds, peak RSS bytes, stdout, user CPU seconds,
    system CPU seconds)."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M %U %S"] + cmd, capture_output=True)
    elapsed = time.perf_counter() - start
    if proc.returncode not in want_code:
        sys.exit(f"{' '.join(cmd[:3])} exited {proc.returncode}, not {want_code}: {proc.stderr.decode()[-2000:]}")
    rss_kib, user, system = proc.stderr.decode().strip().splitlines()[-1].split()
    return elapsed, int(rss_kib) * 1024, proc.stdout, float(user), float(system)


def peak_rss_of(cmd, want_code=(0,)):
    """Runs cmd under /usr/bin/time; returns (seconds, peak RSS bytes, stdout)."""
    return measured(cmd, want_code)[:3]


def tree_bytes(path, pattern):
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(path, pattern), recursive=True))


def generate(fm, raw, accounts, minutes, files, records, profile="repeat"):
    shutil.rmtree(raw, ignore_errors=True)
    subprocess.run([fm, "gen", raw, "--accounts", str(accounts), "--minutes", str(minutes),
                    "--files-per-minute", str(files), "--records-per-file", str(records),
                    "--profile", profile],
                   check=True, capture_output=True)


def add_hostile(raw):
    """Beside the good objects of a window: a bit-flipped copy of one, a 100 MiB line and a gzip
    bomb (2 GiB of zeros in 2 MiB). Returns how many objects were added."""
    good = sorted(glob.glob(f"{raw}/**/*.log.gz", recursive=True))
    folder = os.path.dirname(good[0])
    name = lambda tag: os.path.join(
        folder, f"123456789012_vpcflowlogs_us-east-1_fl-bad_20261101T0001Z_{tag}.log.gz")
    body = bytearray(open(good[0], "rb").read())
    body[len(body) // 2] ^= 0x10
    open(name("flipped"), "wb").write(bytes(body))
    with gzip.open(name("long-line"), "wb", compresslevel=6) as out:
        out.write(b"version account-id interface-id srcaddr dstaddr srcport dstport protocol "
                  b"packets bytes start end action log-status\n")
        chunk = b"2 123456789012 eni-1 10.0.0.1 " * 32768
        for _ in range((100 << 20) // len(chunk)):
            out.write(chunk)
    with gzip.open(name("bomb"), "wb", compresslevel=9) as out:
        zeros = bytes(1 << 20)
        for _ in range(2048):
            out.write(zeros)
    return 3


def one_address_pair(raw, objects=200, records=10_000):
    """One window of one interface and one pair of addresses, each record its own pair of ports
    (2M keys): every key falls in the same first-level hash part, which reads the four string
    columns only, so the memory bound rests on the parts below it."""
    shutil.rmtree(raw, ignore_errors=True)
    folder = f"{raw}/AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/11/01"
    os.makedirs(folder)
    head = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets "
            "bytes start end action log-status\n")
    for o in range(objects):
        lines = [head]
        for r in range(records):
            high, low = divmod(o * records + r, 65536)
            lines.append(f"2 123456789012 eni-0a1b2c3d4e5f60718 10.0.0.5 52.216.1.9 {low} "
                         f"{443 + high} 6 10 4000 1793491386 1793491410 ACCEPT OK\n")
        name = f"123456789012_vpcflowlogs_us-east-1_fl-0abc_20261101T000{o % 5}Z_{o:08x}.log.gz"
        with gzip.open(os.path.join(folder, name), "wt", compresslevel=6) as out:
            out.write("".join(lines))


def cloudtrail_window(fm, work, name, objects, events, limit):
    """One 5-minute window of CloudTrail objects (an organisation trail's delivery: many accounts'
    files at once), `events` events of about 2.5 KB each per object, compacted by flowmerge alone
    under `--memory-limit limit`: its peak RSS, and every event once (rows out = events in, one
    row per eventID)."""
    raw = os.path.join(work, name, "raw")
    out = os.path.join(work, name, "flowmerge")
    shutil.rmtree(raw, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    params = json.dumps({"bucketName": "logs", "key": "AWSLogs/" + "x" * 900,
                         "tags": [{"k": f"t{i}", "v": "v" * 40} for i in range(12)]})
    for o in range(objects):
        account = f"{111100000000 + o % 40}"
        folder = f"{raw}/AWSLogs/{account}/CloudTrail/us-east-1/2026/11/01"
        os.makedirs(folder, exist_ok=True)
        records = ",".join(
            f'{{"eventVersion":"1.09","userIdentity":{{"type":"AssumedRole","arn":"arn:aws:sts::{account}:'
            f'assumed-role/r{e % 7}/s{e}","accountId":"{account}","principalId":"AROA{e:016d}"}},'
            f'"eventTime":"2026-11-01T00:0{e % 5}:{e % 60:02d}Z","eventSource":"s3.amazonaws.com",'
            f'"eventName":"{("GetObject", "PutObject", "ListBucket")[e % 3]}","awsRegion":"us-east-1",'
            f'"sourceIPAddress":"10.{o % 256}.{e // 256 % 256}.{e % 256}","userAgent":"aws-sdk-go/1.{e % 50}",'
            f'"requestParameters":{params},"responseElements":null,"requestID":"R{o:06d}{e:08d}",'
            f'"eventID":"{o:08x}-{e:04x}-4000-8000-{o * events + e:012x}","readOnly":{str(e % 3 != 1).lower()},'
            f'"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"{account}",'
            f'"eventCategory":"Data","tlsDetails":{{"tlsVersion":"TLSv1.3","clientProvidedHostHeader":"logs.s3.amazonaws.com"}}}}'
            for e in range(events))
        path = f"{folder}/{account}_CloudTrail_us-east-1_20261101T000{o % 5}Z_{o:08x}.json.gz"
        with gzip.open(path, "wt", compresslevel=6) as f:
            f.write('{"Records":[' + records + "]}")
    seconds, rss, stdout = peak_rss_of([fm, "compact", "--json", "--memory-limit", limit, raw, out])
    summary = json.loads(stdout)
    n = objects * events
    assert summary["batches_failed"] == 0, summary["failures"]
    assert summary["records_in"] == n and summary["rows_out"] == n, summary
    r = {"set": name, "files": objects, "records": n, "rows_out": summary["rows_out"],
         "flowmerge_args": ["--memory-limit", limit], "flowmerge_seconds": round(seconds, 3),
         "flowmerge_peak_rss_mib": round(rss / 2**20, 1),
         "decoded_mib": round(summary["decoded_bytes"] / 2**20, 1),
         "flowmerge_output_bytes": tree_bytes(out, "cloudtrail/**/*.parquet")}
    print(f"\n== {name}: {objects} CloudTrail objects of one window, {n:,} events, "
          f"{r['decoded_mib']:,} MiB of JSON  [--memory-limit {limit}]")
    print(f"  flowmerge  {seconds:7.2f} s  peak RSS {r['flowmerge_peak_rss_mib']:7.1f} MiB  "
          f"output {r['flowmerge_output_bytes']:>11,} B; every event once")
    return r


def run_duckdb(script, raw, out):
    """One DuckDB run of `script` into `out`: (the query's seconds, peak RSS bytes)."""
    shutil.rmtree(out, ignore_errors=True)
    _, rss, stdout = peak_rss_of([sys.executable, "-c", script, raw, out,
                                  json.dumps(V2), json.dumps(KEYS)])
    return float(stdout.decode().split()[-1]), rss


def compare(fm, work, name, shape, fm_args=(), hostile=False, duckdb=True, unsorted=False,
            make=None):
    """flowmerge against DuckDB (and parallel gunzip) on a set of `shape` written into a fresh
    raw folder by `make(raw)` — `flowmerge gen` unless another generator is given."""
    raw = os.path.join(work, name, "raw")
    if make is None:
        generate(fm, raw, *shape)
    else:
        shutil.rmtree(raw, ignore_errors=True)
        make(raw)
    records = shape[3]
    listing = sorted(glob.glob(f"{raw}/**/*.log.gz", recursive=True))
    n_files = len(listing)
    n_records = n_files * records
    bad = add_hostile(raw) if hostile else 0

    # Plain gzip decoding of the same files: the floor of any reader, on every core and on one.
    def gunzip_seconds(procs):
        t0 = time.perf_counter()
        subprocess.run(["bash", "-c", f"xargs -0 -n 32 -P {procs} zcat > /dev/null"],
                       input="\0".join(listing).encode(), check=True)
        return time.perf_counter() - t0

    gunzip_one_core = gunzip_seconds(1)

    # One warm-up run each, then RUNS runs of each, alternating (the VM's speed drifts): parallel
    # gunzip too, so that its ratio is a median of pairs timed together, as DuckDB's is.
    out = os.path.join(work, name, "flowmerge")
    duck_out = os.path.join(work, name, "duckdb")
    unsorted_out = os.path.join(work, name, "duckdb-unsorted")
    fm_runs, duck_runs, unsorted_runs, gunzip_runs = [], [], [], []
    for i in range(RUNS + 1):
        unzipped = gunzip_seconds(os.cpu_count())
        shutil.rmtree(out, ignore_errors=True)
        run = measured([fm, "compact", raw, out, "--json", *fm_args],
                       want_code=(3,) if hostile else (0,))
        duck = run_duckdb(DUCKDB_SCRIPT, raw, duck_out) if duckdb else None
        loose = run_duckdb(DUCKDB_UNSORTED_SCRIPT, raw, unsorted_out) if unsorted else None
        if i > 0:
            fm_runs.append(run)
            gunzip_runs.append(unzipped)
            if duckdb:
                duck_runs.append(duck)
            if unsorted:
                unsorted_runs.append(loose)
    fm_s = statistics.median(r[0] for r in fm_runs)
    fm_rss = max(r[1] for r in fm_runs)
    summary = json.loads(fm_runs[-1][2])
    assert summary["batches_failed"] == 0, summary["failures"]
    assert summary["records_in"] == n_records, summary
    assert summary["objects_quarantined"] == bad, summary["quarantined"]
    fm_bytes = tree_bytes(out, "vpcflowlogs/**/*.parquet")
    fm_rows = summary["rows_out"]

    gunzip_s = statistics.median(gunzip_runs)
    gunzip_ratios = [g / f[0] for g, f in zip(gunzip_runs, fm_runs)]
    r = {
        "set": name, "files": n_files, "records": n_records, "rows_out": fm_rows,
        "flowmerge_args": list(fm_args), "quarantined": bad,
        "flowmerge_seconds": round(fm_s, 3),
        "flowmerge_records_per_s": round(n_records / fm_s),
        "gunzip_all_cores_records_per_s": round(n_records / gunzip_s),
        "gunzip_one_core_records_per_s": round(n_records / gunzip_one_core),
        "flowmerge_vs_parallel_gunzip": round(statistics.median(gunzip_ratios), 2),
        "flowmerge_vs_parallel_gunzip_pairs": [round(x, 2) for x in gunzip_ratios],
        "flowmerge_peak_rss_mib": round(fm_rss / 2**20, 1),
        # System time is mostly the kernel faulting in fresh pages; on a VM it swings widely
        # from run to run (docs/architecture.md, "Allocator").
        "flowmerge_user_cpu_s": round(statistics.median(x[3] for x in fm_runs), 2),
        "flowmerge_system_cpu_s": round(statistics.median(x[4] for x in fm_runs), 2),
        "flowmerge_output_bytes": fm_bytes,
    }
    print(f"\n== {name}: {n_files} files, {n_records:,} records → {fm_rows:,} rows"
          + (f", {bad} hostile objects" if bad else "") + (f"  [{' '.join(fm_args)}]" if fm_args else ""))
    print(f"  flowmerge  {r['flowmerge_records_per_s']:>12,} records/s  {fm_s:7.2f} s  peak RSS {r['flowmerge_peak_rss_mib']:7.1f} MiB  output {fm_bytes:>11,} B"
          f"  (CPU {r['flowmerge_user_cpu_s']} s user, {r['flowmerge_system_cpu_s']} s system)")
    if duckdb:
        # DuckDB writes one file per window, like flowmerge; its time is the query's own,
        # without the interpreter's start-up.
        duck_s = statistics.median(d[0] for d in duck_runs)
        duck_rss = max(d[1] for d in duck_runs)
        ratios = [d[0] / f[0] for d, f in zip(duck_runs, fm_runs)]
        duck_bytes = tree_bytes(duck_out, "**/*.parquet")
        import duckdb as ddb
        duck_rows = ddb.connect().execute(
            f"SELECT count(*) FROM read_parquet('{duck_out}/**/*.parquet')").fetchall()[0][0]
        assert duck_rows == fm_rows, f"row counts differ: duckdb {duck_rows}, flowmerge {fm_rows}"
        r.update({
            "duckdb_seconds": round(duck_s, 3), "duckdb_records_per_s": round(n_records / duck_s),
            "speed_ratio_median": round(statistics.median(ratios), 2),
            "speed_ratios": [round(x, 2) for x in ratios],
            "duckdb_peak_rss_mib": round(duck_rss / 2**20, 1),
            "duckdb_output_bytes": duck_bytes, "output_ratio": round(fm_bytes / duck_bytes, 3),
        })
        print(f"  duckdb     {r['duckdb_records_per_s']:>12,} records/s  {duck_s:7.2f} s  peak RSS {r['duckdb_peak_rss_mib']:7.1f} MiB  output {duck_bytes:>11,} B")
    if unsorted:
        loose_s = statistics.median(d[0] for d in unsorted_runs)
        loose_ratios = [d[0] / f[0] for d, f in zip(unsorted_runs, fm_runs)]
        r.update({
            "duckdb_unsorted_seconds": round(loose_s, 3),
            "speed_ratio_unsorted_median": round(statistics.median(loose_ratios), 2),
            "speed_ratios_unsorted": [round(x, 2) for x in loose_ratios],
            "duckdb_unsorted_peak_rss_mib": round(max(d[1] for d in unsorted_runs) / 2**20, 1),
        })
        print(f"  duckdb     {round(n_records / loose_s):>12,} records/s  {loose_s:7.2f} s  peak RSS {r['duckdb_unsorted_peak_rss_mib']:7.1f} MiB  (no ORDER BY: unsorted files)")
    print(f"  gunzip     {r['gunzip_all_cores_records_per_s']:>12,} records/s on {os.cpu_count()} cores, {r['gunzip_one_core_records_per_s']:,} on one")
    line = (f"  ratios: {r['flowmerge_vs_parallel_gunzip']}× parallel gunzip "
            f"(median of {r['flowmerge_vs_parallel_gunzip_pairs']})")
    if duckdb:
        line += (f"; speed {r['speed_ratio_median']}× DuckDB (median of {r['speed_ratios']}); "
                 f"output {r['output_ratio']}× DuckDB's bytes")
    if unsorted:
        line += (f"; {r['speed_ratio_unsorted_median']}× DuckDB without ORDER BY "
                 f"(median of {r['speed_ratios_unsorted']})")
    print(line)
    return r


def arguments():
    """The benchmark scripts' arguments: the flowmerge binary, a work folder, --quick."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--flowmerge", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--quick", action="store_true")
    return ap.parse_args()


def main():
    a = arguments()
    os.makedirs(a.work, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB")
    tight = dict(fm_args=("--memory-limit", "768MiB"))
    # DuckDB stops at the first bad object: flowmerge alone on the hostile sets.
    hostile = dict(tight, hostile=True, duckdb=False)
    # Real-like and no-merge traffic are also compared with DuckDB without ORDER BY.
    both = dict(unsorted=True)
    # name, (accounts, minutes, objects per account and minute, records per object, profile),
    # options of `compare`
    if a.quick:
        sets = [("quick-repeat", (2, 5, 2, 200, "repeat"), {}),
                ("quick-real", (2, 5, 2, 200, "real"), both),
                ("quick-unique", (2, 5, 2, 200, "unique"), both),
                ("quick-spill", (2, 5, 2, 2000, "unique"), dict(fm_args=("--memory-limit", "4MiB"))),
                ("quick-one-pair", (1, 5, 4, 2000, None),
                 dict(fm_args=("--memory-limit", "4MiB"),
                      make=lambda raw: one_address_pair(raw, objects=4, records=2000))),
                ("quick-hostile", (2, 5, 2, 200, "real"), hostile)]
    else:
        sets = [("720-files-repeat", (8, 30, 3, 2000, "repeat"), {}),
                ("720-files-real", (8, 30, 3, 2000, "real"), both),
                ("720-files-unique", (8, 30, 3, 2000, "unique"), both),
                ("1000-file-batch", (8, 5, 25, 3000, "repeat"), {}),
                # One window of 400 objects × 10,000 distinct flows: 4M keys in one batch.
                ("4M-keys-one-batch", (8, 5, 10, 10000, "unique"), tight),
                # 2M keys of one interface and address pair, under a third of that limit.
                ("one-address-pair", (1, 5, 40, 10000, None),
                 dict(fm_args=("--memory-limit", "256MiB"), make=one_address_pair)),
                ("hostile", (8, 5, 3, 2000, "real"), hostile)]
    results = [compare(a.flowmerge, a.work, name, shape, **options) for name, shape, options in sets]
    # A CloudTrail batch larger than its memory share (DuckDB has no such limit to compare with).
    results.append(cloudtrail_window(a.flowmerge, a.work, "quick-cloudtrail", 8, 200, "16MiB")
                   if a.quick else
                   cloudtrail_window(a.flowmerge, a.work, "cloudtrail-window", 200, 1000, "768MiB"))
    with open(os.path.join(a.work, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nresults: {os.path.join(a.work, 'results.json')}")


if __name__ == "__main__":
    main()
