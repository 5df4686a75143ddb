//! The cost of SOPS decryption (README "Performance", P20): `berth sync` of 100 Secrets
//! encrypted by the real SOPS (age keys from the real age-keygen), against the same 100
//! Secrets in plain text, each a first sync into a fresh namespace. And P21: an edit of a
//! `varsFrom` ConfigMap until `berth run` has applied the new value (no commit, no polling). Run with
//! `cargo bench --bench sops`; it starts a local control plane unless `KUBECONFIG` names a
//! cluster. Prints medians, never asserts.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::sops::Sops;
use common::{Berth, Repo, client, namespace, put_secret, unique};

const SECRETS: usize = 100;
const ROUNDS: usize = 5;

fn secret(i: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s-{i:03}\nstringData:\n  password: value-{i:03}-0123456789abcdef\n  user: user-{i:03}\n"
    )
}

/// One first sync of `repo` into a fresh namespace: its wall time.
async fn first_sync(kube: &kube::Client, repo: &Repo, encrypted: bool, sops: &Sops) -> Duration {
    let berth_ns = namespace(kube, &unique("berth")).await;
    let app_ns = namespace(kube, &unique("app")).await;
    let extra = if encrypted {
        put_secret(
            kube,
            &berth_ns.name,
            "sops-keys",
            "bench.agekey",
            &sops.identity,
        )
        .await;
        "    decryption: {provider: sops, secretRef: sops-keys}\n"
    } else {
        ""
    };
    let mapping = common::mapping(&repo.url(), "bench", "secrets", &app_ns.name, extra);
    let mut berth = Berth::new(&berth_ns.name, &mapping);
    berth.env.push(("RUST_LOG".into(), "warn".into()));
    // the mirror is filled first, so both sides time the same work
    let _ = berth.run(&["validate"]);
    let start = Instant::now();
    let out = berth.run(&["sync"]);
    let took = start.elapsed();
    assert!(out.status.success(), "{}", common::text(&out));
    took
}

#[tokio::main]
async fn main() {
    let kube = client().await;
    let sops = Sops::new();
    let plain = Repo::new();
    let encrypted = Repo::new();
    for i in 0..SECRETS {
        let text = secret(i);
        plain.write(&format!("secrets/s-{i:03}.yaml"), &text);
        let name = format!("s-{i:03}.yaml");
        encrypted.write(&format!("secrets/{name}"), &sops.encrypt(&name, &text, &[]));
    }
    plain.commit("plain");
    encrypted.commit("encrypted");
    let (mut p, mut e) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        p.push(first_sync(&kube, &plain, false, &sops).await);
        e.push(first_sync(&kube, &encrypted, true, &sops).await);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64()
    };
    let (p, e) = (median(&mut p), median(&mut e));
    println!(
        "P20 first sync of 100 Secrets: SOPS-encrypted {e:.2} s, plain {p:.2} s, ratio {:.2} (median of {ROUNDS})",
        e / p
    );
    vars_from(&kube).await;
}

/// P21: ten edits of a `varsFrom` ConfigMap, each until the synced object shows the value.
async fn vars_from(kube: &kube::Client) {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams};
    let berth_ns = namespace(kube, &unique("berth")).await;
    let app_ns = namespace(kube, &unique("app")).await;
    let repo = Repo::new();
    repo.write(
        "app/settings.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {}}}\ndata: {{value: \"${{VALUE}}\"}}\n",
            app_ns.name
        ),
    );
    repo.commit("settings");
    let sources: Api<ConfigMap> = Api::namespaced(kube.clone(), &berth_ns.name);
    let params = PatchParams::apply("bench").force();
    let set = |value: String| {
        Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "vars"}, "data": {"VALUE": value}}))
    };
    sources
        .patch("vars", &params, &set("0".into()))
        .await
        .expect("vars");
    let extra = "    varsFrom: [{kind: ConfigMap, name: vars}]\n";
    // interval 0: only the ConfigMap's watch starts the passes measured
    let mapping = common::mapping(&repo.url(), "app", "app", &app_ns.name, extra)
        .replace("interval: 1s", "interval: 0");
    let mut berth = Berth::new(&berth_ns.name, &mapping);
    berth.env.push(("RUST_LOG".into(), "warn".into()));
    let (_agent, _) = berth.agent();
    let synced: Api<ConfigMap> = Api::namespaced(kube.clone(), &app_ns.name);
    let shows = |value: String| {
        let synced = synced.clone();
        async move {
            let start = Instant::now();
            loop {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "{value} never applied"
                );
                let got = synced.get_opt("settings").await.ok().flatten();
                if got
                    .and_then(|c| c.data)
                    .is_some_and(|d| d["value"] == value)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    shows("0".into()).await;
    let mut took = Vec::new();
    for round in 1..=10 {
        let start = Instant::now();
        sources
            .patch("vars", &params, &set(round.to_string()))
            .await
            .expect("vars");
        shows(round.to_string()).await;
        took.push(start.elapsed());
    }
    common::report_latency(
        "P21 varsFrom ConfigMap edited -> new value applied",
        "edits",
        took,
    );
}
