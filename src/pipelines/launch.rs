//! Launching: reading a pipeline's Workflow file at a commit, creating the Workflow under the
//! pipeline's concurrency policy, recording the outcome, and resuming queued runs.

use std::path::Path;

use kube::Client;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::Error;
use super::run::{is_finished, is_missing_api, workflow_api_message, workflows};
use super::state::{self, Outcome};
use super::workflow::{
    Group, Launch, Trigger, branch_matches, parse_workflow, workflow, workflow_name,
};
use crate::cluster::is_conflict;
use crate::config::{Concurrency, Pipeline, Repository, WorkflowSource};
use crate::context::Context;
use crate::events;
use crate::git::{self, Commit, Mirror};
use crate::telemetry::PipelineResult;
use crate::vocab::{QUEUED_ANNOTATION, REVISION, Reason, RecordKind};

/// The outcome of a launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Launched {
    Created {
        name: String,
        queued: bool,
    },
    /// A Workflow of that name exists: launched before, which counts as success.
    Existed {
        name: String,
    },
}

/// Runs of a pipeline's concurrency group that have not finished, oldest first.
async fn active_runs(
    client: &Client,
    namespace: &str,
    pipeline: &str,
    group: &Group,
) -> Result<Vec<Value>, Error> {
    let params = ListParams::default().labels(&group.selector(pipeline));
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

/// Creates the Workflow, applying the pipeline's concurrency policy to the earlier runs of its
/// branch, pull request or tag first.
///
/// # Errors
/// The API server rejects the list, patch or create.
pub(crate) async fn launch(
    client: &Client,
    launch: &Launch<'_>,
    object: Value,
) -> Result<Launched, Error> {
    let p = launch.pipeline;
    let api = workflows(client, launch.namespace);
    let mut object = object;
    let mut queued = false;
    if p.concurrency != Concurrency::Allow {
        let group = launch.trigger.group();
        let active: Vec<Value> = active_runs(client, launch.namespace, &p.name, &group)
            .await?
            .into_iter()
            .filter(|v| v["metadata"]["name"] != launch.name.as_str())
            .collect();
        match p.concurrency {
            Concurrency::CancelInProgress => {
                terminate(&api, &p.name, &active).await?;
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
        Err(e) if is_conflict(&e) => Ok(Launched::Existed {
            name: launch.name.clone(),
        }),
        Err(e) => Err(workflow_error(
            "create Workflow",
            format!("{}/{}", launch.namespace, launch.name),
            &e,
        )),
    }
}

/// Terminates runs, by Argo's own mechanism: the controller stops their pods.
async fn terminate(
    api: &kube::Api<DynamicObject>,
    pipeline: &str,
    runs: &[Value],
) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    for run in runs {
        let name = run["metadata"]["name"].as_str().unwrap_or_default();
        let patch = json!({"spec": {"shutdown": "Terminate"}});
        patch_run(api, name, "terminate", &patch).await?;
        info!(pipeline, run = name, "terminated earlier run");
        names.push(name.to_owned());
    }
    Ok(names)
}

/// Terminates every unfinished run of a group (a pull request that closed). Returns their
/// names.
///
/// # Errors
/// The API server refuses the list or a patch.
pub(super) async fn terminate_group(
    client: &Client,
    namespace: &str,
    pipeline: &str,
    group: &Group,
) -> Result<Vec<String>, Error> {
    let active = active_runs(client, namespace, pipeline, group).await?;
    terminate(&workflows(client, namespace), pipeline, &active).await
}

/// Resumes the oldest queued run of a group when nothing else of it is running.
pub(super) async fn resume_queued(
    client: &Client,
    namespace: &str,
    pipeline: &str,
    group: &Group,
) -> Result<(), Error> {
    let active = active_runs(client, namespace, pipeline, group).await?;
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
    patch_run(&workflows(client, namespace), name, "resume", &patch).await?;
    info!(pipeline, run = name, "resumed queued run");
    Ok(())
}

/// Merge-patches one run; `action` names the change in the error.
async fn patch_run(
    api: &kube::Api<DynamicObject>,
    name: &str,
    action: &'static str,
    patch: &Value,
) -> Result<(), Error> {
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(drop)
        .map_err(|e| workflow_error(action, name.to_owned(), &e))
}

/// The error of a Workflow API call: the API missing altogether is its own case.
fn workflow_error(action: &'static str, name: String, e: &kube::Error) -> Error {
    if is_missing_api(e) {
        return Error::NoWorkflowApi {
            message: workflow_api_message(e),
        };
    }
    Error::Api {
        action,
        name,
        message: workflow_api_message(e),
    }
}

/// Reads the workflow file at a commit (for file-based pipelines).
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

/// Triggers a pipeline by hand (`berth trigger`, the dashboard's button): fetches `branch`
/// (default: [`super::default_branch`]), takes `revision` or the branch's head, and launches
/// it; when that commit's run exists already, a new one with a suffixed name. Returns the
/// branch and what was launched.
///
/// # Errors
/// Fetch, an unknown revision, the workflow file, or the API server.
pub(crate) async fn trigger(
    ctx: &Context,
    pipeline: &Pipeline,
    repository: &Repository,
    branch: Option<&str>,
    revision: Option<&str>,
) -> Result<(String, Launched), Error> {
    let branch = branch.map_or_else(
        || super::default_branch(pipeline, repository),
        str::to_owned,
    );
    crate::source::refresh(ctx, repository, vec![branch.clone()]).await?;
    let commit = crate::source::resolve(&ctx.cache_dir, repository, &branch, revision).await?;
    let trigger = Trigger::Branch(branch.clone());
    let launched = launch_commit(
        ctx,
        pipeline,
        repository,
        &trigger,
        (&commit, &commit),
        true,
    )
    .await?;
    Ok((branch, launched))
}

/// Launches one commit of a pipeline now and records it: the deterministic name, or with
/// `manual` a suffixed one when that name is taken. The Workflow file is read at `file_at`
/// (the commit itself, or a pull request's target branch). Errors are recorded in the
/// pipeline's status and an Event.
///
/// # Errors
/// The workflow file is missing or invalid, or the API server refuses.
pub(crate) async fn launch_commit(
    ctx: &Context,
    pipeline: &Pipeline,
    repository: &Repository,
    trigger: &Trigger,
    (commit, file_at): (&Commit, &Commit),
    manual: bool,
) -> Result<Launched, Error> {
    let result = async {
        let (p, c) = (pipeline.clone(), file_at.clone());
        let file = git::with_mirror(&ctx.cache_dir, repository.url.as_str(), move |mirror| {
            workflow_file(mirror, &p, &c)
        })
        .await?;
        let namespace = pipeline.namespace.as_deref().unwrap_or(&ctx.namespace);
        let mut launch = Launch {
            pipeline,
            repository,
            trigger,
            commit,
            namespace,
            name: workflow_name(&pipeline.name, trigger, commit, None),
            at: jiff::Timestamp::now().to_string(),
        };
        let (client, _) = super::client_for(ctx, pipeline)?;
        let outcome = self::launch(&client, &launch, workflow(&launch, file.as_ref())).await?;
        match outcome {
            Launched::Existed { .. } if manual => {
                let suffix = format!("{:05x}", rand::random::<u32>() & 0xfffff);
                launch.name = workflow_name(&pipeline.name, trigger, commit, Some(&suffix));
                self::launch(&client, &launch, workflow(&launch, file.as_ref())).await
            }
            other => Ok(other),
        }
    }
    .await;
    record_launch(ctx, pipeline, trigger, commit, &result).await;
    result
}

/// Records a launch's outcome: the metric, the pipeline's status and launched commit, the log
/// and an Event.
async fn record_launch(
    ctx: &Context,
    pipeline: &Pipeline,
    trigger: &Trigger,
    commit: &Commit,
    result: &Result<Launched, Error>,
) {
    let at = trigger.describe();
    let outcome = match result {
        Ok(Launched::Created { .. }) => Some("launched"),
        Ok(Launched::Existed { .. }) => None,
        Err(_) => Some("failed"),
    };
    if let Some(outcome) = outcome {
        ctx.metrics
            .pipeline_launches
            .get_or_create(&PipelineResult {
                pipeline: pipeline.name.clone(),
                result: outcome.to_owned(),
            })
            .inc();
    }
    let record = (RecordKind::Pipeline, pipeline.name.as_str());
    match result {
        Ok(Launched::Created { name, queued }) => {
            let namespace = pipeline.namespace.as_deref().unwrap_or(&ctx.namespace);
            let message = format!(
                "launched {namespace}/{name} for {at}@{}{}",
                commit.short(),
                if *queued { " (queued)" } else { "" }
            );
            info!(pipeline = %pipeline.name, run = %name, at, commit = %commit.short(), "launched");
            state::record_status(
                ctx,
                &pipeline.name,
                Outcome::Launched,
                &message,
                Some((trigger, &commit.id)),
            )
            .await;
            events::publish(
                &ctx.client,
                &ctx.namespace,
                record,
                Reason::Launched,
                &message,
            )
            .await;
        }
        Ok(Launched::Existed { name }) => {
            state::record_status(
                ctx,
                &pipeline.name,
                Outcome::Launched,
                &format!("{name} exists"),
                Some((trigger, &commit.id)),
            )
            .await;
        }
        Err(e) => {
            let message = format!("{at}@{}: {e}", commit.short());
            warn!(pipeline = %pipeline.name, error = %message, "launch failed");
            state::record_status(ctx, &pipeline.name, Outcome::Failed, &message, None).await;
            events::publish(
                &ctx.client,
                &ctx.namespace,
                record,
                Reason::LaunchFailed,
                &message,
            )
            .await;
        }
    }
}

/// Checks a file-based pipeline offline: the workflow file parses as a Workflow at the head
/// of every matching branch in the mirror. Returns (branch, short sha, problem) per head.
///
/// # Errors
/// The mirror cannot be read.
pub(crate) async fn check(
    cache_dir: &Path,
    pipeline: &Pipeline,
    repository: &Repository,
) -> Result<Vec<(String, String, Option<String>)>, Error> {
    let p = pipeline.clone();
    git::with_mirror(cache_dir, repository.url.as_str(), move |mirror| {
        Ok(mirror
            .heads()?
            .into_iter()
            .filter(|(b, _)| branch_matches(&p.branches, b))
            .map(|(b, c)| {
                let problem = workflow_file(mirror, &p, &c).err().map(|e| e.to_string());
                (b, c.short().to_owned(), problem)
            })
            .collect())
    })
    .await
}

/// Whether any Workflow of the pipeline exists for this commit in this group (under any name).
pub(super) async fn launched_before(
    client: &Client,
    namespace: &str,
    pipeline: &str,
    commit: &str,
    group: &Group,
) -> Result<bool, Error> {
    let params = ListParams::default()
        .labels(&format!("{},{REVISION}={commit}", group.selector(pipeline)))
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
        .map_err(|e| workflow_error("list runs of", pipeline.to_owned(), &e))?;
    Ok(list.items)
}
