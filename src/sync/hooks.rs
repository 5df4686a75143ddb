//! Hooks: objects that run in a phase of a pass (Argo CD's PreSync, Sync, PostSync, SyncFail)
//! once per new revision, instead of being synced.

use tracing::{info, warn};

use crate::apply::{self, ChangeSet, HookPhase};
use crate::cluster::Resources;
use crate::config::Sync;
use crate::context::Context;
use crate::diff::{self, Action, Owner};
use crate::render::Manifest;

use super::wait;

/// The hooks of a pass and what running them needs.
pub(crate) struct Hooks<'a> {
    pub ctx: &'a Context,
    pub sync: &'a Sync,
    pub client: kube::Client,
    /// `<repo-url>#<path>` and the commit, for the labels and annotations hooks carry.
    pub source: String,
    pub commit: String,
    /// Empty when this pass runs none (not a new revision, or not applying).
    pub hooks: Vec<Manifest>,
}

impl Hooks<'_> {
    fn of(&self, phase: HookPhase) -> impl Iterator<Item = &Manifest> {
        self.hooks.iter().filter(move |m| {
            matches!(apply::hook(&m.object), Ok(apply::Hook::Runs(p)) if p.contains(&phase))
        })
    }

    pub(crate) fn any(&self, phase: HookPhase) -> bool {
        self.of(phase).next().is_some()
    }

    /// Runs the hooks of a phase one after the other, in file order: each is created (after
    /// deleting the one before, by default), then must become Healthy (a Job complete) within
    /// the sync's timeout. The first that fails stops the phase; the error names it and why.
    pub(crate) async fn run(&self, resources: &Resources, phase: HookPhase) -> Result<(), String> {
        for m in self.of(phase) {
            self.run_one(resources, phase, m).await?;
        }
        Ok(())
    }

    async fn run_one(
        &self,
        resources: &Resources,
        phase: HookPhase,
        m: &Manifest,
    ) -> Result<(), String> {
        let id = m.id();
        let policy = apply::delete_policy(&m.object);
        if policy.before_creation {
            apply::delete_hook(&self.client, resources, m.api_version(), &id)
                .await
                .map_err(|e| format!("{phase:?} hook {id}: {e}"))?;
        }
        self.ctx
            .announce(&self.sync.name, &format!("{phase:?} hook {id}: running"));
        let owner = Owner {
            sync: &self.sync.name,
            source: &self.source,
            commit: &self.commit,
            check_creates: false,
        };
        let entry = diff::Entry {
            id: id.clone(),
            manifest: diff::stamp(m.clone(), &owner),
            action: Action::Create,
            hash: String::new(),
            revision: self.commit.clone(),
            live: None,
            predicted: None,
        };
        let mut created = ChangeSet::default();
        let one = std::slice::from_ref(&entry);
        apply::apply(&self.client, resources, one, 1, &mut created).await;
        if let Some(e) = created.errors.pop() {
            return Err(format!("{phase:?} hook: {e}"));
        }
        let what = format!("{phase:?} hook");
        let timeout = self.sync.timeout;
        let result = wait::healthy(self.ctx, &self.client, resources, one, &what, timeout).await;
        info!(sync = %self.sync.name, hook = %id, ?phase, ok = result.is_ok(), "hook finished");
        let delete = if result.is_ok() {
            policy.on_success
        } else {
            policy.on_failure
        };
        if delete
            && let Err(e) = apply::delete_hook(&self.client, resources, m.api_version(), &id).await
        {
            warn!(error = %e, "failed to delete a finished hook");
        }
        result
    }

    /// Runs the SyncFail hooks after a failure; their own failure is only logged.
    pub(crate) async fn failed(&self, resources: &Resources) {
        if let Err(e) = self.run(resources, HookPhase::SyncFail).await {
            warn!(sync = %self.sync.name, error = %e, "a SyncFail hook failed");
        }
    }
}
