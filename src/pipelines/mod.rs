//! Pipelines: a new commit on a mapped branch of a source repository launches the Argo
//! Workflow defined in that repository, exactly once per commit. [`workflow`] builds the object
//! (pure); [`launch`] creates it; [`pass`] decides which heads launch; [`watch`] records how
//! runs end; [`state`] keeps the pipeline's record; [`run`] is the view of runs that cleanup
//! shares.

mod launch;
mod run;
mod state;
mod watch;
mod workflow;

use std::collections::HashMap;

use tracing::{info, instrument, warn};

pub(crate) use launch::{Launched, check, launch_commit, resolve};
use launch::{launched_before, resume_queued};
pub(crate) use run::{
    Run, RunInfo, is_finished, run_of, workflow_api_message, workflow_resource, workflows,
};
pub(crate) use state::{Outcome, State, list as list_states};
pub(crate) use watch::watch_runs;
use workflow::paths_match;
pub(crate) use workflow::{branch_matches, default_branch};

use crate::config::{Concurrency, Mapping, Pipeline, Repository};
use crate::context::Context;
use crate::git::{self, Commit};
use crate::store;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
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
    #[error("{message}")]
    NoWorkflowApi { message: String },
    #[error(transparent)]
    Identity(#[from] crate::context::Error),
    #[error(transparent)]
    Git(#[from] git::Error),
    #[error(transparent)]
    Status(#[from] store::Error),
}

/// Up to `count` runs of a pipeline on the cluster, newest (by creation) first; none when the
/// Workflow kind is not installed.
pub(crate) async fn recent_runs(
    client: &kube::Client,
    namespace: &str,
    pipeline: &str,
    count: usize,
) -> Vec<Run> {
    let params = kube::api::ListParams::default()
        .labels(&format!("{}={pipeline}", crate::vocab::PIPELINE_LABEL));
    let Ok(list) = workflows(client, namespace).list(&params).await else {
        return Vec::new();
    };
    let mut items = list.items;
    items.sort_by(|a, b| {
        let key = |o: &kube::api::DynamicObject| o.metadata.creation_timestamp.clone();
        key(b)
            .cmp(&key(a))
            .then_with(|| b.metadata.name.cmp(&a.metadata.name))
    });
    items
        .into_iter()
        .take(count)
        .map(|o| run::run_of(&serde_json::to_value(&o).expect("objects serialize")))
        .collect()
}

/// The client a pipeline's Workflows are created, terminated, resumed and cleaned up with: its
/// `serviceAccount` (or the default one) in its namespace, impersonated; else berth's own.
///
/// # Errors
/// The client cannot be set up.
pub(crate) fn client_for(
    ctx: &Context,
    pipeline: &Pipeline,
) -> Result<(kube::Client, Option<String>), crate::context::Error> {
    let namespace = pipeline.namespace.as_deref().unwrap_or(&ctx.namespace);
    ctx.client_as(
        &format!("pipeline {:?}", pipeline.name),
        Some(namespace),
        pipeline.service_account.as_deref(),
    )
}

/// What a pipeline pass remembers between polls: the last commit it evaluated per
/// (pipeline, branch), so a commit that did not launch (paths filter, broken workflow file) is
/// judged once, not at every poll.
pub(crate) type Evaluated = HashMap<(String, String), String>;

/// One pass over a repository's pipelines after a fetch: every matching branch head that was
/// not launched yet launches, once. Returns false when a pipeline could not be evaluated (the
/// API server refused, or the Workflow kind is not installed yet), so the caller retries with
/// back-off; a broken workflow file is recorded once, not retried.
#[instrument(skip_all, fields(repository = %repository.name))]
pub(crate) async fn pass(
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
            if let Error::NoWorkflowApi { .. } = e {
                // expected while a sync is still installing the CRDs
                info!(pipeline = %pipeline.name, reason = %e, "waiting for the Workflow API");
            } else {
                warn!(pipeline = %pipeline.name, error = %e, "pipeline pass failed; retrying with back-off");
            }
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
    let state = state::load(&ctx.store(), &pipeline.name).await?;
    let namespace = pipeline
        .namespace
        .as_deref()
        .unwrap_or(&ctx.namespace)
        .to_owned();
    let (branches, paths) = (pipeline.branches.clone(), pipeline.paths.clone());
    let launched = state.launched.clone();
    // heads of matching branches that are new, with whether their changes match `paths`
    let candidates = git::with_mirror(&ctx.cache_dir, repository.url.as_str(), move |mirror| {
        let mut out = Vec::new();
        for (branch, commit) in mirror.heads()? {
            if !branch_matches(&branches, &branch) || launched.get(&branch) == Some(&commit.id) {
                continue;
            }
            let changed = if paths.is_empty() {
                Vec::new()
            } else {
                git::changed_paths(
                    mirror.repository(),
                    &mirror.display_url(),
                    launched.get(&branch).map(String::as_str),
                    &commit.id,
                )?
            };
            out.push((branch, commit, paths_match(&paths, &changed)));
        }
        Ok::<Vec<(String, Commit, bool)>, Error>(out)
    })
    .await?;

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
            && launched_before(
                &client_for(ctx, pipeline)?.0,
                &namespace,
                &pipeline.name,
                &commit.id,
            )
            .await?
        {
            state::record_status(
                ctx,
                &pipeline.name,
                Outcome::Launched,
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
            resume_queued(
                &client_for(ctx, pipeline)?.0,
                &namespace,
                &pipeline.name,
                branch,
            )
            .await?;
        }
    }
    Ok(())
}
