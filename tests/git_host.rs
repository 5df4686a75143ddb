//! berth against a real git host: a Gitea server built from its Go module
//! (`tests/control-plane.sh gitea`), which berth fetches from over HTTP with a token and which
//! sends its own push webhooks to berth.

mod common;

use std::time::Duration;

use common::{Berth, Gitea, Repo, client, namespace, put_secret_data, unique};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

const SECRET: &str = "gitea-hook-secret";

fn config_map(value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  value: \"{value}\"\n"
    )
}

#[tokio::test]
async fn a_push_to_gitea_reaches_the_cluster_through_giteas_own_webhook() {
    let client = client().await;
    let gitea = Gitea::start();
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app = namespace(&client, &unique("app")).await;
    let repo = Repo::new();
    repo.write("apps/settings.yaml", &config_map("1"));
    let first = repo.commit("first");
    let clone_url = gitea.create_repo("config");
    gitea.push(&repo, "config");
    // Gitea handles a push in a queue: once its branch shows the commit, that push is done and
    // will not be delivered to the hook made below
    let handled = common::eventually(Duration::from_secs(30), || async {
        let (code, body) = gitea.api(
            "GET",
            "/repos/berth/config/branches/main",
            &serde_json::Value::Null,
        );
        (code == 200 && body.contains(&first)).then_some(())
    })
    .await;
    assert!(handled.is_some(), "Gitea did not take the first push");
    put_secret_data(
        &client,
        &berth_ns.name,
        "gitea-token",
        &[
            ("username", gitea.user.as_str()),
            ("token", gitea.token.as_str()),
        ],
    )
    .await;
    put_secret_data(&client, &berth_ns.name, "hooks", &[("secret", SECRET)]).await;
    // no polling: only a webhook starts a pass after the first
    let mapping = format!(
        "apiVersion: berth.dev/v1alpha1
kind: Mapping
repositories:
  - name: config
    url: {clone_url}
    auth: {{secretRef: gitea-token}}
    webhookSecretRef: hooks
    interval: 0
syncs:
  - name: web
    repository: config
    path: apps
    namespace: {ns}
",
        ns = app.name
    );
    let berth = Berth::new(&berth_ns.name, &mapping);
    let (_agent, base, admin) = berth.agent_with(&[], &[], |_| {});
    // berth answers 401 to an unsigned delivery once it holds the webhook secrets
    let ready = common::eventually(Duration::from_secs(30), || async {
        std::net::TcpStream::connect(base.trim_start_matches("http://")).ok()?;
        let (code, _) = common::http("POST", &format!("{base}/webhooks/gitea"), &[], b"{}");
        (code == 401).then_some(())
    })
    .await;
    assert!(ready.is_some(), "berth did not take webhooks");
    let (code, body) = gitea.api(
        "POST",
        "/repos/berth/config/hooks",
        &serde_json::json!({"type": "gitea", "active": true, "events": ["push"],
            "config": {"url": format!("{base}/webhooks/gitea"), "content_type": "json", "secret": SECRET}}),
    );
    assert_eq!(code, 201, "{body}");

    repo.write("apps/settings.yaml", &config_map("2"));
    let second = repo.commit("second");
    gitea.push(&repo, "config");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &app.name);
    let synced = common::eventually(Duration::from_secs(60), || async {
        let cm = cms.get_opt("settings").await.ok()??;
        (cm.data?.get("value")? == "2").then_some(())
    })
    .await;
    assert!(
        synced.is_some(),
        "the push did not reach the cluster; deliveries: {}",
        common::http("GET", &format!("{admin}/deliveries"), &[], b"").1
    );
    // berth logged Gitea's delivery of that push
    let logged = common::eventually(Duration::from_secs(30), || async {
        let (_, deliveries) = common::http("GET", &format!("{admin}/deliveries"), &[], b"");
        (deliveries.contains("\"gitea\"") && deliveries.contains(&second[..7])).then_some(())
    })
    .await;
    assert!(
        logged.is_some(),
        "{}",
        common::http("GET", &format!("{admin}/deliveries"), &[], b"").1
    );
}
