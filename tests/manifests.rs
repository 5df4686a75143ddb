//! What real install files and workflow files need, against a real API server: leaving part
//! of a path out, and workflow files with more than one YAML document.

mod common;

use common::{App, Berth, Repo, client, mapping, namespace, text, unique};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

fn config_map(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  v: \"1\"\n")
}

#[tokio::test]
async fn exclude_leaves_a_directory_out_and_include_narrows_the_path() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app = namespace(&client, &unique("app")).await;
    let repo = Repo::new();
    repo.write("stack/app.yaml", &config_map("app"))
        .write("stack/setup/crd-ish.yaml", &config_map("setup"))
        .write("stack/extra/other.yaml", &config_map("other"));
    repo.commit("a stack with a setup directory");
    let berth = Berth::new(
        &berth_ns.name,
        &mapping(
            &repo.url(),
            "web",
            "stack",
            &app.name,
            "    exclude: [\"setup/**\"]\n",
        ),
    );
    common::succeeds(&berth, &["sync"], "2 created");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &app.name);
    assert!(
        cms.get_opt("setup").await.expect("get").is_none(),
        "setup/ was synced"
    );
    assert!(cms.get_opt("app").await.expect("get").is_some());

    let narrow = Berth::new(
        &berth_ns.name,
        &mapping(
            &repo.url(),
            "setup",
            "stack",
            &app.name,
            "    include: [\"setup/**\"]\n",
        ),
    );
    common::succeeds(&narrow, &["sync"], "1 created");
    assert!(cms.get_opt("setup").await.expect("get").is_some());

    let bad = Berth::new(
        &berth_ns.name,
        &mapping(
            &repo.url(),
            "web",
            "stack",
            &app.name,
            "    exclude: [\"setup/[\"]\n",
        ),
    );
    let out = bad.run(&["validate"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid glob"),
        "{}",
        text(&out)
    );
}

const WORKFLOW: &str = "apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: ci-
spec:
  entrypoint: main
  templates:
    - name: main
      container: {image: alpine}
";

const TEMPLATE: &str = "apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata:
  name: shared
spec:
  entrypoint: main
  templates:
    - name: main
      container: {image: alpine}
";

#[tokio::test]
async fn workflow_files_with_a_trailing_separator_or_a_template_first_launch() {
    let client = client().await;
    common::install_workflow_crds(&client).await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let wf = namespace(&client, &unique("wf")).await;
    for (name, file) in [
        ("trailing", format!("{WORKFLOW}---\n")),
        ("template-first", format!("{TEMPLATE}---\n{WORKFLOW}")),
    ] {
        let repo = Repo::new();
        repo.write(".argo/workflow.yaml", &file);
        repo.commit(name);
        let m = format!(
            "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: src\n    url: {}\n    interval: 0\npipelines:\n  - name: ci\n    repository: src\n    namespace: {}\n",
            repo.url(),
            wf.name
        );
        let berth = Berth::new(&berth_ns.name, &m);
        common::succeeds(&berth, &["trigger", "ci"], "launched");
        let validate = common::succeeds(&berth, &["validate"], "ok     pipeline ci");
        drop(validate);
    }
    assert_eq!(common::workflows(&client, &wf.name).await.len(), 2);
}

#[tokio::test]
async fn a_bad_object_fails_alone_and_every_failure_is_named() {
    let App {
        client,
        berth_ns,
        app_ns: app,
        repo,
        berth,
    } = App::sync("web", "apps", "").await;
    let group = format!("{}.berth.dev", unique("g"));
    for i in 0..20 {
        repo.write(
            &format!("apps/cm-{i:02}.yaml"),
            &config_map(&format!("cm-{i:02}")),
        );
    }
    // a CRD the API server refuses (an invalid scope), and a custom resource of it
    repo.write(
        "apps/crd.yaml",
        &format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.{group}\nspec:\n  group: {group}\n  names: {{kind: Widget, plural: widgets}}\n  scope: Sideways\n  versions:\n    - name: v1\n      served: true\n      storage: true\n      schema: {{openAPIV3Schema: {{type: object}}}}\n"
        ),
    )
    .write(
        "apps/widget.yaml",
        &format!("apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: w\n"),
    )
    // two kinds nobody serves
    .write("apps/foo.yaml", "apiVersion: foo.example.com/v1\nkind: Foo\nmetadata:\n  name: f\n")
    .write("apps/bar.yaml", "apiVersion: bar.example.com/v1\nkind: Bar\nmetadata:\n  name: b\n")
    // and an object that cannot be synced at all
    .write(
        "apps/job.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: migrate-\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: m, image: alpine}]\n",
    );
    repo.commit("mixed");
    let out = berth.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &app.name);
    let applied = cms
        .list(&kube::api::ListParams::default().labels("berth.dev/sync=web"))
        .await
        .expect("list")
        .items
        .len();
    assert_eq!(
        applied,
        20,
        "the unrelated objects were not applied: {}",
        text(&out)
    );
    // every failure is named: five of them, so the status message holds them all
    let st = common::status(&client, &berth_ns.name, "web").await;
    let message = st.metadata.annotations.unwrap_or_default()["berth.dev/message"].clone();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    for needle in [
        format!("CustomResourceDefinition.apiextensions.k8s.io/widgets.{group}"),
        format!("depends on CustomResourceDefinition.apiextensions.k8s.io/widgets.{group}"),
        "no API resource serves Foo in foo.example.com/v1".to_owned(),
        "no API resource serves Bar in bar.example.com/v1".to_owned(),
        "Job generateName=migrate-".to_owned(),
    ] {
        assert!(
            stdout.contains(&needle),
            "{needle} missing from: {}",
            text(&out)
        );
        assert!(
            message.contains(&needle),
            "{needle} missing from the status: {message}"
        );
    }
}

/// Server-side field validation `Strict`: an object with a field its schema lacks, or a field
/// set twice, fails alone, naming the field, the file and the line; `diff` and `sync
/// --dry-run` say the same; the rest applies, and a custom resource whose schema keeps unknown
/// fields is still accepted.
#[tokio::test]
async fn a_typo_in_a_field_fails_that_object_alone_with_the_field_file_and_line() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app = namespace(&client, &unique("app")).await;
    let suffix = unique("x").replace('-', "");
    let repo = Repo::new();
    repo.write(
        "app/web.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicsa: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
",
    )
    .write(
        "app/twice.yaml",
        &format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: twice\ndata:\n  level: info\n  level: debug\n",
            config_map("first")
        ),
    )
    .write("app/settings.yaml", &config_map("settings"))
    .write(
        "app/open.yaml",
        &format!(
            "{}---
apiVersion: strict.berth.dev/v1
kind: Open{suffix}
metadata: {{name: anything}}
spec: {{whatever: [1, 2], nested: {{keys: kept}}}}
",
            common::crd_yaml(
                "strict.berth.dev",
                &format!("Open{suffix}"),
                &format!("opens{suffix}"),
                "{type: object, x-kubernetes-preserve-unknown-fields: true}"
            )
        ),
    );
    repo.commit("a typo, a duplicate and the rest");
    let berth = Berth::new(
        &berth_ns.name,
        &mapping(&repo.url(), "app", "app", &app.name, ""),
    );
    let typo = "app/web.yaml:6";
    let field = ".spec.replicsa: field not declared in schema";
    let twice = "app/twice.yaml:14";
    for verb in [&["diff"][..], &["sync", "--dry-run"], &["sync"]] {
        let out = berth.run(verb);
        let all = text(&out);
        assert_ne!(out.status.code(), Some(0), "{verb:?}: {all}");
        assert!(all.contains(typo) && all.contains(field), "{verb:?}: {all}");
        assert!(
            all.contains(twice) && all.contains("\"level\" is set twice"),
            "{verb:?}: {all}"
        );
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &app.name);
    for name in ["settings", "first"] {
        assert!(cms.get_opt(name).await.expect("get").is_some(), "{name}");
    }
    assert!(cms.get_opt("twice").await.expect("get").is_none());
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &app.name);
    assert!(deployments.get_opt("web").await.expect("get").is_none());
    let open: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &app.name,
        &kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("strict.berth.dev", "v1", &format!("Open{suffix}")),
            &format!("opens{suffix}"),
        ),
    );
    let kept = open
        .get("anything")
        .await
        .expect("the open custom resource");
    assert_eq!(kept.data["spec"]["nested"]["keys"], "kept");
}
