//! Deleting objects that left git: only inventory entries, only while they still carry this
//! sync's labels, never those marked to be kept.

use futures::StreamExt as _;
use kube::Client;
use kube::api::DeleteParams;

use super::{ChangeSet, Error};
use crate::cluster::{self, Resources};
use crate::diff::Orphan;
use crate::object::ObjectId;
use crate::vocab;

/// What happens to an orphan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Delete,
    /// Left in place, with the reason.
    Keep(String),
    /// Already gone from the cluster.
    Gone,
}

/// Decides an orphan's fate. Prune never deletes an object without this sync's labels, nor
/// one annotated `berth.dev/prune: disabled`, Flux's `kustomize.toolkit.fluxcd.io/prune:
/// disabled` or `reconcile: disabled`, or Argo CD's `Prune=false` or `Delete=false`.
pub(crate) fn decide(orphan: &Orphan, sync: &str) -> Decision {
    let Some(live) = &orphan.live else {
        return Decision::Gone;
    };
    let meta = &live["metadata"];
    let labels = &meta["labels"];
    if labels[vocab::MANAGED_BY] != vocab::MANAGER_VALUE || labels[vocab::SYNC_LABEL] != sync {
        return Decision::Keep("no longer carries this sync's labels".to_owned());
    }
    for key in [vocab::PRUNE, vocab::FLUX_PRUNE, vocab::FLUX_RECONCILE] {
        if meta["annotations"][key] == "disabled" {
            return Decision::Keep(format!("{key}: disabled"));
        }
    }
    for option in ["Prune=false", "Delete=false"] {
        if crate::object::has_option(live, vocab::ARGOCD_SYNC_OPTIONS, option) {
            return Decision::Keep(format!("{}: {option}", vocab::ARGOCD_SYNC_OPTIONS));
        }
    }
    if !meta["deletionTimestamp"].is_null() {
        return Decision::Gone;
    }
    Decision::Delete
}

/// Deletes the orphans `decide` allows, with background propagation; the plan holds only
/// those, and the check repeats here so nothing else can reach a delete call.
pub(crate) async fn prune(
    client: &Client,
    resources: &Resources,
    orphans: &[Orphan],
    sync: &str,
    concurrency: usize,
    changes: &mut ChangeSet,
) {
    let mut deletes = Vec::new();
    for orphan in orphans {
        match decide(orphan, sync) {
            Decision::Delete => deletes.push(orphan),
            Decision::Keep(_) | Decision::Gone => {}
        }
    }
    // in reverse apply order, one kind rank at a time: custom resources before their CRD,
    // what lives in a Namespace before the Namespace
    deletes.sort_by_key(|o| super::prune_key(&o.record.api_version, &o.id.kind));
    for rank in deletes.chunk_by(|a, b| {
        super::prune_key(&a.record.api_version, &a.id.kind)
            == super::prune_key(&b.record.api_version, &b.id.kind)
    }) {
        let calls: Vec<_> = rank
            .iter()
            .map(|o| async move { delete_one(client, resources, o).await })
            .collect();
        let mut results = futures::stream::iter(calls).buffer_unordered(concurrency.max(1));
        while let Some(result) = results.next().await {
            match result {
                Ok(id) => {
                    tracing::debug!(object = %id, "pruned");
                    changes.pruned.push(id);
                }
                Err(e) => changes.errors.push(e),
            }
        }
    }
}

/// Deletes one orphan, with a precondition on the uid that was inspected, so a recreated
/// object of the same name is safe.
async fn delete_one(client: &Client, resources: &Resources, o: &Orphan) -> Result<ObjectId, Error> {
    let uid = o.live.as_ref().and_then(|l| l["metadata"]["uid"].as_str());
    let api = api_for(client, resources, &o.record.api_version, &o.id)?;
    delete(&api, &o.id, uid).await?;
    Ok(o.id.clone())
}

/// Deletes an object (background propagation), only if it still has `uid` when one is given;
/// one already gone is not an error.
async fn delete(
    api: &kube::Api<kube::api::DynamicObject>,
    id: &ObjectId,
    uid: Option<&str>,
) -> Result<(), Error> {
    let mut params = DeleteParams::background();
    if let Some(uid) = uid {
        params = params.preconditions(kube::api::Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        });
    }
    match api.delete(&id.name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(failed(id, cluster::api_message(&e))),
    }
}

fn failed(id: &ObjectId, message: String) -> Error {
    Error::Prune {
        id: id.to_string(),
        message,
    }
}

/// The dynamic handle for an object berth may delete.
pub(super) fn api_for(
    client: &Client,
    resources: &Resources,
    api_version: &str,
    id: &ObjectId,
) -> Result<kube::Api<kube::api::DynamicObject>, Error> {
    let resource = resources
        .get(api_version, &id.kind)
        .or_else(|| resources.preferred(&id.group, &id.kind))
        .ok_or_else(|| failed(id, "its kind is no longer served".to_owned()))?;
    let ns = Some(id.namespace.as_str()).filter(|n| !n.is_empty());
    Ok(cluster::api(client, resource, ns))
}

/// Deletes a hook object and waits (up to a minute) until it is gone, so it can be created
/// again under the same name.
///
/// # Errors
/// The delete is refused, or the object is still there after a minute.
pub(crate) async fn delete_hook(
    client: &Client,
    resources: &Resources,
    api_version: &str,
    id: &ObjectId,
) -> Result<(), Error> {
    let api = api_for(client, resources, api_version, id)?;
    delete(&api, id, None).await?;
    for _ in 0..300 {
        match api.get_opt(&id.name).await {
            Ok(None) => return Ok(()),
            Ok(Some(_)) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            Err(e) => return Err(failed(id, cluster::api_message(&e))),
        }
    }
    Err(failed(
        id,
        "still there a minute after it was deleted".to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::ObjectId;
    use serde_json::Value;
    use serde_json::json;

    fn orphan(live: Option<Value>) -> Orphan {
        Orphan {
            id: ObjectId::from_key("_ConfigMap_n_a").expect("key"),
            record: crate::status::Record::default(),
            live,
        }
    }

    fn labeled(annotations: Value) -> Value {
        json!({"metadata": {"labels": {vocab::MANAGED_BY: "berth", vocab::SYNC_LABEL: "web"},
                            "annotations": annotations}})
    }

    #[test]
    fn prune_deletes_only_objects_with_this_syncs_labels() {
        assert_eq!(
            decide(&orphan(Some(labeled(json!({})))), "web"),
            Decision::Delete
        );
        assert!(matches!(
            decide(&orphan(Some(labeled(json!({})))), "other"),
            Decision::Keep(_)
        ));
        let unlabeled = json!({"metadata": {"labels": {"app": "x"}}});
        assert!(matches!(
            decide(&orphan(Some(unlabeled)), "web"),
            Decision::Keep(_)
        ));
        assert_eq!(decide(&orphan(None), "web"), Decision::Gone);
    }

    #[test]
    fn prune_keeps_objects_marked_to_stay() {
        let berth = labeled(json!({vocab::PRUNE: "disabled"}));
        assert_eq!(
            decide(&orphan(Some(berth)), "web"),
            Decision::Keep("berth.dev/prune: disabled".into())
        );
        let argo =
            labeled(json!({vocab::ARGOCD_SYNC_OPTIONS: "ServerSideApply=true, Prune=false"}));
        assert!(matches!(
            decide(&orphan(Some(argo)), "web"),
            Decision::Keep(_)
        ));
    }
}
