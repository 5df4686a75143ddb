//! Pipelines against a real API server and Argo Workflows' controller: source repositories in
//! temp dirs, `berth run` and `berth trigger`, the Workflows berth launches and what the
//! controller makes of them (KWOK runs their pods: see `tests/control-plane.sh`).

mod common;

use std::time::Duration;

use common::forge::{FAILING, params};
use common::{Berth, ChildGuard, Repo, client, namespace, text, unique, workflows};
use kube::api::{Api, DynamicObject, ListParams};

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

/// A workflow whose step runs for an hour, until the test ends its pod.
fn long_running() -> String {
    WORKFLOW.replace(
        "    - name: main\n",
        "    - name: main\n      metadata:\n        annotations: {pod-complete.stage.kwok.x-k8s.io/delay: 1h}\n",
    )
}

/// A source repository with a workflow file and a first commit on main.
fn source() -> Repo {
    source_with(WORKFLOW)
}

fn source_with(workflow: &str) -> Repo {
    let repo = Repo::new();
    repo.write(".argo/workflow.yaml", workflow)
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

/// `berth run` for a test, with its public listener for metrics.
struct Agent {
    process: ChildGuard,
    base: String,
}

impl Agent {
    /// Waits until the agent has fetched twice more: the pass after the first of those
    /// fetches has completed, so it has acted on every commit made before this call.
    async fn one_full_pass(&self) {
        common::more_fetches(&self.base, "web", 2).await;
    }
}

/// Waits until the namespace holds at least `count` Workflows.
async fn wait_runs(client: &kube::Client, ns: &str, count: usize) -> Vec<DynamicObject> {
    let reached = common::eventually(Duration::from_secs(30), || async {
        let runs = workflows(client, ns).await;
        (runs.len() >= count).then_some(runs)
    })
    .await;
    reached.unwrap_or_else(|| {
        panic!("expected {count} Workflows in {ns}");
    })
}

/// Waits until the namespace holds `count` Workflows and the agent has made a full pass since
/// (a duplicate launch would show up by then); then there must be exactly `count`.
async fn expect_runs(
    client: &kube::Client,
    ns: &str,
    agent: &Agent,
    count: usize,
) -> Vec<DynamicObject> {
    wait_runs(client, ns, count).await;
    agent.one_full_pass().await;
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

fn agent(berth: &Berth) -> Agent {
    let (child, base) = berth.agent();
    Agent {
        process: child,
        base,
    }
}

#[tokio::test]
async fn a_commit_to_main_launches_exactly_one_workflow_and_other_branches_none() {
    let s = setup().await;
    let repo = source();
    let berth_ns = s._berth_ns.name.clone();
    let berth = Berth::new(&berth_ns, &mapping(&repo.url(), &s.wf_ns.name, BASIC));
    let agent = agent(&berth);
    let first = repo.git(&["rev-parse", "HEAD"]);
    let runs = expect_runs(&s.client, &s.wf_ns.name, &agent, 1).await;

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
    // the controller runs it to the end
    let name = w.metadata.name.clone().expect("name");
    common::workflow_phase(&s.client, &s.wf_ns.name, &name, "Succeeded").await;

    // a commit on an unmapped branch launches nothing
    repo.git(&["checkout", "-q", "-b", "feature/x"]);
    repo.write("src/lib.rs", "pub fn x() {}\n");
    repo.commit("feature work");
    expect_runs(&s.client, &s.wf_ns.name, &agent, 1).await;

    // several commits pushed at once launch once, for the newest
    repo.git(&["checkout", "-q", "main"]);
    repo.write("src/a.rs", "a");
    repo.commit("a");
    repo.write("src/b.rs", "b");
    let newest = repo.commit("b");
    let runs = expect_runs(&s.client, &s.wf_ns.name, &agent, 2).await;
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
    expect_runs(&s.client, &s.wf_ns.name, &first_agent, 1).await;
    first_agent.process.0.kill().expect("SIGKILL");
    first_agent.process.0.wait().expect("reaped");

    let agent = agent(&berth);
    expect_runs(&s.client, &s.wf_ns.name, &agent, 1).await;
    repo.write("src/main.rs", "fn main() { println!(); }\n");
    let next = repo.commit("next");
    let runs = expect_runs(&s.client, &s.wf_ns.name, &agent, 2).await;
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
    let agent = agent(&berth);
    // first sight: the initial commit touched src/ (against its empty parent), so it launches
    expect_runs(&s.client, &s.wf_ns.name, &agent, 1).await;
    repo.write("docs/README.md", "more docs\n");
    let docs = repo.commit("docs only");
    // the skip is recorded where users look: the pipeline's record and an Event
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(s.client.clone(), &s._berth_ns.name);
    let recorded = common::eventually(Duration::from_secs(30), || async {
        let cm = api.get_opt("berth-pipeline-web-ci").await.ok()??;
        let skipped: serde_json::Value = serde_json::from_str(cm.data?.get("skipped")?).ok()?;
        (skipped["main"] == docs.as_str()).then_some(cm.metadata.annotations?)
    })
    .await
    .expect("the skipped commit is in the pipeline's record");
    assert_eq!(recorded["berth.dev/status"], "Skipped");
    let message = &recorded["berth.dev/message"];
    assert!(
        message.contains(&format!("main@{} skipped", &docs[..7])),
        "{message}"
    );
    assert!(message.contains("src/**"), "{message}");
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(s.client.clone(), &s._berth_ns.name);
    let listed = events.list(&Default::default()).await.expect("events");
    assert!(
        listed
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Skipped")
                && e.message.as_deref().is_some_and(|m| m.contains(&docs[..7]))),
        "a Skipped Event names the commit"
    );
    expect_runs(&s.client, &s.wf_ns.name, &agent, 1).await;
    repo.write("src/main.rs", "fn main() { todo!() }\n");
    let code = repo.commit("code");
    let runs = expect_runs(&s.client, &s.wf_ns.name, &agent, 2).await;
    assert!(has_revision(&runs, &code), "no run for {code}");
}

/// A pipeline with `concurrency` whose first run is Running (as the controller reports it)
/// when a second commit lands. Returns the agent (keep it alive), the source repository, the
/// first run's name and both runs.
async fn second_commit_while_running(
    s: &Setup,
    concurrency: &str,
) -> (Agent, Repo, String, Vec<DynamicObject>) {
    let repo = source_with(&long_running());
    let pipelines = format!("{BASIC}    concurrency: {concurrency}\n");
    let berth = Berth::new(
        &s._berth_ns.name,
        &mapping(&repo.url(), &s.wf_ns.name, &pipelines),
    );
    let agent = agent(&berth);
    let runs = expect_runs(&s.client, &s.wf_ns.name, &agent, 1).await;
    let first = runs[0].metadata.name.clone().expect("name");
    common::workflow_phase(&s.client, &s.wf_ns.name, &first, "Running").await;
    repo.write(
        "src/main.rs",
        &format!("fn main() {{ /* {concurrency} */ }}\n"),
    );
    repo.commit("second");
    let runs = expect_runs(&s.client, &s.wf_ns.name, &agent, 2).await;
    (agent, repo, first, runs)
}

#[tokio::test]
async fn cancel_in_progress_terminates_the_running_run() {
    let s = setup().await;
    let (_agent, _repo, first, runs) = second_commit_while_running(&s, "cancel-in-progress").await;
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
    // the controller ends the old run, and says why
    let ended = common::workflow_phase(&s.client, &s.wf_ns.name, &first, "Failed").await;
    let message = ended.data["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Terminate"), "{message}");
    let new_name = new.metadata.name.clone().expect("name");
    common::workflow_phase(&s.client, &s.wf_ns.name, &new_name, "Running").await;
}

#[tokio::test]
async fn queue_suspends_the_new_run_until_the_previous_finishes_and_runs_are_recorded() {
    let s = setup().await;
    let (agent, repo, first, runs) = second_commit_while_running(&s, "queue").await;
    let queued = runs
        .iter()
        .find(|w| w.metadata.name.as_deref() != Some(first.as_str()))
        .expect("queued");
    assert_eq!(queued.data["spec"]["suspend"], true);
    let queued_name = queued.metadata.name.clone().expect("name");
    // a third commit queues behind the second
    repo.write("src/main.rs", "fn main() { /* third */ }\n");
    let third_sha = repo.commit("third");
    let runs = expect_runs(&s.client, &s.wf_ns.name, &agent, 3).await;
    let third = runs
        .iter()
        .find(|w| has_revision(std::slice::from_ref(w), &third_sha))
        .and_then(|w| w.metadata.name.clone())
        .expect("third run");
    let api: Api<DynamicObject> = Api::namespaced_with(
        s.client.clone(),
        &s.wf_ns.name,
        &common::workflow_resource(),
    );
    let suspended = |name: String| {
        let api = api.clone();
        async move {
            api.get(&name)
                .await
                .ok()
                .map(|w| w.data["spec"]["suspend"] == true)
        }
    };
    assert_eq!(suspended(third.clone()).await, Some(true));

    // the first run's step ends: the controller finishes it, berth resumes the second only
    common::finish_pods(&s.client, &s.wf_ns.name, &first).await;
    common::workflow_phase(&s.client, &s.wf_ns.name, &first, "Succeeded").await;
    let resumed = common::eventually(Duration::from_secs(20), || async {
        (suspended(queued_name.clone()).await == Some(false)).then_some(())
    })
    .await;
    assert!(resumed.is_some(), "the queued run was not resumed");
    assert_eq!(
        suspended(third.clone()).await,
        Some(true),
        "the third waits for the second"
    );
    // the second runs and ends: the third resumes
    common::finish_pods(&s.client, &s.wf_ns.name, &queued_name).await;
    common::workflow_phase(&s.client, &s.wf_ns.name, &queued_name, "Succeeded").await;
    let resumed = common::eventually(Duration::from_secs(20), || async {
        (suspended(third.clone()).await == Some(false)).then_some(())
    })
    .await;
    assert!(
        resumed.is_some(),
        "the third run was not resumed after the second"
    );

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
async fn a_failing_step_fails_the_run_and_status_and_the_run_page_name_it() {
    let s = setup().await;
    let repo = source_with(FAILING);
    let berth = Berth::new(
        &s._berth_ns.name,
        &mapping(&repo.url(), &s.wf_ns.name, BASIC),
    );
    let (child, base, admin) = berth.agent_with(&[], &[], |_| {});
    let agent = Agent {
        process: child,
        base,
    };
    let runs = expect_runs(&s.client, &s.wf_ns.name, &agent, 1).await;
    let name = runs[0].metadata.name.clone().expect("name");
    let failed = common::workflow_phase(&s.client, &s.wf_ns.name, &name, "Failed").await;
    assert!(
        failed.data["status"]["nodes"].as_object().is_some_and(|n| n
            .values()
            .any(|n| n["displayName"] == "build" && n["phase"] == "Succeeded")),
        "the first step ran: {}",
        failed.data["status"]
    );
    let step = "failed at step test: main: Error (exit code 2)";
    let shown = common::eventually(Duration::from_secs(20), || async {
        let out = berth.run(&["status"]);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        stdout.contains(step).then_some(stdout)
    })
    .await;
    assert!(shown.is_some(), "{}", text(&berth.run(&["status"])));
    let (code, page) = common::http(
        "GET",
        &format!("{admin}/pipelines/web-ci/runs/{name}"),
        &[],
        b"",
    );
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("Failed step") && page.contains("test: main: Error (exit code 2)"),
        "{page}"
    );
    let failed_events = common::event_messages(&s.client, &s._berth_ns.name, "RunFailed").await;
    assert!(
        failed_events
            .iter()
            .any(|m| m.contains("failed at step test")),
        "{failed_events:?}"
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
    let agent = agent(&berth);
    let runs = expect_runs(&s.client, &s.wf_ns.name, &agent, 1).await;
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

    // the agent keeps serving: a new commit still launches web-ci (its failing pipelines back
    // off the repository's passes, so this waits for the launch only)
    repo.write("src/main.rs", "fn main() { /* more */ }\n");
    repo.commit("more");
    wait_runs(&s.client, &s.wf_ns.name, 2).await;
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
