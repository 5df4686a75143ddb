//! Reaction latency of `berth run` (README "Performance", P4 and P5): a signed GitHub push
//! delivery for a commit until the change is live in the API server (a 50-object sync), and
//! until the pipeline's Workflow exists. Run with `cargo bench --bench latency`; it starts a
//! local control plane unless `KUBECONFIG` names a cluster. Prints medians, never asserts.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Berth, GitDaemon, Repo, client, http, namespace, unique};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject};

const ROUNDS: usize = 15;
const SECRET: &str = "bench-secret";

fn objects(ns: &str, round: usize) -> String {
    let mut out = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n");
    for i in 0..49 {
        let value = if i == 0 {
            round.to_string()
        } else {
            "static".to_owned()
        };
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i:02}, namespace: {ns}}}\ndata: {{value: \"{value}\"}}\n"
        ));
    }
    out
}

const WORKFLOW: &str = "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {generateName: ci-}\nspec:\n  entrypoint: main\n  templates: [{name: main, container: {image: alpine}}]\n";

#[tokio::main]
async fn main() {
    let client = client().await;
    common::install_workflow_crds(&client).await;
    let berth_ns = namespace(&client, &unique("bench")).await;
    let wf_ns = namespace(&client, &unique("benchwf")).await;
    let app_ns = unique("benchapp");
    common::put_secret(&client, &berth_ns.name, "hooks", "secret", SECRET).await;
    let repo = Repo::new();
    repo.write("deploy/objects.yaml", &objects(&app_ns, 0))
        .write(".argo/workflow.yaml", WORKFLOW);
    repo.commit("round 0");
    let server = GitDaemon::start(&repo);
    let mapping = format!(
        "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: config\n    url: {}\n    interval: 0\n    webhookSecretRef: hooks\nsyncs:\n  - name: app\n    repository: config\n    path: deploy\npipelines:\n  - name: ci\n    repository: config\n    namespace: {}\n",
        server.url, wf_ns.name
    );
    let mut berth = Berth::new(&berth_ns.name, &mapping);
    berth.env.push(("RUST_LOG".into(), "warn".into()));
    let (_agent, base) = berth.agent();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &app_ns);
    let workflows: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &wf_ns.name, &common::workflow_resource());
    // wait for the first pass
    let deadline = Instant::now() + Duration::from_secs(60);
    while cms.get_opt("cm-00").await.ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "berth run did not sync");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (mut applied, mut launched) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        repo.write("deploy/objects.yaml", &objects(&app_ns, round));
        let sha = repo.commit(&format!("round {round}"));
        server.push(&repo);
        let (url, clone_url, commit) = (base.clone(), server.url.clone(), sha.clone());
        let start = Instant::now();
        let status = tokio::task::spawn_blocking(move || {
            common::github_push(&url, &clone_url, &commit, SECRET)
        })
        .await
        .expect("delivery");
        assert_eq!(status, 202);
        let name = format!("ci-{}", &sha[..7]);
        let (mut cm_done, mut wf_done) = (None, None);
        while cm_done.is_none() || wf_done.is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "round {round} timed out"
            );
            if wf_done.is_none() && workflows.get_opt(&name).await.ok().flatten().is_some() {
                wf_done = Some(start.elapsed());
            }
            if cm_done.is_none() {
                let cm = cms.get("cm-00").await.expect("cm");
                if cm.data.and_then(|d| d.get("value").cloned()) == Some(round.to_string()) {
                    cm_done = Some(start.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        applied.push(cm_done.expect("measured"));
        launched.push(wf_done.expect("measured"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    common::report_latency(
        "P4 webhook delivery -> change applied (50-object sync)",
        "deliveries",
        applied,
    );
    common::report_latency(
        "P5 webhook delivery -> Workflow created",
        "deliveries",
        launched,
    );
    let metrics =
        tokio::task::spawn_blocking(move || http("GET", &format!("{base}/metrics"), &[], b"").1)
            .await
            .expect("metrics");
    let sample = |name: &str| common::metric(&metrics, &format!("{name}{{repository=\"config\"}}"));
    let (sum, count) = (
        sample("berth_git_fetch_duration_seconds_sum"),
        sample("berth_git_fetch_duration_seconds_count"),
    );
    println!(
        "   of which git fetch from the test server (git daemon): mean {:.0} ms over {count} fetches",
        sum / count.max(1.0) * 1000.0
    );
}
