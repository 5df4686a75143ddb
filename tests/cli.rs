//! What a new user meets on the command line: errors that name the server, the cause and what
//! to check; one exit-code rule; help that reads well.

mod common;

use std::io::Write as _;

use common::{Berth, Repo, text};

/// A kubeconfig for `server` with a bearer token, skipping TLS verification.
fn kubeconfig(server: &str, token: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("kubeconfig");
    write!(
        file,
        "apiVersion: v1\nkind: Config\nclusters:\n  - name: c\n    cluster: {{server: \"{server}\", insecure-skip-tls-verify: true}}\nusers:\n  - name: u\n    user: {{token: {token}}}\ncontexts:\n  - name: here\n    context: {{cluster: c, user: u}}\n  - name: there\n    context: {{cluster: c, user: u}}\ncurrent-context: here\n"
    )
    .expect("write");
    file
}

/// A berth with a mapping of one small file:// repository (kept alive by the caller).
fn berth_with() -> (Berth, Repo) {
    let repo = Repo::new();
    repo.write(
        "apps/a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    );
    repo.commit("one");
    let berth = Berth::new(
        "berth-cli",
        &common::mapping(&repo.url(), "web", "apps", "default", ""),
    );
    (berth, repo)
}

/// `berth ARGS` with its own kubeconfig instead of the test cluster's.
fn run(berth: &Berth, kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--namespace")
        .arg(&berth.namespace)
        .arg("--cache-dir")
        .arg(berth.cache.path())
        .arg("--config")
        .arg(&berth.mapping)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("berth runs")
}

#[test]
fn an_unreachable_server_is_named_with_the_cause_and_exit_2() {
    let port = common::free_address();
    let config = kubeconfig(&format!("https://{port}"), "t");
    let (berth, _repo) = berth_with();
    let out = run(&berth, config.path(), &["sync"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.contains(&format!(
            "the API server at https://{port}/ refused the connection"
        )),
        "{}",
        text(&out)
    );
    assert!(
        !stderr.contains("status"),
        "it blames the status write: {}",
        text(&out)
    );
    assert_eq!(stderr.matches("error:").count(), 1, "{}", text(&out));
}

#[tokio::test]
async fn wrong_credentials_are_named_as_such() {
    let real = kube::config::Kubeconfig::read_from(common::kubeconfig()).expect("kubeconfig");
    let server = real.clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.server.clone())
        .expect("server");
    let config = kubeconfig(&server, "not-a-valid-token");
    let (berth, _repo) = berth_with();
    let out = run(&berth, config.path(), &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused berth's credentials (401 Unauthorized)"),
        "{}",
        text(&out)
    );
    assert!(
        stderr.contains(server.trim_end_matches('/')),
        "{}",
        text(&out)
    );
}

#[test]
fn kubeconfig_problems_name_the_file_once_and_list_the_contexts() {
    let config = kubeconfig("https://127.0.0.1:1", "t");
    let (berth, _repo) = berth_with();
    let out = run(&berth, config.path(), &["--context", "nope", "sync"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("context \"nope\" is not in kubeconfig")
            && stderr.contains("(contexts: here, there)"),
        "{}",
        text(&out)
    );
    let missing = std::path::Path::new("/nonexistent/kubeconfig");
    let out = run(&berth, missing, &["sync"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("/nonexistent/kubeconfig").count(),
        1,
        "{}",
        text(&out)
    );
    assert!(!stderr.contains("'\""), "{}", text(&out));
}

#[test]
fn help_keeps_its_lists_and_sets_global_options_apart() {
    let (berth, _repo) = berth_with();
    let top = String::from_utf8_lossy(&berth.run(&["--help"]).stdout).to_string();
    assert!(
        top.contains("\n  - syncs:") && top.contains("\n  - pipelines:"),
        "{top}"
    );
    assert!(top.contains("\n  2  the work could not start"), "{top}");
    let sync = String::from_utf8_lossy(&berth.run(&["sync", "--help"]).stdout).to_string();
    let (own, global) = sync
        .split_once("Global options:")
        .expect("a global section");
    assert!(
        own.contains("--dry-run") && !own.contains("--kubeconfig"),
        "{sync}"
    );
    assert!(
        global.contains("--kubeconfig") && global.contains("--context"),
        "{sync}"
    );
    assert!(
        global.contains("~/.cache/berth/git"),
        "the cache default is stated: {sync}"
    );
}

#[tokio::test]
async fn status_prints_whole_messages_wide_and_json_for_scripts() {
    let client = common::client().await;
    let berth_ns = common::namespace(&client, &common::unique("berth")).await;
    let repo = Repo::new();
    repo.write(
        "apps/a.yaml",
        "apiVersion: long-group-name-for-a-message.example.com/v1\nkind: SomethingNobodyServes\nmetadata: {name: a}\n",
    );
    repo.commit("an unserved kind");
    let berth = Berth::new(
        &berth_ns.name,
        &common::mapping(&repo.url(), "web", "apps", "default", ""),
    );
    let out = berth.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let table = String::from_utf8_lossy(&berth.run(&["status"]).stdout).to_string();
    let row = table
        .lines()
        .find(|l| l.starts_with("web "))
        .expect("row")
        .to_owned();
    assert!(row.ends_with('…'), "a cut message says so: {table}");
    assert!(row.contains("config@"), "{table}");
    let wide = String::from_utf8_lossy(&berth.run(&["status", "-o", "wide"]).stdout).to_string();
    assert!(
        wide.contains("no API resource serves SomethingNobodyServes"),
        "{wide}"
    );
    let json = berth.run(&["status", "-o", "json"]);
    assert!(json.status.success(), "{}", text(&json));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(doc["syncs"][0]["name"], "web");
    assert_eq!(doc["syncs"][0]["status"], "Failed");
    assert!(
        doc["syncs"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no API resource serves SomethingNobodyServes in long-group-name-for-a-message.example.com/v1")),
        "{doc}"
    );
    let yaml = berth.run(&["status", "-o", "yaml"]);
    assert!(
        String::from_utf8_lossy(&yaml.stdout).contains("name: web"),
        "{}",
        text(&yaml)
    );
}

#[tokio::test]
async fn a_sync_at_a_terminal_shows_its_progress_and_a_pipe_gets_none() {
    let client = common::client().await;
    let berth_ns = common::namespace(&client, &common::unique("berth")).await;
    let app = common::namespace(&client, &common::unique("app")).await;
    let repo = Repo::new();
    for i in 0..30 {
        repo.write(
            &format!("apps/cm-{i}.yaml"),
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}}}\n"),
        );
    }
    repo.commit("thirty");
    let berth = Berth::new(
        &berth_ns.name,
        &common::mapping(&repo.url(), "web", "apps", &app.name, ""),
    );
    let cmd = berth.command(&["sync", "--dry-run"]);
    let mut line = vec![cmd.get_program().to_string_lossy().into_owned()];
    line.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    // `script` runs the command on a pseudo-terminal, as a person would
    let terminal = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &line.join(" "), "/dev/null"])
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("script runs");
    let shown = String::from_utf8_lossy(&terminal.stdout).to_string();
    assert!(terminal.status.success(), "{shown}");
    assert!(shown.contains("config: fetching"), "{shown}");
    assert!(shown.contains("web: rendered 30 objects"), "{shown}");
    assert!(
        shown.contains("web: stage 2 of 2: planning 30 objects"),
        "{shown}"
    );
    let piped = berth.run(&["sync", "--dry-run"]);
    assert!(piped.status.success(), "{}", text(&piped));
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(
        !stderr.contains("rendered") && !stderr.contains("planning"),
        "{}",
        text(&piped)
    );
}
