//! Instant drift detection: metadata-only watches on the objects each sync manages (one per
//! type and namespace in its inventory, selected by berth's sync label). A change that moves
//! an object's generation, labels or annotations (or, for kinds without a generation, its
//! resourceVersion) wakes the repository's loop at once: a `selfHeal` sync re-applies, any
//! other records `OutOfSync`. Status-only updates move none of those and are not drift. The
//! periodic check stays the fallback; a watch that fails only logs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{Notify, watch};
use tracing::{debug, info};

use crate::cluster::Resources;
use crate::config::Sync;
use crate::context::Context;
use crate::status;
use crate::vocab;

/// How often the set of watched types is compared with the inventories.
const REFRESH: Duration = Duration::from_secs(10);

/// What identifies a change berth did not make, per object uid.
type Seen = HashMap<String, (i64, String)>;

/// Watches the objects of `syncs` until `stop`; wakes `trigger` on drift.
pub(crate) async fn watch(
    ctx: Context,
    syncs: Vec<Sync>,
    trigger: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let watched = targets(&ctx, &syncs).await;
        let streams = streams(&ctx, &syncs, &watched).await;
        let mut seen = Seen::new();
        let idle = streams.is_empty();
        let mut events = futures::stream::select_all(streams);
        let mut refresh = tokio::time::interval_at(tokio::time::Instant::now() + REFRESH, REFRESH);
        loop {
            let stopped = async {
                let _ = stop.wait_for(|s| *s).await;
            };
            let next = async {
                if idle {
                    std::future::pending().await
                } else {
                    events.next().await
                }
            };
            let event = tokio::select! {
                () = stopped => return,
                _ = refresh.tick() => None,
                next = next => Some(next),
            };
            match event {
                None => {
                    if targets(&ctx, &syncs).await != watched {
                        break;
                    }
                }
                Some(Some(Ok(event))) => {
                    if let Some(name) = drifted(&mut seen, event) {
                        info!(object = %name, "a managed object changed; checking now");
                        trigger.notify_one();
                    }
                }
                Some(Some(Err(e))) => debug!(error = %e, "drift watch"),
                Some(None) => break,
            }
        }
    }
}

/// (sync, apiVersion, kind, namespace) for every type and namespace the syncs' inventories use.
async fn targets(ctx: &Context, syncs: &[Sync]) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for s in syncs {
        let Ok(Some(st)) = status::load(&ctx.store(), &s.name).await else {
            continue;
        };
        for (id, record) in &st.inventory {
            out.insert((
                s.name.clone(),
                record.api_version.clone(),
                id.kind.clone(),
                id.namespace.clone(),
            ));
        }
    }
    out
}

type EventStream = futures::stream::BoxStream<
    'static,
    Result<Event<PartialObjectMeta<DynamicObject>>, watcher::Error>,
>;

async fn streams(
    ctx: &Context,
    syncs: &[Sync],
    targets: &BTreeSet<(String, String, String, String)>,
) -> Vec<EventStream> {
    let by_sync: BTreeMap<&str, Vec<_>> = targets.iter().fold(BTreeMap::new(), |mut m, t| {
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
        for (_, api_version, kind, namespace) in targets {
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
            out.push(watcher::watcher(api, config).boxed());
        }
    }
    out
}

/// Records an event; the object's name when it is a change berth should look at now.
fn drifted(seen: &mut Seen, event: Event<PartialObjectMeta<DynamicObject>>) -> Option<String> {
    let (object, initial) = match event {
        Event::Apply(o) => (o, false),
        Event::InitApply(o) => (o, true),
        Event::Delete(o) => {
            let uid = o.metadata.uid.clone().unwrap_or_default();
            seen.remove(&uid);
            return Some(o.metadata.name.unwrap_or_default());
        }
        Event::Init | Event::InitDone => return None,
    };
    let meta = &object.metadata;
    let uid = meta.uid.clone().unwrap_or_default();
    let marker = format!(
        "{}|{:?}|{:?}",
        if meta.generation.is_some() {
            String::new()
        } else {
            meta.resource_version.clone().unwrap_or_default()
        },
        meta.labels,
        meta.annotations
    );
    let now = (meta.generation.unwrap_or(0), marker);
    let before = seen.insert(uid, now.clone());
    match before {
        Some(b) if !initial && b != now => Some(meta.name.clone().unwrap_or_default()),
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
            uid: Some("u1".into()),
            generation,
            resource_version: Some(rv.into()),
            labels: Some([("tier".to_owned(), replicas_label.to_owned())].into()),
            ..Default::default()
        }
        .into_response_partial()
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
            drifted(&mut seen, Event::Apply(meta(Some(2), "12", "a"))).as_deref(),
            Some("web")
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
        assert!(drifted(&mut seen, Event::Delete(meta(None, "7", "a"))).is_some());
    }
}
