//! Where data lives: a local directory, `file://`, `s3://bucket/prefix` (standard AWS environment,
//! `AWS_ENDPOINT_URL` included) or `memory://` — resolved to an object store and a key prefix.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

/// An opened location.
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix inside the store ("" for the root).
    pub prefix: String,
    /// The directory, when the location is on the local file system.
    pub local_dir: Option<PathBuf>,
    /// As the user wrote it.
    pub display: String,
}

/// Opens `spec`; `create` makes a missing local directory (for outputs).
pub fn open(spec: &str, create: bool) -> Result<Location> {
    let (dir, url) = match spec.split_once("://") {
        None => (Some(PathBuf::from(spec)), None),
        Some(("file", rest)) => (Some(PathBuf::from(rest)), None),
        Some(_) => (
            None,
            Some(url::Url::parse(spec).with_context(|| format!("{spec}: not a URL"))?),
        ),
    };
    if let Some(dir) = dir {
        if create {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
        }
        let dir = dir
            .canonicalize()
            .with_context(|| format!("{}: no such directory", dir.display()))?;
        if !dir.is_dir() {
            bail!("{}: not a directory", dir.display());
        }
        let store = LocalFileSystem::new_with_prefix(&dir)
            .with_context(|| format!("{}: cannot open", dir.display()))?
            .with_automatic_cleanup(true);
        return Ok(Location {
            store: Arc::new(store),
            prefix: String::new(),
            local_dir: Some(dir),
            display: spec.to_owned(),
        });
    }
    let url = url.context("unreachable: neither path nor URL")?;
    let prefix = url.path().trim_matches('/').to_owned();
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => {
            let b = flowmerge_core::store::s3_builder().with_url(url.as_str());
            Arc::new(
                b.build()
                    .with_context(|| format!("{spec}: cannot open S3 location"))?,
            )
        }
        "memory" => Arc::new(InMemory::new()),
        other => bail!(
            "{spec}: unsupported scheme {other:?} (use a directory, file://, s3:// or memory://)"
        ),
    };
    Ok(Location {
        store,
        prefix,
        local_dir: None,
        display: spec.to_owned(),
    })
}
