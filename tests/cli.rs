//! End-to-end tests of the `flowmerge` command, run as a user runs it: generated raw objects in
//! AWS's layout, bad objects mixed in, the output read back with polars and compared with an
//! oracle that parses the raw text on its own (not with flowmerge's parser).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

use common::*;
use polars::prelude::*;

#[test]
fn compact_conserves_generated_v2_and_v5_data_per_window() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    generate(
        &raw,
        "--accounts 3 --minutes 12 --files-per-minute 2 --records-per-file 300",
    );
    generate(
        &raw,
        "--accounts 2 --minutes 7 --records-per-file 200 --format v5 --seed 9 --region eu-west-1",
    );
    let out = tmp.path().join("out");
    let (code, s) = compact(&raw, &out, &[]);
    assert_eq!(code, 0, "{s}");
    let raw_files = files(&raw);
    assert_eq!(s["objects"], raw_files.len());
    assert_conserved(&raw_files, &out);

    // One row per (window, key): the merge really merged.
    let rows: u64 = parquet_files(&out)
        .iter()
        .map(|f| read_parquet(f).height() as u64)
        .sum();
    assert_eq!(s["rows_out"], rows);
    assert!(
        rows < s["records_in"].as_u64().unwrap() / 2,
        "long-lived flows merge"
    );
    // Windows 00:00, 00:05, 00:10 → three partitions' files per window, one file per window.
    let names: Vec<String> = parquet_files(&out)
        .iter()
        .map(|p| p.strip_prefix(&out).unwrap().display().to_string())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].starts_with("vpcflowlogs/year=2026/month=11/day=01/hour=00/20261101T0000Z-"));
}

/// The reason of each object a summary lists as quarantined.
fn quarantine_reasons(summary: &serde_json::Value) -> Vec<String> {
    summary["quarantined"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["reason"].as_str().unwrap().to_string())
        .collect()
}

/// A flow-log object's path in `dir` for the first window, named by `tag`.
fn bad_object(dir: &Path, tag: &str, ext: &str) -> std::path::PathBuf {
    dir.join(format!(
        "123456789012_vpcflowlogs_us-east-1_fl-bad_20261101T0001Z_{tag}.{ext}"
    ))
}

/// Hostile objects beside good ones, under a memory limit small enough that the good ones'
/// folded keys spill and their window is written in sorted parts: every hostile object is
/// quarantined with its reason, every good record lands once, and the same run again gives the
/// same bytes.
#[test]
fn hostile_objects_are_quarantined_and_a_spilled_batch_conserves() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    generate(
        &raw,
        "--accounts 3 --minutes 5 --files-per-minute 2 --records-per-file 2000",
    );
    let good = files(&raw);
    let dir = good[0].parent().unwrap().to_path_buf();
    let name = |tag: &str, ext: &str| bad_object(&dir, tag, ext);
    let gzip = |data: &mut dyn FnMut(&mut dyn Write)| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        data(&mut e);
        e.finish().unwrap()
    };
    // 256 MiB of zeros in 256 KiB, as a flow log and (whole-object decoding) as CloudTrail.
    let bomb = gzip(&mut |w| {
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..256 {
            w.write_all(&zeros).unwrap();
        }
    });
    std::fs::write(name("bomb", "log.gz"), &bomb).unwrap();
    std::fs::create_dir_all(raw.join("exports")).unwrap();
    std::fs::write(raw.join("exports/trail-bomb.json.gz"), &bomb).unwrap();
    // A header, then a 100 MiB line.
    let long = gzip(&mut |w| {
        w.write_all(b"version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n").unwrap();
        let chunk = b"2 123456789012 eni-1 10.0.0.1 ".repeat(1 << 15);
        for _ in 0..(100 << 20) / chunk.len() {
            w.write_all(&chunk).unwrap();
        }
    });
    std::fs::write(name("long-line", "log.gz"), &long).unwrap();
    // A bit flipped in a good object's deflate stream.
    let mut flipped = std::fs::read(&good[0]).unwrap();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x10;
    std::fs::write(name("flipped", "log.gz"), &flipped).unwrap();
    // 17 MiB of plain text: past the 16 MiB per-object bound before a byte of it is fetched.
    let header = b"version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n";
    let mut big = header.to_vec();
    big.resize(17 << 20, b'\n');
    std::fs::write(name("big", "log"), &big).unwrap();

    let out = tmp.path().join("out");
    let spill = tmp.path().join("spill");
    let tight = [
        "--memory-limit",
        "2MiB",
        "--concurrency",
        "1",
        "--spill-dir",
        spill.to_str().unwrap(),
    ];
    let (code, s) = compact(&raw, &out, &tight);
    assert_eq!(code, 3, "quarantine exit code: {s}");
    let reasons = quarantine_reasons(&s);
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    let has = |tag: &str, what: &str| {
        assert!(
            reasons.iter().any(|r| r.contains(tag) && r.contains(what)),
            "{tag}: {what} in {reasons:?}"
        )
    };
    has("_bomb.log.gz:1", "longer than 1048576 bytes");
    has("trail-bomb.json.gz", "decodes to more than 16");
    has("_long-line.log.gz:2", "longer than 1048576 bytes");
    has("_flipped.log.gz", "gzip");
    has(
        "_big.log",
        "17.0 MiB stored, more than the per-object bound (16.0 MiB",
    );
    assert_conserved(&good, &out);
    assert_eq!(
        std::fs::read_dir(&spill).unwrap().count(),
        0,
        "spill folders are removed"
    );

    // Written in sorted parts (more rows than 2 MiB sorts at once), and deterministically so.
    let sorted_rows = (2 << 20) / flowmerge_core::memory::ROW_BYTES as usize;
    assert!(
        parquet_files(&out)
            .iter()
            .any(|f| read_parquet(f).height() > sorted_rows),
        "a window larger than one sort"
    );
    let first: Vec<Vec<u8>> = parquet_files(&out)
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    let again = tmp.path().join("again");
    let (code, _) = compact(&raw, &again, &tight);
    assert_eq!(code, 3);
    let second: Vec<Vec<u8>> = parquet_files(&again)
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    assert!(
        first == second,
        "the same batch and limit give the same bytes"
    );
}

/// `gen --profile` makes traffic whose keys recur as often as it says: about ten records per row
/// for `repeat`, 1.2 for `real` (long-lived connections once a minute beside short ones), one
/// for `unique` (NODATA records of an interface still merge).
#[test]
fn gen_profiles_recur_as_they_say() {
    let tmp = tempfile::tempdir().unwrap();
    for (profile, low, high) in [
        ("repeat", 8.0, 12.0),
        ("real", 1.15, 1.3),
        ("unique", 1.0, 1.02),
    ] {
        let raw = tmp.path().join(profile);
        generate(
            &raw,
            &format!(
                "--accounts 2 --minutes 10 --files-per-minute 3 --records-per-file 1000 --profile {profile}"
            ),
        );
        let out = tmp.path().join(format!("{profile}-out"));
        let (code, s) = compact(&raw, &out, &[]);
        assert_eq!(code, 0, "{s}");
        let raw_files = files(&raw);
        assert_conserved(&raw_files, &out);
        let ratio = s["records_in"].as_f64().unwrap() / s["rows_out"].as_f64().unwrap();
        assert!(
            (low..high).contains(&ratio),
            "{profile}: {ratio:.3} records per row"
        );
    }
}

#[test]
fn bad_objects_are_quarantined_and_everything_else_lands() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    generate(&raw, "--accounts 2 --minutes 4 --records-per-file 100");
    let good = files(&raw);
    let dir = good[0].parent().unwrap().to_path_buf();
    let name = |tag: &str| bad_object(&dir, tag, "log.gz");
    // Random bytes under a flow-log name.
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(name("random"), noise).unwrap();
    // A truncated gzip.
    let whole = std::fs::read(&good[0]).unwrap();
    std::fs::write(name("truncated"), &whole[..whole.len() / 2]).unwrap();
    // A short line in the middle of an otherwise good object.
    let short = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n\
                 2 123456789012 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 100 160 ACCEPT OK\n\
                 2 123456789012 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 100 160 ACCEPT\n";
    std::fs::write(name("short").with_extension(""), short).unwrap();

    let out = tmp.path().join("out");
    let (code, s) = compact(&raw, &out, &[]);
    assert_eq!(code, 3, "quarantine exit code: {s}");
    assert_eq!(s["objects_quarantined"], 3);
    let reasons = quarantine_reasons(&s);
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("_truncated.log.gz: gzip")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("_random.log.gz")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("_short.log:3: 13 fields, the header names 14")),
        "{reasons:?}"
    );
    assert_conserved(&good, &out);

    // A re-run does not retry them, and says so.
    let (code, text, _) = flowmerge(&["compact", raw.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    let all = good.len() + 3;
    assert!(
        text.contains(&format!("nothing new ({all} objects already merged)")),
        "{text}"
    );
    assert!(text.contains("3 objects remain quarantined"), "{text}");

    // Asked to, it tries them again: still bad, so still quarantined, and nothing doubles.
    let (code, s) = compact(&raw, &out, &["--retry-quarantined"]);
    assert_eq!(code, 3, "{s}");
    assert_eq!(s["quarantined_retried"], 3);
    assert_eq!(s["objects"], 3);
    assert_eq!(s["quarantined_remaining"], 3);
    assert_conserved(&good, &out);
}

#[test]
fn incremental_rerun_adds_only_new_objects_as_a_new_file() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    generate(&raw, "--accounts 2 --minutes 3 --records-per-file 100");
    let out = tmp.path().join("out");
    let (code, first) = compact(&raw, &out, &[]);
    assert_eq!(code, 0);
    let before = parquet_files(&out);
    assert_eq!(before.len(), 1);
    let first_bytes = std::fs::read(&before[0]).unwrap();

    // New objects for the same window (another seed gives other names), and a later window.
    generate(
        &raw,
        "--accounts 1 --minutes 1 --records-per-file 50 --seed 2 --start 2026-11-01T00:02:00Z",
    );
    generate(
        &raw,
        "--accounts 1 --minutes 1 --records-per-file 50 --seed 3 --start 2026-11-01T00:07:00Z",
    );
    let (code, second) = compact(&raw, &out, &[]);
    assert_eq!(code, 0);
    assert_eq!(second["objects"], 6, "only the new objects: {second}");
    assert_eq!(second["records_in"], 300);
    let after = parquet_files(&out);
    assert_eq!(after.len(), 3, "{after:?}");
    let window0: Vec<_> = after
        .iter()
        .filter(|p| p.to_str().unwrap().contains("20261101T0000Z-"))
        .collect();
    assert_eq!(window0.len(), 2, "a second file in the merged window");
    assert_eq!(
        std::fs::read(&before[0]).unwrap(),
        first_bytes,
        "first file untouched"
    );
    assert_eq!(first["records_in"], 2 * 3 * 3 * 100);
    assert_conserved(&files(&raw), &out);
}

#[test]
fn output_names_and_bytes_are_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    generate(&raw, "--accounts 2 --minutes 6 --records-per-file 100");
    let listing = |out: &Path| -> BTreeMap<String, Vec<u8>> {
        parquet_files(out)
            .into_iter()
            .map(|p| {
                (
                    p.strip_prefix(out).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect()
    };
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    assert_eq!(compact(&raw, &a, &[]).0, 0);
    assert_eq!(
        compact(
            &raw,
            &b,
            &["--concurrency", "1", "--fetch-concurrency", "1"]
        )
        .0,
        0
    );
    let (la, lb) = (listing(&a), listing(&b));
    assert_eq!(la.len(), 2);
    assert_eq!(la, lb, "same input, same keys and bytes");
}

#[test]
fn a_crash_between_write_and_commit_is_recovered_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    generate(&raw, "--accounts 2 --minutes 3 --records-per-file 100");
    let out = tmp.path().join("out");
    for step in ["after-claim", "after-write", "before-commit"] {
        let out = out.join(step);
        let status = Command::new(env!("CARGO_BIN_EXE_flowmerge"))
            .args([
                "compact",
                raw.to_str().unwrap(),
                out.to_str().unwrap(),
                "--json",
            ])
            .env("FLOWMERGE_FAULT", step)
            .output()
            .unwrap();
        assert_eq!(status.status.code(), Some(86), "{step}: the fault fired");
        let (code, s) = compact(&raw, &out, &[]);
        assert_eq!(code, 0, "{step}: {s}");
        assert_eq!(s["objects"], 18, "{step}: the claimed batch ran again");
        assert_eq!(
            parquet_files(&out).len(),
            1,
            "{step}: rewritten, not duplicated"
        );
        assert_conserved(&files(&raw), &out);
    }
}

#[test]
fn headerless_custom_objects_need_format() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    let line = "3 eni-3 123456789010 vpc-a subnet-b i-1 10.0.0.1 10.0.0.2 1 80 6 3 IPv4 10.0.0.1 10.0.0.2 ACCEPT OK\n";
    std::fs::write(raw.join("x_20261101T0000Z_a.log"), line.repeat(3)).unwrap();
    let (code, s) = compact(&raw, &tmp.path().join("o1"), &[]);
    assert_eq!(code, 3);
    assert!(
        s["quarantined"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("x_20261101T0000Z_a.log:1: no header")
    );
    assert_eq!(s["quarantined_remaining"], 1);
    // Run again into the same output with the field list the hint asks for: the object was
    // quarantined under other reading options, so it is tried again by itself.
    let format = "version interface-id account-id vpc-id subnet-id instance-id srcaddr dstaddr srcport dstport protocol tcp-flags type pkt-srcaddr pkt-dstaddr action log-status";
    let (code, s) = compact(&raw, &tmp.path().join("o1"), &["--format", format]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["quarantined_retried"], 1);
    assert_eq!(s["quarantined_remaining"], 0);
    assert_eq!(s["rows_out"], 1);
    assert_eq!(s["records_in"], 3);
    let (code, s) = compact(&raw, &tmp.path().join("o1"), &["--format", format]);
    assert_eq!(
        (code, &s["objects"], &s["objects_already_merged"]),
        (0, &0.into(), &1.into())
    );
}

/// `cp -a`, `mv` and `touch` give files a new inode or mtime, which the local store's ETag is
/// made of: the same bytes must still count as merged, while changed bytes are new.
#[test]
fn copied_or_touched_files_are_not_merged_again_but_changed_ones_are() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    generate(&raw, "--accounts 2 --minutes 3 --records-per-file 100");
    let out = tmp.path().join("out");
    let (code, first) = compact(&raw, &out, &[]);
    assert_eq!(code, 0, "{first}");
    let n = files(&raw).len();

    // Copy the tree (new inodes and mtimes), replace the original with it, touch one file.
    let copy = tmp.path().join("copy");
    for f in files(&raw) {
        let to = copy.join(f.strip_prefix(&raw).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&f, &to).unwrap();
    }
    std::fs::remove_dir_all(&raw).unwrap();
    std::fs::rename(&copy, &raw).unwrap();
    let touched = files(&raw)[0].clone();
    let file = std::fs::File::options()
        .append(true)
        .open(&touched)
        .unwrap();
    file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    drop(file);
    let (code, again) = compact(&raw, &out, &[]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["objects"], 0, "{again}");
    assert_eq!(again["objects_already_merged"], n);
    assert_eq!(parquet_files(&out).len(), 1);

    // New content under an existing name is a new object: merged, into a new file.
    let changed = files(&raw)[1].clone();
    let header = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n";
    let record =
        "2 123456789012 eni-9 10.9.9.9 10.9.9.8 1 2 6 5 500 1761955200 1761955260 ACCEPT OK\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, format!("{header}{record}").as_bytes()).unwrap();
    std::fs::write(&changed, gz.finish().unwrap()).unwrap();
    let (code, third) = compact(&raw, &out, &[]);
    assert_eq!(code, 0, "{third}");
    assert_eq!(
        (third["objects"].as_u64(), third["records_in"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(parquet_files(&out).len(), 2);
}

/// A typo is not a failure: every invalid argument or configuration exits 2 with one line on
/// stderr, before anything is written.
#[test]
fn invalid_arguments_exit_2_with_one_line_and_no_side_effects() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    generate(&raw, "--accounts 1 --minutes 1 --records-per-file 10");
    let (r, out) = (raw.to_str().unwrap(), tmp.path().join("out"));
    let o = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["compact", r, o, "--window", "7m"], "divide an hour"),
        (vec!["compact", r, o, "--window", "abc"], "abc"),
        (vec!["compact", r, o, "--window", "5"], "unit"),
        (vec!["compact", r, o, "--window", "2h"], "divide an hour"),
        (vec!["compact", r, o, "--concurrency", "0"], "at least 1"),
        (
            vec!["compact", r, o, "--fetch-concurrency", "0"],
            "at least 1",
        ),
        (
            vec!["compact", r, o, "--batch-max-objects", "0"],
            "at least 1",
        ),
        (vec!["compact", r, o, "--batch-max-mib", "0"], "at least 1"),
        (
            vec!["compact", r, o, "--format", "version ${"],
            "not a field name",
        ),
        (vec!["compact", "ftp://host/logs", o], "unsupported scheme"),
        (vec!["compact", r, "memory://"], "--ledger"),
        (vec!["compact", "/no/such/input", o], "no such directory"),
    ];
    for (args, needle) in cases {
        let (code, stdout, stderr) = flowmerge(&args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            lines.len() <= 3 && lines.iter().any(|l| l.contains(needle)),
            "{args:?}: {stderr}"
        );
        assert!(!out.exists(), "{args:?} created the output");
    }
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_flowmerge"))
        .args(["compact", r, o])
        .env("FLOWMERGE_LOG", "bogus===")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("FLOWMERGE_LOG") && stderr.lines().count() == 1,
        "{stderr}"
    );
    // An empty endpoint variable means "no override", not a crash.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_flowmerge"))
        .args(["compact", r, o, "--json"])
        .env("AWS_ENDPOINT_URL", "")
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn empty_objects_are_counted_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    generate(&raw, "--accounts 1 --minutes 1 --records-per-file 10");
    std::fs::write(raw.join("x_20261101T0000Z_empty.log"), "").unwrap();
    let header = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n";
    std::fs::write(raw.join("x_20261101T0000Z_header.log"), header).unwrap();
    let out = tmp.path().join("out");
    let (code, s) = compact(&raw, &out, &[]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["objects_empty"], 2, "{s}");
    let empty: Vec<&str> = s["empty"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        empty,
        ["x_20261101T0000Z_empty.log", "x_20261101T0000Z_header.log"]
    );
    assert_eq!(s["records_in"], 30);
}

/// The README's quick start, extracted from README.md as written: every command must be
/// `cargo run --release -q -p flowmerge-cli -- ARGS` (which needs the package's default-run to be
/// `flowmerge`), and running ARGS with the binary must print the summary the README shows. The
/// README's DuckDB query and its Spark example then run on the output, with the test venv's
/// DuckDB and Spark.
#[test]
fn readme_quick_start_runs_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let quick = readme
        .split("## Quick start")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let blocks: Vec<&str> = quick.split("```").collect();
    let commands = blocks[1].strip_prefix("sh\n").expect("a sh block first");
    let summary = blocks[3];
    let manifest = std::fs::read_to_string(root.join("crates/cli/Cargo.toml")).unwrap();
    assert!(
        manifest.contains("default-run = \"flowmerge\""),
        "cargo run needs default-run"
    );

    let tmp = tempfile::tempdir().unwrap();
    let mut printed = String::new();
    for command in commands.trim().split("&&") {
        let args = command
            .trim()
            .strip_prefix("cargo run --release -q -p flowmerge-cli -- ")
            .unwrap_or_else(|| panic!("not a cargo run of the command: {command:?}"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowmerge"))
            .args(args.split_whitespace())
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        printed.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let norm = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    let printed: Vec<String> = printed.lines().map(norm).collect();
    for line in summary
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains('…'))
    {
        assert!(
            printed.contains(&norm(line)),
            "README shows {line:?}; printed {printed:#?}"
        );
    }

    // The DuckDB query of the quick start, as the README gives it for Python.
    let query = quick
        .lines()
        .find(|l| l.contains("python") && l.contains("duckdb"))
        .expect("a Python DuckDB line");
    let text = venv_shell(query.trim(), tmp.path());
    let account_rows = text
        .lines()
        .filter(|l| {
            l.split(|c: char| c.is_whitespace() || c == '│' || c == '|')
                .any(|t| t.len() == 12 && t.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    assert_eq!(account_rows, 8, "one row per generated account: {text}");

    // The Spark example, as written: `cargo run …` is the binary, spark-sql the test venv's.
    let spark = quick
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|code| code.contains("spark-sql"))
        .expect("a Spark block");
    let script = spark.replace(
        "cargo run --release -q -p flowmerge-cli --",
        env!("CARGO_BIN_EXE_flowmerge"),
    );
    let text = venv_shell(&script, tmp.path());
    // One hour of generated traffic: one row, the hour's partition keys and every row written.
    let rows_out = printed
        .iter()
        .find_map(|l| l.strip_prefix("rows out "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the summary's rows out");
    let got: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(got.len(), 1, "{text}");
    assert_eq!(got[0][..5], ["2026", "11", "1", "0", rows_out], "{text}");
}

/// Runs `tests/<script>` with the test venv's Python (scripts/test.sh installs it): it must
/// succeed; the JSON of the last line it printed.
fn venv_script(script: &str, args: &[&str]) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests")
        .join(script);
    let out = Command::new(format!("{}/bin/python", test_venv()))
        .arg(path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} {args:?}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{script}: {e}: {stdout}"))
}

/// Runs `script` with `sh -e` in `dir`, the test venv's tools first on the PATH (its `python3`
/// with DuckDB, `spark-sql`): it must succeed; what it printed.
fn venv_shell(script: &str, dir: &Path) -> String {
    let path = format!(
        "{}/bin:{}",
        test_venv(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .args(["-ec", script])
        .env("PATH", path)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ddl_types_agree_with_the_parquet_written() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    generate(
        &raw,
        "--accounts 1 --minutes 2 --records-per-file 50 --format v5",
    );
    let out = tmp.path().join("out");
    assert_eq!(compact(&raw, &out, &[]).0, 0);
    let (code, ddl, _) = flowmerge(&["ddl", "--output", "s3://bucket/flows"]);
    assert_eq!(code, 0);
    assert!(
        ddl.contains("LOCATION 's3://bucket/flows/vpcflowlogs/'"),
        "{ddl}"
    );
    assert!(ddl.contains(
        "'storage.location.template' = 's3://bucket/flows/vpcflowlogs/${partition_hour}/'"
    ));
    // One date projection over the Hive path, bounded by NOW: not every hour to 2099.
    assert!(ddl.contains(
        "'projection.partition_hour.format' = \"'year='yyyy'/month='MM'/day='dd'/hour='HH\""
    ));
    assert!(
        ddl.contains("'projection.partition_hour.range' = 'year=2015/month=01/day=01/hour=00,NOW'")
    );
    let declared: HashMap<String, String> = ddl
        .lines()
        .filter_map(|l| l.trim().strip_prefix('`'))
        .filter_map(|l| l.split_once("` "))
        .map(|(c, t)| (c.to_string(), t.trim_end_matches(',').to_string()))
        .collect();
    let athena = |d: &DataType| match d {
        DataType::Int32 => "int",
        DataType::Int64 => "bigint",
        DataType::String => "string",
        other => panic!("unexpected type {other}"),
    };
    let files = parquet_files(&out);
    let df = read_parquet(&files[0]);
    assert!(df.width() >= 30, "v5 columns and merged_records");
    for c in df.columns() {
        assert_eq!(
            declared.get(c.name().as_str()).map(String::as_str),
            Some(athena(c.dtype())),
            "column {}",
            c.name()
        );
    }
    assert!(ddl.contains("PARTITIONED BY (`partition_hour` string)"));
    // The projected value, formatted as the DDL says, is the file's partition path.
    let rel = files[0].strip_prefix(out.join("vpcflowlogs")).unwrap();
    let partition = rel.parent().unwrap().to_str().unwrap();
    let shape = regex_like_hour(partition);
    assert!(
        shape,
        "{partition} is not year=YYYY/month=MM/day=DD/hour=HH"
    );
    // A query as Athena would run it, through polars over the partitioned files.
    let lf = concat(
        files
            .iter()
            .map(|f| read_parquet(f).lazy())
            .collect::<Vec<_>>(),
        UnionArgs::default(),
    )
    .unwrap();
    let totals = lf
        .group_by([col("action")])
        .agg([col("bytes").sum(), col("merged_records").sum()])
        .collect()
        .unwrap();
    let merged: i64 = totals
        .column("merged_records")
        .unwrap()
        .i64()
        .unwrap()
        .sum()
        .unwrap();
    assert_eq!(merged, 2 * 3 * 50, "every generated record, once");
}

#[test]
fn ddl_hive_dialect_refuses_what_only_athena_has() {
    for (extra, says) in [
        (
            &["--format", "json"][..],
            "--format json is the Athena table",
        ),
        (&["--source", "dns", "--servers", "a,b"][..], "--servers"),
    ] {
        let mut args = vec!["ddl", "--output", "s3://b/p", "--dialect", "hive"];
        args.extend_from_slice(extra);
        let (code, out, err) = flowmerge(&args);
        assert_eq!(code, 2, "{extra:?}: {out}{err}");
        assert!(err.contains(says), "{extra:?}: {err}");
    }
    let (code, ddl, err) = flowmerge(&["ddl", "--output", "/tmp/out", "--dialect", "hive"]);
    assert_eq!(code, 2, "{ddl}{err}");
    assert!(err.contains("file:///path"), "{err}");
    let (code, ddl, _) = flowmerge(&["ddl", "--output", "s3a://b/p", "--dialect", "hive"]);
    assert_eq!(code, 0);
    assert!(!ddl.contains("projection"), "{ddl}");
    assert!(ddl.ends_with("MSCK REPAIR TABLE vpc_flow_logs;\n"), "{ddl}");
}

/// Captures made with scapy (`tests/dns_tshark.py`: UDP over IPv4 and IPv6, EDNS and client
/// subnets, unanswered queries, responses without a query, fragmented responses sent out of order,
/// pipelined and split TCP messages, junk on port 53), as pcap and pcapng: flowmerge's rows are
/// tshark's queries one for one — client, port, id, name, type, and the joined response's rcode
/// and answer count — and its responses without a query.
#[test]
fn dns_rows_agree_with_tshark_query_by_query() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    let server = raw.join("dns/ns9.example");
    std::fs::create_dir_all(&server).unwrap();
    let run = |args: &[&str]| venv_script("dns_tshark.py", args);
    let captures = [("a.pcap", "7"), ("b.pcapng", "8")];
    let mut made = HashMap::new();
    for (name, seed) in captures {
        let path = server.join(name);
        made.insert(name, run(&["write", path.to_str().unwrap(), seed]));
    }
    let out = tmp.path().join("out");
    let (code, s) = compact(&raw, &out, &[]);
    assert_eq!(code, 0, "{s}");
    let junk: u64 = made.values().map(|m| m["junk"].as_u64().unwrap()).sum();
    assert_eq!(s["records_skipped"], junk, "the junk is skipped, counted");

    let mut args = vec![
        "compare".to_string(),
        out.display().to_string(),
        "dns/ns9.example/".into(),
    ];
    args.extend(
        captures
            .iter()
            .map(|(n, _)| server.join(n).display().to_string()),
    );
    let report = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    for (name, _) in captures {
        let got = &report[format!("dns/ns9.example/{name}")];
        let m = &made[name];
        let n = |k: &str| m[k].as_u64().unwrap();
        let queries = n("udp4") + n("udp6") + n("tcp") + n("unanswered");
        assert!(n("fragmented") > 0 && n("tcp") > 0, "{name}: {m}");
        assert_eq!(
            got["tshark_queries"], queries,
            "{name}: tshark reads them all"
        );
        assert_eq!(got["flowmerge_rows"], queries, "{name}: one row per query");
        assert_eq!(got["only_tshark"], serde_json::json!([]), "{name}");
        assert_eq!(got["only_flowmerge"], serde_json::json!([]), "{name}");
        assert_eq!(got["tshark_orphans"], n("orphans"), "{name}");
        assert_eq!(got["flowmerge_orphans"], n("orphans"), "{name}");
        assert_eq!(got["flowmerge_client_subnet"], n("client_subnet"), "{name}");
    }
}

/// What Spark should read from one table's folder: rows, each column's non-null values, and rows
/// per partition as `--dialect hive` types the path's keys (`year=2026/month=01` → `2026/1`).
#[derive(Debug, Default)]
struct Expected {
    rows: u64,
    non_null: BTreeMap<String, u64>,
    partitions: BTreeMap<String, u64>,
}

fn expected_of(folder: &Path) -> Expected {
    let mut e = Expected::default();
    for file in files(folder)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
    {
        let df = read_parquet(&file);
        e.rows += df.height() as u64;
        for c in df.columns() {
            *e.non_null.entry(c.name().to_string()).or_default() +=
                (df.height() - c.null_count()) as u64;
        }
        let rel = file.parent().unwrap().strip_prefix(folder).unwrap();
        let key = rel
            .components()
            .map(|part| {
                let (_, v) = part.as_os_str().to_str().unwrap().split_once('=').unwrap();
                v.parse::<u64>().map_or(v.to_string(), |n| n.to_string())
            })
            .collect::<Vec<_>>()
            .join("/");
        *e.partitions.entry(key).or_default() += df.height() as u64;
    }
    e
}

/// Spark (the real engine, with its own Hive metastore) reads every table through the DDL
/// `flowmerge ddl` prints: `--dialect hive` as printed, `MSCK REPAIR TABLE` included, and the
/// Athena DDL with its partitions added by hand (Spark ignores projection). Every row, every
/// column's values, and the partition keys as the path spells them.
#[test]
fn spark_reads_every_table_through_flowmerge_ddl() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    generate(
        &raw.join("flows"),
        "--accounts 2 --minutes 7 --records-per-file 40 --profile real",
    );
    generate(
        &raw.join("flows5"),
        "--accounts 1 --minutes 3 --records-per-file 30 --format v5 --start 2026-10-31T23:58:00Z",
    );
    let real = realdata();
    let trails = raw.join("trails");
    std::fs::create_dir_all(&trails).unwrap();
    for f in [
        "cloudtrail/cribl/derived-from-cribl/650992545562_CloudTrail_us-west-2_20220103T1915Z_LwA4RXRzImDPnQAL.json.gz",
        "cloudtrail/loki/cloudtrail-log-file.json.gz",
        "cloudtrail/stratus-red-team/aws.credential-access.ec2-get-password-data.json",
        "cloudtrail/stratus-red-team/aws.execution.ssm-send-command.json",
    ] {
        let name = Path::new(f).file_name().unwrap();
        std::fs::copy(real.join(f), trails.join(name)).unwrap();
    }
    for (server, captures) in [
        ("ns1.example", "dns_pcap/dnscap"),
        ("ns2.example", "dns_pcap/pcapplusplus"),
    ] {
        let dir = raw.join("dns").join(server);
        std::fs::create_dir_all(&dir).unwrap();
        for f in files(&real.join(captures)) {
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
    }
    let out = tmp.path().join("out");
    let (code, s) = compact(&raw, &out, &[]);
    assert_eq!(code, 0, "{s}");
    // Every partition rolled up (flow logs of two formats into one file), and CloudTrail's
    // months into their own table.
    let (code, _, err) = flowmerge(&["rollup", out.to_str().unwrap(), "--min-age", "0s"]);
    assert_eq!(code, 0, "{err}");
    let months = tmp.path().join("months");
    let (code, _, err) = flowmerge(&[
        "rollup",
        out.to_str().unwrap(),
        "--level",
        "month",
        "--into",
        months.to_str().unwrap(),
        "--min-age",
        "0s",
    ]);
    assert_eq!(code, 0, "{err}");

    let tables = [
        ("flows", "vpcflow", &out, "vpcflowlogs", false),
        ("trails", "cloudtrail", &out, "cloudtrail", false),
        ("dns", "dns", &out, "dns", false),
        ("months", "cloudtrail", &months, "cloudtrail_monthly", true),
    ];
    let specs: Vec<String> = tables
        .iter()
        .map(|(name, source, prefix, _, monthly)| {
            let monthly = if *monthly { ":monthly" } else { "" };
            format!("{name}:{source}:{}{monthly}", prefix.display())
        })
        .collect();
    let mut args = vec![env!("CARGO_BIN_EXE_flowmerge")];
    args.extend(specs.iter().map(String::as_str));
    let report = venv_script("spark_ddl.py", &args);

    for (name, _, prefix, folder, _) in tables {
        let want = expected_of(&prefix.join(folder));
        assert!(want.rows > 0, "{name}: the test wrote rows");
        for dialect in ["hive", "athena"] {
            let got = &report[format!("{name}/{dialect}")];
            let at = format!("{name} through the {dialect} DDL");
            assert_eq!(got["rows"], want.rows, "{at}: rows");
            assert_eq!(got["scanned"], want.rows, "{at}: rows of a full scan");
            let declared = got["non_null"].as_object().unwrap();
            for (column, n) in declared {
                let written = want.non_null.get(column).copied().unwrap_or(0);
                assert_eq!(n, &serde_json::json!(written), "{at}: values of {column}");
            }
            for column in want.non_null.keys() {
                assert!(declared.contains_key(column), "{at}: {column} declared");
            }
        }
        let partitions: BTreeMap<String, u64> =
            serde_json::from_value(report[format!("{name}/hive")]["partitions"].clone()).unwrap();
        assert_eq!(partitions, want.partitions, "{name}: rows per partition");
    }
}

#[test]
fn a_batch_larger_than_one_wave_conserves() {
    // 2 accounts × 5 minutes × 15 objects = 150 objects in one window: more than one wave
    // (96 objects), so the running result is merged with later waves' raw frames.
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    generate(
        &raw,
        "--accounts 2 --minutes 5 --files-per-minute 15 --records-per-file 40",
    );
    let out = tmp.path().join("out");
    let (code, s) = compact(&raw, &out, &[]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["batches"], 1);
    assert_eq!(s["objects"], 150);
    assert_conserved(&files(&raw), &out);
}

/// `year=YYYY/month=MM/day=DD/hour=HH`, as the projection's format spells it.
fn regex_like_hour(p: &str) -> bool {
    let parts: Vec<&str> = p.split('/').collect();
    let want = [("year=", 4), ("month=", 2), ("day=", 2), ("hour=", 2)];
    parts.len() == 4
        && parts.iter().zip(want).all(|(part, (name, digits))| {
            part.strip_prefix(name)
                .is_some_and(|d| d.len() == digits && d.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// The CDK app builds its Glue tables from infra-cdk/lib/<source>-table.json: each must be what
/// `flowmerge ddl --format json` prints, and say what the SQL DDL says.
#[test]
fn the_cdk_table_definitions_match_flowmerge_ddl() {
    for (source, monthly, file) in [
        ("vpcflow", None, "vpcflow"),
        ("cloudtrail", None, "cloudtrail"),
        ("dns", None, "dns"),
        ("cloudtrail", Some("--monthly"), "cloudtrail-monthly"),
    ] {
        let mut args = vec![
            "ddl", "--output", "s3://b/p", "--source", source, "--format", "json",
        ];
        args.extend(monthly);
        let (code, json, err) = flowmerge(&args);
        assert_eq!(code, 0, "{err}");
        let table_json = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../../infra-cdk/lib/{file}-table.json"));
        let file = std::fs::read_to_string(&table_json).unwrap();
        let spec: serde_json::Value = serde_json::from_str(&file).unwrap();
        let printed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            spec,
            printed,
            "{file}: regenerate with `flowmerge ddl --output s3://b/p --source {source} {} --format json > infra-cdk/lib/{file}-table.json`",
            monthly.unwrap_or_default()
        );
        let mut args = vec!["ddl", "--output", "s3://b/p", "--source", source];
        args.extend(monthly);
        let (code, ddl, err) = flowmerge(&args);
        assert_eq!(code, 0, "{err}");
        let columns: Vec<(String, String)> = ddl
            .lines()
            .filter_map(|l| l.strip_prefix("  `"))
            .filter_map(|l| l.split_once("` "))
            .map(|(c, t)| (c.to_owned(), t.trim_end_matches(',').to_owned()))
            .collect();
        let expected: Vec<(String, String)> = spec["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_owned(),
                    c["type"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(columns, expected);
        let location = format!("s3://b/p/{}/", spec["dataset"].as_str().unwrap());
        for (k, v) in spec["parameters"].as_object().unwrap() {
            let v = v.as_str().unwrap().replace("${location}", &location);
            let quoted = match v.contains('\'') {
                true => format!("\"{v}\""),
                false => format!("'{v}'"),
            };
            assert!(
                ddl.contains(&format!("'{k}' = {quoted}")),
                "{k} = {v} not in:\n{ddl}"
            );
        }
        let partitions: Vec<String> = spec["partitionKeys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("`{}` string", p["name"].as_str().unwrap()))
            .collect();
        assert!(
            ddl.contains(&format!("PARTITIONED BY ({})", partitions.join(", "))),
            "{ddl}"
        );
        assert!(!ddl.contains("2099"), "{ddl}");
    }
}

/// The README's table of the workers' variables is the one the code prints, verbatim.
#[test]
fn readme_documents_the_workers_variables_as_the_code_defines_them() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for bin in [
        env!("CARGO_BIN_EXE_flowmerge-mapper"),
        env!("CARGO_BIN_EXE_flowmerge-merger"),
    ] {
        let out = std::process::Command::new(bin)
            .arg("--print-config-reference")
            .output()
            .unwrap();
        assert!(out.status.success());
        let table = String::from_utf8(out.stdout).unwrap();
        assert!(table.lines().count() > 10, "{table}");
        assert!(
            readme.contains(&table),
            "README.md lacks the table {bin} prints:\n{table}"
        );
    }
}

/// One CloudTrail record as a generator would write it.
fn trail_event(id: &str, time: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut e = serde_json::json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "AssumedRole", "principalId": "AROA:sess", "arn": format!("arn:aws:sts::111122223333:assumed-role/r/{id}"),
                          "accountId": "111122223333", "sessionContext": {"attributes": {"mfaAuthenticated": "false"}}},
        "eventTime": time,
        "eventSource": "s3.amazonaws.com",
        "eventName": "GetObject",
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-cli/2 Ünïcødé 日本",
        "requestParameters": {"bucketName": "b", "key": format!("k/{id}"), "n": [1, 2.5, null]},
        "responseElements": null,
        "requestID": format!("req-{id}"),
        "eventID": id,
        "readOnly": true,
        "eventType": "AwsApiCall",
        "managementEvent": false,
        "recipientAccountId": "111122223333",
        "eventCategory": "Data",
    });
    if let (Some(m), serde_json::Value::Object(x)) = (e.as_object_mut(), extra) {
        m.extend(x);
    }
    e
}

fn gz(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, text.as_bytes()).unwrap();
    enc.finish().unwrap()
}

#[test]
fn cloudtrail_beside_flow_logs_lands_once_per_event_in_its_own_table() {
    use serde_json::json;
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    generate(&raw, "--accounts 2 --minutes 3 --records-per-file 40");
    let flow_files = files(&raw);
    let trail = raw.join("AWSLogs/o-exampleorg1/111122223333/CloudTrail/eu-west-1/2022/01/04");
    std::fs::create_dir_all(&trail).unwrap();
    let name = |stamp: &str, tag: &str| {
        trail.join(format!(
            "111122223333_CloudTrail_eu-west-1_{stamp}_{tag}.json.gz"
        ))
    };
    // Late events of the day before, a duplicate delivered in a second file of the same window,
    // string booleans, an unknown top-level field, unicode.
    let a = json!({"Records": [
        trail_event("e-late", "2022-01-03T23:59:58Z", json!({})),
        trail_event("e-dup", "2022-01-04T00:01:00Z", json!({})),
        trail_event("e-str", "2022-01-04T00:02:00Z", json!({"readOnly": "false", "brandNewField": {"ü": [1]}})),
    ]});
    let b = json!({"Records": [
        trail_event("e-dup", "2022-01-04T00:01:00Z", json!({})),
        trail_event("e-b", "2022-01-04T00:03:00Z", json!({"errorCode": "AccessDenied"})),
    ]});
    std::fs::write(
        name("20220104T0005Z", "AAAAAAAAAAAAAAAA"),
        gz(&a.to_string()),
    )
    .unwrap();
    std::fs::write(
        name("20220104T0005Z", "BBBBBBBBBBBBBBBB"),
        gz(&b.to_string()),
    )
    .unwrap();
    // Pretty-printed and plain, in the same window.
    let pretty = serde_json::to_string_pretty(&json!({"Records": [
        trail_event("e-pretty", "2022-01-04T00:04:00Z", json!({}))
    ]}))
    .unwrap();
    std::fs::write(
        name("20220104T0005Z", "CCCCCCCCCCCCCCCC").with_extension(""),
        &pretty,
    )
    .unwrap();
    // A digest file beside the logs: not data.
    let digest =
        raw.join("AWSLogs/o-exampleorg1/111122223333/CloudTrail-Digest/eu-west-1/2022/01/04");
    std::fs::create_dir_all(&digest).unwrap();
    std::fs::write(
        digest.join("111122223333_CloudTrail-Digest_eu-west-1_t_20220104T0100Z.json.gz"),
        gz(r#"{"awsAccountId":"111122223333","digestStartTime":"2022-01-04T00:00:00Z","logFiles":[]}"#),
    )
    .unwrap();
    // A record without eventID: that object is quarantined, the rest lands.
    std::fs::write(
        name("20220104T0005Z", "DDDDDDDDDDDDDDDD"),
        gz(r#"{"Records":[{"eventTime":"2022-01-04T00:00:00Z"}]}"#),
    )
    .unwrap();

    let out = tmp.path().join("out");
    let (code, s) = compact(&raw, &out, &[]);
    assert_eq!(code, 3, "committed, with an object quarantined: {s}");
    assert_eq!(s["objects_skipped"], 1, "{s}");
    assert_eq!(s["objects_quarantined"], 1, "{s}");
    assert!(
        s["quarantined"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("DDDDDDDDDDDDDDDD.json.gz:1: record 1: no eventID"),
        "{s}"
    );
    // Flow logs: unchanged, in their own table.
    assert_conserved(&flow_files, &out);

    let trail_files: Vec<_> = files(&out.join("cloudtrail"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for f in &trail_files {
        let day = f
            .parent()
            .unwrap()
            .strip_prefix(out.join("cloudtrail"))
            .unwrap();
        let df = read_parquet(f);
        for row in 0..df.height() {
            let get = |c: &str| text_of(df.column(c).unwrap().get(row).unwrap());
            let id = get("eventid");
            *seen.entry(id.clone()).or_default() += 1;
            let time = df.column("eventtime").unwrap();
            assert!(
                matches!(time.dtype(), DataType::Datetime(TimeUnit::Microseconds, Some(tz)) if tz.as_str() == "UTC"),
                "eventtime is a UTC timestamp: {}",
                time.dtype()
            );
            let us = time
                .cast(&DataType::Int64)
                .unwrap()
                .get(row)
                .unwrap()
                .extract::<i64>()
                .unwrap();
            let t = chrono::DateTime::from_timestamp_micros(us).unwrap();
            assert_eq!(
                day.to_str().unwrap(),
                t.format("year=%Y/month=%m/day=%d").to_string(),
                "{id} in the day of its eventtime"
            );
            assert_eq!(get("useragent"), "aws-cli/2 Ünïcødé 日本");
            assert_eq!(
                get("useridentity_arn"),
                format!("arn:aws:sts::111122223333:assumed-role/r/{id}")
            );
            let params: serde_json::Value =
                serde_json::from_str(&get("requestparameters")).unwrap();
            assert_eq!(
                params,
                json!({"bucketName": "b", "key": format!("k/{id}"), "n": [1, 2.5, null]})
            );
            let readonly = df.column("readonly").unwrap().get(row).unwrap();
            assert_eq!(readonly, AnyValue::Boolean(id != "e-str"), "{id}");
            let other = df.column("otherfields").unwrap().get(row).unwrap();
            match id.as_str() {
                "e-str" => assert_eq!(
                    serde_json::from_str::<serde_json::Value>(&text_of(other)).unwrap(),
                    json!({"brandNewField": {"ü": [1]}})
                ),
                _ => assert_eq!(other, AnyValue::Null, "{id}"),
            }
        }
    }
    let mut ids: Vec<_> = seen.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            ("e-b", 1),
            ("e-dup", 1),
            ("e-late", 1),
            ("e-pretty", 1),
            ("e-str", 1)
        ],
        "every event exactly once"
    );
    // A real engine reads the table: DuckDB over the files, with an AWS-documented style query
    // (access denied by service and call) and a JSON column reached into.
    let python = Path::new(&test_venv()).join("bin/python");
    let query = format!(
        "import duckdb; t = \"read_parquet('{}/cloudtrail/**/*.parquet', hive_partitioning=true)\"; \
         print(duckdb.sql(f\"SELECT eventsource, eventname, count(*) FROM {{t}} WHERE errorcode = 'AccessDenied' GROUP BY ALL\").fetchall()); \
         print(duckdb.sql(f\"SELECT count(*), count(DISTINCT eventid), epoch(min(eventtime))::BIGINT, \
           max(json_extract_string(requestparameters, '$.bucketName')), sum(readonly::INT) FROM {{t}}\").fetchall())",
        out.display()
    );
    let duck = Command::new(&python).args(["-c", &query]).output().unwrap();
    let text = String::from_utf8_lossy(&duck.stdout);
    assert!(
        duck.status.success(),
        "{}",
        String::from_utf8_lossy(&duck.stderr)
    );
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "[('s3.amazonaws.com', 'GetObject', 1)]",
            "[(5, 5, 1641254398, 'b', 4)]"
        ],
        "{text}"
    );

    // A second run finds nothing new.
    let (_, s) = compact(&raw, &out, &[]);
    assert_eq!(s["batches"].as_u64(), Some(0), "{s}");
}
