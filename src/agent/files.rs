//! File-system notifications for the mapping file and for `file://` repositories, so an edit
//! or a commit takes effect without waiting for a poll.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tracing::warn;

use crate::config::Mapping;

/// What the file watcher reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change {
    Config,
    Repository(String),
}

/// File-system notifications for the mapping and for `file://` repositories.
pub(super) struct FileWatch {
    watcher: Option<notify::RecommendedWatcher>,
    /// Watched directory → what a change under it means.
    targets: Arc<RwLock<BTreeMap<PathBuf, Change>>>,
    watched: Vec<PathBuf>,
}

impl FileWatch {
    pub(super) fn new(tx: mpsc::UnboundedSender<Change>) -> Self {
        let targets: Arc<RwLock<BTreeMap<PathBuf, Change>>> = Arc::default();
        let lookup = targets.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if event.kind.is_access() {
                return;
            }
            let targets = lookup.read().expect("watch lock");
            for path in &event.paths {
                // the most specific watched directory containing the path decides
                if let Some((_, change)) =
                    targets.iter().rev().find(|(dir, _)| path.starts_with(dir))
                {
                    let _ = tx.send(change.clone());
                }
            }
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "file notifications unavailable; relying on polling");
                None
            }
        };
        Self {
            watcher,
            targets,
            watched: Vec::new(),
        }
    }

    /// (Re)watches the mapping (its directory, so replaced files and a ConfigMap's `..data`
    /// swap are seen) and the refs of every `file://` repository.
    pub(super) fn watch(&mut self, config: &Path, mapping: &Mapping) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for path in self.watched.drain(..) {
            let _ = watcher.unwatch(&path);
        }
        let mut targets = BTreeMap::new();
        let config_dir = if config.is_dir() {
            config.to_path_buf()
        } else {
            config
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        };
        let config_dir = std::fs::canonicalize(&config_dir).unwrap_or(config_dir);
        let mut watch =
            |path: PathBuf, mode: RecursiveMode, change: Change| match watcher.watch(&path, mode) {
                Ok(()) => {
                    self.watched.push(path.clone());
                    targets.insert(path, change);
                }
                Err(e) => warn!(path = %path.display(), error = %e, "cannot watch"),
            };
        watch(config_dir, RecursiveMode::NonRecursive, Change::Config);
        for repo in &mapping.repositories {
            let Some(dir) = repo.url.local_path() else {
                continue;
            };
            let dir = PathBuf::from(dir);
            let git_dir = if dir.join(".git").is_dir() {
                dir.join(".git")
            } else {
                dir
            };
            let git_dir = std::fs::canonicalize(&git_dir).unwrap_or(git_dir);
            let change = Change::Repository(repo.name.clone());
            watch(
                git_dir.join("refs"),
                RecursiveMode::Recursive,
                change.clone(),
            );
            // packed-refs and HEAD live at the top of the git directory
            watch(git_dir, RecursiveMode::NonRecursive, change);
        }
        *self.targets.write().expect("watch lock") = targets;
    }
}
