//! berth against GitHub's published API description. A fake GitHub on loopback checks every
//! request berth sends against `@octokit/openapi` (the REST API's OpenAPI description, from
//! npm) and refuses what does not conform; webhook payloads are GitHub's own examples
//! (`@octokit/webhooks-examples`). The git side is a real Gitea, whose pull request refs have
//! GitHub's layout (`refs/pull/N/head`); runs finish through the real Argo controller.

mod common;
#[path = "common/openapi.rs"]
mod openapi;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::forge::{EXTERNAL, Host, SECRET, host, name};
use common::{Berth, put_secret_data};
use openapi::{FakeApi, Spec};
use serde_json::{Value, json};

const OPENAPI: &str = "@octokit/openapi@23.0.2";
const EXAMPLES: &str = "@octokit/webhooks-examples@7.6.1";
const TOKEN: &str = "ghp_berthTestTokenNeverShown0123456789";

/// The answer to GitHub's `pulls/list`: the host's open pull requests, as Gitea lists them
/// (in GitHub's shape).
fn open_pulls(h: &Host) -> impl Fn() -> (u16, Value) + Send + Sync + 'static {
    let (gitea, token, user) = (
        h.gitea.url.clone(),
        h.gitea.token.clone(),
        h.gitea.user.clone(),
    );
    move || {
        let (code, list) = common::http(
            "GET",
            &format!("{gitea}/api/v1/repos/{user}/web/pulls?state=open"),
            &[("Authorization", &format!("token {token}"))],
            b"",
        );
        assert_eq!(code, 200, "{list}");
        (200, serde_json::from_str(&list).expect("pull requests"))
    }
}

/// A fake GitHub for the host's repository: statuses are accepted, and the open pull requests
/// are Gitea's (whose list has GitHub's shape).
async fn fake_github(h: &Host) -> FakeApi {
    let spec = Spec::load(&common::npm_file(OPENAPI, "generated/api.github.com.json"));
    let pulls = open_pulls(h);
    let respond: openapi::Responder = Arc::new(move |operation, _path, body| match operation {
        "repos/create-commit-status" => (
            201,
            json!({"id": 1, "state": body["state"], "context": body["context"]}),
        ),
        "pulls/list" => pulls(),
        other => (
            404,
            json!({"message": format!("the fake does not answer {other}")}),
        ),
    });
    FakeApi::start(spec, TOKEN, respond).await
}

/// The statuses the fake accepted for `sha`, as (state, context, description, target_url).
fn posted(api: &FakeApi, sha: &str) -> Vec<(String, String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    api.log()
        .into_iter()
        .filter(|r| r.operation == "repos/create-commit-status" && r.answered == 201)
        .filter(|r| r.path.ends_with(&format!("/statuses/{sha}")))
        .map(|r| {
            (
                text(&r.body["state"]),
                text(&r.body["context"]),
                text(&r.body["description"]),
                text(&r.body["target_url"]),
            )
        })
        .collect()
}

/// Waits until the fake accepted exactly `states` (in order) for `sha`.
async fn expect_posted(
    api: &FakeApi,
    sha: &str,
    states: &[&str],
) -> Vec<(String, String, String, String)> {
    let found = common::eventually(Duration::from_secs(120), || async {
        let all = posted(api, sha);
        (all.iter().map(|s| s.0.as_str()).collect::<Vec<_>>() == states).then_some(all)
    })
    .await;
    found.unwrap_or_else(|| {
        panic!(
            "statuses of {sha}: expected {states:?}, posted {:?}; violations: {:?}",
            posted(api, sha),
            api.violations()
        )
    })
}

const PIPELINE: &str = "  - name: web-ci
    repository: web
    namespace: @NS@
    serviceAccount: ci
    branches: [main]
    pullRequests: {branches: [main]}
";

/// The repository's `provider`: the fake as its GitHub API, with the token's Secret.
async fn provider(h: &Host, api: &FakeApi) -> String {
    put_secret_data(
        &h.client,
        &h.berth_ns.name,
        "github-api",
        &[("token", TOKEN)],
    )
    .await;
    format!("{{type: github, url: {}, secretRef: github-api}}", api.url)
}

/// The mapping with the fake as the repository's GitHub API.
async fn setup(h: &Host, api: &FakeApi, interval: &str) -> Berth {
    let provider = provider(h, api).await;
    Berth::new(&h.berth_ns.name, &h.mapping(&provider, interval, PIPELINE))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_and_pull_request_lists_conform_to_githubs_description() {
    let h = host().await;
    let api = fake_github(&h).await;
    let berth = setup(&h, &api, "1s").await;
    let (_agent, _base) = h.agent(&berth);
    let main_sha = h.repo.git(&["rev-parse", "main"]).trim().to_owned();
    h.run_for("web-ci", &main_sha, "!berth.dev/pull-request")
        .await;
    let pending = expect_posted(&api, &main_sha, &["pending"]).await;
    assert_eq!(pending[0].1, "berth/web-ci");

    // the pull request is found through the list berth polls
    let sha = h
        .push_branch("feature", "src/lib.rs", "pub fn a() {}\n")
        .await;
    let number = h.open_pull_request("feature");
    let run = h
        .run_for("web-ci", &sha, &format!("berth.dev/pull-request={number}"))
        .await;
    expect_posted(&api, &sha, &["pending"]).await;
    common::finish_pods(&h.client, &h.wf_ns.name, &name(&run)).await;
    let done = expect_posted(&api, &sha, &["pending", "success"]).await;
    assert_eq!(
        done[1].3,
        format!("{EXTERNAL}/pipelines/web-ci/runs/{}", name(&run))
    );
    let log = api.log();
    assert!(
        log.iter().any(|r| r.operation == "pulls/list"
            && r.method == "GET"
            && r.query.contains("state=open")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .all(|r| r.authorization == format!("Bearer {TOKEN}")),
        "every call carries the token"
    );
    assert_eq!(api.violations(), Vec::<String>::new());
}

/// One of GitHub's example `pull_request` deliveries, pointed at the host's repository and
/// pull request: the repository's URLs, the pull request's number, branches and head commit.
fn example(h: &Host, action: &str, number: u64, sha: &str) -> Vec<u8> {
    let path = common::npm_file(EXAMPLES, "api.github.com/index.json");
    let all: Vec<Value> =
        serde_json::from_slice(&std::fs::read(path).expect("examples")).expect("JSON");
    let events = all
        .iter()
        .find(|e| e["name"] == "pull_request")
        .expect("pull_request examples");
    let mut e = events["examples"]
        .as_array()
        .expect("examples")
        .iter()
        .find(|e| e["action"] == action)
        .unwrap_or_else(|| panic!("no {action} example"))
        .clone();
    let web = h.clone_url.trim_end_matches(".git").to_owned();
    e["repository"]["clone_url"] = Value::from(h.clone_url.clone());
    e["repository"]["html_url"] = Value::from(web);
    e["number"] = Value::from(number);
    e["pull_request"]["number"] = Value::from(number);
    e["pull_request"]["head"]["ref"] = Value::from("feature");
    e["pull_request"]["head"]["sha"] = Value::from(sha);
    e["pull_request"]["base"]["ref"] = Value::from("main");
    serde_json::to_vec(&e).expect("JSON")
}

/// Sends a signed GitHub delivery to berth; returns the answer.
fn deliver(base: &str, body: &[u8], id: &str) -> (u16, String) {
    let signature = berth::webhook::sign(SECRET.as_bytes(), body);
    common::http(
        "POST",
        &format!("{base}/webhooks/github"),
        &[
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", id),
            ("X-Hub-Signature-256", &signature),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn githubs_own_pull_request_deliveries_launch_and_stop_runs() {
    let h = host().await;
    let api = fake_github(&h).await;
    // no polling: after the first pass only deliveries start passes
    let berth = setup(&h, &api, "0").await;
    let (_agent, base) = h.agent(&berth);
    let main_sha = h.repo.git(&["rev-parse", "main"]).trim().to_owned();
    h.run_for("web-ci", &main_sha, "!berth.dev/pull-request")
        .await;
    let sha = h
        .push_branch("feature", "src/lib.rs", "pub fn a() {}\n")
        .await;
    let number = h.open_pull_request("feature");
    let (code, answer) = deliver(&base, &example(&h, "opened", number, &sha), "d-opened");
    assert_eq!(code, 202, "{answer}");
    let pr = format!("berth.dev/pull-request={number}");
    let run = h.run_for("web-ci", &sha, &pr).await;
    let (code, answer) = deliver(&base, &example(&h, "closed", number, &sha), "d-closed");
    assert_eq!(code, 202, "{answer}");
    let stopped = common::workflow_phase(&h.client, &h.wf_ns.name, &name(&run), "Failed").await;
    assert_eq!(stopped.data["spec"]["shutdown"], "Terminate");
    expect_posted(&api, &sha, &["pending", "failure"]).await;
    assert_eq!(api.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_long_outage_loses_no_status_and_a_refusal_never_shows_the_token() {
    let h = host().await;
    let api = fake_github(&h).await;
    let started = Instant::now();
    api.set(|m| m.fail_until = Some(started + Duration::from_secs(60)));
    let berth = setup(&h, &api, "1s").await;
    let log = tempfile::NamedTempFile::new().expect("log file");
    let stderr = log.reopen().expect("log");
    let (_agent, base, admin) = h.agent_with(&berth, |cmd| {
        cmd.stderr(stderr);
    });
    // the launch does not wait for the provider
    let main_sha = h.repo.git(&["rev-parse", "main"]).trim().to_owned();
    let run = h
        .run_for("web-ci", &main_sha, "!berth.dev/pull-request")
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the run was launched during the outage"
    );
    assert!(
        posted(&api, &main_sha).is_empty(),
        "nothing was accepted before the outage ended"
    );
    let failed = common::eventually(Duration::from_secs(30), || async {
        api.log().iter().any(|r| r.answered == 500).then_some(())
    })
    .await;
    assert!(failed.is_some(), "berth tried during the outage");
    // after the outage: pending, then success once the controller finishes the run
    expect_posted(&api, &main_sha, &["pending"]).await;
    common::finish_pods(&h.client, &h.wf_ns.name, &name(&run)).await;
    expect_posted(&api, &main_sha, &["pending", "success"]).await;

    // a refusal is reported naming the provider and the repository
    api.set(|m| m.refuse = true);
    h.repo.write("src/main.rs", "fn main() { /* refused */ }\n");
    let next = h.repo.commit("next");
    h.gitea.push(&h.repo, "web");
    h.run_for("web-ci", &next, "!berth.dev/pull-request").await;
    let reported = common::eventually(Duration::from_secs(60), || async {
        let out = berth.run(&["status", "-o", "wide"]);
        let text = common::text(&out);
        text.contains("401 Unauthorized: Bad credentials")
            .then_some(text)
    })
    .await
    .expect("berth status reports the refusal");
    assert!(
        reported.contains("github API for berth/web: POST"),
        "{reported}"
    );
    let overview = common::http("GET", &format!("{admin}/"), &[], b"").1;
    assert!(overview.contains("401 Unauthorized"), "{overview}");
    let metrics = common::http("GET", &format!("{base}/metrics"), &[], b"").1;
    for result in ["server-error", "client-error", "ok"] {
        let sample =
            format!("berth_provider_requests_total{{provider=\"github\",result=\"{result}\"}}");
        assert!(
            common::metric(&metrics, &sample) >= 1.0,
            "{sample} in {metrics}"
        );
    }
    let record = berth.run(&["status", "-o", "json"]);
    for (what, text) in [
        ("berth status", reported),
        ("the dashboard", overview),
        ("the metrics", metrics),
        ("berth status -o json", common::text(&record)),
        (
            "berth's log",
            std::fs::read_to_string(log.path()).expect("log"),
        ),
    ] {
        assert!(!text.contains(TOKEN), "{what} shows the token");
    }
    assert_eq!(api.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_statuses_conform_to_githubs_description() {
    let h = host().await;
    let api = fake_github(&h).await;
    let provider = provider(&h, &api).await;
    let app = common::namespace(&h.client, &common::unique("app")).await;
    h.repo.write(
        "deploy/settings.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {}}}\n",
            app.name
        ),
    );
    let first = h.repo.commit("settings");
    h.gitea.push(&h.repo, "web");
    let syncs = format!(
        "syncs:\n  - {{name: web, repository: web, path: deploy, namespace: {}}}\n",
        app.name
    );
    let berth = Berth::new(&h.berth_ns.name, &h.mapping_with(&provider, "1s", &syncs));
    let (_agent, _base) = h.agent(&berth);
    let told = expect_posted(&api, &first, &["pending", "success"]).await;
    for (_, context, _, url) in &told {
        assert_eq!(context, "berth/sync/web");
        assert_eq!(url, &format!("{EXTERNAL}/syncs/web"));
    }

    h.repo.write(
        "deploy/gadget.yaml",
        "apiVersion: nowhere.example.com/v1\nkind: Gadget\nmetadata: {name: sprocket}\n",
    );
    let broken = h.repo.commit("a gadget");
    h.gitea.push(&h.repo, "web");
    let failed = expect_posted(&api, &broken, &["pending", "failure"]).await;
    assert!(
        failed[1].2.contains("Gadget") && failed[1].2.contains("sprocket"),
        "{failed:?}"
    );
    assert!(
        api.log()
            .iter()
            .all(|r| r.authorization == format!("Bearer {TOKEN}")),
        "every call carries the token"
    );
    assert_eq!(api.violations(), Vec::<String>::new());
}

/// A fake GitHub that keeps the comments posted on pull requests, beside statuses and the
/// open pull requests of [`fake_github`].
async fn fake_github_with_comments(h: &Host) -> (FakeApi, Arc<std::sync::Mutex<Vec<Value>>>) {
    let spec = Spec::load(&common::npm_file(OPENAPI, "generated/api.github.com.json"));
    let comments: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let held = comments.clone();
    let pulls = open_pulls(h);
    let respond: openapi::Responder = Arc::new(move |operation, path, body| {
        let mut held = held.lock().expect("comments");
        match operation {
            "repos/create-commit-status" => (201, json!({"id": 1, "state": body["state"]})),
            "pulls/list" => pulls(),
            "issues/list-comments" => (200, Value::from(held.clone())),
            "issues/create-comment" => {
                let comment = json!({"id": held.len() + 100, "body": body["body"]});
                held.push(comment.clone());
                (201, comment)
            }
            "issues/update-comment" => {
                let id: u64 = path
                    .rsplit('/')
                    .next()
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(0);
                match held.iter_mut().find(|c| c["id"] == id) {
                    Some(c) => {
                        c["body"] = body["body"].clone();
                        (200, c.clone())
                    }
                    None => (404, json!({"message": "Not Found"})),
                }
            }
            other => (
                404,
                json!({"message": format!("the fake does not answer {other}")}),
            ),
        }
    });
    (FakeApi::start(spec, TOKEN, respond).await, comments)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_comments_conform_to_githubs_description() {
    let h = host().await;
    let (api, comments) = fake_github_with_comments(&h).await;
    let provider = provider(&h, &api).await;
    let app = common::namespace(&h.client, &common::unique("app")).await;
    let settings = |value: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {}}}\ndata: {{value: \"{value}\"}}\n",
            app.name
        )
    };
    h.repo.write("deploy/settings.yaml", &settings("1"));
    h.repo.commit("settings");
    h.gitea.push(&h.repo, "web");
    let syncs = format!(
        "syncs:\n  - {{name: web, repository: web, path: deploy, namespace: {}, preview: true}}\n",
        app.name
    );
    let berth = Berth::new(&h.berth_ns.name, &h.mapping_with(&provider, "1s", &syncs));
    let (agent, _base) = h.agent(&berth);
    let body_with = |needle: String| {
        let comments = comments.clone();
        async move {
            common::eventually(Duration::from_secs(90), || async {
                let held = comments.lock().expect("comments").clone();
                held.iter()
                    .find(|c| c["body"].as_str().is_some_and(|b| b.contains(&needle)))
                    .map(|_| held.len())
            })
            .await
        }
    };
    let head = h
        .push_branch("change", "deploy/settings.yaml", &settings("2"))
        .await;
    h.open_pull_request("change");
    assert_eq!(
        body_with(head[..7].to_owned()).await,
        Some(1),
        "{:?}",
        api.violations()
    );
    expect_posted(&api, &head, &["success"]).await;
    let second = h
        .push_branch("change", "deploy/settings.yaml", &settings("3"))
        .await;
    assert_eq!(
        body_with(second[..7].to_owned()).await,
        Some(1),
        "{:?}",
        api.violations()
    );
    // a restart finds the comment by listing them, and edits it
    drop(agent);
    let (_agent, _base) = h.agent(&berth);
    let third = h
        .push_branch("change", "deploy/settings.yaml", &settings("4"))
        .await;
    assert_eq!(
        body_with(third[..7].to_owned()).await,
        Some(1),
        "{:?}",
        api.violations()
    );
    let operations: Vec<String> = api.log().into_iter().map(|r| r.operation).collect();
    assert_eq!(
        operations
            .iter()
            .filter(|o| *o == "issues/create-comment")
            .count(),
        1,
        "{operations:?}"
    );
    assert!(
        operations.iter().any(|o| o == "issues/update-comment"),
        "{operations:?}"
    );
    assert!(
        operations.iter().any(|o| o == "issues/list-comments"),
        "{operations:?}"
    );
    assert_eq!(api.violations(), Vec::<String>::new());
}

#[test]
fn the_description_refuses_what_github_would_refuse() {
    let spec = Spec::load(&common::npm_file(OPENAPI, "generated/api.github.com.json"));
    let path = "/repos/acme/web/statuses/0123456789abcdef0123456789abcdef01234567";
    let (operation, violations) = spec.check(
        "POST",
        path,
        "",
        br#"{"state":"pending","context":"berth/ci","description":null}"#,
    );
    assert_eq!(operation, "repos/create-commit-status");
    assert_eq!(violations, Vec::<String>::new());
    // GitHub has no running state, and a status needs one
    let (_, violations) = spec.check("POST", path, "", br#"{"state":"running"}"#);
    assert!(
        violations.iter().any(|v| v.contains("running")),
        "{violations:?}"
    );
    let (_, violations) = spec.check("POST", path, "", br#"{"context":"berth/ci"}"#);
    assert!(
        violations.iter().any(|v| v.contains("state")),
        "{violations:?}"
    );
    let (_, violations) = spec.check("GET", "/repos/acme/web/pulls", "state=opened&limit=5", b"");
    assert_eq!(violations.len(), 2, "{violations:?}");
    let (_, violations) = spec.check("POST", "/repos/acme/web/statuses", "", b"{}");
    assert!(
        violations[0].contains("no such operation"),
        "{violations:?}"
    );
}
