//! Hooks as Argo CD users write them, on the real API server (its job controller makes the
//! pods; the tests play the kubelet and end them): `generateName` hooks, Helm's hook
//! annotations, and Kustomize's and Helm's own files refused with what to do.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};

use common::{App, Berth, ChildGuard, eventually, text};

/// `berth sync` running in the background.
fn sync_in_background(berth: &Berth) -> ChildGuard {
    let child = berth
        .command(&["sync"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("berth sync starts");
    ChildGuard(child)
}

/// Waits for the background sync to end; its exit code.
async fn finished(mut pass: ChildGuard) -> Option<i32> {
    tokio::task::spawn_blocking(move || pass.0.wait().expect("berth sync ends").code())
        .await
        .expect("joined")
}

/// The Jobs of `ns` with `selector`, by name.
async fn jobs(client: &kube::Client, ns: &str, selector: &str) -> BTreeMap<String, Job> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .expect("jobs");
    list.items
        .into_iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .map(|j| (j.metadata.name.clone().unwrap_or_default(), j))
        .collect()
}

/// Waits for the Job `name`'s pod and ends it `Succeeded`, as a kubelet would.
async fn succeed(client: &kube::Client, ns: &str, job: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = eventually(Duration::from_secs(60), || async {
        let list = pods
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .ok()?;
        list.items.into_iter().next()
    })
    .await
    .unwrap_or_else(|| panic!("no pod of Job {job}"));
    let name = pod.metadata.name.expect("name");
    let status = serde_json::json!({"status": {"phase": "Succeeded"}});
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("pod status");
}

fn job(metadata: &str) -> String {
    format!(
        "apiVersion: batch/v1
kind: Job
metadata:
{metadata}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: main, image: alpine}}]
"
    )
}

fn config_map(value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\ndata: {{value: \"{value}\"}}\n"
    )
}

#[tokio::test]
async fn a_generate_name_hook_runs_anew_each_revision_and_only_the_newest_run_remains() {
    let app = App::new("").await;
    let ns = &app.app_ns.name;
    let hook = job("  generateName: schema-migrate-
  annotations:
    argocd.argoproj.io/hook: PreSync
    argocd.argoproj.io/hook-delete-policy: BeforeHookCreation");
    app.repo
        .write("app/migrate.yaml", &hook)
        .write("app/settings.yaml", &config_map("1"));
    let first = app.repo.commit("v1");
    let pass = sync_in_background(&app.berth);
    let selector = "berth.dev/sync=app,berth.dev/hook=schema-migrate";
    let run = eventually(Duration::from_secs(60), || async {
        jobs(&app.client, ns, selector).await.into_iter().next()
    })
    .await
    .expect("the hook's first run");
    assert!(run.0.starts_with("schema-migrate-") && run.0.len() > "schema-migrate-".len());
    let labels = run.1.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["berth.dev/revision"], first);
    let cms: Api<ConfigMap> = Api::namespaced(app.client.clone(), ns);
    assert!(
        cms.get_opt("settings").await.expect("read").is_none(),
        "the sync's objects were applied before its PreSync hook finished"
    );
    succeed(&app.client, ns, &run.0).await;
    assert_eq!(finished(pass).await, Some(0));
    assert!(cms.get_opt("settings").await.expect("read").is_some());

    // a new revision: a new run, and the earlier one deleted before it is created
    app.repo.write("app/settings.yaml", &config_map("2"));
    let second = app.repo.commit("v2");
    let pass = sync_in_background(&app.berth);
    let newer = eventually(Duration::from_secs(60), || async {
        let all = jobs(&app.client, ns, selector).await;
        all.into_iter().find(|(_, j)| {
            j.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l["berth.dev/revision"] == second)
        })
    })
    .await
    .expect("the hook's second run");
    assert_ne!(newer.0, run.0, "each revision runs a new Job");
    succeed(&app.client, ns, &newer.0).await;
    assert_eq!(finished(pass).await, Some(0));
    let left = jobs(&app.client, ns, selector).await;
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        vec![&newer.0],
        "only the newest run remains"
    );
    // hooks are never in the inventory
    let record = common::status(&app.client, &app.berth_ns.name, "app").await;
    let keys: Vec<String> = record.data.unwrap_or_default().into_keys().collect();
    assert!(keys.iter().all(|k| !k.contains("Job")), "{keys:?}");
}

#[tokio::test]
async fn helm_hooks_run_by_weight_before_the_objects_and_are_never_pruned() {
    let app = App::new("").await;
    let ns = &app.app_ns.name;
    let helm = |name: &str, weight: &str, policy: &str| {
        job(&format!(
            "  name: {name}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: \"{weight}\"
    helm.sh/hook-delete-policy: {policy}"
        ))
    };
    let replica_set = |image: &str| {
        format!(
            "apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: web}}
spec:
  replicas: 0
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: {image}}}]
"
        )
    };
    // one file: the later-written hook has the lower weight and runs first
    let all = |image: &str| {
        format!(
            "{}---\n{}---\n{}",
            helm("second", "-1", "before-hook-creation"),
            helm("first", "-2", "before-hook-creation"),
            replica_set(image)
        )
    };
    app.repo.write("app/all.yaml", &all("nginx:1"));
    app.repo.commit("v1");
    let pass = sync_in_background(&app.berth);
    let all_jobs = || jobs(&app.client, ns, "berth.dev/sync=app");
    let rs: Api<ReplicaSet> = Api::namespaced(app.client.clone(), ns);
    let first = eventually(Duration::from_secs(60), || async {
        all_jobs().await.remove("first")
    })
    .await
    .expect("the weight -2 hook");
    assert!(
        !all_jobs().await.contains_key("second"),
        "weight -1 ran before -2"
    );
    assert!(
        rs.get_opt("web").await.expect("read").is_none(),
        "applied before the hooks"
    );
    succeed(&app.client, ns, "first").await;
    let second = eventually(Duration::from_secs(60), || async {
        all_jobs().await.remove("second")
    })
    .await
    .expect("the weight -1 hook");
    assert!(
        rs.get_opt("web").await.expect("read").is_none(),
        "applied before the hooks"
    );
    succeed(&app.client, ns, "second").await;
    assert_eq!(finished(pass).await, Some(0));
    assert!(rs.get_opt("web").await.expect("read").is_some());
    let record = common::status(&app.client, &app.berth_ns.name, "app").await;
    let keys: Vec<String> = record.data.unwrap_or_default().into_keys().collect();
    assert!(keys.iter().any(|k| k.contains("ReplicaSet")), "{keys:?}");
    assert!(keys.iter().all(|k| !k.contains("Job")), "{keys:?}");

    // the next revision replaces the before-hook-creation Jobs
    app.repo.write("app/all.yaml", &all("nginx:2"));
    app.repo.commit("v2");
    let pass = sync_in_background(&app.berth);
    let uid = |j: &Job| j.metadata.uid.clone().unwrap_or_default();
    let replaced = eventually(Duration::from_secs(60), || async {
        all_jobs()
            .await
            .remove("first")
            .filter(|j| uid(j) != uid(&first.clone()))
    })
    .await;
    assert!(
        replaced.is_some(),
        "the before-hook-creation Job was not replaced"
    );
    succeed(&app.client, ns, "first").await;
    eventually(Duration::from_secs(60), || async {
        all_jobs()
            .await
            .remove("second")
            .filter(|j| uid(j) != uid(&second.clone()))
    })
    .await
    .expect("the second hook's new Job");
    succeed(&app.client, ns, "second").await;
    assert_eq!(finished(pass).await, Some(0));

    // hooks that leave git are not pruned
    app.repo.write("app/all.yaml", &replica_set("nginx:2"));
    app.repo.commit("no more hooks");
    common::succeeds(&app.berth, &["sync"], "");
    let left = all_jobs().await;
    assert!(
        left.contains_key("first") && left.contains_key("second"),
        "{:?}",
        left.keys()
    );
}

#[tokio::test]
async fn generate_name_outside_hooks_and_kustomize_files_are_refused_saying_why() {
    let app = App::new("").await;
    app.repo
        .write("app/settings.yaml", &config_map("1"))
        .write("app/job.yaml", &job("  generateName: upgrade-sql-schema-"));
    app.repo.commit("a generateName object that is not a hook");
    let out = app.berth.run(&["sync"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("Job generateName=upgrade-sql-schema-"),
        "{said}"
    );
    assert!(said.contains("make it a hook"), "{said}");

    app.repo.remove("app/job.yaml").write(
        "app/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [settings.yaml]\n",
    );
    app.repo.commit("a kustomization");
    let out = app.berth.run(&["sync"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("app/kustomization.yaml:1: this is Kustomize's file"),
        "{said}"
    );
    assert!(said.contains("render it in a pipeline"), "{said}");

    // excluded, the plain files sync
    let excluded = Berth::new(
        &app.berth_ns.name,
        &common::mapping(
            &app.repo.url(),
            "app",
            "app",
            &app.app_ns.name,
            "    exclude: [kustomization.yaml]\n",
        ),
    );
    common::succeeds(&excluded, &["sync"], "");
}
