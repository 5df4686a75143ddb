//! Gitea and Forgejo (`{base}` is the server's address; the API is under `/api/v1`).

use serde_json::{Value, json};

use super::{Api, Call, PAGE, PullRequest, State, Status, Target, Token};

pub(super) struct Gitea;

impl Api for Gitea {
    fn status(&self, target: &Target, sha: &str, status: &Status) -> Call {
        let (owner, repo) = target.owner_repo();
        let mut body = json!({
            "state": state(status.state),
            "description": status.description(),
            "context": status.context,
        });
        if let Some(url) = &status.target_url {
            body["target_url"] = Value::from(url.clone());
        }
        Call::post(
            format!("{}/api/v1/repos/{owner}/{repo}/statuses/{sha}", target.base),
            body,
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
        state(s)
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

/// Gitea's states (`pending`, `success`, `error`, `failure`, `warning`): no `running`.
fn state(s: State) -> &'static str {
    match s {
        State::Pending | State::Running => "pending",
        State::Success => "success",
        State::Failure => "failure",
        State::Error => "error",
    }
}
