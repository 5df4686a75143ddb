//! The order objects are applied and pruned in (pure): waves first, then kinds, so what an
//! object needs exists before it (a ServiceAccount before the Deployment that runs as it).

use serde_json::Value;

use crate::vocab;

/// Where a kind goes within a wave. Namespaces and CRDs come first in any case: a pass applies
/// them in a stage of their own, so the objects inside can be planned.
pub(crate) fn rank(group: &str, kind: &str) -> u8 {
    match (group, kind) {
        ("", "Namespace") => 0,
        ("", "ResourceQuota" | "LimitRange") => 1,
        ("", "ServiceAccount")
        | (
            "rbac.authorization.k8s.io",
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding",
        ) => 2,
        ("", "ConfigMap" | "Secret" | "PersistentVolume" | "PersistentVolumeClaim")
        | ("storage.k8s.io", "StorageClass") => 3,
        ("apiextensions.k8s.io", "CustomResourceDefinition") => 4,
        ("", "Service") => 5,
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("", "Pod" | "ReplicationController") => 6,
        ("batch", "Job" | "CronJob") => 7,
        _ => 8,
    }
}

/// An object's wave: `berth.dev/wave`, else `argocd.argoproj.io/sync-wave`, else 0.
///
/// # Errors
/// The annotation is not an integer; the message names it.
pub(crate) fn wave(object: &Value) -> Result<i64, String> {
    let annotations = &object["metadata"]["annotations"];
    for key in [vocab::WAVE, vocab::ARGOCD_SYNC_WAVE] {
        if let Some(text) = annotations[key].as_str() {
            return text
                .trim()
                .parse()
                .map_err(|_| format!("annotation {key}: {text:?} is not an integer"));
        }
    }
    Ok(0)
}

/// The sort key of an object to apply: wave, then kind rank.
pub(crate) fn key(object: &Value) -> (i64, u8) {
    let (group, kind) = group_kind(object);
    (wave(object).unwrap_or(0), rank(group, kind))
}

/// The order deletes go in: the reverse of applying (custom resources before their CRD, a
/// Namespace last).
pub(crate) fn prune_key(api_version: &str, kind: &str) -> std::cmp::Reverse<u8> {
    std::cmp::Reverse(rank(crate::object::group_of(api_version), kind))
}

fn group_kind(object: &Value) -> (&str, &str) {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    (
        crate::object::group_of(api_version),
        object["kind"].as_str().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(api_version: &str, kind: &str, annotations: Value) -> Value {
        json!({"apiVersion": api_version, "kind": kind,
               "metadata": {"name": "x", "annotations": annotations}})
    }

    #[test]
    fn kinds_go_in_dependency_order() {
        let mut objects = [
            obj("batch/v1", "Job", json!({})),
            obj("example.com/v1", "Widget", json!({})),
            obj("apps/v1", "Deployment", json!({})),
            obj("v1", "Service", json!({})),
            obj("v1", "ConfigMap", json!({})),
            obj("rbac.authorization.k8s.io/v1", "RoleBinding", json!({})),
            obj("v1", "ServiceAccount", json!({})),
            obj("v1", "ResourceQuota", json!({})),
            obj("v1", "Namespace", json!({})),
        ];
        objects.sort_by_key(key);
        let kinds: Vec<_> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ResourceQuota",
                "RoleBinding",
                "ServiceAccount",
                "ConfigMap",
                "Service",
                "Deployment",
                "Job",
                "Widget"
            ]
        );
    }

    #[test]
    fn waves_come_before_kinds_and_berths_annotation_wins() {
        let late_cm = obj("v1", "ConfigMap", json!({"berth.dev/wave": "2"}));
        let early_job = obj(
            "batch/v1",
            "Job",
            json!({"argocd.argoproj.io/sync-wave": "-1"}),
        );
        let plain = obj("apps/v1", "Deployment", json!({}));
        let mut objects = [late_cm.clone(), plain.clone(), early_job.clone()];
        objects.sort_by_key(key);
        assert_eq!(objects, [early_job, plain, late_cm]);
        let both = obj(
            "v1",
            "ConfigMap",
            json!({"berth.dev/wave": "1", "argocd.argoproj.io/sync-wave": "5"}),
        );
        assert_eq!(wave(&both), Ok(1));
        let bad = obj("v1", "ConfigMap", json!({"berth.dev/wave": "first"}));
        assert_eq!(
            wave(&bad),
            Err("annotation berth.dev/wave: \"first\" is not an integer".to_owned())
        );
    }

    #[test]
    fn prune_goes_in_reverse() {
        let mut kinds = [
            ("v1", "Namespace"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
            ("example.com/v1", "Widget"),
            ("apps/v1", "Deployment"),
        ];
        kinds.sort_by_key(|(v, k)| prune_key(v, k));
        assert_eq!(
            kinds.map(|(_, k)| k),
            [
                "Widget",
                "Deployment",
                "CustomResourceDefinition",
                "Namespace"
            ]
        );
    }
}
