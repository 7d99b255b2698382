//! S3 through object_store, configured only by the standard AWS environment (`AWS_REGION`,
//! `AWS_ENDPOINT_URL[_S3]`, credentials, container credentials on ECS), so the same code talks to
//! AWS, LocalStack or moto. Shared by `flowmerge compact` and the AWS workers.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;

use crate::error::Result;

/// The object_store path of an object key exactly as stored. `Path::from` would percent-encode
/// characters such as `%`, `é` or `{` again, naming a different object; `Path::parse` keeps the key
/// (it only refuses empty, `.` and `..` segments, for which the encoded form is the best we have).
pub fn key_path(key: &str) -> Path {
    Path::parse(key).unwrap_or_else(|_| Path::from(key))
}

/// A builder from the environment, allowing plain HTTP when the endpoint is `http://` (emulators)
/// and defaulting the region to `us-east-1` when none is set.
pub fn s3_builder() -> AmazonS3Builder {
    let mut b = AmazonS3Builder::from_env();
    let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .unwrap_or_default();
    if endpoint.starts_with("http://") {
        b = b.with_allow_http(true);
    }
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        b = b.with_region("us-east-1");
    }
    b
}

/// The store of one bucket.
pub fn s3_bucket(bucket: &str) -> Result<Arc<dyn ObjectStore>> {
    Ok(Arc::new(s3_builder().with_bucket_name(bucket).build()?))
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
