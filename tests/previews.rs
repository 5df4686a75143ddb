//! Pull request previews against a real Gitea (built from its Go module) and the real API
//! server: one comment per pull request, edited on every push and found again after a restart,
//! a `berth/preview/<sync>` status on the head, the diff against the live cluster (a hand edit
//! shows), and nothing written to the cluster.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};

use common::forge::{EXTERNAL, Host, host};
use common::{Berth, eventually, metrics, namespace, unique};

/// The mapping: repository `web` on Gitea, polled every 2 s (pull requests arrive by
/// webhook), with `syncs`.
fn mapping(h: &Host, syncs: &str) -> String {
    h.mapping_with(
        "{type: gitea, url: @GITEA@}",
        "2s",
        &format!("syncs:\n{syncs}"),
    )
}

fn deployment(ns: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: nginx}}]
"
    )
}

fn config_map(ns: &str, name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}}}\ndata: {{value: \"{value}\"}}\n"
    )
}

/// Commits `files` on `branch` (from main when new), pushes it and returns the sha.
async fn push_files(h: &Host, branch: &str, files: &[(&str, String)]) -> String {
    let exists = !h.repo.git(&["branch", "--list", branch]).trim().is_empty();
    if !exists {
        h.repo.git(&["branch", branch, "main"]);
    }
    h.repo.git(&["checkout", "-q", branch]);
    for (path, content) in files {
        h.repo.write(path, content);
    }
    let sha = h.repo.commit(&format!("change on {branch}"));
    h.repo.git(&["checkout", "-q", "main"]);
    h.gitea.push_ref(&h.repo, "web", &format!("+{branch}"));
    h.gitea.wait_branch("web", branch, &sha).await;
    sha
}

/// The comments on pull request `number`, as (id, body).
fn comments(h: &Host, number: u64) -> Vec<(u64, String)> {
    let (code, body) = h.gitea.api(
        "GET",
        &format!("/repos/{}/web/issues/{number}/comments", h.gitea.user),
        &serde_json::Value::Null,
    );
    assert_eq!(code, 200, "{body}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).expect("comments");
    list.iter()
        .map(|c| {
            (
                c["id"].as_u64().expect("id"),
                c["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until pull request `number` has berth's comment and it holds `needle`; returns it.
async fn comment_with(h: &Host, number: u64, needle: &str) -> (u64, String) {
    let found = eventually(Duration::from_secs(90), || async {
        comments(h, number)
            .into_iter()
            .find(|(_, body)| body.contains("<!-- berth:preview -->") && body.contains(needle))
    })
    .await;
    found.unwrap_or_else(|| {
        panic!(
            "no preview comment on #{number} with {needle:?}; Gitea holds {:?}",
            comments(h, number)
        )
    })
}

/// Waits for the status `context` on `sha` and returns (state, description, target_url).
async fn status_of(h: &Host, sha: &str, context: &str) -> (String, String, String) {
    let found = eventually(Duration::from_secs(90), || async {
        h.gitea
            .statuses("web", sha)
            .into_iter()
            .find(|s| s.0 == context)
            .map(|s| (s.1, s.2, s.3))
    })
    .await;
    found.unwrap_or_else(|| {
        panic!(
            "no status {context} on {sha}: {:?}",
            h.gitea.statuses("web", sha)
        )
    })
}

/// Waits until the sync's record reads Synced at `revision`.
async fn synced(h: &Host, sync: &str, revision: &str) {
    let ok = eventually(Duration::from_secs(60), || async {
        let records: Api<ConfigMap> = Api::namespaced(h.client.clone(), &h.berth_ns.name);
        let cm = records
            .get_opt(&format!("berth-sync-{sync}"))
            .await
            .ok()??;
        let a = cm.metadata.annotations.unwrap_or_default();
        (a.get("berth.dev/revision").map(String::as_str) == Some(revision)
            && a.get("berth.dev/status").map(String::as_str) == Some("Synced"))
        .then_some(())
    })
    .await;
    assert!(
        ok.is_some(),
        "sync {sync} did not become Synced at {revision}"
    );
}

/// The resourceVersion of every ConfigMap, Secret and Deployment in `ns`, by kind and name.
async fn versions(client: &kube::Client, ns: &str) -> BTreeMap<String, String> {
    let mut out = versions_of::<ConfigMap>(client, ns, "ConfigMap").await;
    out.extend(versions_of::<Secret>(client, ns, "Secret").await);
    out.extend(versions_of::<Deployment>(client, ns, "Deployment").await);
    out
}

/// The resourceVersion of every `K` in `ns`, by `kind/name`.
async fn versions_of<K>(client: &kube::Client, ns: &str, kind: &str) -> BTreeMap<String, String>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default()).await.expect("list");
    list.items
        .into_iter()
        .map(|o| {
            let m = o.meta();
            let name = m.name.clone().unwrap_or_default();
            (
                format!("{kind}/{name}"),
                m.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// How many pull request heads berth's previews counted with `result`.
fn previews_counted(base: &str, result: &str) -> f64 {
    let needle = format!("berth_previews_total{{repository=\"web\",result=\"{result}\"}} ");
    metrics(base)
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_pull_request_gets_one_comment_edited_on_every_push_and_a_status() {
    let h = host().await;
    let app = namespace(&h.client, &unique("app")).await;
    h.repo
        .write("deploy/web.yaml", &deployment(&app.name, 1))
        .write(
            "deploy/settings.yaml",
            &config_map(&app.name, "settings", "from-git"),
        );
    let first = h.repo.commit("web");
    h.gitea.push(&h.repo, "web");
    let syncs = format!(
        "  - {{name: web, repository: web, path: deploy, namespace: {}, preview: true}}\n",
        app.name
    );
    let berth = Berth::new(&h.berth_ns.name, &mapping(&h, &syncs));
    let (agent, base, admin) = h.agent_with(&berth, |_| {});
    synced(&h, "web", &first).await;
    h.hook(&base).await;

    // the live cluster differs from git: a hand edit the preview must show
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), &app.name);
    cms.patch(
        "settings",
        &PatchParams::apply("hand-edit").force(),
        &Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings"}, "data": {"value": "by-hand"}})),
    )
    .await
    .expect("hand edit");
    let before = versions(&h.client, &app.name).await;

    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: token, namespace: {}}}\nstringData: {{token: s3cr3t-value}}\n",
        app.name
    );
    let head = push_files(
        &h,
        "scale",
        &[
            ("deploy/web.yaml", deployment(&app.name, 3)),
            ("deploy/token.yaml", secret),
        ],
    )
    .await;
    let number = h.open_pull_request("scale");
    let (id, body) = comment_with(&h, number, &head[..7]).await;
    assert!(
        body.contains("replicas: 3") && body.contains("replicas: 1"),
        "{body}"
    );
    assert!(
        body.contains(&format!("create <code>{}/Secret/token</code>", app.name)),
        "{body}"
    );
    assert!(
        !body.contains("s3cr3t-value"),
        "the Secret's value shows: {body}"
    );
    assert!(
        body.contains("by-hand"),
        "the hand edit does not show: {body}"
    );
    assert!(
        body.contains(&format!("{EXTERNAL}/previews/web/{number}")),
        "{body}"
    );
    let (state, description, url) = status_of(&h, &head, "berth/preview/web").await;
    assert_eq!(state, "success", "{description}");
    assert!(
        description.contains("to create") && description.contains("to update"),
        "{description}"
    );
    assert_eq!(url, format!("{EXTERNAL}/previews/web/{number}"));
    // the dashboard's page shows it in full
    let (code, page) = common::http("GET", &format!("{admin}/previews/web/{number}"), &[], b"");
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains(&format!("Preview of web #{number}")),
        "{page}"
    );
    // in a browser: every object's diff folded, the Secret masked, nothing serious for axe
    let mut browser = common::browser::Browser::start();
    assert_eq!(browser.goto(&format!("{admin}/previews/web/{number}")), 200);
    assert_eq!(browser.count("details"), 3, "{}", browser.text("main"));
    let main = browser.text("main");
    assert!(
        main.contains("Secret/token") && !main.contains("s3cr3t-value"),
        "{main}"
    );
    browser.eval("document.querySelectorAll('details').forEach(d => d.open = true)");
    browser.screenshot("docs/screenshots/preview.png");
    let serious = browser.serious_violations();
    assert!(serious.is_empty(), "preview page: {serious:#?}");
    // nothing was written: no resourceVersion moved, no Secret was made
    assert_eq!(versions(&h.client, &app.name).await, before);

    // the CLI previews the same head: differences, so exit 1
    let out = berth.run(&["diff", "--revision", &head]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("web: applies cleanly at"), "{text}");
    assert!(
        text.contains("replicas: 3") && !text.contains("s3cr3t-value"),
        "{text}"
    );

    // a second push edits the same comment
    let second = push_files(
        &h,
        "scale",
        &[("deploy/web.yaml", deployment(&app.name, 4))],
    )
    .await;
    let (again, body) = comment_with(&h, number, &second[..7]).await;
    assert_eq!(again, id, "a second comment was posted");
    assert!(body.contains("replicas: 4"), "{body}");

    // after a restart the comment is found by its marker, and a third push still edits it
    drop(agent);
    let (_agent, _, _) = h.agent_with(&berth, |_| {});
    // the new agent's first pass applies main again, undoing the hand edit (the sync's own
    // work); the preview writes nothing from there on either
    let reapplied = eventually(Duration::from_secs(60), || async {
        let cm = cms.get("settings").await.ok()?;
        (cm.data?.get("value")? == "from-git").then_some(())
    })
    .await;
    assert!(
        reapplied.is_some(),
        "the restarted agent did not apply main"
    );
    let before = versions(&h.client, &app.name).await;
    let third = push_files(
        &h,
        "scale",
        &[("deploy/web.yaml", deployment(&app.name, 5))],
    )
    .await;
    let (again, body) = comment_with(&h, number, &third[..7]).await;
    assert_eq!(again, id, "a comment was posted after the restart");
    assert!(body.contains("replicas: 5"), "{body}");
    let ours: Vec<_> = comments(&h, number)
        .into_iter()
        .filter(|(_, b)| b.contains("<!-- berth:preview -->"))
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(versions(&h.client, &app.name).await, before);
}

/// A ServiceAccount `deployer` in `ns` that may manage ConfigMaps, Secrets and Deployments,
/// and nothing else.
async fn deployer(client: &kube::Client, ns: &str) {
    let verbs = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    let rules = serde_json::json!([
        {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": verbs},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": verbs}]);
    common::account_with_rules(client, ns, "deployer", rules).await;
}

#[tokio::test]
async fn what_would_fail_fails_the_status_and_the_comment_names_each_problem() {
    let h = host().await;
    let app = namespace(&h.client, &unique("app")).await;
    deployer(&h.client, &app.name).await;
    h.repo
        .write("deploy/web.yaml", &deployment(&app.name, 1))
        .write(
            "shared/shared.yaml",
            &config_map(&app.name, "shared", "theirs"),
        );
    let first = h.repo.commit("web and shared");
    h.gitea.push(&h.repo, "web");
    let syncs = format!(
        "  - {{name: web, repository: web, path: deploy, namespace: {ns}, serviceAccount: deployer, preview: true}}
  - {{name: other, repository: web, path: shared, namespace: {ns}}}\n",
        ns = app.name
    );
    let berth = Berth::new(&h.berth_ns.name, &mapping(&h, &syncs));
    let (_agent, base, _) = h.agent_with(&berth, |_| {});
    synced(&h, "web", &first).await;
    synced(&h, "other", &first).await;
    h.hook(&base).await;
    let before = versions(&h.client, &app.name).await;

    let typo = deployment(&app.name, 2).replace("  replicas: 2", "  replicaz: 2");
    let role = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: reader, namespace: {}}}\nrules: []\n",
        app.name
    );
    let head = push_files(
        &h,
        "broken",
        &[
            ("deploy/web.yaml", typo),
            (
                "deploy/shared.yaml",
                config_map(&app.name, "shared", "mine"),
            ),
            ("deploy/role.yaml", role),
        ],
    )
    .await;
    let number = h.open_pull_request("broken");
    let (_, body) = comment_with(&h, number, &head[..7]).await;
    assert!(body.contains("❌ 3 problems"), "{body}");
    assert!(
        body.contains("replicaz"),
        "the typo'd field is not named: {body}"
    );
    assert!(
        body.contains("deploy/web.yaml"),
        "the typo's file is not named: {body}"
    );
    assert!(
        body.contains("belongs to sync \"other\""),
        "the other sync's object is not named: {body}"
    );
    assert!(
        body.contains("Role") && body.contains("reader"),
        "the Role is not named: {body}"
    );
    assert!(
        body.contains("forbidden"),
        "what the account may not do is not said: {body}"
    );
    let (state, description, _) = status_of(&h, &head, "berth/preview/web").await;
    assert_eq!(state, "failure", "{description}");
    assert!(description.starts_with("would fail: "), "{description}");
    // the CLI gives the same preview for the pull request's ref, and exits 2
    let out = berth.run(&[
        "diff",
        "web",
        "--revision",
        &format!("refs/pull/{number}/head"),
    ]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("web: would fail at"), "{text}");
    for needle in ["replicaz", "belongs to sync \"other\"", "reader"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert_eq!(versions(&h.client, &app.name).await, before);
}

#[tokio::test]
async fn untouched_and_unpreviewed_syncs_get_nothing_and_a_long_diff_is_cut() {
    let h = host().await;
    let app = namespace(&h.client, &unique("app")).await;
    h.repo
        .write(
            "deploy/settings.yaml",
            &config_map(&app.name, "settings", "1"),
        )
        .write("quiet/quiet.yaml", &config_map(&app.name, "quiet", "1"));
    let first = h.repo.commit("two syncs");
    h.gitea.push(&h.repo, "web");
    let syncs = format!(
        "  - {{name: web, repository: web, path: deploy, namespace: {ns}, preview: true}}
  - {{name: quiet, repository: web, path: quiet, namespace: {ns}}}\n",
        ns = app.name
    );
    let berth = Berth::new(&h.berth_ns.name, &mapping(&h, &syncs));
    let (_agent, base, _) = h.agent_with(&berth, |_| {});
    synced(&h, "web", &first).await;
    h.hook(&base).await;

    // a pull request that touches no sync, and one that touches only a sync without preview
    let readme = push_files(&h, "docs", &[("README.md", "# docs\n".to_owned())]).await;
    let docs = h.open_pull_request("docs");
    let quiet = push_files(
        &h,
        "quiet",
        &[("quiet/quiet.yaml", config_map(&app.name, "quiet", "2"))],
    )
    .await;
    let untouched = h.open_pull_request("quiet");
    let counted = eventually(Duration::from_secs(90), || async {
        (previews_counted(&base, "untouched") >= 2.0).then_some(())
    })
    .await;
    assert!(
        counted.is_some(),
        "berth did not look at both pull requests"
    );
    for (n, sha) in [(docs, &readme), (untouched, &quiet)] {
        assert!(comments(&h, n).is_empty(), "#{n} got a comment");
        assert!(h.gitea.statuses("web", sha).is_empty(), "#{n} got a status");
    }

    // a diff of 3,000 lines: folded, cut below Gitea's limit, with a link to the rest
    let data: String = (0..3000)
        .map(|i| format!("  key-{i:04}: a-value-long-enough-to-count-{i:04}\n"))
        .collect();
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big, namespace: {}}}\ndata:\n{data}",
        app.name
    );
    let head = push_files(
        &h,
        "big",
        &[
            ("deploy/big.yaml", big),
            (
                "deploy/settings.yaml",
                config_map(&app.name, "settings", "2"),
            ),
        ],
    )
    .await;
    let number = h.open_pull_request("big");
    let (_, body) = comment_with(&h, number, &head[..7]).await;
    assert!(
        body.chars().count() < 65_536,
        "{} characters",
        body.chars().count()
    );
    assert!(body.contains("<details>"), "{}", &body[..500]);
    assert!(
        body.contains("cut at the host's limit"),
        "{}",
        &body[body.len() - 500..]
    );
    assert!(
        body.contains(&format!("{EXTERNAL}/previews/web/{number}")),
        "{}",
        &body[body.len() - 500..]
    );
    let (state, _, _) = status_of(&h, &head, "berth/preview/web").await;
    assert_eq!(state, "success");
}
