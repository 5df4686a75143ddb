//! Runs as berth sees them: the Argo Workflow resource, a run's record in the pipeline's
//! status ([`Run`]) and the view cleanup judges runs by ([`RunInfo`]). Pure.

use jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::workflow::Group;
use crate::vocab::{
    BRANCH_ANNOTATION, BRANCH_LABEL, PIPELINE_LABEL, PULL_REQUEST_LABEL, REVISION, TAG_ANNOTATION,
};

/// How many runs a pipeline's status keeps.
const KEEP_RUNS: usize = 10;

/// The Argo Workflow resource (argoproj.io/v1alpha1), for dynamic handles.
pub(crate) fn workflow_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Workflow"),
        "workflows",
    )
}

pub(crate) fn workflows(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &workflow_resource())
}

/// Whether an error says the Workflow API is not installed at all.
pub(crate) fn is_missing_api(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 && s.message.contains("page not found"))
}

/// The message of an error from the Workflow API. A cluster without Argo Workflows answers
/// a bare `404 page not found` for the whole resource; that is said plainly, with the fix.
pub(crate) fn workflow_api_message(e: &kube::Error) -> String {
    match e {
        e if is_missing_api(e) => {
            "the Argo Workflow API (workflows.argoproj.io/v1alpha1) is not installed on this \
             cluster: install Argo Workflows, or its CRDs from berth's manifests/"
                .to_owned()
        }
        other => crate::cluster::api_message(other),
    }
}

/// A run as berth records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Run {
    pub name: String,
    pub branch: String,
    pub revision: String,
    /// Argo's `status.phase`; empty until the controller picks the run up.
    pub phase: String,
    pub started: String,
    pub finished: String,
    /// The step that failed the run, with Argo's message for it (`test: main: Error (exit
    /// code 2)`); empty unless the run failed in a step.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failed_step: String,
    /// The pull request the run builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<u64>,
    /// The tag the run builds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
}

impl Run {
    /// The concurrency group the run belongs to.
    pub(crate) fn group(&self) -> Group {
        match (self.pull_request, self.tag.as_str()) {
            (Some(n), _) => Group::Pull(n),
            (None, "") => Group::Branch(self.branch.clone()),
            (None, tag) => Group::Tag(tag.to_owned()),
        }
    }
}

/// Whether an Argo phase is final.
pub(crate) fn is_finished(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed" | "Error")
}

/// The run a Workflow object describes.
pub(crate) fn run_of(object: &Value) -> Run {
    let meta = &object["metadata"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    Run {
        name: text(&meta["name"]),
        branch: text(&meta["annotations"][BRANCH_ANNOTATION]),
        revision: text(&meta["labels"][REVISION]),
        phase: text(&object["status"]["phase"]),
        started: text(&object["status"]["startedAt"]),
        finished: text(&object["status"]["finishedAt"]),
        failed_step: failed_step(object),
        pull_request: meta["labels"][PULL_REQUEST_LABEL]
            .as_str()
            .and_then(|n| n.parse().ok()),
        tag: text(&meta["annotations"][TAG_ANNOTATION]),
    }
}

/// The step that failed a finished run, from the controller's `status.nodes`: the first pod
/// (by finish time) that failed or errored, as `name: message`.
pub(crate) fn failed_step(object: &Value) -> String {
    let status = &object["status"];
    if !matches!(status["phase"].as_str(), Some("Failed" | "Error")) {
        return String::new();
    }
    let Some(nodes) = status["nodes"].as_object() else {
        return String::new();
    };
    fn text(v: &Value) -> &str {
        v.as_str().unwrap_or_default()
    }
    nodes
        .values()
        .filter(|n| n["type"] == "Pod" && matches!(text(&n["phase"]), "Failed" | "Error"))
        .min_by_key(|n| (text(&n["finishedAt"]), text(&n["id"])))
        .map(|n| {
            let name = text(&n["displayName"]);
            match text(&n["message"]) {
                "" => name.to_owned(),
                message => format!("{name}: {message}"),
            }
        })
        .unwrap_or_default()
}

/// Merges a run into the recorded list (newest first, at most [`KEEP_RUNS`]). Returns the new
/// list and whether the run just finished: it was recorded unfinished, or it enters the list
/// already finished.
pub(crate) fn record_run(runs: &[Run], run: Run, created: &str) -> (Vec<Run>, bool) {
    let previous = runs.iter().find(|r| r.name == run.name);
    let finished_now = is_finished(&run.phase) && previous.is_none_or(|p| !is_finished(&p.phase));
    let mut out: Vec<(String, Run)> = runs
        .iter()
        .filter(|r| r.name != run.name)
        .map(|r| (sort_key(r), r.clone()))
        .collect();
    let mut run = run;
    if run.started.is_empty() {
        run.started = previous.map(|p| p.started.clone()).unwrap_or_default();
    }
    let key = if run.started.is_empty() {
        created.to_owned()
    } else {
        run.started.clone()
    };
    out.push((key, run.clone()));
    out.sort_by(|a, b| b.0.cmp(&a.0));
    out.truncate(KEEP_RUNS);
    let kept = out.iter().any(|(_, r)| r.name == run.name);
    (
        out.into_iter().map(|(_, r)| r).collect(),
        finished_now && kept,
    )
}

fn sort_key(r: &Run) -> String {
    r.started.clone()
}

/// A run as cleanup judges it: its pipeline and branch, phase, times and finalizers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunInfo {
    pub name: String,
    pub namespace: String,
    pub pipeline: String,
    pub branch: String,
    pub phase: String,
    pub finished: Option<Timestamp>,
    pub created: Option<Timestamp>,
    /// Deletion was requested already (`metadata.deletionTimestamp`).
    pub deleting: Option<Timestamp>,
    pub finalizers: Vec<String>,
}

impl RunInfo {
    pub(crate) fn from_object(o: &Value) -> Self {
        let meta = &o["metadata"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let time = |v: &Value| v.as_str().and_then(|s| s.parse::<Timestamp>().ok());
        Self {
            name: text(&meta["name"]),
            namespace: text(&meta["namespace"]),
            pipeline: text(&meta["labels"][PIPELINE_LABEL]),
            branch: meta["annotations"][BRANCH_ANNOTATION]
                .as_str()
                .map_or_else(|| text(&meta["labels"][BRANCH_LABEL]), str::to_owned),
            phase: text(&o["status"]["phase"]),
            finished: time(&o["status"]["finishedAt"]),
            created: time(&meta["creationTimestamp"]),
            deleting: time(&meta["deletionTimestamp"]),
            finalizers: meta["finalizers"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_recorded_newest_first_and_finish_once() {
        let run = |name: &str, phase: &str, started: &str| Run {
            name: name.into(),
            phase: phase.into(),
            started: started.into(),
            ..Run::default()
        };
        let (runs, done) = record_run(&[], run("a", "Running", "t1"), "t1");
        assert!(!done);
        let (runs, done) = record_run(&runs, run("b", "", ""), "t2");
        assert!(!done);
        assert_eq!(
            runs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        let (runs, done) = record_run(&runs, run("a", "Succeeded", "t1"), "t1");
        assert!(done, "a run that was running finished");
        let (_, again) = record_run(&runs, run("a", "Succeeded", "t1"), "t1");
        assert!(!again, "the same finish is reported once");
        let many: Vec<Run> = (0..KEEP_RUNS)
            .map(|i| run(&format!("r{i}"), "Succeeded", &format!("t5{i}")))
            .collect();
        let (kept, done) = record_run(&many, run("old", "Failed", "t0"), "t0");
        assert!(!done && kept.len() == KEEP_RUNS && kept.iter().all(|r| r.name != "old"));
    }

    #[test]
    fn the_failed_step_is_the_first_pod_that_failed() {
        let run = serde_json::json!({"status": {"phase": "Failed", "message": "child 'x-2' failed",
        "nodes": {
            "x": {"id": "x", "displayName": "x", "type": "Steps", "phase": "Failed"},
            "x-1": {"id": "x-1", "displayName": "build", "type": "Pod", "phase": "Succeeded",
                    "finishedAt": "2026-01-01T00:00:01Z"},
            "x-2": {"id": "x-2", "displayName": "test", "type": "Pod", "phase": "Failed",
                    "message": "main: Error (exit code 2)", "finishedAt": "2026-01-01T00:00:02Z"},
            "x-3": {"id": "x-3", "displayName": "lint", "type": "Pod", "phase": "Error",
                    "finishedAt": "2026-01-01T00:00:03Z"}
        }}});
        assert_eq!(failed_step(&run), "test: main: Error (exit code 2)");
        assert_eq!(run_of(&run).failed_step, "test: main: Error (exit code 2)");
        let mut succeeded = run.clone();
        succeeded["status"]["phase"] = "Succeeded".into();
        assert_eq!(failed_step(&succeeded), "");
        // stopped before any step failed: nothing to name
        let stopped = serde_json::json!({"status": {"phase": "Failed",
            "message": "Stopped with strategy 'Terminate'", "nodes": {}}});
        assert_eq!(failed_step(&stopped), "");
    }

    #[test]
    fn a_missing_workflow_api_is_named_with_the_fix() {
        let missing = kube::Error::Api(Box::new(
            kube::core::Status::failure("404 page not found", "NotFound").with_code(404),
        ));
        let text = workflow_api_message(&missing);
        assert!(text.contains("workflows.argoproj.io/v1alpha1"), "{text}");
        assert!(text.contains("manifests/"), "{text}");
        let gone = kube::Error::Api(Box::new(
            kube::core::Status::failure("workflows.argoproj.io \"x\" not found", "NotFound")
                .with_code(404),
        ));
        assert_eq!(
            workflow_api_message(&gone),
            "workflows.argoproj.io \"x\" not found"
        );
    }
}
