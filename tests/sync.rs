//! The sync core against a real API server: each test arranges a git repository and a
//! mapping, acts with the `berth` binary, and asserts on what the API server holds.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Berth, Repo, client, mapping, namespace, status, text, unique};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};

fn app(ns: &str) -> String {
    format!(
        "apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: nginx:1.25
          ports:
            - containerPort: 80
"
    )
}

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
    - port: 80
      targetPort: 80
";

/// Adds `<prefix>/<name>` → resourceVersion for every object of a kind in a namespace.
async fn collect_versions<K>(
    client: &kube::Client,
    ns: &str,
    prefix: &str,
    out: &mut BTreeMap<String, String>,
) where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    for o in api.list(&ListParams::default()).await.expect("list").items {
        let meta = o.meta();
        out.insert(
            format!("{prefix}/{}", meta.name.clone().unwrap_or_default()),
            meta.resource_version.clone().unwrap_or_default(),
        );
    }
}

/// What berth writes of every object in a namespace: the resourceVersion of ConfigMaps and
/// Services (no controller touches them), and of the Deployment (whose status the deployment
/// controller keeps writing, and those writes are not berth's) its generation, labels,
/// annotations and the time of berth's field-manager entry.
async fn versions(client: &kube::Client, app_ns: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    collect_versions::<ConfigMap>(client, app_ns, "cm", &mut out).await;
    collect_versions::<Service>(client, app_ns, "svc", &mut out).await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), app_ns);
    for d in deploys
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
    {
        let m = &d.metadata;
        let berth = m
            .managed_fields
            .iter()
            .flatten()
            .filter(|f| f.manager.as_deref() == Some("berth"))
            .map(|f| format!("{:?} {:?}", f.operation, f.time))
            .collect::<Vec<_>>();
        out.insert(
            format!("deploy/{}", m.name.clone().unwrap_or_default()),
            format!(
                "{:?} {:?} {:?} {berth:?}",
                m.generation, m.labels, m.annotations
            ),
        );
    }
    out
}

#[tokio::test]
async fn first_sync_applies_labels_annotations_and_status_then_resync_writes_nothing() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app_ns = unique("app");
    let repo = Repo::new();
    repo.write("apps/web/app.yaml", &app(&app_ns))
        .write("apps/web/svc/service.yml", SERVICE)
        .write("apps/web/README.md", "not a manifest");
    let sha = repo.commit("first");
    let berth = Berth::new(
        &berth_ns.name,
        &mapping(&repo.url(), "web", "apps/web", &app_ns, ""),
    );

    common::succeeds(&berth, &["sync"], "4 created");

    let deploys: Api<Deployment> = Api::namespaced(client.clone(), &app_ns);
    let d = deploys.get("web").await.expect("deployment applied");
    let labels = d.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "berth");
    assert_eq!(labels["berth.dev/sync"], "web");
    let annotations = d.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations["berth.dev/revision"], sha);
    assert_eq!(
        annotations["berth.dev/source"],
        format!("{}#apps/web", repo.url())
    );
    let managers: Vec<_> = d
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|f| f.manager.clone())
        .collect();
    assert!(managers.contains(&"berth".to_owned()), "{managers:?}");
    let svc: Api<Service> = Api::namespaced(client.clone(), &app_ns);
    assert!(svc.get("web").await.is_ok());

    let st = status(&client, &berth_ns.name, "web").await;
    let a = st.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(a["berth.dev/status"], "Synced");
    assert_eq!(a["berth.dev/revision"], sha);
    assert_eq!(a["berth.dev/health"], "Progressing");
    assert!(!a["berth.dev/last-sync"].is_empty());
    let inventory: Vec<_> = st.data.clone().unwrap_or_default().into_keys().collect();
    assert_eq!(
        inventory,
        [
            format!("_ConfigMap_{app_ns}_settings"),
            format!("_Namespace__{app_ns}"),
            format!("_Service_{app_ns}_web"),
            format!("apps_Deployment_{app_ns}_web"),
        ]
    );
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(client.clone(), &berth_ns.name);
    let reasons: Vec<_> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(reasons.contains(&"Synced".to_owned()), "{reasons:?}");

    // Acceptance 2: a second sync with no new commit performs zero writes.
    let mut before = versions(&client, &app_ns).await;
    before.insert(
        "status".into(),
        st.metadata.resource_version.clone().unwrap_or_default(),
    );
    common::succeeds(&berth, &["sync"], "0 created, 0 configured, 4 unchanged");
    let mut after = versions(&client, &app_ns).await;
    let st = status(&client, &berth_ns.name, "web").await;
    after.insert(
        "status".into(),
        st.metadata.resource_version.clone().unwrap_or_default(),
    );
    assert_eq!(before, after);
}

#[tokio::test]
async fn a_commit_updates_one_object_prunes_another_and_keeps_prune_disabled() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app_ns = unique("app");
    let repo = Repo::new();
    let kept = "apiVersion: v1
kind: ConfigMap
metadata:
  name: kept
  annotations: {berth.dev/prune: disabled}
data: {a: b}
";
    repo.write("app.yaml", &app(&app_ns))
        .write("svc.yaml", SERVICE)
        .write("kept.yaml", kept);
    let first = repo.commit("first");
    let berth = Berth::new(
        &berth_ns.name,
        &mapping(&repo.url(), "web", ".", &app_ns, ""),
    );
    let out = berth.run(&["sync"]);
    assert!(out.status.success(), "{}", text(&out));
    let before = versions(&client, &app_ns).await;

    repo.write(
        "app.yaml",
        &app(&app_ns).replace("greeting: hello", "greeting: bonjour"),
    )
    .remove("svc.yaml")
    .remove("kept.yaml");
    let second = repo.commit("change settings, drop service");
    let out = berth.run(&["sync"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 configured") && stdout.contains("1 pruned") && stdout.contains("1 kept"),
        "{}",
        text(&out)
    );

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &app_ns);
    let settings = cms.get("settings").await.expect("settings");
    assert_eq!(
        settings.data.clone().unwrap_or_default()["greeting"],
        "bonjour"
    );
    let a = settings.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(a["berth.dev/revision"], second);
    let svc: Api<Service> = Api::namespaced(client.clone(), &app_ns);
    let gone = common::eventually(Duration::from_secs(10), || async {
        svc.get_opt("web")
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;
    assert!(gone.is_some(), "service was not pruned");
    assert!(
        cms.get_opt("kept").await.expect("get").is_some(),
        "prune: disabled object was deleted"
    );

    // the untouched Deployment kept its resourceVersion and its revision annotation
    let after = versions(&client, &app_ns).await;
    assert_eq!(before["deploy/web"], after["deploy/web"]);
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), &app_ns);
    let d = deploys.get("web").await.expect("deployment");
    assert_eq!(
        d.metadata.annotations.unwrap_or_default()["berth.dev/revision"],
        first
    );
    let inventory = status(&client, &berth_ns.name, "web")
        .await
        .data
        .unwrap_or_default();
    assert_eq!(inventory.len(), 3, "{:?}", inventory.keys());
}

#[tokio::test]
async fn a_crd_and_its_custom_resource_sync_in_one_pass() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app_ns = unique("app");
    let group = format!("{}.example.com", unique("g"));
    let repo = Repo::new();
    repo.write(
        "crd.yaml",
        &format!(
            "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"
        ),
    )
    .write(
        "widget.yaml",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {app_ns}}}\n---\napiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: sprocket\nspec:\n  size: 3\n"
        ),
    );
    repo.commit("crd and widget");
    let berth = Berth::new(
        &berth_ns.name,
        &mapping(&repo.url(), "widgets", ".", &app_ns, ""),
    );
    common::succeeds(&berth, &["sync"], "3 created");
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&group, "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &app_ns, &ar);
    let w = widgets.get("sprocket").await.expect("widget");
    assert_eq!(w.data["spec"]["size"], 3);
    let out = berth.run(&["diff"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test]
async fn malformed_yaml_fails_with_file_and_line_and_changes_nothing() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app_ns = unique("app");
    let repo = Repo::new();
    repo.write("app.yaml", &app(&app_ns))
        .write("svc.yaml", SERVICE);
    let good = repo.commit("good");
    let berth = Berth::new(
        &berth_ns.name,
        &mapping(&repo.url(), "web", ".", &app_ns, ""),
    );
    assert!(berth.run(&["sync"]).status.success());
    let before = versions(&client, &app_ns).await;

    repo.write(
        "app.yaml",
        &app(&app_ns).replace("greeting: hello", "greeting: changed"),
    )
    .remove("svc.yaml")
    .write(
        "broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata: [unclosed\n",
    );
    repo.commit("broken");
    let out = berth.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("broken.yaml:5"),
        "{}",
        text(&out)
    );

    let st = status(&client, &berth_ns.name, "web").await;
    let a = st.metadata.annotations.unwrap_or_default();
    assert_eq!(a["berth.dev/status"], "Failed");
    assert!(
        a["berth.dev/message"].contains("broken.yaml:5"),
        "{}",
        a["berth.dev/message"]
    );
    assert_eq!(
        a["berth.dev/revision"], good,
        "revision stays at the last synced commit"
    );
    assert_eq!(st.data.unwrap_or_default().len(), 4, "inventory kept");
    assert_eq!(
        before,
        versions(&client, &app_ns).await,
        "nothing applied, nothing pruned"
    );
}

#[tokio::test]
async fn diff_exits_zero_after_sync_and_one_after_a_commit_without_server_defaults() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app_ns = unique("app");
    let repo = Repo::new();
    repo.write("app.yaml", &app(&app_ns))
        .write("svc.yaml", SERVICE);
    repo.commit("first");
    let berth = Berth::new(
        &berth_ns.name,
        &mapping(&repo.url(), "web", ".", &app_ns, ""),
    );
    let out = berth.run(&["diff"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "before the first sync everything differs: {}",
        text(&out)
    );
    assert!(berth.run(&["sync"]).status.success());
    let out = berth.run(&["diff"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));

    repo.write(
        "app.yaml",
        &app(&app_ns).replace("replicas: 1", "replicas: 3"),
    );
    repo.commit("scale");
    let out = berth.run(&["diff"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("-  replicas: 1") && stdout.contains("+  replicas: 3"),
        "{stdout}"
    );
    // fields the API server defaults (clusterIP, sessionAffinity, strategy, ...) never show
    for defaulted in [
        "clusterIP",
        "sessionAffinity",
        "revisionHistoryLimit",
        "terminationMessagePath",
    ] {
        let changed = stdout
            .lines()
            .any(|l| (l.starts_with('+') || l.starts_with('-')) && l.contains(defaulted));
        assert!(!changed, "{defaulted} shows as a difference:\n{stdout}");
    }
    assert!(
        !stdout.contains("Service/web"),
        "the Service did not change:\n{stdout}"
    );
    // diff wrote nothing
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), &app_ns);
    assert_eq!(
        deploys
            .get("web")
            .await
            .expect("d")
            .spec
            .and_then(|s| s.replicas),
        Some(1)
    );
}

#[tokio::test]
async fn self_heal_restores_a_hand_edit_while_running() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app_ns = unique("app");
    let repo = Repo::new();
    repo.write("app.yaml", &app(&app_ns));
    repo.commit("first");
    let berth = Berth::new(
        &berth_ns.name,
        &mapping(&repo.url(), "web", ".", &app_ns, "    selfHeal: true\n"),
    );
    let (mut agent, _) = berth.agent();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &app_ns);
    let synced = common::eventually(Duration::from_secs(30), || async {
        cms.get_opt("settings").await.ok().flatten()
    })
    .await;
    assert!(synced.is_some(), "berth run did not sync");

    // someone edits the ConfigMap by hand
    let edit = serde_json::json!({"data": {"greeting": "edited by hand"}});
    cms.patch("settings", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .expect("hand edit");
    let restored = common::eventually(Duration::from_secs(30), || async {
        let cm = cms.get("settings").await.ok()?;
        (cm.data?.get("greeting")? == "hello").then_some(())
    })
    .await;

    // SIGTERM: finishes the pass in progress and exits cleanly
    let pid = agent.0.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let exit = agent.0.wait().expect("berth run exits");
    assert!(restored.is_some(), "the hand edit was not reverted");
    assert!(exit.success(), "berth run exit: {exit:?}");
}

#[tokio::test]
async fn git_over_https_with_a_token_from_a_secret() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app_ns = unique("app");
    let repo = Repo::new();
    repo.write("app.yaml", &app(&app_ns));
    repo.commit("first");
    // serve a bare clone over https, token required
    let token = "s3cr3t-t0ken";
    let server = common::GitServer::start(&repo, "x-access-token", token);
    let (url, ca) = (server.url.clone(), server.ca.clone());

    let mapping_text = mapping(&url, "web", ".", &app_ns, "").replace(
        "    interval: 1s\n",
        "    interval: 1s\n    auth: {secretRef: git-creds}\n",
    );
    let mut berth = Berth::new(&berth_ns.name, &mapping_text);
    berth.env.push(("SSL_CERT_FILE".into(), ca));

    // without the Secret: a clear failure that does not leak anything
    let out = berth.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("git-creds"),
        "{}",
        text(&out)
    );

    // a wrong token is refused, and the token never appears in output or status
    common::put_secret(&client, &berth_ns.name, "git-creds", "token", "wrong-token").await;
    let out = berth.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!text(&out).contains("wrong-token"), "{}", text(&out));

    common::put_secret(&client, &berth_ns.name, "git-creds", "token", token).await;
    let out = berth.run(&["sync"]);
    drop(server);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(token));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &app_ns);
    assert!(cms.get("settings").await.is_ok());
    let a = status(&client, &berth_ns.name, "web")
        .await
        .metadata
        .annotations
        .unwrap_or_default();
    assert_eq!(a["berth.dev/status"], "Synced");
    assert!(!a["berth.dev/message"].contains(token));
}

#[tokio::test]
async fn validate_and_render_work_offline_and_name_the_problem() {
    let repo = Repo::new();
    repo.write("app.yaml", &app("web-ns"));
    repo.commit("first");
    let berth = Berth::new("unused", &mapping(&repo.url(), "web", ".", "web-ns", ""));
    let mut cmd = berth.command(&["validate"]);
    cmd.env("KUBECONFIG", "/nonexistent");
    let out = cmd.output().expect("validate");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok     sync web (3 objects"),
        "{}",
        text(&out)
    );

    let out = berth.run(&["render", "web"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("# Source: app.yaml:6") && stdout.contains("namespace: web-ns"),
        "{stdout}"
    );
    assert!(stdout.contains("protocol: TCP"), "{stdout}");

    repo.write("bad.yaml", "kind: ConfigMap\nmetadata: {name: x}\n");
    repo.commit("bad");
    let out = berth.run(&["validate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("bad.yaml:1: object has no apiVersion"),
        "{}",
        text(&out)
    );

    let broken = Berth::new(
        "unused",
        &mapping(&repo.url(), "web", ".", "web-ns", "    colour: blue\n"),
    );
    let out = broken.run(&["validate"]);
    // a broken mapping file is a configuration error: exit 2, as for every verb
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("berth.yaml:13:5"),
        "{}",
        text(&out)
    );
    let out = broken.run(&["sync"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[tokio::test]
async fn status_lists_syncs_with_revision_and_objects() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app_ns = unique("app");
    let repo = Repo::new();
    repo.write("app.yaml", &app(&app_ns));
    let sha = repo.commit("first");
    let berth = Berth::new(
        &berth_ns.name,
        &mapping(&repo.url(), "web", ".", &app_ns, ""),
    );
    assert!(berth.run(&["sync"]).status.success());
    let out = berth.run(&["status"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_default();
    assert!(row.contains(&format!("config@{}", &sha[..7])), "{stdout}");
    assert!(row.contains("Synced") && row.contains(" 3 "), "{stdout}");
}

/// Two syncs of one repository that declare the same new object in one commit pass side by
/// side: the object goes to one of them, and the other is refused, naming the object, as it
/// would be had they passed one after the other.
#[tokio::test]
async fn two_syncs_passing_together_do_not_both_take_one_object() {
    let app = common::App::sync("a", "a", "").await;
    let ns = &app.app_ns.name;
    let shared = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: shared, namespace: {ns}}}\ndata: {{from: git}}\n"
    );
    for path in ["a", "b"] {
        app.repo.write(&format!("{path}/shared.yaml"), &shared);
    }
    app.repo.commit("both declare shared");
    let both = format!(
        "{}  - {{name: b, repository: config, path: b, namespace: {ns}}}\n",
        std::fs::read_to_string(&app.berth.mapping).expect("mapping")
    );
    std::fs::write(&app.berth.mapping, both).expect("mapping");
    let (_agent, _) = app.berth.agent();
    let phase = |cm: &ConfigMap| {
        let a = cm.metadata.annotations.clone().unwrap_or_default();
        (
            a.get("berth.dev/status").cloned().unwrap_or_default(),
            a.get("berth.dev/message").cloned().unwrap_or_default(),
        )
    };
    let records: Api<ConfigMap> = Api::namespaced(app.client.clone(), &app.berth_ns.name);
    let seen = common::eventually(Duration::from_secs(60), || async {
        let a = records.get_opt("berth-sync-a").await.ok()??;
        let b = records.get_opt("berth-sync-b").await.ok()??;
        let (pa, pb) = (phase(&a), phase(&b));
        let settled = matches!(
            (pa.0.as_str(), pb.0.as_str()),
            ("Synced", "Failed") | ("Failed", "Synced")
        );
        settled.then_some((pa, pb))
    })
    .await;
    let seen = seen.unwrap_or_else(|| {
        panic!("one sync takes the object, the other is refused; the records never settled there")
    });
    let ((a, a_message), (b, b_message)) = seen;
    let (owner, refused) = match (a.as_str(), b.as_str()) {
        ("Synced", "Failed") => ("a", b_message),
        ("Failed", "Synced") => ("b", a_message),
        other => unreachable!("settled above: {other:?}"),
    };
    assert!(
        refused.contains("shared") && refused.contains("declares it too"),
        "{refused}"
    );
    let live: Api<ConfigMap> = Api::namespaced(app.client.clone(), ns);
    let cm = live.get("shared").await.expect("shared exists");
    let labels = cm.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("berth.dev/sync").map(String::as_str),
        Some(owner)
    );
}
