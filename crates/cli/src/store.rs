//! Where data lives: a local directory, `file://`, `s3://bucket/prefix` (standard AWS environment,
//! `AWS_ENDPOINT_URL` included) or `memory://` — resolved to an object store and a key prefix.
//! Opening a location has no side effect but for creating a local output directory, which the
//! caller asks for only once every other check has passed.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

use crate::usage;

/// An opened location.
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix inside the store ("" for the root).
    pub prefix: String,
    /// The directory, when the location is on the local file system.
    pub local_dir: Option<PathBuf>,
    /// As the user wrote it.
    pub display: String,
    /// Where the objects live, for batch ids (`flowmerge_core::BatchId::new`): the bucket on S3,
    /// empty otherwise — so compact over a bucket names batches as the mapper does.
    pub scope: String,
}

/// What a location is, before anything is opened.
enum Spec {
    Dir(PathBuf),
    S3(url::Url),
    Memory,
}

fn spec_of(what: &str, spec: &str) -> Result<Spec> {
    Ok(match spec.split_once("://") {
        None => Spec::Dir(PathBuf::from(spec)),
        Some(("file", rest)) => Spec::Dir(PathBuf::from(rest)),
        Some((scheme, _)) => {
            let url = url::Url::parse(spec)
                .map_err(|e| usage(format!("{what} {spec:?} is not a valid URL: {e}")))?;
            match scheme {
                "s3" | "s3a" => Spec::S3(url),
                "memory" => Spec::Memory,
                other => {
                    return Err(usage(format!(
                        "{what} {spec:?}: unsupported scheme {other:?} (use a directory, \
                         file://, s3://bucket/prefix or memory://)"
                    )));
                }
            }
        }
    })
}

/// Opens an input (`create` false: the directory must exist) or an output (`create` true: a
/// missing local directory is made). `what` names the argument in errors ("INPUT", "OUTPUT").
pub fn open(what: &str, spec: &str, create: bool) -> Result<Location> {
    match spec_of(what, spec)? {
        Spec::Dir(dir) => {
            if create {
                std::fs::create_dir_all(&dir).with_context(|| {
                    format!("{what} {}: cannot create the directory", dir.display())
                })?;
            }
            let dir = dir
                .canonicalize()
                .map_err(|_| usage(format!("{what} {}: no such directory", dir.display())))?;
            if !dir.is_dir() {
                return Err(usage(format!("{what} {}: not a directory", dir.display())));
            }
            let store = LocalFileSystem::new_with_prefix(&dir)
                .with_context(|| format!("{what} {}: cannot open", dir.display()))?
                .with_automatic_cleanup(true);
            Ok(Location {
                store: Arc::new(store),
                prefix: String::new(),
                local_dir: Some(dir),
                display: spec.to_owned(),
                scope: String::new(),
            })
        }
        Spec::S3(url) => {
            let store = flowmerge_aws::store::s3_builder()
                .with_url(url.as_str())
                .build()
                .map_err(|e| usage(format!("{what} {spec}: cannot open: {}", one_line(&e))))?;
            Ok(Location {
                store: Arc::new(store),
                prefix: url.path().trim_matches('/').to_owned(),
                local_dir: None,
                display: spec.to_owned(),
                scope: url.host_str().unwrap_or_default().to_owned(),
            })
        }
        Spec::Memory => Ok(Location {
            store: Arc::new(InMemory::new()),
            prefix: String::new(),
            local_dir: None,
            display: spec.to_owned(),
            scope: String::new(),
        }),
    }
}

/// Whether `spec` names a local directory (so compact can keep its ledger beside the output).
pub fn is_local(spec: &str) -> bool {
    !spec.contains("://") || spec.starts_with("file://")
}

/// Checks that a location can be listed (its bucket exists and the credentials may read it),
/// before the run writes anything. A missing bucket is a usage error (exit 2); anything else,
/// e.g. an endpoint that does not answer, is a failure that a later run may not see (exit 1).
pub async fn preflight(what: &str, loc: &Location) -> Result<()> {
    if loc.local_dir.is_some() {
        return Ok(());
    }
    flowmerge_aws::store::probe(&*loc.store, &loc.prefix)
        .await
        .map_err(|e| store_error(what, &loc.display, &e))
}

/// One line for an object-store error about `location`, with a hint where one helps: S3's XML
/// bodies and retry chains are boiled down to the error code and message.
pub fn store_error(what: &str, location: &str, e: &object_store::Error) -> anyhow::Error {
    let code = flowmerge_aws::store::s3_error_code(&e.to_string());
    let text = one_line(e);
    match (e, code.as_deref()) {
        (_, Some("NoSuchBucket")) => usage(format!(
            "{what} {location}: the bucket does not exist (check the name, AWS_REGION and \
             AWS_ENDPOINT_URL)"
        )),
        (object_store::Error::PermissionDenied { .. }, _) | (_, Some("AccessDenied")) => {
            usage(format!(
                "{what} {location}: access denied (check the credentials and the bucket policy)"
            ))
        }
        (object_store::Error::Unauthenticated { .. }, _)
        | (_, Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken")) => {
            usage(format!(
                "{what} {location}: the credentials were rejected ({})",
                code.as_deref().unwrap_or("unauthenticated")
            ))
        }
        _ => anyhow::anyhow!("{what} {location}: {text}"),
    }
}

/// The error on one line, S3's XML body reduced to its code and message.
pub fn one_line(e: &dyn std::error::Error) -> String {
    flowmerge_aws::store::one_line(&e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_and_malformed_locations_are_usage_errors() {
        for spec in ["ftp://host/x", "s3://", "http://bucket/x"] {
            let err = open("INPUT", spec, false).err().expect(spec);
            assert!(crate::is_usage(&err), "{spec}: {err:#}");
            assert!(format!("{err:#}").contains(spec), "{err:#}");
        }
        let err = open("INPUT", "/no/such/dir/anywhere", false).err().unwrap();
        assert!(crate::is_usage(&err), "{err:#}");
    }
}
