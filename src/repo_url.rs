//! Repository URLs as a type with its rules: which schemes berth fetches, how a URL prints
//! without credentials ([`RepoUrl::redacted`]), and how two spellings of one repository compare
//! ([`RepoUrl::matches`], for webhook deliveries). Pure.

use std::fmt;

/// A repository URL from the mapping: `https://`, `http://`, `ssh://`, `git://`, `file://` or
/// scp-like `git@host:path`. Its `Display` and `Debug` never show credentials.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RepoUrl(String);

impl RepoUrl {
    /// Accepts the URL forms berth can fetch.
    ///
    /// # Errors
    /// Any other scheme; the message shows the URL redacted.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let scp_like = !url.contains("://") && url.contains('@') && url.contains(':');
        let known = ["https://", "http://", "ssh://", "file://", "git://"];
        if scp_like || known.iter().any(|s| url.starts_with(s)) {
            Ok(Self(url.to_owned()))
        } else {
            Err(format!(
                "url {:?} must be https://, ssh://, git@host:path, git:// or file://",
                redact(url)
            ))
        }
    }

    /// The URL as written, credentials included: only for git itself.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL with userinfo replaced by `***`.
    pub(crate) fn redacted(&self) -> String {
        redact(&self.0)
    }

    /// The URL with its user info removed (`https://host/x`): the form berth passes on, to
    /// Workflow parameters for example, where a `***` would break a clone.
    pub(crate) fn without_userinfo(&self) -> String {
        redact(&self.0).replacen("://***@", "://", 1)
    }

    /// The directory of a `file://` repository.
    pub(crate) fn local_path(&self) -> Option<&str> {
        self.0.strip_prefix("file://")
    }

    /// Whether this URL names one of a delivery's repository URLs. Bitbucket Server's https
    /// clone URLs carry a `/scm/` segment its ssh URLs lack, so that segment is ignored too.
    /// GitHub, GitLab, Bitbucket and Gitea treat paths case-insensitively
    /// (`Codertocat/Hello-World` is `codertocat/hello-world`), so deliveries from them compare
    /// with `case_insensitive`.
    pub(crate) fn matches(&self, delivery_urls: &[String], case_insensitive: bool) -> bool {
        let key = |u: &str| {
            let u = normalize(u).replacen("/scm/", "/", 1);
            if case_insensitive {
                u.to_lowercase()
            } else {
                u
            }
        };
        let wanted = key(&self.0);
        delivery_urls.iter().any(|u| key(u) == wanted)
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoUrl({:?})", self.redacted())
    }
}

/// Strips userinfo from a URL, so `https://user:token@host/x` prints as `https://***@host/x`.
pub(crate) fn redact(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let host_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..host_end].rfind('@') {
            return format!("{}://***@{}", &url[..scheme_end], &rest[at + 1..]);
        }
    }
    url.to_owned()
}

/// A repository URL reduced to `host/path`: scheme, credentials, port, `.git` and trailing
/// slashes dropped and the host lowercased, so https, ssh and scp-like forms of one repository
/// compare equal.
pub(crate) fn normalize(url: &str) -> String {
    let url = url.trim();
    let (host, path) = if let Some((_, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit('@').next().unwrap_or(authority);
        let host = host.split(':').next().unwrap_or(host);
        (host, path)
    } else if let Some((authority, path)) = url.split_once(':') {
        // git@host:owner/repo
        (authority.rsplit('@').next().unwrap_or(authority), path)
    } else {
        ("", url)
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let path = path.trim_end_matches('/');
    format!("{}/{}", host.to_ascii_lowercase(), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> RepoUrl {
        RepoUrl::parse(s).expect("a valid URL")
    }

    #[test]
    fn redact_removes_userinfo_only() {
        assert_eq!(
            redact("https://user:s3cret@git.example.com/a/b.git"),
            "https://***@git.example.com/a/b.git"
        );
        assert_eq!(
            redact("https://git.example.com/a@b.git"),
            "https://git.example.com/a@b.git"
        );
        assert_eq!(
            redact("git@github.com:acme/x.git"),
            "git@github.com:acme/x.git"
        );
    }

    #[test]
    fn credentials_never_print() {
        let u = url("https://user:s3cret@git.example.com/a/b.git");
        assert!(!u.to_string().contains("s3cret"));
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(u.as_str(), "https://user:s3cret@git.example.com/a/b.git");
        assert_eq!(u.without_userinfo(), "https://git.example.com/a/b.git");
        assert_eq!(
            url("git@github.com:acme/x.git").without_userinfo(),
            "git@github.com:acme/x.git"
        );
        let err = RepoUrl::parse("ftp://user:s3cret@host/x").expect_err("ftp");
        assert!(
            err.contains("must be https") && !err.contains("s3cret"),
            "{err}"
        );
        assert_eq!(url("file:///tmp/r").local_path(), Some("/tmp/r"));
    }

    #[test]
    fn urls_normalize_across_forms() {
        let forms = [
            "https://github.com/acme/web.git",
            "https://GitHub.com/acme/web/",
            "git@github.com:acme/web.git",
            "ssh://git@github.com:22/acme/web.git",
            "https://user:token@github.com/acme/web",
        ];
        for f in forms {
            assert_eq!(normalize(f), "github.com/acme/web", "{f}");
        }
        assert_ne!(
            normalize("https://github.com/acme/web2"),
            "github.com/acme/web"
        );
        assert!(
            url("https://bitbucket.example.com/scm/proj/repo.git").matches(
                &["ssh://git@bitbucket.example.com:7999/proj/repo.git".to_owned()],
                false
            )
        );
        assert_eq!(normalize("file:///tmp/x/repo"), "/tmp/x/repo");
        let mapped = url("https://github.com/codertocat/hello-world.git");
        let sent = ["https://github.com/Codertocat/Hello-World.git".to_owned()];
        assert!(mapped.matches(&sent, true), "hosting services ignore case");
        assert!(
            !mapped.matches(&sent, false),
            "a generic sender compares exactly"
        );
    }
}
