//! Decoding what arrives on the raw queue: S3 event notifications (keys URL-encoded, spaces as
//! `+`), the `s3:TestEvent` S3 sends when a notification is configured, EventBridge "Object
//! Created" events delivered through SQS, and either of them wrapped in an SNS envelope.

use percent_encoding::percent_decode_str;
use serde_json::Value;

/// A raw object announced by an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectCreated {
    pub bucket: String,
    /// Decoded key.
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    /// Event time, Unix seconds (the window's fallback when the key carries no timestamp).
    pub event_time: i64,
}

/// Decodes a message body into the objects it announces. Test events and events that are not
/// object creations give none; a body that is not an event at all is an error.
pub fn decode(body: &str) -> Result<Vec<ObjectCreated>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    decode_value(&v)
}

fn decode_value(v: &Value) -> Result<Vec<ObjectCreated>, String> {
    // SNS → SQS fan-out wraps the event as a string in "Message".
    if v["Type"] == "Notification" {
        let inner = v["Message"]
            .as_str()
            .ok_or("SNS notification without Message")?;
        return decode(inner);
    }
    if v["Event"] == "s3:TestEvent" {
        return Ok(Vec::new());
    }
    if let Some(records) = v["Records"].as_array() {
        let mut out = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let name = r["eventName"].as_str().unwrap_or_default();
            if r["eventSource"] != "aws:s3" || !name.starts_with("ObjectCreated:") {
                continue;
            }
            let s3 = &r["s3"];
            let bucket = s3["bucket"]["name"]
                .as_str()
                .ok_or_else(|| format!("Records[{i}]: no s3.bucket.name"))?;
            let raw_key = s3["object"]["key"]
                .as_str()
                .ok_or_else(|| format!("Records[{i}]: no s3.object.key"))?;
            out.push(ObjectCreated {
                bucket: bucket.to_owned(),
                key: decode_key(raw_key).map_err(|e| format!("Records[{i}]: {e}"))?,
                size: s3["object"]["size"].as_u64().unwrap_or(0),
                etag: s3["object"]["eTag"].as_str().map(unquote),
                event_time: time_of(&r["eventTime"]),
            });
        }
        return Ok(out);
    }
    if v["source"] == "aws.s3" {
        if v["detail-type"] != "Object Created" {
            return Ok(Vec::new());
        }
        let d = &v["detail"];
        let bucket = d["bucket"]["name"]
            .as_str()
            .ok_or("EventBridge event without detail.bucket.name")?;
        // EventBridge keys are not URL-encoded.
        let key = d["object"]["key"]
            .as_str()
            .ok_or("EventBridge event without detail.object.key")?;
        return Ok(vec![ObjectCreated {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size: d["object"]["size"].as_u64().unwrap_or(0),
            etag: d["object"]["etag"].as_str().map(unquote),
            event_time: time_of(&v["time"]),
        }]);
    }
    Err("neither an S3 event notification nor an EventBridge S3 event".into())
}

/// S3 notifications encode keys as in an HTML form: `+` is a space, the rest percent-encoded.
pub fn decode_key(raw: &str) -> Result<String, String> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|e| format!("key {raw:?} is not UTF-8 once decoded: {e}"))
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

fn time_of(v: &Value) -> i64 {
    v.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp())
        .unwrap_or_else(|| chrono::Utc::now().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S3_EVENT: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
      "eventTime":"2026-11-01T00:05:10.000Z","eventName":"ObjectCreated:Put",
      "s3":{"bucket":{"name":"raw"},"object":{"key":"AWSLogs/1/vpcflowlogs/a+b%C3%A9%2Bc.log.gz","size":42,"eTag":"0123abc","sequencer":"00"}}},
      {"eventSource":"aws:s3","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"raw"},"object":{"key":"gone"}}}]}"#;

    #[test]
    fn s3_notifications_decode_keys_and_skip_other_events() {
        let objs = decode(S3_EVENT).unwrap();
        assert_eq!(objs.len(), 1);
        let o = &objs[0];
        assert_eq!(o.bucket, "raw");
        assert_eq!(o.key, "AWSLogs/1/vpcflowlogs/a bé+c.log.gz");
        assert_eq!((o.size, o.etag.as_deref()), (42, Some("0123abc")));
        assert_eq!(o.event_time, 1_793_491_510);
    }

    #[test]
    fn test_events_sns_and_eventbridge() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-01T00:00:00Z","Bucket":"raw"}"#;
        assert!(decode(test).unwrap().is_empty());
        let sns = serde_json::json!({"Type": "Notification", "Message": S3_EVENT}).to_string();
        assert_eq!(decode(&sns).unwrap(), decode(S3_EVENT).unwrap());
        let eb = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3","time":"2026-11-01T00:05:10Z",
          "detail":{"bucket":{"name":"raw"},"object":{"key":"k with space.log","size":7,"etag":"\"e1\""}}}"#;
        let o = decode(eb).unwrap();
        assert_eq!(o[0].key, "k with space.log");
        assert_eq!(o[0].etag.as_deref(), Some("e1"));
        let deleted = eb.replace("Object Created", "Object Deleted");
        assert!(decode(&deleted).unwrap().is_empty());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode("not json").unwrap_err().contains("not JSON"));
        assert!(decode(r#"{"hello":1}"#).is_err());
        assert!(
            decode(
                r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{}}]}"#
            )
            .is_err()
        );
    }
}
