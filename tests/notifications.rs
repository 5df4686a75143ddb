//! Notifications against a running `berth run`: real HTTP deliveries signed like each
//! provider signs them, a git server over HTTPS, file events, and `/metrics`.

mod common;

use std::time::Duration;

use common::{Berth, GitServer, Repo, client, http, metric, namespace, unique};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use serde_json::json;

const WEBHOOK_SECRET: &str = "hook-s3cret";
const TOKEN: &str = "t0ken";

fn settings(ns: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\n\
apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {ns}}}\ndata: {{value: \"{value}\"}}\n"
    )
}

/// Creates the credential and webhook Secrets in berth's namespace.
async fn secrets(client: &kube::Client, ns: &str) {
    common::put_secret(client, ns, "git-creds", "token", TOKEN).await;
    common::put_secret(client, ns, "hooks", "secret", WEBHOOK_SECRET).await;
}

/// Waits until the app namespace's ConfigMap holds `value`.
async fn applied(client: &kube::Client, ns: &str, value: &str) -> bool {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    common::eventually(Duration::from_secs(20), || async {
        let cm = cms.get_opt("settings").await.ok().flatten()?;
        (cm.data?.get("value")? == value).then_some(())
    })
    .await
    .is_some()
}

fn metrics(base: &str) -> String {
    http("GET", &format!("{base}/metrics"), &[], b"").1
}

fn fetches(base: &str) -> f64 {
    common::fetches(base, "config")
}

/// Waits until the agent answers on its port.
async fn up(base: &str) {
    let ready = common::eventually(Duration::from_secs(20), || async {
        let base = base.to_owned();
        tokio::task::spawn_blocking(move || {
            std::net::TcpStream::connect(base.trim_start_matches("http://"))
                .ok()
                .map(drop)
        })
        .await
        .ok()
        .flatten()
    })
    .await;
    assert!(ready.is_some(), "berth run did not listen");
}

fn github_push(url: &str, sha: &str) -> Vec<u8> {
    json!({"ref": "refs/heads/main", "before": "0".repeat(40), "after": sha, "deleted": false,
        "repository": {"full_name": "acme/config", "clone_url": url, "html_url": url.trim_end_matches(".git")},
        "pusher": {"name": "dev"}, "head_commit": {"id": sha, "message": "change"}})
    .to_string()
    .into_bytes()
}

/// Builds a provider's delivery (body, headers) for a commit.
type DeliveryFor<'a> = dyn Fn(&str) -> (Vec<u8>, Vec<(String, String)>) + 'a;

#[tokio::test]
async fn signed_deliveries_from_every_provider_apply_the_commit_and_bad_ones_do_nothing() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app_ns = unique("app");
    secrets(&client, &berth_ns.name).await;
    let repo = Repo::new();
    repo.write("app.yaml", &settings(&app_ns, "v0"));
    repo.commit("v0");
    let server = GitServer::start(&repo, "x-access-token", TOKEN);
    let mapping = format!(
        "apiVersion: berth.dev/v1alpha1
kind: Mapping
repositories:
  - name: config
    url: {}
    interval: 0
    auth: {{secretRef: git-creds}}
    webhookSecretRef: hooks
syncs:
  - name: app
    repository: config
    namespace: {app_ns}
",
        server.url
    );
    let mut berth = Berth::new(&berth_ns.name, &mapping);
    berth.env.push(("SSL_CERT_FILE".into(), server.ca.clone()));
    let (_agent, base, admin) = berth.agent_with(&[], &[], |_| {});
    up(&base).await;
    assert!(
        applied(&client, &app_ns, "v0").await,
        "the first pass runs at start"
    );
    let hooks = format!("{base}/webhooks");

    // 1. a GitHub-signed push with polling off applies the new commit
    repo.write("app.yaml", &settings(&app_ns, "v1"));
    let sha = repo.commit("v1");
    server.push(&repo);
    let body = github_push(&server.url, &sha);
    let sig = berth::webhook::sign(WEBHOOK_SECRET.as_bytes(), &body);
    let (status, answer) = http(
        "POST",
        &format!("{hooks}/github"),
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "gh-1"),
            ("X-Hub-Signature-256", &sig),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    assert_eq!(status, 202, "{answer}");
    assert!(
        applied(&client, &app_ns, "v1").await,
        "the GitHub delivery was not applied"
    );

    // 2. a wrong signature: 401, nothing fetched, nothing applied
    repo.write("app.yaml", &settings(&app_ns, "v2"));
    let sha = repo.commit("v2");
    server.push(&repo);
    // every wake-up asked so far has been served: no pass is due
    let asked = common::refreshes_served(&base, "config").await;
    let before = fetches(&base);
    let body = github_push(&server.url, &sha);
    let wrong = berth::webhook::sign(b"not-the-secret", &body);
    let (status, _) = http(
        "POST",
        &format!("{hooks}/github"),
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &wrong)],
        &body,
    );
    assert_eq!(status, 401);
    let (status, _) = http(
        "POST",
        &format!("{hooks}/github"),
        &[("X-GitHub-Event", "push")],
        &body,
    );
    assert_eq!(status, 401, "a missing signature");
    // a delivery asks for its wake-up before it is answered: none was asked, so none comes
    assert_eq!(
        common::refreshes(&base, "config"),
        (asked, asked),
        "a refused delivery asked for a pass"
    );
    assert_eq!(fetches(&base), before, "a refused delivery fetched");
    assert!(!applied_now(&client, &app_ns, "v2").await);

    // 3. every other provider, with its real payload shape and signature scheme
    let url = server.url.clone();
    let web = url.trim_end_matches(".git").to_owned();
    let cases: Vec<(&str, Box<DeliveryFor<'_>>)> = vec![
        (
            "gitlab",
            Box::new(|sha: &str| {
                let body = json!({"object_kind": "push", "event_name": "push", "ref": "refs/heads/main", "before": "0".repeat(40), "after": sha, "checkout_sha": sha,
                "project": {"path_with_namespace": "acme/config", "git_http_url": url, "git_ssh_url": "git@127.0.0.1:acme/config.git", "web_url": web}}).to_string().into_bytes();
                (
                    body,
                    vec![
                        ("X-Gitlab-Event".into(), "Push Hook".into()),
                        ("X-Gitlab-Token".into(), WEBHOOK_SECRET.into()),
                    ],
                )
            }),
        ),
        (
            "bitbucket",
            Box::new(|sha: &str| {
                let body = json!({"actor": {"display_name": "dev"}, "repository": {"full_name": "acme/config", "links": {"html": {"href": web}}},
                "push": {"changes": [{"new": {"type": "branch", "name": "main", "target": {"hash": sha}}, "old": {"type": "branch", "name": "main"}, "created": false, "closed": false}]}}).to_string().into_bytes();
                let sig = berth::webhook::sign(WEBHOOK_SECRET.as_bytes(), &body);
                (
                    body,
                    vec![
                        ("X-Event-Key".into(), "repo:push".into()),
                        ("X-Request-UUID".into(), "bb-1".into()),
                        ("X-Hub-Signature".into(), sig),
                    ],
                )
            }),
        ),
        (
            "bitbucket-server",
            Box::new(|sha: &str| {
                let body = json!({"eventKey": "repo:refs_changed", "repository": {"slug": "config", "project": {"key": "ACME"},
                "links": {"clone": [{"href": url, "name": "http"}, {"href": "ssh://git@127.0.0.1:7999/acme/config.git", "name": "ssh"}]}},
                "changes": [{"ref": {"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"}, "refId": "refs/heads/main", "fromHash": "0".repeat(40), "toHash": sha, "type": "UPDATE"}]}).to_string().into_bytes();
                let sig = berth::webhook::sign(WEBHOOK_SECRET.as_bytes(), &body);
                (
                    body,
                    vec![
                        ("X-Event-Key".into(), "repo:refs_changed".into()),
                        ("X-Request-Id".into(), "bbs-1".into()),
                        ("X-Hub-Signature".into(), sig),
                    ],
                )
            }),
        ),
        (
            "gitea",
            Box::new(|sha: &str| {
                let body = json!({"ref": "refs/heads/main", "before": "0".repeat(40), "after": sha,
                "repository": {"full_name": "acme/config", "clone_url": url, "ssh_url": "git@127.0.0.1:acme/config.git", "html_url": web}}).to_string().into_bytes();
                let sig = berth::webhook::sign(WEBHOOK_SECRET.as_bytes(), &body);
                (
                    body,
                    vec![
                        ("X-Gitea-Event".into(), "push".into()),
                        ("X-Gitea-Delivery".into(), "gt-1".into()),
                        (
                            "X-Gitea-Signature".into(),
                            sig.trim_start_matches("sha256=").to_owned(),
                        ),
                    ],
                )
            }),
        ),
        (
            "generic",
            Box::new(|sha: &str| {
                let body = json!({"repository": url, "branch": "main", "revision": sha})
                    .to_string()
                    .into_bytes();
                let sig = berth::webhook::sign(WEBHOOK_SECRET.as_bytes(), &body);
                (body, vec![("X-Berth-Signature".into(), sig)])
            }),
        ),
    ];
    for (i, (provider, delivery)) in cases.iter().enumerate() {
        let value = format!("{provider}-{i}");
        repo.write("app.yaml", &settings(&app_ns, &value));
        let sha = repo.commit(&value);
        server.push(&repo);
        let (body, headers) = delivery(&sha);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, answer) = http("POST", &format!("{hooks}/{provider}"), &headers, &body);
        assert_eq!(status, 202, "{provider}: {answer}");
        assert!(
            applied(&client, &app_ns, &value).await,
            "{provider} delivery was not applied"
        );
    }

    // 4. a burst of 50 deliveries: at most 2 fetches, and the final commit applied
    repo.write("app.yaml", &settings(&app_ns, "burst"));
    let sha = repo.commit("burst");
    server.push(&repo);
    let asked = common::refreshes_served(&base, "config").await;
    let before = fetches(&base);
    let body = github_push(&server.url, &sha);
    let sig = berth::webhook::sign(WEBHOOK_SECRET.as_bytes(), &body);
    let burst: Vec<_> = (0..50)
        .map(|_| {
            let (url, body, sig) = (format!("{hooks}/github"), body.clone(), sig.clone());
            std::thread::spawn(move || {
                http(
                    "POST",
                    &url,
                    &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)],
                    &body,
                )
                .0
            })
        })
        .collect();
    for t in burst {
        assert_eq!(t.join().expect("thread"), 202);
    }
    assert!(
        applied(&client, &app_ns, "burst").await,
        "the burst's commit was not applied"
    );
    // once all 50 wake-ups are served, no pass of the burst is still to come
    assert_eq!(
        common::refreshes_served(&base, "config").await,
        asked + 50.0
    );
    let burst_fetches = fetches(&base) - before;
    assert!(
        (1.0..=2.0).contains(&burst_fetches),
        "{burst_fetches} fetches for a burst of 50"
    );

    // the other answers: ping, unknown provider, bad payload, too large, unmatched repository
    let (status, _) = http(
        "POST",
        &format!("{hooks}/github"),
        &[("X-GitHub-Event", "ping")],
        br#"{"zen":"hi","hook_id":1}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(http("POST", &format!("{hooks}/svn"), &[], b"{}").0, 404);
    // verified first, then parsed: a signed body that is not JSON
    let garbled = b"{not json";
    let signed = berth::webhook::sign(WEBHOOK_SECRET.as_bytes(), garbled);
    assert_eq!(
        http(
            "POST",
            &format!("{hooks}/github"),
            &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &signed)],
            garbled
        )
        .0,
        400
    );
    let big = vec![b' '; 6 * 1024 * 1024];
    assert_eq!(http("POST", &format!("{hooks}/github"), &[], &big).0, 413);
    let other = github_push("https://github.com/someone/else.git", &sha);
    let signed = berth::webhook::sign(WEBHOOK_SECRET.as_bytes(), &other);
    assert_eq!(
        http(
            "POST",
            &format!("{hooks}/github"),
            &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &signed)],
            &other
        )
        .0,
        200
    );

    // the audit log: newest first, no payloads, no secrets
    let (status, log) = http("GET", &format!("{admin}/deliveries"), &[], b"");
    assert_eq!(status, 200);
    let log: serde_json::Value = serde_json::from_str(&log).expect("JSON");
    let entries = log.as_array().expect("array");
    assert!(
        entries.len() <= 100 && entries.len() >= 60,
        "{}",
        entries.len()
    );
    assert!(
        entries
            .iter()
            .any(|e| e["id"] == "gh-1" && e["status"] == 202 && e["matched"][0] == "config")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["provider"] == "bitbucket-server" && e["branch"] == "main")
    );
    let text = log.to_string();
    assert!(!text.contains(WEBHOOK_SECRET) && !text.contains(TOKEN));

    // 5. the counters add up
    let m = metrics(&base);
    assert_eq!(
        metric(
            &m,
            "berth_webhook_deliveries_total{provider=\"github\",result=\"accepted\"}"
        ),
        51.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "berth_webhook_deliveries_total{provider=\"github\",result=\"unauthorized\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            "berth_webhook_deliveries_total{provider=\"github\",result=\"ping\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "berth_webhook_deliveries_total{provider=\"github\",result=\"invalid\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "berth_webhook_deliveries_total{provider=\"github\",result=\"ignored\"}"
        ),
        1.0
    );
    for provider in [
        "gitlab",
        "bitbucket",
        "bitbucket-server",
        "gitea",
        "generic",
    ] {
        let sample = format!(
            "berth_webhook_deliveries_total{{provider=\"{provider}\",result=\"accepted\"}}"
        );
        assert_eq!(metric(&m, &sample), 1.0, "{provider}");
    }
    let synced = metric(&m, "berth_syncs_total{sync=\"app\",result=\"synced\"}");
    assert!(synced >= 8.0, "{synced} syncs:\n{m}");
    // v0, v1, 5 providers and the burst each changed one ConfigMap (plus the Namespace once)
    assert_eq!(
        metric(&m, "berth_objects_applied_total{sync=\"app\"}"),
        9.0,
        "{m}"
    );
    assert!(metric(&m, "berth_sync_duration_seconds_count{sync=\"app\"}") >= synced);
    assert_eq!(http("GET", &format!("{base}/healthz"), &[], b"").0, 200);
    assert_eq!(http("GET", &format!("{base}/readyz"), &[], b"").0, 200);
}

/// Whether the ConfigMap holds `value` right now.
async fn applied_now(client: &kube::Client, ns: &str, value: &str) -> bool {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    cms.get_opt("settings")
        .await
        .ok()
        .flatten()
        .and_then(|cm| cm.data)
        .is_some_and(|d| d.get("value").map(String::as_str) == Some(value))
}

#[tokio::test]
async fn file_repositories_and_mapping_edits_apply_without_polling_or_restart() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app_ns = unique("app");
    let other_ns = unique("other");
    let repo = Repo::new();
    repo.write("app/app.yaml", &settings(&app_ns, "one"))
        .write("other/app.yaml", &settings(&other_ns, "other"));
    repo.commit("one");
    let mapping = format!(
        "apiVersion: berth.dev/v1alpha1
kind: Mapping
repositories:
  - name: config
    url: {}
    interval: 0
syncs:
  - name: app
    repository: config
    path: app
",
        repo.url()
    );
    let berth = Berth::new(&berth_ns.name, &mapping);
    let (_agent, base) = berth.agent();
    up(&base).await;
    assert!(applied(&client, &app_ns, "one").await);

    // 1. a commit to a file:// repository with polling off is applied from file events alone
    repo.write("app/app.yaml", &settings(&app_ns, "two"));
    repo.commit("two");
    assert!(
        applied(&client, &app_ns, "two").await,
        "the file:// commit was not applied"
    );

    // 2. adding a sync to the mapping file syncs it without a restart
    let added = format!("{mapping}  - name: other\n    repository: config\n    path: other\n");
    std::fs::write(&berth.mapping, &added).expect("edit mapping");
    assert!(
        applied(&client, &other_ns, "other").await,
        "the added sync did not run"
    );

    // a broken edit keeps the running mapping and is reported
    std::fs::write(&berth.mapping, format!("{added}    colour: blue\n")).expect("break mapping");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &berth_ns.name);
    let reported = common::eventually(Duration::from_secs(20), || async {
        let cm = cms.get_opt("berth-agent").await.ok().flatten()?;
        let a = cm.metadata.annotations?;
        (a.get("berth.dev/config-status")? == "Invalid").then(|| a["berth.dev/message"].clone())
    })
    .await
    .expect("the invalid mapping was not reported");
    assert!(
        reported.contains("berth.yaml:14:5") && reported.contains("colour"),
        "{reported}"
    );
    assert_eq!(
        metric(
            &metrics(&base),
            "berth_config_reloads_total{result=\"invalid\"}"
        ),
        1.0
    );
    repo.write("other/app.yaml", &settings(&other_ns, "still running"));
    repo.commit("after the broken edit");
    assert!(
        applied(&client, &other_ns, "still running").await,
        "the old mapping stopped"
    );
    assert_eq!(
        metric(
            &metrics(&base),
            "berth_config_reloads_total{result=\"applied\"}"
        ),
        1.0
    );
}

/// A delivery for a commit: the provider path, the headers and the body.
type Shaped = (&'static str, Vec<(String, String)>, Vec<u8>);

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The deliveries real providers send for a push of `sha` to `url`'s main branch, each in
/// its provider's shape, signed with the webhook secret.
fn real_shapes(url: &str, sha: &str, n: usize) -> Vec<Shaped> {
    let secret = WEBHOOK_SECRET.as_bytes();
    let sign = |body: &[u8]| berth::webhook::sign(secret, body);
    let zero = "0".repeat(40);
    // Bitbucket Cloud: `git push origin main v1.0`, a branch and a tag in one delivery
    let cloud = json!({"repository": {"full_name": "acme/config", "links": {"html": {"href": url}}},
        "push": {"changes": [
            {"new": {"type": "branch", "name": "main", "target": {"hash": sha}}, "old": {"type": "branch", "name": "main"}},
            {"new": {"type": "tag", "name": format!("v1.{n}"), "target": {"hash": sha}}, "old": null}]}})
    .to_string()
    .into_bytes();
    // Bitbucket Server: main updated and another branch deleted in one push
    let server = json!({"eventKey": "repo:refs_changed", "repository": {"slug": "config",
            "links": {"clone": [{"href": url, "name": "http"}]}},
        "changes": [
            {"ref": {"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"}, "fromHash": zero, "toHash": sha, "type": "UPDATE"},
            {"ref": {"id": "refs/heads/old", "displayId": "old", "type": "BRANCH"}, "fromHash": sha, "toHash": zero, "type": "DELETE"}]})
    .to_string()
    .into_bytes();
    // GitHub's default for hooks made through its API: application/x-www-form-urlencoded
    let push = String::from_utf8(github_push(url, sha)).expect("utf-8");
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &push)
        .finish();
    // Gogs: its own headers, a bare hex signature
    let gogs = json!({"ref": "refs/heads/main", "before": zero, "after": sha,
        "repository": {"clone_url": url, "html_url": url.trim_end_matches(".git")}})
    .to_string()
    .into_bytes();
    let gogs_signature = sign(&gogs).trim_start_matches("sha256=").to_owned();
    // a GitLab system hook says event_name, not object_kind
    let system =
        json!({"event_name": "push", "ref": "refs/heads/main", "before": zero, "after": sha,
        "project": {"git_http_url": url, "path_with_namespace": "acme/config"}})
        .to_string()
        .into_bytes();
    // GitHub spells owner and name as the user typed them; the mapping may not
    let shouting = url.replace("config.git", "Config.git");
    let cased = github_push(&shouting, sha);
    let id = format!("d-{n}");
    vec![
        (
            "bitbucket",
            h(&[
                ("X-Event-Key", "repo:push"),
                ("X-Request-UUID", &id),
                ("X-Hub-Signature", &sign(&cloud)),
            ]),
            cloud,
        ),
        (
            "bitbucket-server",
            h(&[
                ("X-Event-Key", "repo:refs_changed"),
                ("X-Request-Id", &id),
                ("X-Hub-Signature", &sign(&server)),
            ]),
            server,
        ),
        (
            "github",
            h(&[
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Delivery", &id),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Hub-Signature-256", &sign(form.as_bytes())),
            ]),
            form.into_bytes(),
        ),
        (
            "gogs",
            h(&[
                ("X-Gogs-Event", "push"),
                ("X-Gogs-Delivery", &id),
                ("X-Gogs-Signature", &gogs_signature),
            ]),
            gogs,
        ),
        (
            "gitlab",
            h(&[
                ("X-Gitlab-Event", "System Hook"),
                ("X-Gitlab-Event-UUID", &id),
                ("X-Gitlab-Token", WEBHOOK_SECRET),
            ]),
            system,
        ),
        (
            "github",
            h(&[
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Delivery", &format!("{id}-cased")),
                ("X-Hub-Signature-256", &sign(&cased)),
            ]),
            cased,
        ),
    ]
}

fn post(hooks: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> (u16, String) {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    http("POST", &format!("{hooks}/{path}"), &headers, body)
}

#[tokio::test]
async fn real_provider_shapes_apply_their_commits_and_hostile_ones_cost_nothing() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app_ns = unique("app");
    secrets(&client, &berth_ns.name).await;
    let repo = Repo::new();
    repo.write("app.yaml", &settings(&app_ns, "v0"));
    repo.commit("v0");
    let server = GitServer::start(&repo, "x-access-token", TOKEN);
    let mapping = format!(
        "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: config\n    url: {}\n    interval: 0\n    auth: {{secretRef: git-creds}}\n    webhookSecretRef: hooks\nsyncs:\n  - name: app\n    repository: config\n    namespace: {app_ns}\n",
        server.url
    );
    let mut berth = Berth::new(&berth_ns.name, &mapping);
    berth.env.push(("SSL_CERT_FILE".into(), server.ca.clone()));
    let log = tempfile::NamedTempFile::new().expect("log file");
    let log_file = log.reopen().expect("log");
    let (_agent, base, admin) = berth.agent_with(&["--log-format", "json"], &[], |cmd| {
        cmd.stderr(log_file);
    });
    up(&base).await;
    assert!(
        applied(&client, &app_ns, "v0").await,
        "the first pass runs at start"
    );
    let hooks = format!("{base}/webhooks");

    // every shape: 202, and its commit applied
    for n in 0..6 {
        let value = format!("v{}", n + 1);
        repo.write("app.yaml", &settings(&app_ns, &value));
        let sha = repo.commit(&value);
        server.push(&repo);
        let (path, headers, body) = real_shapes(&server.url, &sha, n).swap_remove(n);
        let (status, answer) = post(&hooks, path, &headers, &body);
        assert_eq!(status, 202, "{path} #{n}: {answer}");
        assert!(
            applied(&client, &app_ns, &value).await,
            "{path} #{n} was not applied"
        );
    }

    // a replayed delivery id: acknowledged, nothing fetched
    let asked = common::refreshes_served(&base, "config").await;
    let before = fetches(&base);
    let sha = repo.git(&["rev-parse", "HEAD"]);
    let (path, headers, body) = real_shapes(&server.url, &sha, 5).swap_remove(5);
    let (status, answer) = post(&hooks, path, &headers, &body);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("handled already"), "{answer}");
    // answered without asking for a wake-up, so no pass comes of it
    assert_eq!(
        common::refreshes(&base, "config"),
        (asked, asked),
        "a replay asked for a pass"
    );
    assert_eq!(fetches(&base), before, "a replay fetched");

    // a signed ping says what it matches; an unsigned one that it does not verify
    let ping = json!({"zen": "hi", "repository": {"clone_url": server.url}}).to_string();
    let signed = berth::webhook::sign(WEBHOOK_SECRET.as_bytes(), ping.as_bytes());
    let (status, answer) = http(
        "POST",
        &format!("{hooks}/github"),
        &[("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", &signed)],
        ping.as_bytes(),
    );
    assert_eq!(status, 200);
    assert!(
        answer.contains("signature verified") && answer.contains("config"),
        "{answer}"
    );
    let (_, answer) = http(
        "POST",
        &format!("{hooks}/github"),
        &[("X-GitHub-Event", "ping")],
        ping.as_bytes(),
    );
    assert!(answer.contains("does not verify"), "{answer}");

    // a 401 names nothing internal
    let (status, answer) = http(
        "POST",
        &format!("{hooks}/github"),
        &[("X-GitHub-Event", "push")],
        &body,
    );
    assert_eq!(status, 401);
    assert!(
        !answer.contains("config") && !answer.contains("hooks"),
        "{answer}"
    );

    // unknown paths leave the delivery log alone and are counted; so are 413s
    let (status, log_before) = http("GET", &format!("{admin}/deliveries"), &[], b"");
    assert_eq!(status, 200);
    for _ in 0..100 {
        assert_eq!(http("POST", &format!("{hooks}/nope"), &[], b"{}").0, 404);
    }
    let (_, log_after) = http("GET", &format!("{admin}/deliveries"), &[], b"");
    assert_eq!(
        log_before, log_after,
        "unknown paths changed the delivery log"
    );
    assert_eq!(
        http("GET", &format!("{hooks}/deliveries"), &[], b"").0,
        405,
        "the log is not public"
    );
    let big = vec![b' '; 6 * 1024 * 1024];
    assert_eq!(http("POST", &format!("{hooks}/github"), &[], &big).0, 413);
    let m = metrics(&base);
    assert_eq!(
        metric(
            &m,
            "berth_webhook_deliveries_total{provider=\"unknown\",result=\"unknown-provider\"}"
        ),
        100.0
    );
    assert_eq!(
        metric(
            &m,
            "berth_webhook_deliveries_total{provider=\"github\",result=\"too-large\"}"
        ),
        1.0
    );

    // log fields are plain values
    let text = std::fs::read_to_string(log.path()).expect("log");
    let line = text
        .lines()
        .filter(|l| l.contains("\"webhook delivery\""))
        .find(|l| l.contains("\"status\":202"))
        .expect("a delivery log line");
    let fields: serde_json::Value = serde_json::from_str(line).expect("one JSON object");
    assert_eq!(fields["branch"], "main", "{line}");
    assert_eq!(fields["matched"], "config", "{line}");
    assert!(
        fields["repository"]
            .as_str()
            .is_some_and(|r| r.starts_with("https://")),
        "{line}"
    );
    assert!(!text.contains('\u{1b}'), "escape codes in a log file");
}
