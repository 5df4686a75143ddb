//! A sync's result on its config commit, against a real Gitea (built from its Go module):
//! `pending` when a pass starts applying a new revision, then `success` or `failure` naming the
//! object, with the context `berth/sync/<name>` and a link to the sync's page. Gitea keeps the
//! statuses berth posts; the tests read them back through its API.

mod common;

use common::forge::{EXTERNAL, Host, host};
use common::{Berth, namespace, unique};

/// The mapping: repository `web` on Gitea, polled every second, with syncs `syncs`.
fn mapping(h: &Host, syncs: &str) -> String {
    h.mapping_with(
        "{type: gitea, url: @GITEA@}",
        "1s",
        &format!("syncs:\n{syncs}"),
    )
}

fn config_map(ns: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {ns}}}\ndata: {{value: \"{value}\"}}\n"
    )
}

/// Commits `file` with `content` on main and pushes it; returns the sha.
fn push(h: &Host, file: &str, content: &str, message: &str) -> String {
    h.repo.write(file, content);
    let sha = h.repo.commit(message);
    h.gitea.push(&h.repo, "web");
    sha
}

#[tokio::test]
async fn each_revision_gets_pending_then_success_or_a_failure_naming_the_object() {
    let h = host().await;
    let app = namespace(&h.client, &unique("app")).await;
    let first = push(
        &h,
        "deploy/settings.yaml",
        &config_map(&app.name, "1"),
        "settings",
    );
    let syncs = format!(
        "  - {{name: web, repository: web, path: deploy, namespace: {}}}\n",
        app.name
    );
    let berth = Berth::new(&h.berth_ns.name, &mapping(&h, &syncs));
    let (agent, _) = h.agent(&berth);

    let posted = h.statuses(&first, &["pending", "success"]).await;
    for (context, _, _, url) in &posted {
        assert_eq!(context, "berth/sync/web");
        assert_eq!(url, &format!("{EXTERNAL}/syncs/web"));
    }

    // an object no API serves fails its sync: the failure names it
    let broken = push(
        &h,
        "deploy/gadget.yaml",
        "apiVersion: nowhere.example.com/v1\nkind: Gadget\nmetadata: {name: sprocket}\n",
        "a gadget",
    );
    let failed = h.statuses(&broken, &["pending", "failure"]).await;
    assert!(
        failed[1].2.contains("Gadget") && failed[1].2.contains("sprocket"),
        "{failed:?}"
    );

    // SIGKILL before the fix: the new agent posts nothing twice on the commits already told
    drop(agent);
    let (_agent, _) = h.agent(&berth);
    h.repo.remove("deploy/gadget.yaml");
    let fixed = push(
        &h,
        "deploy/settings.yaml",
        &config_map(&app.name, "2"),
        "fix",
    );
    h.statuses(&fixed, &["pending", "success"]).await;
    assert_eq!(
        h.gitea.statuses("web", &broken).len(),
        2,
        "the broken commit was told once"
    );
    assert_eq!(
        h.gitea.statuses("web", &first).len(),
        2,
        "the first commit was told once"
    );
}

#[tokio::test]
async fn a_wait_sync_is_pending_until_healthy_and_fails_when_it_never_is() {
    let h = host().await;
    let app = namespace(&h.client, &unique("app")).await;
    // a Job whose pod runs for an hour: Progressing until the sync's timeout
    let job = format!(
        "apiVersion: batch/v1
kind: Job
metadata: {{name: slow, namespace: {ns}}}
spec:
  template:
    metadata:
      annotations: {{pod-complete.stage.kwok.x-k8s.io/delay: 1h}}
    spec:
      restartPolicy: Never
      containers: [{{name: main, image: alpine}}]
",
        ns = app.name
    );
    let sha = push(&h, "slow/job.yaml", &job, "a slow job");
    let syncs = format!(
        "  - {{name: slow, repository: web, path: slow, namespace: {}, wait: true, timeout: 20s}}\n",
        app.name
    );
    let berth = Berth::new(&h.berth_ns.name, &mapping(&h, &syncs));
    let (_agent, _) = h.agent(&berth);

    // pending while the sync waits (its record reads Progressing meanwhile) ...
    h.statuses(&sha, &["pending"]).await;
    let progressing = common::eventually(std::time::Duration::from_secs(30), || async {
        let records: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(h.client.clone(), &h.berth_ns.name);
        let cm = records.get_opt("berth-sync-slow").await.ok()??;
        let health = cm
            .metadata
            .annotations
            .unwrap_or_default()
            .get("berth.dev/health")
            .cloned();
        (health.as_deref() == Some("Progressing")).then_some(())
    })
    .await;
    assert!(progressing.is_some(), "the sync waits, Progressing");
    assert_eq!(
        h.gitea.statuses("web", &sha).len(),
        1,
        "no success while it is not Healthy"
    );
    // ... and a failure once the wait gives up
    let failed = h.statuses(&sha, &["pending", "failure"]).await;
    assert!(failed[1].2.contains("slow"), "{failed:?}");
}
