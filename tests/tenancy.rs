//! A config repository can do only what its team may do: berth's own state is out of reach
//! of every sync.

mod common;

use common::{Berth, Repo, client, namespace, text, unique};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;

#[tokio::test]
async fn no_sync_may_declare_berths_secrets_records_or_lease() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    common::put_secret(
        &client,
        &berth_ns.name,
        "git-creds",
        "token",
        "the-real-token",
    )
    .await;
    let repo = Repo::new();
    let ns = &berth_ns.name;
    repo.write(
        "apps/steal.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: git-creds, namespace: {ns}}}\nstringData: {{token: attacker}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: berth-sync-other, namespace: {ns}}}\ndata: {{x: \"1\"}}\n---\napiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: berth, namespace: {ns}}}\nspec: {{holderIdentity: attacker}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: harmless, namespace: {ns}}}\ndata: {{x: \"1\"}}\n"
        ),
    );
    repo.commit("reach for berth's state");
    let mapping = format!(
        "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: config\n    url: {}\n    interval: 0\n    auth: {{secretRef: git-creds}}\nsyncs:\n  - name: web\n    repository: config\n    path: apps\n",
        repo.url()
    );
    let berth = Berth::new(ns, &mapping);
    let out = berth.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    for refused in [
        format!("{ns}/Secret/git-creds"),
        format!("{ns}/ConfigMap/berth-sync-other"),
        format!("{ns}/Lease.coordination.k8s.io/berth"),
    ] {
        assert!(
            stdout.contains(&format!(
                "{refused} was not applied: it is berth's own state"
            )),
            "{refused}: {}",
            text(&out)
        );
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let creds = secrets.get("git-creds").await.expect("the Secret");
    let token = creds.data.unwrap_or_default()["token"].0.clone();
    assert_eq!(
        token, b"the-real-token",
        "the credential Secret was changed"
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    assert!(
        cms.get_opt("berth-sync-other")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        cms.get_opt("harmless").await.expect("get").is_some(),
        "the rest was applied"
    );
}
