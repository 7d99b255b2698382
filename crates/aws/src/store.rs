//! S3 through object_store, configured only by the standard AWS environment (`AWS_REGION`,
//! `AWS_ENDPOINT_URL[_S3]`, credentials, container credentials on ECS), so the same code talks to
//! AWS, LocalStack or moto. The core never builds a cloud store: it only sees `dyn ObjectStore`.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

use crate::error::Result;

/// A builder from the environment. Unlike `AmazonS3Builder::from_env`, a variable set to the empty
/// string counts as unset (`AWS_ENDPOINT_URL=` in a shell or a compose file means "no override",
/// and object_store would otherwise fail on it). Plain HTTP is allowed when the endpoint is
/// `http://` (emulators); the region defaults to `us-east-1` when none is set.
pub fn s3_builder() -> AmazonS3Builder {
    s3_builder_from(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    )
}

/// [`s3_builder`] from given variables (the process environment in production, a list in tests).
pub fn s3_builder_from(vars: impl IntoIterator<Item = (String, String)>) -> AmazonS3Builder {
    let mut b = AmazonS3Builder::new();
    let (mut endpoint, mut region) = (String::new(), false);
    for (key, value) in vars {
        let value = value.trim();
        if !key.starts_with("AWS_") || value.is_empty() {
            continue;
        }
        match key.as_str() {
            "AWS_ENDPOINT_URL_S3" => endpoint = value.to_owned(),
            "AWS_ENDPOINT_URL" if endpoint.is_empty() => endpoint = value.to_owned(),
            "AWS_REGION" | "AWS_DEFAULT_REGION" => region = true,
            _ => {}
        }
        if let Ok(config_key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            b = b.with_config(config_key, value);
        }
    }
    if endpoint.starts_with("http://") {
        b = b.with_allow_http(true);
    }
    if !region {
        b = b.with_region("us-east-1");
    }
    b
}

/// Lists at most one key under `prefix`: the cheapest proof that the bucket exists and the
/// credentials may read it. Used by the workers' and `flowmerge compact`'s start-up checks.
pub async fn probe(store: &dyn ObjectStore, prefix: &str) -> object_store::Result<()> {
    use futures::StreamExt;
    let prefix = (!prefix.is_empty()).then(|| object_store::path::Path::from(prefix));
    match store.list(prefix.as_ref()).next().await {
        None | Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(e),
    }
}

/// Checks that a bucket (and prefix) can be listed, so a worker with a wrong bucket stops at start
/// with one line naming the variable.
pub async fn check_bucket(
    store: &dyn ObjectStore,
    var: &'static str,
    url: &str,
    prefix: &str,
) -> Result<()> {
    probe(store, prefix)
        .await
        .map_err(|e| crate::AwsError::Config {
            var,
            reason: format!("{url} cannot be listed: {}", one_line(&e.to_string())),
        })
}

/// The `<Code>` of an S3 error body, if the text carries one.
pub fn s3_error_code(text: &str) -> Option<String> {
    xml_tag(text, "Code")
}

fn xml_tag(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{name}>"))? + start;
    Some(text[start..end].to_owned())
}

/// An error text on one line of at most 300 characters, S3's XML body reduced to its code and
/// message (object_store puts the whole body, and its retries, into its errors).
pub fn one_line(text: &str) -> String {
    let text = match (s3_error_code(text), text.find('<')) {
        (Some(code), Some(at)) => format!(
            "{} {code}: {}",
            text[..at].trim_end_matches([' ', ':']),
            xml_tag(text, "Message").unwrap_or_default()
        ),
        _ => text.to_owned(),
    };
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 300 {
        line = line.chars().take(297).collect::<String>() + "...";
    }
    line
}

/// The store of one bucket.
pub fn s3_bucket(bucket: &str) -> Result<Arc<dyn ObjectStore>> {
    Ok(Arc::new(s3_builder().with_bucket_name(bucket).build()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let b = s3_builder_from(vars(&[("AWS_ENDPOINT_URL", ""), ("AWS_REGION", " ")]));
        assert_eq!(b.get_config_value(&AmazonS3ConfigKey::Endpoint), None);
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::Region).as_deref(),
            Some("us-east-1")
        );
        assert!(b.with_bucket_name("b").build().is_ok());
    }

    #[test]
    fn s3_bodies_shrink_to_their_code_and_message() {
        let body = "Generic S3 error: Error performing list request: Received redirect without \
                    LOCATION <?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The \
                    specified bucket does not exist</Message></Error>";
        assert_eq!(s3_error_code(body).as_deref(), Some("NoSuchBucket"));
        let line = one_line(body);
        assert!(
            line.contains("NoSuchBucket: The specified bucket does not exist"),
            "{line}"
        );
        assert!(!line.contains("<?xml"), "{line}");
        assert!(one_line(&"x ".repeat(400)).chars().count() <= 300);
    }

    #[test]
    fn endpoint_and_region_come_from_the_environment() {
        let b = s3_builder_from(vars(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
        ]));
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::Endpoint).as_deref(),
            Some("http://127.0.0.1:1")
        );
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::Region).as_deref(),
            Some("eu-west-1")
        );
    }
}
