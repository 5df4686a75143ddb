//! The ConfigMaps and Secrets of berth's namespace that syncs take values from (`varsFrom`)
//! or decrypt with (`decryption`), followed by metadata-only watches: a change marks the syncs
//! that use it to apply again and wakes their repository's loop, the way a new commit does.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::shared::Shared;
use crate::config::Mapping;
use crate::context::Context;

/// Which syncs (and their repositories) use each source, by whether it is a Secret and its
/// name.
type Users = BTreeMap<(bool, String), Vec<(String, String)>>;

/// The sources the mapping's syncs use.
fn users(mapping: &Mapping) -> Users {
    let mut users: Users = BTreeMap::new();
    for s in &mapping.syncs {
        let sources = s
            .vars_from
            .iter()
            .map(|v| (v.secret, v.name.clone()))
            .chain(s.decryption.iter().map(|d| (true, d.clone())));
        for key in sources {
            users
                .entry(key)
                .or_default()
                .push((s.name.clone(), s.repository.clone()));
        }
    }
    users
}

/// A change of a source after the first listing (which the first passes read anyway), as
/// whether it is a Secret and its name.
fn changed<K>(secret: bool, event: watcher::Event<PartialObjectMeta<K>>) -> Option<(bool, String)> {
    match event {
        watcher::Event::Apply(m) | watcher::Event::Delete(m) => {
            Some((secret, m.metadata.name.unwrap_or_default()))
        }
        _ => None,
    }
}

/// Follows the sources until `stop` flips; nothing when no sync uses one.
pub(super) async fn follow(
    ctx: Context,
    mapping: Arc<Mapping>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let users = users(&mapping);
    if users.is_empty() {
        return;
    }
    let config_maps: Api<PartialObjectMeta<ConfigMap>> =
        Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let secrets: Api<PartialObjectMeta<Secret>> =
        Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let config = watcher::Config::default();
    let from_config_maps = watcher(config_maps, config.clone())
        .default_backoff()
        .filter_map(|e| std::future::ready(e.ok().and_then(|e| changed(false, e))));
    let from_secrets = watcher(secrets, config)
        .default_backoff()
        .filter_map(|e| std::future::ready(e.ok().and_then(|e| changed(true, e))));
    let mut events = futures::stream::select(from_config_maps.boxed(), from_secrets.boxed());
    loop {
        let changed = tokio::select! {
            () = stop.cancelled() => return,
            changed = events.next() => changed,
        };
        let Some(key) = changed else { return };
        let Some(syncs) = users.get(&key) else {
            continue;
        };
        let kind = if key.0 { "Secret" } else { "ConfigMap" };
        for (sync, repository) in syncs {
            info!(sync, source = %format!("{kind} {}", key.1), "a source of the sync changed; applying it again");
            shared.mark_stale(sync);
            shared.refresh(repository);
        }
        debug!(kind, name = %key.1, "source changed");
    }
}
