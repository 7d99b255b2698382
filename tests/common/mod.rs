//! Helpers shared by the end-to-end tests: running the binaries, reading output, and an
//! independent oracle that parses raw text on its own (not with flowmerge's parser).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use polars::prelude::*;
use serde_json::Value;

pub fn flowmerge(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flowmerge"))
        .args(args)
        .env_remove("FLOWMERGE_FAULT")
        .output()
        .expect("run flowmerge");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The venv with the tests' Python tools (moto, DuckDB), as scripts/test.sh installs it.
pub fn test_venv() -> String {
    std::env::var("FLOWMERGE_TEST_VENV").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/flowmerge/venv-test")
    })
}

/// The real public samples: `../shared/realdata` beside the clone, or `FLOWMERGE_REALDATA`.
pub fn realdata() -> PathBuf {
    let dir = std::env::var_os("FLOWMERGE_REALDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/realdata")
        });
    assert!(dir.is_dir(), "real samples not found at {}", dir.display());
    dir
}

/// `flowmerge gen DIR` with whitespace-separated extra arguments.
pub fn generate(dir: &Path, args: &str) {
    let d = dir.to_str().unwrap();
    let mut all = vec!["gen", d];
    all.extend(args.split_whitespace());
    let (code, out, err) = flowmerge(&all);
    assert_eq!(code, 0, "gen failed: {out}{err}");
}

/// Runs compact with --json; returns exit code and the summary.
pub fn compact(input: &Path, output: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![
        "compact",
        input.to_str().unwrap(),
        output.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = flowmerge(&args);
    let summary = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("summary is not JSON ({e}): {out}\nstderr: {err}"));
    (code, summary)
}

pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

pub fn parquet_files(out: &Path) -> Vec<PathBuf> {
    files(&out.join("vpcflowlogs"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect()
}

pub const METRICS: &[&str] = &[
    "packets",
    "bytes",
    "start",
    "end",
    "tcp_flags",
    "packets_lost_no_route",
    "packets_lost_blackhole",
    "packets_lost_mtu_exceeded",
    "packets_lost_ttl_expired",
    "merged_records",
];

pub type Key = (String, Vec<(String, String)>);

/// What the contract says survives a merge, per (window, key): sums of packets, bytes and
/// records, min(start), max(end), bit-or(tcp_flags) — each `None` while every value is null.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct Totals {
    pub packets: Option<i128>,
    pub bytes: Option<i128>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub tcp_flags: Option<i64>,
    pub records: i64,
}

fn fold<T: Copy>(a: Option<T>, b: Option<T>, f: impl Fn(T, T) -> T) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

impl Totals {
    /// Folds another record (or another file's row) of the same key into this one.
    pub fn add(&mut self, o: &Totals) {
        self.packets = fold(self.packets, o.packets, |a, b| a + b);
        self.bytes = fold(self.bytes, o.bytes, |a, b| a + b);
        self.start = fold(self.start, o.start, i64::min);
        self.end = fold(self.end, o.end, i64::max);
        self.tcp_flags = fold(self.tcp_flags, o.tcp_flags, |a, b| a | b);
        self.records += o.records;
    }
}

/// The 5-minute window stamp of an AWS object name, by string arithmetic.
pub fn raw_window(name: &str) -> String {
    let i = name.find("Z_").expect("timestamp in name") - 13;
    let stamp = &name[i..i + 14];
    let minute: u32 = stamp[11..13].parse().unwrap();
    format!("{}{:02}Z", &stamp[..11], minute / 5 * 5)
}

/// Independent oracle: gunzip, split on spaces, key by every non-metric field.
pub fn oracle(raw_files: &[PathBuf]) -> HashMap<Key, Totals> {
    let mut m: HashMap<Key, Totals> = HashMap::new();
    for f in raw_files {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(f).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        let mut lines = text.lines();
        let header: Vec<String> = lines
            .next()
            .unwrap()
            .split(' ')
            .map(|h| h.replace('-', "_"))
            .collect();
        let window = raw_window(f.file_name().unwrap().to_str().unwrap());
        for line in lines {
            let vals: Vec<&str> = line.split(' ').collect();
            assert_eq!(vals.len(), header.len());
            let mut key: Vec<(String, String)> = Vec::new();
            let mut t = Totals {
                records: 1,
                ..Default::default()
            };
            // "-" is null: it parses as None and stays None.
            for (h, v) in header.iter().zip(&vals) {
                match h.as_str() {
                    "packets" => t.packets = v.parse().ok(),
                    "bytes" => t.bytes = v.parse().ok(),
                    "start" => t.start = v.parse().ok(),
                    "end" => t.end = v.parse().ok(),
                    "tcp_flags" => t.tcp_flags = v.parse().ok(),
                    h if METRICS.contains(&h) => {}
                    // A null ("-") key and an absent field are the same null column.
                    _ if *v == "-" => {}
                    h => key.push((h.to_string(), v.to_string())),
                }
            }
            key.sort();
            m.entry((window.clone(), key)).or_default().add(&t);
        }
    }
    m
}

pub fn read_parquet(path: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}

pub fn text_of(v: AnyValue) -> String {
    match v {
        AnyValue::Null => "-".into(),
        AnyValue::String(s) => s.into(),
        AnyValue::StringOwned(s) => s.to_string(),
        // Displaying a zoned time needs polars' `timezones` feature: the number says as much.
        AnyValue::Datetime(t, unit, _) | AnyValue::DatetimeOwned(t, unit, _) => {
            format!("{t}{unit}")
        }
        other => other.to_string(),
    }
}

/// The same map from the output files; a key appearing twice in one window is a failure.
pub fn observed(out: &Path) -> HashMap<Key, Totals> {
    let mut m = HashMap::new();
    for f in parquet_files(out) {
        // The window is the `window_start` column; files of earlier releases lack it and name
        // their window in the file name instead.
        let named = f.file_name().unwrap().to_str().unwrap()[..14].to_string();
        let df = read_parquet(&f);
        let cols = df.columns();
        for i in 0..df.height() {
            let mut key = Vec::new();
            let mut t = Totals::default();
            let mut window = named.clone();
            for c in cols {
                let name = c.name().as_str();
                let v = c.get(i).unwrap();
                let number = |v: &AnyValue| (!v.is_null()).then(|| v.extract::<i64>().unwrap());
                match name {
                    "packets" => t.packets = number(&v).map(i128::from),
                    "bytes" => t.bytes = number(&v).map(i128::from),
                    "start" => t.start = number(&v),
                    "end" => t.end = number(&v),
                    "tcp_flags" => t.tcp_flags = number(&v),
                    "merged_records" => t.records = v.extract::<i64>().unwrap(),
                    "window_start" => {
                        window = chrono::DateTime::from_timestamp(v.extract::<i64>().unwrap(), 0)
                            .unwrap()
                            .format("%Y%m%dT%H%MZ")
                            .to_string()
                    }
                    n if METRICS.contains(&n) => {}
                    n => {
                        let v = text_of(v);
                        if v != "-" {
                            key.push((n.to_string(), v));
                        }
                    }
                }
            }
            key.sort();
            let k = (window.clone(), key);
            // Two files of one window (an incremental run) may hold the same key: fold them.
            m.entry(k).or_insert_with(Totals::default).add(&t);
        }
    }
    m
}

pub fn assert_conserved(raw: &[PathBuf], out: &Path) {
    let expected = oracle(raw);
    let got = observed(out);
    assert_eq!(got.len(), expected.len(), "distinct (window, key) count");
    for (k, t) in &expected {
        assert_eq!(got.get(k), Some(t), "totals of {k:?}");
    }
}
