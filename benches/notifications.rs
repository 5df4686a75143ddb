//! Notification latency of `berth run` (README "Performance", P17 and P18), to a receiver on
//! loopback: a signed push delivery of a commit that breaks a sync until its `SyncFailed`
//! message arrives (and of the fixing commit until `Recovered`), and a commit that breaks 100
//! syncs at once until each notification got its one message. Run with
//! `cargo bench --bench notifications`; it starts a local control plane unless `KUBECONFIG`
//! names a cluster. Prints medians, never asserts on time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::receiver::Receiver;
use common::{Berth, GitDaemon, Repo, client, namespace, unique};

const SECRET: &str = "bench-secret";
const ROUNDS: usize = 10;
const WIDE_ROUNDS: usize = 3;
const WIDE: usize = 100;

fn settings(ns: &str, name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}}}\n")
}

fn gadget(name: &str) -> String {
    format!("apiVersion: nowhere.example.com/v1\nkind: Gadget\nmetadata: {{name: {name}}}\n")
}

/// The mapping: repository `config` served by `url`, `syncs` (entries), and two notifications.
fn mapping(url: &str, syncs: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: config\n    url: {url}\n    interval: 0\n    webhookSecretRef: hooks\nsyncs:\n{syncs}notifications:\n  - {{name: hook, type: webhook, secretRef: hook-url}}\n  - {{name: chat, type: slack, secretRef: chat-url}}\n"
    )
}

/// Sends GitHub's push delivery for `sha`; returns when it was sent.
async fn deliver(base: &str, clone_url: &str, sha: &str) -> Instant {
    let (base, clone_url, sha) = (base.to_owned(), clone_url.to_owned(), sha.to_owned());
    let start = Instant::now();
    let status =
        tokio::task::spawn_blocking(move || common::github_push(&base, &clone_url, &sha, SECRET))
            .await
            .expect("delivery");
    assert_eq!(status, 202);
    start
}

/// Waits until `berth run` at `base` has synced `sync` once.
async fn synced(base: &str, sync: &str, timeout: Duration) {
    let sample = format!("berth_syncs_total{{sync=\"{sync}\",result=\"synced\"}}");
    let done = common::eventually(timeout, || async {
        let base = base.to_owned();
        let metrics = tokio::task::spawn_blocking(move || common::metrics(&base))
            .await
            .ok()?;
        (common::metric(&metrics, &sample) >= 1.0).then_some(())
    })
    .await;
    assert!(done.is_some(), "berth run did not sync {sync}");
}

/// Waits until `path` got `n` messages; returns when the last of them came.
async fn arrived(rx: &Receiver, path: &str, n: usize) -> Instant {
    let got = rx.wait(path, n).await;
    got[n - 1].at
}

/// A berth with `syncs` of the repository, telling both notifications to `rx`.
async fn agent(
    client: &kube::Client,
    berth_ns: &str,
    rx: &Receiver,
    url: &str,
    syncs: &str,
) -> (Berth, common::ChildGuard, String) {
    common::put_secret(client, berth_ns, "hooks", "secret", SECRET).await;
    let hook = format!("{}/hook", rx.url);
    let chat = format!("{}/chat", rx.url);
    common::put_secret_data(client, berth_ns, "hook-url", &[("url", &hook)]).await;
    common::put_secret_data(client, berth_ns, "chat-url", &[("url", &chat)]).await;
    let mut berth = Berth::new(berth_ns, &mapping(url, syncs));
    berth.env.push(("RUST_LOG".into(), "warn".into()));
    let (agent, base) = berth.agent();
    (berth, agent, base)
}

#[tokio::main]
async fn main() {
    let client = client().await;

    // P17: one sync, broken and fixed in turn
    let berth_ns = namespace(&client, &unique("bench")).await;
    let app_ns = namespace(&client, &unique("benchapp")).await;
    let rx = Receiver::start().await;
    let repo = Repo::new();
    repo.write("deploy/settings.yaml", &settings(&app_ns.name, "settings"));
    repo.commit("settings");
    let server = GitDaemon::start(&repo);
    let syncs = "  - {name: app, repository: config, path: deploy}\n";
    let (_berth, first, base) = agent(&client, &berth_ns.name, &rx, &server.url, syncs).await;
    synced(&base, "app", Duration::from_secs(60)).await;
    let (mut failed, mut recovered) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let broken = round % 2 == 0;
        if broken {
            repo.write("deploy/gadget.yaml", &gadget(&format!("g{round}")));
        } else {
            repo.remove("deploy/gadget.yaml");
        }
        let sha = repo.commit(&format!("round {round}"));
        server.push(&repo);
        let start = deliver(&base, &server.url, &sha).await;
        let at = arrived(&rx, "/hook", round + 1).await;
        let took = at.duration_since(start);
        if broken {
            failed.push(took);
        } else {
            recovered.push(took);
        }
    }
    common::report_latency(
        "P17 push delivery of a breaking commit -> SyncFailed delivered (webhook)",
        "failures",
        failed,
    );
    common::report_latency(
        "    push delivery of the fixing commit -> Recovered delivered",
        "recoveries",
        recovered,
    );
    drop(first);

    // P18: 100 syncs broken by one commit
    let berth_ns = namespace(&client, &unique("bench")).await;
    let rx = Receiver::start().await;
    let repo = Repo::new();
    let mut syncs = String::new();
    for i in 0..WIDE {
        let name = format!("s{i:03}");
        repo.write(
            &format!("apps/{name}/settings.yaml"),
            &settings(&app_ns.name, &name),
        );
        syncs.push_str(&format!(
            "  - {{name: {name}, repository: config, path: apps/{name}}}\n"
        ));
    }
    repo.commit("100 apps");
    let server = GitDaemon::start(&repo);
    let (_berth, _agent, base) = agent(&client, &berth_ns.name, &rx, &server.url, &syncs).await;
    for i in 0..WIDE {
        synced(&base, &format!("s{i:03}"), Duration::from_secs(300)).await;
    }
    let (mut wide, mut messages) = (Vec::new(), Vec::new());
    for round in 0..WIDE_ROUNDS {
        for i in 0..WIDE {
            repo.write(
                &format!("apps/s{i:03}/gadget.yaml"),
                &gadget(&format!("g{round}")),
            );
        }
        let sha = repo.commit(&format!("break {round}"));
        server.push(&repo);
        let before = (rx.delivered("/hook").len(), rx.delivered("/chat").len());
        let start = deliver(&base, &server.url, &sha).await;
        // every failure told: count the events the webhook messages carry for this commit
        let told = common::eventually(Duration::from_secs(120), || async {
            let events: usize = rx.delivered("/hook")[before.0..]
                .iter()
                .map(|g| g.json()["events"].as_array().map_or(0, Vec::len))
                .sum();
            (events >= WIDE).then_some(())
        })
        .await;
        assert!(told.is_some(), "not every failure was told");
        let hook = rx.delivered("/hook")[before.0..].to_vec();
        let chat = arrived(&rx, "/chat", before.1 + 1).await;
        let last = hook.last().expect("a message").at.max(chat);
        wide.push(last.duration_since(start));
        messages.push(hook.len());
        for i in 0..WIDE {
            repo.remove(&format!("apps/s{i:03}/gadget.yaml"));
        }
        let fix = repo.commit(&format!("fix {round}"));
        server.push(&repo);
        let seen = rx.delivered("/hook").len();
        deliver(&base, &server.url, &fix).await;
        arrived(&rx, "/hook", seen + 1).await;
        // the recoveries may come in more than one message; wait until all are told
        common::eventually(Duration::from_secs(120), || async {
            let recovered: usize = rx.delivered("/hook")[seen..]
                .iter()
                .map(|g| g.json()["events"].as_array().map_or(0, Vec::len))
                .sum();
            (recovered >= WIDE).then_some(())
        })
        .await
        .expect("every recovery told");
    }
    common::report_latency(
        "P18 push delivery breaking 100 syncs -> every notification's message delivered",
        "rounds",
        wide,
    );
    println!("    webhook messages per round: {messages:?} (target: 1 per notification)");
}
