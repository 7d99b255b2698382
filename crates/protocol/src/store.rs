//! Object keys and locations as the pipeline names them. Stores themselves are opened by the
//! adapters (`flowmerge-aws` for S3, the CLI for local directories): the engine only sees
//! `dyn ObjectStore`.

use object_store::path::Path;

/// The object_store path of an object key exactly as stored. `Path::from` would percent-encode
/// characters such as `%`, `é` or `{` again, naming a different object; `Path::parse` keeps the key
/// (it only refuses empty, `.` and `..` segments, for which the encoded form is the best we have).
pub fn key_path(key: &str) -> Path {
    Path::parse(key).unwrap_or_else(|_| Path::from(key))
}

/// Splits `s3://bucket/prefix` into bucket and prefix (without surrounding slashes).
pub fn split_s3_url(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("s3://")
        .or_else(|| url.strip_prefix("s3a://"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return None;
    }
    Some((bucket.to_owned(), prefix.trim_matches('/').to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_split_into_bucket_and_prefix() {
        assert_eq!(
            split_s3_url("s3://b/p/q/"),
            Some(("b".into(), "p/q".into()))
        );
        assert_eq!(split_s3_url("s3://b"), Some(("b".into(), "".into())));
        assert_eq!(split_s3_url("s3:///x"), None);
        assert_eq!(split_s3_url("/tmp/x"), None);
    }

    #[test]
    fn key_paths_keep_keys_as_stored() {
        for key in ["a/b c/é+x %41.log.gz", "AWSLogs/1/x{y}.log"] {
            assert_eq!(key_path(key).as_ref(), key);
        }
        // Not representable as is: still a path, never a panic.
        assert!(!key_path("a//b").as_ref().is_empty());
    }
}
