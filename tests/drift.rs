//! Instant drift repair: `berth run` watches what it manages, so a hand edit is seen at once,
//! not at the next interval (an hour here).

mod common;

use std::time::Duration;

use common::{Berth, Repo, client, namespace, status, unique};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
";

fn hourly(url: &str, ns: &str, self_heal: bool) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: Mapping
repositories:
  - name: config
    url: {url}
    branch: main
    interval: 1h
syncs:
  - name: app
    repository: config
    path: app
    namespace: {ns}
    selfHeal: {self_heal}
"
    )
}

async fn replicas(api: &Api<Deployment>) -> Option<i32> {
    api.get_opt("web").await.ok()??.spec?.replicas
}

/// `kubectl scale`: a merge patch of the replicas, as another field manager, which bumps the
/// generation.
async fn scale(api: &Api<Deployment>, to: i32) {
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": to}})),
    )
    .await
    .expect("scaled by hand");
}

/// `berth run` on a repository with one Deployment, once it has applied it and its watch has
/// listed it.
struct Running {
    // the agent stops first (fields drop in order), then its files, then the namespaces
    _agent: common::ChildGuard,
    _berth: Berth,
    _repo: Repo,
    client: kube::Client,
    berth_ns: common::NamespaceGuard,
    _app_ns: common::NamespaceGuard,
    api: Api<Deployment>,
}

impl Running {
    async fn start(self_heal: bool) -> Self {
        let client = client().await;
        let berth_ns = namespace(&client, &unique("berth")).await;
        let app_ns = namespace(&client, &unique("app")).await;
        let repo = Repo::new();
        repo.write("app/web.yaml", WEB);
        repo.commit("web");
        let berth = Berth::new(
            &berth_ns.name,
            &hourly(&repo.url(), &app_ns.name, self_heal),
        );
        let (agent, base) = berth.agent();
        let api: Api<Deployment> = Api::namespaced(client.clone(), &app_ns.name);
        let synced = common::eventually(Duration::from_secs(30), || async {
            (replicas(&api).await == Some(1)).then_some(())
        })
        .await;
        assert!(synced.is_some(), "first pass applied web");
        // the pass hands its inventory to the watches, which export what they have listed
        let watching = common::eventually(Duration::from_secs(30), || {
            let url = format!("{base}/metrics");
            async move {
                let text =
                    tokio::task::spawn_blocking(move || common::http("GET", &url, &[], b"").1)
                        .await
                        .ok()?;
                let seen = common::metric(&text, "berth_watched_objects{repository=\"config\"}");
                (seen >= 1.0).then_some(())
            }
        })
        .await;
        assert!(watching.is_some(), "the drift watch listed web");
        Self {
            _agent: agent,
            _berth: berth,
            _repo: repo,
            client,
            berth_ns,
            _app_ns: app_ns,
            api,
        }
    }
}

#[tokio::test]
async fn a_hand_edit_is_reverted_at_once_with_self_heal() {
    let running = Running::start(true).await;
    let api = &running.api;

    scale(api, 3).await;
    // the interval is an hour: only the drift watch can revert it in this test's minute (how
    // fast it does is benchmark P8's, not this test's)
    let reverted = common::eventually(Duration::from_secs(60), || async {
        (replicas(api).await == Some(1)).then_some(())
    })
    .await;
    assert!(
        reverted.is_some(),
        "scale to 3 was not reverted before the interval"
    );
}

#[tokio::test]
async fn a_hand_edit_shows_out_of_sync_at_once_without_self_heal() {
    let running = Running::start(false).await;
    let (api, client) = (&running.api, &running.client);

    scale(api, 3).await;
    // before the hourly interval: the drift watch re-planned it (latency is benchmark P8's)
    let out_of_sync = common::eventually(Duration::from_secs(60), || async {
        let st = status(client, &running.berth_ns.name, "app").await;
        let a = st.metadata.annotations.unwrap_or_default();
        (a["berth.dev/status"] == "OutOfSync").then_some(())
    })
    .await;
    assert!(out_of_sync.is_some(), "not OutOfSync before the interval");
    assert_eq!(
        replicas(api).await,
        Some(3),
        "without selfHeal the edit stays"
    );
}
