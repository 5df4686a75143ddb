//! Pipelines: a new commit on a mapped branch of a source repository launches the Argo
//! Workflow defined in that repository, exactly once per commit. [`workflow`] builds the
//! object (pure); [`launch`] creates it; [`pass`] decides which heads launch; [`watch_runs`]
//! records how runs end.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;
use tracing::{info, instrument, warn};

use crate::config::{Concurrency, Mapping, Pipeline, Repository, WorkflowSource};
use crate::git::{self, Commit, Mirror};
use crate::status::{self, EventType};
use crate::sync::Context;

/// Label: the pipeline that launched a Workflow.
pub const PIPELINE_LABEL: &str = "berth.dev/pipeline";
/// Label: the repository (mapping name) a Workflow was launched from.
pub const REPOSITORY_LABEL: &str = "berth.dev/repository";
/// Label: the branch, made a valid label value (see [`label_value`]).
pub const BRANCH_LABEL: &str = "berth.dev/branch";
/// Annotation: the branch name as it is.
pub const BRANCH_ANNOTATION: &str = "berth.dev/branch";
/// Annotation: the commit's subject line.
pub const SUBJECT_ANNOTATION: &str = "berth.dev/commit-subject";
/// Annotation on runs created suspended by `concurrency: queue`.
pub const QUEUED_ANNOTATION: &str = "berth.dev/queued";
/// Prefix of pipeline status ConfigMaps.
pub const PIPELINE_PREFIX: &str = "berth-pipeline-";
/// How many runs a pipeline's status keeps.
const KEEP_RUNS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file} not found at commit {revision}")]
    MissingFile { file: String, revision: String },
    #[error("{file} at commit {revision}: {message}")]
    InvalidFile {
        file: String,
        revision: String,
        message: String,
    },
    #[error("failed to {action} {name}: {message}")]
    Api {
        action: &'static str,
        name: String,
        message: String,
    },
    #[error(transparent)]
    Git(#[from] git::Error),
}

/// What one launch needs to know.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    pub pipeline: &'a Pipeline,
    pub repository: &'a Repository,
    pub branch: &'a str,
    pub commit: &'a Commit,
    /// Namespace the Workflow goes to.
    pub namespace: &'a str,
    /// The Workflow's name.
    pub name: String,
}

/// The Argo Workflow resource (argoproj.io/v1alpha1), for dynamic handles.
pub fn workflow_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Workflow"),
        "workflows",
    )
}

fn workflows(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &workflow_resource())
}

/// A DNS-label name of at most 63 characters: the parts joined with `-`, shortened with a hash
/// of the whole when too long, so distinct inputs keep distinct names.
pub fn dns_name(parts: &[&str]) -> String {
    let full = parts.join("-");
    if full.len() <= 63 {
        return full;
    }
    let digest = sha2::Sha256::digest(full.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}-{hash}", full[..54].trim_end_matches('-'))
}

/// The deterministic name of a pipeline's run for a commit; a manual re-launch adds a suffix.
pub fn workflow_name(pipeline: &str, commit: &Commit, suffix: Option<&str>) -> String {
    match suffix {
        Some(s) => dns_name(&[pipeline, commit.short(), s]),
        None => dns_name(&[pipeline, commit.short()]),
    }
}

/// A label value for any string: invalid characters become `-`, and long values are cut with a
/// hash.
pub fn label_value(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned();
    if cleaned.len() <= 63 && cleaned == s {
        return cleaned;
    }
    let digest = sha2::Sha256::digest(s.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let head: String = cleaned.chars().take(54).collect();
    let head = head.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if head.is_empty() {
        hash
    } else {
        format!("{head}-{hash}")
    }
}

/// Whether a branch is one of the pipeline's (names or globs).
pub fn branch_matches(patterns: &[String], branch: &str) -> bool {
    patterns.iter().any(|p| {
        p == branch
            || globset::Glob::new(p)
                .map(|g| g.compile_matcher().is_match(branch))
                .unwrap_or(false)
    })
}

/// Whether any changed path matches the pipeline's `paths` (always true without `paths`).
pub fn paths_match(patterns: &[String], changed: &[String]) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let mut builder = globset::GlobSetBuilder::new();
    for p in patterns {
        if let Ok(g) = globset::GlobBuilder::new(p).literal_separator(true).build() {
            builder.add(g);
        }
    }
    let Ok(set) = builder.build() else {
        return false;
    };
    changed.iter().any(|c| set.is_match(c))
}

/// Parses a workflow file; it must be one `argoproj.io/v1alpha1` `Workflow`.
///
/// # Errors
/// Unparseable, or not a Workflow.
pub fn parse_workflow(file: &str, revision: &str, content: &[u8]) -> Result<Value, Error> {
    let invalid = |message: String| Error::InvalidFile {
        file: file.to_owned(),
        revision: revision.to_owned(),
        message,
    };
    let text = std::str::from_utf8(content).map_err(|_| invalid("not UTF-8".to_owned()))?;
    let value: Value = serde_saphyr::from_str(text).map_err(|e| {
        let line = e.location().map_or(1, |l| l.line());
        invalid(format!("line {line}: {}", crate::config::yaml_message(&e)))
    })?;
    let kind = value["kind"].as_str().unwrap_or_default();
    let api_version = value["apiVersion"].as_str().unwrap_or_default();
    if kind != "Workflow" || !api_version.starts_with("argoproj.io/") {
        return Err(invalid(format!(
            "expected an argoproj.io/v1alpha1 Workflow, found {}",
            if kind.is_empty() {
                "no kind".to_owned()
            } else {
                format!("{api_version} {kind}")
            }
        )));
    }
    if !value["spec"].is_object() {
        return Err(invalid("the Workflow has no spec".to_owned()));
    }
    Ok(value)
}

/// Builds the Workflow to create: the file's spec (or a `workflowTemplateRef`), berth's name,
/// labels and annotations, and the commit facts as `spec.arguments.parameters`. Parameters the
/// file declares keep their values unless the mapping overrides them; `repo`, `revision`,
/// `short-sha` and `branch` always describe the commit. Nothing is substituted into text.
pub fn workflow(launch: &Launch<'_>, file: Option<&Value>) -> Value {
    let p = launch.pipeline;
    let mut spec = match (&p.source, file) {
        (WorkflowSource::Template(name), _) => json!({"workflowTemplateRef": {"name": name}}),
        (WorkflowSource::File(_), Some(f)) => f["spec"].clone(),
        (WorkflowSource::File(_), None) => json!({}),
    };
    let file_meta = file.map(|f| f["metadata"].clone()).unwrap_or(Value::Null);

    let mut params: Vec<Value> = spec["arguments"]["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut set = |name: &str, value: &str| match params.iter_mut().find(|v| v["name"] == name) {
        Some(existing) => {
            existing["value"] = Value::from(value);
            if let Some(o) = existing.as_object_mut() {
                o.remove("valueFrom");
            }
        }
        None => params.push(json!({"name": name, "value": value})),
    };
    for (name, value) in &p.parameters {
        set(name, value);
    }
    set("repo", &launch.repository.url);
    set("revision", &launch.commit.id);
    set("short-sha", launch.commit.short());
    set("branch", launch.branch);
    spec["arguments"]["parameters"] = Value::Array(params);

    if let Some(sa) = &p.service_account {
        spec["serviceAccountName"] = Value::from(sa.clone());
    }
    for (key, value) in [
        ("ttlStrategy", &p.ttl_strategy),
        ("podGC", &p.pod_gc),
        ("artifactGC", &p.artifact_gc),
    ] {
        if let Some(v) = value
            && spec.get(key).is_none_or(Value::is_null)
        {
            spec[key] = v.clone();
        }
    }

    let mut labels = file_meta["labels"].as_object().cloned().unwrap_or_default();
    labels.insert(
        status::MANAGED_BY.into(),
        Value::from(status::MANAGER_VALUE),
    );
    labels.insert(PIPELINE_LABEL.into(), Value::from(p.name.clone()));
    labels.insert(
        REPOSITORY_LABEL.into(),
        Value::from(launch.repository.name.clone()),
    );
    labels.insert(
        status::REVISION.into(),
        Value::from(launch.commit.id.clone()),
    );
    labels.insert(BRANCH_LABEL.into(), Value::from(label_value(launch.branch)));
    let mut annotations = file_meta["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    annotations.insert(BRANCH_ANNOTATION.into(), Value::from(launch.branch));
    annotations.insert(
        SUBJECT_ANNOTATION.into(),
        Value::from(launch.commit.subject.clone()),
    );
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": launch.name,
            "namespace": launch.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    })
}

/// A run as berth records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub name: String,
    pub branch: String,
    pub revision: String,
    /// Argo's `status.phase`; empty until the controller picks the run up.
    pub phase: String,
    pub started: String,
    pub finished: String,
}

/// Whether an Argo phase is final.
pub fn is_finished(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed" | "Error")
}

/// The run a Workflow object describes.
pub fn run_of(object: &Value) -> Run {
    let meta = &object["metadata"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    Run {
        name: text(&meta["name"]),
        branch: text(&meta["annotations"][BRANCH_ANNOTATION]),
        revision: text(&meta["labels"][status::REVISION]),
        phase: text(&object["status"]["phase"]),
        started: text(&object["status"]["startedAt"]),
        finished: text(&object["status"]["finishedAt"]),
    }
}

/// Merges a run into the recorded list (newest first, at most [`KEEP_RUNS`]). Returns the new
/// list and whether the run just finished: it was recorded unfinished, or it enters the list
/// already finished.
pub fn record_run(runs: &[Run], run: Run, created: &str) -> (Vec<Run>, bool) {
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

// ---- pipeline status ConfigMap ------------------------------------------------------------

/// What berth keeps about a pipeline in `berth-pipeline-<name>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Last launched commit per branch.
    pub launched: BTreeMap<String, String>,
    pub runs: Vec<Run>,
    pub status: String,
    pub message: String,
}

pub fn config_map_name(pipeline: &str) -> String {
    format!("{PIPELINE_PREFIX}{pipeline}")
}

/// Reads a pipeline's state; empty when it never ran.
///
/// # Errors
/// The API server cannot be read.
pub async fn load_state(client: &Client, namespace: &str, pipeline: &str) -> Result<State, Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let name = config_map_name(pipeline);
    let cm = api.get_opt(&name).await.map_err(|e| Error::Api {
        action: "read",
        name: format!("{namespace}/{name}"),
        message: status::api_message(&e),
    })?;
    Ok(cm.map(|cm| state_of(&cm)).unwrap_or_default())
}

fn state_of(cm: &ConfigMap) -> State {
    let data = cm.data.clone().unwrap_or_default();
    let annotations = cm.metadata.annotations.clone().unwrap_or_default();
    State {
        launched: data
            .get("launched")
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default(),
        runs: data
            .get("runs")
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default(),
        status: annotations.get(status::STATUS).cloned().unwrap_or_default(),
        message: annotations
            .get(status::MESSAGE)
            .cloned()
            .unwrap_or_default(),
    }
}

/// Every pipeline state in berth's namespace, by pipeline name.
///
/// # Errors
/// The API server cannot be read.
pub async fn list_states(
    client: &Client,
    namespace: &str,
) -> Result<BTreeMap<String, State>, Error> {
    status::records(client, namespace, "pipeline", PIPELINE_PREFIX, state_of)
        .await
        .map_err(|e| Error::Api {
            action: "list",
            name: format!("{namespace}/{PIPELINE_PREFIX}*"),
            message: status::api_message(&e),
        })
}

/// Merge-patches some keys of a pipeline's ConfigMap (creating it first if needed), so the
/// launcher (`launched`, status) and the run watcher (`runs`) never overwrite each other.
async fn patch_state(
    client: &Client,
    namespace: &str,
    pipeline: &str,
    patch: Value,
) -> Result<(), Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let name = config_map_name(pipeline);
    let fail = |e: &kube::Error| Error::Api {
        action: "write",
        name: format!("{namespace}/{name}"),
        message: status::api_message(e),
    };
    let mut body = patch;
    body["metadata"]["labels"] = json!({
        status::MANAGED_BY: status::MANAGER_VALUE,
        status::KIND_LABEL: "pipeline",
        PIPELINE_LABEL: pipeline,
    });
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let mut cm: ConfigMap = serde_json::from_value(body.clone()).unwrap_or_default();
            cm.metadata.name = Some(name.clone());
            cm.metadata.namespace = Some(namespace.to_owned());
            match api.create(&PostParams::default(), &cm).await {
                Ok(_) => Ok(()),
                // created meanwhile by the other writer: patch it
                Err(kube::Error::Api(s)) if s.code == 409 => api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                    .await
                    .map(drop)
                    .map_err(|e| fail(&e)),
                Err(e) => Err(fail(&e)),
            }
        }
        Err(e) => Err(fail(&e)),
    }
}

async fn record_status(
    ctx: &Context,
    pipeline: &str,
    phase: &str,
    message: &str,
    launched: Option<(&str, &str)>,
) {
    let mut patch = json!({"metadata": {"annotations": {
        status::STATUS: phase,
        status::MESSAGE: message,
        status::LAST_SYNC: status::now(),
    }}});
    if let Some((branch, sha)) = launched {
        let mut state = load_state(&ctx.client, &ctx.namespace, pipeline)
            .await
            .unwrap_or_default();
        state.launched.insert(branch.to_owned(), sha.to_owned());
        patch["data"]["launched"] =
            Value::from(serde_json::to_string(&state.launched).expect("a map serializes"));
    }
    if let Err(e) = patch_state(&ctx.client, &ctx.namespace, pipeline, patch).await {
        warn!(pipeline, error = %e, "failed to record pipeline status");
    }
}

// ---- launching ----------------------------------------------------------------------------

/// The outcome of a launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launched {
    Created {
        name: String,
        queued: bool,
    },
    /// A Workflow of that name exists: launched before, which counts as success.
    Existed {
        name: String,
    },
}

/// Runs of a pipeline's branch that have not finished, oldest first.
async fn active_runs(
    client: &Client,
    namespace: &str,
    pipeline: &str,
    branch: &str,
) -> Result<Vec<Value>, Error> {
    let params = ListParams::default().labels(&format!(
        "{PIPELINE_LABEL}={pipeline},{BRANCH_LABEL}={}",
        label_value(branch)
    ));
    let mut runs: Vec<Value> = list_runs(client, namespace, pipeline, &params)
        .await?
        .into_iter()
        .map(|o| serde_json::to_value(o).expect("objects serialize"))
        .filter(|v| !is_finished(v["status"]["phase"].as_str().unwrap_or_default()))
        .collect();
    runs.sort_by(|a, b| {
        let key = |v: &Value| {
            v["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        key(a).cmp(&key(b))
    });
    Ok(runs)
}

/// Creates the Workflow, applying the pipeline's concurrency policy to the branch's earlier
/// runs first.
///
/// # Errors
/// The API server rejects the list, patch or create.
pub async fn launch(
    client: &Client,
    launch: &Launch<'_>,
    object: Value,
) -> Result<Launched, Error> {
    let p = launch.pipeline;
    let api = workflows(client, launch.namespace);
    let mut object = object;
    let mut queued = false;
    if p.concurrency != Concurrency::Allow {
        let active: Vec<Value> = active_runs(client, launch.namespace, &p.name, launch.branch)
            .await?
            .into_iter()
            .filter(|v| v["metadata"]["name"] != launch.name.as_str())
            .collect();
        match p.concurrency {
            Concurrency::CancelInProgress => {
                for run in &active {
                    let name = run["metadata"]["name"].as_str().unwrap_or_default();
                    // Argo's own mechanism: the controller stops the run's pods.
                    let patch = json!({"spec": {"shutdown": "Terminate"}});
                    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map_err(|e| Error::Api {
                            action: "terminate",
                            name: name.to_owned(),
                            message: status::api_message(&e),
                        })?;
                    info!(pipeline = %p.name, run = name, "terminated earlier run");
                }
            }
            Concurrency::Queue if !active.is_empty() => {
                object["spec"]["suspend"] = Value::Bool(true);
                object["metadata"]["annotations"][QUEUED_ANNOTATION] = Value::from("true");
                queued = true;
            }
            _ => {}
        }
    }
    let dynamic: DynamicObject =
        serde_json::from_value(object).expect("a built Workflow is an object");
    match api.create(&PostParams::default(), &dynamic).await {
        Ok(_) => Ok(Launched::Created {
            name: launch.name.clone(),
            queued,
        }),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Launched::Existed {
            name: launch.name.clone(),
        }),
        Err(e) => Err(Error::Api {
            action: "create Workflow",
            name: format!("{}/{}", launch.namespace, launch.name),
            message: status::api_message(&e),
        }),
    }
}

/// Resumes the oldest queued run of a branch when nothing else of it is running.
async fn resume_queued(
    client: &Client,
    namespace: &str,
    pipeline: &str,
    branch: &str,
) -> Result<(), Error> {
    let active = active_runs(client, namespace, pipeline, branch).await?;
    let suspended = |v: &Value| v["spec"]["suspend"] == true;
    if active.iter().any(|v| !suspended(v)) {
        return Ok(());
    }
    let Some(next) = active
        .iter()
        .find(|v| suspended(v) && v["metadata"]["annotations"][QUEUED_ANNOTATION] == "true")
    else {
        return Ok(());
    };
    let name = next["metadata"]["name"].as_str().unwrap_or_default();
    let patch = json!({"spec": {"suspend": null}});
    workflows(client, namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::Api {
            action: "resume",
            name: name.to_owned(),
            message: status::api_message(&e),
        })?;
    info!(pipeline, run = name, "resumed queued run");
    Ok(())
}

/// Reads the workflow file at the commit (for file-based pipelines).
fn workflow_file(
    mirror: &Mirror,
    pipeline: &Pipeline,
    commit: &Commit,
) -> Result<Option<Value>, Error> {
    let WorkflowSource::File(path) = &pipeline.source else {
        return Ok(None);
    };
    let content = git::read_file(mirror.repository(), &mirror.display_url(), &commit.id, path)?
        .ok_or_else(|| Error::MissingFile {
            file: path.clone(),
            revision: commit.short().to_owned(),
        })?;
    parse_workflow(path, commit.short(), &content).map(Some)
}

/// Launches one commit of a pipeline now and records it: the deterministic name, or with
/// `manual` a suffixed one when that name is taken. Errors are recorded in the pipeline's
/// status and an Event.
///
/// # Errors
/// The workflow file is missing or invalid, or the API server refuses.
pub async fn launch_commit(
    ctx: &Context,
    pipeline: &Pipeline,
    repository: &Repository,
    branch: &str,
    commit: &Commit,
    manual: bool,
) -> Result<Launched, Error> {
    let result = launch_commit_inner(ctx, pipeline, repository, branch, commit, manual).await;
    let outcome = match &result {
        Ok(Launched::Created { .. }) => Some("launched"),
        Ok(Launched::Existed { .. }) => None,
        Err(_) => Some("failed"),
    };
    if let Some(outcome) = outcome {
        ctx.metrics
            .pipeline_launches
            .get_or_create(&crate::telemetry::PipelineResult {
                pipeline: pipeline.name.clone(),
                result: outcome.to_owned(),
            })
            .inc();
    }
    let cm = config_map_name(&pipeline.name);
    match &result {
        Ok(Launched::Created { name, queued }) => {
            let namespace = pipeline.namespace.as_deref().unwrap_or(&ctx.namespace);
            let message = format!(
                "launched {namespace}/{name} for {branch}@{}{}",
                commit.short(),
                if *queued { " (queued)" } else { "" }
            );
            info!(pipeline = %pipeline.name, run = %name, branch, commit = %commit.short(), "launched");
            record_status(
                ctx,
                &pipeline.name,
                "Launched",
                &message,
                Some((branch, &commit.id)),
            )
            .await;
            status::event(
                &ctx.client,
                &ctx.namespace,
                &cm,
                EventType::Normal,
                "Launched",
                &message,
            )
            .await;
        }
        Ok(Launched::Existed { name }) => {
            record_status(
                ctx,
                &pipeline.name,
                "Launched",
                &format!("{name} exists"),
                Some((branch, &commit.id)),
            )
            .await;
        }
        Err(e) => {
            let message = format!("{branch}@{}: {e}", commit.short());
            warn!(pipeline = %pipeline.name, error = %message, "launch failed");
            record_status(ctx, &pipeline.name, "Failed", &message, None).await;
            status::event(
                &ctx.client,
                &ctx.namespace,
                &cm,
                EventType::Warning,
                "LaunchFailed",
                &message,
            )
            .await;
        }
    }
    result
}

async fn launch_commit_inner(
    ctx: &Context,
    pipeline: &Pipeline,
    repository: &Repository,
    branch: &str,
    commit: &Commit,
    manual: bool,
) -> Result<Launched, Error> {
    let file = {
        let (cache, url, p, c) = (
            ctx.cache_dir.clone(),
            repository.url.clone(),
            pipeline.clone(),
            commit.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mirror = Mirror::open(&cache, &url)?;
            workflow_file(&mirror, &p, &c)
        })
        .await
        .expect("read task does not panic")?
    };
    let namespace = pipeline.namespace.as_deref().unwrap_or(&ctx.namespace);
    let mut launch = Launch {
        pipeline,
        repository,
        branch,
        commit,
        namespace,
        name: workflow_name(&pipeline.name, commit, None),
    };
    let outcome = self::launch(&ctx.client, &launch, workflow(&launch, file.as_ref())).await?;
    match outcome {
        Launched::Existed { .. } if manual => {
            let suffix = format!("{:05x}", rand::random::<u32>() & 0xfffff);
            launch.name = workflow_name(&pipeline.name, commit, Some(&suffix));
            self::launch(&ctx.client, &launch, workflow(&launch, file.as_ref())).await
        }
        other => Ok(other),
    }
}

/// The branch `berth trigger` launches when none is given: the pipeline's first branch that
/// is a plain name, else the repository's branch.
pub fn default_branch(pipeline: &Pipeline, repository: &Repository) -> String {
    pipeline
        .branches
        .iter()
        .find(|b| !b.contains(['*', '?', '[', '{']))
        .cloned()
        .unwrap_or_else(|| repository.branch.clone())
}

/// The commit to launch: `revision` when given, else the fetched head of `branch`.
///
/// # Errors
/// Unknown branch or revision.
pub async fn resolve(
    cache_dir: &std::path::Path,
    repository: &Repository,
    branch: &str,
    revision: Option<&str>,
) -> Result<Commit, Error> {
    let (cache, url, branch, revision) = (
        cache_dir.to_path_buf(),
        repository.url.clone(),
        branch.to_owned(),
        revision.map(str::to_owned),
    );
    tokio::task::spawn_blocking(move || {
        let mirror = Mirror::open(&cache, &url)?;
        Ok(match revision {
            Some(r) => mirror.commit(&r)?,
            None => mirror.resolve(&branch)?,
        })
    })
    .await
    .expect("git task does not panic")
}

/// Checks a file-based pipeline offline: the workflow file parses as a Workflow at the head
/// of every matching branch in the mirror. Returns (branch, short sha, problem) per head.
///
/// # Errors
/// The mirror cannot be read.
pub async fn check(
    cache_dir: &std::path::Path,
    pipeline: &Pipeline,
    repository: &Repository,
) -> Result<Vec<(String, String, Option<String>)>, Error> {
    let (cache, url, p) = (
        cache_dir.to_path_buf(),
        repository.url.clone(),
        pipeline.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let mirror = Mirror::open(&cache, &url)?;
        Ok(mirror
            .heads()?
            .into_iter()
            .filter(|(b, _)| branch_matches(&p.branches, b))
            .map(|(b, c)| {
                let problem = workflow_file(&mirror, &p, &c).err().map(|e| e.to_string());
                (b, c.short().to_owned(), problem)
            })
            .collect())
    })
    .await
    .expect("git task does not panic")
}

/// Whether any Workflow of the pipeline exists for this commit (under any name).
async fn launched_before(
    client: &Client,
    namespace: &str,
    pipeline: &str,
    commit: &str,
) -> Result<bool, Error> {
    let params = ListParams::default()
        .labels(&format!(
            "{PIPELINE_LABEL}={pipeline},{}={commit}",
            status::REVISION
        ))
        .limit(1);
    Ok(!list_runs(client, namespace, pipeline, &params)
        .await?
        .is_empty())
}

/// The Workflows of a pipeline that a label selector picks.
async fn list_runs(
    client: &Client,
    namespace: &str,
    pipeline: &str,
    params: &ListParams,
) -> Result<Vec<DynamicObject>, Error> {
    let list = workflows(client, namespace)
        .list(params)
        .await
        .map_err(|e| Error::Api {
            action: "list runs of",
            name: pipeline.to_owned(),
            message: status::api_message(&e),
        })?;
    Ok(list.items)
}

/// What a pipeline pass remembers between polls: the last commit it evaluated per
/// (pipeline, branch), so a commit that did not launch (paths filter, broken workflow file) is
/// judged once, not at every poll.
pub type Evaluated = HashMap<(String, String), String>;

/// One pass over a repository's pipelines after a fetch: every matching branch head that was
/// not launched yet launches, once. Returns false when a pipeline could not be evaluated (the
/// API server refused, or the Workflow kind is not installed yet), so the caller retries with
/// back-off; a broken workflow file is recorded once, not retried.
#[instrument(skip_all, fields(repository = %repository.name))]
pub async fn pass(
    ctx: &Context,
    mapping: &Mapping,
    repository: &Repository,
    evaluated: &mut Evaluated,
) -> bool {
    let mut ok = true;
    for pipeline in mapping
        .pipelines
        .iter()
        .filter(|p| p.repository == repository.name)
    {
        if let Err(e) = pass_one(ctx, pipeline, repository, evaluated).await {
            warn!(pipeline = %pipeline.name, error = %e, "pipeline pass failed; retrying with back-off");
            ok = false;
        }
    }
    ok
}

async fn pass_one(
    ctx: &Context,
    pipeline: &Pipeline,
    repository: &Repository,
    evaluated: &mut Evaluated,
) -> Result<(), Error> {
    let state = load_state(&ctx.client, &ctx.namespace, &pipeline.name).await?;
    let namespace = pipeline
        .namespace
        .as_deref()
        .unwrap_or(&ctx.namespace)
        .to_owned();
    let (cache, url, branches, paths) = (
        ctx.cache_dir.clone(),
        repository.url.clone(),
        pipeline.branches.clone(),
        pipeline.paths.clone(),
    );
    let launched = state.launched.clone();
    // heads of matching branches that are new, with whether their changes match `paths`
    let candidates =
        tokio::task::spawn_blocking(move || -> Result<Vec<(String, Commit, bool)>, Error> {
            let mirror = Mirror::open(&cache, &url)?;
            let mut out = Vec::new();
            for (branch, commit) in mirror.heads()? {
                if !branch_matches(&branches, &branch) || launched.get(&branch) == Some(&commit.id)
                {
                    continue;
                }
                let changed = if paths.is_empty() {
                    Vec::new()
                } else {
                    git::changed_paths(
                        mirror.repository(),
                        &url,
                        launched.get(&branch).map(String::as_str),
                        &commit.id,
                    )?
                };
                out.push((branch, commit, paths_match(&paths, &changed)));
            }
            Ok(out)
        })
        .await
        .expect("git task does not panic")?;

    for (branch, commit, wanted) in candidates {
        let key = (pipeline.name.clone(), branch.clone());
        if evaluated.get(&key) == Some(&commit.id) {
            continue;
        }
        if !wanted {
            info!(pipeline = %pipeline.name, branch, commit = %commit.short(), "no changed path matches; not launching");
            evaluated.insert(key, commit.id.clone());
            continue;
        }
        // First sight of a branch: launch its head only if no run exists for it yet.
        if !state.launched.contains_key(&branch)
            && launched_before(&ctx.client, &namespace, &pipeline.name, &commit.id).await?
        {
            record_status(
                ctx,
                &pipeline.name,
                "Launched",
                &format!("{branch}@{} launched before", commit.short()),
                Some((&branch, &commit.id)),
            )
            .await;
            evaluated.insert(key, commit.id.clone());
            continue;
        }
        // errors are recorded by launch_commit; a broken workflow file waits for a new commit,
        // an API error is retried
        match launch_commit(ctx, pipeline, repository, &branch, &commit, false).await {
            Ok(_) | Err(Error::MissingFile { .. } | Error::InvalidFile { .. }) => {
                evaluated.insert(key, commit.id.clone());
            }
            Err(e) => return Err(e),
        }
    }
    if pipeline.concurrency == Concurrency::Queue {
        for branch in state.launched.keys() {
            resume_queued(&ctx.client, &namespace, &pipeline.name, branch).await?;
        }
    }
    Ok(())
}

// ---- run status ---------------------------------------------------------------------------

/// Watches the Workflows berth launched in the pipelines' namespaces, records each pipeline's
/// last runs, emits an Event when a run finishes, and resumes queued runs. Returns when `stop`
/// flips.
pub async fn watch_runs(
    ctx: Context,
    mapping: Mapping,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use kube::runtime::{WatchStreamExt as _, watcher};
    let namespaces: std::collections::BTreeSet<String> = mapping
        .pipelines
        .iter()
        .map(|p| p.namespace.clone().unwrap_or_else(|| ctx.namespace.clone()))
        .collect();
    let selector = format!(
        "{}={},{PIPELINE_LABEL}",
        status::MANAGED_BY,
        status::MANAGER_VALUE
    );
    let streams = namespaces.into_iter().map(|ns| {
        let config = watcher::Config::default().labels(&selector);
        watcher(workflows(&ctx.client, &ns), config)
            .default_backoff()
            .applied_objects()
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let mut runs: HashMap<String, Vec<Run>> = HashMap::new();
    loop {
        let next = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            next = events.next() => next,
        };
        let Some(event) = next else { return };
        let object = match event {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(error = %e, "workflow watch error (retrying)");
                continue;
            }
        };
        let Some(pipeline) = mapping.pipelines.iter().find(|p| {
            object
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(PIPELINE_LABEL))
                == Some(&p.name)
        }) else {
            continue;
        };
        let value = serde_json::to_value(&object).expect("objects serialize");
        observe_run(&ctx, pipeline, &value, &mut runs).await;
    }
}

async fn observe_run(
    ctx: &Context,
    pipeline: &Pipeline,
    value: &Value,
    cache: &mut HashMap<String, Vec<Run>>,
) {
    let known = match cache.get(&pipeline.name) {
        Some(r) => r.clone(),
        None => load_state(&ctx.client, &ctx.namespace, &pipeline.name)
            .await
            .map(|s| s.runs)
            .unwrap_or_default(),
    };
    let run = run_of(value);
    let created = value["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or_default();
    let (updated, finished_now) = record_run(&known, run.clone(), created);
    if updated == known {
        cache.insert(pipeline.name.clone(), updated);
        return;
    }
    let patch = json!({"data": {"runs": serde_json::to_string(&updated).expect("runs serialize")}});
    if let Err(e) = patch_state(&ctx.client, &ctx.namespace, &pipeline.name, patch).await {
        warn!(pipeline = %pipeline.name, error = %e, "failed to record run");
        return;
    }
    cache.insert(pipeline.name.clone(), updated);
    if finished_now {
        let kind = if run.phase == "Succeeded" {
            EventType::Normal
        } else {
            EventType::Warning
        };
        let message = format!(
            "{} {} ({}@{})",
            run.name,
            run.phase,
            run.branch,
            &run.revision[..run.revision.len().min(7)]
        );
        info!(pipeline = %pipeline.name, run = %run.name, phase = %run.phase, "run finished");
        status::event(
            &ctx.client,
            &ctx.namespace,
            &config_map_name(&pipeline.name),
            kind,
            &format!("Run{}", run.phase),
            &message,
        )
        .await;
        if pipeline.concurrency == Concurrency::Queue {
            let namespace = pipeline.namespace.as_deref().unwrap_or(&ctx.namespace);
            if let Err(e) = resume_queued(&ctx.client, namespace, &pipeline.name, &run.branch).await
            {
                warn!(pipeline = %pipeline.name, error = %e, "failed to resume queued run");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline() -> Pipeline {
        Pipeline {
            name: "web-ci".into(),
            repository: "web".into(),
            branches: vec!["main".into(), "release/*".into()],
            paths: vec![],
            source: WorkflowSource::File(".argo/workflow.yaml".into()),
            namespace: Some("argo".into()),
            service_account: Some("ci".into()),
            parameters: BTreeMap::from([("image".into(), "registry/web".into())]),
            concurrency: Concurrency::Allow,
            ttl_strategy: Some(json!({"secondsAfterCompletion": 3600})),
            pod_gc: None,
            artifact_gc: Some(json!({"strategy": "OnWorkflowDeletion"})),
        }
    }

    fn repository() -> Repository {
        Repository {
            name: "web".into(),
            url: "https://git.example.com/acme/web.git".into(),
            branch: "main".into(),
            interval: None,
            auth_secret: None,
            webhook_secret: None,
        }
    }

    fn commit() -> Commit {
        Commit {
            id: "0123456789abcdef0123456789abcdef01234567".into(),
            subject: "fix: the thing".into(),
        }
    }

    const FILE: &str = "apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: ci-
  labels: {team: web}
spec:
  entrypoint: main
  ttlStrategy: {secondsAfterSuccess: 60}
  arguments:
    parameters:
      - {name: image, value: from-file}
      - {name: registry, value: docker.io}
      - {name: revision, value: stale}
  templates:
    - name: main
      container: {image: alpine, args: ['{{workflow.parameters.revision}}']}
";

    #[test]
    fn workflow_carries_name_labels_annotations_and_parameters() {
        let (p, r, c) = (pipeline(), repository(), commit());
        let launch = Launch {
            pipeline: &p,
            repository: &r,
            branch: "release/1.2",
            commit: &c,
            namespace: "argo",
            name: workflow_name(&p.name, &c, None),
        };
        let file =
            parse_workflow(".argo/workflow.yaml", "0123456", FILE.as_bytes()).expect("valid");
        let w = workflow(&launch, Some(&file));
        let meta = &w["metadata"];
        assert_eq!(meta["name"], "web-ci-0123456");
        assert!(meta.get("generateName").is_none());
        assert_eq!(meta["namespace"], "argo");
        assert_eq!(meta["labels"]["team"], "web");
        assert_eq!(meta["labels"][PIPELINE_LABEL], "web-ci");
        assert_eq!(meta["labels"][REPOSITORY_LABEL], "web");
        assert_eq!(meta["labels"]["berth.dev/revision"], c.id);
        assert_eq!(meta["labels"][BRANCH_LABEL], label_value("release/1.2"));
        assert!(label_value("release/1.2").starts_with("release-1.2-"));
        assert_eq!(meta["annotations"][BRANCH_ANNOTATION], "release/1.2");
        assert_eq!(meta["annotations"][SUBJECT_ANNOTATION], "fix: the thing");
        let params: BTreeMap<String, String> = w["spec"]["arguments"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().expect("name").into(),
                    p["value"].as_str().expect("value").into(),
                )
            })
            .collect();
        assert_eq!(params["repo"], "https://git.example.com/acme/web.git");
        assert_eq!(params["revision"], c.id);
        assert_eq!(params["short-sha"], "0123456");
        assert_eq!(params["branch"], "release/1.2");
        assert_eq!(
            params["image"], "registry/web",
            "the mapping overrides the file"
        );
        assert_eq!(
            params["registry"], "docker.io",
            "the file's own values stay"
        );
        assert_eq!(w["spec"]["serviceAccountName"], "ci");
        assert_eq!(
            w["spec"]["ttlStrategy"],
            json!({"secondsAfterSuccess": 60}),
            "the file's own wins"
        );
        assert_eq!(
            w["spec"]["artifactGC"],
            json!({"strategy": "OnWorkflowDeletion"})
        );
        assert_eq!(
            w["spec"]["templates"][0]["container"]["args"][0],
            "{{workflow.parameters.revision}}"
        );
    }

    #[test]
    fn template_pipelines_reference_the_template() {
        let mut p = pipeline();
        p.source = WorkflowSource::Template("build".into());
        let (r, c) = (repository(), commit());
        let launch = Launch {
            pipeline: &p,
            repository: &r,
            branch: "main",
            commit: &c,
            namespace: "argo",
            name: "x".into(),
        };
        let w = workflow(&launch, None);
        assert_eq!(w["spec"]["workflowTemplateRef"]["name"], "build");
        assert_eq!(
            w["spec"]["arguments"]["parameters"]
                .as_array()
                .map(Vec::len),
            Some(5)
        );
    }

    #[test]
    fn non_workflow_files_are_rejected_with_file_and_commit() {
        let err = parse_workflow("ci.yaml", "abc1234", b"apiVersion: v1\nkind: ConfigMap\n")
            .expect_err("not a workflow")
            .to_string();
        assert_eq!(
            err,
            "ci.yaml at commit abc1234: expected an argoproj.io/v1alpha1 Workflow, found v1 ConfigMap"
        );
        let err = parse_workflow("ci.yaml", "abc1234", b"kind: [")
            .expect_err("yaml")
            .to_string();
        assert!(
            err.starts_with("ci.yaml at commit abc1234: line 1"),
            "{err}"
        );
    }

    #[test]
    fn names_are_dns_labels_even_when_long() {
        let c = commit();
        assert_eq!(workflow_name("web-ci", &c, None), "web-ci-0123456");
        assert_eq!(
            workflow_name("web-ci", &c, Some("a1b2c")),
            "web-ci-0123456-a1b2c"
        );
        let long = "p".repeat(52);
        let n = workflow_name(&long, &c, Some("a1b2c"));
        assert!(n.len() <= 63, "{n}");
        assert_ne!(n, workflow_name(&long, &c, Some("zzzzz")));
        assert_eq!(label_value("main"), "main");
        let l = label_value("feature/Ünïcode branch");
        assert!(
            l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{l}"
        );
    }

    #[test]
    fn branches_and_paths_match_globs() {
        let branches = vec!["main".to_owned(), "release/*".to_owned()];
        assert!(branch_matches(&branches, "main"));
        assert!(branch_matches(&branches, "release/1.0"));
        assert!(!branch_matches(&branches, "feature/x"));
        let paths = vec!["src/**".to_owned(), "Dockerfile".to_owned()];
        assert!(paths_match(&paths, &["src/main.rs".to_owned()]));
        assert!(paths_match(
            &paths,
            &["docs/a.md".to_owned(), "Dockerfile".to_owned()]
        ));
        assert!(!paths_match(&paths, &["docs/a.md".to_owned()]));
        assert!(!paths_match(&paths, &["sub/Dockerfile".to_owned()]));
        assert!(paths_match(&[], &[]));
    }

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
}
