//! GitLab (`{base}` is the server's address; the API is under `/api/v4`). Statuses are
//! "external pipeline jobs" named by the context; merge requests are fetched by
//! `refs/merge-requests/N/head`.

use serde_json::{Value, json};

use super::{
    Api, Call, Comment, PAGE, PullRequest, State, Status, Target, comment_at, comments_at, items,
    segment, text,
};

pub(super) struct GitLab;

impl Api for GitLab {
    fn status(&self, target: &Target, sha: &str, status: &Status) -> Call {
        let mut body = json!({
            "state": state(status.state),
            "name": status.context,
            "description": status.description(),
        });
        if let Some(url) = &status.target_url {
            body["target_url"] = Value::from(url.clone());
        }
        Call::post(
            format!(
                "{}/api/v4/projects/{}/statuses/{sha}",
                target.base,
                segment(&target.project)
            ),
            body,
        )
    }

    fn open_pulls(&self, target: &Target, page: u32) -> Call {
        Call::get(format!(
            "{}/api/v4/projects/{}/merge_requests?state=opened&per_page={PAGE}&page={page}",
            target.base,
            segment(&target.project)
        ))
    }

    fn pulls(&self, body: &Value) -> Result<Vec<PullRequest>, String> {
        items(body, None)?
            .iter()
            .map(|m| {
                Ok(PullRequest {
                    number: m["iid"].as_u64().ok_or("a merge request without an iid")?,
                    base: text(&m["target_branch"]),
                    head_branch: text(&m["source_branch"]),
                    head_sha: text(&m["sha"]),
                })
            })
            .collect()
    }

    fn state(&self, s: State) -> &'static str {
        state(s)
    }

    fn head_ref(&self, number: u64) -> Option<String> {
        Some(format!("refs/merge-requests/{number}/head"))
    }

    fn comments(&self, target: &Target, number: u64, page: u32) -> Call {
        Call::get(format!(
            "{}?per_page={PAGE}&page={page}",
            notes(target, number)
        ))
    }

    fn comment_list(&self, body: &Value) -> Result<(Vec<Comment>, bool), String> {
        comments_at(body, "/body")
    }

    fn create_comment(&self, target: &Target, number: u64, text: &str) -> Call {
        Call::post(notes(target, number), json!({"body": text}))
    }

    fn update_comment(&self, target: &Target, number: u64, comment: &Comment, text: &str) -> Call {
        Call::with(
            http::Method::PUT,
            format!("{}/{}", notes(target, number), comment.id),
            json!({"body": text}),
        )
    }

    fn comment(&self, body: &Value) -> Result<Comment, String> {
        comment_at(body, "/body")
    }

    /// A note holds up to 1,000,000 characters.
    fn comment_limit(&self) -> usize {
        1_000_000
    }
}

/// The notes of merge request `number`.
fn notes(target: &Target, number: u64) -> String {
    format!(
        "{}/api/v4/projects/{}/merge_requests/{number}/notes",
        target.base,
        segment(&target.project)
    )
}

/// GitLab's states (`pending`, `running`, `success`, `failed`, `canceled`).
fn state(s: State) -> &'static str {
    match s {
        State::Pending => "pending",
        State::Running => "running",
        State::Success => "success",
        State::Failure | State::Error => "failed",
    }
}
