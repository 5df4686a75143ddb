//! Git: bare mirrors in the cache directory, incremental fetches, and reading manifest files
//! straight from a commit's tree (no checkout).

mod fetch;
mod tree;

pub use fetch::{Commit, Credentials, Error, Mirror, redact};
pub use tree::{SourceFile, changed_paths, read_file, read_path};
