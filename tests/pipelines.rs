//! Pipelines against a real API server: source repositories in temp dirs, `berth run` and
//! `berth trigger`, and the Workflows the API server then holds.

mod common;

use std::time::Duration;

use common::{Berth, ChildGuard, Repo, client, namespace, text, unique, workflows};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};

const WORKFLOW: &str = "apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: ci-
spec:
  entrypoint: main
  arguments:
    parameters:
      - {name: image, value: from-file}
      - {name: registry, value: docker.io}
  templates:
    - name: main
      container:
        image: alpine
        args: ['{{workflow.parameters.revision}}']
";

/// A source repository with a workflow file and a first commit on main.
fn source() -> Repo {
    let repo = Repo::new();
    repo.write(".argo/workflow.yaml", WORKFLOW)
        .write("src/main.rs", "fn main() {}\n")
        .write("docs/README.md", "docs\n");
    repo.commit("initial");
    repo
}

fn mapping(url: &str, wf_ns: &str, pipelines: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: Mapping
repositories:
  - name: web
    url: {url}
    branch: main
    interval: 1s
pipelines:
{}",
        pipelines.replace("@NS@", wf_ns)
    )
}

const BASIC: &str = "  - name: web-ci
    repository: web
    namespace: @NS@
    serviceAccount: ci
    parameters: {image: registry.example.com/web}
    ttlStrategy: {secondsAfterCompletion: 3600}
";

struct Setup {
    client: kube::Client,
    _berth_ns: common::NamespaceGuard,
    wf_ns: common::NamespaceGuard,
}

async fn setup() -> Setup {
    let client = client().await;
    common::install_workflow_crds(&client).await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let wf_ns = namespace(&client, &unique("wf")).await;
    // the pipelines' account, which berth launches as
    common::workflow_launcher(&client, &wf_ns.name, "ci").await;
    Setup {
        client,
        _berth_ns: berth_ns,
        wf_ns,
    }
}

/// Waits until the namespace holds `count` Workflows, then a little longer to catch extras.
async fn expect_runs(client: &kube::Client, ns: &str, count: usize) -> Vec<DynamicObject> {
    let reached = common::eventually(Duration::from_secs(30), || async {
        (workflows(client, ns).await.len() >= count).then_some(())
    })
    .await;
    assert!(
        reached.is_some(),
        "expected {count} Workflows, have {}",
        workflows(client, ns).await.len()
    );
    // two more poll intervals: a duplicate launch would show up by then
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let runs = workflows(client, ns).await;
    assert_eq!(
        runs.len(),
        count,
        "{:?}",
        runs.iter()
            .map(|w| w.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    runs
}

/// Whether one of the runs was launched for this commit.
fn has_revision(runs: &[DynamicObject], sha: &str) -> bool {
    runs.iter().any(|w| {
        w.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("berth.dev/revision"))
            .map(String::as_str)
            == Some(sha)
    })
}

fn agent(berth: &Berth) -> ChildGuard {
    berth.agent().0
}

fn params(w: &DynamicObject) -> std::collections::BTreeMap<String, String> {
    w.data["spec"]["arguments"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_owned(),
                p["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_commit_to_main_launches_exactly_one_workflow_and_other_branches_none() {
    let s = setup().await;
    let repo = source();
    let berth_ns = s._berth_ns.name.clone();
    let berth = Berth::new(&berth_ns, &mapping(&repo.url(), &s.wf_ns.name, BASIC));
    let _agent = agent(&berth);
    let first = repo.git(&["rev-parse", "HEAD"]);
    let runs = expect_runs(&s.client, &s.wf_ns.name, 1).await;

    let w = &runs[0];
    assert_eq!(
        w.metadata.name.as_deref(),
        Some(format!("web-ci-{}", &first[..7]).as_str())
    );
    let labels = w.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["berth.dev/pipeline"], "web-ci");
    assert_eq!(labels["berth.dev/repository"], "web");
    assert_eq!(labels["berth.dev/revision"], first);
    let annotations = w.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations["berth.dev/branch"], "main");
    assert_eq!(annotations["berth.dev/commit-subject"], "initial");
    let p = params(w);
    assert_eq!(p["repo"], repo.url());
    assert_eq!(p["revision"], first);
    assert_eq!(p["short-sha"], &first[..7]);
    assert_eq!(p["branch"], "main");
    assert_eq!(p["image"], "registry.example.com/web");
    assert_eq!(p["registry"], "docker.io");
    assert_eq!(w.data["spec"]["serviceAccountName"], "ci");
    assert_eq!(
        w.data["spec"]["ttlStrategy"]["secondsAfterCompletion"],
        3600
    );
    assert_eq!(
        w.data["spec"]["templates"][0]["container"]["args"][0],
        "{{workflow.parameters.revision}}"
    );

    // a commit on an unmapped branch launches nothing
    repo.git(&["checkout", "-q", "-b", "feature/x"]);
    repo.write("src/lib.rs", "pub fn x() {}\n");
    repo.commit("feature work");
    expect_runs(&s.client, &s.wf_ns.name, 1).await;

    // several commits pushed at once launch once, for the newest
    repo.git(&["checkout", "-q", "main"]);
    repo.write("src/a.rs", "a");
    repo.commit("a");
    repo.write("src/b.rs", "b");
    let newest = repo.commit("b");
    let runs = expect_runs(&s.client, &s.wf_ns.name, 2).await;
    assert!(
        runs.iter().any(
            |w| w.metadata.name.as_deref() == Some(format!("web-ci-{}", &newest[..7]).as_str())
        )
    );

    // the launch is recorded and shown by `berth status`
    let out = berth.run(&["status"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("PIPELINE") && stdout.contains(&format!("web-ci-{}", &newest[..7])),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_restart_launches_nothing_new_and_the_next_commit_exactly_one() {
    let s = setup().await;
    let repo = source();
    let berth = Berth::new(
        &s._berth_ns.name,
        &mapping(&repo.url(), &s.wf_ns.name, BASIC),
    );
    let mut first_agent = agent(&berth);
    expect_runs(&s.client, &s.wf_ns.name, 1).await;
    first_agent.0.kill().expect("SIGKILL");
    first_agent.0.wait().expect("reaped");

    let _second_agent = agent(&berth);
    expect_runs(&s.client, &s.wf_ns.name, 1).await;
    repo.write("src/main.rs", "fn main() { println!(); }\n");
    let next = repo.commit("next");
    let runs = expect_runs(&s.client, &s.wf_ns.name, 2).await;
    assert!(has_revision(&runs, &next), "no run for {next}");
}

#[tokio::test]
async fn a_paths_filter_skips_docs_only_commits() {
    let s = setup().await;
    let repo = source();
    let pipelines = format!("{BASIC}    paths: [\"src/**\"]\n");
    let berth = Berth::new(
        &s._berth_ns.name,
        &mapping(&repo.url(), &s.wf_ns.name, &pipelines),
    );
    let _agent = agent(&berth);
    // first sight: the initial commit touched src/ (against its empty parent), so it launches
    expect_runs(&s.client, &s.wf_ns.name, 1).await;
    repo.write("docs/README.md", "more docs\n");
    repo.commit("docs only");
    expect_runs(&s.client, &s.wf_ns.name, 1).await;
    repo.write("src/main.rs", "fn main() { todo!() }\n");
    let code = repo.commit("code");
    let runs = expect_runs(&s.client, &s.wf_ns.name, 2).await;
    assert!(has_revision(&runs, &code), "no run for {code}");
}

/// Sets a run's `status.phase` the way Argo's controller would.
async fn set_phase(client: &kube::Client, ns: &str, name: &str, phase: &str) {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &common::workflow_resource());
    let mut status =
        serde_json::json!({"status": {"phase": phase, "startedAt": "2026-01-01T00:00:00Z"}});
    if phase != "Running" {
        status["status"]["finishedAt"] = serde_json::json!("2026-01-01T00:05:00Z");
    }
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch status");
}

/// A pipeline with `concurrency` whose first run is Running when a second commit lands.
/// Returns the agent (keep it alive), the first run's name and both runs.
async fn second_commit_while_running(
    s: &Setup,
    concurrency: &str,
) -> (ChildGuard, String, Vec<DynamicObject>) {
    let repo = source();
    let pipelines = format!("{BASIC}    concurrency: {concurrency}\n");
    let berth = Berth::new(
        &s._berth_ns.name,
        &mapping(&repo.url(), &s.wf_ns.name, &pipelines),
    );
    let agent = agent(&berth);
    let runs = expect_runs(&s.client, &s.wf_ns.name, 1).await;
    let first = runs[0].metadata.name.clone().expect("name");
    set_phase(&s.client, &s.wf_ns.name, &first, "Running").await;
    repo.write(
        "src/main.rs",
        &format!("fn main() {{ /* {concurrency} */ }}\n"),
    );
    repo.commit("second");
    let runs = expect_runs(&s.client, &s.wf_ns.name, 2).await;
    (agent, first, runs)
}

#[tokio::test]
async fn cancel_in_progress_terminates_the_running_run() {
    let s = setup().await;
    let (_agent, first, runs) = second_commit_while_running(&s, "cancel-in-progress").await;
    let old = runs
        .iter()
        .find(|w| w.metadata.name.as_deref() == Some(first.as_str()))
        .expect("old run");
    assert_eq!(old.data["spec"]["shutdown"], "Terminate");
    let new = runs
        .iter()
        .find(|w| w.metadata.name.as_deref() != Some(first.as_str()))
        .expect("new run");
    assert!(new.data["spec"].get("shutdown").is_none());
}

#[tokio::test]
async fn queue_suspends_the_new_run_until_the_previous_finishes_and_runs_are_recorded() {
    let s = setup().await;
    let (_agent, first, runs) = second_commit_while_running(&s, "queue").await;
    let queued = runs
        .iter()
        .find(|w| w.metadata.name.as_deref() != Some(first.as_str()))
        .expect("queued");
    assert_eq!(queued.data["spec"]["suspend"], true);
    let queued_name = queued.metadata.name.clone().expect("name");

    set_phase(&s.client, &s.wf_ns.name, &first, "Succeeded").await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        s.client.clone(),
        &s.wf_ns.name,
        &common::workflow_resource(),
    );
    let resumed = common::eventually(Duration::from_secs(20), || async {
        let w = api.get(&queued_name).await.ok()?;
        (w.data["spec"]["suspend"] != true).then_some(())
    })
    .await;
    assert!(resumed.is_some(), "the queued run was not resumed");

    // the finished run is recorded in the pipeline's ConfigMap, with an Event
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(s.client.clone(), &s._berth_ns.name);
    let recorded = common::eventually(Duration::from_secs(20), || async {
        let cm = cms.get("berth-pipeline-web-ci").await.ok()?;
        let runs = cm.data?.get("runs")?.clone();
        runs.contains("\"phase\":\"Succeeded\"").then_some(runs)
    })
    .await;
    assert!(recorded.is_some(), "the run was not recorded");
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(s.client.clone(), &s._berth_ns.name);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.contains(&"Launched".to_owned()) && reasons.contains(&"RunSucceeded".to_owned()),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn a_broken_workflow_file_fails_clearly_and_other_pipelines_go_on() {
    let s = setup().await;
    let repo = source();
    let pipelines = format!(
        "{BASIC}  - name: missing
    repository: web
    namespace: @NS@
    workflow: .argo/nope.yaml
  - name: not-a-workflow
    repository: web
    namespace: @NS@
    workflow: docs/README.md
"
    );
    let berth = Berth::new(
        &s._berth_ns.name,
        &mapping(&repo.url(), &s.wf_ns.name, &pipelines),
    );
    let head = repo.git(&["rev-parse", "HEAD"]);
    let _agent = agent(&berth);
    let runs = expect_runs(&s.client, &s.wf_ns.name, 1).await;
    assert_eq!(
        runs[0]
            .metadata
            .labels
            .as_ref()
            .map(|l| l["berth.dev/pipeline"].clone()),
        Some("web-ci".into())
    );

    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(s.client.clone(), &s._berth_ns.name);
    for (pipeline, needle) in [
        ("missing", ".argo/nope.yaml not found at commit"),
        ("not-a-workflow", "docs/README.md at commit"),
    ] {
        let cm = common::eventually(Duration::from_secs(20), || async {
            cms.get(&format!("berth-pipeline-{pipeline}")).await.ok()
        })
        .await
        .expect("pipeline status");
        let a = cm.metadata.annotations.unwrap_or_default();
        assert_eq!(a["berth.dev/status"], "Failed");
        assert!(
            a["berth.dev/message"].contains(needle) && a["berth.dev/message"].contains(&head[..7]),
            "{}",
            a["berth.dev/message"]
        );
    }
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(s.client.clone(), &s._berth_ns.name);
    let failures: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("LaunchFailed"))
        .filter_map(|e| e.message)
        .collect();
    assert!(
        failures
            .iter()
            .any(|m| m.contains(".argo/nope.yaml") && m.contains(&head[..7])),
        "{failures:?}"
    );

    // the agent keeps serving: a new commit still launches web-ci
    repo.write("src/main.rs", "fn main() { /* more */ }\n");
    repo.commit("more");
    expect_runs(&s.client, &s.wf_ns.name, 2).await;
}

#[tokio::test]
async fn trigger_launches_the_head_and_a_second_trigger_a_distinct_run() {
    let s = setup().await;
    let repo = source();
    let head = repo.git(&["rev-parse", "HEAD"]);
    let berth = Berth::new(
        &s._berth_ns.name,
        &mapping(&repo.url(), &s.wf_ns.name, BASIC),
    );
    common::succeeds(
        &berth,
        &["trigger", "web-ci"],
        &format!("web-ci-{}", &head[..7]),
    );
    let out = berth.run(&["trigger", "web-ci", "--branch", "main"]);
    assert!(out.status.success(), "{}", text(&out));
    let runs = workflows(&s.client, &s.wf_ns.name).await;
    assert_eq!(runs.len(), 2);
    assert_ne!(runs[0].metadata.name, runs[1].metadata.name);
    for w in &runs {
        assert_eq!(params(w)["revision"], head);
    }
    let out = berth.run(&["trigger", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = berth.run(&["trigger", "web-ci", "--revision", "0000000"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}
