//! Cleanup rules against a real API server and Argo's controller: finished runs made with the
//! labels berth puts on its runs and the status Argo's controller writes (hours-old runs cannot
//! be waited for), running ones run by the controller, and `berth cleanup` / `berth run`.

mod common;

use std::time::Duration;

use common::{Berth, client, namespace, text, unique, workflow_resource, workflows};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// Creates a run; `berth_labels` false makes it look like someone else's Workflow.
/// - A finished phase (`Succeeded`, `Failed`, `Error`) makes a run as Argo's controller leaves
///   one: the status with its times, and the `workflows.argoproj.io/completed` label, so the
///   controller does not run it again.
/// - `Running` has the controller start it (its step runs for an hour) and waits until it
///   reports Running.
/// - An empty phase is a run just created: the controller starts it as it would `Running`, and
///   this does not wait for it.
async fn run(
    client: &kube::Client,
    ns: &str,
    name: &str,
    phase: &str,
    finished_ago: Option<SignedDuration>,
    berth_labels: bool,
) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &workflow_resource());
    let mut labels = if berth_labels {
        json!({"app.kubernetes.io/managed-by": "berth", "berth.dev/pipeline": "web-ci",
               "berth.dev/branch": "main", "berth.dev/revision": "0123456789abcdef0123456789abcdef01234567"})
    } else {
        json!({"team": "other"})
    };
    let finished = ["Succeeded", "Failed", "Error"].contains(&phase);
    let mut object = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "labels": labels, "annotations": {"berth.dev/branch": "main"}},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "alpine"},
                 "metadata": {"annotations": {"pod-complete.stage.kwok.x-k8s.io/delay": "1h"}}}]},
    });
    if finished {
        labels["workflows.argoproj.io/completed"] = json!("true");
        object["metadata"]["labels"] = labels;
        let mut status = json!({"phase": phase, "startedAt": "2026-01-01T00:00:00Z"});
        if let Some(ago) = finished_ago {
            status["finishedAt"] = json!((Timestamp::now() - ago).to_string());
        }
        object["status"] = status;
    }
    let object: DynamicObject = serde_json::from_value(object).expect("workflow");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create run");
    if phase == "Running" {
        let running = common::eventually(Duration::from_secs(30), || async {
            let w = api.get(name).await.ok()?;
            (w.data["status"]["phase"] == "Running").then_some(())
        })
        .await;
        assert!(running.is_some(), "the controller did not start {name}");
    }
}

fn mapping(rules: &str) -> String {
    format!("apiVersion: berth.dev/v1alpha1\nkind: Mapping\ncleanup:\n{rules}")
}

/// The names of the runs in `ns` once exactly `count` remain (within 20 s).
async fn runs_left(client: &kube::Client, ns: &str, count: usize) -> Option<Vec<String>> {
    common::eventually(Duration::from_secs(20), || async {
        let left = names(&workflows(client, ns).await);
        (left.len() == count).then_some(left)
    })
    .await
}

fn names(list: &[DynamicObject]) -> Vec<String> {
    list.iter()
        .filter_map(|w| w.metadata.name.clone())
        .collect()
}

async fn setup() -> (kube::Client, common::NamespaceGuard, common::NamespaceGuard) {
    let client = client().await;
    common::install_workflow_crds(&client).await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let wf_ns = namespace(&client, &unique("wf")).await;
    (client, berth_ns, wf_ns)
}

#[tokio::test]
async fn keep_last_deletes_the_oldest_finished_runs_and_never_running_or_foreign_ones() {
    let (client, berth_ns, wf_ns) = setup().await;
    let ns = &wf_ns.name;
    for i in 0..12 {
        let phase = ["Succeeded", "Failed", "Error"][i % 3];
        run(
            &client,
            ns,
            &format!("ci-{i:02}"),
            phase,
            Some(SignedDuration::from_mins(120 - i as i64)),
            true,
        )
        .await;
    }
    run(&client, ns, "ci-running-a", "Running", None, true).await;
    run(&client, ns, "ci-running-b", "", None, true).await;
    run(
        &client,
        ns,
        "foreign-old",
        "Succeeded",
        Some(SignedDuration::from_hours(48)),
        false,
    )
    .await;
    let berth = Berth::new(
        &berth_ns.name,
        &mapping(&format!(
            "  - name: keep-five\n    schedule: \"@hourly\"\n    namespace: {ns}\n    keepLast: 5\n"
        )),
    );

    let oldest: Vec<String> = (0..7).map(|i| format!("ci-{i:02}")).collect();
    let out = berth.run(&["cleanup", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    for name in &oldest {
        assert!(
            stdout.contains(&format!("would delete {ns}/{name}:")),
            "{name}: {stdout}"
        );
    }
    assert_eq!(stdout.matches("would delete ").count(), 7 + 1, "{stdout}"); // + the summary line
    assert_eq!(
        workflows(&client, ns).await.len(),
        15,
        "a dry run deletes nothing"
    );

    let out = berth.run(&["cleanup", "keep-five"]);
    assert!(out.status.success(), "{}", text(&out));
    let left = runs_left(&client, ns, 8).await.expect("7 runs deleted");
    let mut expected: Vec<String> = (7..12).map(|i| format!("ci-{i:02}")).collect();
    expected.extend(["ci-running-a", "ci-running-b", "foreign-old"].map(String::from));
    expected.sort();
    assert_eq!(left, expected);

    // recorded for `berth status`
    let out = berth.run(&["status"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("keep-five"))
        .unwrap_or_default();
    assert!(row.contains("deleted 7 of 12 finished runs"), "{stdout}");
}

#[tokio::test]
async fn older_than_deletes_runs_finished_before_the_limit() {
    let (client, berth_ns, wf_ns) = setup().await;
    let ns = &wf_ns.name;
    run(
        &client,
        ns,
        "two-hours",
        "Succeeded",
        Some(SignedDuration::from_hours(2)),
        true,
    )
    .await;
    run(
        &client,
        ns,
        "ninety-minutes",
        "Failed",
        Some(SignedDuration::from_mins(90)),
        true,
    )
    .await;
    run(
        &client,
        ns,
        "ten-minutes",
        "Succeeded",
        Some(SignedDuration::from_mins(10)),
        true,
    )
    .await;
    run(&client, ns, "still-running", "Running", None, true).await;
    let berth = Berth::new(
        &berth_ns.name,
        &mapping(&format!(
            "  - name: hourly\n    schedule: \"0 * * * *\"\n    namespace: {ns}\n    olderThan: 1h\n"
        )),
    );
    let out = berth.run(&["cleanup"]);
    assert!(out.status.success(), "{}", text(&out));
    let left = runs_left(&client, ns, 2).await;
    assert_eq!(
        left,
        Some(vec!["still-running".to_owned(), "ten-minutes".to_owned()])
    );
}

#[tokio::test]
async fn a_two_second_schedule_fires_in_berth_run() {
    let (client, berth_ns, wf_ns) = setup().await;
    let ns = &wf_ns.name;
    let berth = Berth::new(
        &berth_ns.name,
        &mapping(&format!(
            "  - name: fast\n    schedule: \"*/2 * * * * *\"\n    namespace: {ns}\n    keepLast: 1\n"
        )),
    );
    run(
        &client,
        ns,
        "first",
        "Succeeded",
        Some(SignedDuration::from_mins(5)),
        true,
    )
    .await;
    run(&client, ns, "second", "Running", None, true).await;
    let _agent = berth.agent().0;
    // nothing eligible yet: one finished run is within keepLast, as the rule's first run
    // records
    let records: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), &berth_ns.name);
    let ran = common::eventually(Duration::from_secs(20), || async {
        let cm = records.get_opt("berth-cleanup-fast").await.ok()??;
        let message = cm.metadata.annotations?.get("berth.dev/message")?.clone();
        message
            .contains("deleted 0 of 1 finished runs")
            .then_some(())
    })
    .await;
    assert!(ran.is_some(), "the rule did not run");
    assert_eq!(workflows(&client, ns).await.len(), 2);
    // the second run finishes: now the older one is beyond keepLast
    common::finish_pods(&client, ns, "second").await;
    let left = runs_left(&client, ns, 1).await;
    assert_eq!(left, Some(vec!["second".to_owned()]));
}

#[tokio::test]
async fn a_run_held_by_a_finalizer_is_reported_not_retried() {
    let (client, berth_ns, wf_ns) = setup().await;
    let ns = &wf_ns.name;
    run(
        &client,
        ns,
        "held",
        "Succeeded",
        Some(SignedDuration::from_hours(3)),
        true,
    )
    .await;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &workflow_resource());
    // a finalizer nobody releases (Argo's controller releases its own artifact-gc finalizer
    // once GC ran: see the next test)
    let finalizer = json!({"metadata": {"finalizers": ["archive.example.com/hold"]}});
    api.patch("held", &PatchParams::default(), &Patch::Merge(&finalizer))
        .await
        .expect("add finalizer");
    let berth = Berth::new(
        &berth_ns.name,
        &mapping(&format!(
            "  - name: old\n    schedule: \"@daily\"\n    namespace: {ns}\n    olderThan: 1h\n"
        )),
    );
    let out = berth.run(&["cleanup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("stuck in deletion {ns}/held")),
        "{}",
        text(&out)
    );
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), &berth_ns.name);
    let cm = cms.get("berth-cleanup-old").await.expect("status");
    let a = cm.metadata.annotations.unwrap_or_default();
    assert_eq!(a["berth.dev/status"], "Failed");
    assert!(
        a["berth.dev/message"].contains("stuck in deletion"),
        "{}",
        a["berth.dev/message"]
    );
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(client.clone(), &berth_ns.name);
    let stuck: Vec<_> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("CleanupStuck"))
        .collect();
    assert_eq!(stuck.len(), 1);
    // the next run reports it again but does not delete it again, nor emit a second Event
    let out = berth.run(&["cleanup"]);
    let again = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!again.contains(&format!("old: deleted {ns}/")), "{again}");
    assert!(
        again.contains("deleted 0 of 1 finished runs; 1 stuck"),
        "{again}"
    );
    let stuck_events = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("CleanupStuck"))
        .count();
    assert_eq!(stuck_events, 1);
    // release it so the namespace can go
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove finalizer");
}

/// A pipeline's Workflow with an artifact GC strategy and an artifact: Argo's controller holds
/// it with its finalizer after it finishes, until cleanup deletes it; then the controller runs
/// its GC pod and releases it. The test reports the step's artifact as Argo's executor does (a
/// WorkflowTaskResult); KWOK runs the GC pod.
#[tokio::test]
async fn a_run_with_artifact_gc_keeps_the_controllers_finalizer_until_cleanup_deletes_it() {
    let (client, berth_ns, wf_ns) = setup().await;
    let ns = &wf_ns.name;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &workflow_resource());
    let s3 = json!({"endpoint": "127.0.0.1:9", "bucket": "runs", "key": "with-gc/report", "insecure": true});
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "with-gc", "annotations": {"berth.dev/branch": "main"},
                     "labels": {"app.kubernetes.io/managed-by": "berth", "berth.dev/pipeline": "web-ci",
                                "berth.dev/branch": "main"}},
        "spec": {
            "entrypoint": "main",
            "artifactGC": {"strategy": "OnWorkflowDeletion", "forceFinalizerRemoval": true},
            "templates": [{"name": "main", "container": {"image": "alpine"},
                "outputs": {"artifacts": [{"name": "report", "path": "/tmp/report", "s3": s3}]}}]
        },
    }))
    .expect("workflow");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create run");
    // the executor's report of the step's artifact, once the step exists
    let node = common::eventually(Duration::from_secs(30), || async {
        let w = api.get("with-gc").await.ok()?;
        w.data["status"]["nodes"]
            .as_object()?
            .values()
            .find(|n| n["type"] == "Pod")
            .and_then(|n| n["id"].as_str().map(str::to_owned))
    })
    .await
    .expect("the step started");
    common::report_outputs(
        &client,
        ns,
        "with-gc",
        &node,
        json!({"artifacts": [{"name": "report", "path": "/tmp/report", "s3": s3}]}),
    )
    .await;
    let done = common::workflow_phase(&client, ns, "with-gc", "Succeeded").await;
    let finalizers = |w: &DynamicObject| w.metadata.finalizers.clone().unwrap_or_default();
    assert!(
        finalizers(&done).contains(&"workflows.argoproj.io/artifact-gc".to_owned()),
        "{:?}",
        done.metadata
    );
    // finished, it stays held: nothing but a deletion starts the controller's GC
    let held = api.get("with-gc").await.expect("the run");
    assert!(
        finalizers(&held).contains(&"workflows.argoproj.io/artifact-gc".to_owned()),
        "{:?}",
        held.metadata
    );

    let berth = Berth::new(
        &berth_ns.name,
        &mapping(&format!(
            "  - name: all\n    schedule: \"@daily\"\n    namespace: {ns}\n    keepLast: 0\n"
        )),
    );
    let out = berth.run(&["cleanup"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("deleted {ns}/with-gc")),
        "{}",
        text(&out)
    );
    let gone = runs_left(&client, ns, 0).await;
    assert_eq!(gone, Some(vec![]), "the controller released its finalizer");
}

#[tokio::test]
async fn an_invalid_schedule_is_a_validation_error_naming_the_rule() {
    let berth = Berth::new(
        "unused",
        &mapping("  - name: broken-rule\n    schedule: \"every tuesday\"\n    keepLast: 3\n"),
    );
    let out = berth.run(&["validate"]);
    // a broken mapping file is a configuration error: exit 2, as for every verb
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("berth.yaml:5:15: cleanup rule \"broken-rule\": invalid schedule"),
        "{stderr}"
    );
    let out = berth.run(&["cleanup"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
