//! A sync's status: its phase and health, the synced revision and the inventory of what it
//! applied, kept in the `berth-sync-<name>` record. The next status is computed purely
//! ([`next`]); [`save`] writes it through the status store.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::ConfigMap;
use serde::{Deserialize, Serialize};

pub(crate) use crate::health::Health;
use crate::object::ObjectId;
use crate::store::{self, Error, Fields, Store};
use crate::vocab::{
    FIELD_MANAGER, HEALTH, LAST_SYNC, MESSAGE, REVISION, RecordKind, STATUS, SYNC_LABEL,
};

/// A sync's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Phase {
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

/// What berth remembers about an object it applied: enough to prune it and to know it is
/// unchanged without asking the API server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Record {
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
    /// The object's health when the pass looked (stored only when it is not Healthy).
    #[serde(default = "healthy", skip_serializing_if = "is_healthy")]
    pub health: Health,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn healthy() -> Health {
    Health::Healthy
}

fn is_healthy(h: &Health) -> bool {
    *h == Health::Healthy
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
pub(crate) struct SyncStatus {
    pub phase: Phase,
    pub health: Health,
    pub revision: String,
    pub last_sync: String,
    pub message: String,
    pub inventory: BTreeMap<ObjectId, Record>,
    /// The record's resourceVersion when read or last written; a write requires it unchanged.
    pub resource_version: String,
}

/// The status to write after a pass, or `None` when nothing would change. `last-sync` moves
/// only when status, health, revision, message or inventory change (resourceVersions alone do
/// not count), so a no-op resync writes nothing.
pub(crate) fn next(old: Option<&SyncStatus>, mut new: SyncStatus, now: &str) -> Option<SyncStatus> {
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

/// Reads a sync's status; `None` when the sync never ran.
///
/// # Errors
/// The API server cannot be read.
pub(crate) async fn load(store: &Store, sync: &str) -> Result<Option<SyncStatus>, Error> {
    Ok(store
        .get(RecordKind::Sync, sync)
        .await?
        .map(|cm| from_config_map(&cm)))
}

/// Every sync's status in berth's namespace, by sync name.
///
/// # Errors
/// The API server cannot be read.
pub(crate) async fn list(store: &Store) -> Result<BTreeMap<String, SyncStatus>, Error> {
    store.list(RecordKind::Sync, from_config_map).await
}

fn from_config_map(cm: &ConfigMap) -> SyncStatus {
    let annotations = store::annotations(cm);
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
        resource_version: cm.metadata.resource_version.clone().unwrap_or_default(),
    }
}

/// Marks a sync's record Failed with `message`, leaving its inventory as it is: for when
/// [`save`] itself failed.
///
/// # Errors
/// The record cannot be changed at all.
pub(crate) async fn mark_failed(
    store: &Store,
    sync: &str,
    message: &str,
    now: &str,
) -> Result<(), Error> {
    let annotations = BTreeMap::from([
        (STATUS.to_owned(), Phase::Failed.to_string()),
        (MESSAGE.to_owned(), message.to_owned()),
        (LAST_SYNC.to_owned(), now.to_owned()),
    ]);
    store.annotate(RecordKind::Sync, sync, annotations).await
}

/// Writes a sync's status record, unless another pass wrote it since `status.resource_version`
/// was read. Returns the new resourceVersion.
///
/// # Errors
/// The write is rejected, or the record moved on (`store::Error::Conflict`).
pub(crate) async fn save(store: &Store, sync: &str, status: &SyncStatus) -> Result<String, Error> {
    let fields = Fields {
        labels: BTreeMap::from([(SYNC_LABEL.to_owned(), sync.to_owned())]),
        annotations: BTreeMap::from([
            (STATUS.to_owned(), status.phase.to_string()),
            (HEALTH.to_owned(), status.health.to_string()),
            (REVISION.to_owned(), status.revision.clone()),
            (LAST_SYNC.to_owned(), status.last_sync.clone()),
            (MESSAGE.to_owned(), status.message.clone()),
        ]),
        data: Some(
            status
                .inventory
                .iter()
                .map(|(id, record)| {
                    let value = serde_json::to_string(record).expect("records serialize");
                    (id.key(), value)
                })
                .collect(),
        ),
        resource_version: Some(status.resource_version.clone()),
    };
    store
        .write(RecordKind::Sync, sync, FIELD_MANAGER, fields)
        .await
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

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
    fn config_map_round_trips_inventory() {
        let id = ObjectId::from_key("apps_Deployment_web_api").expect("key");
        let record = Record {
            api_version: "apps/v1".into(),
            resource_version: "12".into(),
            generation: 3,
            hash: "h".into(),
            revision: "c".into(),
            health: Health::Progressing,
        };
        // a Healthy object stores no health, and reads back Healthy
        let healthy = Record {
            health: Health::Healthy,
            ..record.clone()
        };
        let text = serde_json::to_string(&healthy).expect("json");
        assert!(!text.contains("health"), "{text}");
        assert_eq!(
            serde_json::from_str::<Record>(&text).expect("record"),
            healthy
        );
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
