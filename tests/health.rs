//! Health through the real controllers: the control plane has no kubelet, so the tests set Pod
//! status through the status subresource and the ReplicaSet, Deployment and Job controllers
//! compute the rest. berth must read that status per kind.

mod common;

use std::time::Duration;

use common::{App, Berth, Repo, client, mapping, namespace, status, unique};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

/// The pods of `selector` once the controllers have created `count` of them.
async fn pods(client: &kube::Client, ns: &str, selector: &str, count: usize) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    common::eventually(Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let list = api
                .list(&ListParams::default().labels(selector))
                .await
                .ok()?;
            (list.items.len() >= count).then_some(list.items)
        }
    })
    .await
    .unwrap_or_else(|| panic!("the controllers created {count} pods for {selector}"))
}

/// The status a kubelet reports for a running, ready Pod.
fn ready() -> serde_json::Value {
    json!({"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]})
}

/// The annotations of sync `app`'s status record.
async fn annotations(
    client: &kube::Client,
    berth_ns: &str,
) -> std::collections::BTreeMap<String, String> {
    status(client, berth_ns, "app")
        .await
        .metadata
        .annotations
        .unwrap_or_default()
}

/// Sets a Pod's status as a kubelet would.
async fn set_pod_status(client: &kube::Client, ns: &str, pod: &Pod, status: serde_json::Value) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let name = pod.metadata.name.clone().unwrap_or_default();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .expect("pod status patched");
}

/// The reasons of the Events berth recorded in its namespace, oldest first.
async fn reasons(client: &kube::Client, ns: &str) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ns);
    let mut events = api
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    events.sort_by_key(|e| e.metadata.creation_timestamp.clone());
    events
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

/// The health of one object as the sync's inventory records it (Healthy when not stored).
async fn object_health(client: &kube::Client, berth_ns: &str, key: &str) -> String {
    let status = common::status(client, berth_ns, "app").await;
    let record = status.data.unwrap_or_default()[key].clone();
    let record: serde_json::Value = serde_json::from_str(&record).expect("a JSON record");
    record["health"].as_str().unwrap_or("Healthy").to_owned()
}

/// Syncs until the sync's health is `want`; returns the status annotations then.
async fn sync_until(
    client: &kube::Client,
    berth: &Berth,
    berth_ns: &str,
    want: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut last = String::new();
    for _ in 0..60 {
        let out = berth.run(&["sync"]);
        assert!(out.status.success(), "{}", common::text(&out));
        let a = annotations(client, berth_ns).await;
        last = a["berth.dev/health"].clone();
        if last == want {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("health stayed {last}, never {want}");
}

#[tokio::test]
async fn a_deployment_is_progressing_until_its_pods_are_ready() {
    let App {
        client,
        berth_ns,
        app_ns,
        repo,
        berth,
    } = App::new("").await;
    repo.write(
        "app/web.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
",
    )
    .write(
        "app/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n",
    );
    repo.commit("web");

    common::succeeds(&berth, &["sync"], "2 created");
    let a = annotations(&client, &berth_ns.name).await;
    assert_eq!(a["berth.dev/health"], "Progressing");
    let web = format!("apps_Deployment_{}_web", app_ns.name);
    let settings = format!("_ConfigMap_{}_settings", app_ns.name);
    assert_eq!(
        object_health(&client, &berth_ns.name, &web).await,
        "Progressing"
    );
    assert_eq!(
        object_health(&client, &berth_ns.name, &settings).await,
        "Healthy"
    );

    // the controllers create the pods; with none ready the rollout is still in progress
    let created = pods(&client, &app_ns.name, "app=web", 2).await;
    common::succeeds(&berth, &["sync"], "0 created");
    let a = annotations(&client, &berth_ns.name).await;
    assert_eq!(a["berth.dev/health"], "Progressing");

    // one ready pod of two is not enough
    let ready = ready();
    set_pod_status(&client, &app_ns.name, &created[0], ready.clone()).await;
    // the deployment controller counts it
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &app_ns.name);
    let counted = common::eventually(Duration::from_secs(20), || async {
        let d = deployments.get("web").await.ok()?;
        (d.status?.ready_replicas? == 1).then_some(())
    })
    .await;
    assert!(counted.is_some(), "the ready pod was not counted");
    common::succeeds(&berth, &["sync"], "0 created");
    let a = annotations(&client, &berth_ns.name).await;
    assert_eq!(a["berth.dev/health"], "Progressing");

    set_pod_status(&client, &app_ns.name, &created[1], ready).await;
    let a = sync_until(&client, &berth, &berth_ns.name, "Healthy").await;
    assert_eq!(a["berth.dev/status"], "Synced");
    assert_eq!(
        object_health(&client, &berth_ns.name, &web).await,
        "Healthy"
    );

    let out = berth.run(&["status"]);
    let text = common::text(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("app ") && l.contains("Healthy")),
        "{text}"
    );

    // each transition is an Event; a pass that changes nothing records none
    let health: Vec<_> = reasons(&client, &berth_ns.name)
        .await
        .into_iter()
        .filter(|(r, _)| ["Healthy", "Progressing", "Degraded"].contains(&r.as_str()))
        .collect();
    let order: Vec<_> = health.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(order, ["Progressing", "Healthy"], "{health:?}");
    assert!(health[0].1.contains("Unknown → Progressing"), "{health:?}");
    assert!(health[1].1.contains("Progressing → Healthy"), "{health:?}");
}

#[tokio::test]
async fn a_failed_job_makes_the_sync_degraded_and_says_why() {
    let App {
        client,
        berth_ns,
        app_ns,
        repo,
        berth,
    } = App::new("").await;
    repo.write("app/migrate.yaml", &job("migrate", ""));
    repo.commit("migrate");
    common::succeeds(&berth, &["sync"], "1 created");
    let pod = pods(&client, &app_ns.name, "job-name=migrate", 1).await;
    let failed = json!({"phase": "Failed", "reason": "Error", "containerStatuses": [{
        "name": "migrate", "ready": false, "restartCount": 0, "image": "busybox", "imageID": "",
        "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]});
    set_pod_status(&client, &app_ns.name, &pod[0], failed).await;

    let a = sync_until(&client, &berth, &berth_ns.name, "Degraded").await;
    let message = &a["berth.dev/message"];
    assert!(
        message.contains("Job.batch/migrate") && message.contains("failed"),
        "{message}"
    );
    let events = reasons(&client, &berth_ns.name).await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Degraded" && m.contains("job failed")),
        "{events:?}"
    );

    // the agent exports the health as a gauge, one series per state
    let (_agent, base) = berth.agent();
    let exported = common::eventually(Duration::from_secs(30), || {
        let url = format!("{base}/metrics");
        async move {
            let text = tokio::task::spawn_blocking(move || common::http("GET", &url, &[], b"").1)
                .await
                .ok()?;
            let degraded =
                common::metric(&text, "berth_sync_health{sync=\"app\",health=\"Degraded\"}");
            let healthy =
                common::metric(&text, "berth_sync_health{sync=\"app\",health=\"Healthy\"}");
            (degraded == 1.0 && healthy == 0.0).then_some(())
        }
    })
    .await;
    assert!(exported.is_some(), "berth_sync_health reports Degraded");
}

/// `berth sync` running in the background, its output going to files.
struct Background {
    child: common::ChildGuard,
    dir: tempfile::TempDir,
}

impl Background {
    fn sync(berth: &Berth) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = |name: &str| std::fs::File::create(dir.path().join(name)).expect("log file");
        let child = berth
            .command(&["sync"])
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .expect("berth sync starts");
        Self {
            child: common::ChildGuard(child),
            dir,
        }
    }

    /// How many lines of the pass's log so far contain `needle`.
    fn logged(&self, needle: &str) -> usize {
        std::fs::read_to_string(self.dir.path().join("stderr"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits for the pass to end; its exit code and output.
    async fn finish(mut self) -> (Option<i32>, String) {
        let code = tokio::task::spawn_blocking(move || {
            let status = self.child.0.wait().expect("berth sync ends");
            (status.code(), self)
        })
        .await
        .expect("joined");
        let read =
            |name: &str| std::fs::read_to_string(code.1.dir.path().join(name)).unwrap_or_default();
        (code.0, format!("{}{}", read("stdout"), read("stderr")))
    }
}

fn deployment(name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  annotations: {{{annotations}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: app, image: nginx}}]
"
    )
}

#[tokio::test]
async fn a_wave_is_applied_only_after_the_wave_before_it_is_healthy() {
    let App {
        client,
        berth_ns: _berth_ns,
        app_ns,
        repo,
        berth,
    } = App::new("").await;
    repo.write("app/db.yaml", &deployment("db", ""))
        .write(
            "app/web.yaml",
            &deployment("web", "argocd.argoproj.io/sync-wave: \"1\""),
        )
        .write(
            "app/settings.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n",
        );
    repo.commit("two waves");
    let pass = Background::sync(&berth);

    // wave 0 is applied and rolls out; wave 1 waits for it
    let db = pods(&client, &app_ns.name, "app=db", 1).await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &app_ns.name);
    let configs: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), &app_ns.name);
    assert!(configs.get_opt("settings").await.expect("read").is_some());
    // the pass waits for wave 0 (its log says so), and db cannot be Healthy yet
    let waited = common::eventually(Duration::from_secs(30), || async {
        (pass.logged("wave 1: waiting for") >= 1).then_some(())
    })
    .await;
    assert!(waited.is_some(), "the pass did not wait for wave 0");
    assert!(
        deployments.get_opt("web").await.expect("read").is_none(),
        "wave 1 was applied before wave 0 was Healthy"
    );

    let ready = ready();
    set_pod_status(&client, &app_ns.name, &db[0], ready).await;
    let (code, text) = pass.finish().await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("3 created"), "{text}");
    assert!(deployments.get_opt("web").await.expect("read").is_some());
}

#[tokio::test]
async fn a_failed_wave_stops_the_waves_after_it() {
    let App {
        client,
        berth_ns,
        app_ns,
        repo,
        berth,
    } = App::new("").await;
    repo.write(
        "app/migrate.yaml",
        &job("migrate", "berth.dev/wave: \"-1\""),
    )
    .write("app/web.yaml", &deployment("web", ""));
    repo.commit("migrate first");
    let pass = Background::sync(&berth);
    let pod = pods(&client, &app_ns.name, "job-name=migrate", 1).await;
    let failed = json!({"phase": "Failed", "reason": "Error"});
    set_pod_status(&client, &app_ns.name, &pod[0], failed).await;
    let (code, text) = pass.finish().await;
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("Deployment.apps/web was not applied")
            && text.contains("Job.batch/migrate: job failed"),
        "{text}"
    );
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &app_ns.name);
    assert!(deployments.get_opt("web").await.expect("read").is_none());
    let a = annotations(&client, &berth_ns.name).await;
    assert_eq!(a["berth.dev/status"], "Failed");
}

#[tokio::test]
async fn wait_ends_degraded_when_pods_never_become_ready() {
    let App {
        client,
        berth_ns,
        app_ns,
        repo,
        berth,
    } = App::new("    wait: true\n    timeout: 10s\n").await;
    repo.write("app/web.yaml", &deployment("web", ""));
    repo.commit("web");
    let out = berth.run(&["sync"]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let a = annotations(&client, &berth_ns.name).await;
    assert_eq!(a["berth.dev/health"], "Degraded");
    let message = &a["berth.dev/message"];
    assert!(
        message.contains("not Healthy within 10s")
            && message.contains("Deployment.apps/web")
            && message.contains("replicas"),
        "{message}"
    );
    assert!(text.contains("not Healthy within 10s"), "{text}");

    // once the pod is ready, the next pass waits only as long as that takes
    let created = pods(&client, &app_ns.name, "app=web", 1).await;
    let ready = ready();
    set_pod_status(&client, &app_ns.name, &created[0], ready).await;
    let out = berth.run(&["sync"]);
    assert!(out.status.success(), "{}", common::text(&out));
    let a = annotations(&client, &berth_ns.name).await;
    assert_eq!(a["berth.dev/health"], "Healthy");
}

#[tokio::test]
async fn a_sync_waits_for_the_syncs_it_depends_on() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app_ns = namespace(&client, &unique("app")).await;
    let repo = Repo::new();
    repo.write("app/web.yaml", &deployment("web", "")).write(
        "after/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: after-web}\n",
    );
    repo.commit("two syncs");
    // b is listed first: the order comes from dependsOn, not the file
    let two = mapping(
        &repo.url(),
        "b",
        "after",
        &app_ns.name,
        "    dependsOn: [app]\n",
    ) + &format!(
        "  - name: app\n    repository: config\n    path: app\n    namespace: {}\n",
        app_ns.name
    );
    let berth = Berth::new(&berth_ns.name, &two);
    let out = berth.run(&["sync"]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("waiting for sync \"app\", which is Synced and Progressing"),
        "{text}"
    );
    let configs: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), &app_ns.name);
    assert!(configs.get_opt("after-web").await.expect("read").is_none());

    let created = pods(&client, &app_ns.name, "app=web", 1).await;
    let ready = ready();
    set_pod_status(&client, &app_ns.name, &created[0], ready).await;
    let applied = common::eventually(Duration::from_secs(30), || async {
        let out = berth.run(&["sync"]);
        out.status.success().then_some(())
    })
    .await;
    assert!(applied.is_some(), "b synced once app was Healthy");
    assert!(configs.get_opt("after-web").await.expect("read").is_some());

    let cyclic = two.replace("    path: app\n", "    path: app\n    dependsOn: [b]\n");
    let out = Berth::new(&berth_ns.name, &cyclic).run(&["validate"]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("dependsOn forms a cycle"), "{text}");
}

fn web_with_image(image: &str) -> String {
    deployment("web", "").replace("image: nginx", &format!("image: {image}"))
}

/// A Job of one busybox pod that is never retried, with `annotations` (flow-style pairs).
fn job(name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
  annotations: {{{annotations}}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: {name}, image: busybox}}]
"
    )
}

fn hook_job(name: &str, phase: &str, policy: &str) -> String {
    job(
        name,
        &format!(
            "argocd.argoproj.io/hook: {phase}, argocd.argoproj.io/hook-delete-policy: {policy}"
        ),
    )
}

async fn image_of(client: &kube::Client, ns: &str) -> String {
    let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), ns);
    let d = api.get("web").await.expect("web");
    let spec = d.spec.and_then(|s| s.template.spec).expect("pod spec");
    spec.containers[0].image.clone().unwrap_or_default()
}

#[tokio::test]
async fn a_presync_job_runs_before_the_deployment_changes_and_a_failure_stops_the_pass() {
    let App {
        client,
        berth_ns,
        app_ns,
        repo,
        berth,
    } = App::new("").await;
    repo.write("app/web.yaml", &web_with_image("nginx:1"));
    repo.commit("v1");
    common::succeeds(&berth, &["sync"], "1 created");

    // v2 comes with a migration that must finish first
    repo.write("app/web.yaml", &web_with_image("nginx:2"))
        .write("app/migrate.yaml", &hook_job("migrate", "PreSync", "HookSucceeded"))
        .write(
            "app/on-fail.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sync-failed\n  annotations: {argocd.argoproj.io/hook: SyncFail}\n",
        );
    repo.commit("v2 with a migration");
    let pass = Background::sync(&berth);
    let job = pods(&client, &app_ns.name, "job-name=migrate", 1).await;
    // the pass runs the hook (its log says so) and waits for it
    let running = common::eventually(Duration::from_secs(30), || async {
        (pass.logged("Job.batch/migrate: running") >= 1).then_some(())
    })
    .await;
    assert!(running.is_some(), "the pass did not run the hook");
    assert_eq!(
        image_of(&client, &app_ns.name).await,
        "nginx:1",
        "changed before the hook ran"
    );
    set_pod_status(
        &client,
        &app_ns.name,
        &job[0],
        json!({"phase": "Succeeded"}),
    )
    .await;
    let (code, text) = pass.finish().await;
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(image_of(&client, &app_ns.name).await, "nginx:2");
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &app_ns.name);
    assert!(
        jobs.get_opt("migrate").await.expect("read").is_none(),
        "HookSucceeded deletes the Job"
    );
    let configs: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), &app_ns.name);
    assert!(
        configs
            .get_opt("sync-failed")
            .await
            .expect("read")
            .is_none()
    );

    // v3's migration fails: nothing else is applied, and the SyncFail hook runs
    repo.write("app/web.yaml", &web_with_image("nginx:3"));
    repo.commit("v3 with a failing migration");
    let pass = Background::sync(&berth);
    // the new Job's pod, not the finished one of v2 that garbage collection has yet to remove
    let pending = common::eventually(Duration::from_secs(30), || async {
        pods(&client, &app_ns.name, "job-name=migrate", 1)
            .await
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Succeeded"))
    })
    .await
    .expect("the v3 migration's pod");
    set_pod_status(&client, &app_ns.name, &pending, json!({"phase": "Failed"})).await;
    let (code, text) = pass.finish().await;
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("PreSync hook is Degraded") && text.contains("Job.batch/migrate"),
        "{text}"
    );
    assert_eq!(image_of(&client, &app_ns.name).await, "nginx:2");
    assert!(
        configs
            .get_opt("sync-failed")
            .await
            .expect("read")
            .is_some()
    );
    let a = annotations(&client, &berth_ns.name).await;
    assert_eq!(a["berth.dev/status"], "Failed");
}

#[tokio::test]
async fn a_post_sync_hook_runs_after_the_objects_are_healthy_and_is_never_pruned() {
    let App {
        client,
        berth_ns,
        app_ns,
        repo,
        berth,
    } = App::new("").await;
    repo.write(
        "app/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n",
    )
    .write(
        "app/notify.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notified\n  annotations: {argocd.argoproj.io/hook: PostSync}\n",
    )
    .write(
        "app/skipped.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: skipped\n  annotations: {argocd.argoproj.io/hook: Skip}\n",
    );
    repo.commit("with hooks");
    common::succeeds(&berth, &["sync"], "1 created");
    let configs: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), &app_ns.name);
    assert!(configs.get_opt("notified").await.expect("read").is_some());
    assert!(configs.get_opt("skipped").await.expect("read").is_none());
    let inventory = status(&client, &berth_ns.name, "app")
        .await
        .data
        .unwrap_or_default();
    assert_eq!(
        inventory.len(),
        1,
        "hooks are not synced objects: {inventory:?}"
    );

    repo.remove("app/notify.yaml");
    repo.commit("no more hook");
    common::succeeds(&berth, &["sync"], "0 pruned");
    assert!(configs.get_opt("notified").await.expect("read").is_some());
}

/// The sync's health and revision as its record says, once there is a record.
async fn recorded(client: &kube::Client, berth_ns: &str) -> Option<(String, String)> {
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), berth_ns);
    let a = api
        .get_opt("berth-sync-app")
        .await
        .ok()??
        .metadata
        .annotations?;
    Some((
        a.get("berth.dev/health")?.clone(),
        a.get("berth.dev/revision")?.clone(),
    ))
}

/// Waits until the sync's record and its dashboard page both read `Progressing`.
async fn progressing_shown(client: &kube::Client, berth_ns: &str, admin: &str) {
    let shown = common::eventually(Duration::from_secs(60), || async {
        let (health, _) = recorded(client, berth_ns).await?;
        let url = format!("{admin}/syncs/app");
        let page = tokio::task::spawn_blocking(move || common::http("GET", &url, &[], b"").1)
            .await
            .ok()?;
        let on_page = page.contains("<dt>Health</dt><dd><span class=\"badge busy\">Progressing");
        (health == "Progressing" && on_page).then_some(())
    })
    .await;
    assert!(
        shown.is_some(),
        "the record and the page read Progressing during the wait"
    );
}

/// Waits until the sync is Healthy at `revision`.
async fn healthy_at(client: &kube::Client, berth_ns: &str, revision: &str) {
    let done = common::eventually(Duration::from_secs(60), || async {
        let (health, at) = recorded(client, berth_ns).await?;
        (health == "Healthy" && at == revision).then_some(())
    })
    .await;
    assert!(done.is_some(), "the sync became Healthy at {revision}");
}

/// The pod of Deployment `web` running `image`, once the controllers created it.
async fn pod_with_image(client: &kube::Client, ns: &str, image: &str) -> Pod {
    common::eventually(Duration::from_secs(60), || async {
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        let list = api
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?;
        list.items.into_iter().find(|p| {
            p.spec
                .as_ref()
                .is_some_and(|s| s.containers[0].image.as_deref() == Some(image))
        })
    })
    .await
    .unwrap_or_else(|| panic!("a pod running {image}"))
}

#[tokio::test]
async fn a_waiting_sync_reads_progressing_from_the_apply_until_it_is_healthy() {
    let App {
        client,
        berth_ns,
        app_ns,
        repo,
        berth,
    } = App::new("    wait: true\n    timeout: 300s\n").await;
    repo.write("app/web.yaml", &web_with_image("nginx:1"));
    let first = repo.commit("web");
    let (_agent, _, admin) = berth.agent_with(&[], &[], |_| {});

    // a first sync: Progressing while the pass waits for the pod, whose status only this
    // test sets; Healthy once it is ready
    progressing_shown(&client, &berth_ns.name, &admin).await;
    let pod = pod_with_image(&client, &app_ns.name, "nginx:1").await;
    set_pod_status(&client, &app_ns.name, &pod, ready()).await;
    healthy_at(&client, &berth_ns.name, &first).await;

    // a new revision of a Healthy sync: Progressing again until the new pod is ready
    repo.write("app/web.yaml", &web_with_image("nginx:2"));
    let second = repo.commit("web 2");
    progressing_shown(&client, &berth_ns.name, &admin).await;
    let pod = pod_with_image(&client, &app_ns.name, "nginx:2").await;
    set_pod_status(&client, &app_ns.name, &pod, ready()).await;
    healthy_at(&client, &berth_ns.name, &second).await;
}
