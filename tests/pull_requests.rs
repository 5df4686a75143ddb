//! Pipelines on pull requests and tags, with commit statuses, against a real Gitea (built from
//! its Go module: `tests/control-plane.sh gitea`) and the real Argo controller. Gitea sends its
//! own push and pull request webhooks to berth, serves the pull request refs berth fetches,
//! and keeps the statuses berth posts, which the tests read back through its API.

mod common;

use common::Berth;
use common::forge::{EXTERNAL, FAILING, host, name, params, workflow};
use kube::api::DynamicObject;

/// The repository's provider: the Gitea it is on.
const GITEA: &str = "{type: gitea, url: @GITEA@}";

const PULL_REQUESTS: &str = "  - name: web-ci
    repository: web
    namespace: @NS@
    serviceAccount: ci
    branches: [main]
    concurrency: cancel-in-progress
    pullRequests: {branches: [main]}
";

#[tokio::test]
async fn a_pull_request_launches_with_its_parameters_posts_statuses_and_stops_when_closed() {
    let h = host().await;
    // no polling after the first pass: Gitea's webhooks drive everything
    let berth = Berth::new(&h.berth_ns.name, &h.mapping(GITEA, "0", PULL_REQUESTS));
    let (_agent, base) = h.agent(&berth);
    let main_sha = h.repo.git(&["rev-parse", "main"]).trim().to_owned();
    h.run_for("web-ci", &main_sha, "!berth.dev/pull-request")
        .await;
    h.hook(&base).await;

    // a pull request opened against main launches one run with the pull request's facts
    let first = h
        .push_branch("feature", "src/lib.rs", "pub fn a() {}\n")
        .await;
    let number = h.open_pull_request("feature");
    let pr = format!("berth.dev/pull-request={number}");
    let run1 = h.run_for("web-ci", &first, &pr).await;
    let p = params(&run1);
    assert_eq!(p["pr-number"], number.to_string());
    assert_eq!(p["pr-base-branch"], "main");
    assert_eq!(p["pr-head-branch"], "feature");
    assert_eq!(p["branch"], "feature");
    assert_eq!(p["revision"], first);
    assert_eq!(name(&run1), format!("web-ci-pr{number}-{}", &first[..7]));
    // pending on the commit, linking the run's page
    let pending = h.statuses(&first, &["pending"]).await;
    assert_eq!(pending[0].0, "berth/web-ci");
    assert_eq!(
        pending[0].3,
        format!("{EXTERNAL}/pipelines/web-ci/runs/{}", name(&run1))
    );

    // a second push: cancel-in-progress ends the first run, which fails on its commit
    let second = h
        .push_branch("feature", "src/lib.rs", "pub fn b() {}\n")
        .await;
    let run2 = h.run_for("web-ci", &second, &pr).await;
    let ended = common::workflow_phase(&h.client, &h.wf_ns.name, &name(&run1), "Failed").await;
    assert_eq!(ended.data["spec"]["shutdown"], "Terminate");
    h.statuses(&first, &["pending", "failure"]).await;

    // the controller finishes the second run: success, posted once
    common::finish_pods(&h.client, &h.wf_ns.name, &name(&run2)).await;
    common::workflow_phase(&h.client, &h.wf_ns.name, &name(&run2), "Succeeded").await;
    let done = h.statuses(&second, &["pending", "success"]).await;
    assert!(done[1].2.starts_with("succeeded"), "{done:?}");

    // a third push runs; closing the pull request terminates it
    let third = h
        .push_branch("feature", "src/lib.rs", "pub fn c() {}\n")
        .await;
    let run3 = h.run_for("web-ci", &third, &pr).await;
    h.statuses(&third, &["pending"]).await;
    h.close_pull_request(number);
    let closed = common::workflow_phase(&h.client, &h.wf_ns.name, &name(&run3), "Failed").await;
    assert_eq!(closed.data["spec"]["shutdown"], "Terminate");
    h.statuses(&third, &["pending", "failure"]).await;
    assert_eq!(h.runs("web-ci", &pr).await.len(), 3, "one run per push");
}

#[tokio::test]
async fn workflow_from_base_runs_the_target_branchs_pipeline_and_head_its_own() {
    let h = host().await;
    let pipelines = "  - name: from-base
    repository: web
    namespace: @NS@
    serviceAccount: ci
    branches: [none]
    pullRequests: {branches: [main], workflowFrom: base}
  - name: from-head
    repository: web
    namespace: @NS@
    serviceAccount: ci
    branches: [none]
    pullRequests: {branches: [main], workflowFrom: head}
";
    let berth = Berth::new(&h.berth_ns.name, &h.mapping(GITEA, "1s", pipelines));
    let (_agent, _base) = h.agent(&berth);
    // the pull request edits the pipeline; polling the provider's list finds it
    let sha = h
        .push_branch("edit-ci", ".argo/workflow.yaml", &workflow("head"))
        .await;
    let number = h.open_pull_request("edit-ci");
    let pr = format!("berth.dev/pull-request={number}");
    let base = h.run_for("from-base", &sha, &pr).await;
    let head = h.run_for("from-head", &sha, &pr).await;
    let flavor = |w: &DynamicObject| {
        w.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("flavor"))
            .cloned()
    };
    assert_eq!(flavor(&base).as_deref(), Some("base"));
    assert_eq!(flavor(&head).as_deref(), Some("head"));
    // both build the pull request's commit
    assert_eq!(params(&base)["revision"], sha);
    assert_eq!(params(&head)["revision"], sha);
}

#[tokio::test]
async fn a_matching_tag_launches_once_and_another_tag_nothing() {
    let h = host().await;
    let pipelines = "  - name: release
    repository: web
    namespace: @NS@
    serviceAccount: ci
    branches: [none]
    tags: ['v*']
";
    let berth = Berth::new(&h.berth_ns.name, &h.mapping(GITEA, "1s", pipelines));
    let (_agent, base) = h.agent(&berth);
    // the pipeline has looked at the tags once (none yet)
    common::more_fetches(&base, "web", 2).await;
    let sha = h.repo.git(&["rev-parse", "main"]).trim().to_owned();
    h.repo.git(&["tag", "-a", "v1.2.0", "-m", "release 1.2.0"]);
    h.repo.git(&["tag", "nightly"]);
    h.gitea.push_ref(&h.repo, "web", "v1.2.0");
    h.gitea.push_ref(&h.repo, "web", "nightly");
    let run = h.run_for("release", &sha, "berth.dev/tag=v1.2.0").await;
    assert_eq!(params(&run)["tag"], "v1.2.0");
    assert_eq!(params(&run)["branch"], "");
    // more passes launch nothing more, and nightly nothing at all
    common::more_fetches(&base, "web", 3).await;
    let all = h.runs("release", "berth.dev/pipeline").await;
    assert_eq!(
        all.iter().map(name).collect::<Vec<_>>(),
        vec![name(&run)],
        "exactly one run, for v1.2.0"
    );
}

#[tokio::test]
async fn each_state_is_posted_once_even_when_berth_is_killed_between_states() {
    let h = host().await;
    let pipelines = "  - name: web-ci
    repository: web
    namespace: @NS@
    serviceAccount: ci
    branches: [main]
";
    let berth = Berth::new(&h.berth_ns.name, &h.mapping(GITEA, "1s", pipelines));
    let main_sha = h.repo.git(&["rev-parse", "main"]).trim().to_owned();
    let (agent, _) = h.agent(&berth);
    let run = h.run_for("web-ci", &main_sha, "berth.dev/pipeline").await;
    h.statuses(&main_sha, &["pending"]).await;
    // SIGKILL: no chance to tidy up
    drop(agent);
    common::finish_pods(&h.client, &h.wf_ns.name, &name(&run)).await;
    common::workflow_phase(&h.client, &h.wf_ns.name, &name(&run), "Succeeded").await;
    let (agent, _) = h.agent(&berth);
    h.statuses(&main_sha, &["pending", "success"]).await;
    drop(agent);
    // a restart after both states posts neither again: a new commit's pending status shows
    // this agent has reported, and the first commit still has one status per state
    let (_agent, _) = h.agent(&berth);
    h.repo.write("src/main.rs", "fn main() { /* 2 */ }\n");
    let next = h.repo.commit("next");
    h.gitea.push(&h.repo, "web");
    h.run_for("web-ci", &next, "berth.dev/pipeline").await;
    h.statuses(&next, &["pending"]).await;
    assert_eq!(
        h.gitea
            .statuses("web", &main_sha)
            .iter()
            .map(|s| s.1.as_str())
            .collect::<Vec<_>>(),
        vec!["pending", "success"]
    );
}

#[tokio::test]
async fn validate_checks_the_providers_token_secret() {
    let h = host().await;
    let pipelines = "  - name: web-ci
    repository: web
    namespace: @NS@
    branches: [main]
";
    let berth = Berth::new(&h.berth_ns.name, &h.mapping(GITEA, "1m", pipelines));
    let out = berth.run(&["validate"]);
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "repository web: gitea API at {} (token from Secret {}/gitea-token)",
            h.gitea.url, h.berth_ns.name
        )),
        "{text}"
    );
    let missing = GITEA.replace('}', ", secretRef: no-such-secret}");
    let berth = Berth::new(&h.berth_ns.name, &h.mapping(&missing, "1m", pipelines));
    let out = berth.run(&["validate"]);
    let text = common::text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(
            "repository web: provider: gitea API for berth/web: no token: failed to read secret"
        ) && text.contains("no-such-secret"),
        "{text}"
    );
    assert!(!text.contains(&h.gitea.token), "{text}");
}

#[tokio::test]
async fn a_failed_step_fails_the_commit_naming_the_step_and_the_link_opens_the_run_page() {
    let h = host().await;
    let pipelines = "  - name: web-ci
    repository: web
    namespace: @NS@
    serviceAccount: ci
    branches: [none]
    pullRequests: {branches: [main], workflowFrom: head}
";
    let berth = Berth::new(&h.berth_ns.name, &h.mapping(GITEA, "1s", pipelines));
    let (_agent, _, admin) = h.agent_with(&berth, |_| {});
    let sha = h
        .push_branch("breaks-tests", ".argo/workflow.yaml", FAILING)
        .await;
    let number = h.open_pull_request("breaks-tests");
    let run = h
        .run_for("web-ci", &sha, &format!("berth.dev/pull-request={number}"))
        .await;
    common::workflow_phase(&h.client, &h.wf_ns.name, &name(&run), "Failed").await;
    let statuses = h.statuses(&sha, &["pending", "failure"]).await;
    let (context, _, description, link) = &statuses[1];
    assert_eq!(context, "berth/web-ci");
    assert!(
        description.starts_with("failed at step test"),
        "{description}"
    );
    // the link is the run's page under the public address: served by the dashboard
    let path = link.strip_prefix(EXTERNAL).expect("under --external-url");
    let (code, page) = common::http("GET", &format!("{admin}{path}"), &[], b"");
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains(&name(&run)) && page.contains("Failed"),
        "{page}"
    );
}
