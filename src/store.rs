//! berth's status records: one ConfigMap per sync, pipeline, cleanup rule and for the agent, in
//! berth's namespace, labelled by [`RecordKind`]. Every record is read, listed and written
//! here, and written one way: a server-side apply of the fields its writer owns.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::Value;

use crate::cluster::{api_message, is_conflict, is_not_found};
use crate::vocab::{KIND_LABEL, MANAGED_BY, MANAGER_VALUE, RecordKind};

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("failed to read status {name}: {message}")]
    Read { name: String, message: String },
    #[error("failed to write status {name}: {message}")]
    Write { name: String, message: String },
    #[error("status {name} was written by another pass meanwhile; this pass leaves it")]
    Conflict { name: String },
}

/// The fields of a record one writer owns: the labels besides berth's own, annotations and
/// data keys. A writer always applies all of its fields; what it leaves out is removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Fields {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `None` leaves `data` to other writers.
    pub data: Option<BTreeMap<String, String>>,
    /// Write only if the record is still at this resourceVersion (the one the writer last
    /// read or wrote), so a pass never overwrites what another pass wrote meanwhile.
    pub resource_version: Option<String>,
}

/// The status records in one namespace.
#[derive(Clone)]
pub(crate) struct Store {
    client: Client,
    namespace: String,
}

impl Store {
    pub(crate) fn new(client: &Client, namespace: &str) -> Self {
        Self {
            client: client.clone(),
            namespace: namespace.to_owned(),
        }
    }

    fn api(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn full_name(&self, config_map: &str) -> String {
        format!("{}/{config_map}", self.namespace)
    }

    /// One record; `None` when it was never written.
    ///
    /// # Errors
    /// The API server cannot be read.
    pub(crate) async fn get(
        &self,
        kind: RecordKind,
        name: &str,
    ) -> Result<Option<ConfigMap>, Error> {
        let config_map = kind.config_map(name);
        self.api()
            .get_opt(&config_map)
            .await
            .map_err(|e| Error::Read {
                name: self.full_name(&config_map),
                message: api_message(&e),
            })
    }

    /// Every record of a kind, read by `parse` and keyed by the name after its prefix.
    ///
    /// # Errors
    /// The API server cannot be read.
    pub(crate) async fn list<T>(
        &self,
        kind: RecordKind,
        parse: fn(&ConfigMap) -> T,
    ) -> Result<BTreeMap<String, T>, Error> {
        let params = ListParams::default().labels(&format!("{KIND_LABEL}={}", kind.label()));
        let list = self.api().list(&params).await.map_err(|e| Error::Read {
            name: self.full_name(&format!("{}*", kind.prefix())),
            message: api_message(&e),
        })?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|cm| {
                let name = cm.metadata.name.as_deref()?.strip_prefix(kind.prefix())?;
                Some((name.to_owned(), parse(&cm)))
            })
            .collect())
    }

    /// Writes `fields` of a record as `manager`, creating berth's namespace first when it does
    /// not exist yet (`berth` run from a laptop). Returns the record's new resourceVersion.
    ///
    /// # Errors
    /// The write is rejected, or (`Conflict`) the record moved past `resource_version`.
    pub(crate) async fn write(
        &self,
        kind: RecordKind,
        name: &str,
        manager: &str,
        fields: Fields,
    ) -> Result<String, Error> {
        let config_map = kind.config_map(name);
        let mut labels = fields.labels;
        labels.insert(MANAGED_BY.to_owned(), MANAGER_VALUE.to_owned());
        labels.insert(KIND_LABEL.to_owned(), kind.label().to_owned());
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(config_map.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels),
                annotations: (!fields.annotations.is_empty()).then_some(fields.annotations),
                resource_version: fields.resource_version.filter(|v| !v.is_empty()),
                ..ObjectMeta::default()
            },
            data: fields.data,
            ..ConfigMap::default()
        };
        let mut object = serde_json::to_value(&cm).expect("ConfigMaps serialize");
        object["apiVersion"] = Value::from("v1");
        object["kind"] = Value::from("ConfigMap");
        // force: berth is the only writer of its own status records.
        let params = PatchParams::apply(manager).force();
        let api = self.api();
        let fail = |e: &kube::Error| {
            let name = self.full_name(&config_map);
            if is_conflict(e) {
                Error::Conflict { name }
            } else {
                Error::Write {
                    name,
                    message: api_message(e),
                }
            }
        };
        let version = |cm: ConfigMap| cm.metadata.resource_version.unwrap_or_default();
        match api
            .patch(&config_map, &params, &Patch::Apply(&object))
            .await
        {
            Ok(cm) => Ok(version(cm)),
            Err(e) if is_not_found(&e) => {
                self.create_namespace().await.map_err(|e| fail(&e))?;
                api.patch(&config_map, &params, &Patch::Apply(&object))
                    .await
                    .map(version)
                    .map_err(|e| fail(&e))
            }
            Err(e) => Err(fail(&e)),
        }
    }

    /// Sets annotations of an existing record and nothing else (a merge patch): the fallback
    /// that still marks a record Failed when its full write was refused (a record grown too
    /// large, made immutable, …), without touching the inventory in its data.
    ///
    /// # Errors
    /// The patch is rejected too.
    pub(crate) async fn annotate(
        &self,
        kind: RecordKind,
        name: &str,
        annotations: BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let config_map = kind.config_map(name);
        let patch = serde_json::json!({"metadata": {"annotations": annotations}});
        self.api()
            .patch(&config_map, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .map_err(|e| Error::Write {
                name: self.full_name(&config_map),
                message: api_message(&e),
            })
    }

    async fn create_namespace(&self) -> Result<(), kube::Error> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        match api.create(&PostParams::default(), &ns).await {
            Err(e) if is_conflict(&e) => Ok(()),
            other => other
                .map(|_| tracing::info!(namespace = %self.namespace, "created berth's namespace")),
        }
    }
}

/// The annotations of a record, empty when it has none.
pub(crate) fn annotations(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.metadata.annotations.clone().unwrap_or_default()
}

/// One data key of a record, parsed as JSON; `None` when absent or unreadable.
pub(crate) fn data_json<T: serde::de::DeserializeOwned>(cm: &ConfigMap, key: &str) -> Option<T> {
    cm.data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|t| serde_json::from_str(t).ok())
}

/// Current time as RFC 3339, second precision: the timestamps in records and logs.
pub(crate) fn now() -> String {
    let now = Timestamp::now();
    now.round(jiff::Unit::Second)
        .map_or_else(|_| now.to_string(), |t| t.to_string())
}
