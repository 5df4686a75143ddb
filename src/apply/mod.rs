//! The only code that writes synced objects: server-side apply of a plan's creates and updates,
//! and pruning of what left git.

mod hooks;
mod order;
mod policy;
mod prune;
mod runs;
mod ssa;

pub(crate) use hooks::{
    DeletePolicy, Hook, Phase as HookPhase, delete_policy, hook, weight as hook_weight,
};
pub(crate) use order::{key as order_key, prune_key, wave};
pub(crate) use policy::{hold, merge, waits_for_kind};
pub(crate) use prune::{Decision, decide, delete_hook, prune};
pub(crate) use runs::{create_run, delete_runs, hook_key};
pub(crate) use ssa::{apply, wait_established};

use crate::object::ObjectId;
use crate::status::Record;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{origin}: failed to apply {id}: {message}")]
    Apply {
        origin: String,
        id: String,
        message: String,
    },
    #[error("failed to prune {id}: {message}")]
    Prune { id: String, message: String },
    /// A hook that failed, or that could not run.
    #[error("{0}")]
    Hook(String),
    #[error("CustomResourceDefinition {name} did not become Established: {reason}")]
    NotEstablished { name: String, reason: String },
    /// An object left out of the pass: unserved, unnamed, refused by a dry-run, or
    /// depending on an object that failed.
    #[error("{origin}: {id} was not applied: {reason}")]
    NotApplied {
        origin: String,
        id: String,
        reason: String,
    },
}

/// What a sync pass did to the cluster.
#[derive(Debug, Default)]
pub(crate) struct ChangeSet {
    pub created: Vec<ObjectId>,
    pub configured: Vec<ObjectId>,
    /// Live objects berth did not manage, taken over.
    pub adopted: Vec<ObjectId>,
    pub unchanged: usize,
    pub pruned: Vec<ObjectId>,
    /// Orphans kept on purpose, with the reason.
    pub kept: Vec<(ObjectId, String)>,
    /// Records of everything applied or checked, for the inventory.
    pub records: Vec<(ObjectId, Record)>,
    pub errors: Vec<Error>,
    /// Objects that were not applied (their reasons are in `errors`).
    pub failed: Vec<ObjectId>,
    /// With `wait`: whether every object became Healthy in time (else which did not, and why).
    pub waited: Option<Result<(), String>>,
}

impl ChangeSet {
    /// Takes in what another part of the same pass changed.
    pub(crate) fn absorb(&mut self, other: Self) {
        // every field named, so a field added later cannot be left out
        let Self {
            created,
            configured,
            adopted,
            unchanged,
            pruned,
            kept,
            records,
            errors,
            failed,
            waited,
        } = other;
        self.created.extend(created);
        self.configured.extend(configured);
        self.adopted.extend(adopted);
        self.unchanged += unchanged;
        self.pruned.extend(pruned);
        self.kept.extend(kept);
        self.records.extend(records);
        self.errors.extend(errors);
        self.failed.extend(failed);
        if self.waited.is_none() {
            self.waited = waited;
        }
    }

    /// True when the pass wrote anything.
    pub(crate) fn changed(&self) -> bool {
        !self.created.is_empty()
            || !self.configured.is_empty()
            || !self.adopted.is_empty()
            || !self.pruned.is_empty()
    }

    /// What the pass did to each object it touched, by object id (`created`, `configured`,
    /// `adopted`, `pruned`, `failed`); the others were unchanged.
    pub(crate) fn actions(&self) -> std::collections::HashMap<String, &'static str> {
        [
            (&self.created, "created"),
            (&self.configured, "configured"),
            (&self.adopted, "adopted"),
            (&self.pruned, "pruned"),
            (&self.failed, "failed"),
        ]
        .into_iter()
        .flat_map(|(ids, what)| ids.iter().map(move |id| (id.to_string(), what)))
        .collect()
    }

    /// One line for logs, events and status: `2 created, 1 configured, 5 unchanged, 1 pruned`.
    pub(crate) fn summary(&self) -> String {
        let mut parts = vec![
            format!("{} created", self.created.len()),
            format!("{} configured", self.configured.len()),
            format!("{} unchanged", self.unchanged),
            format!("{} pruned", self.pruned.len()),
        ];
        if !self.adopted.is_empty() {
            parts.push(format!("{} adopted", self.adopted.len()));
        }
        if !self.kept.is_empty() {
            parts.push(format!("{} kept", self.kept.len()));
        }
        if !self.errors.is_empty() {
            parts.push(format!("{} failed", self.errors.len()));
        }
        parts.join(", ")
    }
}
