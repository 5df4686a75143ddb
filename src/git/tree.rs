//! Reading manifest files straight from a commit's tree, without a checkout.

use git2::{ObjectType, Oid, Repository, Tree};

use super::fetch::Error;
use crate::repo_url::redact;

/// A file read from a commit: repository-relative path and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceFile {
    pub path: String,
    pub content: Vec<u8>,
}

const MANIFEST_EXTENSIONS: &[&str] = &["yaml", "yml", "json"];
/// Symlink hops allowed while resolving one entry, against link cycles.
const MAX_LINK_HOPS: usize = 16;

/// Every `*.yaml`, `*.yml` and `*.json` file below `path` (recursive, sorted by path) at
/// `revision`. Symlinks are followed only while they stay inside `path`. A file larger than
/// `max_bytes` is an error naming it and its size, found from the object's header before its
/// content is loaded.
///
/// # Errors
/// Unknown revision, a missing path, a symlink leading outside `path`, or a file too large.
pub(crate) fn read_path(
    repo: &Repository,
    url: &str,
    revision: &str,
    path: &str,
    max_bytes: u64,
) -> Result<Vec<SourceFile>, Error> {
    let fail = |message: String| read_error(url, revision, message);
    let root = commit_tree(repo, url, revision)?;
    let mut reader = Reader {
        repo,
        root: &root,
        base: path,
        max_bytes,
        files: Vec::new(),
    };
    let start = if path.is_empty() {
        root.clone()
    } else {
        let entry = root
            .get_path(std::path::Path::new(path))
            .map_err(|_| fail(format!("path {path:?} does not exist")))?;
        match entry.kind() {
            Some(ObjectType::Tree) => repo
                .find_tree(entry.id())
                .map_err(|e| fail(e.message().to_owned()))?,
            _ => return Err(fail(format!("path {path:?} is not a directory"))),
        }
    };
    reader.walk(&start, path, 0).map_err(fail)?;
    reader.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(reader.files)
}

struct Reader<'r> {
    repo: &'r Repository,
    root: &'r Tree<'r>,
    base: &'r str,
    max_bytes: u64,
    files: Vec<SourceFile>,
}

impl Reader<'_> {
    fn walk(&mut self, tree: &Tree<'_>, dir: &str, hops: usize) -> Result<(), String> {
        for entry in tree {
            let name = entry.name().map_err(|_| "a file name is not UTF-8")?;
            let path = join(dir, name);
            self.entry(&path, entry.id(), entry.kind(), entry.filemode(), hops)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        path: &str,
        id: Oid,
        kind: Option<ObjectType>,
        mode: i32,
        hops: usize,
    ) -> Result<(), String> {
        let err = |e: git2::Error| format!("{path}: {}", e.message());
        match kind {
            Some(ObjectType::Tree) => {
                let tree = self.repo.find_tree(id).map_err(err)?;
                self.walk(&tree, path, hops)
            }
            Some(ObjectType::Blob) if mode == 0o120_000 => {
                if hops >= MAX_LINK_HOPS {
                    return Err(format!("{path}: too many levels of symbolic links"));
                }
                let blob = self.repo.find_blob(id).map_err(err)?;
                let target = String::from_utf8_lossy(blob.content()).into_owned();
                let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
                let resolved = normalize(parent, &target).filter(|t| inside(self.base, t));
                let Some(resolved) = resolved else {
                    return Err(format!(
                        "{path}: symlink to {target:?} points outside the sync path {:?}",
                        if self.base.is_empty() { "." } else { self.base }
                    ));
                };
                let Ok(entry) = self.root.get_path(std::path::Path::new(&resolved)) else {
                    return Err(format!("{path}: symlink target {target:?} does not exist"));
                };
                if entry.kind() == Some(ObjectType::Tree) || is_manifest(path) {
                    self.entry(path, entry.id(), entry.kind(), entry.filemode(), hops + 1)
                } else {
                    Ok(())
                }
            }
            Some(ObjectType::Blob) if is_manifest(path) => {
                let (size, _) = self
                    .repo
                    .odb()
                    .and_then(|odb| odb.read_header(id))
                    .map_err(err)?;
                if size as u64 > self.max_bytes {
                    return Err(format!(
                        "{path} is {}, above the limit of {} (--max-manifest-bytes)",
                        mebibytes(size as u64),
                        mebibytes(self.max_bytes)
                    ));
                }
                let blob = self.repo.find_blob(id).map_err(err)?;
                self.files.push(SourceFile {
                    path: path.to_owned(),
                    content: blob.content().to_vec(),
                });
                Ok(())
            }
            // Other files and submodules (commits) are not manifests.
            _ => Ok(()),
        }
    }
}

/// The content of one file at a commit, or `None` when the commit has no such file.
///
/// # Errors
/// Unknown revision.
pub(crate) fn read_file(
    repo: &Repository,
    url: &str,
    revision: &str,
    path: &str,
) -> Result<Option<Vec<u8>>, Error> {
    let tree = commit_tree(repo, url, revision)?;
    let Ok(entry) = tree.get_path(std::path::Path::new(path)) else {
        return Ok(None);
    };
    match repo.find_blob(entry.id()) {
        Ok(blob) => Ok(Some(blob.content().to_vec())),
        Err(_) => Ok(None),
    }
}

/// Paths that differ between two commits; with no `from` (or one the mirror lacks), those the
/// commit changed against its first parent (every file for a root commit).
///
/// # Errors
/// Unknown `to` revision.
pub(crate) fn changed_paths(
    repo: &Repository,
    url: &str,
    from: Option<&str>,
    to: &str,
) -> Result<Vec<String>, Error> {
    let fail = |e: git2::Error| read_error(url, to, e.message().to_owned());
    let new = Oid::from_str(to)
        .and_then(|oid| repo.find_commit(oid))
        .map_err(fail)?;
    let old_tree = from
        .and_then(|f| Oid::from_str(f).ok())
        .and_then(|oid| repo.find_commit(oid).ok())
        .or_else(|| new.parent(0).ok())
        .map(|c| c.tree())
        .transpose()
        .map_err(fail)?;
    let new_tree = new.tree().map_err(fail)?;
    let diff = repo
        .diff_tree_to_tree(old_tree.as_ref(), Some(&new_tree), None)
        .map_err(fail)?;
    let mut paths = Vec::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(p) = file.path().and_then(|p| p.to_str()) {
                paths.push(p.to_owned());
            }
        }
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// A size in MiB for messages: `50.0 MiB`.
fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn read_error(url: &str, revision: &str, message: String) -> Error {
    Error::Read {
        url: redact(url),
        revision: revision.to_owned(),
        message,
    }
}

/// The tree of the commit `revision` names.
fn commit_tree<'r>(repo: &'r Repository, url: &str, revision: &str) -> Result<Tree<'r>, Error> {
    Oid::from_str(revision)
        .and_then(|oid| repo.find_commit(oid))
        .and_then(|commit| commit.tree())
        .map_err(|e| read_error(url, revision, e.message().to_owned()))
}

fn is_manifest(path: &str) -> bool {
    has_extension(path, MANIFEST_EXTENSIONS)
}

/// Whether a file name ends in `.<ext>` for one of `extensions`, in any letter case (`.YAML`
/// counts as `.yaml`).
pub(crate) fn has_extension(path: &str, extensions: &[&str]) -> bool {
    std::path::Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// Resolves `target` relative to `dir` into a repository-relative path; `None` if it climbs
/// above the repository root or is absolute.
fn normalize(dir: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

fn inside(base: &str, path: &str) -> bool {
    base.is_empty() || path == base || path.starts_with(&format!("{base}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a commit from (path, content, is_symlink) entries in a fresh repository.
    fn repo_with(files: &[(&str, &str, bool)]) -> (tempfile::TempDir, Repository, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init_bare(dir.path()).expect("init");
        let mut index = git2::Index::new().expect("index");
        for (path, content, link) in files {
            let blob = repo.blob(content.as_bytes()).expect("blob");
            let mut entry = git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: if *link { 0o120_000 } else { 0o100_644 },
                uid: 0,
                gid: 0,
                file_size: 0,
                id: blob,
                flags: 0,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            };
            entry.flags = (path.len() as u16) & 0xfff;
            index.add(&entry).expect("add");
        }
        let tree_id = index.write_tree_to(&repo).expect("tree");
        let tree = repo.find_tree(tree_id).expect("tree");
        let sig = git2::Signature::now("t", "t@example.com").expect("sig");
        let id = repo
            .commit(None, &sig, &sig, "c", &tree, &[])
            .expect("commit");
        drop(tree);
        (dir, repo, id.to_string())
    }

    fn paths(files: &[SourceFile]) -> Vec<&str> {
        files.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn reads_manifests_recursively_sorted_and_skips_other_files() {
        let (_d, repo, rev) = repo_with(&[
            ("apps/web/z.yaml", "z", false),
            ("apps/web/a/b.json", "b", false),
            ("apps/web/README.md", "r", false),
            ("apps/web/c.yml", "c", false),
            ("apps/other/x.yaml", "x", false),
        ]);
        let files = read_path(&repo, "file:///r", &rev, "apps/web", u64::MAX).expect("read");
        assert_eq!(
            paths(&files),
            ["apps/web/a/b.json", "apps/web/c.yml", "apps/web/z.yaml"]
        );
        assert_eq!(files[0].content, b"b");
    }

    #[test]
    fn manifest_extensions_match_in_any_case() {
        let (_d, repo, rev) = repo_with(&[
            ("p/A.YAML", "a", false),
            ("p/b.Yml", "b", false),
            ("p/c.JSON", "c", false),
            ("p/d.yaml.txt", "d", false),
            ("p/yaml", "e", false),
        ]);
        let files = read_path(&repo, "file:///r", &rev, "p", u64::MAX).expect("read");
        assert_eq!(paths(&files), ["p/A.YAML", "p/b.Yml", "p/c.JSON"]);
    }

    #[test]
    fn symlink_inside_the_path_is_followed() {
        let (_d, repo, rev) = repo_with(&[
            ("p/real.yaml", "real", false),
            ("p/link.yaml", "real.yaml", true),
        ]);
        let files = read_path(&repo, "file:///r", &rev, "p", u64::MAX).expect("read");
        assert_eq!(paths(&files), ["p/link.yaml", "p/real.yaml"]);
        assert_eq!(files[0].content, b"real");
    }

    #[test]
    fn symlink_outside_the_path_is_refused() {
        let (_d, repo, rev) = repo_with(&[
            ("secret/creds.yaml", "s", false),
            ("p/link.yaml", "../secret/creds.yaml", true),
        ]);
        let err = read_path(&repo, "file:///r", &rev, "p", u64::MAX)
            .expect_err("escape")
            .to_string();
        assert!(err.contains("p/link.yaml"), "{err}");
        assert!(err.contains("outside the sync path"), "{err}");
        let abs = repo_with(&[("p/link.yaml", "/etc/passwd", true)]);
        assert!(read_path(&abs.1, "file:///r", &abs.2, "p", u64::MAX).is_err());
    }

    #[test]
    fn changed_paths_compare_two_commits_or_the_parent() {
        let (dir, repo, first) = repo_with(&[("src/a.rs", "a", false), ("docs/x.md", "x", false)]);
        let sig = git2::Signature::now("t", "t@example.com").expect("sig");
        let parent = repo
            .find_commit(Oid::from_str(&first).expect("oid"))
            .expect("commit");
        let mut builder = repo
            .treebuilder(Some(&parent.tree().expect("tree")))
            .expect("builder");
        let docs = parent
            .tree()
            .expect("tree")
            .get_name("docs")
            .expect("docs")
            .id();
        let mut docs_builder = repo
            .treebuilder(Some(&repo.find_tree(docs).expect("tree")))
            .expect("builder");
        docs_builder
            .insert("x.md", repo.blob(b"changed").expect("blob"), 0o100_644)
            .expect("insert");
        builder
            .insert("docs", docs_builder.write().expect("write"), 0o040_000)
            .expect("insert");
        let tree = repo
            .find_tree(builder.write().expect("write"))
            .expect("tree");
        let second = repo
            .commit(None, &sig, &sig, "docs", &tree, &[&parent])
            .expect("commit")
            .to_string();
        assert_eq!(
            changed_paths(&repo, "u", None, &second).expect("diff"),
            ["docs/x.md"]
        );
        assert_eq!(
            changed_paths(&repo, "u", Some(&second), &second).expect("diff"),
            Vec::<String>::new()
        );
        assert_eq!(
            changed_paths(&repo, "u", None, &first).expect("root"),
            ["docs/x.md", "src/a.rs"]
        );
        assert_eq!(
            read_file(&repo, "u", &second, "docs/x.md").expect("read"),
            Some(b"changed".to_vec())
        );
        assert_eq!(read_file(&repo, "u", &second, "nope").expect("read"), None);
        drop(dir);
    }

    #[test]
    fn a_file_above_the_limit_is_refused_with_its_name_and_size() {
        let big = "x".repeat(3 * 1024 * 1024);
        let (_d, repo, rev) = repo_with(&[("p/a.yaml", "a", false), ("p/big.yaml", &big, false)]);
        let err = read_path(&repo, "file:///r", &rev, "p", 2 * 1024 * 1024)
            .expect_err("too large")
            .to_string();
        assert!(
            err.contains(
                "p/big.yaml is 3.0 MiB, above the limit of 2.0 MiB (--max-manifest-bytes)"
            ),
            "{err}"
        );
        assert_eq!(
            paths(
                &read_path(&repo, "file:///r", &rev, "p", 3 * 1024 * 1024).expect("at the limit")
            ),
            ["p/a.yaml", "p/big.yaml"]
        );
    }

    #[test]
    fn missing_path_is_an_error() {
        let (_d, repo, rev) = repo_with(&[("a.yaml", "a", false)]);
        let err = read_path(&repo, "file:///r", &rev, "nope", u64::MAX)
            .expect_err("missing")
            .to_string();
        assert!(err.contains("\"nope\" does not exist"), "{err}");
        assert_eq!(
            paths(&read_path(&repo, "file:///r", &rev, "", u64::MAX).expect("root")),
            ["a.yaml"]
        );
    }
}
