//! Public install manifests that nobody on the team wrote, synced unpatched onto the current
//! API server: Argo Workflows' install with its full CRDs, Gateway API's standard CRDs (CEL
//! rules) and cert-manager's CRDs, taken at test time from their Go modules; and objects of the
//! APIs Kubernetes 1.20 lacked. After each sync, `berth diff` finds nothing and a second pass
//! writes nothing.

mod common;

use std::collections::BTreeMap;

use common::{Berth, Repo, client, namespace, text, unique};
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::Discovery;

/// Gateway API's release whose standard CRDs are synced.
const GATEWAY_API: &str = "sigs.k8s.io/gateway-api@v1.6.3";
/// cert-manager's release whose CRDs are synced.
const CERT_MANAGER: &str = "github.com/cert-manager/cert-manager@v1.21.2";

fn yaml(name: &str) -> bool {
    name.ends_with(".yaml") && name != "kustomization.yaml"
}

/// The resourceVersion of every object berth manages for `sync` (cluster-scoped, or in
/// `namespace`), by kind, namespace and name.
async fn versions(client: &kube::Client, sync: &str, namespace: &str) -> BTreeMap<String, String> {
    // one aggregated read: a snapshot, where a group-by-group read can meet a group that
    // another test's CRD is adding or removing at that moment (404)
    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("discovery");
    let mut out = BTreeMap::new();
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            if !caps.supports_operation(kube::discovery::verbs::LIST) {
                continue;
            }
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            let Ok(list) = api
                .list_metadata(&ListParams::default().labels(&format!("berth.dev/sync={sync}")))
                .await
            else {
                continue;
            };
            for o in list.items {
                let ns = o.metadata.namespace.as_deref().unwrap_or_default();
                if !ns.is_empty() && ns != namespace {
                    continue;
                }
                out.insert(
                    format!(
                        "{}/{}/{}",
                        resource.kind,
                        o.metadata.namespace.unwrap_or_default(),
                        o.metadata.name.unwrap_or_default()
                    ),
                    o.metadata.resource_version.unwrap_or_default(),
                );
            }
        }
    }
    out
}

/// A sync that has run twice, with what it needs to go on.
struct Synced {
    berth: Berth,
    /// The objects it manages, with their resourceVersions.
    objects: BTreeMap<String, String>,
    namespace: String,
    _namespaces: (common::NamespaceGuard, common::NamespaceGuard),
}

/// Syncs `path` of `repo` as `sync` into a fresh namespace; then `berth diff` must exit 0 and
/// a second pass must write nothing.
async fn sync_twice(repo: &Repo, sync: &str, path: &str) -> Synced {
    let client = client().await;
    let berth_ns = namespace(&client, &unique("berth")).await;
    let app = namespace(&client, &unique("app")).await;
    let berth = Berth::new(
        &berth_ns.name,
        &common::mapping(&repo.url(), sync, path, &app.name, ""),
    );
    let out = berth.run(&["sync"]);
    assert!(out.status.success(), "{}", text(&out));
    let first = versions(&client, sync, &app.name).await;
    assert!(!first.is_empty(), "nothing synced: {}", text(&out));

    let out = berth.run(&["diff"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = berth.run(&["sync"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(0 created, 0 configured, "),
        "{}",
        text(&out)
    );
    let second = versions(&client, sync, &app.name).await;
    assert_eq!(first, second, "the second pass wrote");
    Synced {
        berth,
        objects: first,
        namespace: app.name.clone(),
        _namespaces: (berth_ns, app),
    }
}

#[tokio::test]
async fn the_argo_workflows_install_with_its_full_crds_syncs_unpatched() {
    let version = common::component_version("argo-workflows");
    let argo = common::go_module(&format!("github.com/argoproj/argo-workflows/v3@v{version}"));
    let base = argo.join("manifests/base");
    let repo = Repo::new();
    repo.copy_files(&base.join("crds/full"), "argo/crds", yaml)
        .copy_files(&base.join("workflow-controller"), "argo/controller", yaml)
        .copy_files(&base.join("argo-server"), "argo/server", yaml);
    repo.commit(&format!("Argo Workflows v{version}"));
    let synced = sync_twice(&repo, "argo-install", "argo").await;
    // 8 CRDs; the controller's ConfigMap, Deployment, PriorityClass and ServiceAccount; the
    // server's Deployment, Service and ServiceAccount
    assert_eq!(synced.objects.len(), 15, "{:?}", synced.objects.keys());
}

#[tokio::test]
async fn gateway_api_and_cert_manager_crds_sync_with_their_cel_rules() {
    let gateway = common::go_module(GATEWAY_API);
    let cert_manager = common::go_module(CERT_MANAGER);
    let repo = Repo::new();
    repo.copy_files(&gateway.join("config/crd/standard"), "crds/gateway", yaml)
        .copy_files(&cert_manager.join("deploy/crds"), "crds/cert-manager", yaml)
        // objects of those kinds, which their CEL rules check
        .write(
            "crds/routes.yaml",
            "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: berth-test}
spec: {controllerName: example.com/gateway}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  rules:
    - matches: [{path: {type: PathPrefix, value: /}}]
      backendRefs: [{name: web, port: 80}]
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: self-signed}
spec: {selfSigned: {}}
",
        );
    repo.commit("Gateway API and cert-manager CRDs");
    let synced = sync_twice(&repo, "gateway-and-cert-manager", "crds").await;
    let crds = synced
        .objects
        .keys()
        .filter(|k| k.starts_with("CustomResourceDefinition/"))
        .count();
    assert_eq!(crds, 10 + 6, "{:?}", synced.objects.keys());
    // and the ValidatingAdmissionPolicy and its binding that Gateway API ships
    assert_eq!(
        synced.objects.len(),
        crds + 5,
        "{:?}",
        synced.objects.keys()
    );
}

#[tokio::test]
async fn objects_of_the_apis_kubernetes_1_20_lacked_sync() {
    let repo = Repo::new();
    let suffix = unique("v").replace('-', "");
    repo.write(
        "apis/policy.yaml",
        "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 3
  metrics:
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: '0 3 * * *'
  timeZone: Etc/UTC
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: job, image: busybox}]
",
    )
    .write(
        "apis/admission.yaml",
        &format!(
            "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: replicas-{suffix}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [apps]
        apiVersions: [v1]
        operations: [CREATE, UPDATE]
        resources: [deployments]
  validations:
    - expression: object.spec.replicas <= 50
      message: at most 50 replicas
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: replicas-{suffix}}}
spec:
  policyName: replicas-{suffix}
  validationActions: [Deny]
  matchResources:
    namespaceSelector: {{matchLabels: {{berth.test/policy: {suffix}}}}}
"
        ),
    )
    .write(
        "apis/crd.yaml",
        &format!(
            "{}---
apiVersion: cel.berth.dev/v1
kind: Range{suffix}
metadata: {{name: ports}}
spec: {{min: 1000, max: 2000}}
",
            common::crd_yaml(
                "cel.berth.dev",
                &format!("Range{suffix}"),
                &format!("ranges{suffix}"),
                "
              type: object
              x-kubernetes-validations:
                - rule: self.min <= self.max
                  message: min must not exceed max
              properties:
                min: {type: integer}
                max: {type: integer}"
            )
        ),
    );
    repo.commit("current APIs");
    // its cluster-scoped objects are this run's alone (the suffix), and so is the sync
    let sync = format!("apis-{suffix}");
    let synced = sync_twice(&repo, &sync, "apis").await;
    assert_eq!(synced.objects.len(), 7, "{:?}", synced.objects.keys());

    // the CRD's CEL rule holds: a range that breaks it fails alone, naming its file and the rule
    repo.write(
        "apis/bad.yaml",
        &format!(
            "apiVersion: cel.berth.dev/v1\nkind: Range{suffix}\nmetadata: {{name: upside-down}}\nspec: {{min: 5, max: 1}}\n"
        ),
    );
    repo.commit("a range the rule refuses");
    let out = synced.berth.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("apis/bad.yaml:1") && all.contains("min must not exceed max"),
        "{all}"
    );
    let client = client().await;
    assert_eq!(
        versions(&client, &sync, &synced.namespace).await,
        synced.objects,
        "the rest stays as it was"
    );
}
