//! Git: bare mirrors in the cache directory, incremental fetches, and reading manifest files
//! straight from a commit's tree (no checkout). git2 blocks, so async callers go through
//! [`with_mirror`].

mod fetch;
mod tree;

use std::path::Path;

pub(crate) use fetch::Error;
pub use fetch::{Commit, Credentials, Mirror};
pub(crate) use tree::{SourceFile, changed_paths, has_extension, read_file, read_path};

/// Opens the mirror of `url` under `cache_dir` and runs `work` on it on the blocking thread
/// pool, so git never stalls the async runtime.
///
/// # Errors
/// The mirror cannot be opened, or `work` fails.
pub(crate) async fn with_mirror<T, E>(
    cache_dir: &Path,
    url: &str,
    work: impl FnOnce(&Mirror) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<Error> + Send + 'static,
{
    let (cache, url) = (cache_dir.to_path_buf(), url.to_owned());
    tokio::task::spawn_blocking(move || {
        let mirror = Mirror::open(&cache, &url)?;
        work(&mirror)
    })
    .await
    .expect("git work does not panic")
}
