//! The API server: connecting, discovering resources (any kind, CRDs included) and handing out
//! dynamic object handles for them.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{Discovery, Scope as KubeScope};
use kube::{Client, Config};

use crate::object::{ObjectId, Scope};

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{0}")]
    Config(String),
    #[error("failed to set up the API client: {0}")]
    Connect(String),
    #[error("the API server at {server} {reason}")]
    Unreachable { server: String, reason: String },
    #[error("API discovery failed: {0}")]
    Discovery(#[source] kube::Error),
}

/// How to reach the cluster.
#[derive(Debug, Clone, Default)]
pub(crate) struct Target<'a> {
    pub kubeconfig: Option<&'a Path>,
    pub context: Option<&'a str>,
}

/// Whether this replica may write to the cluster. Without leader election there is no fence.
/// With it, writes are allowed only until the moment the lease this replica last renewed
/// could pass to a standby, measured on the monotonic clock, so a replica that was paused
/// (SIGSTOP, a long GC, a frozen VM) writes nothing when it wakes up.
#[derive(Debug, Default)]
pub(crate) struct Fence {
    until: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Fence {
    /// Allows writes until `until`.
    pub(crate) fn hold_until(&self, until: std::time::Instant) {
        *self.until.lock().expect("fence lock") = Some(until);
    }

    /// Refuses writes from now on.
    pub(crate) fn close(&self) {
        *self.until.lock().expect("fence lock") = None;
    }

    /// Whether a write may go out now.
    pub(crate) fn holds(&self) -> bool {
        self.until
            .lock()
            .expect("fence lock")
            .is_some_and(|until| std::time::Instant::now() < until)
    }
}

/// A client and the API server it talks to, and how to make clients that act as someone
/// else (impersonation) through the same fence.
#[derive(Clone)]
pub(crate) struct Connection {
    pub client: Client,
    /// The server's URL, for messages.
    pub server: String,
    config: Config,
    fence: Option<std::sync::Arc<Fence>>,
}

impl Connection {
    /// A client that acts as the ServiceAccount `namespace/name`: the user and groups the API
    /// server would authenticate it with, so its RBAC is the only policy.
    ///
    /// # Errors
    /// The client cannot be set up.
    pub(crate) fn as_service_account(&self, namespace: &str, name: &str) -> Result<Client, Error> {
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(service_account_user(namespace, name));
        config.auth_info.impersonate_groups = Some(vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".to_owned(),
        ]);
        build(config, self.fence.clone())
    }
}

/// The user name the API server gives a ServiceAccount.
pub(crate) fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// A kubeconfig that could not be read, naming the file and the cause once.
fn unreadable(path: &str, e: &kube::config::KubeconfigError) -> Error {
    let cause = std::error::Error::source(e).map_or_else(|| e.to_string(), ToString::to_string);
    Error::Config(format!("cannot read kubeconfig {path}: {cause}"))
}

/// The kubeconfig's configuration for `context`, or an error that lists the contexts there are.
async fn from_kubeconfig(
    kubeconfig: Kubeconfig,
    path: &str,
    options: &KubeConfigOptions,
) -> Result<Config, Error> {
    if let Some(wanted) = &options.context
        && !kubeconfig.contexts.iter().any(|c| &c.name == wanted)
    {
        let known: Vec<&str> = kubeconfig
            .contexts
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        return Err(Error::Config(format!(
            "context {wanted:?} is not in kubeconfig {path} (contexts: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    }
    Config::from_custom_kubeconfig(kubeconfig, options)
        .await
        .map_err(|e| Error::Config(format!("kubeconfig {path}: {e}")))
}

/// Connects with, in order: `--kubeconfig`, the in-cluster service account, `KUBECONFIG` or
/// `~/.kube/config`. With a `fence`, every request but a read is refused while the fence is
/// closed: checked before each write, by construction.
///
/// # Errors
/// No usable configuration.
pub(crate) async fn connect(
    target: &Target<'_>,
    fence: Option<std::sync::Arc<Fence>>,
) -> Result<Connection, Error> {
    let options = KubeConfigOptions {
        context: target.context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let mut config = if let Some(path) = target.kubeconfig {
        let shown = path.display().to_string();
        let kubeconfig = Kubeconfig::read_from(path).map_err(|e| unreadable(&shown, &e))?;
        from_kubeconfig(kubeconfig, &shown, &options).await?
    } else if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() && target.context.is_none() {
        Config::incluster().map_err(|e| Error::Config(format!("in-cluster configuration: {e}")))?
    } else {
        let shown = std::env::var("KUBECONFIG").unwrap_or_else(|_| "~/.kube/config".to_owned());
        let kubeconfig = Kubeconfig::read().map_err(|e| unreadable(&shown, &e))?;
        from_kubeconfig(kubeconfig, &shown, &options).await?
    };
    let server = config.cluster_url.to_string();
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(60));
    config.write_timeout = Some(Duration::from_secs(60));
    let client = build(config.clone(), fence.clone())?;
    Ok(Connection {
        client,
        server,
        config,
        fence,
    })
}

/// A client for `config`, its writes through `fence` when there is one.
fn build(config: Config, fence: Option<std::sync::Arc<Fence>>) -> Result<Client, Error> {
    let builder =
        kube::client::ClientBuilder::try_from(config).map_err(|e| Error::Connect(e.to_string()))?;
    Ok(match fence {
        None => builder.build(),
        Some(fence) => builder
            .with_layer(&tower::filter::FilterLayer::new(
                move |request: http::Request<kube::client::Body>| {
                    let read = matches!(
                        *request.method(),
                        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
                    );
                    if read || fence.holds() {
                        Ok(request)
                    } else {
                        Err(tower::BoxError::from(
                            "refused to write: this replica cannot prove it still holds the lease",
                        ))
                    }
                },
            ))
            .build(),
    })
}

/// Checks that the API server answers berth, and if not says which server, what failed and
/// what to check: nothing listening, TLS, credentials, or no answer in time.
///
/// # Errors
/// The server cannot be reached or refuses berth.
pub(crate) async fn reach(connection: &Connection) -> Result<(), Error> {
    let server = connection.server.clone();
    let unreachable = |reason: String| Error::Unreachable {
        server: server.clone(),
        reason,
    };
    let answer = tokio::time::timeout(
        Duration::from_secs(15),
        connection.client.apiserver_version(),
    )
    .await;
    let e = match answer {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(e)) => e,
        Err(_) => {
            return Err(unreachable(
                "did not answer within 15s (check the address and the network)".to_owned(),
            ));
        }
    };
    if let kube::Error::Api(status) = &e {
        return Err(unreachable(match status.code {
            401 => "refused berth's credentials (401 Unauthorized): check the token or client \
                    certificate of the kubeconfig user"
                .to_owned(),
            code => format!("answered {code}: {}", status.message),
        }));
    }
    let chain = api_message(&e);
    let lower = chain.to_lowercase();
    Err(unreachable(if lower.contains("connection refused") {
        "refused the connection: nothing listens there (check that it runs, and the server \
         address of the kubeconfig context)"
            .to_owned()
    } else if ["certificate", "tls", "ssl", "handshake"]
        .iter()
        .any(|w| lower.contains(w))
    {
        format!(
            "failed the TLS handshake ({chain}): check the certificate authority of the kubeconfig cluster"
        )
    } else if ["dns", "lookup", "resolve"]
        .iter()
        .any(|w| lower.contains(w))
    {
        format!("cannot be found ({chain}): check the server address of the kubeconfig context")
    } else {
        format!("cannot be reached: {chain}")
    }))
}

/// A discovered resource type.
#[derive(Debug, Clone)]
pub(crate) struct Resource {
    pub api: ApiResource,
    pub namespaced: bool,
}

/// Resource types of the groups a sync uses, found through discovery.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resources {
    /// (group, version, kind) → resource, plus (group, "", kind) for the preferred version.
    by_kind: HashMap<(String, String, String), Resource>,
}

impl Resources {
    /// Discovers the given API groups (`""` is the core group). Groups the server does not
    /// serve are simply absent. One aggregated read of `/apis` (and `/api` for the core
    /// group): a snapshot, so a group that a CRD adds or removes meanwhile is either there or
    /// not, never a 404 halfway through.
    ///
    /// # Errors
    /// The API server cannot be reached.
    pub(crate) async fn discover(
        client: &Client,
        groups: &BTreeSet<String>,
    ) -> Result<Self, Error> {
        let allow: Vec<&str> = groups.iter().map(String::as_str).collect();
        let discovery = Discovery::new(client.clone())
            .filter(&allow)
            .run_aggregated()
            .await
            .map_err(Error::Discovery)?;
        let mut by_kind = HashMap::new();
        for group in discovery.groups() {
            for version in group.versions() {
                for (api, caps) in group.versioned_resources(version) {
                    let resource = Resource {
                        namespaced: caps.scope == KubeScope::Namespaced,
                        api: api.clone(),
                    };
                    by_kind.insert(
                        (api.group.clone(), api.version.clone(), api.kind.clone()),
                        resource,
                    );
                }
            }
            for (api, caps) in group.recommended_resources() {
                by_kind.insert(
                    (api.group.clone(), String::new(), api.kind.clone()),
                    Resource {
                        namespaced: caps.scope == KubeScope::Namespaced,
                        api,
                    },
                );
            }
        }
        tracing::debug!(groups = ?allow, kinds = by_kind.len(), "discovery read");
        Ok(Self { by_kind })
    }

    /// Adds the kinds an Established CustomResourceDefinition serves, from its own spec, as
    /// discovery lists them: each served version, and the preferred one (the highest by
    /// Kubernetes' version priority). Established means the API server serves them, so no
    /// discovery read has to wait for its own list to catch up.
    pub(crate) fn add_crd(&mut self, crd: &serde_json::Value) {
        let spec = &crd["spec"];
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        let (group, kind, plural) = (
            text(&spec["group"]),
            text(&spec["names"]["kind"]),
            text(&spec["names"]["plural"]),
        );
        if group.is_empty() || kind.is_empty() || plural.is_empty() {
            return;
        }
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        let served: Vec<String> = spec["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["served"].as_bool() == Some(true))
            .map(|v| text(&v["name"]))
            .filter(|v| !v.is_empty())
            .collect();
        let resource = |version: &str| Resource {
            api: ApiResource {
                group: group.clone(),
                version: version.to_owned(),
                api_version: format!("{group}/{version}"),
                kind: kind.clone(),
                plural: plural.clone(),
            },
            namespaced,
        };
        for version in &served {
            let key = (group.clone(), version.clone(), kind.clone());
            self.by_kind.insert(key, resource(version));
        }
        let preferred = served
            .iter()
            .max_by_key(|v| v.parse::<kube::core::Version>().map(|v| v.priority()).ok());
        if let Some(version) = preferred {
            let key = (group.clone(), String::new(), kind.clone());
            self.by_kind.insert(key, resource(version));
        }
    }

    /// The resource for an object's apiVersion and kind.
    pub(crate) fn get(&self, api_version: &str, kind: &str) -> Option<&Resource> {
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.by_kind
            .get(&(group.to_owned(), version.to_owned(), kind.to_owned()))
    }

    /// The preferred version of a group and kind (for inventory entries whose version moved).
    pub(crate) fn preferred(&self, group: &str, kind: &str) -> Option<&Resource> {
        self.by_kind
            .get(&(group.to_owned(), String::new(), kind.to_owned()))
    }
}

impl Scope for Resources {
    fn namespaced(&self, group: &str, kind: &str) -> Option<bool> {
        self.preferred(group, kind).map(|r| r.namespaced)
    }
}

/// A dynamic handle for a resource, scoped to `namespace` when namespaced.
pub(crate) fn api(
    client: &Client,
    resource: &Resource,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match (resource.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource.api),
        _ => Api::all_with(client.clone(), &resource.api),
    }
}

/// Server-side apply (or its dry run, with `params`) of one object; the server's answer
/// without its managedFields (see [`Lean`]).
///
/// # Errors
/// The server refuses the apply.
pub(crate) async fn apply(
    client: &Client,
    api: &Api<DynamicObject>,
    name: &str,
    params: &PatchParams,
    object: &serde_json::Value,
) -> Result<serde_json::Value, kube::Error> {
    let request = kube::core::Request::new(api.resource_url())
        .patch(name, params, &Patch::Apply(object))
        .map_err(kube::Error::BuildRequest)?;
    Ok(client.request::<Lean>(request).await?.0)
}

/// One object, without its managedFields (see [`Lean`]); `None` when there is none.
///
/// # Errors
/// Any refusal but a 404.
pub(crate) async fn get(
    client: &Client,
    api: &Api<DynamicObject>,
    name: &str,
) -> Result<Option<serde_json::Value>, kube::Error> {
    let request = kube::core::Request::new(api.resource_url())
        .get(name, &kube::api::GetParams::default())
        .map_err(kube::Error::BuildRequest)?;
    match client.request::<Lean>(request).await {
        Ok(lean) => Ok(Some(lean.0)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Bounds how many bytes of objects are in flight to the API server at once, whatever the
/// concurrency: each request holds its object's JSON size (at least 1 KiB, at most the whole
/// budget) until it is answered. Many small objects go at full concurrency; an operator's
/// CRDs of a megabyte each go a few at a time, so that their requests and answers do not all
/// sit in memory together.
pub(crate) struct InFlight(tokio::sync::Semaphore);

impl InFlight {
    /// The budget, in KiB of JSON.
    const KIB: usize = 4 * 1024;

    pub(crate) fn new() -> Self {
        Self(tokio::sync::Semaphore::new(Self::KIB))
    }

    /// Waits until the object fits in the budget; it holds its share until the permit drops.
    pub(crate) async fn admit(
        &self,
        object: &serde_json::Value,
    ) -> tokio::sync::SemaphorePermit<'_> {
        let kib = (json_size(object) / 1024).clamp(1, Self::KIB);
        self.0
            .acquire_many(u32::try_from(kib).unwrap_or(u32::MAX))
            .await
            .expect("the semaphore is never closed")
    }
}

/// The length of a value's JSON text, counted without building it.
fn json_size(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).expect("a JSON value always serializes");
    count.0
}

/// An object as the API server sent it, as JSON, without `metadata.managedFields`: nothing
/// berth reads needs them, and for a server-side-applied CRD they are as large as its whole
/// schema. They are skipped while parsing, never built.
struct Lean(serde_json::Value);

impl<'de> serde::Deserialize<'de> for Lean {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(LeanMap { top: true }).map(Lean)
    }
}

/// Builds a JSON map; at the top, its `metadata` is built without `managedFields`.
struct LeanMap {
    top: bool,
}

impl<'de> serde::de::Visitor<'de> for LeanMap {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = match (self.top, key.as_str()) {
                (true, "metadata") => map.next_value::<LeanMeta>()?.0,
                (false, "managedFields") => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
                _ => map.next_value()?,
            };
            out.insert(key, value);
        }
        Ok(serde_json::Value::Object(out))
    }
}

struct LeanMeta(serde_json::Value);

impl<'de> serde::Deserialize<'de> for LeanMeta {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(LeanMap { top: false }).map(LeanMeta)
    }
}

/// The objects in a namespace that someone put there: every listable namespaced kind, less
/// what the cluster itself keeps in every namespace (the `default` ServiceAccount and its
/// token, `kube-root-ca.crt`, Events, Endpoints) and objects another object owns (a Pod of a
/// ReplicaSet, say).
///
/// # Errors
/// Discovery or a list fails.
pub(crate) async fn namespace_contents(
    client: &Client,
    namespace: &str,
) -> Result<Vec<ObjectId>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run_aggregated().await?;
    let mut found = Vec::new();
    for group in discovery.groups() {
        for (api, caps) in group.recommended_resources() {
            let generated = matches!(
                api.plural.as_str(),
                "events" | "endpoints" | "endpointslices"
            );
            if caps.scope != KubeScope::Namespaced
                || !caps.supports_operation(kube::discovery::verbs::LIST)
                || generated
            {
                continue;
            }
            let list = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &api)
                .list(&kube::api::ListParams::default())
                .await?;
            for o in list.items {
                let meta = &o.metadata;
                let name = meta.name.clone().unwrap_or_default();
                let owned = meta
                    .owner_references
                    .as_ref()
                    .is_some_and(|r| !r.is_empty());
                let system = match api.kind.as_str() {
                    "ServiceAccount" => name == "default",
                    "ConfigMap" => name == "kube-root-ca.crt",
                    "Secret" => o.data["type"] == "kubernetes.io/service-account-token",
                    _ => false,
                };
                if !owned && !system && meta.deletion_timestamp.is_none() {
                    found.push(ObjectId {
                        group: api.group.clone(),
                        kind: api.kind.clone(),
                        namespace: namespace.to_owned(),
                        name,
                    });
                }
            }
        }
    }
    Ok(found)
}

/// The message of an API error: the server's own text for rejected requests; for requests
/// that got no answer, every cause down the chain, and what it likely means.
pub(crate) fn api_message(e: &kube::Error) -> String {
    if let kube::Error::Api(status) = e {
        return status.message.clone();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    let lower = text.to_lowercase();
    if lower.contains("connection closed")
        || lower.contains("incomplete message")
        || lower.contains("sendrequest")
    {
        text.push_str(
            " (the API server closed the connection without answering: it may have failed \
             handling this request; its log says why)",
        );
    }
    text
}

/// Whether an API error is the server's 404 Not Found.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether an API error is the server's 409 Conflict (on create: the object exists).
pub(crate) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lean_objects_have_no_managed_fields_and_keep_the_rest() {
        let text = r#"{"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "managedFields": [{"manager": "berth", "fieldsV1": {"f:data": {}}}],
                         "labels": {"managedFields": "a label keeps its name"}},
            "data": {"managedFields": "x"}}"#;
        let Lean(object) = serde_json::from_str(text).expect("an object");
        assert_eq!(
            object,
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "a", "labels": {"managedFields": "a label keeps its name"}},
                "data": {"managedFields": "x"}})
        );
        assert!(
            serde_json::from_str::<Lean>("[1]").is_err(),
            "not an object"
        );
    }

    #[test]
    fn an_established_crd_serves_its_served_versions_and_prefers_the_most_stable() {
        let crd = serde_json::json!({"spec": {"group": "example.com", "scope": "Cluster",
            "names": {"kind": "Gear", "plural": "gears"},
            "versions": [{"name": "v1beta1", "served": true}, {"name": "v1", "served": true},
                         {"name": "v2alpha1", "served": true}, {"name": "v0", "served": false}]}});
        let mut r = Resources::default();
        r.add_crd(&crd);
        let gear = r.get("example.com/v1beta1", "Gear").expect("served");
        assert_eq!(
            (gear.api.plural.as_str(), gear.namespaced),
            ("gears", false)
        );
        assert!(r.get("example.com/v2alpha1", "Gear").is_some());
        assert!(r.get("example.com/v0", "Gear").is_none(), "not served");
        let preferred = r.preferred("example.com", "Gear").expect("preferred");
        assert_eq!(preferred.api.api_version, "example.com/v1");
        let mut namespaced = crd.clone();
        namespaced["spec"]["scope"] = serde_json::json!("Namespaced");
        namespaced["spec"]["names"]["kind"] = serde_json::json!("Cog");
        r.add_crd(&namespaced);
        assert!(r.preferred("example.com", "Cog").expect("cog").namespaced);
        r.add_crd(&serde_json::json!({"spec": {}}));
        assert_eq!(
            r.by_kind.len(),
            8,
            "two kinds of three served versions and a preferred one; an incomplete CRD adds nothing"
        );
    }

    #[test]
    fn json_size_is_the_length_of_the_text() {
        let v = serde_json::json!({"a": [1, "two", null], "b": {"c": true}});
        assert_eq!(
            json_size(&v),
            serde_json::to_string(&v).expect("text").len()
        );
    }

    #[tokio::test]
    async fn large_objects_share_the_budget_small_ones_barely_touch_it() {
        let budget = InFlight::new();
        let large = serde_json::json!({"text": "x".repeat(3 * 1024 * 1024)});
        let first = budget.admit(&large).await;
        assert_eq!(budget.0.available_permits(), InFlight::KIB - 3 * 1024);
        let small = budget.admit(&serde_json::json!({"a": 1})).await;
        assert_eq!(budget.0.available_permits(), InFlight::KIB - 3 * 1024 - 1);
        let huge = serde_json::json!({"text": "x".repeat(9 * 1024 * 1024)});
        let waiting = budget.admit(&huge);
        tokio::pin!(waiting);
        assert!(
            futures::poll!(&mut waiting).is_pending(),
            "a larger object waits for the budget"
        );
        drop((first, small));
        let _whole = waiting.await;
        assert_eq!(
            budget.0.available_permits(),
            0,
            "one object larger than the budget takes all of it"
        );
    }
}
