//! CloudTrail: log files as AWS delivers them (`{"Records":[…]}`, gzip) and as they are exported
//! (a bare JSON array, NDJSON, pretty-printed or compact) → one row per event, columns named as in
//! AWS's Athena CloudTrail table.
//!
//! Nothing is lost: scalars the catalogue types are typed (`eventtime` a UTC timestamp,
//! `readonly` and `managementevent` booleans, the rest strings), nested values are kept as JSON
//! text that parses back to the original value, and any top-level field the catalogue does not
//! know — or a value whose JSON type does not fit its column — is kept in `otherfields`, a JSON
//! object of the original names. Every event can be rebuilt from its row.
//!
//! A batch holds each `eventID` once (CloudTrail delivers at least once): of the copies, the one
//! in the first object by key, first in it, is kept, so the output does not depend on the order
//! objects were read in. Rows are partitioned by the day of their own `eventTime`, and sorted by
//! account, service, event name, time and id for pruning.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use polars::prelude::*;
use serde_json::Value;

use crate::error::ParseError;
use crate::formats::decode::{DecodeLimits, with_text};

/// How a column's value is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A JSON string, kept as it is.
    Text,
    /// Any JSON value, kept as JSON text (objects, arrays).
    Json,
    /// A boolean (JSON `true`/`false`, or the strings "true"/"false" some exports write).
    Bool,
    /// The event's time: a UTC timestamp (microseconds).
    Time,
}

/// A column of the table and the CloudTrail field it holds.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// Column name, as in AWS's Athena CloudTrail table (lower case, no separators).
    pub column: &'static str,
    /// The top-level field of a CloudTrail record ("CloudTrail record contents").
    pub field: &'static str,
    pub kind: Kind,
}

const fn c(column: &'static str, field: &'static str, kind: Kind) -> Column {
    Column {
        column,
        field,
        kind,
    }
}

/// The catalogue, in the column order of AWS's documented Athena table.
pub const COLUMNS: &[Column] = &[
    c("eventversion", "eventVersion", Kind::Text),
    c("useridentity", "userIdentity", Kind::Json),
    c("eventtime", "eventTime", Kind::Time),
    c("eventsource", "eventSource", Kind::Text),
    c("eventname", "eventName", Kind::Text),
    c("awsregion", "awsRegion", Kind::Text),
    c("sourceipaddress", "sourceIPAddress", Kind::Text),
    c("useragent", "userAgent", Kind::Text),
    c("errorcode", "errorCode", Kind::Text),
    c("errormessage", "errorMessage", Kind::Text),
    c("requestparameters", "requestParameters", Kind::Json),
    c("responseelements", "responseElements", Kind::Json),
    c("additionaleventdata", "additionalEventData", Kind::Json),
    c("requestid", "requestID", Kind::Text),
    c("eventid", "eventID", Kind::Text),
    c("resources", "resources", Kind::Json),
    c("eventtype", "eventType", Kind::Text),
    c("apiversion", "apiVersion", Kind::Text),
    c("readonly", "readOnly", Kind::Bool),
    c("recipientaccountid", "recipientAccountId", Kind::Text),
    c("serviceeventdetails", "serviceEventDetails", Kind::Json),
    c("sharedeventid", "sharedEventID", Kind::Text),
    c("vpcendpointid", "vpcEndpointId", Kind::Text),
    c("vpcendpointaccountid", "vpcEndpointAccountId", Kind::Text),
    c("eventcategory", "eventCategory", Kind::Text),
    c("managementevent", "managementEvent", Kind::Bool),
    c(
        "sessioncredentialfromconsole",
        "sessionCredentialFromConsole",
        Kind::Text,
    ),
    c("tlsdetails", "tlsDetails", Kind::Json),
    c("addendum", "addendum", Kind::Json),
    c("edgedevicedetails", "edgeDeviceDetails", Kind::Json),
];

/// Convenience columns from `userIdentity`, for the filters security teams use most:
/// `(column, field of userIdentity)`. Their values are also in `useridentity`.
pub const IDENTITY_COLUMNS: &[(&str, &str)] = &[
    ("useridentity_type", "type"),
    ("useridentity_arn", "arn"),
    ("useridentity_accountid", "accountId"),
    ("useridentity_principalid", "principalId"),
];

/// JSON object of the top-level fields the catalogue does not hold (original names).
pub const OTHER_FIELDS: &str = "otherfields";

/// The dataset folder under the output prefix.
pub const DATASET: &str = "cloudtrail";

/// Every column of the output, in order, with its Athena type.
pub fn athena_columns() -> Vec<(&'static str, &'static str)> {
    COLUMNS
        .iter()
        .map(|c| {
            let ty = match c.kind {
                Kind::Text | Kind::Json => "string",
                Kind::Bool => "boolean",
                Kind::Time => "timestamp",
            };
            (c.column, ty)
        })
        .chain(IDENTITY_COLUMNS.iter().map(|(c, _)| (*c, "string")))
        .chain([(OTHER_FIELDS, "string")])
        .collect()
}

/// Event times outside these years are errors, not partitions (a unit mix-up, a zero time).
const FIRST_YEAR: i32 = 1970;
const LAST_YEAR: i32 = 2200;

/// One value of a row.
#[derive(Clone, Debug, PartialEq)]
enum Cell {
    Null,
    Str(String),
    Bool(bool),
}

/// One event, typed by the catalogue.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub event_id: String,
    /// `eventTime`, microseconds since the Unix epoch (UTC).
    pub time_us: i64,
    /// One cell per column of [`COLUMNS`] (except `eventtime`), [`IDENTITY_COLUMNS`] and
    /// `otherfields`, in that order.
    cells: Vec<Cell>,
}

impl Event {
    /// The value of a text column, for sorting.
    fn text(&self, column: usize) -> &str {
        match &self.cells[column] {
            Cell::Str(s) => s,
            _ => "",
        }
    }

    /// `year=YYYY/month=MM/day=DD` of the event's time.
    pub fn partition(&self) -> String {
        let t = DateTime::<Utc>::from_timestamp_micros(self.time_us).unwrap_or_default();
        format!(
            "year={:04}/month={:02}/day={:02}",
            t.year(),
            t.month(),
            t.day()
        )
    }
}

/// What an object held.
#[derive(Debug, Default)]
pub struct ReadObject {
    pub events: Vec<Event>,
    /// The object is JSON but not CloudTrail records (a digest file, another JSON document):
    /// skipped, not an error.
    pub skipped: bool,
    pub decoded_bytes: u64,
}

/// Reads one object: gzip or plain, a Records file, a JSON array, or NDJSON. A malformed object
/// is an error naming the object and the line (and the record, for a record that lacks what
/// every event has).
pub fn read_object(
    source: &str,
    raw: &[u8],
    limits: &DecodeLimits,
) -> Result<ReadObject, ParseError> {
    with_text(source, raw, limits, |text| {
        let mut out = read_text(source, text)?;
        out.decoded_bytes = text.len() as u64;
        Ok(out)
    })
}

fn read_text(source: &str, text: &[u8]) -> Result<ReadObject, ParseError> {
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    let mut out = ReadObject::default();
    let mut documents = 0usize;
    let mut not_events = 0usize;
    let mut stream = serde_json::Deserializer::from_slice(text).into_iter::<Value>();
    let mut lines = LineCounter::default();
    loop {
        let start = stream.byte_offset();
        let next = stream.next();
        let line = lines.line_at(text, first_non_space(text, start));
        let value = match next {
            None => break,
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                return Err(ParseError::at(
                    source,
                    e.line().max(1),
                    format!("invalid JSON: {e}"),
                ));
            }
        };
        documents += 1;
        let at = |record: Option<usize>, reason: String| {
            let reason = match record {
                Some(r) => format!("record {r}: {reason}"),
                None => reason,
            };
            ParseError::at(source, line, reason)
        };
        match value {
            Value::Object(mut map) => {
                if let Some(records) = map.remove("Records") {
                    let Value::Array(records) = records else {
                        return Err(at(None, "\"Records\" is not an array".into()));
                    };
                    for (i, r) in records.into_iter().enumerate() {
                        out.events.push(event(r).map_err(|e| at(Some(i + 1), e))?);
                    }
                } else if map.contains_key("eventID") || map.contains_key("eventTime") {
                    // One event per line (NDJSON), or one pretty-printed event.
                    out.events
                        .push(event(Value::Object(map)).map_err(|e| at(None, e))?);
                } else {
                    // A digest file, or some other JSON document: not CloudTrail records.
                    not_events += 1;
                }
            }
            Value::Array(records) => {
                for (i, r) in records.into_iter().enumerate() {
                    out.events.push(event(r).map_err(|e| at(Some(i + 1), e))?);
                }
            }
            other => {
                return Err(at(
                    None,
                    format!(
                        "expected a JSON object or array, found {}",
                        json_type(&other)
                    ),
                ));
            }
        }
    }
    out.skipped = documents > 0 && not_events == documents;
    Ok(out)
}

/// 1-based line of byte offsets met in increasing order, counted incrementally.
#[derive(Default)]
struct LineCounter {
    offset: usize,
    line: usize,
}

impl LineCounter {
    fn line_at(&mut self, text: &[u8], offset: usize) -> usize {
        let offset = offset.min(text.len());
        if offset >= self.offset {
            self.line += memchr::memchr_iter(b'\n', &text[self.offset..offset]).count();
            self.offset = offset;
        }
        self.line + 1
    }
}

fn first_non_space(text: &[u8], from: usize) -> usize {
    text[from.min(text.len())..]
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(text.len(), |p| from + p)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Types one record by the catalogue.
fn event(record: Value) -> Result<Event, String> {
    let Value::Object(mut map) = record else {
        return Err(format!("expected an object, found {}", json_type(&record)));
    };
    let event_id = match map.get("eventID") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(other) => return Err(format!("eventID is {}, not an id", json_type(other))),
        None => return Err("no eventID".into()),
    };
    let (time_us, canonical) = match map.get("eventTime") {
        Some(Value::String(s)) => {
            let t = parse_time(s).map_err(|e| format!("eventID {event_id}: eventTime {e}"))?;
            (
                t.timestamp_micros(),
                *s == t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            )
        }
        Some(other) => {
            return Err(format!(
                "eventID {event_id}: eventTime is {}, not a time",
                json_type(other)
            ));
        }
        None => return Err(format!("eventID {event_id}: no eventTime")),
    };
    let identity: Vec<Cell> = IDENTITY_COLUMNS
        .iter()
        .map(
            |(_, field)| match map.get("userIdentity").and_then(|u| u.get(field)) {
                Some(Value::String(s)) => Cell::Str(s.clone()),
                _ => Cell::Null,
            },
        )
        .collect();
    let mut cells = Vec::with_capacity(COLUMNS.len() + IDENTITY_COLUMNS.len());
    for col in COLUMNS {
        if col.kind == Kind::Time {
            // Kept typed; the original text stays in otherfields only if it is not the
            // canonical RFC 3339 form, so the event can be rebuilt exactly.
            if canonical {
                map.remove(col.field);
            }
            continue;
        }
        let Some(value) = map.remove(col.field) else {
            cells.push(Cell::Null);
            continue;
        };
        let cell = match (col.kind, value) {
            (_, Value::Null) => Cell::Null,
            (Kind::Json, v) => Cell::Str(v.to_string()),
            (Kind::Text, Value::String(s)) => Cell::Str(s),
            (Kind::Bool, Value::Bool(b)) => Cell::Bool(b),
            (Kind::Bool, Value::String(s)) if s.eq_ignore_ascii_case("true") => Cell::Bool(true),
            (Kind::Bool, Value::String(s)) if s.eq_ignore_ascii_case("false") => Cell::Bool(false),
            // A value whose type does not fit its column: kept as it is, in otherfields.
            (_, v) => {
                map.insert(col.field.to_owned(), v);
                Cell::Null
            }
        };
        cells.push(cell);
    }
    cells.extend(identity);
    cells.push(match map.is_empty() {
        true => Cell::Null,
        false => Cell::Str(Value::Object(map).to_string()),
    });
    Ok(Event {
        event_id,
        time_us,
        cells,
    })
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))?
        .with_timezone(&Utc);
    if !(FIRST_YEAR..=LAST_YEAR).contains(&t.year()) {
        return Err(format!(
            "{s:?} is outside the years {FIRST_YEAR}–{LAST_YEAR}"
        ));
    }
    Ok(t)
}

/// The columns rows are sorted by (account, service, name, time, id), in batches and rollups.
pub const SORT_COLUMNS: &[&str] = &[
    "recipientaccountid",
    "eventsource",
    "eventname",
    "eventtime",
    "eventid",
];

/// Events of a batch's objects merged: each `eventID` once, rows grouped by the day of their
/// time and sorted. `objects` pairs each object's key with its events.
pub fn merge(objects: Vec<(String, Vec<Event>)>) -> PolarsResult<Vec<(String, DataFrame)>> {
    let mut objects = objects;
    objects.sort_by(|a, b| a.0.cmp(&b.0));
    let mut merge = Merge::default();
    for (_, events) in objects {
        merge.add(events);
    }
    merge.take_days()
}

/// A batch's events merged as its objects are added, in key order: the first copy of an
/// `eventID` by (object key, position) is kept, whatever order the objects were read in. A
/// batch too large to sort at once takes its days out part by part ([`Merge::take_days`]); the
/// ids seen stay, so a later part never holds an event an earlier one has.
#[derive(Default)]
pub struct Merge {
    seen: HashSet<String>,
    by_day: HashMap<String, Vec<Event>>,
}

impl Merge {
    /// Adds the next object's events (objects in key order).
    pub fn add(&mut self, events: Vec<Event>) {
        for e in events {
            if !self.seen.contains(&e.event_id) {
                self.seen.insert(e.event_id.clone());
                self.by_day.entry(e.partition()).or_default().push(e);
            }
        }
    }

    /// The events kept since the last call, per day (in day order), each day sorted by
    /// [`SORT_COLUMNS`] (stable: ties keep the order they were added in).
    pub fn take_days(&mut self) -> PolarsResult<Vec<(String, DataFrame)>> {
        let (account, source, name) = (
            text_index("recipientaccountid"),
            text_index("eventsource"),
            text_index("eventname"),
        );
        let mut days: Vec<(String, Vec<Event>)> =
            std::mem::take(&mut self.by_day).into_iter().collect();
        days.sort_by(|a, b| a.0.cmp(&b.0));
        days.into_iter()
            .map(|(day, mut events)| {
                events.sort_by(|a, b| {
                    (
                        a.text(account),
                        a.text(source),
                        a.text(name),
                        a.time_us,
                        &a.event_id,
                    )
                        .cmp(&(
                            b.text(account),
                            b.text(source),
                            b.text(name),
                            b.time_us,
                            &b.event_id,
                        ))
                });
                Ok((day, frame(&events)?))
            })
            .collect()
    }
}

/// Index of a column in [`Event::cells`].
fn text_index(column: &str) -> usize {
    COLUMNS
        .iter()
        .filter(|c| c.kind != Kind::Time)
        .position(|c| c.column == column)
        .unwrap_or(0)
}

fn frame(events: &[Event]) -> PolarsResult<DataFrame> {
    let mut columns = Vec::with_capacity(COLUMNS.len() + IDENTITY_COLUMNS.len() + 1);
    let mut cell = 0usize;
    let strings = |cell: usize, name: &str| {
        events
            .iter()
            .map(|e| match &e.cells[cell] {
                Cell::Str(s) => Some(s.as_str()),
                _ => None,
            })
            .collect::<StringChunked>()
            .with_name(name.into())
            .into_column()
    };
    for col in COLUMNS {
        match col.kind {
            Kind::Time => {
                let micros: Int64Chunked = events.iter().map(|e| Some(e.time_us)).collect();
                columns.push(
                    micros
                        .with_name(col.column.into())
                        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                        .into_column(),
                );
                continue;
            }
            Kind::Bool => {
                let values: BooleanChunked = events
                    .iter()
                    .map(|e| match e.cells[cell] {
                        Cell::Bool(b) => Some(b),
                        _ => None,
                    })
                    .collect();
                columns.push(values.with_name(col.column.into()).into_column());
            }
            Kind::Text | Kind::Json => columns.push(strings(cell, col.column)),
        }
        cell += 1;
    }
    for (name, _) in IDENTITY_COLUMNS {
        columns.push(strings(cell, name));
        cell += 1;
    }
    columns.push(strings(cell, OTHER_FIELDS));
    DataFrame::new(events.len(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, time: &str) -> String {
        format!(
            r#"{{"eventVersion":"1.08","eventID":"{id}","eventTime":"{time}","eventSource":"s3.amazonaws.com","eventName":"GetObject","recipientAccountId":"111122223333","readOnly":true,"userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/a","accountId":"111122223333","principalId":"AID"}}}}"#
        )
    }

    #[test]
    fn records_files_arrays_and_ndjson_are_read() {
        let a = ev("a", "2022-01-03T19:10:21Z");
        let b = ev("b", "2022-01-03T19:11:21Z");
        for text in [
            format!(r#"{{"Records":[{a},{b}]}}"#),
            format!("[{a},\n{b}]"),
            format!("{a}\n{b}\n"),
            format!("\u{feff}{{\n  \"Records\": [\n    {a},\n    {b}\n  ]\n}}\n"),
        ] {
            let got = read_object("k", text.as_bytes(), &DecodeLimits::default()).unwrap();
            assert_eq!(got.events.len(), 2, "{text}");
            assert!(!got.skipped);
            assert_eq!(got.events[0].event_id, "a");
        }
    }

    #[test]
    fn digests_and_other_documents_are_skipped() {
        let digest = r#"{"awsAccountId":"111122223333","digestStartTime":"2022-01-03T18:00:00Z","logFiles":[]}"#;
        let got = read_object("d", digest.as_bytes(), &DecodeLimits::default()).unwrap();
        assert!(got.skipped && got.events.is_empty());
        let got = read_object("e", br#"{"Records":[]}"#, &DecodeLimits::default()).unwrap();
        assert!(!got.skipped && got.events.is_empty(), "empty, not skipped");
    }

    #[test]
    fn bad_records_are_errors_with_their_position() {
        let good = ev("a", "2022-01-03T19:10:21Z");
        let no_id = r#"{"eventTime":"2022-01-03T19:10:21Z"}"#;
        let err = read_object(
            "k.json",
            format!("{good}\n{no_id}\n").as_bytes(),
            &DecodeLimits::default(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "k.json:2: no eventID");
        let err = read_object(
            "k.json",
            format!(r#"{{"Records":[{good},{no_id}]}}"#).as_bytes(),
            &DecodeLimits::default(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "k.json:1: record 2: no eventID");
        let old = ev("x", "1969-12-31T23:59:59Z");
        let err = read_object("k", old.as_bytes(), &DecodeLimits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside the years"), "{err}");
        let err = read_object("k", b"{\"Records\":[", &DecodeLimits::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("k:1: invalid JSON"), "{err}");
        let err = read_object("k", b"42", &DecodeLimits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("found a number"), "{err}");
    }

    #[test]
    fn values_are_typed_and_nothing_is_lost() {
        let text = r#"{"eventID":"e","eventTime":"2022-01-03T19:10:21.5Z","readOnly":"false",
            "managementEvent":"maybe","eventName":42,"requestParameters":{"bucketName":"b","n":[1,2]},
            "responseElements":null,"newTopLevelField":{"x":"ü"},"userIdentity":{"type":"Root"}}"#;
        let got = read_object("k", text.as_bytes(), &DecodeLimits::default()).unwrap();
        let e = &got.events[0];
        let idx = |name: &str| {
            COLUMNS
                .iter()
                .filter(|c| c.kind != Kind::Time)
                .position(|c| c.column == name)
                .unwrap()
        };
        assert_eq!(e.cells[idx("readonly")], Cell::Bool(false));
        assert_eq!(e.cells[idx("managementevent")], Cell::Null);
        assert_eq!(e.cells[idx("eventname")], Cell::Null);
        assert_eq!(e.cells[idx("responseelements")], Cell::Null);
        let Cell::Str(params) = &e.cells[idx("requestparameters")] else {
            panic!()
        };
        assert_eq!(
            serde_json::from_str::<Value>(params).unwrap(),
            serde_json::json!({"bucketName":"b","n":[1,2]})
        );
        let Cell::Str(other) = e.cells.last().unwrap() else {
            panic!()
        };
        let other: Value = serde_json::from_str(other).unwrap();
        assert_eq!(
            other,
            serde_json::json!({"managementEvent":"maybe","eventName":42,"newTopLevelField":{"x":"ü"},
                "eventTime":"2022-01-03T19:10:21.5Z"})
        );
        assert_eq!(e.time_us, 1_641_237_021_500_000);
    }

    #[test]
    fn duplicates_are_kept_once_and_rows_split_by_event_day() {
        let a = |t: &str| {
            read_object("x", ev("a", t).as_bytes(), &DecodeLimits::default())
                .unwrap()
                .events
        };
        let late = read_object(
            "y",
            ev("late", "2022-01-02T23:59:59Z").as_bytes(),
            &DecodeLimits::default(),
        )
        .unwrap()
        .events;
        let out = merge(vec![
            ("k2".into(), a("2022-01-03T00:00:01Z")),
            ("k1".into(), [a("2022-01-03T00:00:01Z"), late].concat()),
        ])
        .unwrap();
        let days: Vec<(&str, usize)> = out.iter().map(|(d, f)| (d.as_str(), f.height())).collect();
        assert_eq!(
            days,
            [
                ("year=2022/month=01/day=02", 1),
                ("year=2022/month=01/day=03", 1)
            ]
        );
        let schema = out[0].1.schema();
        assert_eq!(
            schema.get("eventtime"),
            Some(&DataType::Datetime(
                TimeUnit::Microseconds,
                Some(TimeZone::UTC)
            ))
        );
        assert_eq!(schema.len(), athena_columns().len());
    }
}
