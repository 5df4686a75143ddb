//! Pull request preview latency of `berth run` (README "Performance", P19) against a real
//! Gitea: a signed `pull_request` delivery (Gitea's shape, for a push to an open pull request)
//! until berth's comment for that head is on the pull request, for a sync of 1000 ConfigMaps
//! whose pull request changes 10. Run with `cargo bench --bench previews`; it starts a local
//! control plane unless `KUBECONFIG` names a cluster. Prints medians, never asserts.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::Berth;
use common::forge::{SECRET, host};

const ROUNDS: usize = 10;
const OBJECTS: usize = 1000;

/// The sync's 1000 ConfigMaps in one file; the first ten carry `changed`.
fn objects(ns: &str, changed: &str) -> String {
    (0..OBJECTS)
        .map(|i| {
            let value = if i < 10 { changed } else { "steady" };
            format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i:04}, namespace: {ns}}}\ndata: {{value: \"{value}\"}}\n"
            )
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let h = host().await;
    let app = common::namespace(&h.client, &common::unique("app")).await;
    h.repo
        .write("deploy/objects.yaml", &objects(&app.name, "0"));
    let first = h.repo.commit("1000 objects");
    h.gitea.push(&h.repo, "web");
    h.gitea.wait_branch("web", "main", &first).await;
    let syncs = format!(
        "syncs:\n  - {{name: web, repository: web, path: deploy, namespace: {}, preview: true}}\n",
        app.name
    );
    // no polling: only deliveries start passes
    let provider = "{type: gitea, url: @GITEA@}";
    let mut berth = Berth::new(&h.berth_ns.name, &h.mapping_with(provider, "0", &syncs));
    berth.env.push(("RUST_LOG".into(), "warn".into()));
    let (_agent, base) = h.agent(&berth);
    // the first pass applies the 1000 objects
    let records: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(h.client.clone(), &h.berth_ns.name);
    let synced = common::eventually(Duration::from_secs(300), || async {
        let cm = records.get_opt("berth-sync-web").await.ok()??;
        let a = cm.metadata.annotations?;
        (a.get("berth.dev/status")? == "Synced").then_some(())
    })
    .await;
    assert!(synced.is_some(), "the sync did not apply its 1000 objects");
    let sha = h
        .push_branch("change", "deploy/objects.yaml", &objects(&app.name, "1"))
        .await;
    let number = h.open_pull_request("change");
    let repository = h.clone_url.clone();
    let deliver = |sha: String| {
        let (base, repository) = (base.clone(), repository.clone());
        tokio::task::spawn_blocking(move || {
            common::gitea_pull_request(&base, &repository, (number, "change", &sha), SECRET)
        })
    };
    let commented = |sha: String| {
        let (gitea, user) = (&h.gitea, h.gitea.user.clone());
        async move {
            let (code, body) = gitea.api(
                "GET",
                &format!("/repos/{user}/web/issues/{number}/comments"),
                &serde_json::Value::Null,
            );
            code == 200 && body.contains(&format!("`{}`", &sha[..7]))
        }
    };
    // the first preview (which posts the comment)
    let _ = deliver(sha.clone()).await;
    let start = Instant::now();
    while !commented(sha.clone()).await {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no first comment"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut told = Vec::new();
    for round in 2..ROUNDS + 2 {
        let sha = h
            .push_branch(
                "change",
                "deploy/objects.yaml",
                &objects(&app.name, &round.to_string()),
            )
            .await;
        // Gitea moves the pull request's head ref in its own queue, before it would deliver
        let head = format!("/repos/{}/web/pulls/{number}", h.gitea.user);
        while !h
            .gitea
            .api("GET", &head, &serde_json::Value::Null)
            .1
            .contains(&sha)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let start = Instant::now();
        assert_eq!(deliver(sha.clone()).await.expect("delivery"), 202);
        while !commented(sha.clone()).await {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "round {round}: no comment"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        told.push(start.elapsed());
    }
    common::report_latency(
        "P19 pull request delivery -> preview comment, 1000 objects, 10 changed",
        "pushes",
        told,
    );
}
