//! Instant drift detection: metadata-only watches on the objects each sync manages (one per
//! type and namespace in its inventory, selected by berth's sync label, as the sync's
//! account). A change that moves an object's generation, labels or annotations (or, for kinds
//! without a generation, its resourceVersion), or deletes it, is queued for its sync and wakes
//! the repository's loop, which re-plans that sync at the commit it already has: a `selfHeal`
//! sync re-applies, any other records `OutOfSync`.
//!
//! Not drift: status-only updates (they move none of the above), objects that carry the label
//! but are not in the inventory (left behind, or copied by a controller), and berth's own
//! writes, whose resourceVersion is the one the pass recorded. The repository loop hands each
//! pass's inventory over, so a new type is watched as soon as a pass first applies it. The
//! periodic check stays the fallback; a watch that fails only logs.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher as _};
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::cluster::Resources;
use crate::config::Sync;
use crate::context::Context;
use crate::object::ObjectId;
use crate::status::Record;
use crate::vocab;

/// What a sync manages, as its last pass recorded it, kept small (10 000 watched objects take
/// a few hundred KiB): the types and namespaces to watch, and per object (by a hash of its
/// identity) a hash of the resourceVersion berth last saw.
#[derive(Debug, Default, PartialEq, Eq)]
struct Managed {
    types: BTreeSet<(String, String, String)>,
    versions: HashMap<u64, u64>,
}

impl Managed {
    fn of(inventory: &BTreeMap<ObjectId, Record>) -> Self {
        let mut m = Self::default();
        for (id, record) in inventory {
            m.types.insert((
                record.api_version.clone(),
                id.kind.clone(),
                id.namespace.clone(),
            ));
            m.versions
                .insert(hash(id), hash(record.resource_version.as_str()));
        }
        m
    }
}

fn hash(value: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// A change to a managed object seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub id: ObjectId,
    /// The resourceVersion after the change; empty for a deletion.
    pub resource_version: String,
}

/// What the repository loop and the watches of one repository share.
pub(crate) struct Drift {
    managed: watch::Sender<BTreeMap<String, Arc<Managed>>>,
    pending: Mutex<BTreeMap<String, Vec<Change>>>,
    /// Woken when a change is queued.
    pub wake: Notify,
}

impl Drift {
    pub(crate) fn new() -> Self {
        Self {
            managed: watch::Sender::new(BTreeMap::new()),
            pending: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
        }
    }

    /// Records what a sync manages after a pass.
    pub(crate) fn record(&self, sync: &str, inventory: &BTreeMap<ObjectId, Record>) {
        let managed = Arc::new(Managed::of(inventory));
        self.managed.send_if_modified(|m| {
            let same = m.get(sync).is_some_and(|old| *old == managed);
            m.insert(sync.to_owned(), managed);
            !same
        });
    }

    fn queue(&self, sync: &str, change: Change) {
        self.pending
            .lock()
            .expect("drift queue")
            .entry(sync.to_owned())
            .or_default()
            .push(change);
        self.wake.notify_one();
    }

    /// The changes queued since the last call that berth did not make itself, per sync: the
    /// object is still in the sync's inventory and its resourceVersion is not the one the last
    /// pass recorded.
    pub(crate) fn take(&self) -> BTreeMap<String, Vec<Change>> {
        let queued = std::mem::take(&mut *self.pending.lock().expect("drift queue"));
        let managed = self.managed.borrow();
        queued
            .into_iter()
            .filter_map(|(sync, changes)| {
                let versions = &managed.get(&sync)?.versions;
                let changes: Vec<Change> = changes
                    .into_iter()
                    .filter(|c| {
                        versions
                            .get(&hash(&c.id))
                            .is_some_and(|rv| *rv != hash(c.resource_version.as_str()))
                    })
                    .collect();
                (!changes.is_empty()).then_some((sync, changes))
            })
            .collect()
    }
}

/// What identifies a change berth should look at, per object (a hash of its uid): generation
/// and a hash of labels and annotations (plus the resourceVersion for kinds without one).
type Seen = HashMap<u64, (i64, u64)>;

/// (sync, apiVersion, kind, namespace) of a watch.
type Target = (String, String, String, String);

/// Watches the objects of `syncs` (of `repository`) until `stop`, queueing changes on `drift`.
pub(crate) async fn watch(
    ctx: Context,
    repository: String,
    syncs: Vec<Sync>,
    drift: Arc<Drift>,
    stop: CancellationToken,
) {
    let mut managed = drift.managed.subscribe();
    let watched = ctx
        .metrics
        .watched_objects
        .get_or_create(&crate::telemetry::RepositoryLabels { repository })
        .clone();
    loop {
        let mut targeted = targets(&managed.borrow_and_update());
        let mut events = futures::stream::select_all(streams(&ctx, &syncs, &targeted).await);
        let mut seen = Seen::new();
        loop {
            let stopped = stop.cancelled();
            let idle = events.is_empty();
            let next = async {
                if idle {
                    std::future::pending().await
                } else {
                    events.next().await
                }
            };
            let event = tokio::select! {
                () = stopped => return,
                changed = managed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    None
                }
                next = next => Some(next),
            };
            match event {
                None => {
                    let now = targets(&managed.borrow_and_update());
                    if !now.is_superset(&targeted) {
                        break; // a type left: start over with the watches still needed
                    }
                    // a type was added (a sync's first pass): watch it too, keep the others
                    let added: BTreeSet<Target> = now.difference(&targeted).cloned().collect();
                    for stream in streams(&ctx, &syncs, &added).await {
                        events.push(stream);
                    }
                    targeted = now;
                }
                Some(Some((target, Ok(event)))) => {
                    let (sync, api_version, kind, _) = &*target;
                    let found = drifted(&mut seen, event);
                    watched.set(seen.len() as i64);
                    let Some((namespace, name, resource_version)) = found else {
                        continue;
                    };
                    let id = ObjectId {
                        group: crate::object::group_of(api_version).to_owned(),
                        kind: kind.clone(),
                        namespace,
                        name,
                    };
                    let managed_now = drift
                        .managed
                        .borrow()
                        .get(sync)
                        .is_some_and(|m| m.versions.contains_key(&hash(&id)));
                    if managed_now {
                        info!(sync = %sync, object = %id, "a managed object changed; checking now");
                        drift.queue(
                            sync,
                            Change {
                                id,
                                resource_version,
                            },
                        );
                    }
                }
                Some(Some((_, Err(e)))) => debug!(error = %e, "drift watch"),
                Some(None) => break,
            }
        }
    }
}

/// Every type and namespace the syncs' inventories use.
fn targets(managed: &BTreeMap<String, Arc<Managed>>) -> BTreeSet<Target> {
    managed
        .iter()
        .flat_map(|(sync, m)| {
            m.types.iter().map(|(api_version, kind, namespace)| {
                (
                    sync.clone(),
                    api_version.clone(),
                    kind.clone(),
                    namespace.clone(),
                )
            })
        })
        .collect()
}

type EventStream = futures::stream::BoxStream<
    'static,
    (
        Arc<Target>,
        Result<Event<PartialObjectMeta<DynamicObject>>, watcher::Error>,
    ),
>;

async fn streams(ctx: &Context, syncs: &[Sync], targets: &BTreeSet<Target>) -> Vec<EventStream> {
    let by_sync: BTreeMap<&str, Vec<&Target>> = targets.iter().fold(BTreeMap::new(), |mut m, t| {
        m.entry(t.0.as_str()).or_default().push(t);
        m
    });
    let mut out = Vec::new();
    for (name, targets) in by_sync {
        let Some(sync) = syncs.iter().find(|s| s.name == name) else {
            continue;
        };
        let Ok((client, _)) = ctx.client_as(
            &format!("sync {name:?}"),
            sync.namespace.as_deref(),
            sync.service_account.as_deref(),
        ) else {
            continue;
        };
        let groups = targets
            .iter()
            .map(|t| crate::object::group_of(&t.1).to_owned())
            .collect();
        let Ok(resources) = Resources::discover(&client, &groups).await else {
            continue;
        };
        let selector = format!("{}={name}", vocab::SYNC_LABEL);
        for target in targets {
            let (_, api_version, kind, namespace) = target;
            let Some(r) = resources.get(api_version, kind) else {
                continue;
            };
            let api: Api<PartialObjectMeta<DynamicObject>> =
                if r.namespaced && !namespace.is_empty() {
                    Api::namespaced_with(client.clone(), namespace, &r.api)
                } else {
                    Api::all_with(client.clone(), &r.api)
                };
            let config = watcher::Config::default().labels(&selector);
            let tag = Arc::new(target.clone());
            out.push(
                watcher::watcher(api, config)
                    .default_backoff()
                    .map(move |e| (tag.clone(), e))
                    .boxed(),
            );
        }
    }
    out
}

/// Records an event; (namespace, name, resourceVersion) when it is a change berth should look
/// at now (an empty resourceVersion for a deletion).
fn drifted(
    seen: &mut Seen,
    event: Event<PartialObjectMeta<DynamicObject>>,
) -> Option<(String, String, String)> {
    let (object, initial) = match event {
        Event::Apply(o) => (o, false),
        Event::InitApply(o) => (o, true),
        Event::Delete(o) => {
            let meta = o.metadata;
            seen.remove(&hash(meta.uid.unwrap_or_default()));
            return Some((
                meta.namespace.unwrap_or_default(),
                meta.name.unwrap_or_default(),
                String::new(),
            ));
        }
        Event::Init | Event::InitDone => return None,
    };
    let meta = object.metadata;
    let marker = if meta.generation.is_none() {
        hash((&meta.labels, &meta.annotations, &meta.resource_version))
    } else {
        hash((&meta.labels, &meta.annotations))
    };
    let now = (meta.generation.unwrap_or(0), marker);
    let before = seen.insert(hash(meta.uid.unwrap_or_default()), now);
    match before {
        Some(b) if !initial && b != now => Some((
            meta.namespace.unwrap_or_default(),
            meta.name.unwrap_or_default(),
            meta.resource_version.unwrap_or_default(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;
    use kube::core::PartialObjectMetaExt as _;

    fn meta(
        generation: Option<i64>,
        rv: &str,
        replicas_label: &str,
    ) -> PartialObjectMeta<DynamicObject> {
        ObjectMeta {
            name: Some("web".into()),
            namespace: Some("apps".into()),
            uid: Some("u1".into()),
            generation,
            resource_version: Some(rv.into()),
            labels: Some([("tier".to_owned(), replicas_label.to_owned())].into()),
            ..Default::default()
        }
        .into_response_partial()
    }

    fn name(found: Option<(String, String, String)>) -> Option<String> {
        found.map(|(ns, name, rv)| format!("{ns}/{name}@{rv}"))
    }

    #[test]
    fn only_changes_berth_should_look_at_count() {
        let mut seen = Seen::new();
        assert_eq!(
            drifted(&mut seen, Event::InitApply(meta(Some(1), "10", "a"))),
            None
        );
        // a controller's status update: new resourceVersion, same generation
        assert_eq!(
            drifted(&mut seen, Event::Apply(meta(Some(1), "11", "a"))),
            None
        );
        // kubectl scale: generation moves
        assert_eq!(
            name(drifted(&mut seen, Event::Apply(meta(Some(2), "12", "a")))).as_deref(),
            Some("apps/web@12")
        );
        // a label edited by hand
        assert!(drifted(&mut seen, Event::Apply(meta(Some(2), "13", "b"))).is_some());

        // kinds without a generation: any new resourceVersion is a change
        let mut seen = Seen::new();
        assert_eq!(
            drifted(&mut seen, Event::InitApply(meta(None, "5", "a"))),
            None
        );
        assert!(drifted(&mut seen, Event::Apply(meta(None, "6", "a"))).is_some());
        assert_eq!(
            name(drifted(&mut seen, Event::Delete(meta(None, "7", "a")))).as_deref(),
            Some("apps/web@")
        );
    }

    #[test]
    fn only_hand_edits_of_managed_objects_are_handed_on() {
        let id = |name: &str| ObjectId {
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: "apps".into(),
            name: name.into(),
        };
        let drift = Drift::new();
        let record = |rv: &str| Record {
            api_version: "v1".into(),
            resource_version: rv.into(),
            ..Record::default()
        };
        drift.record(
            "web",
            &[(id("a"), record("10")), (id("b"), record("20"))].into(),
        );
        let change = |name: &str, rv: &str| Change {
            id: id(name),
            resource_version: rv.into(),
        };
        // berth's own write (the version the pass recorded), a hand edit, a deletion, an object
        // the sync no longer manages, and a sync not known at all
        drift.queue("web", change("a", "10"));
        drift.queue("web", change("b", "21"));
        drift.queue("web", change("a", ""));
        drift.queue("web", change("gone", "5"));
        drift.queue("other", change("a", "1"));
        let taken = drift.take();
        assert_eq!(
            taken,
            BTreeMap::from([("web".to_owned(), vec![change("b", "21"), change("a", "")])])
        );
        assert!(drift.take().is_empty(), "taken once");
    }
}
