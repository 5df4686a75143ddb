//! Bitbucket Cloud (`{base}` is `https://api.bitbucket.org`). It has no pull request refs: a
//! pull request's source branch is fetched instead, so pull requests from forks are not built.

use base64::Engine as _;
use serde_json::{Value, json};

use super::{
    Api, Call, Comment, PAGE, PullRequest, State, Status, Target, Token, comment_at, items, text,
};

pub(super) struct Bitbucket;

impl Api for Bitbucket {
    fn status(&self, target: &Target, sha: &str, status: &Status) -> Call {
        let (workspace, slug) = target.owner_repo();
        // `url` is required: without berth's page, the commit's own page
        let url = status
            .target_url
            .clone()
            .unwrap_or_else(|| format!("https://bitbucket.org/{workspace}/{slug}/commits/{sha}"));
        Call::post(
            format!(
                "{}/2.0/repositories/{workspace}/{slug}/commit/{sha}/statuses/build",
                target.base
            ),
            json!({
                "key": status.context,
                "state": state(status.state),
                "name": status.context,
                "url": url,
                "description": status.description(),
            }),
        )
    }

    fn open_pulls(&self, target: &Target, page: u32) -> Call {
        let (workspace, slug) = target.owner_repo();
        Call::get(format!(
            "{}/2.0/repositories/{workspace}/{slug}/pullrequests?state=OPEN&pagelen={PAGE}&page={page}",
            target.base
        ))
    }

    fn pulls(&self, body: &Value) -> Result<Vec<PullRequest>, String> {
        items(body, Some("values"))?
            .iter()
            .map(|p| {
                Ok(PullRequest {
                    number: p["id"].as_u64().ok_or("a pull request without an id")?,
                    base: text(&p["destination"]["branch"]["name"]),
                    head_branch: text(&p["source"]["branch"]["name"]),
                    head_sha: text(&p["source"]["commit"]["hash"]),
                })
            })
            .collect()
    }

    fn state(&self, s: State) -> &'static str {
        state(s)
    }

    fn head_ref(&self, _number: u64) -> Option<String> {
        None
    }

    fn comments(&self, target: &Target, number: u64, page: u32) -> Call {
        Call::get(format!(
            "{}?pagelen={PAGE}&page={page}",
            comments(target, number)
        ))
    }

    fn comment_list(&self, body: &Value) -> Result<(Vec<Comment>, bool), String> {
        let comments = items(body, Some("values"))?
            .iter()
            .map(|c| comment_at(c, "/content/raw"))
            .collect::<Result<_, _>>()?;
        Ok((comments, body.get("next").is_some_and(Value::is_string)))
    }

    fn create_comment(&self, target: &Target, number: u64, text: &str) -> Call {
        Call::post(comments(target, number), json!({"content": {"raw": text}}))
    }

    fn update_comment(&self, target: &Target, number: u64, comment: &Comment, text: &str) -> Call {
        Call::with(
            http::Method::PUT,
            format!("{}/{}", comments(target, number), comment.id),
            json!({"content": {"raw": text}}),
        )
    }

    fn comment(&self, body: &Value) -> Result<Comment, String> {
        comment_at(body, "/content/raw")
    }

    fn auth(&self, token: &Token) -> (http::HeaderName, String) {
        basic_or_bearer(token)
    }
}

/// Basic authentication with a username (app passwords, API tokens), else a bearer token
/// (repository, project and workspace access tokens).
/// The comments of pull request `number`.
fn comments(target: &Target, number: u64) -> String {
    let (workspace, slug) = target.owner_repo();
    format!(
        "{}/2.0/repositories/{workspace}/{slug}/pullrequests/{number}/comments",
        target.base
    )
}

pub(super) fn basic_or_bearer(token: &Token) -> (http::HeaderName, String) {
    let value = match &token.username {
        Some(user) => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", token.secret))
        ),
        None => format!("Bearer {}", token.secret),
    };
    (http::header::AUTHORIZATION, value)
}

/// Bitbucket's build states.
pub(super) fn state(s: State) -> &'static str {
    match s {
        State::Pending | State::Running => "INPROGRESS",
        State::Success => "SUCCESSFUL",
        State::Failure | State::Error => "FAILED",
    }
}
