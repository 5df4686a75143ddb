//! Health of one live object, per kind, with the semantics Flux's kstatus and Argo CD's health
//! checks give it: Healthy (current), Progressing (still converging) or Degraded (failed, or
//! stuck past a deadline). Pure: it reads the object and nothing else.

use std::fmt;

use serde_json::Value;

/// Health of an object or, aggregated, of a sync's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub(crate) enum Health {
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
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "Healthy" => Self::Healthy,
            "Progressing" => Self::Progressing,
            "Degraded" => Self::Degraded,
            _ => Self::Unknown,
        }
    }
}

/// An object's health and, when it is not Healthy, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assessment {
    pub health: Health,
    pub reason: String,
}

fn healthy() -> Assessment {
    Assessment {
        health: Health::Healthy,
        reason: String::new(),
    }
}

fn progressing(reason: impl Into<String>) -> Assessment {
    Assessment {
        health: Health::Progressing,
        reason: reason.into(),
    }
}

fn degraded(reason: impl Into<String>) -> Assessment {
    Assessment {
        health: Health::Degraded,
        reason: reason.into(),
    }
}

/// Whether an object's health comes from a status that a controller writes after berth applies
/// it: a freshly applied one of these kinds is still Progressing whatever its old status said.
pub(crate) fn follows_status(kind: &str) -> bool {
    matches!(
        kind,
        "Deployment"
            | "StatefulSet"
            | "DaemonSet"
            | "ReplicaSet"
            | "Job"
            | "Pod"
            | "PersistentVolumeClaim"
            | "Workflow"
    )
}

/// The health of an object a pass just looked at: one of the kinds a controller reports on
/// that was just created or changed is Progressing whatever its old status said; any other is
/// judged from `object` (the live or applied object), and one not seen yet is Unknown.
pub(crate) fn after_pass(kind: &str, changed: bool, object: Option<&Value>) -> Assessment {
    if changed && follows_status(kind) {
        return progressing("just applied");
    }
    object.map_or(
        Assessment {
            health: Health::Unknown,
            reason: String::new(),
        },
        assess,
    )
}

/// The health of one live object.
pub(crate) fn assess(o: &Value) -> Assessment {
    let kind = o["kind"].as_str().unwrap_or_default();
    let group = o["apiVersion"]
        .as_str()
        .and_then(|v| v.rsplit_once('/'))
        .map_or("", |(g, _)| g);
    let status = &o["status"];
    if let Some(stale) = stale_generation(o) {
        return stale;
    }
    match (group, kind) {
        ("apps" | "extensions", "Deployment") => deployment(o, status),
        ("apps", "StatefulSet") => stateful_set(o, status),
        ("apps" | "extensions", "DaemonSet") => daemon_set(status),
        ("apps" | "extensions", "ReplicaSet") => replica_set(o, status),
        ("batch", "Job") => job(status),
        ("", "Pod") => pod(status),
        ("", "PersistentVolumeClaim") => claim(status),
        ("", "Service") => service(o, status),
        ("networking.k8s.io" | "extensions", "Ingress") => load_balancer(status, "Ingress"),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(status),
        ("apiregistration.k8s.io", "APIService") => api_service(status),
        ("argoproj.io", "Workflow") => workflow(status),
        _ => generic(status),
    }
}

/// Aggregates objects' health: Degraded wins, then Progressing, then Healthy. Returns the first
/// object (by the caller's order) that decided it, with its reason.
pub(crate) fn worst<'a>(
    objects: impl IntoIterator<Item = (String, &'a Value)>,
) -> (Health, Option<(String, String)>) {
    worst_of(objects.into_iter().map(|(name, o)| (name, assess(o))))
}

/// [`worst`] over health already assessed; Unknown ones do not count.
pub(crate) fn worst_of(
    objects: impl IntoIterator<Item = (String, Assessment)>,
) -> (Health, Option<(String, String)>) {
    let mut result = (Health::Healthy, None);
    for (name, a) in objects {
        match a.health {
            Health::Degraded => return (Health::Degraded, Some((name, a.reason))),
            Health::Progressing if result.0 != Health::Progressing => {
                result = (Health::Progressing, Some((name, a.reason)));
            }
            _ => {}
        }
    }
    result
}

/// A controller that has not yet seen the latest spec: whatever its status says is stale.
fn stale_generation(o: &Value) -> Option<Assessment> {
    let generation = o["metadata"]["generation"].as_i64()?;
    let observed = o["status"]["observedGeneration"].as_i64()?;
    (observed < generation).then(|| {
        progressing(format!(
            "generation {generation} not yet observed (at {observed})"
        ))
    })
}

fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn is_true(status: &Value, kind: &str) -> Option<bool> {
    condition(status, kind).map(|c| c["status"] == "True")
}

fn message_of(status: &Value, kind: &str) -> String {
    condition(status, kind)
        .and_then(|c| c["message"].as_str().or_else(|| c["reason"].as_str()))
        .unwrap_or_default()
        .to_owned()
}

fn count(status: &Value, field: &str) -> i64 {
    status[field].as_i64().unwrap_or(0)
}

fn replicas(o: &Value) -> i64 {
    o["spec"]["replicas"].as_i64().unwrap_or(1)
}

/// Rollout has not caught up until a status exists for the current generation.
fn unobserved(o: &Value, status: &Value) -> bool {
    o["metadata"]["generation"].as_i64().unwrap_or(0) > 0
        && status["observedGeneration"].as_i64().is_none()
}

fn deployment(o: &Value, status: &Value) -> Assessment {
    if unobserved(o, status) {
        return progressing("rollout not started");
    }
    if let Some(c) = condition(status, "Progressing")
        && c["reason"] == "ProgressDeadlineExceeded"
    {
        return degraded(format!(
            "progress deadline exceeded: {}",
            message_of(status, "Progressing")
        ));
    }
    let want = replicas(o);
    let updated = count(status, "updatedReplicas");
    if updated < want {
        return progressing(format!("{updated} of {want} replicas updated"));
    }
    let total = count(status, "replicas");
    if total > updated {
        return progressing(format!(
            "{} old replicas pending termination",
            total - updated
        ));
    }
    let available = count(status, "availableReplicas");
    if available < want {
        return progressing(format!("{available} of {want} replicas available"));
    }
    healthy()
}

fn stateful_set(o: &Value, status: &Value) -> Assessment {
    if unobserved(o, status) {
        return progressing("rollout not started");
    }
    let want = replicas(o);
    let ready = count(status, "readyReplicas");
    if ready < want {
        return progressing(format!("{ready} of {want} replicas ready"));
    }
    let rolling = o["spec"]["updateStrategy"]["type"].as_str() != Some("OnDelete");
    if rolling && status["updateRevision"] != status["currentRevision"] {
        let updated = count(status, "updatedReplicas");
        return progressing(format!("{updated} of {want} replicas updated"));
    }
    healthy()
}

fn daemon_set(status: &Value) -> Assessment {
    if status["observedGeneration"].is_null() {
        return progressing("rollout not started");
    }
    let want = count(status, "desiredNumberScheduled");
    for (field, what) in [
        ("updatedNumberScheduled", "updated"),
        ("numberAvailable", "available"),
    ] {
        let have = count(status, field);
        if have < want {
            return progressing(format!("{have} of {want} pods {what}"));
        }
    }
    healthy()
}

fn replica_set(o: &Value, status: &Value) -> Assessment {
    if is_true(status, "ReplicaFailure") == Some(true) {
        return degraded(message_of(status, "ReplicaFailure"));
    }
    if unobserved(o, status) {
        return progressing("replicas not yet created");
    }
    let want = replicas(o);
    let available = count(status, "availableReplicas");
    if available < want {
        return progressing(format!("{available} of {want} replicas available"));
    }
    healthy()
}

fn job(status: &Value) -> Assessment {
    if is_true(status, "Failed") == Some(true) {
        return degraded(format!("job failed: {}", message_of(status, "Failed")));
    }
    if is_true(status, "Complete") == Some(true) {
        return healthy();
    }
    progressing(format!("job running ({} active)", count(status, "active")))
}

fn pod(status: &Value) -> Assessment {
    match status["phase"].as_str().unwrap_or("Pending") {
        "Succeeded" => healthy(),
        "Failed" => degraded(format!(
            "pod failed: {}",
            status["message"]
                .as_str()
                .or(status["reason"].as_str())
                .unwrap_or_default()
        )),
        "Running" if is_true(status, "Ready") == Some(true) => healthy(),
        phase => {
            let crash = status["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|c| {
                    let reason = c["state"]["waiting"]["reason"].as_str()?;
                    matches!(
                        reason,
                        "CrashLoopBackOff" | "ImagePullBackOff" | "ErrImagePull"
                    )
                    .then(|| format!("container {}: {reason}", c["name"].as_str().unwrap_or("?")))
                });
            match crash {
                Some(reason) => degraded(reason),
                None => progressing(format!("pod {phase}, not ready")),
            }
        }
    }
}

fn claim(status: &Value) -> Assessment {
    match status["phase"].as_str().unwrap_or("Pending") {
        "Bound" => healthy(),
        "Lost" => degraded("claim lost its volume"),
        phase => progressing(format!("claim {phase}")),
    }
}

fn service(o: &Value, status: &Value) -> Assessment {
    if o["spec"]["type"] == "LoadBalancer" {
        return load_balancer(status, "Service");
    }
    healthy()
}

fn load_balancer(status: &Value, kind: &str) -> Assessment {
    let assigned = status["loadBalancer"]["ingress"]
        .as_array()
        .is_some_and(|i| !i.is_empty());
    if assigned {
        healthy()
    } else {
        progressing(format!("{kind} has no load balancer address yet"))
    }
}

fn crd(status: &Value) -> Assessment {
    if is_true(status, "NamesAccepted") == Some(false) {
        return degraded(format!(
            "names not accepted: {}",
            message_of(status, "NamesAccepted")
        ));
    }
    match is_true(status, "Established") {
        Some(true) => healthy(),
        _ => progressing("not yet Established"),
    }
}

fn api_service(status: &Value) -> Assessment {
    match is_true(status, "Available") {
        Some(true) => healthy(),
        _ => progressing(format!(
            "not available: {}",
            message_of(status, "Available")
        )),
    }
}

fn workflow(status: &Value) -> Assessment {
    match status["phase"].as_str().unwrap_or_default() {
        "Succeeded" => healthy(),
        phase @ ("Failed" | "Error") => degraded(format!(
            "workflow {phase}: {}",
            status["message"].as_str().unwrap_or_default()
        )),
        "" => progressing("workflow not started"),
        phase => progressing(format!("workflow {phase}")),
    }
}

/// Any other kind: the conventions of `status.conditions`. No status at all is Healthy.
fn generic(status: &Value) -> Assessment {
    if is_true(status, "Stalled") == Some(true) {
        return degraded(message_of(status, "Stalled"));
    }
    if is_true(status, "Reconciling") == Some(true) {
        return progressing(message_of(status, "Reconciling"));
    }
    for kind in ["Ready", "Available"] {
        if is_true(status, kind) == Some(false) {
            let c = condition(status, kind).unwrap_or(&Value::Null);
            let reason = message_of(status, kind);
            // a controller that gave up says so in the reason
            if c["reason"]
                .as_str()
                .is_some_and(|r| r.contains("Failed") || r.contains("Error"))
            {
                return degraded(reason);
            }
            return progressing(reason);
        }
    }
    healthy()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn health(o: &Value) -> Health {
        assess(o).health
    }

    fn deployment(replicas: i64, status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "generation": 2},
               "spec": {"replicas": replicas}, "status": status})
    }

    #[test]
    fn deployment_follows_its_rollout() {
        let done = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
                          "availableReplicas": 2, "readyReplicas": 2});
        assert_eq!(health(&deployment(2, done)), Health::Healthy);
        let fresh = json!({});
        assert_eq!(health(&deployment(2, fresh)), Health::Progressing);
        let stale = json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                           "availableReplicas": 2});
        let a = assess(&deployment(2, stale));
        assert_eq!(a.health, Health::Progressing);
        assert!(a.reason.contains("generation 2"), "{}", a.reason);
        let surging = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2,
                             "availableReplicas": 2});
        assert_eq!(health(&deployment(2, surging)), Health::Progressing);
        let unavailable = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
                                 "availableReplicas": 1});
        assert_eq!(
            assess(&deployment(2, unavailable)).reason,
            "1 of 2 replicas available"
        );
        let stuck = json!({"observedGeneration": 2, "conditions": [{"type": "Progressing",
            "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet \"web-1\" has timed out progressing."}]});
        assert_eq!(health(&deployment(2, stuck)), Health::Degraded);
        let scaled_to_zero = json!({"observedGeneration": 2});
        assert_eq!(health(&deployment(0, scaled_to_zero)), Health::Healthy);
    }

    #[test]
    fn stateful_set_daemon_set_and_replica_set() {
        let sts = |status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                   "metadata": {"generation": 1}, "spec": {"replicas": 2}, "status": status})
        };
        let ready = json!({"observedGeneration": 1, "readyReplicas": 2,
                           "currentRevision": "a", "updateRevision": "a"});
        assert_eq!(health(&sts(ready)), Health::Healthy);
        let rolling = json!({"observedGeneration": 1, "readyReplicas": 2,
                             "currentRevision": "a", "updateRevision": "b"});
        assert_eq!(health(&sts(rolling)), Health::Progressing);
        let ds =
            |status: Value| json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "status": status});
        assert_eq!(health(&ds(json!({}))), Health::Progressing);
        let full = json!({"observedGeneration": 1, "desiredNumberScheduled": 3,
                          "updatedNumberScheduled": 3, "numberAvailable": 3});
        assert_eq!(health(&ds(full)), Health::Healthy);
        let partial = json!({"observedGeneration": 1, "desiredNumberScheduled": 3,
                             "updatedNumberScheduled": 3, "numberAvailable": 2});
        assert_eq!(health(&ds(partial)), Health::Progressing);
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"generation": 1}, "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "conditions": [{"type": "ReplicaFailure",
                "status": "True", "message": "pods \"x\" is forbidden: exceeded quota"}]}});
        let a = assess(&rs);
        assert_eq!(a.health, Health::Degraded);
        assert!(a.reason.contains("exceeded quota"));
    }

    #[test]
    fn jobs_pods_and_claims() {
        let job = |conditions: Value| json!({"apiVersion": "batch/v1", "kind": "Job", "status": {"conditions": conditions}});
        assert_eq!(health(&job(json!([]))), Health::Progressing);
        let done = json!([{"type": "Complete", "status": "True"}]);
        assert_eq!(health(&job(done)), Health::Healthy);
        let failed = json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                             "message": "Job has reached the specified backoff limit"}]);
        let a = assess(&job(failed));
        assert_eq!(a.health, Health::Degraded);
        assert!(a.reason.contains("backoff limit"), "{}", a.reason);

        let pod = |status: Value| json!({"apiVersion": "v1", "kind": "Pod", "status": status});
        assert_eq!(
            health(&pod(json!({"phase": "Pending"}))),
            Health::Progressing
        );
        let running =
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
        assert_eq!(health(&pod(running)), Health::Healthy);
        let crashing = json!({"phase": "Running", "containerStatuses": [{"name": "app",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]});
        assert_eq!(
            assess(&pod(crashing)).reason,
            "container app: CrashLoopBackOff"
        );
        assert_eq!(health(&pod(json!({"phase": "Succeeded"}))), Health::Healthy);
        assert_eq!(health(&pod(json!({"phase": "Failed"}))), Health::Degraded);

        let pvc = |phase: &str| json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": phase}});
        assert_eq!(health(&pvc("Bound")), Health::Healthy);
        assert_eq!(health(&pvc("Pending")), Health::Progressing);
        assert_eq!(health(&pvc("Lost")), Health::Degraded);
    }

    #[test]
    fn services_ingresses_crds_and_api_services() {
        let cluster_ip =
            json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "ClusterIP"}});
        assert_eq!(health(&cluster_ip), Health::Healthy);
        let lb = json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "LoadBalancer"},
                        "status": {"loadBalancer": {}}});
        assert_eq!(health(&lb), Health::Progressing);
        let assigned = json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "LoadBalancer"},
                              "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}});
        assert_eq!(health(&assigned), Health::Healthy);
        let ingress = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                             "status": {"loadBalancer": {}}});
        assert_eq!(health(&ingress), Health::Progressing);

        let crd = |conditions: Value| {
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "status": {"conditions": conditions}})
        };
        let established = json!([{"type": "Established", "status": "True"}]);
        assert_eq!(health(&crd(established)), Health::Healthy);
        assert_eq!(health(&crd(json!([]))), Health::Progressing);
        let clash = json!([{"type": "NamesAccepted", "status": "False", "message": "name in use"}]);
        assert_eq!(health(&crd(clash)), Health::Degraded);

        let api = |available: &str| {
            json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                   "status": {"conditions": [{"type": "Available", "status": available,
                                              "message": "endpoints missing"}]}})
        };
        assert_eq!(health(&api("True")), Health::Healthy);
        assert_eq!(
            assess(&api("False")).reason,
            "not available: endpoints missing"
        );
    }

    #[test]
    fn workflows_and_other_kinds() {
        let wf = |phase: &str| json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "status": {"phase": phase}});
        assert_eq!(health(&wf("Running")), Health::Progressing);
        assert_eq!(health(&wf("Succeeded")), Health::Healthy);
        assert_eq!(health(&wf("Error")), Health::Degraded);

        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {}});
        assert_eq!(health(&cm), Health::Healthy);
        let custom = |conditions: Value| {
            json!({"apiVersion": "example.com/v1", "kind": "Database",
                   "metadata": {"generation": 3},
                   "status": {"observedGeneration": 3, "conditions": conditions}})
        };
        let ready = json!([{"type": "Ready", "status": "True"}]);
        assert_eq!(health(&custom(ready)), Health::Healthy);
        let waiting = json!([{"type": "Ready", "status": "False", "reason": "Provisioning"}]);
        assert_eq!(health(&custom(waiting)), Health::Progressing);
        let failed = json!([{"type": "Ready", "status": "False", "reason": "ProvisionFailed"}]);
        assert_eq!(health(&custom(failed)), Health::Degraded);
        let stalled = json!([{"type": "Stalled", "status": "True", "message": "bad spec"}]);
        assert_eq!(health(&custom(stalled)), Health::Degraded);
    }

    #[test]
    fn worst_names_the_object_that_decided() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "status": {}});
        let (h, who) = worst([("cm".to_owned(), &cm), ("job".to_owned(), &job)]);
        assert_eq!(h, Health::Progressing);
        assert_eq!(who.map(|w| w.0).as_deref(), Some("job"));
        assert_eq!(worst([("cm".to_owned(), &cm)]), (Health::Healthy, None));
    }
}
