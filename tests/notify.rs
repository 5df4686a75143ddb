//! Notifications, as a team receives them: Slack, Teams and the plain webhook go to a receiver on
//! loopback that records every request and checks its shape and signature; Alertmanager is the
//! real one, built from its Go module, read back through its API. The syncs fail and recover
//! on the real API server; berth is killed, restarted and replaced by a standby on the way,
//! and must tell each change exactly once.

mod common;

use std::time::Duration;

use common::receiver::{Answer, Got, Receiver};
use common::{App, Berth, ChildGuard, metrics, put_secret_data};
use serde_json::Value;

const SECRET: &str = "hook-signing-secret";
/// The admin listener's token, for asking a pass now.
const TOKEN: &str = "let-me-act";

fn settings(ns: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {ns}}}\ndata: {{value: \"{value}\"}}\n"
    )
}

/// An object no API serves: it fails its sync, naming it.
const GADGET: &str =
    "apiVersion: nowhere.example.com/v1\nkind: Gadget\nmetadata: {name: sprocket}\n";

/// A notification entry of `type`, reading Secret `secret`, with `more` fields.
fn notification(name: &str, kind: &str, secret: &str, more: &str) -> String {
    format!("  - {{name: {name}, type: {kind}, secretRef: {secret}{more}}}\n")
}

/// The Secret `hook-url` of the `hook` notification: the receiver's `/hook`, signed with
/// [`SECRET`].
async fn hook_secret(app: &App, rx: &Receiver) {
    let url = format!("{}/hook", rx.url);
    put_secret_data(
        &app.client,
        &app.berth_ns.name,
        "hook-url",
        &[("url", &url), ("secret", SECRET)],
    )
    .await;
}

/// Asks the agent to fetch and pass now (a standby may refuse; its passes come once it leads).
fn refresh(admin: &str) {
    if std::net::TcpStream::connect(admin.trim_start_matches("http://")).is_err() {
        return;
    }
    common::http(
        "POST",
        &format!("{admin}/actions/repositories/config/refresh"),
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        b"",
    );
}

/// Waits until notification `name`'s record holds a delivery: what the sink accepted is
/// remembered (a leader killed in the moment between the two would send it again).
async fn remembered(client: &kube::Client, ns: &str, name: &str) {
    let records: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), ns);
    let record = format!("berth-outbox-notify-{name}");
    let found = common::eventually(Duration::from_secs(30), || async {
        let cm = records.get_opt(&record).await.ok()??;
        let at = cm.metadata.annotations?.get("berth.dev/last-sync")?.clone();
        (!at.is_empty()).then_some(())
    })
    .await;
    assert!(found.is_some(), "{record} remembers the delivery");
}

/// Waits until the agent has counted `n` passes of `sync` that came to `result`, asking for
/// passes meanwhile.
async fn passes(base: &str, admin: &str, sync: &str, result: &str, n: f64) {
    let sample = format!("berth_syncs_total{{sync=\"{sync}\",result=\"{result}\"}}");
    let done = common::eventually(Duration::from_secs(120), || async {
        let seen = common::metric(&metrics(base), &sample);
        if seen >= n {
            return Some(());
        }
        refresh(admin);
        None
    })
    .await;
    assert!(done.is_some(), "{sample} < {n}: {}", metrics(base));
}

/// Starts `berth run` with the admin token and `--external-url`.
fn agent(berth: &Berth, run: &[&str]) -> (ChildGuard, String, String) {
    let mut args = vec![
        "--admin-token",
        TOKEN,
        "--external-url",
        "https://berth.example.com",
    ];
    args.extend(run);
    berth.agent_with(&[], &args, |_| {})
}

/// The events a webhook message carries, as (event, subject).
fn events(body: &Value) -> Vec<(String, String)> {
    body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or_default().to_owned(),
                e["subject"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Checks a webhook message: its fields, and its signature against the body.
fn check_webhook(got: &Got, event: &str) -> Value {
    let body = got.json();
    for key in ["event", "subject", "revision", "message", "url", "time"] {
        assert!(body.get(key).is_some(), "no {key} in {body}");
    }
    assert_eq!(body["event"], event, "{body}");
    assert_eq!(
        got.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let signature = got
        .headers
        .get("x-berth-signature")
        .expect("a signed message");
    assert_eq!(
        signature,
        &berth::webhook::sign(SECRET.as_bytes(), &got.body),
        "the signature verifies"
    );
    body
}

/// Checks a Slack message is Block Kit as an incoming webhook takes it.
fn check_slack(got: &Got, event: &str, needle: &str) {
    let body = got.json();
    assert!(body["text"].as_str().is_some(), "a fallback text: {body}");
    let blocks = body["blocks"].as_array().expect("blocks");
    assert!(!blocks.is_empty() && blocks.len() <= 50, "{body}");
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert!(
        blocks[0]["text"]["text"].as_str().expect("header").len() <= 150,
        "{body}"
    );
    for b in &blocks[1..] {
        if b["type"] == "section" {
            assert_eq!(b["text"]["type"], "mrkdwn");
            assert!(b["text"]["text"].as_str().expect("text").len() <= 3000);
        }
    }
    let text = body.to_string();
    assert!(text.contains(event) && text.contains(needle), "{body}");
    assert!(
        text.contains("https://berth.example.com/syncs/app"),
        "a link to the sync's page: {body}"
    );
}

/// Checks a Teams message is a message with one Adaptive Card, as a Workflows webhook takes it.
fn check_teams(got: &Got, event: &str, needle: &str) {
    let body = got.json();
    assert_eq!(body["type"], "message");
    let attachments = body["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 1);
    assert_eq!(
        attachments[0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachments[0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert!(card["version"].as_str().is_some(), "{card}");
    let blocks = card["body"].as_array().expect("card body");
    assert!(
        blocks
            .iter()
            .all(|b| b["type"] == "TextBlock" && b["text"].is_string()),
        "{card}"
    );
    let text = card.to_string();
    assert!(text.contains(event) && text.contains(needle), "{card}");
}

/// A sync that fails over ten passes and a SIGKILL of berth tells each sink once, then once
/// that it recovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_told_once_across_passes_and_a_restart_then_its_recovery_once() {
    let rx = Receiver::start().await;
    let extra = format!(
        "notifications:\n{}{}{}",
        notification("chat", "slack", "slack-url", ""),
        notification("team", "teams", "teams-url", ""),
        notification(
            "hook",
            "webhook",
            "hook-url",
            ", on: [SyncFailed, Recovered]"
        ),
    );
    let app = App::new(&extra).await;
    let ns = &app.berth_ns.name;
    for (secret, path) in [
        ("slack-url", "/slack"),
        ("teams-url", "/teams"),
        ("hook-url", "/hook"),
    ] {
        let url = format!("{}{path}", rx.url);
        let mut data = vec![("url", url.as_str())];
        if path == "/hook" {
            data.push(("secret", SECRET));
        }
        put_secret_data(&app.client, ns, secret, &data).await;
    }
    app.repo
        .write("app/settings.yaml", &settings(&app.app_ns.name, "1"));
    app.repo.commit("settings");
    // berth validate reads each notification's Secret, and never shows what it holds
    let out = app.berth.run(&["validate"]);
    let checked = common::text(&out);
    assert!(out.status.success(), "{checked}");
    assert!(
        checked.contains("notification hook (webhook): on SyncFailed, Recovered")
            && checked.contains("signed"),
        "{checked}"
    );
    assert!(
        !checked.contains(&rx.url),
        "validate shows no sink URL: {checked}"
    );
    let (agent1, base, admin) = agent(&app.berth, &[]);
    passes(&base, &admin, "app", "synced", 1.0).await;

    app.repo.write("app/gadget.yaml", GADGET);
    let broken = app.repo.commit("a gadget");
    let slack = rx.wait("/slack", 1).await;
    check_slack(&slack[0], "SyncFailed", "sprocket");
    check_teams(&rx.wait("/teams", 1).await[0], "SyncFailed", "sprocket");
    let hook = check_webhook(&rx.wait("/hook", 1).await[0], "SyncFailed");
    assert_eq!(hook["subject"], "sync app");
    assert_eq!(hook["revision"], broken.as_str());
    assert_eq!(hook["url"], "https://berth.example.com/syncs/app");
    let message = hook["message"].as_str().expect("message");
    assert!(
        message.contains("Gadget") && message.contains("sprocket"),
        "{hook}"
    );

    // five more failing passes, a SIGKILL, five more on the new agent
    passes(&base, &admin, "app", "failed", 6.0).await;
    drop(agent1);
    let (_agent2, base, admin) = agent(&app.berth, &[]);
    passes(&base, &admin, "app", "failed", 5.0).await;

    app.repo.remove("app/gadget.yaml");
    app.repo
        .write("app/settings.yaml", &settings(&app.app_ns.name, "2"));
    let fixed = app.repo.commit("fix");
    check_slack(&rx.wait("/slack", 2).await[1], "Recovered", "app");
    check_teams(&rx.wait("/teams", 2).await[1], "Recovered", "app");
    let recovered = check_webhook(&rx.wait("/hook", 2).await[1], "Recovered");
    assert_eq!(recovered["revision"], fixed.as_str());

    // passes after the recovery are not news
    passes(&base, &admin, "app", "synced", 3.0).await;
    let delivered = "berth_notifications_total{notification=\"hook\",result=\"delivered\"}";
    let counted = common::metric(&metrics(&base), delivered);
    assert_eq!(counted, 1.0, "the new agent delivered only the recovery");
    for path in ["/slack", "/teams", "/hook"] {
        assert_eq!(
            rx.got(path).len(),
            2,
            "{path}: one failure, one recovery: {:?}",
            rx.got(path)
        );
    }
    // the dashboard and berth status show the notifications delivering
    let status = common::succeeds(&app.berth, &["status"], "hook");
    let text = common::text(&status);
    assert!(text.contains("webhook"), "{text}");
    assert!(!text.contains(&rx.url), "berth status shows no sink URL");
}

/// Ten syncs broken by one commit send one message; a sink that hangs, then answers 500,
/// delays no sync and gets that message once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_failures_together_are_one_message_and_a_dead_sink_delays_no_sync() {
    let rx = Receiver::start().await;
    let mut more = String::new();
    for i in 1..10 {
        more.push_str(&format!(
            "  - {{name: app{i}, repository: config, path: app{i}, namespace: @NS@}}\n"
        ));
    }
    let extra = format!(
        "@MORE@notifications:\n{}",
        notification("hook", "webhook", "hook-url", "")
    );
    let app = App::new(&extra).await;
    let mapping = std::fs::read_to_string(&app.berth.mapping).expect("mapping");
    let mapping = mapping.replace("@MORE@", &more.replace("@NS@", &app.app_ns.name));
    std::fs::write(&app.berth.mapping, mapping).expect("mapping");
    hook_secret(&app, &rx).await;
    let dirs: Vec<String> = std::iter::once("app".to_owned())
        .chain((1..10).map(|i| format!("app{i}")))
        .collect();
    for (i, dir) in dirs.iter().enumerate() {
        let content = settings(&app.app_ns.name, &i.to_string()).replace("settings", dir);
        app.repo.write(&format!("{dir}/settings.yaml"), &content);
    }
    app.repo.commit("ten apps");
    let (_agent, base, admin) = agent(&app.berth, &[]);
    for dir in &dirs {
        passes(&base, &admin, dir, "synced", 1.0).await;
    }

    rx.answer(Answer::Hang);
    for dir in &dirs {
        app.repo.write(&format!("{dir}/gadget.yaml"), GADGET);
    }
    let broken = app.repo.commit("ten gadgets");
    // every sync records its failure while the sink hangs
    let recorded = common::eventually(Duration::from_secs(60), || async {
        for dir in &dirs {
            let cm = common::status(&app.client, &app.berth_ns.name, dir).await;
            let a = cm.metadata.annotations.unwrap_or_default();
            let failed = a.get("berth.dev/status").map(String::as_str) == Some("Failed")
                && a.get("berth.dev/revision").map(String::as_str) == Some(broken.as_str());
            if !failed {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert!(
        recorded.is_some(),
        "the syncs recorded their failure while the sink hung"
    );
    let hung = common::eventually(Duration::from_secs(30), || async {
        (!rx.got("/hook").is_empty()).then_some(())
    })
    .await;
    assert!(hung.is_some(), "berth tried the hanging sink");
    // the syncs go on passing while the sink is down
    passes(&base, &admin, "app", "failed", 3.0).await;

    rx.answer(Answer::Fail);
    let failed = "berth_notifications_total{notification=\"hook\",result=\"failed\"}";
    let refused = common::eventually(Duration::from_secs(120), || async {
        rx.got("/hook")
            .iter()
            .any(|g| g.answered == 500)
            .then_some(())
    })
    .await;
    assert!(refused.is_some(), "berth retried: {:?}", rx.got("/hook"));
    assert!(common::metric(&metrics(&base), failed) >= 1.0);
    let overview = common::http("GET", &format!("{admin}/"), &[], b"").1;
    assert!(
        overview.contains("Failing"),
        "the dashboard shows it failing"
    );
    assert!(
        !overview.contains(&rx.url),
        "the dashboard shows no sink URL"
    );

    rx.answer(Answer::Ok);
    let got = rx.wait("/hook", 1).await;
    let body = check_webhook(&got[0], "SyncFailed");
    let mut told = events(&body);
    told.sort();
    let mut expected: Vec<(String, String)> = dirs
        .iter()
        .map(|d| ("SyncFailed".to_owned(), format!("sync {d}")))
        .collect();
    expected.sort();
    assert_eq!(told, expected, "one message with the ten failures");
    assert_eq!(body["revision"], broken.as_str());
    // later failing passes are not news
    passes(&base, &admin, "app", "failed", 6.0).await;
    assert_eq!(rx.delivered("/hook").len(), 1, "{:?}", rx.got("/hook"));
}

/// A real Alertmanager, started by `tests/control-plane.sh alertmanager`; stopped on drop.
struct Alertmanager {
    dir: tempfile::TempDir,
    url: String,
}

impl Alertmanager {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/control-plane.sh");
        let out = std::process::Command::new("bash")
            .args([script, "alertmanager"])
            .arg(dir.path())
            .output()
            .expect("control-plane.sh runs");
        assert!(
            out.status.success(),
            "alertmanager: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(dir.path().join("alertmanager.env")).expect("env");
        let url = env
            .lines()
            .find_map(|l| l.strip_prefix("ALERTMANAGER_URL="))
            .expect("ALERTMANAGER_URL")
            .trim()
            .to_owned();
        Self { dir, url }
    }

    /// The alerts it holds for sync `sync`, as (alertname, state).
    fn alerts(&self, sync: &str) -> Vec<(String, String)> {
        let (code, body) = common::http("GET", &format!("{}/api/v2/alerts", self.url), &[], b"");
        assert_eq!(code, 200, "{body}");
        let alerts: Vec<Value> = serde_json::from_str(&body).expect("alerts");
        alerts
            .iter()
            .filter(|a| a["labels"]["sync"] == sync)
            .map(|a| {
                (
                    a["labels"]["alertname"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    a["status"]["state"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/control-plane.sh");
        let _ = std::process::Command::new("bash")
            .args([script, "stop"])
            .arg(self.dir.path())
            .output();
    }
}

/// The real Alertmanager shows the sync's alert firing during the failure, and resolved after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_shows_the_alert_firing_then_resolved() {
    let am = Alertmanager::start();
    let extra = format!(
        "notifications:\n{}",
        notification("alerts", "alertmanager", "am-url", "")
    );
    let app = App::new(&extra).await;
    put_secret_data(
        &app.client,
        &app.berth_ns.name,
        "am-url",
        &[("url", &am.url)],
    )
    .await;
    app.repo
        .write("app/settings.yaml", &settings(&app.app_ns.name, "1"));
    app.repo.commit("settings");
    let (_agent, base, admin) = agent(&app.berth, &[]);
    passes(&base, &admin, "app", "synced", 1.0).await;
    assert_eq!(am.alerts("app"), Vec::<(String, String)>::new());

    app.repo.write("app/gadget.yaml", GADGET);
    app.repo.commit("a gadget");
    let firing = common::eventually(Duration::from_secs(60), || async {
        let alerts = am.alerts("app");
        (!alerts.is_empty()).then_some(alerts)
    })
    .await
    .expect("the alert fires");
    assert_eq!(
        firing,
        vec![("BerthSyncFailed".to_owned(), "active".to_owned())]
    );

    app.repo.remove("app/gadget.yaml");
    app.repo.commit("fix");
    let resolved = common::eventually(Duration::from_secs(60), || async {
        am.alerts("app").is_empty().then_some(())
    })
    .await;
    assert!(
        resolved.is_some(),
        "the alert is resolved: {:?}",
        am.alerts("app")
    );
    let delivered = "berth_notifications_total{notification=\"alerts\",result=\"delivered\"}";
    assert!(common::metric(&metrics(&base), delivered) >= 2.0);
}

/// A standby that takes over from a killed leader tells nothing twice, and tells the recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_change_tells_nothing_twice() {
    let rx = Receiver::start().await;
    let extra = format!(
        "notifications:\n{}",
        notification("hook", "webhook", "hook-url", "")
    );
    let app = App::new(&extra).await;
    hook_secret(&app, &rx).await;
    app.repo
        .write("app/settings.yaml", &settings(&app.app_ns.name, "1"));
    app.repo.write("app/gadget.yaml", GADGET);
    app.repo.commit("settings and a gadget");
    let elect = ["--leader-elect", "--lease-duration", "3s"];
    let mut replicas = vec![agent(&app.berth, &elect), agent(&app.berth, &elect)];
    check_webhook(&rx.wait("/hook", 1).await[0], "SyncFailed");
    remembered(&app.client, &app.berth_ns.name, "hook").await;

    // the leader is the one ready; kill it, and the standby passes the failing sync again
    let leader = common::eventually(Duration::from_secs(30), || async {
        replicas.iter().position(|(_, base, _)| {
            common::http("GET", &format!("{base}/readyz"), &[], b"").0 == 200
        })
    })
    .await
    .expect("a leader");
    drop(replicas.remove(leader));
    let (_, base, admin) = &replicas[0];
    passes(base, admin, "app", "failed", 3.0).await;

    app.repo.remove("app/gadget.yaml");
    app.repo.commit("fix");
    check_webhook(&rx.wait("/hook", 2).await[1], "Recovered");
    passes(base, admin, "app", "synced", 2.0).await;
    assert_eq!(rx.got("/hook").len(), 2, "{:?}", rx.got("/hook"));
}
