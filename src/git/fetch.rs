//! Fetching into bare mirrors with git2, with credentials that never reach logs or errors.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use base64::Engine as _;
use git2::{CertificateCheckStatus, Cred, CredentialType, FetchOptions, RemoteCallbacks};

use crate::repo_url::redact;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to prepare mirror {} for {url}: {message}", .path.display())]
    Mirror {
        path: PathBuf,
        url: String,
        message: String,
    },
    #[error("failed to fetch {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("branch {branch:?} not found in {url}")]
    NoBranch { url: String, branch: String },
    #[error("failed to read {url} at {revision}: {message}")]
    Read {
        url: String,
        revision: String,
        message: String,
    },
    #[error("ssh host key of {host} is not in the known_hosts of secret {secret}")]
    UnknownHost { host: String, secret: String },
}

/// Credentials for one repository, read from its `auth.secretRef` Secret.
#[derive(Clone, Default)]
pub struct Credentials {
    /// Name of the Secret they came from, for messages.
    pub secret: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// PEM/OpenSSH private key.
    pub identity: Option<String>,
    /// known_hosts lines; ssh hosts not listed are refused.
    pub known_hosts: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

/// A resolved commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Full hex sha.
    pub id: String,
    /// First line of the message.
    pub subject: String,
}

impl Commit {
    /// The 7-character short sha.
    pub(crate) fn short(&self) -> &str {
        &self.id[..self.id.len().min(7)]
    }
}

/// A bare mirror of one remote in the cache directory.
pub struct Mirror {
    url: String,
    repo: git2::Repository,
}

/// When this process first opened a mirror: a lock file older than that cannot belong to a
/// fetch of this process, and berth serializes the fetches of each mirror it opens.
static FIRST_USE: OnceLock<SystemTime> = OnceLock::new();

/// Removes the `*.lock` files of a mirror (at its top and under `refs/`) that are older than
/// this process's first use of any mirror: a crash mid-fetch leaves them, and libgit2 then
/// refuses every later fetch. Returns the files removed.
fn remove_stale_locks(git_dir: &Path) -> Vec<PathBuf> {
    let Some(&since) = FIRST_USE.get() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut dirs = vec![git_dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                if path.starts_with(git_dir.join("refs")) || path == git_dir.join("refs") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "lock")
                && meta.modified().is_ok_and(|m| m < since)
                && std::fs::remove_file(&path).is_ok()
            {
                found.push(path);
            }
        }
    }
    found
}

/// Mirror directory for a URL: readable prefix plus a hash, so distinct URLs never collide.
fn mirror_dir(cache_dir: &Path, url: &str) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    url.hash(&mut h);
    let stem: String = redact(url)
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("repo")
        .trim_end_matches(".git")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    cache_dir.join(format!("{stem}-{:016x}.git", h.finish()))
}

impl Mirror {
    /// Opens (or creates) the bare mirror of `url` under `cache_dir`.
    ///
    /// # Errors
    /// The cache directory cannot be created or the mirror is corrupt.
    pub fn open(cache_dir: &Path, url: &str) -> Result<Self, Error> {
        FIRST_USE.get_or_init(SystemTime::now);
        let path = mirror_dir(cache_dir, url);
        let fail = |e: &dyn std::fmt::Display| Error::Mirror {
            path: path.clone(),
            url: redact(url),
            message: scrub(&e.to_string(), url),
        };
        std::fs::create_dir_all(cache_dir).map_err(|e| fail(&e))?;
        let repo = match git2::Repository::open_bare(&path) {
            Ok(r) => r,
            Err(_) => git2::Repository::init_bare(&path).map_err(|e| fail(&e))?,
        };
        Ok(Self {
            url: url.to_owned(),
            repo,
        })
    }

    /// The underlying repository, for reading trees.
    pub(crate) fn repository(&self) -> &git2::Repository {
        &self.repo
    }

    /// The URL with credentials removed, for messages.
    pub(crate) fn display_url(&self) -> String {
        redact(&self.url)
    }

    /// Fetches the given branches incrementally into `refs/heads/*`. A pattern with glob
    /// characters other than one `*` fetches every branch.
    ///
    /// # Errors
    /// Network, authentication or repository errors, with credentials removed.
    pub fn fetch(&self, branches: &[&str], creds: Option<&Credentials>) -> Result<(), Error> {
        self.fetch_refs(branches, &[], creds)
    }

    /// Fetches branches as [`Mirror::fetch`] does, and the refspecs in `extra` as they are
    /// (tags, pull request heads).
    ///
    /// # Errors
    /// Network, authentication or repository errors, with credentials removed.
    pub(crate) fn fetch_refs(
        &self,
        branches: &[&str],
        extra: &[String],
        creds: Option<&Credentials>,
    ) -> Result<(), Error> {
        match self.fetch_once(branches, extra, creds) {
            Err(Error::Fetch { message, .. }) if message.contains(".lock") => {
                let removed = remove_stale_locks(self.repo.path());
                if removed.is_empty() {
                    return Err(self.fetch_error_text(&message));
                }
                tracing::warn!(
                    repository = %self.display_url(),
                    locks = ?removed,
                    "removed stale lock files a crashed fetch left in the mirror; fetching again"
                );
                self.fetch_once(branches, extra, creds)
            }
            other => other,
        }
    }

    fn fetch_once(
        &self,
        branches: &[&str],
        extra: &[String],
        creds: Option<&Credentials>,
    ) -> Result<(), Error> {
        let simple = |b: &&str| b.matches('*').count() <= 1 && !b.contains(['?', '[', '{', '\\']);
        let mut refspecs: Vec<String> = if branches.iter().all(simple) {
            branches
                .iter()
                .map(|b| format!("+refs/heads/{b}:refs/heads/{b}"))
                .collect()
        } else {
            vec!["+refs/heads/*:refs/heads/*".to_owned()]
        };
        refspecs.extend(extra.iter().cloned());
        // libgit2 replaces a refusal's reason with its own generic text; keep ours
        let refused: std::cell::RefCell<Option<String>> = std::cell::RefCell::new(None);
        let mut callbacks = RemoteCallbacks::new();
        let mut attempts = 0;
        callbacks.credentials(move |_url, user_from_url, allowed| {
            attempts += 1;
            if attempts > 3 {
                return Err(git2::Error::from_str("authentication failed"));
            }
            credential(creds, user_from_url, allowed)
        });
        let url = self.url.clone();
        let refuse = |reason: String| {
            *refused.borrow_mut() = Some(reason.clone());
            Err(git2::Error::from_str(&reason))
        };
        callbacks.certificate_check(move |cert, host| {
            match (
                cert.as_hostkey(),
                creds.and_then(|c| c.known_hosts.as_deref()),
            ) {
                (Some(key), known) => {
                    let (Some(raw), Some(known)) = (key.hostkey(), known) else {
                        return refuse(format!(
                            "ssh host {host} cannot be verified: the auth secret has no known_hosts"
                        ));
                    };
                    if known_hosts_contains(known, host, ssh_port(&url), raw) {
                        Ok(CertificateCheckStatus::CertificateOk)
                    } else {
                        refuse(format!(
                            "ssh host key of {host} is not in known_hosts (the host may not be \
                             the one you expect; if it is, add its key to the auth secret's \
                             known_hosts)"
                        ))
                    }
                }
                // TLS: let libgit2 verify against the system trust store (SSL_CERT_FILE).
                (None, _) => Ok(CertificateCheckStatus::CertificatePassthrough),
            }
        });
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks);
        options.download_tags(git2::AutotagOption::None);
        options.prune(git2::FetchPrune::On);
        let mut remote = self
            .repo
            .remote_anonymous(&self.url)
            .map_err(|e| self.fetch_error(&e))?;
        let fetched = remote.fetch(&refspecs, Some(&mut options), None);
        drop(options);
        fetched.map_err(|e| match refused.take() {
            Some(reason) => self.fetch_error_text(&reason),
            None => self.fetch_error(&e),
        })
    }

    fn fetch_error(&self, e: &git2::Error) -> Error {
        self.fetch_error_text(e.message())
    }

    fn fetch_error_text(&self, message: &str) -> Error {
        Error::Fetch {
            url: redact(&self.url),
            message: scrub(message, &self.url),
        }
    }

    /// Resolves a fetched branch to its head commit.
    ///
    /// # Errors
    /// The branch does not exist in the mirror.
    pub fn resolve(&self, branch: &str) -> Result<Commit, Error> {
        let no_branch = || Error::NoBranch {
            url: redact(&self.url),
            branch: branch.to_owned(),
        };
        let reference = self
            .repo
            .find_reference(&format!("refs/heads/{branch}"))
            .map_err(|_| no_branch())?;
        let commit = reference.peel_to_commit().map_err(|_| no_branch())?;
        Ok(commit_of(&commit))
    }

    /// Every fetched branch with its head commit, sorted by branch name.
    ///
    /// # Errors
    /// The mirror cannot be read.
    pub(crate) fn heads(&self) -> Result<Vec<(String, Commit)>, Error> {
        self.refs_under("refs/heads/")
    }

    /// Every fetched tag with the commit it points at (annotated tags peeled), sorted by name.
    ///
    /// # Errors
    /// The mirror cannot be read.
    pub(crate) fn tags(&self) -> Result<Vec<(String, Commit)>, Error> {
        self.refs_under("refs/tags/")
    }

    /// The commit a fetched ref points at (`refs/pull/3/head`), if the mirror has it.
    pub(crate) fn reference(&self, name: &str) -> Option<Commit> {
        let reference = self.repo.find_reference(name).ok()?;
        reference.peel_to_commit().ok().map(|c| commit_of(&c))
    }

    /// The best common ancestor of two commits in the mirror, if they have one.
    pub(crate) fn merge_base(&self, a: &str, b: &str) -> Option<String> {
        let (a, b) = (git2::Oid::from_str(a).ok()?, git2::Oid::from_str(b).ok()?);
        self.repo.merge_base(a, b).ok().map(|o| o.to_string())
    }

    /// The refs under a prefix, by the rest of their names, with their commits.
    fn refs_under(&self, prefix: &str) -> Result<Vec<(String, Commit)>, Error> {
        let fail = |e: git2::Error| Error::Read {
            url: redact(&self.url),
            revision: format!("{prefix}*"),
            message: e.message().to_owned(),
        };
        let mut out = Vec::new();
        for reference in self
            .repo
            .references_glob(&format!("{prefix}*"))
            .map_err(fail)?
        {
            let reference = reference.map_err(fail)?;
            let Some(name) = reference.name().ok().and_then(|n| n.strip_prefix(prefix)) else {
                continue;
            };
            let name = name.to_owned();
            if let Ok(commit) = reference.peel_to_commit() {
                out.push((name, commit_of(&commit)));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Looks up a revision (full or abbreviated sha, or branch) already in the mirror.
    ///
    /// # Errors
    /// Unknown revision.
    pub(crate) fn commit(&self, revision: &str) -> Result<Commit, Error> {
        let object = self
            .repo
            .revparse_single(revision)
            .and_then(|o| o.peel_to_commit())
            .map_err(|e| Error::Read {
                url: redact(&self.url),
                revision: revision.to_owned(),
                message: e.message().to_owned(),
            })?;
        Ok(commit_of(&object))
    }
}

fn commit_of(commit: &git2::Commit<'_>) -> Commit {
    Commit {
        id: commit.id().to_string(),
        subject: commit.summary().ok().flatten().unwrap_or("").to_owned(),
    }
}

/// Removes the raw URL (which may embed userinfo) from a libgit2 message.
fn scrub(message: &str, url: &str) -> String {
    message.replace(url, &redact(url))
}

fn credential(
    creds: Option<&Credentials>,
    user_from_url: Option<&str>,
    allowed: CredentialType,
) -> Result<Cred, git2::Error> {
    let none = || git2::Error::from_str("the repository needs credentials: set auth.secretRef");
    let creds = creds.ok_or_else(none)?;
    if allowed.contains(CredentialType::SSH_KEY)
        && let Some(key) = &creds.identity
    {
        let user = user_from_url.or(creds.username.as_deref()).unwrap_or("git");
        return Cred::ssh_key_from_memory(user, None, key, None);
    }
    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
        if let Some(token) = &creds.token {
            // Hosting services accept any user name with a token; GitHub documents this one.
            let user = creds.username.as_deref().unwrap_or("x-access-token");
            return Cred::userpass_plaintext(user, token);
        }
        if let (Some(user), Some(password)) = (&creds.username, &creds.password) {
            return Cred::userpass_plaintext(user, password);
        }
    }
    if allowed.contains(CredentialType::USERNAME) {
        return Cred::username(user_from_url.or(creds.username.as_deref()).unwrap_or("git"));
    }
    Err(git2::Error::from_str(&format!(
        "secret {} has no credentials of a kind the server accepts",
        creds.secret
    )))
}

/// The port of an `ssh://host:port/...` URL, when not 22.
fn ssh_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("ssh://")?;
    let authority = rest.split('/').next()?;
    let hostport = authority.rsplit('@').next()?;
    hostport
        .rsplit_once(':')?
        .1
        .parse()
        .ok()
        .filter(|p| *p != 22)
}

/// True when a plain (unhashed) known_hosts line lists `host` with exactly this key.
fn known_hosts_contains(known_hosts: &str, host: &str, port: Option<u16>, key: &[u8]) -> bool {
    let wanted = match port {
        Some(p) => format!("[{host}]:{p}"),
        None => host.to_owned(),
    };
    known_hosts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (Some(hosts), Some(_kind), Some(encoded)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        !hosts.starts_with('#')
            && hosts.split(',').any(|h| h.eq_ignore_ascii_case(&wanted))
            && base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .is_ok_and(|k| k == key)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_dirs_differ_per_url_and_hide_credentials() {
        let a = mirror_dir(Path::new("/c"), "https://u:tok@h/acme/config.git");
        let b = mirror_dir(Path::new("/c"), "https://h/acme/config.git");
        assert_ne!(a, b);
        assert!(!a.to_string_lossy().contains("tok"));
        assert!(a.to_string_lossy().starts_with("/c/config-"));
    }

    #[test]
    fn known_hosts_matches_host_port_and_key() {
        let key = b"keybytes";
        let line = format!(
            "[git.example.com]:2222,other ssh-ed25519 {}\n",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        assert!(known_hosts_contains(
            &line,
            "git.example.com",
            Some(2222),
            key
        ));
        assert!(!known_hosts_contains(&line, "git.example.com", None, key));
        assert!(!known_hosts_contains(
            &line,
            "git.example.com",
            Some(2222),
            b"other"
        ));
        assert_eq!(ssh_port("ssh://git@h:2222/x.git"), Some(2222));
        assert_eq!(ssh_port("git@h:x.git"), None);
    }

    #[test]
    fn fetch_from_file_url_resolves_branch_and_errors_name_missing_branch() {
        let work = tempfile::tempdir().expect("tempdir");
        let src = git2::Repository::init(work.path().join("src")).expect("init");
        let sig = git2::Signature::now("t", "t@example.com").expect("sig");
        let tree_id = {
            let mut index = src.index().expect("index");
            index.write_tree().expect("tree")
        };
        let tree = src.find_tree(tree_id).expect("tree");
        let id = src
            .commit(
                Some("refs/heads/main"),
                &sig,
                &sig,
                "first commit\n\nbody",
                &tree,
                &[],
            )
            .expect("commit");
        let url = format!("file://{}", work.path().join("src").display());
        let mirror = Mirror::open(&work.path().join("cache"), &url).expect("mirror");
        mirror.fetch(&["main"], None).expect("fetch");
        let commit = mirror.resolve("main").expect("resolve");
        assert_eq!(commit.id, id.to_string());
        assert_eq!(commit.subject, "first commit");
        let err = mirror
            .resolve("dev")
            .expect_err("no such branch")
            .to_string();
        assert!(err.contains("\"dev\""), "{err}");
    }

    #[test]
    fn a_stale_ref_lock_is_removed_and_the_fetch_retried() {
        let work = tempfile::tempdir().expect("tempdir");
        let src = git2::Repository::init(work.path().join("src")).expect("init");
        let sig = git2::Signature::now("t", "t@example.com").expect("sig");
        let commit = |message: &str| {
            let tree_id = src.index().expect("index").write_tree().expect("tree");
            let tree = src.find_tree(tree_id).expect("tree");
            let parent = src.head().ok().and_then(|h| h.peel_to_commit().ok());
            let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
            src.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
                .expect("commit")
        };
        commit("one");
        let url = format!("file://{}", work.path().join("src").display());
        let mirror = Mirror::open(&work.path().join("cache"), &url).expect("mirror");
        let branch = src
            .head()
            .expect("head")
            .shorthand()
            .expect("name")
            .to_owned();
        mirror.fetch(&[&branch], None).expect("first fetch");
        let lock = mirror
            .repository()
            .path()
            .join(format!("refs/heads/{branch}.lock"));
        std::fs::write(&lock, "x").expect("plant a lock");
        std::fs::File::options()
            .write(true)
            .open(&lock)
            .expect("open")
            .set_modified(SystemTime::UNIX_EPOCH)
            .expect("age it");
        let second = commit("two");
        mirror
            .fetch(&[&branch], None)
            .expect("the stale lock does not stop the fetch");
        assert_eq!(
            mirror.resolve(&branch).expect("resolve").id,
            second.to_string()
        );
        assert!(!lock.exists());
    }
}
