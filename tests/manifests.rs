//! What real install files and workflow files need, against a real API server: leaving part
//! of a path out, and workflow files with more than one YAML document.

mod common;

use common::{Berth, Repo, client, mapping, namespace, text, unique};
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
