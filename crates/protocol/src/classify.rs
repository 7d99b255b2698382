//! Which source an object belongs to, from its key alone (AWS's key layout first, then the file
//! extension). The mapper batches by it; the merger, when the key says nothing, also looks at
//! the object's first bytes (`flowmerge_core::source::sniff`).

use crate::batch::SourceKind;

/// What a key says about an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Source(SourceKind),
    /// Not data (a CloudTrail digest or Insights file): skipped and counted, never quarantined.
    Skip(&'static str),
    /// The key says nothing: look at the content (`flowmerge_core::source::sniff`).
    Unknown,
}

/// Classifies an object by its key: AWS's delivery layout (`AWSLogs/…/CloudTrail/…`,
/// `…/vpcflowlogs/…`), then the extension (`.json`, `.ndjson`, `.jsonl` → CloudTrail; `.log`,
/// `.txt` → flow logs; `.pcap`, `.pcapng`, `.cap` → DNS captures; with or without `.gz`).
pub fn classify_key(key: &str) -> Class {
    let folders: Vec<&str> = key.split('/').collect();
    let folders = &folders[..folders.len().saturating_sub(1)];
    let has = |name: &str| folders.iter().any(|f| f.eq_ignore_ascii_case(name));
    if has("CloudTrail-Digest") {
        return Class::Skip("CloudTrail digest file");
    }
    if has("CloudTrail-Insight") {
        return Class::Skip("CloudTrail Insights file (not read: see the README)");
    }
    if has("CloudTrail") {
        return Class::Source(SourceKind::Cloudtrail);
    }
    if has("vpcflowlogs") {
        return Class::Source(SourceKind::Vpcflow);
    }
    let name = key.rsplit('/').next().unwrap_or(key).to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if [".json", ".ndjson", ".jsonl"]
        .iter()
        .any(|ext| name.ends_with(ext))
    {
        return Class::Source(SourceKind::Cloudtrail);
    }
    if [".log", ".txt"].iter().any(|ext| name.ends_with(ext)) {
        return Class::Source(SourceKind::Vpcflow);
    }
    if [".pcap", ".pcapng", ".cap"]
        .iter()
        .any(|ext| name.ends_with(ext))
    {
        return Class::Source(SourceKind::Dns);
    }
    Class::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_classified_by_layout_then_extension() {
        use Class::*;
        use SourceKind::*;
        for (key, want) in [
            (
                "AWSLogs/o-abc123/111122223333/CloudTrail/us-east-1/2022/01/03/111122223333_CloudTrail_us-east-1_20220103T1915Z_LwA4RXRzImDPnQAL.json.gz",
                Source(Cloudtrail),
            ),
            (
                "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2022/01/03/x.json.gz",
                Skip("CloudTrail digest file"),
            ),
            (
                "AWSLogs/111122223333/vpcflowlogs/us-east-1/2021/09/02/x.log.gz",
                Source(Vpcflow),
            ),
            ("exports/trail.ndjson", Source(Cloudtrail)),
            ("exports/trail.JSON", Source(Cloudtrail)),
            ("flows/a.log", Source(Vpcflow)),
            ("flows/CloudTrail.log", Source(Vpcflow)),
            ("flows/noext", Unknown),
        ] {
            assert_eq!(classify_key(key), want, "{key}");
        }
        assert!(matches!(
            classify_key("AWSLogs/1/CloudTrail-Insight/us-east-1/2022/01/03/x.json.gz"),
            Skip(_)
        ));
    }
}
