//! A config repository can do only what its team may do: berth's own state is out of reach
//! of every sync.

mod common;

use common::{Berth, Repo, client, namespace, text, unique};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;

#[tokio::test]
async fn no_sync_may_declare_berths_secrets_records_or_lease() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    common::put_secret(
        &client,
        &berth_ns.name,
        "git-creds",
        "token",
        "the-real-token",
    )
    .await;
    let repo = Repo::new();
    let ns = &berth_ns.name;
    repo.write(
        "apps/steal.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: git-creds, namespace: {ns}}}\nstringData: {{token: attacker}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: berth-sync-other, namespace: {ns}}}\ndata: {{x: \"1\"}}\n---\napiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: berth, namespace: {ns}}}\nspec: {{holderIdentity: attacker}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: harmless, namespace: {ns}}}\ndata: {{x: \"1\"}}\n"
        ),
    );
    repo.commit("reach for berth's state");
    let mapping = format!(
        "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: config\n    url: {}\n    interval: 0\n    auth: {{secretRef: git-creds}}\nsyncs:\n  - name: web\n    repository: config\n    path: apps\n",
        repo.url()
    );
    let berth = Berth::new(ns, &mapping);
    let out = berth.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    for refused in [
        format!("{ns}/Secret/git-creds"),
        format!("{ns}/ConfigMap/berth-sync-other"),
        format!("{ns}/Lease.coordination.k8s.io/berth"),
    ] {
        assert!(
            stdout.contains(&format!(
                "{refused} was not applied: it is berth's own state"
            )),
            "{refused}: {}",
            text(&out)
        );
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let creds = secrets.get("git-creds").await.expect("the Secret");
    let token = creds.data.unwrap_or_default()["token"].0.clone();
    assert_eq!(
        token, b"the-real-token",
        "the credential Secret was changed"
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    assert!(
        cms.get_opt("berth-sync-other")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        cms.get_opt("harmless").await.expect("get").is_some(),
        "the rest was applied"
    );
}

/// A ServiceAccount `deployer` in `namespace` that may manage ConfigMaps there and nothing else.
async fn deployer(client: &kube::Client, namespace: &str) {
    use kube::api::{Patch, PatchParams};
    let apply = |api_version: &str, kind: &str, body: serde_json::Value| {
        let mut object = body;
        object["apiVersion"] = api_version.into();
        object["kind"] = kind.into();
        object
    };
    let params = PatchParams::apply("berth-tests");
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), namespace);
    sas.patch(
        "deployer",
        &params,
        &Patch::Apply(apply(
            "v1",
            "ServiceAccount",
            serde_json::json!({"metadata": {"name": "deployer"}}),
        )),
    )
    .await
    .expect("service account");
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(client.clone(), namespace);
    roles
        .patch(
            "deployer",
            &params,
            &Patch::Apply(apply(
                "rbac.authorization.k8s.io/v1",
                "Role",
                serde_json::json!({"metadata": {"name": "deployer"}, "rules": [{"apiGroups": [""],
                    "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]}),
            )),
        )
        .await
        .expect("role");
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        Api::namespaced(client.clone(), namespace);
    bindings
        .patch(
            "deployer",
            &params,
            &Patch::Apply(apply(
                "rbac.authorization.k8s.io/v1",
                "RoleBinding",
                serde_json::json!({"metadata": {"name": "deployer"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
                    "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": namespace}]}),
            )),
        )
        .await
        .expect("binding");
}

/// A team repository reaching beyond its namespace: a ConfigMap in its own, one in another
/// team's, and a ClusterRoleBinding that would hand out cluster-admin.
fn reaching(team_b: &str, binding: &str) -> Repo {
    let repo = Repo::new();
    repo.write("apps/own.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: own}\ndata: {x: \"1\"}\n")
        .write(
            "apps/other.yaml",
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: other, namespace: {team_b}}}\ndata: {{x: \"1\"}}\n"),
        )
        .write(
            "apps/escalate.yaml",
            &format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {binding}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}\nsubjects: [{{kind: ServiceAccount, name: deployer, namespace: default}}]\n"),
        );
    repo.commit("reach");
    repo
}

async fn assert_limited(
    client: &kube::Client,
    out: &std::process::Output,
    team_a: &str,
    team_b: &str,
    binding: &str,
) {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let user = format!("system:serviceaccount:{team_a}:deployer");
    assert!(
        stdout.contains(&user) && stdout.contains("forbidden"),
        "{}",
        text(out)
    );
    assert!(
        stdout.contains(&format!("{team_b}/ConfigMap/other")),
        "{}",
        text(out)
    );
    assert!(
        stdout.contains(&format!(
            "ClusterRoleBinding.rbac.authorization.k8s.io/{binding}"
        )),
        "{}",
        text(out)
    );
    let a: Api<ConfigMap> = Api::namespaced(client.clone(), team_a);
    assert!(
        a.get_opt("own").await.expect("get").is_some(),
        "its own objects sync: {}",
        text(out)
    );
    let b: Api<ConfigMap> = Api::namespaced(client.clone(), team_b);
    assert!(
        b.get_opt("other").await.expect("get").is_none(),
        "another team's object was created"
    );
    let crbs: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(client.clone());
    assert!(
        crbs.get_opt(binding).await.expect("get").is_none(),
        "the escalation was created"
    );
}

#[tokio::test]
async fn a_sync_acting_as_its_service_account_can_do_only_what_the_account_may() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let team_a = namespace(&client, &unique("team-a")).await;
    let team_b = namespace(&client, &unique("team-b")).await;
    deployer(&client, &team_a.name).await;
    let binding = unique("escalate");
    let repo = reaching(&team_b.name, &binding);
    let mapping = common::mapping(
        &repo.url(),
        "team",
        "apps",
        &team_a.name,
        "    serviceAccount: deployer\n",
    );
    let berth = Berth::new(&berth_ns.name, &mapping);
    let out = berth.run(&["sync"]);
    assert_limited(&client, &out, &team_a.name, &team_b.name, &binding).await;
}

#[tokio::test]
async fn the_default_service_account_limits_syncs_that_name_none() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let team_a = namespace(&client, &unique("team-a")).await;
    let team_b = namespace(&client, &unique("team-b")).await;
    deployer(&client, &team_a.name).await;
    let binding = unique("escalate");
    let repo = reaching(&team_b.name, &binding);
    let berth = Berth::new(
        &berth_ns.name,
        &common::mapping(&repo.url(), "team", "apps", &team_a.name, ""),
    );
    let out = berth.run(&["--default-service-account", "deployer", "sync"]);
    assert_limited(&client, &out, &team_a.name, &team_b.name, &binding).await;
    // a sync without a namespace cannot be given an account: it fails, naming why
    let loose = Berth::new(
        &berth_ns.name,
        &format!(
            "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: config\n    url: {}\n    interval: 0\nsyncs:\n  - name: loose\n    repository: config\n    path: apps\n",
            repo.url()
        ),
    );
    let out = loose.run(&["--default-service-account", "deployer", "sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("has no namespace"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn a_pipeline_launches_as_its_service_account() {
    let client = client().await;
    common::install_workflow_crds(&client).await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let wf = namespace(&client, &unique("wf")).await;
    let repo = Repo::new();
    repo.write(
        ".argo/workflow.yaml",
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {generateName: ci-}\nspec:\n  entrypoint: main\n  templates: [{name: main, container: {image: alpine}}]\n",
    );
    repo.commit("ci");
    let mapping = |account: &str| {
        format!(
            "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: src\n    url: {}\n    interval: 0\npipelines:\n  - name: ci\n    repository: src\n    namespace: {}\n    serviceAccount: {account}\n",
            repo.url(),
            wf.name
        )
    };
    // an account that may not create Workflows: the launch fails, and the status says why
    let powerless = Berth::new(&berth_ns.name, &mapping("nobody"));
    let out = powerless.run(&["trigger", "ci"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let user = format!("system:serviceaccount:{}:nobody", wf.name);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&user),
        "{}",
        text(&out)
    );
    let records: Api<ConfigMap> = Api::namespaced(client.clone(), &berth_ns.name);
    let record = records
        .get("berth-pipeline-ci")
        .await
        .expect("the pipeline's record");
    let a = record.metadata.annotations.unwrap_or_default();
    assert_eq!(a["berth.dev/status"], "Failed");
    assert!(
        a["berth.dev/message"].contains(&user),
        "{}",
        a["berth.dev/message"]
    );
    assert!(
        common::workflows(&client, &wf.name).await.is_empty(),
        "a Workflow was created"
    );

    // an account allowed to: launched, and Argo runs it as that account too
    common::workflow_launcher(&client, &wf.name, "launcher").await;
    let allowed = Berth::new(&berth_ns.name, &mapping("launcher"));
    common::succeeds(&allowed, &["trigger", "ci"], "launched");
    let runs = common::workflows(&client, &wf.name).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].data["spec"]["serviceAccountName"], "launcher");
}

/// A document of a `deploy/` file, by kind and name.
fn deploy_object(file: &str, kind: &str, name: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("deploy file");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("yaml");
    docs.into_iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} in deploy/{file}"))
}

/// Server-side applies one object as the tests' admin.
async fn put(client: &kube::Client, plural: &str, object: serde_json::Value) {
    use kube::api::{DynamicObject, Patch, PatchParams};
    use kube::core::{ApiResource, GroupVersionKind};
    let api_version = object["apiVersion"].as_str().expect("apiVersion");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().expect("kind");
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    let name = object["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        &name,
        &PatchParams::apply("berth-tests").force(),
        &Patch::Apply(&object),
    )
    .await
    .unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
}

#[tokio::test]
async fn berth_installed_in_impersonation_mode_syncs_a_tenant_repository() {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let team = namespace(&client, &unique("team")).await;
    deployer(&client, &team.name).await;
    let ns = &berth_ns.name;
    // berth's own account: the impersonation ClusterRole and the berth-self Role, from deploy/
    put(
        &client,
        "serviceaccounts",
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "berth", "namespace": ns}}),
    )
    .await;
    put(
        &client,
        "clusterroles",
        deploy_object(
            "impersonation/rbac.yaml",
            "ClusterRole",
            "berth-impersonate",
        ),
    )
    .await;
    let subject = serde_json::json!([{"kind": "ServiceAccount", "name": "berth", "namespace": ns}]);
    put(&client, "clusterrolebindings", serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding", "metadata": {"name": format!("berth-impersonate-{ns}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "berth-impersonate"},
        "subjects": subject}))
    .await;
    let mut own = deploy_object("rbac.yaml", "Role", "berth-self");
    own["metadata"]["namespace"] = ns.as_str().into();
    put(&client, "roles", own).await;
    put(
        &client,
        "rolebindings",
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding", "metadata": {"name": "berth-self", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "berth-self"},
        "subjects": subject}),
    )
    .await;
    // its token, as the kubelet mounts it in the pod: a bound token from the TokenRequest API
    // (current servers no longer create token Secrets for ServiceAccounts)
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), ns);
    let request: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": [], "expirationSeconds": 3600}}))
        .expect("token request");
    let token = common::eventually(std::time::Duration::from_secs(20), || async {
        accounts
            .create_token_request("berth", &Default::default(), &request)
            .await
            .ok()?
            .status
            .map(|s| s.token)
    })
    .await
    .expect("a token for berth's account");
    let real = kube::config::Kubeconfig::read_from(common::kubeconfig()).expect("kubeconfig");
    let server = real.clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.server.clone())
        .expect("server");
    let kubeconfig = tempfile::NamedTempFile::new().expect("kubeconfig");
    std::fs::write(
        kubeconfig.path(),
        format!("apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{server}\", insecure-skip-tls-verify: true}}}}]\nusers: [{{name: berth, user: {{token: \"{token}\"}}}}]\ncontexts: [{{name: berth, context: {{cluster: c, user: berth}}}}]\ncurrent-context: berth\n"),
    )
    .expect("write kubeconfig");

    let repo = Repo::new();
    repo.write(
        "apps/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tenant}\ndata: {x: \"1\"}\n",
    );
    repo.commit("a tenant's config");
    let berth = Berth::new(
        ns,
        &common::mapping(&repo.url(), "team", "apps", &team.name, ""),
    );
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--kubeconfig")
            .arg(kubeconfig.path())
            .args(["--namespace", ns, "--config"])
            .arg(&berth.mapping)
            .arg("--cache-dir")
            .arg(berth.cache.path())
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .output()
            .expect("berth runs")
    };
    // berth's own account may change nothing in a tenant namespace by itself
    let alone = run(&["sync"]);
    assert_eq!(alone.status.code(), Some(1), "{}", text(&alone));
    assert!(
        String::from_utf8_lossy(&alone.stdout).contains("forbidden"),
        "{}",
        text(&alone)
    );
    // through the tenant's account it syncs, and records its status in its own namespace
    let out = run(&["--default-service-account", "deployer", "sync"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 created"),
        "{}",
        text(&out)
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &team.name);
    assert!(cms.get_opt("tenant").await.expect("get").is_some());
    let records: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    assert!(
        records
            .get_opt("berth-sync-team")
            .await
            .expect("get")
            .is_some()
    );
}
