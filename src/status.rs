//! What berth records on the cluster: the labels and annotations on synced objects, the
//! `berth-sync-<name>` status ConfigMap (status annotations + inventory) and Events.
//! The next status is computed purely ([`next`]); one server-side apply writes it.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, Event, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::render::ObjectId;

/// Field manager of every server-side apply berth makes.
pub const FIELD_MANAGER: &str = "berth";
/// Label marking objects berth manages, with value [`MANAGER_VALUE`].
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER_VALUE: &str = "berth";
/// Label naming the sync that owns an object.
pub const SYNC_LABEL: &str = "berth.dev/sync";
/// Annotation `<repo-url>#<path>` on synced objects.
pub const SOURCE: &str = "berth.dev/source";
/// Annotation: the commit of the last change (on objects) or the synced commit (on status).
pub const REVISION: &str = "berth.dev/revision";
/// Annotation that keeps an object when it leaves git (`disabled`).
pub const PRUNE: &str = "berth.dev/prune";
/// Argo CD's sync options annotation; `Prune=false` is honored like [`PRUNE`].
pub const ARGOCD_SYNC_OPTIONS: &str = "argocd.argoproj.io/sync-options";
/// Status ConfigMap annotations.
pub const STATUS: &str = "berth.dev/status";
pub const HEALTH: &str = "berth.dev/health";
pub const LAST_SYNC: &str = "berth.dev/last-sync";
pub const MESSAGE: &str = "berth.dev/message";
/// Label on status ConfigMaps, so `berth status` finds them all.
pub const KIND_LABEL: &str = "berth.dev/kind";

/// Prefix of status ConfigMap names.
pub const SYNC_PREFIX: &str = "berth-sync-";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read status {name}: {message}")]
    Read { name: String, message: String },
    #[error("failed to write status {name}: {message}")]
    Write { name: String, message: String },
}

/// A sync's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    Synced,
    OutOfSync,
    #[default]
    Failed,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Synced => "Synced",
            Self::OutOfSync => "OutOfSync",
            Self::Failed => "Failed",
        })
    }
}

impl Phase {
    fn parse(s: &str) -> Self {
        match s {
            "Synced" => Self::Synced,
            "OutOfSync" => Self::OutOfSync,
            _ => Self::Failed,
        }
    }
}

/// Health of a sync's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Health {
    Healthy,
    Progressing,
    Degraded,
    #[default]
    Unknown,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Healthy => "Healthy",
            Self::Progressing => "Progressing",
            Self::Degraded => "Degraded",
            Self::Unknown => "Unknown",
        })
    }
}

impl Health {
    fn parse(s: &str) -> Self {
        match s {
            "Healthy" => Self::Healthy,
            "Progressing" => Self::Progressing,
            "Degraded" => Self::Degraded,
            _ => Self::Unknown,
        }
    }
}

/// What berth remembers about an object it applied: enough to prune it and to know it is
/// unchanged without asking the API server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub api_version: String,
    /// The resourceVersion berth last saw after applying or checking the object.
    pub resource_version: String,
    /// The object's `metadata.generation` then (0 for kinds without one).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: i64,
    /// Fingerprint of the desired object it was applied from.
    pub hash: String,
    /// Commit of the object's last change.
    pub revision: String,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Record {
    /// Equal in everything but the resourceVersion, which moves on every status update a
    /// controller makes and is not worth a write of its own.
    fn same_as(&self, other: &Self) -> bool {
        Self {
            resource_version: String::new(),
            ..self.clone()
        } == Self {
            resource_version: String::new(),
            ..other.clone()
        }
    }
}

/// The content of a status ConfigMap.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncStatus {
    pub phase: Phase,
    pub health: Health,
    pub revision: String,
    pub last_sync: String,
    pub message: String,
    pub inventory: BTreeMap<ObjectId, Record>,
}

/// The status to write after a pass, or `None` when nothing would change. `last-sync` moves
/// only when status, health, revision, message or inventory change (resourceVersions alone do
/// not count), so a no-op resync writes nothing.
pub fn next(old: Option<&SyncStatus>, mut new: SyncStatus, now: &str) -> Option<SyncStatus> {
    if let Some(old) = old {
        let same_inventory = old.inventory.len() == new.inventory.len()
            && old
                .inventory
                .iter()
                .zip(&new.inventory)
                .all(|((a, ra), (b, rb))| a == b && ra.same_as(rb));
        let same_fields = old.phase == new.phase
            && old.health == new.health
            && old.revision == new.revision
            && old.message == new.message;
        if same_inventory && same_fields {
            return None;
        }
    }
    new.last_sync = now.to_owned();
    Some(new)
}

/// Health from live objects: workloads that have not rolled out are Progressing, ones whose
/// rollout exceeded its deadline are Degraded; everything else counts as Healthy.
pub fn health<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Health {
    let mut result = Health::Healthy;
    for o in objects {
        let h = object_health(o);
        if h == Health::Degraded {
            return h;
        }
        if h == Health::Progressing {
            result = h;
        }
    }
    result
}

fn object_health(o: &Value) -> Health {
    let kind = o["kind"].as_str().unwrap_or_default();
    if !matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet") {
        return Health::Healthy;
    }
    let status = &o["status"];
    let generation = o["metadata"]["generation"].as_i64().unwrap_or(0);
    if status["observedGeneration"].as_i64().unwrap_or(0) < generation {
        return Health::Progressing;
    }
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    if conditions
        .iter()
        .any(|c| c["reason"] == "ProgressDeadlineExceeded")
    {
        return Health::Degraded;
    }
    let count = |field: &str| status[field].as_i64().unwrap_or(0);
    let ready = match kind {
        "DaemonSet" => {
            count("updatedNumberScheduled") >= count("desiredNumberScheduled")
                && count("numberAvailable") >= count("desiredNumberScheduled")
        }
        _ => {
            let want = o["spec"]["replicas"].as_i64().unwrap_or(1);
            count("updatedReplicas") >= want
                && count(if kind == "StatefulSet" {
                    "readyReplicas"
                } else {
                    "availableReplicas"
                }) >= want
        }
    };
    if ready {
        Health::Healthy
    } else {
        Health::Progressing
    }
}

/// Name of a sync's status ConfigMap.
pub fn config_map_name(sync: &str) -> String {
    format!("{SYNC_PREFIX}{sync}")
}

/// The message of an API error (the server's own text for rejected requests).
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Reads a sync's status ConfigMap; `None` when the sync never ran.
///
/// # Errors
/// The API server cannot be read.
pub async fn load(
    client: &Client,
    namespace: &str,
    sync: &str,
) -> Result<Option<SyncStatus>, Error> {
    let name = config_map_name(sync);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = api.get_opt(&name).await.map_err(|e| Error::Read {
        name: format!("{namespace}/{name}"),
        message: api_message(&e),
    })?;
    Ok(cm.map(|cm| from_config_map(&cm)))
}

/// Every sync status ConfigMap in berth's namespace, by sync name.
///
/// # Errors
/// The API server cannot be read.
pub async fn list(client: &Client, namespace: &str) -> Result<BTreeMap<String, SyncStatus>, Error> {
    records(client, namespace, "sync", SYNC_PREFIX, from_config_map)
        .await
        .map_err(|e| Error::Read {
            name: format!("{namespace}/{SYNC_PREFIX}*"),
            message: api_message(&e),
        })
}

/// berth's status ConfigMaps of one kind (`sync`, `pipeline`, `cleanup`), parsed and keyed by
/// the name after their prefix.
///
/// # Errors
/// The API server cannot be read.
pub async fn records<T>(
    client: &Client,
    namespace: &str,
    kind: &str,
    prefix: &str,
    parse: fn(&ConfigMap) -> T,
) -> Result<BTreeMap<String, T>, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let params = kube::api::ListParams::default().labels(&format!("{KIND_LABEL}={kind}"));
    let cms = api.list(&params).await?;
    Ok(cms
        .items
        .iter()
        .filter_map(|cm| {
            let name = cm.metadata.name.as_deref()?.strip_prefix(prefix)?;
            Some((name.to_owned(), parse(cm)))
        })
        .collect())
}

fn from_config_map(cm: &ConfigMap) -> SyncStatus {
    let annotations = cm.metadata.annotations.clone().unwrap_or_default();
    let get = |k: &str| annotations.get(k).cloned().unwrap_or_default();
    let inventory = cm
        .data
        .iter()
        .flatten()
        .filter_map(|(key, value)| {
            Some((ObjectId::from_key(key)?, serde_json::from_str(value).ok()?))
        })
        .collect();
    SyncStatus {
        phase: Phase::parse(&get(STATUS)),
        health: Health::parse(&get(HEALTH)),
        revision: get(REVISION),
        last_sync: get(LAST_SYNC),
        message: get(MESSAGE),
        inventory,
    }
}

/// Writes a sync's status ConfigMap with server-side apply.
///
/// # Errors
/// The write is rejected.
pub async fn save(
    client: &Client,
    namespace: &str,
    sync: &str,
    status: &SyncStatus,
) -> Result<(), Error> {
    let name = config_map_name(sync);
    let annotations = BTreeMap::from([
        (STATUS.to_owned(), status.phase.to_string()),
        (HEALTH.to_owned(), status.health.to_string()),
        (REVISION.to_owned(), status.revision.clone()),
        (LAST_SYNC.to_owned(), status.last_sync.clone()),
        (MESSAGE.to_owned(), status.message.clone()),
    ]);
    let labels = BTreeMap::from([
        (MANAGED_BY.to_owned(), MANAGER_VALUE.to_owned()),
        (KIND_LABEL.to_owned(), "sync".to_owned()),
        (SYNC_LABEL.to_owned(), sync.to_owned()),
    ]);
    let data = status
        .inventory
        .iter()
        .map(|(id, record)| {
            let value = serde_json::to_string(record).expect("records serialize");
            (id.key(), value)
        })
        .collect();
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    };
    let mut object = serde_json::to_value(&cm).expect("ConfigMaps serialize");
    object["apiVersion"] = Value::from("v1");
    object["kind"] = Value::from("ConfigMap");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    // force: berth is the only writer of its own status objects.
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let fail = |e: &kube::Error| Error::Write {
        name: format!("{namespace}/{name}"),
        message: api_message(e),
    };
    match api.patch(&name, &params, &Patch::Apply(&object)).await {
        Ok(_) => Ok(()),
        // berth run from a laptop: its namespace may not exist yet, so make it once.
        Err(kube::Error::Api(s)) if s.code == 404 => {
            create_namespace(client, namespace)
                .await
                .map_err(|e| fail(&e))?;
            api.patch(&name, &params, &Patch::Apply(&object))
                .await
                .map_err(|e| fail(&e))?;
            Ok(())
        }
        Err(e) => Err(fail(&e)),
    }
}

async fn create_namespace(client: &Client, namespace: &str) -> Result<(), kube::Error> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = k8s_openapi::api::core::v1::Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        other => other.map(|_| tracing::info!(namespace, "created berth's namespace")),
    }
}

/// Kind of an Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Records a Kubernetes Event on one of berth's status ConfigMaps (`berth-sync-<name>`,
/// `berth-pipeline-<name>`). Failures are logged, not raised: an Event is a courtesy, never a
/// reason to fail a pass.
pub async fn event(
    client: &Client,
    namespace: &str,
    config_map: &str,
    kind: EventType,
    reason: &str,
    message: &str,
) {
    let now = Timestamp::now();
    let name = config_map.to_owned();
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("ConfigMap".to_owned()),
            name: Some(name),
            namespace: Some(namespace.to_owned()),
            ..ObjectReference::default()
        },
        reason: Some(reason.to_owned()),
        message: Some(message.chars().take(1024).collect()),
        type_: Some(format!("{kind:?}")),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: None::<MicroTime>,
        count: Some(1),
        reporting_component: Some(FIELD_MANAGER.to_owned()),
        source: Some(k8s_openapi::api::core::v1::EventSource {
            component: Some(FIELD_MANAGER.to_owned()),
            host: None,
        }),
        ..Event::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        tracing::warn!(error = %api_message(&e), reason, "failed to record event");
    }
}

/// Current time as RFC 3339, second precision.
pub fn now() -> String {
    Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map_or_else(|_| Timestamp::now().to_string(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(phase: Phase, revision: &str) -> SyncStatus {
        SyncStatus {
            phase,
            health: Health::Healthy,
            revision: revision.into(),
            ..SyncStatus::default()
        }
    }

    #[test]
    fn next_writes_nothing_when_nothing_changed() {
        let old = next(None, status(Phase::Synced, "a"), "t1").expect("first write");
        assert_eq!(old.last_sync, "t1");
        assert_eq!(next(Some(&old), status(Phase::Synced, "a"), "t2"), None);
        let changed = next(Some(&old), status(Phase::Synced, "b"), "t3").expect("new revision");
        assert_eq!(changed.last_sync, "t3");
        let failed = next(Some(&old), status(Phase::Failed, "a"), "t4").expect("flip");
        assert_eq!(failed.phase, Phase::Failed);
        let id = ObjectId::from_key("_ConfigMap_n_a").expect("key");
        let record = |rv: &str, generation| Record {
            resource_version: rv.into(),
            generation,
            ..Record::default()
        };
        let mut with = status(Phase::Synced, "a");
        with.inventory.insert(id.clone(), record("1", 1));
        let old = next(None, with.clone(), "t5").expect("first");
        with.inventory.insert(id.clone(), record("2", 1));
        assert_eq!(
            next(Some(&old), with.clone(), "t6"),
            None,
            "a new resourceVersion alone"
        );
        with.inventory.insert(id, record("3", 2));
        assert!(next(Some(&old), with, "t7").is_some(), "a new generation");
    }

    #[test]
    fn workload_health_follows_rollout() {
        let mut d = json!({"kind": "Deployment", "metadata": {"generation": 2},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "updatedReplicas": 2, "availableReplicas": 2}});
        let cm = json!({"kind": "ConfigMap"});
        assert_eq!(health([&d, &cm]), Health::Healthy);
        d["status"]["availableReplicas"] = json!(1);
        assert_eq!(health([&d, &cm]), Health::Progressing);
        d["status"]["conditions"] =
            json!([{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]);
        assert_eq!(health([&cm, &d]), Health::Degraded);
        let fresh = json!({"kind": "StatefulSet", "metadata": {"generation": 1}, "status": {}});
        assert_eq!(health([&fresh]), Health::Progressing);
    }

    #[test]
    fn config_map_round_trips_inventory() {
        let id = ObjectId::from_key("apps_Deployment_web_api").expect("key");
        let record = Record {
            api_version: "apps/v1".into(),
            resource_version: "12".into(),
            generation: 3,
            hash: "h".into(),
            revision: "c".into(),
        };
        let cm = ConfigMap {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([
                    (STATUS.to_owned(), "OutOfSync".to_owned()),
                    (HEALTH.to_owned(), "Progressing".to_owned()),
                ])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([
                (id.key(), serde_json::to_string(&record).expect("json")),
                ("garbage".to_owned(), "x".to_owned()),
            ])),
            ..ConfigMap::default()
        };
        let s = from_config_map(&cm);
        assert_eq!(s.phase, Phase::OutOfSync);
        assert_eq!(s.health, Health::Progressing);
        assert_eq!(s.inventory, BTreeMap::from([(id, record)]));
    }
}
