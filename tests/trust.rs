//! What berth promises a platform team that hands it cluster-admin, tried against a real API
//! server: it deletes only what it owns, adopts nothing silently, never prunes to empty by
//! accident, reports the state it is in, refuses hostile values without panicking, repairs its
//! own mirrors and leaks no credentials.

mod common;

use std::time::Duration;

use common::{App, Berth, Repo, client, mapping, namespace, status, text, unique};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn config_map(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n"
    )
}

fn annotations(cm: &ConfigMap) -> std::collections::BTreeMap<String, String> {
    cm.metadata.annotations.clone().unwrap_or_default()
}

async fn reasons(client: &kube::Client, ns: &str) -> Vec<(String, String)> {
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn an_object_named_with_a_colon_syncs_prunes_and_keeps_status_true() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app_ns = unique("app");
    let role = format!("system:{}", unique("test"));
    let repo = Repo::new();
    repo.write("apps/ns.yaml", &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {app_ns}\n"))
        .write("apps/cm.yaml", &config_map("settings", "a"))
        .write(
            "apps/role.yaml",
            &format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: \"{role}\"\nrules: []\n"
            ),
        );
    repo.commit("with a colon");
    let berth = Berth::new(
        &berth_ns.name,
        &mapping(&repo.url(), "web", "apps", &app_ns, ""),
    );
    common::succeeds(&berth, &["sync"], "3 created");
    let roles: Api<ClusterRole> = Api::all(client.clone());
    assert!(roles.get_opt(&role).await.expect("get").is_some());
    let st = status(&client, &berth_ns.name, "web").await;
    assert_eq!(annotations(&st)["berth.dev/status"], "Synced");
    assert_eq!(
        st.data.unwrap_or_default().len(),
        3,
        "all three in the inventory"
    );

    repo.remove("apps/role.yaml");
    let sha = repo.commit("drop the role");
    common::succeeds(&berth, &["sync"], "1 pruned");
    let gone = common::eventually(Duration::from_secs(10), || async {
        roles
            .get_opt(&role)
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;
    assert!(gone.is_some(), "{role} was not pruned");
    let st = status(&client, &berth_ns.name, "web").await;
    assert_eq!(annotations(&st)["berth.dev/status"], "Synced");
    assert_eq!(annotations(&st)["berth.dev/revision"], sha);
    let _ = client_cleanup_namespace(&client, &app_ns).await;
}

async fn client_cleanup_namespace(client: &kube::Client, ns: &str) -> Option<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    api.delete(ns, &DeleteParams::background())
        .await
        .ok()
        .map(drop)
}

#[tokio::test]
async fn a_second_sync_declaring_an_owned_object_fails_and_a_move_keeps_the_uid() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app = namespace(&client, &unique("app")).await;
    let repo = Repo::new();
    repo.write("a/shared.yaml", &config_map("shared", "from-a"))
        .write("a/own.yaml", &config_map("own-a", "a"))
        .write("b/shared.yaml", &config_map("shared", "from-b"))
        .write("b/own.yaml", &config_map("own-b", "b"));
    repo.commit("both declare shared");
    let berth = Berth::new(
        &berth_ns.name,
        &format!(
            "{}  - name: second\n    repository: config\n    path: b\n    namespace: {}\n    selfHeal: true\n",
            mapping(&repo.url(), "first", "a", &app.name, "    selfHeal: true\n"),
            app.name
        ),
    );
    let out = berth.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout.contains("second: Failed")
            && stdout.contains(&format!("{}/ConfigMap/shared", app.name))
            && stdout.contains("\"first\"")
            && stdout.contains("\"second\""),
        "{}",
        text(&out)
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &app.name);
    let shared = cms.get("shared").await.expect("shared");
    let uid = shared.metadata.uid.clone();
    let version = shared.metadata.resource_version.clone();
    assert_eq!(shared.data.clone().unwrap_or_default()["value"], "from-a");
    assert!(
        reasons(&client, &berth_ns.name)
            .await
            .iter()
            .any(|(r, m)| r == "SyncFailed" && m.contains("shared") && m.contains("first")),
        "a SyncFailed Event names the object and the owner"
    );
    // nothing flip-flops: the owner keeps it, pass after pass (four more fetches: three
    // passes of both syncs)
    let (_agent, base) = berth.agent();
    common::more_fetches(&base, "config", 4).await;
    let again = cms.get("shared").await.expect("shared");
    assert_eq!(
        again.metadata.resource_version, version,
        "the object was rewritten"
    );
    drop(_agent);

    // move it from first to second in one commit: no delete, the same object
    repo.remove("a/shared.yaml");
    repo.commit("shared moves to second");
    common::succeeds(&berth, &["sync"], "second: Synced");
    let moved = cms.get("shared").await.expect("shared still exists");
    assert_eq!(
        moved.metadata.uid, uid,
        "the object was deleted and created again"
    );
    let labels = moved.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["berth.dev/sync"], "second");
    assert_eq!(moved.data.clone().unwrap_or_default()["value"], "from-b");
    let first = status(&client, &berth_ns.name, "first").await;
    assert!(
        !first
            .data
            .unwrap_or_default()
            .keys()
            .any(|k| k.ends_with("_shared")),
        "first still lists shared in its inventory"
    );

    // and back again, the other way round in mapping order
    repo.write("a/shared.yaml", &config_map("shared", "from-a"));
    repo.remove("b/shared.yaml");
    repo.commit("shared moves back to first");
    common::succeeds(&berth, &["sync"], "first: Synced");
    let back = cms.get("shared").await.expect("shared still exists");
    assert_eq!(back.metadata.uid, uid);
    assert_eq!(
        back.metadata.labels.unwrap_or_default()["berth.dev/sync"],
        "first"
    );
}

#[tokio::test]
async fn adopting_a_hand_made_object_is_shown_announced_and_can_be_refused() {
    let App {
        client,
        berth_ns,
        app_ns: app,
        repo,
        berth,
    } = App::sync("web", "apps", "").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &app.name);
    for name in ["hand", "kept"] {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": name}, "data": {"value": "by hand"}
        }))
        .expect("configmap");
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }
    repo.write("apps/hand.yaml", &config_map("hand", "from-git"));
    repo.commit("declare hand");
    let dry = common::succeeds(&berth, &["sync", "--dry-run"], "adopt");
    assert!(
        String::from_utf8_lossy(&dry.stdout)
            .contains(&format!("adopt     {}/ConfigMap/hand", app.name)),
        "{}",
        text(&dry)
    );
    let diff = berth.run(&["diff"]);
    assert_eq!(diff.status.code(), Some(1), "{}", text(&diff));
    assert!(
        String::from_utf8_lossy(&diff.stdout).contains("from-git"),
        "{}",
        text(&diff)
    );
    common::succeeds(&berth, &["sync"], "1 adopted");
    let hand = cms.get("hand").await.expect("hand");
    assert_eq!(hand.data.unwrap_or_default()["value"], "from-git");
    assert!(
        reasons(&client, &berth_ns.name)
            .await
            .iter()
            .any(|(r, m)| r == "Adopted" && m.contains("hand")),
        "an Adopted Event"
    );

    // a sync that may not adopt refuses, and leaves the object alone
    let refusing = Berth::new(
        &berth_ns.name,
        &mapping(
            &repo.url(),
            "strict",
            "more",
            &app.name,
            "    adopt: false\n",
        ),
    );
    repo.write("more/kept.yaml", &config_map("kept", "from-git"));
    repo.commit("declare kept");
    let out = refusing.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("adopt: false"),
        "{}",
        text(&out)
    );
    let kept = cms.get("kept").await.expect("kept");
    assert_eq!(kept.data.unwrap_or_default()["value"], "by hand");
}

#[tokio::test]
async fn removing_every_manifest_prunes_nothing_unless_allowed_and_namespaces_with_strangers_stay()
{
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app_ns = unique("app");
    let repo = Repo::new();
    repo.write(
        "apps/ns.yaml",
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {app_ns}\n"),
    )
    .write("apps/a.yaml", &config_map("a", "1"))
    .write("apps/README.md", "docs");
    repo.commit("two objects");
    let berth = Berth::new(
        &berth_ns.name,
        &mapping(&repo.url(), "web", "apps", &app_ns, ""),
    );
    common::succeeds(&berth, &["sync"], "2 created");
    // someone else's object in the sync's namespace
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &app_ns);
    let stranger: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "stranger"}})).expect("cm");
    cms.create(&PostParams::default(), &stranger)
        .await
        .expect("create");

    repo.remove("apps/ns.yaml").remove("apps/a.yaml");
    repo.commit("only the README is left");
    let out = berth.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("allowEmpty"),
        "{}",
        text(&out)
    );
    assert!(
        cms.get_opt("a").await.expect("get").is_some(),
        "a was pruned"
    );

    let allowing = Berth::new(
        &berth_ns.name,
        &mapping(
            &repo.url(),
            "web",
            "apps",
            &app_ns,
            "    allowEmpty: true\n",
        ),
    );
    let out = allowing.run(&["sync"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout.contains("1 pruned") && stdout.contains("1 kept"),
        "{}",
        text(&out)
    );
    let pruned = common::eventually(Duration::from_secs(10), || async {
        cms.get_opt("a").await.expect("get").is_none().then_some(())
    })
    .await;
    assert!(pruned.is_some(), "a was not pruned");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = namespaces.get(&app_ns).await.expect("the namespace stays");
    assert!(
        ns.metadata.deletion_timestamp.is_none(),
        "the namespace is being deleted"
    );
    let st = status(&client, &berth_ns.name, "web").await;
    assert!(
        annotations(&st)["berth.dev/message"].contains("stranger")
            || reasons(&client, &berth_ns.name)
                .await
                .iter()
                .any(|(_, m)| m.contains("stranger")),
        "nothing says which object keeps the namespace"
    );
    let _ = client_cleanup_namespace(&client, &app_ns).await;
}

#[tokio::test]
async fn a_failed_status_write_fails_the_pass_and_drift_without_self_heal_shows_out_of_sync() {
    let App {
        client,
        berth_ns,
        app_ns: app,
        repo,
        berth,
    } = App::sync("web", "apps", "").await;
    repo.write("apps/a.yaml", &config_map("a", "1"));
    repo.commit("one object");
    common::succeeds(&berth, &["sync"], "1 created");

    // drift on a sync without selfHeal: the agent's periodic check reports it, and its end
    let (agent, url) = berth.agent();
    let address = url.trim_start_matches("http://").to_owned();
    let first_pass = common::eventually(Duration::from_secs(20), || async {
        std::net::TcpStream::connect(&address).ok()?;
        let (_, metrics) = common::http("GET", &format!("{url}/metrics"), &[], b"");
        (common::metric(
            &metrics,
            "berth_syncs_total{sync=\"web\",result=\"synced\"}",
        ) >= 1.0)
            .then_some(())
    })
    .await;
    assert!(first_pass.is_some(), "the agent did not run its first pass");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &app.name);
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(&json!({"data": {"value": "hand"}})),
    )
    .await
    .expect("edit");
    let out_of_sync = common::eventually(Duration::from_secs(15), || async {
        let st = status(&client, &berth_ns.name, "web").await;
        (annotations(&st)["berth.dev/status"] == "OutOfSync").then_some(())
    })
    .await;
    assert!(out_of_sync.is_some(), "drift was never shown");
    assert_eq!(
        cms.get("a").await.expect("a").data.unwrap_or_default()["value"],
        "hand",
        "without selfHeal the drift stays"
    );
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(&json!({"data": {"value": "1"}})),
    )
    .await
    .expect("revert");
    let synced = common::eventually(Duration::from_secs(15), || async {
        let st = status(&client, &berth_ns.name, "web").await;
        (annotations(&st)["berth.dev/status"] == "Synced").then_some(())
    })
    .await;
    assert!(synced.is_some(), "the status did not return to Synced");
    drop(agent);

    // a status record that cannot be written: the pass fails, with an Event
    let records: Api<ConfigMap> = Api::namespaced(client.clone(), &berth_ns.name);
    records
        .patch(
            "berth-sync-web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"immutable": true})),
        )
        .await
        .expect("make the record immutable");
    repo.write("apps/a.yaml", &config_map("a", "2"));
    repo.commit("change a");
    let out = berth.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("web: Failed"),
        "{}",
        text(&out)
    );
    assert!(
        reasons(&client, &berth_ns.name)
            .await
            .iter()
            .any(|(r, m)| r == "SyncFailed" && m.contains("status")),
        "no SyncFailed Event for the status write"
    );
    let shown = berth.run(&["status"]);
    let table = String::from_utf8_lossy(&shown.stdout).to_string();
    let row = table
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_default();
    assert!(
        row.contains("Failed") && row.contains("failed to write status"),
        "{}",
        text(&shown)
    );
    let st = status(&client, &berth_ns.name, "web").await;
    assert_eq!(
        st.data.unwrap_or_default().len(),
        1,
        "the inventory survived"
    );
}

#[tokio::test]
async fn hostile_intervals_are_errors_not_panics_even_as_live_edits() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let repo = Repo::new();
    repo.write("apps/a.yaml", &config_map("a", "1"));
    repo.commit("one");
    let good = mapping(&repo.url(), "web", "apps", "default", "");
    for (interval, needle) in [
        ("18446744073709551615s1s", "too long"),
        ("18446744073709551615s", "at most 24h"),
        ("213503982334602d", "too long"),
        ("25h", "at most 24h"),
        ("1ms", "at least 1s"),
        ("-5s", "invalid duration"),
    ] {
        let berth = Berth::new(
            &berth_ns.name,
            &good.replace("interval: 1s", &format!("interval: {interval}")),
        );
        let out = berth.run(&["validate"]);
        assert_eq!(out.status.code(), Some(2), "{interval}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            stderr.contains(needle) && stderr.contains("berth.yaml:"),
            "{interval}: {}",
            text(&out)
        );
    }
    // made live, an overflowing interval is refused and the agent keeps running
    let berth = Berth::new(&berth_ns.name, &good);
    let (mut agent, url) = berth.agent();
    let address = url.trim_start_matches("http://").to_owned();
    let ready = common::eventually(Duration::from_secs(20), || async {
        std::net::TcpStream::connect(&address).ok()?;
        (common::http("GET", &format!("{url}/healthz"), &[], b"").0 == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "the agent did not start");
    std::fs::write(
        &berth.mapping,
        good.replace("interval: 1s", "interval: 18446744073709551615s1s"),
    )
    .expect("edit");
    // the agent refuses the edit (its record says so) and keeps running
    let agents: Api<ConfigMap> = Api::namespaced(client.clone(), &berth_ns.name);
    let refused = common::eventually(Duration::from_secs(20), || async {
        let a = agents
            .get_opt("berth-agent")
            .await
            .ok()??
            .metadata
            .annotations?;
        (a.get("berth.dev/config-status")? == "Invalid").then_some(())
    })
    .await;
    assert!(refused.is_some(), "the edit was not refused");
    assert!(
        agent.0.try_wait().expect("wait").is_none(),
        "the agent exited"
    );
    assert_eq!(
        common::http("GET", &format!("{url}/healthz"), &[], b"").0,
        200
    );
}

#[tokio::test]
async fn a_stale_ref_lock_in_the_mirror_is_removed_and_the_fetch_goes_on() {
    let App {
        client,
        berth_ns,
        app_ns: _app,
        repo,
        berth,
    } = App::sync("web", "apps", "").await;
    repo.write("apps/a.yaml", &config_map("a", "1"));
    repo.commit("one");
    common::succeeds(&berth, &["sync"], "1 created");
    let mirror = std::fs::read_dir(berth.cache.path())
        .expect("cache")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "git"))
        .expect("a mirror");
    let lock = mirror.join("refs/heads/main.lock");
    std::fs::create_dir_all(lock.parent().expect("parent")).expect("mkdir");
    std::fs::write(&lock, "0000000000000000000000000000000000000000\n").expect("plant a lock");
    // old enough that no fetch can still be holding it
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .expect("open")
        .set_modified(old)
        .expect("age the lock");
    repo.write("apps/a.yaml", &config_map("a", "2"));
    let sha = repo.commit("two");
    let out = common::succeeds(&berth, &["sync"], "1 configured");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stale"),
        "{}",
        text(&out)
    );
    let st = status(&client, &berth_ns.name, "web").await;
    assert_eq!(annotations(&st)["berth.dev/revision"], sha);
}

#[tokio::test]
async fn render_masks_secret_values_unless_asked() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let repo = Repo::new();
    repo.write(
        "apps/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  password: c3VwZXJzZWNyZXQ=\nstringData:\n  token: hunter2\n",
    );
    repo.commit("a secret");
    let berth = Berth::new(
        &berth_ns.name,
        &mapping(&repo.url(), "web", "apps", "default", ""),
    );
    let out = common::succeeds(&berth, &["render", "web"], "kind: Secret");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        !stdout.contains("c3VwZXJzZWNyZXQ=") && !stdout.contains("hunter2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("password") && stdout.contains("token"),
        "{stdout}"
    );
    let shown = common::succeeds(&berth, &["render", "web", "--show-secrets"], "hunter2");
    assert!(String::from_utf8_lossy(&shown.stdout).contains("c3VwZXJzZWNyZXQ="));
    drop(client);
}

/// A sync that applied one object, and a commit adding 300 more that no pass has applied yet.
struct Pending {
    client: kube::Client,
    berth_ns: common::NamespaceGuard,
    app: common::NamespaceGuard,
    repo: Repo,
    berth: Berth,
}

async fn three_hundred_pending() -> Pending {
    let App {
        client,
        berth_ns,
        app_ns: app,
        repo,
        berth,
    } = App::sync("web", "apps", "").await;
    repo.write("apps/keep.yaml", &config_map("keep", "1"));
    repo.commit("one object");
    common::succeeds(&berth, &["sync"], "1 created");
    for i in 0..300 {
        repo.write(
            &format!("apps/many/cm-{i:03}.yaml"),
            &config_map(&format!("cm-{i:03}"), "x"),
        );
    }
    repo.commit("three hundred more");
    Pending {
        client,
        berth_ns,
        app,
        repo,
        berth,
    }
}

#[tokio::test]
async fn a_pass_killed_mid_create_leaves_nothing_behind_once_the_commit_is_reverted() {
    let Pending {
        client,
        berth_ns: _berth_ns,
        app,
        repo,
        berth,
    } = three_hundred_pending().await;
    // slow enough to be cut off half way
    let mut child = common::ChildGuard(
        berth
            .command(&["--concurrency", "2", "sync"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("berth sync starts"),
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &app.name);
    let managed = ListParams::default().labels("berth.dev/sync=web");
    let started = common::eventually(Duration::from_secs(60), || async {
        let n = cms.list(&managed).await.expect("list").items.len();
        (n > 20).then_some(n)
    })
    .await;
    assert!(started.is_some(), "the pass never got going");
    child.0.kill().expect("SIGKILL");
    child.0.wait().expect("reaped");
    let applied = cms.list(&managed).await.expect("list").items.len();
    assert!(
        applied < 301,
        "the pass finished before it was killed ({applied} objects)"
    );

    repo.git(&["revert", "--no-edit", "HEAD"]);
    common::succeeds(&berth, &["sync"], "web: Synced");
    let left: Vec<String> = cms
        .list(&managed)
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(left, ["keep"], "objects of the reverted commit leaked");
}

/// Sends a signal to a process with kill(1).
fn signal(child: &std::process::Child, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {sig}");
}

/// The values of the ConfigMaps `cm-*` of a namespace.
async fn values(cms: &Api<ConfigMap>) -> std::collections::BTreeSet<String> {
    cms.list(&ListParams::default().labels("berth.dev/sync=web"))
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|c| c.data?.get("value").cloned())
        .collect()
}

#[tokio::test]
async fn a_leader_paused_past_its_lease_writes_nothing_when_it_wakes() {
    let App {
        client,
        berth_ns,
        app_ns: app,
        repo,
        berth,
    } = App::sync("web", "apps", "").await;
    let write_all = |value: &str| {
        for i in 0..300 {
            repo.write(
                &format!("apps/cm-{i:03}.yaml"),
                &config_map(&format!("cm-{i:03}"), value),
            );
        }
    };
    write_all("a");
    let first = repo.commit("a");
    let spawn = || {
        let run = ["--leader-elect", "--lease-duration", "3s"];
        let (child, base, _) = berth.agent_with(&["--concurrency", "2"], &run, |_| {});
        (child, base)
    };
    let revision = || async {
        let records: Api<ConfigMap> = Api::namespaced(client.clone(), &berth_ns.name);
        records
            .get_opt("berth-sync-web")
            .await
            .ok()
            .flatten()
            .and_then(|c| annotations(&c).get("berth.dev/revision").cloned())
    };
    let mut old_leader = spawn();
    let synced = common::eventually(Duration::from_secs(60), || async {
        (revision().await.as_deref() == Some(first.as_str())).then_some(())
    })
    .await;
    assert!(synced.is_some(), "the leader did not sync the first commit");
    let _standby = spawn();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &app.name);

    // the leader starts on b1 and is paused half way
    write_all("b1");
    let stale = repo.commit("b1");
    let midway = common::eventually(Duration::from_secs(30), || async {
        values(&cms).await.contains("b1").then_some(())
    })
    .await;
    assert!(midway.is_some(), "the leader never started on b1");
    signal(&old_leader.0.0, "-STOP");

    // the standby takes over and syncs a newer commit
    write_all("b2");
    let newer = repo.commit("b2");
    let taken = common::eventually(Duration::from_secs(60), || async {
        let all_b2 = values(&cms).await == std::collections::BTreeSet::from(["b2".to_owned()]);
        (all_b2 && revision().await.as_deref() == Some(newer.as_str())).then_some(())
    })
    .await;
    assert!(taken.is_some(), "the standby did not sync b2");

    // the old leader wakes: it finds its lease lost, aborts its work and only then stops
    // reporting ready; until then, nothing it does shows
    signal(&old_leader.0.0, "-CONT");
    let ready = |base: &str| common::http("GET", &format!("{base}/readyz"), &[], b"").0;
    let stood_down = common::eventually(Duration::from_secs(60), || async {
        let rev = revision().await;
        assert_ne!(
            rev.as_deref(),
            Some(stale.as_str()),
            "status went back to b1"
        );
        (ready(&old_leader.1) == 503).then_some(())
    })
    .await;
    assert!(stood_down.is_some(), "the woken leader still reports ready");
    assert_eq!(
        values(&cms).await,
        std::collections::BTreeSet::from(["b2".to_owned()]),
        "the woken leader wrote b1 over b2"
    );
    assert_eq!(revision().await.as_deref(), Some(newer.as_str()));
    old_leader.0.0.kill().ok();
}

/// Runs `berth ARGS` and returns its output with its peak RSS in KiB (Python's
/// `getrusage(RUSAGE_CHILDREN)`, which the standard library does not expose).
fn run_measured(berth: &Berth, args: &[&str]) -> (std::process::Output, u64) {
    let cmd = berth.command(args);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut argv = vec![program];
    argv.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    let script = "import json, resource, subprocess, sys\n\
        p = subprocess.run(json.loads(sys.argv[1]), capture_output=True)\n\
        sys.stdout.buffer.write(p.stdout)\n\
        sys.stderr.buffer.write(p.stderr)\n\
        sys.stderr.write('\\nmaxrss=%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
        sys.exit(p.returncode)\n";
    let mut python = std::process::Command::new("python3");
    python
        .arg("-c")
        .arg(script)
        .arg(serde_json::to_string(&argv).expect("json"));
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => python.env(k, v),
            None => python.env_remove(k),
        };
    }
    let out = python.output().expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rss = stderr
        .rsplit("maxrss=")
        .next()
        .and_then(|s| s.trim().parse().ok())
        .expect("maxrss reported");
    (out, rss)
}

fn crd(plural: &str, fields: usize) -> String {
    let mut props = String::new();
    for i in 0..fields {
        props.push_str(&format!(
            "                f{i}:\n                  type: string\n                  description: field {i} of {plural}, described at length the way generated CRDs describe every field, with the defaults, the constraints and a pointer to the upstream documentation\n"
        ));
    }
    format!(
        "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {plural}.big.berth.dev\nspec:\n  group: big.berth.dev\n  names:\n    kind: K{plural}\n    plural: {plural}\n  scope: Namespaced\n  versions:\n    - name: v1\n      served: true\n      storage: true\n      schema:\n        openAPIV3Schema:\n          type: object\n          properties:\n            spec:\n              type: object\n              properties:\n{props}"
    )
}

#[tokio::test]
async fn a_huge_manifest_is_refused_by_size_and_a_large_real_install_file_syncs() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let repo = Repo::new();
    // 50 MB of one ConfigMap's data
    let mut huge =
        String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: huge\ndata:\n");
    let line = format!("  k{{}}: {}\n", "x".repeat(100));
    let mut i = 0;
    while huge.len() < 50 * 1024 * 1024 {
        huge.push_str(&line.replace("{}", &i.to_string()));
        i += 1;
    }
    repo.write("huge/huge.yaml", &huge);
    // ~12 MB of CustomResourceDefinitions in one file, ~300k YAML nodes
    let suffix = unique("c").replace('-', "");
    let crds: String = (0..24)
        .map(|n| crd(&format!("k{n}{suffix}"), 2_100))
        .collect();
    assert!(crds.len() > 11 * 1024 * 1024, "{} bytes", crds.len());
    repo.write("crds/install.yaml", &crds);
    repo.commit("a huge file and a large one");
    let mapping = format!(
        "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: config\n    url: {}\n    interval: 0\nsyncs:\n  - name: huge\n    repository: config\n    path: huge\n    namespace: default\n  - name: crds\n    repository: config\n    path: crds\n",
        repo.url()
    );
    let berth = Berth::new(&berth_ns.name, &mapping);
    let (out, rss) = run_measured(&berth, &["sync", "huge"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout.contains("huge/huge.yaml is 50.0 MiB, above the limit of 32.0 MiB"),
        "{}",
        text(&out)
    );
    assert!(rss < 128 * 1024, "peak RSS {rss} KiB");

    let out = common::succeeds(&berth, &["sync", "crds"], "24 created");
    drop(out);
    let crd_api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for n in 0..24 {
        let name = format!("k{n}{suffix}.big.berth.dev");
        assert!(
            crd_api.get_opt(&name).await.expect("get").is_some(),
            "{name}"
        );
        crd_api.delete(&name, &DeleteParams::default()).await.ok();
    }
}

#[tokio::test]
async fn a_token_in_a_repository_url_reaches_no_workflow_status_event_or_log() {
    const TOKEN: &str = "glpat-berth-trust-4e1f9a";
    let client = client().await;
    common::install_workflow_crds(&client).await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app = namespace(&client, &unique("app")).await;
    let repo = Repo::new();
    repo.write("apps/cm.yaml", &config_map("a", "1")).write(
        ".argo/workflow.yaml",
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  generateName: ci-\nspec:\n  entrypoint: main\n  templates:\n    - name: main\n      container: {image: alpine}\n",
    );
    repo.commit("config and ci");
    let server = common::GitServer::start(&repo, "x-access-token", TOKEN);
    let url = server
        .url
        .replace("https://", &format!("https://x-access-token:{TOKEN}@"));
    let mapping = format!(
        "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: config\n    url: {url}\n    interval: 1s\nsyncs:\n  - name: web\n    repository: config\n    path: apps\n    namespace: {ns}\npipelines:\n  - name: ci\n    repository: config\n    namespace: {ns}\n",
        ns = app.name
    );
    let mut berth = Berth::new(&berth_ns.name, &mapping);
    berth.env.push(("SSL_CERT_FILE".into(), server.ca.clone()));
    // the log goes to a file: read while the agent runs, and a pipe never fills up
    let log = tempfile::NamedTempFile::new().expect("log file");
    let log_file = log.reopen().expect("log");
    let (mut agent, _, _) = berth.agent_with(&[], &[], |cmd| {
        cmd.env("RUST_LOG", "berth=debug").stderr(log_file);
    });
    let launched = common::eventually(Duration::from_secs(60), || async {
        let runs = common::workflows(&client, &app.name).await;
        let synced = status_of(&client, &berth_ns.name).await.is_some_and(|st| {
            annotations(&st).get("berth.dev/status").map(String::as_str) == Some("Synced")
        });
        (synced && !runs.is_empty()).then_some(runs)
    })
    .await
    .expect("a sync and a launch");
    for run in &launched {
        let text = serde_json::to_string(run).expect("json");
        assert!(
            !text.contains(TOKEN),
            "the Workflow carries the token: {text}"
        );
        assert!(
            text.contains(&server.url),
            "the repo parameter lost the URL: {text}"
        );
    }
    let records: Api<ConfigMap> = Api::namespaced(client.clone(), &berth_ns.name);
    for cm in records
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
    {
        let text = serde_json::to_string(&cm).expect("json");
        assert!(
            !text.contains(TOKEN),
            "a status record carries the token: {text}"
        );
    }
    let synced: Api<ConfigMap> = Api::namespaced(client.clone(), &app.name);
    let a = serde_json::to_string(&synced.get("a").await.expect("a")).expect("json");
    assert!(!a.contains(TOKEN), "a synced object carries the token: {a}");
    for (reason, message) in reasons(&client, &berth_ns.name).await {
        assert!(
            !message.contains(TOKEN),
            "{reason} Event carries the token: {message}"
        );
    }
    // the pass logs its end just after writing its status
    let read = || std::fs::read_to_string(log.path()).unwrap_or_default();
    let finished = common::eventually(Duration::from_secs(20), || async {
        read().contains("sync finished").then_some(())
    })
    .await;
    agent.0.kill().expect("stop");
    agent.0.wait().expect("reaped");
    let logs = read();
    assert!(finished.is_some(), "{logs}");
    assert!(!logs.contains(TOKEN), "the logs carry the token");
}

async fn status_of(client: &kube::Client, ns: &str) -> Option<ConfigMap> {
    let records: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    records.get_opt("berth-sync-web").await.ok().flatten()
}

#[tokio::test]
async fn a_pass_never_overwrites_status_written_while_it_ran() {
    let Pending {
        client,
        berth_ns,
        app,
        repo: _repo,
        berth,
    } = three_hundred_pending().await;
    let child = berth
        .command(&["--concurrency", "2", "sync"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("berth sync starts");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &app.name);
    let managed = ListParams::default().labels("berth.dev/sync=web");
    let started = common::eventually(Duration::from_secs(60), || async {
        (cms.list(&managed).await.expect("list").items.len() > 20).then_some(())
    })
    .await;
    assert!(started.is_some(), "the pass never got going");
    // another writer (a newer pass) records its status while this one still applies
    let records: Api<ConfigMap> = Api::namespaced(client.clone(), &berth_ns.name);
    let newer =
        json!({"metadata": {"annotations": {"berth.dev/message": "written by a newer pass"}}});
    records
        .patch(
            "berth-sync-web",
            &PatchParams::default(),
            &Patch::Merge(&newer),
        )
        .await
        .expect("write the record");
    let out = child.wait_with_output().expect("berth sync ends");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("written by another pass"),
        "{}",
        text(&out)
    );
    let st = status(&client, &berth_ns.name, "web").await;
    assert_eq!(
        annotations(&st)["berth.dev/message"],
        "written by a newer pass"
    );
}
