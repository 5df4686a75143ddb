//! Pull request latency of `berth run` (README "Performance", P11 and P12) against a real Gitea:
//! a signed `pull_request` delivery (Gitea's shape, for a push to an open pull request) until
//! the run's Workflow exists, and a run's Workflow reaching `Succeeded` (Argo's controller,
//! KWOK ending its pod) until its `success` status is on the commit in Gitea. Run with
//! `cargo bench --bench pull_requests`; it starts a local control plane unless `KUBECONFIG`
//! names a cluster. Prints medians, never asserts.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::Berth;
use common::forge::{SECRET, host};
use kube::api::{Api, DynamicObject, ListParams};

const ROUNDS: usize = 15;

#[tokio::main]
async fn main() {
    let h = host().await;
    let pipelines = "  - name: ci
    repository: web
    namespace: @NS@
    serviceAccount: ci
    branches: [none]
    pullRequests: {branches: [main]}
";
    // no polling: only deliveries start passes
    let provider = "{type: gitea, url: @GITEA@}";
    let mut berth = Berth::new(&h.berth_ns.name, &h.mapping(provider, "0", pipelines));
    berth.env.push(("RUST_LOG".into(), "warn".into()));
    let (_agent, base) = h.agent(&berth);
    let sha = h.push_branch("feature", "src/lib.rs", "// 0\n").await;
    let number = h.open_pull_request("feature");
    let workflows: Api<DynamicObject> = Api::namespaced_with(
        h.client.clone(),
        &h.wf_ns.name,
        &common::workflow_resource(),
    );
    let repository = h.clone_url.clone();
    let deliver = |sha: String| {
        let (base, repository) = (base.clone(), repository.clone());
        tokio::task::spawn_blocking(move || {
            common::gitea_pull_request(&base, &repository, (number, "feature", &sha), SECRET)
        })
    };
    // the first run (the listing at startup may launch it)
    let _ = deliver(sha.clone()).await;
    let (mut launched, mut posted) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let sha = h
            .push_branch("feature", "src/lib.rs", &format!("// {round}\n"))
            .await;
        let start = Instant::now();
        assert_eq!(deliver(sha.clone()).await.expect("delivery"), 202);
        let selector = format!("berth.dev/revision={sha}");
        let run = loop {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "round {round}: no run"
            );
            let list = workflows
                .list(&ListParams::default().labels(&selector))
                .await
                .expect("list");
            if let Some(w) = list.items.into_iter().next() {
                break w;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        launched.push(start.elapsed());
        let name = run.metadata.name.clone().expect("name");
        common::finish_pods(&h.client, &h.wf_ns.name, &name).await;
        let finished = loop {
            let w = workflows.get(&name).await.expect("run");
            if w.data["status"]["phase"] == "Succeeded" {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        loop {
            assert!(
                finished.elapsed() < Duration::from_secs(30),
                "round {round}: no status"
            );
            let statuses = h.gitea.statuses("web", &sha);
            if statuses.iter().any(|s| s.1 == "success") {
                posted.push(finished.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    common::report_latency(
        "P11 pull request delivery -> Workflow created",
        "runs",
        launched,
    );
    common::report_latency(
        "P12 Workflow finished -> success status on the commit",
        "runs",
        posted,
    );
}
