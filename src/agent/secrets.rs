//! The webhook secrets of berth's namespace, kept in memory by a watch: a delivery, signed or
//! not, costs the API server nothing.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::shared::Shared;

/// The key of a webhook Secret that holds the shared secret.
const KEY: &str = "secret";

/// Follows the Secrets of `namespace` into `shared` until `stop` flips.
pub(super) async fn follow(
    client: Client,
    namespace: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut current: HashMap<String, Vec<u8>> = HashMap::new();
    let mut listing: HashMap<String, Vec<u8>> = HashMap::new();
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = events.next() => event,
        };
        let Some(event) = event else { return };
        match event {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(s)) => {
                if let Some((name, value)) = entry(&s) {
                    listing.insert(name, value);
                }
            }
            Ok(watcher::Event::InitDone) => {
                current = std::mem::take(&mut listing);
                shared.set_secrets(current.clone());
            }
            Ok(watcher::Event::Apply(s)) => {
                let name = s.metadata.name.clone().unwrap_or_default();
                match entry(&s) {
                    Some((name, value)) => current.insert(name, value),
                    None => current.remove(&name),
                };
                shared.set_secrets(current.clone());
            }
            Ok(watcher::Event::Delete(s)) => {
                current.remove(s.metadata.name.as_deref().unwrap_or_default());
                shared.set_secrets(current.clone());
            }
            Err(e) => debug!(error = %e, "secret watch error (retrying)"),
        }
    }
}

/// A Secret's name and non-empty `secret` key, if it has one.
fn entry(secret: &Secret) -> Option<(String, Vec<u8>)> {
    let value = secret.data.as_ref()?.get(KEY)?.0.clone();
    (!value.is_empty()).then(|| (secret.metadata.name.clone().unwrap_or_default(), value))
}
