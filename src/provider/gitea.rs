//! Gitea and Forgejo (`{base}` is the server's address; the API is under `/api/v1`).

use serde_json::{Value, json};

use super::github::status_body;
use super::{
    Api, Call, Comment, PAGE, PullRequest, State, Status, Target, Token, comment_at, comments_at,
};

pub(super) struct Gitea;

impl Api for Gitea {
    fn status(&self, target: &Target, sha: &str, status: &Status) -> Call {
        let (owner, repo) = target.owner_repo();
        Call::post(
            format!("{}/api/v1/repos/{owner}/{repo}/statuses/{sha}", target.base),
            status_body(status),
        )
    }

    fn open_pulls(&self, target: &Target, page: u32) -> Call {
        let (owner, repo) = target.owner_repo();
        Call::get(format!(
            "{}/api/v1/repos/{owner}/{repo}/pulls?state=open&limit={PAGE}&page={page}",
            target.base
        ))
    }

    fn pulls(&self, body: &Value) -> Result<Vec<PullRequest>, String> {
        super::github::pulls(body)
    }

    fn state(&self, s: State) -> &'static str {
        super::github::state(s)
    }

    fn head_ref(&self, number: u64) -> Option<String> {
        Some(format!("refs/pull/{number}/head"))
    }

    fn comments(&self, target: &Target, number: u64, page: u32) -> Call {
        let (owner, repo) = target.owner_repo();
        Call::get(format!(
            "{}/api/v1/repos/{owner}/{repo}/issues/{number}/comments?limit={PAGE}&page={page}",
            target.base
        ))
    }

    fn comment_list(&self, body: &Value) -> Result<(Vec<Comment>, bool), String> {
        comments_at(body, "/body")
    }

    fn create_comment(&self, target: &Target, number: u64, text: &str) -> Call {
        let (owner, repo) = target.owner_repo();
        Call::post(
            format!(
                "{}/api/v1/repos/{owner}/{repo}/issues/{number}/comments",
                target.base
            ),
            json!({"body": text}),
        )
    }

    fn update_comment(&self, target: &Target, _number: u64, comment: &Comment, text: &str) -> Call {
        let (owner, repo) = target.owner_repo();
        Call::with(
            http::Method::PATCH,
            format!(
                "{}/api/v1/repos/{owner}/{repo}/issues/comments/{}",
                target.base, comment.id
            ),
            json!({"body": text}),
        )
    }

    fn comment(&self, body: &Value) -> Result<Comment, String> {
        comment_at(body, "/body")
    }

    fn auth(&self, token: &Token) -> (http::HeaderName, String) {
        (
            http::header::AUTHORIZATION,
            format!("token {}", token.secret),
        )
    }
}
