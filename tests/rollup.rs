//! `flowmerge rollup` end to end: compact's output rolled up into one file per closed partition,
//! checked against the independent flow oracle of `common` and against the rows before the
//! rollup (CloudTrail, DNS); crashes at each step of the rollup protocol, batches still in
//! flight, late data, hourly windows, and CloudTrail's monthly table.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use flowmerge_core::formats::cloudtrail::SORT_COLUMNS;
use polars::prelude::{SerReader, SortMultipleOptions};
use serde_json::Value;

fn rollup(out: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["rollup", out.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let (code, stdout, err) = flowmerge(&args);
    let summary = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("summary is not JSON ({e}): {stdout}\nstderr: {err}"));
    (code, summary)
}

/// Every Parquet file under `dir` with its bytes, by path below `dir`.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            (rel, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// Parquet files per partition folder of a table.
fn per_partition(table: &Path) -> BTreeMap<PathBuf, Vec<String>> {
    let mut m: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for p in files(table) {
        if p.extension().is_some_and(|e| e == "parquet") {
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            m.entry(p.parent().unwrap().to_path_buf())
                .or_default()
                .push(name);
        }
    }
    m
}

fn assert_one_rollup_file_per_partition(table: &Path) {
    let parts = per_partition(table);
    assert!(!parts.is_empty(), "no partitions in {}", table.display());
    for (dir, names) in parts {
        assert_eq!(names.len(), 1, "{}: {names:?}", dir.display());
        assert!(names[0].starts_with("rollup-"), "{names:?}");
    }
}

/// Every row of every Parquet file under `dir`, as text, sorted: rows compared as a multiset.
fn rows(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for p in files(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
    {
        let df = read_parquet(&p);
        let mut names: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        names.sort();
        for i in 0..df.height() {
            let cells: Vec<String> = names
                .iter()
                .map(|n| format!("{n}={}", text_of(df.column(n).unwrap().get(i).unwrap())))
                .collect();
            out.push(cells.join("|"));
        }
    }
    out.sort();
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for f in files(from) {
        let dest = to.join(f.strip_prefix(from).unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&f, &dest).unwrap();
    }
}

/// A copy of `out` (files and ledger) at `copy`, rolled up with `args` under a memory limit far
/// below its partitions' rows, so that every partition rolled is merged in buckets: its summary.
fn bucketed_rollup(out: &Path, copy: &Path, args: &[&str]) -> Value {
    copy_tree(out, copy);
    let mut args = args.to_vec();
    args.extend(["--memory-limit", "4KiB"]);
    let (code, s) = rollup(copy, &args);
    assert_eq!(code, 0, "{s}");
    assert!(s["partitions_rolled"].as_u64() > Some(0), "{s}");
    assert_eq!(s["partitions_in_buckets"], s["partitions_rolled"], "{s}");
    s
}

/// A table rolled up in buckets (`bucketed`, by [`bucketed_rollup`]) against the same table
/// rolled up at once (`table`): the same rows, the same columns in each file, one file per
/// partition, and each row group (a bucket: these files are small) sorted by `by`.
fn assert_bucketed_agrees(table: &Path, bucketed: &Path, by: &[&str], nulls_last: bool) {
    assert_one_rollup_file_per_partition(bucketed);
    assert_eq!(rows(bucketed), rows(table), "the same rows");
    let schemas = |dir: &Path| -> Vec<_> {
        files(dir)
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .map(|p| read_parquet(p).schema().clone())
            .collect()
    };
    assert_eq!(schemas(bucketed), schemas(table), "the same columns");
    let mut groups = 0;
    for f in files(bucketed)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
    {
        let mut reader = polars::prelude::ParquetReader::new(std::fs::File::open(&f).unwrap());
        let sizes: Vec<usize> = reader
            .get_metadata()
            .unwrap()
            .row_groups
            .iter()
            .map(|g| g.num_rows())
            .collect();
        let df = read_parquet(&f);
        let mut offset = 0;
        for rows in sizes {
            let group = df.slice(offset as i64, rows);
            let sorted = group
                .sort(
                    by.to_vec(),
                    SortMultipleOptions::default()
                        .with_maintain_order(true)
                        .with_nulls_last(nulls_last),
                )
                .unwrap();
            assert!(
                group.equals_missing(&sorted),
                "{}: row group at {offset}",
                f.display()
            );
            offset += rows;
            groups += 1;
        }
    }
    assert!(
        groups > per_partition(bucketed).len(),
        "more than one bucket per file"
    );
}

/// Two hours of flow logs compacted, then late objects for the first hour: copies of objects
/// already merged under new names, so their flow keys meet the first batch's rows again.
fn flows_with_late_data(tmp: &Path) -> (PathBuf, PathBuf) {
    let raw = tmp.join("raw");
    generate(
        &raw,
        "--accounts 2 --minutes 120 --files-per-minute 1 --records-per-file 60",
    );
    let out = tmp.join("out");
    assert_eq!(compact(&raw, &out, &[]).0, 0);
    let late: Vec<PathBuf> = files(&raw)
        .into_iter()
        .filter(|p| p.to_str().unwrap().contains("20261101T00"))
        .take(7)
        .collect();
    assert_eq!(late.len(), 7);
    for p in &late {
        let name = p.file_name().unwrap().to_str().unwrap();
        let renamed = name.replace(".log.gz", "-late.log.gz");
        std::fs::copy(p, p.with_file_name(renamed)).unwrap();
    }
    assert_eq!(compact(&raw, &out, &[]).0, 0);
    (raw, out)
}

#[test]
fn closed_flow_hours_become_one_file_that_keeps_every_total_and_a_second_run_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, out) = flows_with_late_data(tmp.path());
    let table = out.join("vpcflowlogs");
    let before = per_partition(&table);
    assert_eq!(before.len(), 2, "two hours");
    assert!(before.values().all(|f| f.len() >= 12), "{before:?}");

    // Just written: not closed under the default minimum age.
    let (code, s) = rollup(&out, &[]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["partitions_rolled"], 0, "{s}");
    assert_eq!(per_partition(&table), before);

    let batch_schema = read_parquet(&parquet_files(&out)[0]).schema().clone();
    let small = tmp.path().join("bucketed");
    let bucketed = bucketed_rollup(&out, &small, &["--min-age", "0s"]);
    let (code, s) = rollup(&out, &["--min-age", "0s"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["partitions_rolled"], 2, "{s}");
    assert_eq!(s["partitions_in_buckets"], 0, "{s}");
    assert_one_rollup_file_per_partition(&table);
    // Late rows merged in buckets as at once.
    assert_eq!(bucketed["rows_out"], s["rows_out"], "{bucketed}");
    let prefix = ["account_id", "interface_id", "srcaddr", "dstaddr"];
    assert_bucketed_agrees(&table, &small.join("vpcflowlogs"), &prefix, true);
    // The contract of a batch file: the same columns, types and order, the same sort.
    for f in parquet_files(&out) {
        let df = read_parquet(&f);
        assert_eq!(df.schema(), &batch_schema, "{}", f.display());
        let sorted = df
            .sort(
                ["account_id", "interface_id", "srcaddr", "dstaddr"],
                SortMultipleOptions::default()
                    .with_maintain_order(true)
                    .with_nulls_last(true),
            )
            .unwrap();
        assert!(df.equals_missing(&sorted), "{}: sorted", f.display());
    }
    // The oracle reads the raw text on its own: sums, min, max, or and counts per (window, key),
    // and no key twice in a window.
    let expected = oracle(&files(&raw));
    assert_conserved(&files(&raw), &out);
    assert_eq!(s["rows_out"], expected.len(), "one row per window and key");
    assert!(
        s["rows_in"].as_u64().unwrap() > s["rows_out"].as_u64().unwrap(),
        "late rows merged into the first batch's: {s}"
    );

    let after = snapshot(&out);
    let (code, s) = rollup(&out, &["--min-age", "0s"]);
    assert_eq!((code, s["partitions_rolled"].as_u64()), (0, Some(0)), "{s}");
    assert_eq!(snapshot(&out), after, "a second rollup changes no byte");

    // Late data after the rollup: a small file beside the rolled one, folded in by the next run.
    let more: Vec<PathBuf> = files(&raw)
        .into_iter()
        .filter(|p| {
            p.to_str().unwrap().contains("20261101T01") && !p.to_str().unwrap().contains("late")
        })
        .take(3)
        .collect();
    for p in &more {
        let name = p.file_name().unwrap().to_str().unwrap();
        std::fs::copy(
            p,
            p.with_file_name(name.replace(".log.gz", "-later.log.gz")),
        )
        .unwrap();
    }
    assert_eq!(compact(&raw, &out, &[]).0, 0);
    assert_eq!(per_partition(&table).values().map(Vec::len).max(), Some(2));
    let (code, s) = rollup(&out, &["--min-age", "0s"]);
    assert_eq!((code, s["partitions_rolled"].as_u64()), (0, Some(1)), "{s}");
    assert_one_rollup_file_per_partition(&table);
    assert_conserved(&files(&raw), &out);
}

#[test]
fn a_crash_at_any_step_of_a_rollup_and_a_rerun_give_every_record_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, base) = flows_with_late_data(tmp.path());
    for step in [
        "rollup-after-write",
        "rollup-after-commit",
        "rollup-during-deletes",
    ] {
        let out = tmp.path().join(step);
        copy_tree(&base, &out);
        let crashed = Command::new(env!("CARGO_BIN_EXE_flowmerge"))
            .args(["rollup", out.to_str().unwrap(), "--min-age", "0s"])
            .args(["--concurrency", "1"])
            .env("FLOWMERGE_FAULT", step)
            .output()
            .unwrap();
        assert_eq!(crashed.status.code(), Some(86), "{step}: the fault fired");
        let files_now: usize = per_partition(&out.join("vpcflowlogs"))
            .values()
            .map(Vec::len)
            .sum();
        assert!(
            files_now > 2,
            "{step}: the crash left the inputs (or some) in place"
        );

        let (code, s) = rollup(&out, &["--min-age", "0s"]);
        assert_eq!(code, 0, "{step}: {s}");
        assert_eq!(s["recovered"], 1, "{step}: {s}");
        assert_one_rollup_file_per_partition(&out.join("vpcflowlogs"));
        assert_conserved(&files(&raw), &out);
        let after = snapshot(&out);
        assert_eq!(rollup(&out, &["--min-age", "0s"]).0, 0);
        assert_eq!(snapshot(&out), after, "{step}: nothing left to do");
    }
}

#[test]
fn files_of_batches_still_in_flight_are_left_alone_until_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    generate(&raw, "--accounts 2 --minutes 20 --records-per-file 50");
    let out = tmp.path().join("out");
    assert_eq!(compact(&raw, &out, &[]).0, 0);
    // A late object for the first window; its batch writes its file and dies before the commit.
    let first = files(&raw)[0].clone();
    let name = first
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .replace(".log.gz", "-late.log.gz");
    std::fs::copy(&first, first.with_file_name(name)).unwrap();
    let crashed = Command::new(env!("CARGO_BIN_EXE_flowmerge"))
        .args(["compact", raw.to_str().unwrap(), out.to_str().unwrap()])
        .env("FLOWMERGE_FAULT", "after-write")
        .output()
        .unwrap();
    assert_eq!(crashed.status.code(), Some(86));
    let before = snapshot(&out);
    let (code, s) = rollup(&out, &["--min-age", "0s"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["files_in_flight"], 1, "{s}");
    let after = snapshot(&out);
    let in_flight: Vec<&String> = before
        .keys()
        .filter(|k| after.contains_key(*k) && !k.contains("rollup-"))
        .collect();
    assert_eq!(
        in_flight.len(),
        1,
        "the uncommitted batch's file is kept as it was: {s}"
    );
    assert_eq!(after[in_flight[0]], before[in_flight[0]]);

    assert_eq!(
        compact(&raw, &out, &[]).0,
        0,
        "the batch runs again and commits"
    );
    let (code, s) = rollup(&out, &["--min-age", "0s"]);
    assert_eq!(code, 0, "{s}");
    assert_one_rollup_file_per_partition(&out.join("vpcflowlogs"));
    assert_conserved(&files(&raw), &out);
}

#[test]
fn a_merge_window_of_an_hour_gives_one_row_per_key_and_hour() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, out) = flows_with_late_data(tmp.path());
    let small = tmp.path().join("bucketed");
    bucketed_rollup(&out, &small, &["--min-age", "0s", "--merge-window", "1h"]);
    let (code, s) = rollup(&out, &["--min-age", "0s", "--merge-window", "1h"]);
    assert_eq!(code, 0, "{s}");
    assert_one_rollup_file_per_partition(&out.join("vpcflowlogs"));
    let prefix = ["account_id", "interface_id", "srcaddr", "dstaddr"];
    assert_bucketed_agrees(
        &out.join("vpcflowlogs"),
        &small.join("vpcflowlogs"),
        &prefix,
        true,
    );
    // The oracle's five-minute totals, folded by hour.
    let mut hourly: std::collections::HashMap<Key, Totals> = Default::default();
    for ((window, key), t) in oracle(&files(&raw)) {
        let hour = format!("{}00Z", &window[..11]);
        hourly.entry((hour, key)).or_default().add(&t);
    }
    let got = observed(&out);
    assert_eq!(got.len(), hourly.len(), "one row per key and hour");
    for (k, t) in &hourly {
        assert_eq!(got.get(k), Some(t), "totals of {k:?}");
    }
    assert_eq!(s["rows_out"], hourly.len());
    let after = snapshot(&out);
    assert_eq!(
        rollup(&out, &["--min-age", "0s", "--merge-window", "1h"]).0,
        0
    );
    assert_eq!(snapshot(&out), after);
}

fn event(id: &str, time: &str) -> Value {
    serde_json::json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::111122223333:user/{id}"),
                         "accountId": "111122223333"},
        "eventTime": time, "eventSource": "ec2.amazonaws.com", "eventName": "DescribeInstances",
        "awsRegion": "eu-west-1", "sourceIPAddress": "198.51.100.7", "userAgent": "aws-cli/2",
        "requestParameters": {"filterSet": {"items": [{"name": id}]}}, "responseElements": null,
        "requestID": format!("req-{id}"), "eventID": id, "readOnly": true,
        "eventType": "AwsApiCall", "managementEvent": true, "recipientAccountId": "111122223333",
    })
}

fn trail_object(raw: &Path, stamp: &str, tag: &str, events: &[Value]) {
    let day = format!("{}/{}/{}", &stamp[..4], &stamp[4..6], &stamp[6..8]);
    let dir = raw.join(format!("AWSLogs/111122223333/CloudTrail/eu-west-1/{day}"));
    std::fs::create_dir_all(&dir).unwrap();
    let body = serde_json::json!({ "Records": events }).to_string();
    std::fs::write(
        dir.join(format!(
            "111122223333_CloudTrail_eu-west-1_{stamp}_{tag}.json"
        )),
        body,
    )
    .unwrap();
}

#[test]
fn cloudtrail_days_keep_each_event_once_and_closed_months_get_their_own_table() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    let out = tmp.path().join("out");
    let mut all = BTreeSet::new();
    // Across a day boundary, in objects of several windows (so several batches), with an event
    // delivered twice in two windows.
    let mut n = 0;
    for (stamp, times) in [
        (
            "20220103T2350Z",
            ["2022-01-03T23:48:00Z", "2022-01-03T23:49:00Z"],
        ),
        (
            "20220103T2355Z",
            ["2022-01-03T23:58:00Z", "2022-01-04T00:00:01Z"],
        ),
        (
            "20220104T0005Z",
            ["2022-01-04T00:03:00Z", "2022-01-04T00:04:00Z"],
        ),
    ] {
        let mut events: Vec<Value> = times
            .iter()
            .map(|t| {
                n += 1;
                all.insert(format!("e{n}"));
                event(&format!("e{n}"), t)
            })
            .collect();
        events.push(event("twice", "2022-01-04T00:02:00Z"));
        trail_object(&raw, stamp, &format!("T{stamp}"), &events);
    }
    all.insert("twice".into());
    assert_eq!(compact(&raw, &out, &[]).0, 0);
    let table = out.join("cloudtrail");
    let before = rows(&table);
    let distinct: BTreeSet<String> = before.iter().cloned().collect();
    assert!(
        before.len() > distinct.len(),
        "the duplicate is in two batch files"
    );
    assert!(per_partition(&table).values().any(|f| f.len() > 1));

    let schema = |dir: &Path| -> Vec<_> {
        files(dir)
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .map(|p| read_parquet(p).schema().clone())
            .collect()
    };
    let batch_schema = schema(&table)[0].clone();
    let small = tmp.path().join("bucketed");
    bucketed_rollup(&out, &small, &["--min-age", "0s", "--source", "cloudtrail"]);
    let (code, s) = rollup(&out, &["--min-age", "0s", "--source", "cloudtrail"]);
    assert_eq!(code, 0, "{s}");
    assert_one_rollup_file_per_partition(&table);
    // The event delivered twice is once in buckets too.
    assert_bucketed_agrees(&table, &small.join("cloudtrail"), SORT_COLUMNS, false);
    assert!(
        schema(&table).iter().all(|s| *s == batch_schema),
        "columns and types kept"
    );
    assert_eq!(
        rows(&table),
        distinct.into_iter().collect::<Vec<_>>(),
        "every event once, every field as before"
    );
    assert_eq!(s["rows_out"], all.len());

    // A late object for a rolled day: one new event and one already there.
    trail_object(
        &raw,
        "20220104T0100Z",
        "LATE",
        &[
            event("late", "2022-01-04T00:59:00Z"),
            event("e3", "2022-01-03T23:58:00Z"),
        ],
    );
    all.insert("late".into());
    assert_eq!(compact(&raw, &out, &[]).0, 0);
    assert_eq!(rollup(&out, &["--min-age", "0s"]).0, 0);
    assert_one_rollup_file_per_partition(&table);
    let ids = |dir: &Path| -> Vec<String> {
        let mut ids = Vec::new();
        for p in files(dir)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        {
            let df = read_parquet(&p);
            let c = df.column("eventid").unwrap();
            ids.extend((0..df.height()).map(|i| text_of(c.get(i).unwrap())));
        }
        ids.sort();
        ids
    };
    assert_eq!(ids(&table), all.iter().cloned().collect::<Vec<_>>());

    // The month is closed (January 2022): one file in the monthly table, the days untouched.
    let days = snapshot(&out);
    let monthly = tmp.path().join("archive");
    let into = monthly.to_str().unwrap();
    let args = [
        "--min-age",
        "0s",
        "--source",
        "cloudtrail",
        "--level",
        "month",
        "--into",
        into,
    ];
    let (code, s) = rollup(&out, &args);
    assert_eq!(code, 0, "{s}");
    assert_eq!(snapshot(&out), days);
    let month = monthly.join("cloudtrail_monthly/year=2022/month=01");
    assert_eq!(per_partition(&monthly.join("cloudtrail_monthly")).len(), 1);
    assert_one_rollup_file_per_partition(&monthly.join("cloudtrail_monthly"));
    assert_eq!(ids(&month), all.iter().cloned().collect::<Vec<_>>());
    let archived = snapshot(&monthly);
    assert_eq!(rollup(&out, &args).0, 0);
    assert_eq!(snapshot(&monthly), archived, "a second run changes no byte");
}

#[test]
fn dns_days_are_rolled_up_with_every_row_kept_and_sorted() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    let out = tmp.path().join("out");
    let pcaps = realdata().join("dns_pcap");
    let server = raw.join("dns/ns1.example");
    std::fs::create_dir_all(&server).unwrap();
    // The same captures twice, in two runs: two batch files in each day partition.
    for round in ["a", "b"] {
        for f in [
            "dnscap/dns.pcap",
            "tcpdump/dns_udp.pcap",
            "tcpdump/dns_tcp.pcap",
        ] {
            let name = format!("{round}-{}", f.replace('/', "-"));
            std::fs::copy(pcaps.join(f), server.join(name)).unwrap();
        }
        assert_eq!(compact(&raw, &out, &[]).0, 0);
    }
    let table = out.join("dns");
    let before = rows(&table);
    assert!(per_partition(&table).values().all(|f| f.len() == 2));
    let batch_schema = read_parquet(
        &files(&table)
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "parquet"))
            .unwrap(),
    )
    .schema()
    .clone();
    let small = tmp.path().join("bucketed");
    bucketed_rollup(&out, &small, &["--min-age", "0s", "--source", "dns"]);
    let (code, s) = rollup(&out, &["--min-age", "0s", "--source", "dns"]);
    assert_eq!(code, 0, "{s}");
    assert_one_rollup_file_per_partition(&table);
    let by = ["dns_domainname", "time", "pcap_file"];
    assert_bucketed_agrees(&table, &small.join("dns"), &by, false);
    for (dir, names) in per_partition(&table) {
        assert_eq!(read_parquet(&dir.join(&names[0])).schema(), &batch_schema);
    }
    assert_eq!(rows(&table), before, "every row kept");
    for (dir, names) in per_partition(&table) {
        let df = read_parquet(&dir.join(&names[0]));
        let domains: Vec<String> = (0..df.height())
            .map(|i| text_of(df.column("dns_domainname").unwrap().get(i).unwrap()))
            .collect();
        let mut sorted = domains.clone();
        sorted.sort_by(|a, b| match (a.as_str(), b.as_str()) {
            ("-", "-") => std::cmp::Ordering::Equal,
            ("-", _) => std::cmp::Ordering::Less,
            (_, "-") => std::cmp::Ordering::Greater,
            (a, b) => a.cmp(b),
        });
        assert_eq!(domains, sorted, "{}: sorted by domain", dir.display());
    }
}

#[test]
fn rollup_arguments_are_checked_before_anything_is_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    for (args, says) in [
        (vec!["--level", "month"], "--into"),
        (
            vec!["--level", "month", "--source", "dns", "--into", "x"],
            "CloudTrail only",
        ),
        (vec!["--into", "x"], "--level month"),
        (vec!["--target-size", "0"], "more than 0"),
        (vec!["--merge-window", "7m"], "divide"),
        (vec![], "no ledger"),
    ] {
        let mut all = vec!["rollup", out.to_str().unwrap()];
        all.extend(args.iter().copied());
        let (code, _, err) = flowmerge(&all);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(files(&out).is_empty(), "nothing written");
}

#[test]
fn delete_merged_removes_raw_objects_only_after_their_commit_and_keeps_the_quarantined() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    generate(&raw, "--accounts 2 --minutes 10 --records-per-file 40");
    let good = files(&raw);
    let expected = oracle(&good);
    let bad =
        good[0].with_file_name("111122223333_vpcflowlogs_us-east-1_fl-bad_20261101T0000Z_x.log");
    std::fs::write(&bad, "version account-id\nnot a record\n").unwrap();
    let out = tmp.path().join("out");

    // Killed after the commit, before the deletes: nothing is gone yet.
    let crashed = Command::new(env!("CARGO_BIN_EXE_flowmerge"))
        .args(["compact", raw.to_str().unwrap(), out.to_str().unwrap()])
        .args(["--delete-merged", "--concurrency", "1"])
        .env("FLOWMERGE_FAULT", "after-commit")
        .output()
        .unwrap();
    assert_eq!(crashed.status.code(), Some(86));
    assert_eq!(
        files(&raw).len(),
        good.len() + 1,
        "no object deleted before its commit"
    );

    let (code, s) = compact(&raw, &out, &["--delete-merged"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(
        s["quarantined_remaining"], 1,
        "the bad object, by the first run: {s}"
    );
    assert_eq!(
        files(&raw),
        vec![bad.clone()],
        "only the quarantined object is kept: {s}"
    );
    assert_eq!(s["objects_deleted"], good.len(), "{s}");
    let got = observed(&out);
    assert_eq!(got.len(), expected.len());
    for (k, t) in &expected {
        assert_eq!(got.get(k), Some(t), "totals of {k:?}");
    }
}
