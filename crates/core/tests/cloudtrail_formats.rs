//! CloudTrail reading, checked from outside the module: every real sample is read, and every
//! event is rebuilt from its output row and compared with the record as delivered.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use flowmerge_core::formats::cloudtrail::{self, COLUMNS, Kind, OTHER_FIELDS, read_object};
use flowmerge_core::formats::decode::DecodeLimits;
use polars::prelude::*;
use serde_json::{Map, Value};

fn realdata() -> PathBuf {
    common::realdata("cloudtrail")
}

/// The records of a file as its producer wrote them, read independently of the module.
fn records_of(text: &str) -> Vec<Value> {
    let text = text.trim_start_matches('\u{feff}');
    let mut out = Vec::new();
    for v in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match v.unwrap() {
            Value::Object(mut m) if m.contains_key("Records") => {
                if let Some(Value::Array(r)) = m.remove("Records") {
                    out.extend(r);
                }
            }
            Value::Array(r) => out.extend(r),
            other => out.push(other),
        }
    }
    out
}

fn gunzip(raw: &[u8]) -> String {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(raw), &mut s).unwrap();
        s
    } else {
        String::from_utf8(raw.to_vec()).unwrap()
    }
}

/// Rebuilds the records from the output rows: typed columns back to their fields, JSON columns
/// parsed, `otherfields` merged in. Booleans become JSON booleans (the strings "true"/"false" of
/// some exports are normalised).
fn rebuild(df: &DataFrame) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for row in 0..df.height() {
        let mut m = Map::new();
        for c in COLUMNS {
            let v = df.column(c.column).unwrap().get(row).unwrap();
            if matches!(v, AnyValue::Null) {
                continue;
            }
            let value = match (c.kind, v) {
                (Kind::Text, AnyValue::String(s)) => Value::String(s.to_owned()),
                (Kind::Json, AnyValue::String(s)) => serde_json::from_str(s).unwrap(),
                (Kind::Bool, AnyValue::Boolean(b)) => Value::Bool(b),
                (Kind::Time, AnyValue::Datetime(us, TimeUnit::Microseconds, _)) => {
                    let t = chrono::DateTime::from_timestamp_micros(us).unwrap();
                    Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                }
                (k, v) => panic!("column {} ({k:?}) holds {v:?}", c.column),
            };
            m.insert(c.field.to_owned(), value);
        }
        if let AnyValue::String(s) = df.column(OTHER_FIELDS).unwrap().get(row).unwrap() {
            let Value::Object(other) = serde_json::from_str(s).unwrap() else {
                panic!("otherfields is not an object: {s}")
            };
            m.extend(other);
        }
        let id = m["eventID"].as_str().unwrap().to_owned();
        out.insert(id, Value::Object(m));
    }
    out
}

/// Booleans written as strings by some exports, as the reader types them.
fn normalised(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        for field in ["readOnly", "managementEvent"] {
            if let Some(Value::String(s)) = m.get(field) {
                match s.to_ascii_lowercase().as_str() {
                    "true" => m.insert(field.into(), Value::Bool(true)),
                    "false" => m.insert(field.into(), Value::Bool(false)),
                    _ => None,
                };
            }
        }
        m.retain(|_, v| !v.is_null());
    }
    v
}

#[test]
fn every_real_cloudtrail_sample_is_read_and_rebuilt_from_its_rows() {
    let dir = realdata();
    let cases: &[(&str, usize)] = &[
        ("loki/cloudtrail-log-file.json.gz", 2),
        (
            "stratus-red-team/aws.credential-access.ec2-get-password-data.json",
            34,
        ),
        ("stratus-red-team/aws.execution.ssm-send-command.json", 56),
        ("cribl/zyNWSr.records.ndjson", 205),
        (
            "cribl/derived-from-cribl/650992545562_CloudTrail_us-west-2_20220103T1915Z_LwA4RXRzImDPnQAL.json.gz",
            21,
        ),
    ];
    for (file, records) in cases {
        let raw = std::fs::read(dir.join(file)).unwrap();
        let read =
            read_object(file, &raw, &DecodeLimits::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.events.len(), *records, "{file}");
        let originals = records_of(&gunzip(&raw));
        let mut by_id: HashMap<String, Value> = HashMap::new();
        for r in originals {
            let id = r["eventID"].as_str().unwrap().to_owned();
            by_id.entry(id).or_insert(r);
        }
        let days = cloudtrail::merge(vec![(file.to_string(), read.events)]).unwrap();
        let mut rebuilt = HashMap::new();
        for (day, df) in &days {
            assert!(day.starts_with("year="), "{day}");
            rebuilt.extend(rebuild(df));
        }
        assert_eq!(rebuilt.len(), by_id.len(), "{file}: each eventID once");
        for (id, original) in by_id {
            assert_eq!(
                rebuilt.get(&id),
                Some(&normalised(original)),
                "{file}: event {id} rebuilt from its row"
            );
        }
    }
    // Cribl's own event wrapper is not CloudTrail: an error naming the object, not a crash.
    let wrapper = std::fs::read(dir.join("cribl/zyNWSr.json")).unwrap();
    let err = read_object("cribl/zyNWSr.json", &wrapper, &DecodeLimits::default())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("cribl/zyNWSr.json:"), "{err}");
}

#[test]
fn truncated_gzip_and_hostile_input_are_errors() {
    let raw = std::fs::read(realdata().join("loki/cloudtrail-log-file.json.gz")).unwrap();
    let err = read_object("t.json.gz", &raw[..raw.len() / 2], &DecodeLimits::default())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("t.json.gz"), "{err}");
    // Deeply nested JSON is refused by the parser's recursion limit, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(read_object("deep.json", deep.as_bytes(), &DecodeLimits::default()).is_err());
}
