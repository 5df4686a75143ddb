//! Webhook deliveries: verify signatures (constant time), parse each provider's push payload,
//! match their repository URLs against the mapping (`RepoUrl::matches`). Pure functions; the HTTP server that uses
//! them is in `server`.

use hmac::{KeyInit as _, Mac as _};
use serde::Serialize;
use serde_json::Value;

use crate::provider::PullRequest;

/// Providers berth accepts deliveries from, by URL path segment.
pub(crate) const PROVIDERS: [&str; 8] = [
    "github",
    "gitlab",
    "bitbucket",
    "bitbucket-server",
    "gitea",
    "forgejo",
    "gogs",
    "generic",
];

/// Gitea's family: Forgejo and Gogs send the same payloads under their own header names.
const GITEA_FAMILY: [&str; 3] = ["gitea", "forgejo", "gogs"];

/// What a delivery announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// New commits on a branch.
    Push,
    /// A tag was pushed (ignored for syncs).
    Tag,
    /// A pull request was opened, updated or closed.
    PullRequest,
    /// A branch was deleted (ignored).
    Delete,
    /// A connectivity check.
    Ping,
    /// Any other event (ignored).
    Other,
}

/// A parsed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub provider: String,
    pub id: String,
    pub event: String,
    pub kind: Kind,
    /// Every URL the payload gives for the repository (clone, ssh, web).
    pub repositories: Vec<String>,
    /// The first branch the delivery pushes, and its new commit (for the delivery log).
    pub branch: Option<String>,
    pub commit: Option<String>,
    /// Every branch the delivery pushes (a Bitbucket push may carry several changes).
    pub branches: Vec<String>,
    /// Every tag the delivery pushes.
    pub tags: Vec<String>,
    /// What a pull request event says.
    pub pull_request: Option<PullRequestEvent>,
}

/// A pull request opened, updated or closed, as a delivery announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PullRequestEvent {
    pub pull: PullRequest,
    /// Closed or merged: its runs stop.
    pub closed: bool,
    /// The provider's word for it (`synchronize`, `update`, `pr:merged`, …).
    pub action: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Error {
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    #[error("unparseable payload: {0}")]
    Payload(String),
}

/// Request headers, lowercase names.
pub(crate) type Headers = std::collections::HashMap<String, String>;

fn header<'a>(headers: &'a Headers, name: &str) -> &'a str {
    headers.get(name).map_or("", String::as_str)
}

/// The first of several headers that is set (Gitea, Forgejo and Gogs name theirs apart).
fn first_header<'a>(headers: &'a Headers, names: &[&str]) -> &'a str {
    names
        .iter()
        .map(|n| header(headers, n))
        .find(|v| !v.is_empty())
        .unwrap_or("")
}

const GITEA_EVENT: [&str; 3] = ["x-gitea-event", "x-forgejo-event", "x-gogs-event"];
const GITEA_DELIVERY: [&str; 3] = ["x-gitea-delivery", "x-forgejo-delivery", "x-gogs-delivery"];
const GITEA_SIGNATURE: [&str; 3] = [
    "x-gitea-signature",
    "x-forgejo-signature",
    "x-gogs-signature",
];

/// The JSON of a delivery: the body, or for a form-encoded delivery (GitHub's and Gitea's
/// `application/x-www-form-urlencoded` content type) its `payload` field.
fn payload<'a>(headers: &Headers, body: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, Error> {
    let form = header(headers, "content-type")
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded");
    if !form {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| std::borrow::Cow::Owned(v.into_owned().into_bytes()))
        .ok_or_else(|| {
            Error::Payload(
                "a form-encoded delivery without a payload field; send application/json".to_owned(),
            )
        })
}

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// Whether a delivery is a connectivity check, from its headers alone (so it can be answered
/// before its body is verified or parsed).
pub(crate) fn is_ping(provider: &str, headers: &Headers) -> bool {
    match provider {
        "github" => header(headers, "x-github-event") == "ping",
        "bitbucket-server" => header(headers, "x-event-key") == "diagnostics:ping",
        p if GITEA_FAMILY.contains(&p) => first_header(headers, &GITEA_EVENT) == "ping",
        _ => false,
    }
}

/// Parses a delivery's body for a provider.
///
/// # Errors
/// An unknown provider, or a body that is not the provider's JSON.
pub(crate) fn parse(provider: &str, headers: &Headers, body: &[u8]) -> Result<Delivery, Error> {
    if !PROVIDERS.contains(&provider) {
        return Err(Error::UnknownProvider(provider.to_owned()));
    }
    let json: Value = serde_json::from_slice(&payload(headers, body)?)
        .map_err(|e| Error::Payload(e.to_string()))?;
    if !json.is_object() {
        return Err(Error::Payload("the body is not a JSON object".to_owned()));
    }
    let mut d = Delivery {
        provider: provider.to_owned(),
        id: String::new(),
        event: String::new(),
        kind: Kind::Other,
        repositories: Vec::new(),
        branch: None,
        commit: None,
        branches: Vec::new(),
        tags: Vec::new(),
        pull_request: None,
    };
    match provider {
        "github" | "gitea" | "forgejo" | "gogs" => github_family(&mut d, headers, &json),
        "gitlab" => gitlab(&mut d, headers, &json),
        "bitbucket" => bitbucket(&mut d, headers, &json),
        "bitbucket-server" => bitbucket_server(&mut d, headers, &json),
        _ => generic(&mut d, headers, &json)?,
    }
    if d.repositories.is_empty() && d.kind != Kind::Ping {
        return Err(Error::Payload(
            "no repository URL in the payload".to_owned(),
        ));
    }
    Ok(d)
}

/// The strings among some JSON values.
fn urls(values: &[&Value]) -> Vec<String> {
    values
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// GitHub's deliveries, and Gitea's, Forgejo's and Gogs's, which share their shape.
fn github_family(d: &mut Delivery, headers: &Headers, json: &Value) {
    if d.provider == "github" {
        d.event = header(headers, "x-github-event").to_owned();
        d.id = header(headers, "x-github-delivery").to_owned();
    } else {
        d.event = first_header(headers, &GITEA_EVENT).to_owned();
        d.id = first_header(headers, &GITEA_DELIVERY).to_owned();
    }
    let repo = &json["repository"];
    d.repositories = urls(&[
        &repo["clone_url"],
        &repo["ssh_url"],
        &repo["html_url"],
        &repo["git_url"],
    ]);
    match d.event.as_str() {
        "ping" => d.kind = Kind::Ping,
        "push" => {
            let deleted = json["deleted"] == true || json["after"] == ZERO_SHA;
            ref_kind(d, json["ref"].as_str(), json["after"].as_str(), deleted);
        }
        "pull_request" => {
            let p = &json["pull_request"];
            let action = json["action"].as_str().unwrap_or_default();
            // GitHub says synchronize, Gitea and Forgejo synchronized
            let closed = match action {
                "opened" | "reopened" | "synchronize" | "synchronized" => Some(false),
                "closed" => Some(true),
                _ => None,
            };
            pull_request(
                d,
                p["number"].as_u64(),
                [&p["base"]["ref"], &p["head"]["ref"], &p["head"]["sha"]],
                action,
                closed,
            );
        }
        _ => {}
    }
}

/// GitLab's project and system hook deliveries.
fn gitlab(d: &mut Delivery, headers: &Headers, json: &Value) {
    d.event = header(headers, "x-gitlab-event").to_owned();
    d.id = header(headers, "x-gitlab-event-uuid").to_owned();
    let project = &json["project"];
    d.repositories = urls(&[
        &project["git_http_url"],
        &project["git_ssh_url"],
        &project["web_url"],
        &json["repository"]["git_http_url"],
    ]);
    // project hooks say object_kind, system hooks event_name
    let kind = json["object_kind"].as_str().or(json["event_name"].as_str());
    match kind.unwrap_or_default() {
        "push" | "tag_push" => {
            let after = json["after"].as_str().or(json["checkout_sha"].as_str());
            ref_kind(d, json["ref"].as_str(), after, json["after"] == ZERO_SHA);
        }
        "merge_request" => {
            let m = &json["object_attributes"];
            let action = m["action"].as_str().unwrap_or_default();
            let closed = match action {
                "open" | "reopen" | "update" => Some(false),
                "close" | "merge" => Some(true),
                _ => None,
            };
            pull_request(
                d,
                m["iid"].as_u64(),
                [
                    &m["target_branch"],
                    &m["source_branch"],
                    &m["last_commit"]["id"],
                ],
                action,
                closed,
            );
        }
        _ => {}
    }
}

/// Bitbucket Cloud's deliveries.
fn bitbucket(d: &mut Delivery, headers: &Headers, json: &Value) {
    d.event = header(headers, "x-event-key").to_owned();
    d.id = headers
        .get("x-request-uuid")
        .or_else(|| headers.get("x-hook-uuid"))
        .cloned()
        .unwrap_or_default();
    let repo = &json["repository"];
    let mut repos = urls(&[&repo["links"]["html"]["href"]]);
    if let Some(full) = repo["full_name"].as_str() {
        repos.push(format!("https://bitbucket.org/{full}"));
    }
    d.repositories = repos;
    if let Some(action) = d.event.strip_prefix("pullrequest:") {
        let p = &json["pullrequest"];
        let closed = match action {
            "created" | "updated" => Some(false),
            "fulfilled" | "rejected" => Some(true),
            _ => None,
        };
        let event = d.event.clone();
        pull_request(
            d,
            p["id"].as_u64(),
            [
                &p["destination"]["branch"]["name"],
                &p["source"]["branch"]["name"],
                &p["source"]["commit"]["hash"],
            ],
            &event,
            closed,
        );
    }
    if d.event == "repo:push" {
        // one delivery may carry several changes: every one counts
        for change in json["push"]["changes"].as_array().into_iter().flatten() {
            let new = &change["new"];
            if new.is_null() || change["closed"] == true {
                let name = change["old"]["name"]
                    .as_str()
                    .map(|n| format!("refs/heads/{n}"));
                ref_kind(d, name.as_deref(), None, true);
                continue;
            }
            let prefix = if new["type"] == "tag" {
                "refs/tags/"
            } else {
                "refs/heads/"
            };
            let name = new["name"].as_str().map(|n| format!("{prefix}{n}"));
            ref_kind(d, name.as_deref(), new["target"]["hash"].as_str(), false);
        }
    }
}

/// Bitbucket Server's and Data Center's deliveries.
fn bitbucket_server(d: &mut Delivery, headers: &Headers, json: &Value) {
    d.event = header(headers, "x-event-key").to_owned();
    d.id = header(headers, "x-request-id").to_owned();
    // pull request events name the repository on the target side
    let repo = if json["repository"].is_null() {
        &json["pullRequest"]["toRef"]["repository"]
    } else {
        &json["repository"]
    };
    d.repositories = repo["links"]["clone"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["href"].as_str().map(str::to_owned))
        .collect();
    match d.event.as_str() {
        "diagnostics:ping" => d.kind = Kind::Ping,
        "pr:opened" | "pr:from_ref_updated" | "pr:merged" | "pr:declined" | "pr:deleted" => {
            let p = &json["pullRequest"];
            let event = d.event.clone();
            pull_request(
                d,
                p["id"].as_u64(),
                [
                    &p["toRef"]["displayId"],
                    &p["fromRef"]["displayId"],
                    &p["fromRef"]["latestCommit"],
                ],
                &event,
                Some(!matches!(
                    event.as_str(),
                    "pr:opened" | "pr:from_ref_updated"
                )),
            );
        }
        "repo:refs_changed" => {
            for change in json["changes"].as_array().into_iter().flatten() {
                let deleted = change["type"] == "DELETE" || change["toHash"] == ZERO_SHA;
                ref_kind(
                    d,
                    change["ref"]["id"].as_str(),
                    change["toHash"].as_str(),
                    deleted,
                );
            }
        }
        _ => {}
    }
}

/// The generic receiver: `{"repository": url, "branch": b, "revision": sha}`.
fn generic(d: &mut Delivery, headers: &Headers, json: &Value) -> Result<(), Error> {
    // generic: {"repository": url, "branch": b, "revision": sha}
    d.event = "push".to_owned();
    d.id = header(headers, "x-berth-delivery").to_owned();
    d.repositories = urls(&[&json["repository"]]);
    if d.repositories.is_empty() {
        return Err(Error::Payload(
            "generic deliveries need \"repository\"".to_owned(),
        ));
    }
    let branch = json["branch"].as_str().map(|b| {
        if b.starts_with("refs/") {
            b.to_owned()
        } else {
            format!("refs/heads/{b}")
        }
    });
    ref_kind(d, branch.as_deref(), json["revision"].as_str(), false);
    if d.branch.is_none() && d.kind == Kind::Other {
        d.kind = Kind::Push;
    }
    Ok(())
}

/// Makes a delivery a pull request event: the number, then the target branch, source branch
/// and head commit; `closed` is `None` for actions that change nothing berth builds.
fn pull_request(
    d: &mut Delivery,
    number: Option<u64>,
    [base, head, sha]: [&Value; 3],
    action: &str,
    closed: Option<bool>,
) {
    let (Some(number), Some(closed)) = (number, closed) else {
        return;
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    d.kind = Kind::PullRequest;
    d.branch = Some(text(base));
    d.commit = Some(text(sha)).filter(|s| !s.is_empty());
    d.pull_request = Some(PullRequestEvent {
        pull: PullRequest {
            number,
            base: text(base),
            head_branch: text(head),
            head_sha: text(sha),
        },
        closed,
        action: action.to_owned(),
    });
}

/// Adds one changed ref to a delivery. A branch push outranks a tag push, which outranks a
/// deletion, so a delivery that pushes a branch and a tag (or deletes another branch) is a
/// push of that branch.
fn ref_kind(d: &mut Delivery, reference: Option<&str>, commit: Option<&str>, deleted: bool) {
    let Some(reference) = reference else { return };
    let kind = match reference.strip_prefix("refs/heads/") {
        Some(branch) if !deleted => {
            d.branches.push(branch.to_owned());
            if d.branch.is_none() {
                d.branch = Some(branch.to_owned());
                d.commit = commit.filter(|c| *c != ZERO_SHA).map(str::to_owned);
            }
            Kind::Push
        }
        Some(_) => Kind::Delete,
        None if reference.starts_with("refs/tags/") && !deleted => {
            d.tags.push(reference["refs/tags/".len()..].to_owned());
            if d.commit.is_none() {
                d.commit = commit.filter(|c| *c != ZERO_SHA).map(str::to_owned);
            }
            Kind::Tag
        }
        None if reference.starts_with("refs/tags/") => Kind::Delete,
        None => return,
    };
    let rank = |k: &Kind| match k {
        Kind::Push => 3,
        Kind::Tag => 2,
        Kind::Delete => 1,
        Kind::Ping | Kind::Other | Kind::PullRequest => 0,
    };
    if rank(&kind) > rank(&d.kind) {
        d.kind = kind;
    }
}

/// Checks a delivery's signature against a repository's webhook secret, in constant time.
/// GitHub and Gitea sign the raw body with HMAC-SHA256 (`X-Hub-Signature-256`,
/// `X-Gitea-Signature`), Bitbucket Cloud and Server with `X-Hub-Signature`, the generic
/// receiver with `X-Berth-Signature`; GitLab sends the secret itself as `X-Gitlab-Token`.
pub(crate) fn verify(provider: &str, headers: &Headers, body: &[u8], secret: &[u8]) -> bool {
    let signature = match provider {
        "github" => header(headers, "x-hub-signature-256"),
        p if GITEA_FAMILY.contains(&p) => first_header(headers, &GITEA_SIGNATURE),
        "bitbucket" | "bitbucket-server" => header(headers, "x-hub-signature"),
        "generic" => header(headers, "x-berth-signature"),
        "gitlab" => {
            let token = header(headers, "x-gitlab-token").as_bytes();
            return !token.is_empty() && subtle::ConstantTimeEq::ct_eq(token, secret).into();
        }
        _ => return false,
    };
    let hex_digest = signature.strip_prefix("sha256=").unwrap_or(signature);
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    // verify_slice compares in constant time
    mac.verify_slice(&expected).is_ok()
}

pub use crate::notify::sinks::sign;

/// A webhook delivery as the audit log keeps it: no payload, no secret.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct DeliveryRecord {
    pub id: String,
    pub provider: String,
    pub event: String,
    pub received: String,
    pub repositories: Vec<String>,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub matched: Vec<String>,
    pub action: String,
    pub status: u16,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn github_push_tag_delete_and_ping() {
        let body = json!({"ref": "refs/heads/main", "after": "abc", "deleted": false,
            "repository": {"clone_url": "https://github.com/acme/web.git", "ssh_url": "git@github.com:acme/web.git"}});
        let h = headers(&[("x-github-event", "push"), ("x-github-delivery", "d-1")]);
        let d = parse("github", &h, body.to_string().as_bytes()).expect("push");
        assert_eq!(
            (
                d.kind.clone(),
                d.branch.as_deref(),
                d.commit.as_deref(),
                d.id.as_str()
            ),
            (Kind::Push, Some("main"), Some("abc"), "d-1")
        );
        assert_eq!(d.repositories.len(), 2);
        let tag = json!({"ref": "refs/tags/v1", "after": "abc", "repository": {"clone_url": "u"}});
        assert_eq!(
            parse("github", &h, tag.to_string().as_bytes())
                .expect("tag")
                .kind,
            Kind::Tag
        );
        let del = json!({"ref": "refs/heads/old", "after": ZERO_SHA, "deleted": true, "repository": {"clone_url": "u"}});
        assert_eq!(
            parse("github", &h, del.to_string().as_bytes())
                .expect("delete")
                .kind,
            Kind::Delete
        );
        let ping = headers(&[("x-github-event", "ping")]);
        assert_eq!(
            parse(
                "github",
                &ping,
                br#"{"zen": "x", "repository": {"clone_url": "u"}}"#
            )
            .expect("ping")
            .kind,
            Kind::Ping
        );
    }

    #[test]
    fn gitlab_bitbucket_server_and_generic_payloads() {
        let gitlab = json!({"object_kind": "push", "ref": "refs/heads/main", "after": "def", "checkout_sha": "def",
            "project": {"git_http_url": "https://gitlab.com/acme/web.git", "git_ssh_url": "git@gitlab.com:acme/web.git"}});
        let d = parse(
            "gitlab",
            &headers(&[("x-gitlab-event", "Push Hook")]),
            gitlab.to_string().as_bytes(),
        )
        .expect("gitlab");
        assert_eq!(
            (d.kind, d.branch.as_deref(), d.commit.as_deref()),
            (Kind::Push, Some("main"), Some("def"))
        );

        let cloud = json!({"repository": {"full_name": "acme/web", "links": {"html": {"href": "https://bitbucket.org/acme/web"}}},
            "push": {"changes": [{"new": {"type": "branch", "name": "main", "target": {"hash": "123"}}, "old": {"name": "main"}, "closed": false}]}});
        let d = parse(
            "bitbucket",
            &headers(&[("x-event-key", "repo:push")]),
            cloud.to_string().as_bytes(),
        )
        .expect("cloud");
        assert_eq!(
            (d.kind, d.branch.as_deref(), d.commit.as_deref()),
            (Kind::Push, Some("main"), Some("123"))
        );

        let server = json!({"repository": {"slug": "web", "links": {"clone": [
                {"href": "https://bb.example.com/scm/acme/web.git", "name": "http"},
                {"href": "ssh://git@bb.example.com:7999/acme/web.git", "name": "ssh"}]}},
            "changes": [{"ref": {"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"}, "fromHash": "a", "toHash": "b", "type": "UPDATE"}]});
        let d = parse(
            "bitbucket-server",
            &headers(&[("x-event-key", "repo:refs_changed")]),
            server.to_string().as_bytes(),
        )
        .expect("server");
        assert_eq!(
            (d.kind, d.branch.as_deref(), d.commit.as_deref()),
            (Kind::Push, Some("main"), Some("b"))
        );

        let generic = json!({"repository": "https://git.example.com/acme/web.git", "branch": "main", "revision": "cafe"});
        let d = parse("generic", &Headers::new(), generic.to_string().as_bytes()).expect("generic");
        assert_eq!(
            (d.kind, d.branch.as_deref(), d.commit.as_deref()),
            (Kind::Push, Some("main"), Some("cafe"))
        );
    }

    #[test]
    fn bad_payloads_and_providers_are_errors() {
        assert_eq!(
            parse("svn", &Headers::new(), b"{}"),
            Err(Error::UnknownProvider("svn".into()))
        );
        assert!(matches!(
            parse("github", &Headers::new(), b"not json"),
            Err(Error::Payload(_))
        ));
        assert!(matches!(
            parse("generic", &Headers::new(), b"{\"branch\": \"main\"}"),
            Err(Error::Payload(_))
        ));
    }

    #[test]
    fn signatures_verify_per_provider() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let secret = b"s3cret";
        let sig = sign(secret, body);
        assert!(verify(
            "github",
            &headers(&[("x-hub-signature-256", &sig)]),
            body,
            secret
        ));
        assert!(!verify(
            "github",
            &headers(&[("x-hub-signature-256", &sig)]),
            body,
            b"other"
        ));
        assert!(!verify(
            "github",
            &headers(&[("x-hub-signature-256", &sig)]),
            b"tampered",
            secret
        ));
        assert!(!verify("github", &Headers::new(), body, secret));
        let bare = sig.trim_start_matches("sha256=");
        assert!(verify(
            "gitea",
            &headers(&[("x-gitea-signature", bare)]),
            body,
            secret
        ));
        assert!(verify(
            "bitbucket",
            &headers(&[("x-hub-signature", &sig)]),
            body,
            secret
        ));
        assert!(verify(
            "bitbucket-server",
            &headers(&[("x-hub-signature", &sig)]),
            body,
            secret
        ));
        assert!(verify(
            "generic",
            &headers(&[("x-berth-signature", &sig)]),
            body,
            secret
        ));
        assert!(verify(
            "gitlab",
            &headers(&[("x-gitlab-token", "s3cret")]),
            body,
            secret
        ));
        assert!(!verify(
            "gitlab",
            &headers(&[("x-gitlab-token", "s3cre")]),
            body,
            secret
        ));
        assert!(!verify("gitlab", &Headers::new(), body, b""));
    }

    #[test]
    fn every_ref_of_a_batched_push_counts() {
        // Bitbucket Cloud: `git push origin main v1.0` and a deleted branch in one delivery
        let body = json!({"repository": {"full_name": "acme/config", "links": {"html": {"href": "https://bitbucket.org/acme/config"}}},
            "push": {"changes": [
                {"new": {"type": "branch", "name": "main", "target": {"hash": "abc"}}, "old": {"name": "main"}},
                {"new": {"type": "tag", "name": "v1.0", "target": {"hash": "abc"}}, "old": null},
                {"new": null, "old": {"type": "branch", "name": "old-feature"}, "closed": true}]}});
        let h = headers(&[("x-event-key", "repo:push"), ("x-request-uuid", "r-1")]);
        let d = parse("bitbucket", &h, body.to_string().as_bytes()).expect("push");
        assert_eq!(d.kind, Kind::Push);
        assert_eq!(d.branches, ["main"]);
        assert_eq!(
            (d.branch.as_deref(), d.commit.as_deref()),
            (Some("main"), Some("abc"))
        );
        // Bitbucket Server: a tag first, then two branches
        let body = json!({"eventKey": "repo:refs_changed",
            "repository": {"links": {"clone": [{"href": "ssh://git@bb.example.com:7999/acme/config.git"}]}},
            "changes": [
                {"ref": {"id": "refs/tags/v2"}, "toHash": "t", "type": "ADD"},
                {"ref": {"id": "refs/heads/main"}, "toHash": "m", "type": "UPDATE"},
                {"ref": {"id": "refs/heads/release/2"}, "toHash": "r", "type": "ADD"}]});
        let h = headers(&[
            ("x-event-key", "repo:refs_changed"),
            ("x-request-id", "r-2"),
        ]);
        let d = parse("bitbucket-server", &h, body.to_string().as_bytes()).expect("push");
        assert_eq!(d.kind, Kind::Push);
        assert_eq!(d.branches, ["main", "release/2"]);
    }

    #[test]
    fn form_encoded_gogs_forgejo_and_system_hook_deliveries_parse() {
        let json = json!({"ref": "refs/heads/main", "after": "abc",
            "repository": {"clone_url": "https://github.com/acme/web.git"}});
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &json.to_string())
            .finish();
        let h = headers(&[
            ("x-github-event", "push"),
            ("content-type", "application/x-www-form-urlencoded"),
        ]);
        let d = parse("github", &h, form.as_bytes()).expect("form-encoded");
        assert_eq!(
            (d.kind.clone(), d.branch.as_deref()),
            (Kind::Push, Some("main"))
        );
        let err = parse("github", &h, b"other=1").expect_err("no payload");
        assert!(err.to_string().contains("send application/json"), "{err}");

        let body = json.to_string();
        for (provider, prefix) in [
            ("gogs", "x-gogs"),
            ("forgejo", "x-forgejo"),
            ("gitea", "x-gogs"),
        ] {
            let signature = sign(b"s3cret", body.as_bytes());
            let hex = signature.trim_start_matches("sha256=").to_owned();
            let h = headers(&[
                (&format!("{prefix}-event"), "push"),
                (&format!("{prefix}-delivery"), "d-9"),
                (&format!("{prefix}-signature"), &hex),
            ]);
            let d = parse(provider, &h, body.as_bytes()).expect(provider);
            assert_eq!(
                (d.kind.clone(), d.id.as_str()),
                (Kind::Push, "d-9"),
                "{provider}"
            );
            assert!(
                verify(provider, &h, body.as_bytes(), b"s3cret"),
                "{provider}"
            );
            assert!(
                !verify(provider, &h, body.as_bytes(), b"wrong"),
                "{provider}"
            );
        }

        let system = json!({"event_name": "push", "ref": "refs/heads/main", "after": "abc",
            "project": {"git_http_url": "https://gitlab.example.com/acme/web.git"}});
        let h = headers(&[("x-gitlab-event", "System Hook")]);
        let d = parse("gitlab", &h, system.to_string().as_bytes()).expect("system hook");
        assert_eq!((d.kind, d.branch.as_deref()), (Kind::Push, Some("main")));
    }

    /// The pull request a delivery announces: (number, base, head branch, head sha, closed).
    fn pull(d: &Delivery) -> (u64, &str, &str, &str, bool) {
        let e = d.pull_request.as_ref().expect("a pull request event");
        (
            e.pull.number,
            e.pull.base.as_str(),
            e.pull.head_branch.as_str(),
            e.pull.head_sha.as_str(),
            e.closed,
        )
    }

    #[test]
    fn pull_request_events_of_every_provider() {
        let gitea = json!({"action": "synchronized", "number": 3,
            "pull_request": {"number": 3, "head": {"ref": "feature", "sha": "abc"}, "base": {"ref": "main"}},
            "repository": {"clone_url": "https://git.example.com/acme/web.git"}});
        let h = headers(&[
            ("x-gitea-event", "pull_request"),
            ("x-gitea-delivery", "g-1"),
        ]);
        let d = parse("gitea", &h, gitea.to_string().as_bytes()).expect("gitea");
        assert_eq!(d.kind, Kind::PullRequest);
        assert_eq!(pull(&d), (3, "main", "feature", "abc", false));
        let mut closed = gitea.clone();
        closed["action"] = json!("closed");
        let d = parse(
            "forgejo",
            &headers(&[("x-forgejo-event", "pull_request")]),
            closed.to_string().as_bytes(),
        )
        .expect("forgejo");
        assert!(pull(&d).4, "closed");
        // a label change builds nothing
        let mut labeled = gitea.clone();
        labeled["action"] = json!("label_updated");
        let d = parse("gitea", &h, labeled.to_string().as_bytes()).expect("labeled");
        assert_eq!((d.kind, d.pull_request), (Kind::Other, None));

        let gitlab = json!({"object_kind": "merge_request",
            "project": {"git_http_url": "https://gitlab.com/acme/web.git"},
            "object_attributes": {"iid": 7, "action": "update", "source_branch": "fix",
                "target_branch": "main", "last_commit": {"id": "def"}}});
        let d = parse(
            "gitlab",
            &headers(&[("x-gitlab-event", "Merge Request Hook")]),
            gitlab.to_string().as_bytes(),
        )
        .expect("gitlab");
        assert_eq!(pull(&d), (7, "main", "fix", "def", false));
        let mut merged = gitlab.clone();
        merged["object_attributes"]["action"] = json!("merge");
        let d = parse("gitlab", &headers(&[]), merged.to_string().as_bytes()).expect("merged");
        assert!(pull(&d).4);

        let bitbucket = json!({"repository": {"full_name": "acme/web", "links": {"html": {"href": "https://bitbucket.org/acme/web"}}},
            "pullrequest": {"id": 9, "source": {"branch": {"name": "fix"}, "commit": {"hash": "0123456789ab"}},
                "destination": {"branch": {"name": "main"}}}});
        let d = parse(
            "bitbucket",
            &headers(&[("x-event-key", "pullrequest:updated")]),
            bitbucket.to_string().as_bytes(),
        )
        .expect("bitbucket");
        assert_eq!(pull(&d), (9, "main", "fix", "0123456789ab", false));
        let d = parse(
            "bitbucket",
            &headers(&[("x-event-key", "pullrequest:rejected")]),
            bitbucket.to_string().as_bytes(),
        )
        .expect("declined");
        assert!(pull(&d).4);

        let server = json!({"pullRequest": {"id": 11,
            "fromRef": {"displayId": "fix", "latestCommit": "fed"},
            "toRef": {"displayId": "main", "repository": {"links": {"clone": [{"href": "https://bb.example.com/scm/acme/web.git"}]}}}}});
        let d = parse(
            "bitbucket-server",
            &headers(&[("x-event-key", "pr:from_ref_updated")]),
            server.to_string().as_bytes(),
        )
        .expect("server");
        assert_eq!(pull(&d), (11, "main", "fix", "fed", false));
        assert_eq!(d.repositories, ["https://bb.example.com/scm/acme/web.git"]);
        let d = parse(
            "bitbucket-server",
            &headers(&[("x-event-key", "pr:merged")]),
            server.to_string().as_bytes(),
        )
        .expect("merged");
        assert!(pull(&d).4);
    }

    #[test]
    fn tag_pushes_name_their_tags() {
        let body = json!({"ref": "refs/tags/v1.2.0", "after": "abc",
            "repository": {"clone_url": "https://github.com/acme/web.git"}});
        let d = parse(
            "github",
            &headers(&[("x-github-event", "push")]),
            body.to_string().as_bytes(),
        )
        .expect("tag");
        assert_eq!(
            (d.kind, d.tags, d.commit.as_deref()),
            (Kind::Tag, vec!["v1.2.0".to_owned()], Some("abc"))
        );
        let gitlab = json!({"object_kind": "tag_push", "ref": "refs/tags/v2", "after": "def",
            "project": {"git_http_url": "https://gitlab.com/acme/web.git"}});
        let d = parse("gitlab", &headers(&[]), gitlab.to_string().as_bytes()).expect("gitlab tag");
        assert_eq!(d.tags, ["v2"]);
    }
}
