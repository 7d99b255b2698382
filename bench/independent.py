"""The performance issue's checks on traffic flowmerge did not generate itself.

`flowmerge gen` and the code under test share their author, and so their idea of what traffic looks
like. This generator is independent of it: AWS object names, a v2 header, per account 60 ENIs with
random ids, random private sources and public destinations (5% IPv6), ephemeral source ports, a
share of records that repeat an earlier key of the same 5-minute window (`--merge`), and a few
NODATA records. On it, in one run:

- 720 objects / 1.44M records with ~20% of records merging and with none: flowmerge against DuckDB
  (with and without ORDER BY), alternating, the median ratio of wall times and the peak RSS, and
  the rate of parallel gunzip of the same files (bench.compare, as for `flowmerge gen`'s sets);
- one batch of 400 objects x 10,000 distinct flows (4M keys) under --memory-limit 768MiB: peak
  RSS, and conservation checked by an oracle (DuckDB's GROUP BY over the raw text, compared row for
  row with flowmerge's output, both ways);
- one window of good objects beside 150 bit-flipped copies, a 100 MiB line and a gzip bomb under
  the same limit: exit 3, every bad object quarantined, every good record once (the same oracle).

Usage: bench/independent.py --flowmerge BIN --work DIR [--quick]   (bench/run.sh runs it)
"""

import glob
import gzip
import json
import os
import random
import shutil
import subprocess
import sys

import bench

HEADER = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes "
          "start end action log-status\n")
# 2026-11-01T00:00Z
BASE = 1793491200


def generate(out, accounts, minutes, files, records, merge, seed, enis=60):
    """Objects of `records` records, `files` per account and minute; a share `merge` of records
    repeats a key seen earlier in the same 5-minute window."""
    rnd = random.Random(seed)
    for acc in range(accounts):
        account = f"{210000000000 + acc * 7919:012d}"
        interfaces = [f"eni-{rnd.getrandbits(68):017x}" for _ in range(enis)]
        window_keys = {}
        for m in range(minutes):
            t = BASE + m * 60
            keys = window_keys.setdefault(t - t % 300, [])
            for _ in range(files):
                lines = [HEADER]
                for _ in range(records):
                    if keys and rnd.random() < merge:
                        key = rnd.choice(keys)
                    else:
                        key = new_key(rnd, interfaces)
                        keys.append(key)
                    eni, src, dst, sport, dport, proto, action = key
                    if rnd.random() < 0.002:
                        lines.append(f"2 {account} {eni} - - - - - - - {t} {t + 59} - NODATA\n")
                        continue
                    packets = rnd.randrange(1, 5000)
                    start = t + rnd.randrange(0, 50)
                    lines.append(f"2 {account} {eni} {src} {dst} {sport} {dport} {proto} {packets} "
                                 f"{packets * rnd.randrange(40, 1500)} {start} "
                                 f"{start + rnd.randrange(1, 10)} {action} OK\n")
                folder = os.path.join(out, "AWSLogs", account, "vpcflowlogs", "us-east-1", "2026",
                                      "11", "01")
                os.makedirs(folder, exist_ok=True)
                name = (f"{account}_vpcflowlogs_us-east-1_fl-0abc{acc:02d}_20261101T00{m:02d}Z_"
                        f"{rnd.getrandbits(32):08x}.log.gz")
                with gzip.open(os.path.join(folder, name), "wb", compresslevel=6) as f:
                    f.write("".join(lines).encode())


def new_key(rnd, interfaces):
    eni = rnd.choice(interfaces)
    if rnd.random() < 0.05:
        src = f"2600:1f18:{rnd.getrandbits(16):x}:{rnd.getrandbits(16):x}::{rnd.getrandbits(16):x}"
        dst = f"2a05:d018:{rnd.getrandbits(16):x}::{rnd.getrandbits(16):x}"
    else:
        src = f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        dst = (f"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.{rnd.randrange(256)}."
               f"{rnd.randrange(1, 255)}")
    proto = rnd.choice((6, 6, 6, 17, 17, 1))
    if proto == 1:
        sport = dport = 0
    else:
        sport = rnd.randrange(1024, 65536)
        dport = rnd.choice((443, 80, 53, 22, 3306, 5432, 8080, rnd.randrange(1024, 65536)))
    action = "ACCEPT" if rnd.random() < 0.93 else "REJECT"
    return eni, src, dst, sport, dport, proto, action


def add_hostile(raw, flipped):
    """`flipped` copies of good objects with one bit flipped inside the deflate stream, a 100 MiB
    line and a gzip bomb, in the first good object's window. Returns how many were added."""
    rnd = random.Random(3)
    good = sorted(glob.glob(f"{raw}/**/*.log.gz", recursive=True))
    folder = os.path.dirname(good[0])
    account = os.path.basename(good[0]).split("_")[0]
    name = lambda tag: os.path.join(
        folder, f"{account}_vpcflowlogs_us-east-1_fl-bad_20261101T0002Z_{tag}.log.gz")
    for i in range(flipped):
        body = bytearray(open(good[i % len(good)], "rb").read())
        # Past the 10-byte header and before the 8-byte trailer: what the CRC covers.
        body[rnd.randrange(10, len(body) - 8)] ^= 1 << rnd.randrange(8)
        open(name(f"flip{i:03d}"), "wb").write(bytes(body))
    bench.add_hostile(raw)  # the 100 MiB line, the bomb (and one more flipped object)
    return flipped + 3


ORACLE = """
CREATE TABLE want AS SELECT {keys},
  epoch(time_bucket(INTERVAL 5 MINUTE, strptime(regexp_extract(filename, '_(\\d{{8}}T\\d{{4}})Z_', 1),
        '%Y%m%dT%H%M')))::BIGINT AS window_start,
  sum(packets) AS packets, sum(bytes) AS bytes, min(start) AS start, max("end") AS "end",
  count(*) AS merged_records
FROM read_csv('{raw}/**/*.log.gz', delim = ' ', header = true, auto_detect = false,
              columns = {{{columns}}}, nullstr = '-', filename = true)
GROUP BY ALL;
CREATE TABLE got AS SELECT {keys}, window_start, packets, bytes, start, "end", merged_records
FROM read_parquet('{out}/vpcflowlogs/**/*.parquet');
"""


def conservation(raw, out):
    """Every key's sums, min, max and count over the raw records (DuckDB) against flowmerge's
    rows, both ways (EXCEPT ALL: nulls compare equal). Returns the oracle's rows and records, and
    how many of its rows flowmerge lacks and how many flowmerge has that it does not."""
    import duckdb
    con = duckdb.connect()
    columns = ", ".join(f"'{k}': '{v}'" for k, v in bench.V2.items())
    con.execute(ORACLE.format(keys=", ".join(bench.KEYS), raw=raw, out=out, columns=columns))
    count = "SELECT count(*) FROM ({})"
    missing = con.execute(count.format("SELECT * FROM want EXCEPT ALL SELECT * FROM got")).fetchone()[0]
    extra = con.execute(count.format("SELECT * FROM got EXCEPT ALL SELECT * FROM want")).fetchone()[0]
    rows, records = con.execute("SELECT count(*), sum(merged_records) FROM want").fetchone()
    return rows, records, missing, extra


def speed(fm, work, name, merge, shape):
    """flowmerge against DuckDB sorted and unsorted, and parallel gunzip, on a generated set
    (bench.compare: alternating runs, median ratios)."""
    make = lambda raw: generate(raw, *shape, merge=merge, seed=7)
    return bench.compare(fm, work, name, shape, unsorted=True, make=make)


def conserved(fm, work, name, shape, flipped=None):
    """One run under --memory-limit 768MiB, then the oracle over the good objects."""
    good, raw = os.path.join(work, name, "good"), os.path.join(work, name, "raw")
    out = os.path.join(work, name, "flowmerge")
    for d in (good, raw, out):
        shutil.rmtree(d, ignore_errors=True)
    generate(good, *shape, merge=0.2 if flipped is not None else 0, seed=11)
    shutil.copytree(good, raw)
    bad = add_hostile(raw, flipped) if flipped is not None else 0
    seconds, rss, stdout, _, _ = bench.measured(
        [fm, "compact", raw, out, "--json", "--memory-limit", "768MiB"],
        want_code=(3,) if bad else (0,))
    summary = json.loads(stdout)
    assert summary["objects_quarantined"] == bad, summary["quarantined"]
    assert summary["batches_failed"] == 0, summary["failures"]
    rows, records, missing, extra = conservation(good, out)
    r = {"set": name, "seconds": round(seconds, 2), "peak_rss_mib": round(rss / 2**20, 1),
         "quarantined": bad, "rows": rows, "records": records, "missing": missing, "extra": extra}
    print(f"\n== {name}: {records:,} good records → {rows:,} rows"
          + (f", {bad} bad objects quarantined (exit 3)" if bad else "")
          + "  [--memory-limit 768MiB]")
    print(f"  {r['seconds']} s, peak RSS {r['peak_rss_mib']} MiB; oracle: {missing} rows missing, "
          f"{extra} extra")
    if missing or extra:
        sys.exit(f"{name}: conservation broken")
    return r


def main():
    a = bench.arguments()
    work = os.path.join(a.work, "independent")
    os.makedirs(work, exist_ok=True)
    # accounts, minutes, objects per account and minute, records per object
    full, one_window, hostile = (8, 30, 3, 2000), (8, 5, 10, 10000), (8, 5, 3, 2000)
    if a.quick:
        full, one_window, hostile = (2, 5, 2, 200), (2, 5, 2, 2000), (2, 5, 2, 200)
    results = [speed(a.flowmerge, work, "merge-20pct", 0.2, full),
               speed(a.flowmerge, work, "merge-none", 0.0, full),
               conserved(a.flowmerge, work, "distinct-keys-one-batch", one_window),
               conserved(a.flowmerge, work, "hostile", hostile, flipped=150 if not a.quick else 10)]
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nresults: {os.path.join(work, 'results.json')}")


if __name__ == "__main__":
    main()
