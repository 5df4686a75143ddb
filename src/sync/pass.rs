//! One pass of a sync, as named steps: render the commit, connect as the sync's identity, admit
//! the objects, run PreSync hooks, apply the stages, run Sync hooks, prune, and wait for health
//! (then PostSync hooks). Each step is a method below; what the pass comes to is judged in
//! `outcome`.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use tracing::info;

use crate::apply::{self, ChangeSet, HookPhase};
use crate::cluster::Resources;
use crate::diff::{self, Action, Owner, Plan};
use crate::object::ObjectId;
use crate::render::{self, Manifest};
use crate::source;
use crate::status::{self, SyncStatus};

use super::admission::{self, Admission, Definition};
use super::hooks::Hooks;
use super::stage::{self, Stage, fail_alone};
use super::{Error, Job, Mode, Refusal, ownership, record, wait};

/// Runs one pass of a sync at its commit. `old` follows the stored record (reservations and
/// `Progressing` are written as the pass goes).
pub(crate) async fn pass(
    job: Job<'_>,
    old: &mut Option<SyncStatus>,
) -> Result<(Plan, ChangeSet), Error> {
    if job.mode == Mode::Apply {
        ownership::dependencies_ready(job.ctx, job.mapping, job.sync, job.commit).await?;
    }
    let rendered = render(job, old.as_ref()).await?;
    let mut pass = Pass::connect(job, old, &rendered.manifests).await?;
    pass.refuse_rendered(rendered.rejected);
    let Admission {
        objects,
        deferred,
        hooks,
        refused,
    } = admission::admit(
        rendered.manifests,
        &pass.resources,
        job.mapping,
        &job.ctx.namespace,
        job.sync,
    );
    pass.fail_each(refused);
    let hooks = pass.hooks(hooks);
    pass.pre_sync(&hooks).await?;
    // the objects move into the plan; what the later steps need of them is kept apart
    let declared: HashSet<ObjectId> = objects.iter().map(Manifest::id).collect();
    let (mut definitions, rest): (Vec<Manifest>, Vec<Manifest>) =
        objects.into_iter().partition(Stage::is_definition);
    let defined: Vec<Definition> = definitions.iter().map(Definition::of).collect();
    let (beside, rest) = stage::beside_definitions(rest, &definitions, &defined);
    definitions.extend(beside);
    let with_waiting = !deferred.is_empty();
    pass.stage(Stage::Definitions, definitions, &defined, with_waiting)
        .await?;
    pass.stage(Stage::Objects, rest, &defined, with_waiting)
        .await?;
    if with_waiting {
        let ready = pass.later_kinds(deferred).await?;
        pass.stage(Stage::WaitingKinds, ready, &defined, true)
            .await?;
    }
    // never prune after a failure: what is missing may be missing by mistake
    if !pass.sync_hooks(&hooks).await || !pass.prune(&declared).await? {
        return Ok((pass.plan, pass.changes));
    }
    pass.wait(&hooks).await;
    Ok((pass.plan, pass.changes))
}

/// Renders the sync's path at the commit; a render that yields nothing while the sync manages
/// objects (and may prune them) is refused before anything is read from the cluster.
async fn render(job: Job<'_>, old: Option<&SyncStatus>) -> Result<render::Rendered, Error> {
    let (ctx, sync, commit) = (job.ctx, job.sync, job.commit);
    let max = ctx.max_manifest_bytes;
    let inputs = source::inputs(ctx, sync).await?;
    let rendered =
        source::render(&ctx.cache_dir, max, (job.repo, sync, &inputs), &commit.id).await?;
    let text = format!(
        "rendered {} objects at {}",
        rendered.manifests.len(),
        commit.short()
    );
    ctx.progress(&sync.name, &text);
    let managed = old.map_or(0, |o| o.inventory.len());
    let empty = rendered.manifests.is_empty() && rendered.rejected.is_empty();
    if empty && managed > 0 && sync.prune && !sync.allow_empty {
        return Err(Refusal::Empty { managed }.into());
    }
    Ok(rendered)
}

/// A pass under way: what it works with and what it has done so far.
struct Pass<'a> {
    job: Job<'a>,
    /// The stored record, followed as the pass writes it.
    old: &'a mut Option<SyncStatus>,
    /// The inventory the pass started from.
    inventory: BTreeMap<ObjectId, status::Record>,
    /// The sync's identity: every cluster request of the pass goes as it.
    client: kube::Client,
    /// The API groups the pass uses, and discovery of them.
    groups: BTreeSet<String>,
    resources: Resources,
    source: String,
    plan: Plan,
    changes: ChangeSet,
    /// The objects this pass declares, claimed from syncs passing at the same time.
    claims: Vec<crate::context::Claim>,
}

impl<'a> Pass<'a> {
    /// Connects as the sync's ServiceAccount (when it has one) and discovers the API groups
    /// the objects and the inventory use.
    async fn connect(
        job: Job<'a>,
        old: &'a mut Option<SyncStatus>,
        manifests: &[Manifest],
    ) -> Result<Self, Error> {
        let sync = job.sync;
        let (client, _) = job.ctx.client_as(
            &format!("sync {:?}", sync.name),
            sync.namespace.as_deref(),
            sync.service_account.as_deref(),
        )?;
        let inventory = old
            .as_ref()
            .map(|o| o.inventory.clone())
            .unwrap_or_default();
        let mut groups = render::groups(manifests);
        groups.extend(inventory.keys().map(|id| id.group.clone()));
        groups.insert("apiextensions.k8s.io".to_owned());
        let resources = Resources::discover(&client, &groups).await?;
        Ok(Self {
            source: source::label(job.repo, sync),
            job,
            old,
            inventory,
            client,
            groups,
            resources,
            plan: Plan::default(),
            changes: ChangeSet::default(),
            claims: Vec::new(),
        })
    }

    fn owner(&self) -> Owner<'_> {
        Owner {
            sync: &self.job.sync.name,
            source: &self.source,
            commit: &self.job.commit.id,
            check_creates: self.job.mode != Mode::Apply,
        }
    }

    fn applying(&self) -> bool {
        self.job.mode == Mode::Apply
    }

    /// Objects the render could not make fail alone; the rest goes on.
    fn refuse_rendered(&mut self, rejected: Vec<render::Rejected>) {
        for r in rejected {
            self.changes.errors.push(apply::Error::NotApplied {
                origin: r.origin,
                id: r.what,
                reason: r.reason,
            });
        }
    }

    fn fail_each(&mut self, refused: Vec<(Manifest, String)>) {
        for (m, reason) in refused {
            fail_alone(&mut self.changes, &m, reason);
        }
    }

    /// The pass's hooks: they run only when it applies a new revision.
    fn hooks(&self, hooks: Vec<Manifest>) -> Hooks<'a> {
        let revision = &self.job.commit.id;
        let new_revision = self.old.as_ref().is_none_or(|o| &o.revision != revision);
        Hooks {
            ctx: self.job.ctx,
            sync: self.job.sync,
            client: self.client.clone(),
            source: self.source.clone(),
            commit: revision.clone(),
            hooks: if self.applying() && new_revision {
                hooks
            } else {
                Vec::new()
            },
        }
    }

    /// PreSync hooks; one that fails stops the pass before anything is applied.
    async fn pre_sync(&self, hooks: &Hooks<'_>) -> Result<(), Error> {
        if let Err(reason) = hooks.run(&self.resources, HookPhase::PreSync).await {
            hooks.failed(&self.resources).await;
            return Err(Refusal::Hook(reason).into());
        }
        Ok(())
    }

    /// Plans a stage's objects against live state, and in a pass that applies, applies them by
    /// wave (after reserving what it will own). New CRDs are waited for after the definitions.
    async fn stage(
        &mut self,
        stage: Stage,
        desired: Vec<Manifest>,
        definitions: &[Definition],
        with_waiting: bool,
    ) -> Result<(), Error> {
        let (desired, blocked) =
            admission::blocked_by_failures(desired, definitions, &self.changes.failed);
        self.fail_each(blocked);
        if desired.is_empty() {
            return Ok(());
        }
        let (ctx, name) = (self.job.ctx, &self.job.sync.name);
        let at = stage.progress(with_waiting);
        ctx.progress(name, &format!("{at}: planning {} objects", desired.len()));
        let mut entries = self.plan_stage(desired).await?;
        let refused = admission::refused_adoptions(&entries, self.job.sync);
        if !refused.is_empty() {
            return Err(Refusal::Adoption(refused).into());
        }
        if self.applying() {
            record::reserve(ctx, self.job.sync, self.job.commit, self.old, &entries).await?;
            let writes = entries
                .iter()
                .filter(|e| e.action != Action::Unchanged)
                .count();
            if writes > 0 {
                ctx.progress(name, &format!("{at}: applying {writes} changes"));
            }
            entries.sort_by_cached_key(|e| apply::order_key(&e.manifest.object));
            let (client, resources) = (&self.client, &self.resources);
            if stage == Stage::Definitions {
                let on = (client, resources);
                stage::apply_beside(ctx, name, on, &mut entries, &mut self.changes).await;
                let resources = std::mem::take(&mut self.resources);
                self.resources =
                    wait::definitions(client, &self.groups, &entries, &self.changes, resources)
                        .await?;
            } else {
                stage::apply_in_waves(ctx, name, client, resources, &entries, &mut self.changes)
                    .await;
            }
        }
        self.plan.entries.extend(entries);
        Ok(())
    }

    /// The plan of a stage's objects: live state read once, objects it may not read failing
    /// alone, ownership checked, each object dry-run, migration policies applied.
    async fn plan_stage(&mut self, desired: Vec<Manifest>) -> Result<Vec<diff::Entry>, Error> {
        let ctx = self.job.ctx;
        let targets: Vec<_> = desired
            .iter()
            .map(|m| (m.api_version().to_owned(), m.id()))
            .collect();
        let diff::Observed { live, refused } =
            diff::observe(&self.client, &self.resources, &targets, ctx.concurrency).await?;
        let (desired, unreadable): (Vec<Manifest>, Vec<Manifest>) = desired
            .into_iter()
            .partition(|m| !refused.contains_key(&m.id()));
        for m in unreadable {
            let message = refused.get(&m.id()).cloned().unwrap_or_default();
            fail_alone(&mut self.changes, &m, message);
        }
        let (mapping, sync) = (self.job.mapping, self.job.sync);
        let claim = ctx
            .claims
            .claim(&sync.name, desired.iter().map(Manifest::id))
            .map_err(Refusal::Owned)?;
        self.claims.push(claim);
        let conflicts =
            ownership::conflicts(ctx, mapping, sync, &self.resources, &desired, &live).await;
        let desired = self.owned(desired, conflicts)?;
        let owner = self.owner();
        let (client, resources, inventory) = (&self.client, &self.resources, &self.inventory);
        let n = ctx.concurrency;
        let planned = diff::plan(client, resources, desired, live, inventory, &owner, n).await;
        let mut entries = Vec::new();
        let mut failed = Vec::new();
        for result in planned {
            match result {
                Ok(entry) => entries.push(entry),
                Err((m, e)) => failed.push((m, e.to_string())),
            }
        }
        self.fail_each(failed);
        admission::hold_back(&mut entries);
        Ok(entries)
    }

    /// What a stage may plan once another sync's objects are set apart. A pass that applies
    /// or checks is refused whole; a plan (a preview, `diff`) fails those objects alone, so
    /// it shows every other problem too.
    fn owned(
        &mut self,
        desired: Vec<Manifest>,
        conflicts: Vec<(ObjectId, String)>,
    ) -> Result<Vec<Manifest>, Error> {
        if self.job.mode != Mode::Plan || conflicts.is_empty() {
            ownership::refuse(conflicts)?;
            return Ok(desired);
        }
        let refused: BTreeMap<ObjectId, String> = conflicts.into_iter().collect();
        let (blocked, desired): (Vec<Manifest>, Vec<Manifest>) = desired
            .into_iter()
            .partition(|m| refused.contains_key(&m.id()));
        for m in blocked {
            let why = refused[&m.id()].clone();
            fail_alone(&mut self.changes, &m, why);
        }
        Ok(desired)
    }

    /// The objects that waited for their kind, now served; the others fail alone.
    async fn later_kinds(&mut self, waiting: Vec<Manifest>) -> Result<Vec<Manifest>, Error> {
        let later = wait::later_kinds(
            self.job.ctx,
            &self.client,
            &self.resources,
            &self.groups,
            self.job.sync,
            (self.applying(), &self.changes, &self.plan.entries),
            waiting,
        )
        .await?;
        self.fail_each(later.still);
        match later.resources {
            Some(now) => {
                self.resources = now;
                Ok(later.ready)
            }
            None => Ok(Vec::new()),
        }
    }

    /// Sync hooks, once everything applied; after any failure, the SyncFail hooks instead.
    /// Returns whether the pass goes on.
    async fn sync_hooks(&mut self, hooks: &Hooks<'_>) -> bool {
        if self.changes.errors.is_empty()
            && let Err(reason) = hooks.run(&self.resources, HookPhase::Sync).await
        {
            self.changes.errors.push(apply::Error::Hook(reason));
        }
        if self.changes.errors.is_empty() {
            return true;
        }
        hooks.failed(&self.resources).await;
        false
    }

    /// Prunes what left git (with `prune`), keeping what the rules keep and handing over what
    /// another sync now declares. An orphan this identity may not read is neither pruned nor
    /// forgotten: the pass stops there (returns false).
    async fn prune(&mut self, declared: &HashSet<ObjectId>) -> Result<bool, Error> {
        let (ctx, sync) = (self.job.ctx, self.job.sync);
        let candidates = diff::orphans(&self.inventory, declared, &diff::LiveSet::new());
        let targets: Vec<_> = candidates
            .iter()
            .map(|o| (o.record.api_version.clone(), o.id.clone()))
            .collect();
        let observed =
            diff::observe(&self.client, &self.resources, &targets, ctx.concurrency).await?;
        if !observed.refused.is_empty() {
            for (id, message) in observed.refused {
                let id = id.to_string();
                self.changes
                    .errors
                    .push(apply::Error::Prune { id, message });
            }
            return Ok(false);
        }
        let orphans = diff::orphans(&self.inventory, declared, &observed.live);
        if !sync.prune {
            if !orphans.is_empty() {
                let count = orphans.len();
                info!(count, "objects left git; prune is disabled, leaving them");
            }
            return Ok(true);
        }
        let mut deletes = Vec::new();
        for orphan in orphans {
            match apply::decide(&orphan, &sync.name) {
                apply::Decision::Delete => deletes.push(orphan),
                apply::Decision::Keep(reason) => self.changes.kept.push((orphan.id, reason)),
                apply::Decision::Gone => {}
            }
        }
        let (client, resources) = (&self.client, &self.resources);
        let (deletes, kept) =
            ownership::hand_over(ctx, client, self.job.mapping, sync, resources, deletes).await?;
        self.plan.prune = deletes;
        self.changes.kept.extend(kept);
        for (id, reason) in &self.changes.kept {
            info!(object = %id, reason, "kept object that left git");
        }
        if self.applying() {
            if !self.plan.prune.is_empty() {
                let text = format!("pruning {} objects", self.plan.prune.len());
                ctx.progress(&sync.name, &text);
            }
            let prune = &self.plan.prune;
            let n = ctx.concurrency;
            apply::prune(client, resources, prune, &sync.name, n, &mut self.changes).await;
        }
        Ok(true)
    }

    /// With `wait`, or PostSync hooks, every object must become Healthy; the record reads
    /// `Progressing` meanwhile. PostSync hooks run once they are.
    async fn wait(&mut self, hooks: &Hooks<'_>) {
        let (ctx, sync) = (self.job.ctx, self.job.sync);
        let post_sync = hooks.any(HookPhase::PostSync);
        if !(sync.wait || post_sync) || !self.applying() || !self.changes.errors.is_empty() {
            return;
        }
        let text = format!(
            "waiting up to {}s for {} objects to be Healthy",
            sync.timeout.as_secs(),
            self.plan.entries.len()
        );
        ctx.progress(&sync.name, &text);
        let new_revision = self
            .old
            .as_ref()
            .is_none_or(|o| o.revision != self.job.commit.id);
        if new_revision || self.changes.changed() {
            let applied = &self.changes.records;
            record::progressing(ctx, sync, self.job.commit, self.old, applied, &text).await;
        }
        let (client, resources, entries) = (&self.client, &self.resources, &self.plan.entries);
        let waited = wait::healthy(ctx, client, resources, entries, "the sync", sync.timeout).await;
        if waited.is_ok() {
            // every object was seen Healthy: the records say so rather than "just applied"
            for (_, record) in &mut self.changes.records {
                record.health = status::Health::Healthy;
            }
        }
        if sync.wait {
            self.changes.waited = Some(waited.clone());
        }
        if post_sync {
            let ran = match waited {
                Ok(()) => hooks.run(&self.resources, HookPhase::PostSync).await,
                Err(reason) => Err(format!("PostSync hooks did not run: {reason}")),
            };
            if let Err(reason) = ran {
                self.changes.errors.push(apply::Error::Hook(reason));
                hooks.failed(&self.resources).await;
            }
        }
    }
}
