//! GitHub and GitHub Enterprise (`{api}` is `https://api.github.com` or `https://HOST/api/v3`).

use serde_json::{Value, json};

use super::{
    Api, Call, Comment, PAGE, PullRequest, State, Status, Target, comment_at, comments_at, items,
    text,
};

pub(super) struct GitHub;

impl Api for GitHub {
    fn status(&self, target: &Target, sha: &str, status: &Status) -> Call {
        let (owner, repo) = target.owner_repo();
        Call::post(
            format!("{}/repos/{owner}/{repo}/statuses/{sha}", target.base),
            status_body(status),
        )
    }

    fn open_pulls(&self, target: &Target, page: u32) -> Call {
        let (owner, repo) = target.owner_repo();
        Call::get(format!(
            "{}/repos/{owner}/{repo}/pulls?state=open&per_page={PAGE}&page={page}",
            target.base
        ))
    }

    fn pulls(&self, body: &Value) -> Result<Vec<PullRequest>, String> {
        pulls(body)
    }

    fn state(&self, s: State) -> &'static str {
        state(s)
    }

    fn head_ref(&self, number: u64) -> Option<String> {
        Some(format!("refs/pull/{number}/head"))
    }

    fn comments(&self, target: &Target, number: u64, page: u32) -> Call {
        let repo = repository(&target.base, target);
        Call::get(format!(
            "{repo}/issues/{number}/comments?per_page={PAGE}&page={page}"
        ))
    }

    fn comment_list(&self, body: &Value) -> Result<(Vec<Comment>, bool), String> {
        comments_at(body, "/body")
    }

    fn create_comment(&self, target: &Target, number: u64, text: &str) -> Call {
        create_comment(&repository(&target.base, target), number, text)
    }

    fn update_comment(&self, target: &Target, _number: u64, comment: &Comment, text: &str) -> Call {
        update_comment(&repository(&target.base, target), comment, text)
    }

    fn comment(&self, body: &Value) -> Result<Comment, String> {
        comment_at(body, "/body")
    }
}

/// A repository's API address under `root`: GitHub's base, or Gitea's and Forgejo's
/// `{base}/api/v1`, which lay out issues and comments as GitHub does.
pub(super) fn repository(root: &str, target: &Target) -> String {
    let (owner, repo) = target.owner_repo();
    format!("{root}/repos/{owner}/{repo}")
}

/// A new comment on pull request (issue) `number` of `repo` ([`repository`]).
pub(super) fn create_comment(repo: &str, number: u64, text: &str) -> Call {
    Call::post(
        format!("{repo}/issues/{number}/comments"),
        json!({"body": text}),
    )
}

/// An edit of `comment`'s text, in `repo` ([`repository`]).
pub(super) fn update_comment(repo: &str, comment: &Comment, text: &str) -> Call {
    Call::with(
        http::Method::PATCH,
        format!("{repo}/issues/comments/{}", comment.id),
        json!({"body": text}),
    )
}

/// A status as GitHub takes it (Gitea and Forgejo take the same body).
pub(super) fn status_body(status: &Status) -> Value {
    let mut body = json!({
        "state": state(status.state),
        "description": status.description(),
        "context": status.context,
    });
    if let Some(url) = &status.target_url {
        body["target_url"] = Value::from(url.clone());
    }
    body
}

/// GitHub's states, which Gitea and Forgejo share: no `running`, so a running build stays
/// `pending`.
pub(super) fn state(s: State) -> &'static str {
    match s {
        State::Pending | State::Running => "pending",
        State::Success => "success",
        State::Failure => "failure",
        State::Error => "error",
    }
}

/// A GitHub-shaped list of pull requests (Gitea and Forgejo answer the same shape).
pub(super) fn pulls(body: &Value) -> Result<Vec<PullRequest>, String> {
    items(body, None)?
        .iter()
        .map(|p| {
            Ok(PullRequest {
                number: p["number"]
                    .as_u64()
                    .ok_or("a pull request without a number")?,
                base: text(&p["base"]["ref"]),
                head_branch: text(&p["head"]["ref"]),
                head_sha: text(&p["head"]["sha"]),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Kind;

    fn target() -> Target {
        Target {
            kind: Kind::GitHub,
            base: "https://api.github.com".into(),
            project: "acme/web".into(),
            secret: None,
        }
    }

    #[test]
    fn status_posts_to_the_commit_with_context_and_link() {
        let status = Status {
            state: State::Running,
            context: "berth/web-ci".into(),
            description: "running".into(),
            target_url: Some("https://berth.example.com/runs/argo/web-ci-abc".into()),
        };
        let call = GitHub.status(&target(), "abc123", &status);
        assert_eq!(call.method, http::Method::POST);
        assert_eq!(
            call.url,
            "https://api.github.com/repos/acme/web/statuses/abc123"
        );
        assert_eq!(
            call.body,
            Some(
                json!({"state": "pending", "description": "running", "context": "berth/web-ci",
                "target_url": "https://berth.example.com/runs/argo/web-ci-abc"})
            )
        );
    }
}
