//! Output layout (docs/contracts.md §4): Hive partitions from the window start, file name from the batch.

use crate::batch::Batch;

/// The dataset folder under the output prefix.
pub const VPCFLOW_DATASET: &str = "vpcflowlogs";

/// `<prefix>/vpcflowlogs/year=YYYY/month=MM/day=DD/hour=HH/<YYYYMMDDTHHMMZ>-<batch id>.parquet`.
pub fn output_key(prefix: &str, batch: &Batch) -> String {
    let prefix = prefix.trim_matches('/');
    let rel = format!(
        "{VPCFLOW_DATASET}/{}/{}-{}.parquet",
        batch.window.partition(),
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
        let k = output_key("/out/", &b);
        assert_eq!(k, output_key("out", &b.clone()));
        assert!(
            k.starts_with("out/vpcflowlogs/year=2021/month=09/day=02/hour=21/20210902T2145Z-"),
            "{k}"
        );
        assert!(k.ends_with(&format!("{}.parquet", b.id)));
        assert!(output_key("", &b).starts_with("vpcflowlogs/"));
    }
}
