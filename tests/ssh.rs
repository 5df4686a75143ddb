//! Git over ssh, end to end: a repository served by a real OpenSSH server to a key-only user,
//! fetched by berth with a private key and `known_hosts` from a Secret, in both URL forms; a
//! host whose key is not in `known_hosts` is refused.

mod common;

use common::{Berth, Repo, SshServer, client, namespace, text, unique};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

fn mapping(url: &str, namespace: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: config\n    url: \"{url}\"\n    interval: 0\n    auth: {{secretRef: ssh-creds}}\nsyncs:\n  - name: app\n    repository: config\n    path: apps\n    namespace: {namespace}\n"
    )
}

fn config_map(value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  value: \"{value}\"\n"
    )
}

#[tokio::test]
async fn a_sync_over_ssh_applies_its_commit_and_an_unknown_host_is_refused() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app = namespace(&client, &unique("app")).await;
    let repo = Repo::new();
    repo.write("apps/settings.yaml", &config_map("one"));
    repo.commit("one");
    let server = SshServer::start(&repo);
    common::put_secret_data(
        &client,
        &berth_ns.name,
        "ssh-creds",
        &[
            ("identity", &server.identity),
            ("known_hosts", &server.known_hosts),
        ],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &app.name);
    let value = || async {
        cms.get("settings")
            .await
            .ok()
            .and_then(|c| c.data?.get("value").cloned())
    };

    // ssh://
    let berth = Berth::new(&berth_ns.name, &mapping(&server.url, &app.name));
    common::succeeds(&berth, &["sync"], "1 created");
    assert_eq!(value().await.as_deref(), Some("one"));

    // git@host:path, after a new commit
    repo.write("apps/settings.yaml", &config_map("two"));
    repo.commit("two");
    server.push(&repo);
    let scp = Berth::new(&berth_ns.name, &mapping(&server.scp_url, &app.name));
    common::succeeds(&scp, &["sync"], "1 configured");
    assert_eq!(value().await.as_deref(), Some("two"));

    // a host key that is not the one in known_hosts
    let impostor = SshServer::start(&repo);
    let host = server.known_hosts.split_whitespace().next().expect("host");
    let other_host = impostor
        .known_hosts
        .split_whitespace()
        .next()
        .expect("host");
    let wrong = impostor.known_hosts.replacen(other_host, "placeholder", 1);
    let wrong = wrong.replacen("placeholder", other_host, 1);
    let mixed = server.known_hosts.replacen(host, other_host, 1);
    assert_ne!(mixed, wrong, "the two servers have different keys");
    common::put_secret_data(
        &client,
        &berth_ns.name,
        "ssh-creds",
        &[("identity", &server.identity), ("known_hosts", &mixed)],
    )
    .await;
    let refused = Berth::new(&berth_ns.name, &mapping(&impostor.url, &app.name));
    let out = refused.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is not in known_hosts"),
        "{}",
        text(&out)
    );
}
