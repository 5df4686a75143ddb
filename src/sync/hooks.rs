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
    /// The hooks of a phase, by weight (Argo CD's sync wave or Helm's hook weight), then in
    /// file order.
    fn of(&self, phase: HookPhase) -> impl Iterator<Item = &Manifest> {
        let mut hooks: Vec<&Manifest> = self
            .hooks
            .iter()
            .filter(move |m| {
                matches!(apply::hook(&m.object), Ok(apply::Hook::Runs(p)) if p.contains(&phase))
            })
            .collect();
        hooks.sort_by_key(|m| apply::hook_weight(&m.object));
        hooks.into_iter()
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
        if super::admission::generated(m) {
            return self.run_generated(resources, phase, m, policy).await;
        }
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
        self.finish(resources, phase, &entry, policy).await
    }

    /// Waits for a hook's object to become Healthy, then deletes it as its policy says.
    async fn finish(
        &self,
        resources: &Resources,
        phase: HookPhase,
        entry: &diff::Entry,
        policy: apply::DeletePolicy,
    ) -> Result<(), String> {
        let one = std::slice::from_ref(entry);
        let what = format!("{phase:?} hook");
        let timeout = self.sync.timeout;
        let result = wait::healthy(self.ctx, &self.client, resources, one, &what, timeout).await;
        let id = &entry.id;
        info!(sync = %self.sync.name, hook = %id, ?phase, ok = result.is_ok(), "hook finished");
        let delete = if result.is_ok() {
            policy.on_success
        } else {
            policy.on_failure
        };
        let api_version = entry.manifest.api_version();
        if delete && let Err(e) = apply::delete_hook(&self.client, resources, api_version, id).await
        {
            warn!(error = %e, "failed to delete a finished hook");
        }
        result
    }

    /// One run of a hook written with `generateName`: its earlier runs deleted first
    /// (`BeforeHookCreation`, found by label), a new object the API server names, waited for
    /// like any hook, then deleted as its policy says.
    async fn run_generated(
        &self,
        resources: &Resources,
        phase: HookPhase,
        m: &Manifest,
        policy: apply::DeletePolicy,
    ) -> Result<(), String> {
        let id = m.id();
        let key = apply::hook_key(&id.name);
        let what = format!("{phase:?} hook {} generateName={}", id.kind, id.name);
        let labels = (self.sync.name.as_str(), key.as_str());
        if policy.before_creation {
            let earlier = (m.api_version(), &id);
            let deleted = apply::delete_runs(&self.client, resources, earlier, labels)
                .await
                .map_err(|e| format!("{what}: {e}"))?;
            if deleted > 0 {
                info!(sync = %self.sync.name, hook = %key, deleted, "deleted the earlier runs of a hook");
            }
        }
        let owner = Owner {
            sync: &self.sync.name,
            source: &self.source,
            commit: &self.commit,
            check_creates: false,
        };
        let stamped = diff::stamp(m.clone(), &owner);
        let run = (self.sync.name.as_str(), key.as_str(), self.commit.as_str());
        let name = apply::create_run(&self.client, resources, (&id, stamped.object.clone()), run)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        let mut ran = id.clone();
        ran.name.clone_from(&name);
        self.ctx
            .announce(&self.sync.name, &format!("{phase:?} hook {ran}: running"));
        let mut manifest = stamped;
        manifest.object["metadata"]["name"] = serde_json::Value::from(name);
        let entry = diff::Entry {
            id: ran.clone(),
            manifest,
            action: Action::Create,
            hash: String::new(),
            revision: self.commit.clone(),
            live: None,
            predicted: None,
        };
        self.finish(resources, phase, &entry, policy).await
    }

    /// Runs the SyncFail hooks after a failure; their own failure is only logged.
    pub(crate) async fn failed(&self, resources: &Resources) {
        if let Err(e) = self.run(resources, HookPhase::SyncFail).await {
            warn!(sync = %self.sync.name, error = %e, "a SyncFail hook failed");
        }
    }
}
