//! Output layout (docs/contracts.md §4): a table folder per source, Hive partitions below it
//! (the window's hour for flow logs, the event's day for CloudTrail), file names from the batch.

use crate::batch::Batch;

/// `<prefix>/<dataset>/<partition>/<YYYYMMDDTHHMMZ>-<batch id>.parquet`, e.g.
/// `out/vpcflowlogs/year=2026/month=11/day=01/hour=00/20261101T0000Z-0123456789abcdef.parquet`:
/// a pure function of the batch and the partition, so a retried batch overwrites itself.
pub fn output_key(prefix: &str, dataset: &str, partition: &str, batch: &Batch) -> String {
    let prefix = prefix.trim_matches('/');
    let rel = format!(
        "{dataset}/{partition}/{}-{}.parquet",
        batch.window.stamp(),
        batch.id
    );
    if prefix.is_empty() {
        rel
    } else {
        format!("{prefix}/{rel}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::ObjectRef;
    use crate::window::Window;

    #[test]
    fn key_is_pure_function_of_batch() {
        let o = ObjectRef {
            key: "k".into(),
            size: 1,
            etag: None,
            last_modified: 0,
        };
        let b = Batch::new("", Window::containing(1_630_619_100, 300), vec![o]);
        let key = |prefix: &str| output_key(prefix, "vpcflowlogs", &b.window.partition(), &b);
        let k = key("/out/");
        assert_eq!(k, key("out"));
        assert!(
            k.starts_with("out/vpcflowlogs/year=2021/month=09/day=02/hour=21/20210902T2145Z-"),
            "{k}"
        );
        assert!(k.ends_with(&format!("{}.parquet", b.id)));
        assert!(key("").starts_with("vpcflowlogs/"));
    }
}
