//! The git hosts' REST APIs: posting commit statuses and listing open pull requests. Each
//! provider is one small module behind [`Api`], which only builds requests and reads answers
//! (pure); [`Client`] is the one HTTP client that sends them, with a timeout on every call, the
//! token in a header and never in a URL, an error or a log.

mod bitbucket;
mod bitbucket_server;
mod gitea;
mod github;
mod gitlab;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::repo_url::RepoUrl;
use crate::telemetry::{DeliveryLabels, Metrics};

/// The hosts berth talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    GitHub,
    GitLab,
    Gitea,
    Forgejo,
    Bitbucket,
    BitbucketServer,
}

impl Kind {
    /// The type as the mapping writes it.
    ///
    /// # Errors
    /// An unknown type, or one without the APIs berth needs.
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "github" => Self::GitHub,
            "gitlab" => Self::GitLab,
            "gitea" => Self::Gitea,
            "forgejo" => Self::Forgejo,
            "bitbucket" => Self::Bitbucket,
            "bitbucket-server" => Self::BitbucketServer,
            "gogs" => {
                return Err(
                    "provider type gogs has no commit status API; berth cannot report \
                            to it (Gitea and Forgejo, Gogs's successors, have one)"
                        .to_owned(),
                );
            }
            other => {
                return Err(format!(
                    "provider type {other:?} must be one of github, gitlab, gitea, forgejo, \
                     bitbucket, bitbucket-server"
                ));
            }
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Gitea => "gitea",
            Self::Forgejo => "forgejo",
            Self::Bitbucket => "bitbucket",
            Self::BitbucketServer => "bitbucket-server",
        }
    }

    /// The module that speaks this provider's API.
    pub(crate) fn api(self) -> &'static dyn Api {
        match self {
            Self::GitHub => &github::GitHub,
            Self::GitLab => &gitlab::GitLab,
            Self::Gitea | Self::Forgejo => &gitea::Gitea,
            Self::Bitbucket => &bitbucket::Bitbucket,
            Self::BitbucketServer => &bitbucket_server::BitbucketServer,
        }
    }

    /// The API's address for the public services, from the repository's host.
    fn public_api(self, host: &str) -> Option<&'static str> {
        match (self, host) {
            (Self::GitHub, "github.com") => Some("https://api.github.com"),
            (Self::GitLab, "gitlab.com") => Some("https://gitlab.com"),
            (Self::Bitbucket, "bitbucket.org") => Some("https://api.bitbucket.org"),
            _ => None,
        }
    }
}

/// A repository's place on its host: where the API is, what the repository is called there,
/// and the Secret holding the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub kind: Kind,
    /// The API's base URL, without a trailing `/`.
    pub base: String,
    /// The repository's path on the host: `owner/repo`, `group/sub/project`, or for
    /// Bitbucket Server `PROJECT/slug`.
    pub project: String,
    /// Secret in berth's namespace: `token` (Bitbucket also `username`).
    pub secret: Option<String>,
}

impl Target {
    /// A repository's target from the mapping: `url` is required unless the repository is on
    /// github.com, gitlab.com or bitbucket.org.
    ///
    /// # Errors
    /// A URL that is not http(s), or none where one is needed.
    pub(crate) fn new(
        kind: Kind,
        url: Option<&str>,
        repository: &RepoUrl,
        secret: Option<String>,
    ) -> Result<Self, String> {
        let normalized = crate::repo_url::normalize(repository.as_str());
        let (host, path) = normalized.split_once('/').unwrap_or((&normalized, ""));
        let base = match url {
            Some(u) => {
                let u = u.trim_end_matches('/');
                let valid = (u.starts_with("https://") || u.starts_with("http://"))
                    && !u.contains(['?', '#', ' '])
                    && u.split("://").nth(1).is_some_and(|rest| !rest.is_empty());
                if !valid {
                    return Err(format!(
                        "provider url {u:?} must be an http(s) URL without query, such as \
                         https://git.example.com"
                    ));
                }
                if u.split("://")
                    .nth(1)
                    .and_then(|r| r.split('/').next())
                    .is_some_and(|a| a.contains('@'))
                {
                    return Err(
                        "provider url must not carry credentials; put the token in the \
                         provider's Secret"
                            .to_owned(),
                    );
                }
                u.to_owned()
            }
            None => kind.public_api(host).map(str::to_owned).ok_or_else(|| {
                format!(
                    "provider url is required for a {} repository on {host} (only github.com, \
                     gitlab.com and bitbucket.org are known)",
                    kind.as_str()
                )
            })?,
        };
        let project = match kind {
            // https://host/scm/KEY/slug.git, or ssh://git@host:7999/key/slug.git
            Kind::BitbucketServer => path.strip_prefix("scm/").unwrap_or(path).to_owned(),
            _ => path.to_owned(),
        };
        let parts = project.split('/').filter(|p| !p.is_empty()).count();
        let fits = match kind {
            Kind::GitLab => parts >= 2,
            _ => parts == 2,
        };
        if !fits {
            return Err(format!(
                "cannot tell the {} repository from the URL {} (expected \
                 {}/OWNER/REPO)",
                kind.as_str(),
                repository.redacted(),
                host
            ));
        }
        Ok(Self {
            kind,
            base,
            project,
            secret,
        })
    }

    /// The two halves of a two-part project (`owner`, `repo`).
    fn owner_repo(&self) -> (&str, &str) {
        self.project.split_once('/').unwrap_or((&self.project, ""))
    }
}

/// A commit status, whatever the provider calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum State {
    Pending,
    Running,
    Success,
    Failure,
    Error,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Error => "error",
        }
    }

    pub(crate) fn is_final(self) -> bool {
        matches!(self, Self::Success | Self::Failure | Self::Error)
    }
}

/// What one status says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub state: State,
    /// `berth/<pipeline>`.
    pub context: String,
    pub description: String,
    /// The run's page on berth's dashboard, when `--external-url` is set.
    pub target_url: Option<String>,
}

/// The longest description berth sends (GitHub and Gitea cut longer ones).
const DESCRIPTION_LIMIT: usize = 140;

impl Status {
    /// The description, cut to [`DESCRIPTION_LIMIT`] characters.
    fn description(&self) -> String {
        let mut d: String = self.description.chars().take(DESCRIPTION_LIMIT).collect();
        if d.len() < self.description.len() {
            d.pop();
            d.push('…');
        }
        d
    }
}

/// An open pull request, as the provider lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PullRequest {
    pub number: u64,
    /// The target branch.
    pub base: String,
    /// The source branch (in the fork, for a fork's pull request).
    pub head_branch: String,
    /// The head commit; Bitbucket Cloud lists it abbreviated.
    pub head_sha: String,
}

/// A comment on a pull request, as the host lists or answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Comment {
    pub id: u64,
    pub body: String,
    /// Bitbucket Server's version of the comment, which an edit must name.
    pub version: Option<u64>,
}

/// The longest comment GitHub takes (in characters); the default for hosts that do not say.
pub(crate) const COMMENT_LIMIT: usize = 65_536;

/// One request to a provider.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    pub method: http::Method,
    pub url: String,
    pub body: Option<Value>,
}

impl Call {
    fn get(url: String) -> Self {
        Self {
            method: http::Method::GET,
            url,
            body: None,
        }
    }

    fn post(url: String, body: Value) -> Self {
        Self {
            method: http::Method::POST,
            url,
            body: Some(body),
        }
    }

    fn with(method: http::Method, url: String, body: Value) -> Self {
        Self {
            method,
            url,
            body: Some(body),
        }
    }
}

/// How many pull requests berth asks for per page.
pub(crate) const PAGE: u32 = 50;

/// One provider's API: requests built and answers read, with no I/O.
pub(crate) trait Api: Sync {
    /// The request that posts a status on a commit.
    fn status(&self, target: &Target, sha: &str, status: &Status) -> Call;
    /// The request for one page (from 1) of the open pull requests, [`PAGE`] per page.
    fn open_pulls(&self, target: &Target, page: u32) -> Call;
    /// The pull requests of one page of that answer.
    ///
    /// # Errors
    /// The answer is not the provider's list.
    fn pulls(&self, body: &Value) -> Result<Vec<PullRequest>, String>;
    /// The ref the head of pull request `number` is fetched by, forks included; `None` where
    /// the host has no such ref (Bitbucket Cloud: its source branch is fetched instead).
    fn head_ref(&self, number: u64) -> Option<String>;
    /// The host's word for a state.
    fn state(&self, state: State) -> &'static str;
    /// The request for one page (from 1) of the comments on pull request `number`, [`PAGE`]
    /// per page.
    fn comments(&self, target: &Target, number: u64, page: u32) -> Call;
    /// The comments of one page of that answer, and whether another page follows.
    ///
    /// # Errors
    /// The answer is not the host's list.
    fn comment_list(&self, body: &Value) -> Result<(Vec<Comment>, bool), String>;
    /// The request that posts a new comment on pull request `number`.
    fn create_comment(&self, target: &Target, number: u64, text: &str) -> Call;
    /// The request that replaces the text of `comment` on pull request `number`.
    fn update_comment(&self, target: &Target, number: u64, comment: &Comment, text: &str) -> Call;
    /// The comment an answer to a create or an update holds.
    ///
    /// # Errors
    /// The answer is not a comment.
    fn comment(&self, body: &Value) -> Result<Comment, String>;
    /// The longest comment the host takes, in characters.
    fn comment_limit(&self) -> usize {
        COMMENT_LIMIT
    }
    /// The `Authorization`-style header carrying the token.
    fn auth(&self, token: &Token) -> (http::HeaderName, String) {
        (
            http::header::AUTHORIZATION,
            format!("Bearer {}", token.secret),
        )
    }
}

/// A provider's credentials. Never printed: `Debug` hides them.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub username: Option<String>,
    pub secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

/// A failed call: which provider and repository, the request without credentials, and the
/// answer's status and message.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Error {
    #[error("{provider} API for {repository}: {method} {url}: {code} {message}")]
    Answer {
        provider: &'static str,
        repository: String,
        method: String,
        url: String,
        code: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("{provider} API for {repository}: {method} {url}: {message}")]
    Network {
        provider: &'static str,
        repository: String,
        method: String,
        url: String,
        message: String,
    },
    #[error("{provider} API for {repository}: no token: {message}")]
    Token {
        provider: &'static str,
        repository: String,
        message: String,
    },
}

impl Error {
    /// Whether trying again may help: a 5xx, a 429 or a network error.
    pub(crate) fn retryable(&self) -> bool {
        match self {
            Self::Answer { code, .. } => *code >= 500 || *code == 429,
            Self::Network { .. } => true,
            Self::Token { .. } => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Answer { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The metric result of a call that ended in this error.
    fn result(&self) -> &'static str {
        match self {
            Self::Answer { code, .. } if *code >= 500 || *code == 429 => "server-error",
            Self::Answer { .. } | Self::Token { .. } => "client-error",
            Self::Network { .. } => "network-error",
        }
    }
}

/// The wait before retry `attempt` (from 1): the provider's `Retry-After` when it gave one
/// (up to 5 minutes), else 0.5 s doubling up to `cap`.
pub(crate) fn backoff(attempt: u32, error: &Error, cap: Duration) -> Duration {
    if let Some(after) = error.retry_after() {
        return after.min(Duration::from_secs(300));
    }
    let millis = 500u64.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    Duration::from_millis(millis).min(cap)
}

/// How long one call may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(15);

/// The one HTTP client berth sends provider requests with.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl Client {
    /// A client with a timeout on every call, verifying TLS against the system's roots.
    ///
    /// # Panics
    /// The TLS stack cannot be set up (no usable crypto provider), which is a build defect.
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        // one provider for every TLS client of the process (kube's too)
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        Self { http, metrics }
    }

    /// Posts a JSON body to a chat, webhook or Alertmanager URL, once. The error never holds
    /// the URL (a chat webhook's URL is its secret), only what went wrong.
    ///
    /// # Errors
    /// The sink answers outside 2xx (with its code and what it said), or cannot be reached in
    /// time.
    pub(crate) async fn post(
        &self,
        url: &str,
        body: Vec<u8>,
        headers: &[(&'static str, String)],
    ) -> Result<(), String> {
        let mut request = self
            .http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.map_err(network_message)?;
        let code = response.status();
        if code.is_success() {
            return Ok(());
        }
        let bytes = response.bytes().await.unwrap_or_default();
        Err(answer_message(code, &bytes))
    }

    /// Sends one call once and returns the answer's JSON (`null` for an empty body).
    ///
    /// # Errors
    /// The provider answers outside 2xx, or cannot be reached in time.
    pub(crate) async fn send(
        &self,
        target: &Target,
        token: &Token,
        call: &Call,
    ) -> Result<Value, Error> {
        let provider = target.kind.as_str();
        let (header, value) = target.kind.api().auth(token);
        let mut request = self
            .http
            .request(call.method.clone(), &call.url)
            .header(header, value)
            .header(http::header::ACCEPT, "application/json");
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let network = |e: reqwest::Error| Error::Network {
            provider,
            repository: target.project.clone(),
            method: call.method.to_string(),
            url: call.url.clone(),
            message: network_message(e),
        };
        let result = async {
            let response = request.send().await.map_err(network)?;
            let code = response.status();
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let bytes = response.bytes().await.map_err(network)?;
            if !code.is_success() {
                return Err(Error::Answer {
                    provider,
                    repository: target.project.clone(),
                    method: call.method.to_string(),
                    url: call.url.clone(),
                    code: code.as_u16(),
                    message: answer_message(code, &bytes),
                    retry_after,
                });
            }
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_slice(&bytes).map_err(|e| Error::Network {
                provider,
                repository: target.project.clone(),
                method: call.method.to_string(),
                url: call.url.clone(),
                message: format!("the answer is not JSON: {e}"),
            })
        }
        .await;
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.result(),
        };
        self.metrics
            .provider_requests
            .get_or_create(&DeliveryLabels {
                provider: provider.to_owned(),
                result: label.to_owned(),
            })
            .inc();
        result
    }

    /// Sends a call, retrying what may pass later up to `attempts` times with [`backoff`].
    ///
    /// # Errors
    /// The last attempt's error, or the first that retrying cannot fix.
    pub(crate) async fn send_retrying(
        &self,
        target: &Target,
        token: &Token,
        call: &Call,
        attempts: u32,
    ) -> Result<Value, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send(target, token, call).await {
                Err(e) if e.retryable() && attempt < attempts => {
                    let wait = backoff(attempt, &e, Duration::from_secs(10));
                    tracing::debug!(error = %e, wait_ms = wait.as_millis() as u64, "retrying");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// Every open pull request of a repository, page by page (at most 20 pages).
    ///
    /// # Errors
    /// A page cannot be read.
    pub(crate) async fn open_pulls(
        &self,
        target: &Target,
        token: &Token,
    ) -> Result<Vec<PullRequest>, Error> {
        let api = target.kind.api();
        let mut out = Vec::new();
        for page in 1..=20 {
            let call = api.open_pulls(target, page);
            let body = self.send_retrying(target, token, &call, 3).await?;
            let pulls = api
                .pulls(&body)
                .map_err(|message| unreadable(target, &call, message))?;
            let full = pulls.len() >= PAGE as usize;
            out.extend(pulls);
            if !full {
                break;
            }
        }
        Ok(out)
    }
}

impl Client {
    /// The first comment on pull request `number` whose body holds `marker`, page by page (at
    /// most 20 pages).
    ///
    /// # Errors
    /// A page cannot be read.
    pub(crate) async fn find_comment(
        &self,
        target: &Target,
        token: &Token,
        number: u64,
        marker: &str,
    ) -> Result<Option<Comment>, Error> {
        let api = target.kind.api();
        for page in 1..=20 {
            let call = api.comments(target, number, page);
            let body = self.send_retrying(target, token, &call, 3).await?;
            let (comments, more) = api
                .comment_list(&body)
                .map_err(|message| unreadable(target, &call, message))?;
            if let Some(found) = comments.into_iter().find(|c| c.body.contains(marker)) {
                return Ok(Some(found));
            }
            if !more {
                break;
            }
        }
        Ok(None)
    }

    /// Posts `text` on pull request `number`: an edit of `existing` when there is one, else a
    /// new comment. Returns the comment as the host now holds it.
    ///
    /// # Errors
    /// The host refuses the request or cannot be reached.
    pub(crate) async fn put_comment(
        &self,
        target: &Target,
        token: &Token,
        number: u64,
        existing: Option<&Comment>,
        text: &str,
    ) -> Result<Comment, Error> {
        let api = target.kind.api();
        let call = match existing {
            Some(c) => api.update_comment(target, number, c, text),
            None => api.create_comment(target, number, text),
        };
        let body = self.send_retrying(target, token, &call, 3).await?;
        api.comment(&body)
            .map_err(|message| unreadable(target, &call, message))
    }
}

/// An answer berth cannot read, as the error of its call.
fn unreadable(target: &Target, call: &Call, message: String) -> Error {
    Error::Network {
        provider: target.kind.as_str(),
        repository: target.project.clone(),
        method: call.method.to_string(),
        url: call.url.clone(),
        message,
    }
}

/// A network error's text without the URL reqwest repeats (the error names it once).
fn network_message(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if timeout {
        text = format!("timed out after {}s ({text})", TIMEOUT.as_secs());
    }
    text
}

/// The reason and the provider's own message of an error answer, cut to one line.
fn answer_message(code: http::StatusCode, body: &[u8]) -> String {
    let reason = code.canonical_reason().unwrap_or("");
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let said = json
        .as_ref()
        .and_then(|v| {
            v["message"]
                .as_str()
                .or(v["error"]["message"].as_str())
                .or(v["error"].as_str())
                .or(v["errors"][0]["message"].as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
    let said = said.replace('\n', " ");
    let said: String = said.trim().chars().take(200).collect();
    if said.is_empty() {
        reason.to_owned()
    } else {
        format!("{reason}: {said}")
    }
}

/// A text field of a JSON object.
fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The items of a list answer (an array, or Bitbucket's `{values: [...]}`).
fn items<'a>(body: &'a Value, key: Option<&str>) -> Result<&'a Vec<Value>, String> {
    let list = match key {
        Some(k) => &body[k],
        None => body,
    };
    list.as_array()
        .ok_or_else(|| "the answer is not a list of pull requests".to_owned())
}

/// A comment with a numeric `id` and its text at `text` (a JSON pointer).
fn comment_at(v: &Value, text: &str) -> Result<Comment, String> {
    Ok(Comment {
        id: v["id"].as_u64().ok_or("a comment without an id")?,
        body: v
            .pointer(text)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        version: v["version"].as_u64(),
    })
}

/// The comments of an array answer, each read by [`comment_at`]; a full page may have another
/// after it.
fn comments_at(body: &Value, text: &str) -> Result<(Vec<Comment>, bool), String> {
    let list = body
        .as_array()
        .ok_or_else(|| "the answer is not a list of comments".to_owned())?;
    let comments = list
        .iter()
        .map(|c| comment_at(c, text))
        .collect::<Result<Vec<_>, _>>()?;
    let more = comments.len() >= PAGE as usize;
    Ok((comments, more))
}

/// Percent-encodes one path segment (`group/project` → `group%2Fproject`).
fn segment(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(url: &str) -> RepoUrl {
        RepoUrl::parse(url).expect("url")
    }

    #[test]
    fn targets_derive_public_apis_and_require_others() {
        let t = Target::new(
            Kind::GitHub,
            None,
            &repo("https://github.com/acme/web.git"),
            None,
        )
        .expect("github");
        assert_eq!(
            (t.base.as_str(), t.project.as_str()),
            ("https://api.github.com", "acme/web")
        );
        let t = Target::new(
            Kind::GitLab,
            None,
            &repo("git@gitlab.com:acme/platform/web.git"),
            None,
        )
        .expect("gitlab");
        assert_eq!(
            (t.base.as_str(), t.project.as_str()),
            ("https://gitlab.com", "acme/platform/web")
        );
        let t = Target::new(
            Kind::BitbucketServer,
            Some("https://bitbucket.example.com/"),
            &repo("https://bitbucket.example.com/scm/PLAT/web.git"),
            None,
        )
        .expect("server");
        assert_eq!(
            (t.base.as_str(), t.project.as_str()),
            ("https://bitbucket.example.com", "PLAT/web")
        );
        let err = Target::new(
            Kind::Gitea,
            None,
            &repo("https://git.example.com/acme/web.git"),
            None,
        )
        .expect_err("no url");
        assert!(err.contains("provider url is required"), "{err}");
        let err = Target::new(
            Kind::GitHub,
            Some("ftp://x"),
            &repo("https://github.com/a/b"),
            None,
        )
        .expect_err("scheme");
        assert!(err.contains("http(s)"), "{err}");
        let err = Target::new(
            Kind::GitHub,
            Some("https://u:p@ghe.example.com/api/v3"),
            &repo("https://github.com/a/b"),
            None,
        )
        .expect_err("credentials");
        assert!(err.contains("must not carry credentials"), "{err}");
        let err = Target::new(
            Kind::GitHub,
            None,
            &repo("https://github.com/only-owner"),
            None,
        )
        .expect_err("path");
        assert!(err.contains("cannot tell"), "{err}");
    }

    #[test]
    fn gogs_and_unknown_types_are_refused_with_the_reason() {
        assert!(
            Kind::parse("gogs")
                .expect_err("gogs")
                .contains("no commit status API")
        );
        assert!(
            Kind::parse("svn")
                .expect_err("svn")
                .contains("must be one of")
        );
        for k in [
            Kind::GitHub,
            Kind::GitLab,
            Kind::Gitea,
            Kind::Forgejo,
            Kind::Bitbucket,
            Kind::BitbucketServer,
        ] {
            assert_eq!(Kind::parse(k.as_str()), Ok(k));
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_honors_retry_after() {
        let e = |code, retry_after| Error::Answer {
            provider: "github",
            repository: "a/b".into(),
            method: "POST".into(),
            url: "u".into(),
            code,
            message: String::new(),
            retry_after,
        };
        let cap = Duration::from_secs(10);
        assert_eq!(backoff(1, &e(500, None), cap), Duration::from_millis(500));
        assert_eq!(backoff(3, &e(500, None), cap), Duration::from_secs(2));
        assert_eq!(backoff(30, &e(500, None), cap), cap);
        assert_eq!(
            backoff(1, &e(429, Some(Duration::from_secs(7))), cap),
            Duration::from_secs(7)
        );
        assert!(e(503, None).retryable() && e(429, None).retryable());
        assert!(!e(401, None).retryable() && !e(422, None).retryable());
    }

    #[test]
    fn answers_become_one_line_messages_and_tokens_never_print() {
        let m = answer_message(
            http::StatusCode::UNAUTHORIZED,
            br#"{"message":"Bad credentials","documentation_url":"x"}"#,
        );
        assert_eq!(m, "Unauthorized: Bad credentials");
        let m = answer_message(http::StatusCode::BAD_GATEWAY, b"<html>\nbad\n</html>");
        assert_eq!(m, "Bad Gateway: <html> bad </html>");
        let token = Token {
            username: Some("u".into()),
            secret: "s3cr3t".into(),
        };
        assert_eq!(format!("{token:?}"), "Token(***)");
    }

    #[test]
    fn long_descriptions_are_cut() {
        let s = Status {
            state: State::Failure,
            context: "berth/ci".into(),
            description: "x".repeat(300),
            target_url: None,
        };
        assert_eq!(s.description().chars().count(), DESCRIPTION_LIMIT);
        assert!(s.description().ends_with('…'));
    }

    #[test]
    fn comments_are_created_and_edited_where_each_host_documents_it() {
        let target = |kind, base: &str, project: &str| Target {
            kind,
            base: base.into(),
            project: project.into(),
            secret: None,
        };
        let old = Comment {
            id: 9,
            body: "old".into(),
            version: Some(3),
        };
        let cases = [
            (
                target(Kind::GitHub, "https://api.github.com", "o/r"),
                "https://api.github.com/repos/o/r/issues/7/comments",
                (
                    "PATCH",
                    "https://api.github.com/repos/o/r/issues/comments/9",
                ),
                serde_json::json!({"body": "new"}),
            ),
            (
                target(Kind::Gitea, "https://git.example.com", "o/r"),
                "https://git.example.com/api/v1/repos/o/r/issues/7/comments",
                (
                    "PATCH",
                    "https://git.example.com/api/v1/repos/o/r/issues/comments/9",
                ),
                serde_json::json!({"body": "new"}),
            ),
            (
                target(Kind::GitLab, "https://gitlab.com", "g/sub/p"),
                "https://gitlab.com/api/v4/projects/g%2Fsub%2Fp/merge_requests/7/notes",
                (
                    "PUT",
                    "https://gitlab.com/api/v4/projects/g%2Fsub%2Fp/merge_requests/7/notes/9",
                ),
                serde_json::json!({"body": "new"}),
            ),
            (
                target(Kind::Bitbucket, "https://api.bitbucket.org", "ws/slug"),
                "https://api.bitbucket.org/2.0/repositories/ws/slug/pullrequests/7/comments",
                (
                    "PUT",
                    "https://api.bitbucket.org/2.0/repositories/ws/slug/pullrequests/7/comments/9",
                ),
                serde_json::json!({"content": {"raw": "new"}}),
            ),
            (
                target(Kind::BitbucketServer, "https://bb.example.com", "KEY/slug"),
                "https://bb.example.com/rest/api/latest/projects/KEY/repos/slug/pull-requests/7/comments",
                (
                    "PUT",
                    "https://bb.example.com/rest/api/latest/projects/KEY/repos/slug/pull-requests/7/comments/9",
                ),
                serde_json::json!({"text": "new", "version": 3}),
            ),
        ];
        for (t, create, (method, update), edit) in cases {
            let api = t.kind.api();
            let call = api.create_comment(&t, 7, "new");
            assert_eq!((call.method.as_str(), call.url.as_str()), ("POST", create));
            let call = api.update_comment(&t, 7, &old, "new");
            assert_eq!((call.method.as_str(), call.url.as_str()), (method, update));
            assert_eq!(call.body, Some(edit), "{:?}", t.kind);
        }
    }

    #[test]
    fn comment_lists_are_read_with_their_paging() {
        let (list, more) = Kind::GitHub
            .api()
            .comment_list(&serde_json::json!([{"id": 1, "body": "a"}, {"id": 2, "body": "b"}]))
            .expect("github");
        assert_eq!((list.len(), list[1].body.as_str(), more), (2, "b", false));
        let (list, more) = Kind::Bitbucket
            .api()
            .comment_list(
                &serde_json::json!({"values": [{"id": 5, "content": {"raw": "x"}}],
                "next": "https://api.bitbucket.org/next"}),
            )
            .expect("bitbucket");
        assert_eq!((list[0].id, list[0].body.as_str(), more), (5, "x", true));
        let (list, more) = Kind::BitbucketServer
            .api()
            .comment_list(&serde_json::json!({"isLastPage": true, "values": [
                {"action": "OPENED"},
                {"action": "COMMENTED", "comment": {"id": 8, "text": "t", "version": 2}}]}))
            .expect("server");
        assert_eq!(
            list,
            vec![Comment {
                id: 8,
                body: "t".into(),
                version: Some(2)
            }]
        );
        assert!(!more);
        assert!(
            Kind::GitHub
                .api()
                .comment_list(&serde_json::json!({}))
                .is_err()
        );
    }
}
