//! Shipping berth: `deploy/` against a real API server, two replicas with leader election, and
//! JSON logs.

mod common;

use std::time::Duration;

use common::{Berth, Repo, client, namespace, text, unique};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams};
use kube::discovery::Discovery;

/// Every manifest under `deploy/`, recursively.
fn deploy_manifests() -> Vec<serde_json::Value> {
    fn walk(dir: &std::path::Path, out: &mut Vec<serde_json::Value>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("deploy/")
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).expect("read");
                let docs: Vec<serde_json::Value> =
                    serde_saphyr::from_multiple(&text).expect("yaml");
                out.extend(docs);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy"),
        &mut out,
    );
    out
}

#[tokio::test]
async fn deploy_applies_with_server_side_dry_run_and_berth_syncs_its_own_deploy_directory() {
    let client = client().await;
    // the namespaces deploy/ declares exist for real, so its namespaced objects can be dry-run
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for m in deploy_manifests()
        .iter()
        .filter(|m| m["kind"] == "Namespace")
    {
        let name = m["metadata"]["name"].as_str().expect("name").to_owned();
        namespaces
            .patch(&name, &PatchParams::apply("berth-tests"), &Patch::Apply(m))
            .await
            .expect("namespace");
    }
    // one aggregated read: a snapshot, where a group-by-group read can meet a group that
    // another test's CRD is adding or removing at that moment (404)
    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("discovery");
    let manifests = deploy_manifests();
    assert!(manifests.len() >= 10, "{} objects", manifests.len());
    // nothing in deploy/ grants `*` in berth's own namespace
    for m in manifests
        .iter()
        .filter(|m| m["kind"] == "Role" && m["metadata"]["namespace"] == "berth-system")
    {
        let rules = serde_json::to_string(&m["rules"]).expect("rules");
        assert!(
            !rules.contains("\"*\""),
            "{} grants * in berth-system: {rules}",
            m["metadata"]["name"]
        );
    }
    let mut kinds = Vec::new();
    for m in &manifests {
        let dry_run = PatchParams::apply("berth-tests").dry_run();
        kinds.push(common::apply_manifest(&client, &discovery, m, &dry_run).await);
    }
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "Role",
        "Deployment",
        "Service",
        "ConfigMap",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "deploy/ has no {kind}");
    }

    // berth syncs its own deploy/ directory
    let berth_ns = namespace(&client, &unique("berth")).await;
    let repo = Repo::new();
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    for entry in [
        "namespace.yaml",
        "rbac.yaml",
        "mapping.yaml",
        "deployment.yaml",
        "service.yaml",
        "tenant/rbac.yaml",
        "impersonation/rbac.yaml",
    ] {
        repo.write(
            &format!("deploy/{entry}"),
            &std::fs::read_to_string(deploy.join(entry)).expect("read"),
        );
    }
    repo.commit("berth's own install");
    let mapping = format!(
        "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: self\n    url: {}\nsyncs:\n  - name: berth\n    repository: self\n    path: deploy\n",
        repo.url()
    );
    let berth = Berth::new(&berth_ns.name, &mapping);
    common::succeeds(&berth, &["sync"], "Synced");
    let out = berth.run(&["diff"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

async fn holder(client: &kube::Client, ns: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    leases
        .get_opt("berth")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

fn settings(ns: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {ns}}}\ndata: {{value: \"{value}\"}}\n"
    )
}

async fn value(client: &kube::Client, ns: &str) -> Option<String> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    cms.get_opt("settings")
        .await
        .ok()
        .flatten()?
        .data?
        .get("value")
        .cloned()
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_the_standby_takes_over_when_it_dies() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app_ns = unique("app");
    let repo = Repo::new();
    repo.write("app.yaml", &settings(&app_ns, "one"));
    repo.commit("one");
    let mapping = format!(
        "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: config\n    url: {}\n    interval: 1s\nsyncs:\n  - name: app\n    repository: config\n",
        repo.url()
    );
    let berth = Berth::new(&berth_ns.name, &mapping);
    let spawn = || {
        let run = ["--leader-elect", "--lease-duration", "3s"];
        let (child, base, _) = berth.agent_with(&[], &run, |_| {});
        (child, base)
    };
    let mut replicas = vec![spawn(), spawn()];
    let leader = common::eventually(Duration::from_secs(30), || async {
        holder(&client, &berth_ns.name).await
    })
    .await
    .expect("a replica took the lease");
    let synced = common::eventually(Duration::from_secs(30), || async {
        (value(&client, &app_ns).await.as_deref() == Some("one")).then_some(())
    })
    .await;
    assert!(synced.is_some(), "the leader did not sync");

    // exactly one is ready: the holder, whose identity ends in its pid
    let readiness = || {
        replicas
            .iter()
            .map(|(_, base)| common::http("GET", &format!("{base}/readyz"), &[], b"").0)
            .collect::<Vec<u16>>()
    };
    let settled = common::eventually(Duration::from_secs(20), || async {
        let ready = readiness();
        (ready.iter().filter(|s| **s == 200).count() == 1).then_some(())
    })
    .await;
    assert!(settled.is_some(), "readiness {:?}", readiness());
    let ready = readiness();
    let leading: Vec<usize> = ready
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == 200)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(leading.len(), 1, "readiness {ready:?}");
    assert!(ready.contains(&503), "readiness {ready:?}");
    let index = leading[0];
    assert!(
        leader.ends_with(&format!("-{}", replicas[index].0.0.id())),
        "{leader}"
    );
    let status = common::status(&client, &berth_ns.name, "app").await;
    let a = status.metadata.annotations.unwrap_or_default();
    assert_eq!(a["berth.dev/status"], "Synced");

    // the leader dies without releasing the lease; the standby takes over and syncs
    let (mut dead, _) = replicas.remove(index);
    dead.0.kill().expect("SIGKILL");
    dead.0.wait().expect("reaped");
    repo.write("app.yaml", &settings(&app_ns, "two"));
    repo.commit("two");
    let taken = common::eventually(Duration::from_secs(30), || async {
        let h = holder(&client, &berth_ns.name).await?;
        (h != leader).then_some(h)
    })
    .await
    .expect("the standby took the lease");
    assert!(
        taken.ends_with(&format!("-{}", replicas[0].0.0.id())),
        "{taken}"
    );
    let synced = common::eventually(Duration::from_secs(30), || async {
        (value(&client, &app_ns).await.as_deref() == Some("two")).then_some(())
    })
    .await;
    assert!(
        synced.is_some(),
        "the new leader did not sync the next commit"
    );
    assert_eq!(
        common::http("GET", &format!("{}/readyz", replicas[0].1), &[], b"").0,
        200
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_documented_fields() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app_ns = unique("app");
    let repo = Repo::new();
    repo.write("app.yaml", &settings(&app_ns, "json"));
    let sha = repo.commit("json");
    let mapping = format!(
        "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: config\n    url: {}\nsyncs:\n  - name: app\n    repository: config\n",
        repo.url()
    );
    let berth = Berth::new(&berth_ns.name, &mapping);
    let mut cmd = berth.command(&["sync", "--log-format", "json"]);
    cmd.env("RUST_LOG", "berth=debug");
    let out = cmd.output().expect("berth sync");
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(
            l["timestamp"].is_string() && l["level"].is_string() && l["message"].is_string(),
            "{l}"
        );
    }
    let finished = lines
        .iter()
        .find(|l| l["message"] == "sync finished")
        .expect("a sync finished line");
    assert_eq!(finished["sync"], "app");
    assert_eq!(finished["repository"], "config");
    assert_eq!(finished["commit"], sha);
    assert_eq!(finished["status"], "Synced");
    assert!(finished["duration_ms"].is_u64(), "{finished}");
    let fetched = lines
        .iter()
        .find(|l| l["message"] == "fetched")
        .expect("a fetched line");
    assert_eq!(fetched["repository"], "config");
    assert!(fetched["duration_ms"].is_u64());
}

#[tokio::test]
async fn a_fatal_error_is_a_json_line_too() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let repo = Repo::new();
    repo.write("app.yaml", &settings(&unique("app"), "fatal"));
    repo.commit("fatal");
    let mapping = format!(
        "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: config\n    url: {}\nsyncs:\n  - name: app\n    repository: config\n",
        repo.url()
    );
    let berth = Berth::new(&berth_ns.name, &mapping);
    // the address is taken, so `run` cannot listen and ends
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = taken.local_addr().expect("address").to_string();
    let out = berth
        .command(&["--log-format", "json", "run", "--listen", &address])
        .output()
        .expect("berth run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let fatal = lines.last().expect("a line");
    assert_eq!(fatal["level"], "ERROR", "{fatal}");
    let message = fatal["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("cannot listen on {address}")),
        "{message}"
    );
    assert!(fatal["timestamp"].is_string(), "{fatal}");
}
