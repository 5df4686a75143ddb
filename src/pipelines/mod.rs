//! Pipelines: a new commit on a mapped branch of a source repository launches the Argo
//! Workflow defined in that repository, exactly once per commit. [`workflow`] builds the object
//! (pure); [`launch`] creates it; [`pass`] decides which heads launch; [`watch`] records how
//! runs end; [`state`] keeps the pipeline's record; [`run`] is the view of runs that cleanup
//! shares.

mod launch;
mod pulls;
mod report;
mod run;
mod state;
mod watch;
mod workflow;

use std::collections::{BTreeMap, HashMap};

use tracing::{info, instrument, warn};

pub(crate) use launch::{Launched, check, launch_commit, trigger};
use launch::{launched_before, resume_queued, terminate_group};
pub(crate) use pulls::PullRequests;
pub(crate) use run::{
    Run, RunInfo, is_finished, run_of, workflow_api_message, workflow_resource, workflows,
};
pub(crate) use state::{Outcome, State, list as list_states};
pub(crate) use watch::watch_runs;
use workflow::{Group, paths_match};
pub(crate) use workflow::{Trigger, branch_matches, default_branch};

use crate::config::{Concurrency, Mapping, Pipeline, Repository, WorkflowFrom};
use crate::context::Context;
use crate::git::{self, Commit};
use crate::provider::PullRequest;
use crate::store;
use crate::vocab::Reason;

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
    Source(#[from] crate::source::Error),
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
    newest_first(&mut items);
    items
        .into_iter()
        .take(count)
        .map(|o| run::run_of(&serde_json::to_value(&o).expect("objects serialize")))
        .collect()
}

/// Orders runs by launch, newest first.
fn newest_first(items: &mut [kube::api::DynamicObject]) {
    items.sort_by_cached_key(|o| std::cmp::Reverse((launched(o), o.metadata.name.clone())));
}

/// When a run was launched: berth's launch time (to the nanosecond), else its creation second.
fn launched(o: &kube::api::DynamicObject) -> Option<jiff::Timestamp> {
    o.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::vocab::LAUNCHED_ANNOTATION)?.parse().ok())
        .or_else(|| o.metadata.creation_timestamp.as_ref().map(|t| t.0))
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
/// (pipeline, branch, pull request or tag), so a commit that did not launch (paths filter,
/// broken workflow file) is judged once, not at every poll.
pub(crate) type Evaluated = HashMap<(String, String), String>;

/// One pass over a repository's pipelines after a fetch: every matching branch head, open pull
/// request head and new tag that was not launched yet launches, once; the runs of pull
/// requests that closed stop. Returns false when a pipeline could not be evaluated (the API
/// server refused, or the Workflow kind is not installed yet), so the caller retries with
/// back-off; a broken workflow file is recorded once, not retried.
#[instrument(skip_all, fields(repository = %repository.name))]
pub(crate) async fn pass(
    ctx: &Context,
    mapping: &Mapping,
    repository: &Repository,
    evaluated: &mut Evaluated,
    pulls: &PullRequests,
) -> bool {
    let mut ok = true;
    for pipeline in mapping
        .pipelines
        .iter()
        .filter(|p| p.repository == repository.name)
    {
        if let Err(e) = pass_one(ctx, pipeline, repository, evaluated, pulls).await {
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

/// A commit that may launch: what it builds, where its Workflow file is read, and whether its
/// changes match the pipeline's `paths`.
struct Candidate {
    trigger: Trigger,
    commit: Commit,
    file_at: Commit,
    wanted: bool,
}

/// What a pass found in the mirror for one pipeline.
#[derive(Default)]
struct Found {
    candidates: Vec<Candidate>,
    /// The matching tags at the pipeline's first look at tags: noted, not launched.
    first_tags: Option<BTreeMap<String, String>>,
}

async fn pass_one(
    ctx: &Context,
    pipeline: &Pipeline,
    repository: &Repository,
    evaluated: &mut Evaluated,
    pulls: &PullRequests,
) -> Result<(), Error> {
    let state = state::load(&ctx.store(), &pipeline.name).await?;
    let namespace = pipeline
        .namespace
        .as_deref()
        .unwrap_or(&ctx.namespace)
        .to_owned();
    let found = {
        let (p, s) = (pipeline.clone(), state.clone());
        let open: Vec<PullRequest> = pulls.wanted(pipeline).cloned().collect();
        let api = repository.provider.as_ref().map(|t| t.kind.api());
        git::with_mirror(&ctx.cache_dir, repository.url.as_str(), move |mirror| {
            find(mirror, &p, &s, &open, api)
        })
        .await?
    };
    if let Some(tags) = found.first_tags {
        info!(pipeline = %pipeline.name, tags = tags.len(), "first look at tags: the existing ones are noted, not launched");
        state::record(ctx, &pipeline.name, None, |s| s.tags = Some(tags)).await;
    }
    for c in found.candidates {
        let key = (pipeline.name.clone(), c.trigger.describe());
        if evaluated.get(&key) == Some(&c.commit.id) {
            continue;
        }
        if !c.wanted {
            skipped(ctx, pipeline, &key.1, &c.commit, &state).await;
            evaluated.insert(key, c.commit.id.clone());
            continue;
        }
        // First sight of a branch, pull request or tag: launch only if no run exists for it.
        if state.last(&c.trigger).is_none()
            && launched_before(
                &client_for(ctx, pipeline)?.0,
                &namespace,
                &pipeline.name,
                &c.commit.id,
                &c.trigger.group(),
            )
            .await?
        {
            state::record_status(
                ctx,
                &pipeline.name,
                Outcome::Launched,
                &format!("{}@{} launched before", key.1, c.commit.short()),
                Some((&c.trigger, &c.commit.id)),
            )
            .await;
            evaluated.insert(key, c.commit.id.clone());
            continue;
        }
        // errors are recorded by launch_commit; a broken workflow file waits for a new commit,
        // an API error is retried
        let commits = (&c.commit, &c.file_at);
        match launch_commit(ctx, pipeline, repository, &c.trigger, commits, false).await {
            Ok(_) | Err(Error::MissingFile { .. } | Error::InvalidFile { .. }) => {
                evaluated.insert(key, c.commit.id.clone());
            }
            Err(e) => return Err(e),
        }
    }
    close_pulls(ctx, pipeline, &namespace, &state, pulls).await?;
    if pipeline.concurrency == Concurrency::Queue {
        let groups = state
            .launched
            .keys()
            .map(|b| Group::Branch(b.clone()))
            .chain(state.pulls.keys().map(|n| Group::Pull(*n)));
        let client = client_for(ctx, pipeline)?.0;
        for group in groups {
            resume_queued(&client, &namespace, &pipeline.name, &group).await?;
        }
    }
    Ok(())
}

/// Records a commit the `paths` filter skipped, once: in the pipeline's record (status
/// `Skipped`, data key `skipped`) and as an Event, so that it is visible why nothing launched.
async fn skipped(ctx: &Context, pipeline: &Pipeline, at: &str, commit: &Commit, state: &State) {
    if state.skipped.get(at) == Some(&commit.id) {
        return;
    }
    let message = format!(
        "{at}@{} skipped: no changed file matches paths {}",
        commit.short(),
        pipeline.paths.join(", ")
    );
    info!(pipeline = %pipeline.name, %at, commit = %commit.short(), "no changed path matches; not launching");
    state::record(
        ctx,
        &pipeline.name,
        Some((Outcome::Skipped, &message)),
        |s| {
            s.skipped.insert(at.to_owned(), commit.id.clone());
        },
    )
    .await;
    let record = (crate::vocab::RecordKind::Pipeline, pipeline.name.as_str());
    crate::events::publish(
        &ctx.client,
        &ctx.namespace,
        record,
        Reason::Skipped,
        &message,
    )
    .await;
}

/// The commits of a pipeline that may launch, read from the mirror: new heads of its branches,
/// new tags it matches, and new heads of the open pull requests it builds.
fn find(
    mirror: &git::Mirror,
    pipeline: &Pipeline,
    state: &State,
    open: &[PullRequest],
    api: Option<&dyn crate::provider::Api>,
) -> Result<Found, Error> {
    let mut found = Found::default();
    let changed = |from: Option<&str>, to: &Commit| -> Result<bool, Error> {
        if pipeline.paths.is_empty() {
            return Ok(true);
        }
        let changed = git::changed_paths(mirror.repository(), &mirror.display_url(), from, &to.id)?;
        Ok(paths_match(&pipeline.paths, &changed))
    };
    let mut push = |trigger: Trigger, commit: Commit, file_at: Commit, wanted: bool| {
        found.candidates.push(Candidate {
            trigger,
            commit,
            file_at,
            wanted,
        });
    };
    for (branch, commit) in mirror.heads()? {
        let last = state.launched.get(&branch);
        if !branch_matches(&pipeline.branches, &branch) || last == Some(&commit.id) {
            continue;
        }
        let wanted = changed(last.map(String::as_str), &commit)?;
        push(Trigger::Branch(branch), commit.clone(), commit, wanted);
    }
    if !pipeline.tags.is_empty() {
        let tags: Vec<(String, Commit)> = mirror
            .tags()?
            .into_iter()
            .filter(|(t, _)| branch_matches(&pipeline.tags, t))
            .collect();
        match &state.tags {
            None => {
                found.first_tags = Some(tags.into_iter().map(|(t, c)| (t, c.id)).collect());
            }
            Some(seen) => {
                for (tag, commit) in tags {
                    if seen.get(&tag) != Some(&commit.id) {
                        push(Trigger::Tag(tag), commit.clone(), commit, true);
                    }
                }
            }
        }
    }
    let from = pipeline.pull_requests.as_ref().map(|p| p.workflow_from);
    for pr in open {
        let head = match api.and_then(|a| a.head_ref(pr.number)) {
            Some(r) => mirror.reference(&r),
            None => mirror.resolve(&pr.head_branch).ok(),
        };
        // not fetched (yet): the next pass sees it
        let Some(head) = head else { continue };
        if state.pulls.get(&pr.number) == Some(&head.id) {
            continue;
        }
        let base = mirror.resolve(&pr.base)?;
        let since = mirror.merge_base(&base.id, &head.id);
        let wanted = changed(since.as_deref(), &head)?;
        let file_at = match from {
            Some(WorkflowFrom::Head) | None => head.clone(),
            Some(WorkflowFrom::Base) => base,
        };
        let mut pr = pr.clone();
        pr.head_sha.clone_from(&head.id);
        push(Trigger::Pull(pr), head, file_at, wanted);
    }
    Ok(found)
}

/// Stops the runs of the pipeline's pull requests that closed, and forgets them.
async fn close_pulls(
    ctx: &Context,
    pipeline: &Pipeline,
    namespace: &str,
    state: &State,
    pulls: &PullRequests,
) -> Result<(), Error> {
    let closed: Vec<u64> = state
        .pulls
        .keys()
        .copied()
        .filter(|n| pulls.is_closed(*n))
        .collect();
    if closed.is_empty() {
        return Ok(());
    }
    let client = client_for(ctx, pipeline)?.0;
    let mut stopped = Vec::new();
    for n in &closed {
        let names = terminate_group(&client, namespace, &pipeline.name, &Group::Pull(*n)).await?;
        info!(pipeline = %pipeline.name, pull_request = n, runs = ?names, "pull request closed");
        stopped.extend(names);
    }
    let message = format!(
        "pull request{} {} closed{}",
        if closed.len() == 1 { "" } else { "s" },
        closed
            .iter()
            .map(|n| format!("#{n}"))
            .collect::<Vec<_>>()
            .join(", "),
        if stopped.is_empty() {
            String::new()
        } else {
            format!("; terminated {}", stopped.join(", "))
        }
    );
    state::record(
        ctx,
        &pipeline.name,
        Some((Outcome::Launched, &message)),
        |s| s.pulls.retain(|n, _| !closed.contains(n)),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_the_same_second_are_ordered_by_launch() {
        let run = |name: &str, launched: Option<&str>| {
            let mut o: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                "metadata": {"name": name, "creationTimestamp": "2026-12-02T10:00:00Z"}}))
            .expect("object");
            if let Some(at) = launched {
                o.metadata.annotations =
                    Some([(crate::vocab::LAUNCHED_ANNOTATION.to_owned(), at.to_owned())].into());
            }
            o
        };
        let mut items = vec![
            run("web-ci-88506d8", Some("2026-12-02T10:00:00.9Z")),
            run("web-ci-b1d3656", Some("2026-12-02T10:00:00.1Z")),
            run("older", None),
        ];
        newest_first(&mut items);
        let names: Vec<_> = items
            .iter()
            .map(|o| o.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["web-ci-88506d8", "web-ci-b1d3656", "older"]);
    }
}
