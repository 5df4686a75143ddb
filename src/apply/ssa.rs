//! Server-side apply of plan entries, in parallel with bounded concurrency.

use std::borrow::Cow;
use std::time::Duration;

use futures::StreamExt as _;
use kube::Client;
use kube::api::PatchParams;
use serde_json::Value;

use super::{ChangeSet, Error};
use crate::cluster::{self, Resources};
use crate::diff::{Action, Entry};
use crate::status::Record;
use crate::vocab;

/// Applies the entries whose action is create or update; unchanged ones are only recorded.
/// Results land in `changes`; one failure does not stop the others.
pub(crate) async fn apply(
    client: &Client,
    resources: &Resources,
    entries: &[Entry],
    concurrency: usize,
    changes: &mut ChangeSet,
) {
    for e in entries.iter().filter(|e| e.action == Action::Unchanged) {
        changes.unchanged += 1;
        let live = e.live.as_ref().unwrap_or(&Value::Null);
        changes.records.push((e.id.clone(), record(e, live)));
    }
    let budget = &cluster::InFlight::new();
    let writes = entries
        .iter()
        .filter(|e| e.action != Action::Unchanged)
        .map(|e| async move {
            let _admitted = budget.admit(&e.manifest.object).await;
            (e, apply_one(client, resources, e).await)
        })
        .collect::<Vec<_>>();
    let mut results = futures::stream::iter(writes).buffer_unordered(concurrency.max(1));
    while let Some((entry, result)) = results.next().await {
        if result.is_err() {
            changes.failed.push(entry.id.clone());
        }
        match result {
            Ok(applied) => {
                tracing::debug!(object = %entry.id, action = ?entry.action, "applied");
                changes
                    .records
                    .push((entry.id.clone(), record(entry, &applied)));
                match entry.action {
                    Action::Create => changes.created.push(entry.id.clone()),
                    Action::Adopt => changes.adopted.push(entry.id.clone()),
                    Action::Update | Action::Unchanged => {
                        changes.configured.push(entry.id.clone());
                    }
                }
            }
            Err(e) => changes.errors.push(e),
        }
    }
}

/// The record of an entry, from the object the API server returned (applied or live).
fn record(entry: &Entry, object: &Value) -> Record {
    let meta = &object["metadata"];
    Record {
        api_version: entry.manifest.api_version().to_owned(),
        resource_version: meta["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        generation: meta["generation"].as_i64().unwrap_or_default(),
        hash: entry.hash.clone(),
        revision: entry.revision.clone(),
        health: crate::health::after_pass(
            &entry.id.kind,
            entry.action != Action::Unchanged,
            Some(object),
        )
        .health,
    }
}

/// How many times an apply is retried over a newer resourceVersion.
const CONFLICT_RETRIES: u32 = 5;

async fn apply_one(client: &Client, resources: &Resources, entry: &Entry) -> Result<Value, Error> {
    let m = &entry.manifest;
    // (origin, message): where the error points, and what it says
    let fail = |(origin, message): (String, String)| Error::Apply {
        origin,
        id: entry.id.to_string(),
        message,
    };
    let resource = resources.get(m.api_version(), m.kind()).ok_or_else(|| {
        fail((
            m.origin(),
            format!("no API resource serves {} in {}", m.kind(), m.api_version()),
        ))
    })?;
    let api = cluster::api(client, resource, m.namespace());
    // force: git is the source of truth, so berth takes over fields another manager (a hand
    // edit with kubectl, say) set on what it declares, as Flux and `kubectl apply
    // --force-conflicts` do.
    let mut params = PatchParams::apply(vocab::FIELD_MANAGER).validation_strict();
    if !super::merge(&m.object) {
        params = params.force();
    }
    // Applied only over the version the plan saw: a write that lands late (a replica paused
    // mid-request and woken after a newer one took over) conflicts instead of overwriting.
    // (A copy of the object only where it must change: an operator's CRD is megabytes.)
    let mut object = Cow::Borrowed(&m.object);
    if let Some(version) = entry
        .live
        .as_ref()
        .and_then(|l| l["metadata"]["resourceVersion"].as_str())
    {
        object.to_mut()["metadata"]["resourceVersion"] = Value::from(version);
    }
    // Changed since the plan looked (a controller's status update, usually, and a rollout
    // right after a hand edit updates status several times a second): apply over what is
    // there now. Each retry is a new write, so it passes the fence again.
    let mut attempts = 0;
    loop {
        match cluster::apply(client, &api, m.name(), &params, &object).await {
            Ok(applied) => return Ok(applied),
            Err(e) if cluster::is_conflict(&e) && attempts < CONFLICT_RETRIES => {
                attempts += 1;
                let current = cluster::get(client, &api, m.name())
                    .await
                    .map_err(|e| fail((m.origin(), cluster::api_message(&e))))?;
                let current = current.ok_or_else(|| {
                    fail((m.origin(), "it was deleted while being applied".to_owned()))
                })?;
                let version = current["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default();
                object.to_mut()["metadata"]["resourceVersion"] = Value::from(version);
            }
            Err(e) => return Err(fail(crate::diff::refusal(m, &e))),
        }
    }
}

/// Waits until each named CustomResourceDefinition reports `Established`, watching each
/// (kube-runtime's `await_condition`) rather than polling.
///
/// # Errors
/// A CRD that is not established within `timeout`.
pub(crate) async fn wait_established(
    client: &Client,
    names: &[String],
    timeout: Duration,
) -> Result<(), Error> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::runtime::wait::{await_condition, conditions};
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    for name in names {
        let established = await_condition(api.clone(), name, conditions::is_crd_established());
        match tokio::time::timeout_at(deadline, established).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(Error::NotEstablished {
                    name: name.clone(),
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(Error::NotEstablished {
                    name: name.clone(),
                    reason: format!("still not after {}s", timeout.as_secs()),
                });
            }
        }
    }
    Ok(())
}
