//! Helpers shared by the core's integration tests.

use std::path::PathBuf;

/// A folder of the real public samples (`../shared/realdata/<sub>`, or `FLOWMERGE_REALDATA`).
pub fn realdata(sub: &str) -> PathBuf {
    let dir = std::env::var_os("FLOWMERGE_REALDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/realdata")
        });
    assert!(
        dir.join(sub).is_dir(),
        "real samples not found at {} (set FLOWMERGE_REALDATA)",
        dir.display()
    );
    dir.join(sub)
}
