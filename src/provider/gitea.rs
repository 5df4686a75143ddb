//! Gitea and Forgejo (`{base}` is the server's address; the API is under `/api/v1`).

use serde_json::Value;

use super::github::status_body;
use super::{
    Api, Call, Comment, PAGE, PullRequest, State, Status, Target, Token, comment_at, comments_at,
};

pub(super) struct Gitea;

/// The repository's API address: GitHub's layout under `/api/v1`.
fn repository(target: &Target) -> String {
    super::github::repository(&format!("{}/api/v1", target.base), target)
}

impl Api for Gitea {
    fn status(&self, target: &Target, sha: &str, status: &Status) -> Call {
        let repo = repository(target);
        Call::post(format!("{repo}/statuses/{sha}"), status_body(status))
    }

    fn open_pulls(&self, target: &Target, page: u32) -> Call {
        let repo = repository(target);
        Call::get(format!("{repo}/pulls?state=open&limit={PAGE}&page={page}"))
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
        let repo = repository(target);
        Call::get(format!(
            "{repo}/issues/{number}/comments?limit={PAGE}&page={page}"
        ))
    }

    fn comment_list(&self, body: &Value) -> Result<(Vec<Comment>, bool), String> {
        comments_at(body, "/body")
    }

    fn create_comment(&self, target: &Target, number: u64, text: &str) -> Call {
        super::github::create_comment(&repository(target), number, text)
    }

    fn update_comment(&self, target: &Target, _number: u64, comment: &Comment, text: &str) -> Call {
        super::github::update_comment(&repository(target), comment, text)
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
