//! Bitbucket Server and Data Center (`{base}` is the server's address; the API is under
//! `/rest/api/latest`). Pull requests are fetched by `refs/pull-requests/N/from`.

use serde_json::{Value, json};

use super::bitbucket::{basic_or_bearer, state};
use super::{
    Api, Call, Comment, PAGE, PullRequest, State, Status, Target, Token, comment_at, items, text,
};

pub(super) struct BitbucketServer;

/// Pull request `number`'s API address.
fn pull_request(target: &Target, number: u64) -> String {
    let (key, slug) = target.owner_repo();
    format!(
        "{}/rest/api/latest/projects/{key}/repos/{slug}/pull-requests/{number}",
        target.base
    )
}

impl Api for BitbucketServer {
    fn status(&self, target: &Target, sha: &str, status: &Status) -> Call {
        let (key, slug) = target.owner_repo();
        // `url` is required: without berth's page, the commit's own page
        let url = status.target_url.clone().unwrap_or_else(|| {
            format!("{}/projects/{key}/repos/{slug}/commits/{sha}", target.base)
        });
        Call::post(
            format!(
                "{}/rest/api/latest/projects/{key}/repos/{slug}/commits/{sha}/builds",
                target.base
            ),
            json!({
                "key": status.context,
                "state": state(status.state),
                "url": url,
                "name": status.context,
                "description": status.description(),
            }),
        )
    }

    fn open_pulls(&self, target: &Target, page: u32) -> Call {
        let (key, slug) = target.owner_repo();
        Call::get(format!(
            "{}/rest/api/latest/projects/{key}/repos/{slug}/pull-requests?state=OPEN&limit={PAGE}&start={}",
            target.base,
            (page.saturating_sub(1)) * PAGE
        ))
    }

    fn pulls(&self, body: &Value) -> Result<Vec<PullRequest>, String> {
        items(body, Some("values"))?
            .iter()
            .map(|p| {
                Ok(PullRequest {
                    number: p["id"].as_u64().ok_or("a pull request without an id")?,
                    base: text(&p["toRef"]["displayId"]),
                    head_branch: text(&p["fromRef"]["displayId"]),
                    head_sha: text(&p["fromRef"]["latestCommit"]),
                })
            })
            .collect()
    }

    fn state(&self, s: State) -> &'static str {
        state(s)
    }

    fn head_ref(&self, number: u64) -> Option<String> {
        Some(format!("refs/pull-requests/{number}/from"))
    }

    /// A pull request's comments are listed among its activities.
    fn comments(&self, target: &Target, number: u64, page: u32) -> Call {
        Call::get(format!(
            "{}/activities?limit={PAGE}&start={}",
            pull_request(target, number),
            (page.saturating_sub(1)) * PAGE
        ))
    }

    fn comment_list(&self, body: &Value) -> Result<(Vec<Comment>, bool), String> {
        let comments = items(body, Some("values"))?
            .iter()
            .filter(|a| a["action"] == "COMMENTED")
            .map(|a| comment_at(&a["comment"], "/text"))
            .collect::<Result<_, _>>()?;
        Ok((comments, body["isLastPage"] == false))
    }

    fn create_comment(&self, target: &Target, number: u64, text: &str) -> Call {
        Call::post(
            format!("{}/comments", pull_request(target, number)),
            json!({"text": text}),
        )
    }

    fn update_comment(&self, target: &Target, number: u64, comment: &Comment, text: &str) -> Call {
        Call::with(
            http::Method::PUT,
            format!("{}/comments/{}", pull_request(target, number), comment.id),
            json!({"text": text, "version": comment.version.unwrap_or(0)}),
        )
    }

    fn comment(&self, body: &Value) -> Result<Comment, String> {
        comment_at(body, "/text")
    }

    fn auth(&self, token: &Token) -> (http::HeaderName, String) {
        basic_or_bearer(token)
    }
}
