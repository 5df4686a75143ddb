//! The annotations of Argo CD and Flux that berth honors, so a repository moves over
//! unchanged: one test per behavior, each against the real API server.

mod common;

use common::App;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

fn config_map(name: &str, annotations: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\ndata: {{key: {value}}}\n"
    )
}

async fn setup() -> App {
    App::new("    prune: true\n").await
}

/// Reading the ConfigMaps a test syncs.
impl App {
    fn api(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.app_ns.name)
    }

    async fn value(&self, name: &str) -> Option<String> {
        let cm = self.api().get_opt(name).await.expect("read")?;
        Some(cm.data.unwrap_or_default()["key"].clone())
    }
}

#[tokio::test]
async fn prune_opt_outs_keep_objects_that_left_git() {
    let s = setup().await;
    let keepers = [
        ("berth", "berth.dev/prune: disabled"),
        ("argo-prune", "argocd.argoproj.io/sync-options: Prune=false"),
        (
            "argo-delete",
            "argocd.argoproj.io/sync-options: Delete=false",
        ),
        ("flux-prune", "kustomize.toolkit.fluxcd.io/prune: disabled"),
        (
            "flux-reconcile",
            "kustomize.toolkit.fluxcd.io/reconcile: disabled",
        ),
    ];
    for (name, annotation) in keepers {
        s.repo.write(
            &format!("app/{name}.yaml"),
            &config_map(name, annotation, "a"),
        );
    }
    s.repo
        .write("app/plain.yaml", &config_map("plain", "", "a"));
    s.repo.commit("six");
    common::succeeds(&s.berth, &["sync"], "6 created");
    for (name, _) in keepers {
        s.repo.remove(&format!("app/{name}.yaml"));
    }
    s.repo.remove("app/plain.yaml");
    s.repo
        .write("app/other.yaml", &config_map("other", "", "a"));
    s.repo.commit("all gone");
    let out = common::succeeds(&s.berth, &["sync"], "1 pruned");
    let text = common::text(&out);
    assert_eq!(s.value("plain").await, None, "{text}");
    for (name, annotation) in keepers {
        assert!(
            s.value(name).await.is_some(),
            "{name} kept by {annotation}: {text}"
        );
    }
}

#[tokio::test]
async fn flux_ssa_ignore_never_applies_the_object() {
    let s = setup().await;
    s.repo
        .write(
            "app/a.yaml",
            &config_map("ignored", "kustomize.toolkit.fluxcd.io/ssa: Ignore", "a"),
        )
        .write("app/b.yaml", &config_map("applied", "", "a"));
    s.repo.commit("one ignored");
    common::succeeds(&s.berth, &["sync"], "1 created");
    assert_eq!(s.value("ignored").await, None);
    assert_eq!(s.value("applied").await.as_deref(), Some("a"));
}

#[tokio::test]
async fn flux_ssa_if_not_present_creates_but_never_updates() {
    let s = setup().await;
    let annotation = "kustomize.toolkit.fluxcd.io/ssa: IfNotPresent";
    s.repo
        .write("app/a.yaml", &config_map("seed", annotation, "first"));
    s.repo.commit("seed");
    common::succeeds(&s.berth, &["sync"], "1 created");
    assert_eq!(s.value("seed").await.as_deref(), Some("first"));
    s.repo
        .write("app/a.yaml", &config_map("seed", annotation, "second"));
    s.repo.commit("change the seed");
    common::succeeds(&s.berth, &["sync"], "0 configured");
    assert_eq!(s.value("seed").await.as_deref(), Some("first"));
}

#[tokio::test]
async fn flux_reconcile_disabled_on_the_live_object_stops_updates() {
    let s = setup().await;
    s.repo
        .write("app/a.yaml", &config_map("tuned", "", "first"));
    s.repo.commit("first");
    common::succeeds(&s.berth, &["sync"], "1 created");
    // an operator pauses reconciliation by hand, on the cluster
    s.api()
        .patch(
            "tuned",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "kustomize.toolkit.fluxcd.io/reconcile": "disabled"}}})),
        )
        .await
        .expect("annotate");
    s.repo
        .write("app/a.yaml", &config_map("tuned", "", "second"));
    s.repo.commit("second");
    common::succeeds(&s.berth, &["sync"], "0 configured");
    assert_eq!(s.value("tuned").await.as_deref(), Some("first"));
}

#[tokio::test]
async fn flux_ssa_merge_leaves_other_managers_fields_and_override_takes_them() {
    let s = setup().await;
    s.repo
        .write(
            "app/a.yaml",
            &config_map("merged", "kustomize.toolkit.fluxcd.io/ssa: Merge", "git"),
        )
        .write("app/b.yaml", &config_map("forced", "", "git"));
    s.repo.commit("two");
    common::succeeds(&s.berth, &["sync"], "2 created");
    // another field manager takes over `data.key` on both
    for name in ["merged", "forced"] {
        s.api()
            .patch(
                name,
                &PatchParams::apply("operator").force(),
                &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name}, "data": {"key": "operator"}})),
            )
            .await
            .expect("other manager applies");
    }
    let out = s.berth.run(&["sync"]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("ConfigMap/merged") && text.contains("conflict") && text.contains("operator"),
        "{text}"
    );
    assert_eq!(s.value("merged").await.as_deref(), Some("operator"));
    assert_eq!(s.value("forced").await.as_deref(), Some("git"));
}

/// A CustomResourceDefinition of kind `Widget` in `group`, as JSON for the API.
fn widget_crd(group: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": "widgets"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    })
}

fn widget(group: &str, annotations: &str) -> String {
    format!(
        "apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: w\n  annotations: {{{annotations}}}\nspec: {{size: 3}}\n"
    )
}

/// Plays an operator that installs its CRD once its own object (the ConfigMap `operator`) is
/// applied, as an operator Deployment does when it starts.
async fn operator_installs(s: &App, group: &str) {
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(s.client.clone());
    let started = common::eventually(std::time::Duration::from_secs(60), || async {
        s.value("operator").await.map(drop)
    })
    .await;
    assert!(started.is_some(), "berth applied the operator");
    crds.patch(
        &format!("widgets.{group}"),
        &PatchParams::apply("operator").force(),
        &Patch::Apply(widget_crd(group)),
    )
    .await
    .expect("the operator installs its CRD");
}

async fn delete_crd(client: &kube::Client, group: &str) {
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let _ = crds
        .delete(&format!("widgets.{group}"), &Default::default())
        .await;
}

#[tokio::test]
async fn skip_dry_run_on_missing_resource_waits_for_the_kind_an_operator_installs() {
    let s = setup().await;
    let group = format!("{}.example.com", common::unique("op"));
    s.repo
        .write("app/operator.yaml", &config_map("operator", "", "a"))
        .write(
            "app/widget.yaml",
            &widget(
                &group,
                "argocd.argoproj.io/sync-options: SkipDryRunOnMissingResource=true",
            ),
        );
    s.repo.commit("operator and its widget");
    let berth = s.berth.command(&["sync"]);
    let (out, ()) = tokio::join!(
        tokio::task::spawn_blocking(move || {
            let mut berth = berth;
            berth.output().expect("berth sync runs")
        }),
        operator_installs(&s, &group),
    );
    let out = out.expect("joined");
    let text = common::text(&out);
    let widgets: Api<kube::api::DynamicObject> = Api::namespaced_with(
        s.client.clone(),
        &s.app_ns.name,
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            &group, "v1", "Widget",
        )),
    );
    let applied = widgets.get_opt("w").await.expect("read the widget");
    delete_crd(&s.client, &group).await;
    assert!(out.status.success(), "{text}");
    assert!(text.contains("2 created"), "{text}");
    assert_eq!(
        applied.map(|w| w.data["spec"]["size"].clone()),
        Some(json!(3)),
        "{text}"
    );
}

#[tokio::test]
async fn without_skip_dry_run_an_unserved_kind_fails_alone() {
    let s = setup().await;
    let group = format!("{}.example.com", common::unique("none"));
    s.repo
        .write("app/operator.yaml", &config_map("operator", "", "a"))
        .write("app/widget.yaml", &widget(&group, ""));
    s.repo.commit("a widget nobody serves");
    let out = s.berth.run(&["sync"]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("no API resource serves Widget in {group}/v1")),
        "{text}"
    );
    assert_eq!(s.value("operator").await.as_deref(), Some("a"), "{text}");
}

#[tokio::test]
async fn ignore_extraneous_leftovers_do_not_count_as_differences_but_are_pruned() {
    let s = setup().await;
    s.repo
        .write(
            "app/generated.yaml",
            &config_map(
                "generated",
                "argocd.argoproj.io/compare-options: IgnoreExtraneous",
                "a",
            ),
        )
        .write("app/plain.yaml", &config_map("plain", "", "a"));
    s.repo.commit("two");
    common::succeeds(&s.berth, &["sync"], "2 created");

    s.repo.remove("app/generated.yaml");
    s.repo.commit("the generated one left git");
    let out = s.berth.run(&["diff"]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(0), "not a difference: {text}");
    assert!(text.contains("generated"), "still shown: {text}");

    s.repo
        .remove("app/plain.yaml")
        .write("app/other.yaml", &config_map("other", "", "a"));
    s.repo.commit("the plain one left git too");
    let out = s.berth.run(&["diff"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));

    let out = common::succeeds(&s.berth, &["sync"], "2 pruned");
    let text = common::text(&out);
    assert_eq!(s.value("generated").await, None, "still pruned: {text}");
}
