//! Hostile callers against `berth run`'s webhook receiver: a flood of large unsigned
//! deliveries is refused without parsing, without memory growth and without a single Secret
//! read reaching the API server. In its own test binary, so no other test's Secret reads are
//! counted.

mod common;

use std::time::Duration;

use common::{Berth, Repo, client, http, namespace, unique};

/// Successful GETs of Secrets the API server has served, from its own metrics.
async fn secret_reads(client: &kube::Client) -> f64 {
    let request = ::http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = client
        .request_text(request)
        .await
        .expect("API server metrics");
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| l.contains("resource=\"secrets\"") && l.contains("verb=\"GET\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The peak resident memory of a process, in KiB.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test]
async fn sixteen_unsigned_five_mib_posts_are_refused_cheaply() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    common::put_secret(&client, &berth_ns.name, "hooks", "secret", "flood-s3cret").await;
    let repo = Repo::new();
    repo.write(
        "apps/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {v: \"1\"}\n",
    );
    repo.commit("one");
    let mapping = format!(
        "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: config\n    url: {}\n    interval: 0\n    webhookSecretRef: hooks\nsyncs:\n  - name: app\n    repository: config\n    path: apps\n    namespace: default\n",
        repo.url()
    );
    let berth = Berth::new(&berth_ns.name, &mapping);
    let log = tempfile::NamedTempFile::new().expect("log file");
    let log_file = log.reopen().expect("log");
    let (mut agent, base, _) = berth.agent_with(&[], &[], |cmd| {
        cmd.stderr(log_file);
    });
    let address = base.trim_start_matches("http://").to_owned();
    let ready = common::eventually(Duration::from_secs(20), || async {
        std::net::TcpStream::connect(&address).ok()?;
        (http("GET", &format!("{base}/readyz"), &[], b"").0 == 200).then_some(())
    })
    .await;
    if ready.is_none() {
        let exited = agent.0.try_wait().expect("agent status");
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        panic!("the agent did not become ready (exited: {exited:?}); its log:\n{text}");
    }
    // the secrets are listed once at start: an unsigned delivery gets 401 once they are held
    // (503 before)
    let held = common::eventually(Duration::from_secs(20), || async {
        (http("POST", &format!("{base}/webhooks/github"), &[], b"{}").0 == 401).then_some(())
    })
    .await;
    assert!(held.is_some(), "the webhook secrets were not loaded");
    let reads = secret_reads(&client).await;

    let body = vec![b'{'; 5 * 1024 * 1024 - 1];
    let url = format!("{base}/webhooks/github");
    let posts: Vec<_> = (0..16)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            std::thread::spawn(move || http("POST", &url, &[("X-GitHub-Event", "push")], &body).0)
        })
        .collect();
    let answers: Vec<u16> = posts.into_iter().map(|p| p.join().expect("post")).collect();
    assert!(answers.iter().all(|s| *s == 401), "{answers:?}");

    let rss = peak_rss(agent.0.id());
    assert!(rss < 100 * 1024, "peak RSS {rss} KiB");
    assert_eq!(
        secret_reads(&client).await,
        reads,
        "deliveries read Secrets"
    );
    drop(agent);
    let text = std::fs::read_to_string(log.path()).expect("log");
    assert!(text.contains("webhook delivery"), "{text}");
    assert!(!text.contains('\u{1b}'), "escape codes in a log file");
}
