//! GitLab (`{base}` is the server's address; the API is under `/api/v4`). Statuses are
//! "external pipeline jobs" named by the context; merge requests are fetched by
//! `refs/merge-requests/N/head`.

use serde_json::{Value, json};

use super::{Api, Call, PAGE, PullRequest, State, Status, Target, items, segment, text};

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
