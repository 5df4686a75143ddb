//! A sync: one pass of it at a commit, and what the pass comes to. The folder holds one concept
//! per file:
//! - `pass.rs`: the pass as named steps;
//! - `admission.rs`: which objects a pass may try at all (pure);
//! - `stage.rs`: the stages (definitions, objects, kinds that waited), what goes beside the
//!   definitions, and the waves in each;
//! - `hooks.rs`: Argo CD's hook phases; `wait.rs`: waiting for health, CRDs and kinds;
//! - `ownership.rs`: the rules between syncs (one owner per object, hand-over, dependencies);
//! - `outcome.rs`: the pure `judge` of a pass; `record.rs`: carrying the verdict out.

mod admission;
pub(crate) mod commit;
mod hooks;
mod outcome;
mod ownership;
mod pass;
mod record;
mod stage;
mod wait;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::{Duration, Instant};

use tracing::instrument;

use crate::apply::{self, ChangeSet};
use crate::config::{Mapping, Repository, Sync};
use crate::context::{self, Context};
use crate::diff::{self, Plan};
use crate::git::Commit;
use crate::object::ObjectId;
use crate::status::{self, Phase};
use crate::{cluster, source, store};

use outcome::Passed;

/// Whether a pass writes to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Apply, prune and record status.
    Apply,
    /// Plan only (for `sync --dry-run` and `diff`): nothing is written.
    Plan,
    /// Plan and record whether live state still matches git (`Synced` or `OutOfSync`),
    /// without applying: the periodic check of a sync without `selfHeal`.
    Check,
}

/// What a pass refuses to do, before writing anything.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error(
        "the render produced no objects while the sync manages {managed}; nothing was pruned \
         (set allowEmpty: true to let the sync become empty)"
    )]
    Empty { managed: usize },
    #[error("{}", .0.join("; "))]
    Owned(Vec<String>),
    #[error("{}", .0.join("; "))]
    Adoption(Vec<String>),
    #[error("not applied: waiting for {0}")]
    Dependency(String),
    #[error("{0}")]
    Hook(String),
}

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Source(#[from] source::Error),
    #[error(transparent)]
    Identity(#[from] context::Error),
    #[error(transparent)]
    Cluster(#[from] cluster::Error),
    #[error(transparent)]
    Diff(#[from] diff::Error),
    #[error(transparent)]
    Apply(#[from] apply::Error),
    #[error(transparent)]
    Status(#[from] store::Error),
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// The result of one pass.
#[derive(Debug)]
pub(crate) struct Report {
    pub sync: String,
    pub revision: String,
    pub plan: Plan,
    pub changes: ChangeSet,
    pub phase: Phase,
    pub health: crate::status::Health,
    pub message: String,
    /// Why the sync is not Healthy, when known.
    pub unhealthy: Option<String>,
    pub duration: Duration,
    /// Set when the status ConfigMap could not be written.
    pub status_error: Option<String>,
    /// What the sync manages after the pass, when the pass recorded it (not for a plan).
    pub inventory: Option<BTreeMap<ObjectId, status::Record>>,
}

impl Report {
    /// A failed pass, a status that could not be written, or a `wait` that ended Degraded.
    /// What the pass came to, for the commit's status.
    pub(crate) fn outcome(&self) -> commit::Outcome {
        commit::Outcome {
            phase: self.phase,
            health: self.health,
            failed: self.failed(),
        }
    }

    /// What went wrong, naming the object: the failure, else why the sync is not Healthy.
    pub(crate) fn problem(&self) -> &str {
        match &self.unhealthy {
            Some(why) if self.phase != Phase::Failed => why,
            _ => &self.message,
        }
    }

    /// What the pass came to, for the notifications: `title` is the commit's subject, and
    /// `applied` says the pass applied a new revision.
    pub(crate) fn seen(&self, title: &str, applied: bool) -> crate::notify::events::SyncSeen {
        use crate::notify::events::Condition;
        let failed = self.failed();
        let condition = if failed {
            Condition::Failed
        } else if self.health == crate::status::Health::Degraded {
            Condition::Degraded
        } else if self.phase == Phase::OutOfSync {
            Condition::OutOfSync
        } else {
            Condition::Fine
        };
        let ids = |ids: &[ObjectId]| ids.iter().map(ToString::to_string).collect();
        crate::notify::events::SyncSeen {
            sync: self.sync.clone(),
            revision: self.revision.clone(),
            title: title.to_owned(),
            condition,
            healthy: self.phase == Phase::Synced && self.health == crate::status::Health::Healthy,
            applied: applied && !failed,
            message: if condition == Condition::Fine {
                self.message.clone()
            } else {
                self.problem().to_owned()
            },
            pruned: ids(&self.changes.pruned),
            adopted: ids(&self.changes.adopted),
        }
    }

    pub(crate) fn failed(&self) -> bool {
        self.phase == Phase::Failed
            || self.status_error.is_some()
            || self.changes.waited.as_ref().is_some_and(Result::is_err)
    }
}

/// What one pass is for: a sync of the mapping at a commit, in a mode.
#[derive(Clone, Copy)]
pub(crate) struct Job<'a> {
    pub ctx: &'a Context,
    pub mapping: &'a Mapping,
    pub repo: &'a Repository,
    pub sync: &'a Sync,
    pub commit: &'a Commit,
    pub mode: Mode,
}

/// Runs one pass of a sync at `commit`: render, plan, and in [`Mode::Apply`] apply, prune and
/// record status and Events. Failures are reported in the returned [`Report`] (and status),
/// never by skipping the status write.
#[instrument(skip_all, fields(sync = %sync.name, commit = %commit.short()))]
pub(crate) async fn run_once(
    ctx: &Context,
    mapping: &Mapping,
    repo: &Repository,
    sync: &Sync,
    commit: &Commit,
    mode: Mode,
) -> Report {
    let started = Instant::now();
    let mut old = match status::load(&ctx.store(), &sync.name).await {
        Ok(old) => old,
        Err(e) => {
            let passed = Passed {
                commit: Some(commit.clone()),
                before: None,
                result: Err(e.to_string()),
            };
            return record::record(ctx, sync, mode, None, passed, started).await;
        }
    };
    let before = old.as_ref().map(|o| (o.phase, o.health));
    let job = Job {
        ctx,
        mapping,
        repo,
        sync,
        commit,
        mode,
    };
    let result = pass::pass(job, &mut old).await.map_err(|e| e.to_string());
    let passed = Passed {
        commit: Some(commit.clone()),
        before,
        result,
    };
    record::record(ctx, sync, mode, old, passed, started).await
}

/// Records a failure that happened before a pass could start (a failed fetch, say): status
/// Failed, the last synced revision kept.
pub(crate) async fn record_failure(
    ctx: &Context,
    sync: &Sync,
    error: &(dyn Display + std::marker::Sync),
    mode: Mode,
) -> Report {
    let started = Instant::now();
    let old = status::load(&ctx.store(), &sync.name).await.ok().flatten();
    let passed = Passed {
        commit: None,
        before: old.as_ref().map(|o| (o.phase, o.health)),
        result: Err(error.to_string()),
    };
    record::record(ctx, sync, mode, old, passed, started).await
}
