//! berth's requests to GitLab, Bitbucket Cloud and Bitbucket Server, checked against each
//! provider's documented API (transcribed as OpenAPI in `tests/fixtures/api/`, with the pages
//! they come from): a fake of the provider on loopback refuses what does not conform. A real
//! Gitea serves the git side; runs finish through the real Argo controller.

mod common;
#[path = "common/openapi.rs"]
mod openapi;

use std::sync::Arc;
use std::time::Duration;

use common::forge::{EXTERNAL, host, name};
use common::{Berth, put_secret_data};
use openapi::{FakeApi, Spec};
use serde_json::{Value, json};

const TOKEN: &str = "glpat-berthTestTokenNeverShown01";

/// One provider: its type in the mapping, its description, the operations that post a status
/// and list pull requests, how an empty list looks, and the words it posts for pending and
/// success.
struct Provider {
    kind: &'static str,
    spec: &'static str,
    post: &'static str,
    list: &'static str,
    empty: Value,
    /// The body field holding the state, the states posted while the run runs, and then when
    /// it succeeded.
    states: (&'static str, &'static [&'static str], &'static str),
    /// Whether the Secret carries a username (basic authentication).
    username: bool,
}

/// The states a fake accepted for a commit.
struct Posted<'a> {
    api: &'a FakeApi,
    operation: &'static str,
    sha: &'a str,
    /// The body field holding the state.
    field: &'static str,
}

impl Posted<'_> {
    fn states(&self) -> Vec<String> {
        self.api
            .log()
            .iter()
            .filter(|r| {
                r.operation == self.operation && r.answered == 201 && r.path.contains(self.sha)
            })
            .map(|r| r.body[self.field].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Waits until exactly `want` was accepted, in order.
    async fn wait(&self, want: &[&str]) {
        let reached = common::eventually(Duration::from_secs(60), || async {
            (self.states() == want).then_some(())
        })
        .await;
        assert!(
            reached.is_some(),
            "posted {:?}, want {want:?}; violations {:?}",
            self.states(),
            self.api.violations()
        );
    }
}

async fn statuses_conform(p: Provider) {
    let h = host().await;
    let spec = Spec::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/api")
            .join(p.spec),
    );
    let (post, list, empty) = (p.post, p.list, p.empty.clone());
    let respond: openapi::Responder = Arc::new(move |operation, _path, _body| {
        if operation == post {
            (201, json!({}))
        } else if operation == list {
            (200, empty.clone())
        } else {
            (404, json!({"message": operation}))
        }
    });
    let api = FakeApi::start(spec, TOKEN, respond).await;
    let mut data = vec![("token", TOKEN)];
    if p.username {
        data.push(("username", "berth-bot"));
    }
    put_secret_data(&h.client, &h.berth_ns.name, "api-token", &data).await;
    let provider = format!(
        "{{type: {}, url: {}, secretRef: api-token}}",
        p.kind, api.url
    );
    let pipeline = "  - name: web-ci
    repository: web
    namespace: @NS@
    serviceAccount: ci
    branches: [main]
    pullRequests: {branches: [main]}
";
    let berth = Berth::new(&h.berth_ns.name, &h.mapping(&provider, "1s", pipeline));
    let (_agent, _) = h.agent(&berth);
    let sha = h.repo.git(&["rev-parse", "main"]).trim().to_owned();
    let run = h.run_for("web-ci", &sha, "berth.dev/pipeline").await;
    let (field, running, success) = p.states;
    let posted = Posted {
        api: &api,
        operation: post,
        sha: &sha,
        field,
    };
    posted.wait(running).await;
    common::finish_pods(&h.client, &h.wf_ns.name, &name(&run)).await;
    posted.wait(&[running, &[success]].concat()).await;
    let log = api.log();
    assert!(log.iter().any(|r| r.operation == list), "{log:?}");
    let last = log
        .iter()
        .rev()
        .find(|r| r.operation == post)
        .expect("a status");
    let url = format!("{EXTERNAL}/pipelines/web-ci/runs/{}", name(&run));
    assert!(
        last.body
            .as_object()
            .is_some_and(|o| o.values().any(|v| v == &Value::from(url.clone()))),
        "the status links the run page: {}",
        last.body
    );
    assert_eq!(api.violations(), Vec::<String>::new(), "{}", p.kind);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_statuses_and_merge_request_lists_conform_to_its_documented_api() {
    statuses_conform(Provider {
        kind: "gitlab",
        spec: "gitlab.json",
        post: "commits/set-status",
        list: "merge-requests/list",
        empty: json!([]),
        // GitLab has a running state
        states: ("state", &["pending", "running"], "success"),
        username: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitbucket_cloud_statuses_and_pull_request_lists_conform_to_its_documented_api() {
    statuses_conform(Provider {
        kind: "bitbucket",
        spec: "bitbucket.json",
        post: "commit-statuses/create-build-status",
        list: "pullrequests/list",
        empty: json!({"values": [], "pagelen": 50, "size": 0, "page": 1}),
        states: ("state", &["INPROGRESS"], "SUCCESSFUL"),
        username: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitbucket_server_statuses_and_pull_request_lists_conform_to_its_documented_api() {
    statuses_conform(Provider {
        kind: "bitbucket-server",
        spec: "bitbucket-server.json",
        post: "builds/add",
        list: "pull-requests/list",
        empty: json!({"values": [], "size": 0, "limit": 50, "start": 0, "isLastPage": true}),
        states: ("state", &["INPROGRESS"], "SUCCESSFUL"),
        username: false,
    })
    .await;
}
