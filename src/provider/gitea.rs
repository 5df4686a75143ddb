//! Gitea and Forgejo (`{base}` is the server's address; the API is under `/api/v1`).

use serde_json::Value;

use super::github::status_body;
use super::{Api, Call, PAGE, PullRequest, State, Status, Target, Token};

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

    fn auth(&self, token: &Token) -> (http::HeaderName, String) {
        (
            http::header::AUTHORIZATION,
            format!("token {}", token.secret),
        )
    }
}
