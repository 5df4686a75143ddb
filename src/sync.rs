//! One sync pass: read the commit, render, plan, apply in stages, prune, record status. The
//! steps run in order here and nowhere else.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use tracing::{debug, info, instrument, warn};

use crate::Error;
use crate::apply::{self, ChangeSet};
use crate::cluster::{self, Resources};
use crate::config::{Mapping, Repository, Sync};
use crate::context::Context;
use crate::diff::{self, Action, Owner, Plan};
use crate::git::{self, Commit, Credentials};
use crate::health;
use crate::object::{BuiltinScope, ObjectId, Scope as _};
use crate::render::{self, Manifest, WithCrds};
use crate::status::{self, Phase, SyncStatus};
use crate::vocab::{LEASE_NAME, Reason, RecordKind};
use crate::{events, store};

/// How long a CRD may take to become Established before its stage fails.
const CRD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a wave waits for the waves before it to become Healthy.
const WAVE_TIMEOUT: Duration = Duration::from_secs(300);

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

/// The result of one pass.
#[derive(Debug)]
pub(crate) struct Report {
    pub sync: String,
    pub revision: String,
    pub plan: Plan,
    pub changes: ChangeSet,
    pub phase: Phase,
    pub message: String,
    pub duration: Duration,
    /// Set when the status ConfigMap could not be written.
    pub status_error: Option<String>,
    /// What the sync manages after the pass, when the pass recorded it (not for a plan).
    pub inventory: Option<BTreeMap<ObjectId, status::Record>>,
}

impl Report {
    /// A failed pass, a status that could not be written, or a `wait` that ended Degraded.
    pub(crate) fn failed(&self) -> bool {
        self.phase == Phase::Failed
            || self.status_error.is_some()
            || self.changes.waited.as_ref().is_some_and(Result::is_err)
    }
}

/// Reads a repository's credentials and fetches `branches` (names or globs) into its mirror.
/// Returns the head of the repository's own `branch` when `branches` names it.
///
/// # Errors
/// Credentials, network, or the repository's branch missing.
pub(crate) async fn refresh(
    ctx: &Context,
    repo: &Repository,
    branches: Vec<String>,
) -> Result<Option<Commit>, Error> {
    refresh_refs(ctx, repo, branches, Vec::new()).await
}

/// [`refresh`], fetching the refspecs in `extra` too (tags, pull request heads).
///
/// # Errors
/// Credentials, network, or the repository's branch missing.
pub(crate) async fn refresh_refs(
    ctx: &Context,
    repo: &Repository,
    branches: Vec<String>,
    extra: Vec<String>,
) -> Result<Option<Commit>, Error> {
    let creds = ctx.credentials(repo.auth_secret.as_deref()).await?;
    fetch_branches(&ctx.cache_dir, repo, creds, branches, extra).await
}

/// Fetches a repository's branch into its mirror and resolves the head commit.
///
/// # Errors
/// Credentials, network or a missing branch.
#[instrument(skip_all, fields(repository = %repo.name))]
pub(crate) async fn fetch(
    cache_dir: &Path,
    repo: &Repository,
    creds: Option<Credentials>,
) -> Result<Commit, Error> {
    let head = fetch_branches(
        cache_dir,
        repo,
        creds,
        vec![repo.branch.clone()],
        Vec::new(),
    )
    .await?;
    Ok(head.expect("the repository's branch was asked for"))
}

/// Fetches branches (names or globs) of a repository into its mirror. Returns the head of the
/// repository's own `branch` when `branches` names it.
///
/// # Errors
/// Credentials, network, or the repository's branch missing.
pub(crate) async fn fetch_branches(
    cache_dir: &Path,
    repo: &Repository,
    creds: Option<Credentials>,
    branches: Vec<String>,
    extra: Vec<String>,
) -> Result<Option<Commit>, Error> {
    let started = Instant::now();
    let branch = repo.branch.clone();
    let head = git::with_mirror(cache_dir, repo.url.as_str(), move |mirror| {
        let patterns: Vec<&str> = branches.iter().map(String::as_str).collect();
        mirror.fetch_refs(&patterns, &extra, creds.as_ref())?;
        if branches.contains(&branch) {
            mirror.resolve(&branch).map(Some)
        } else {
            Ok::<_, git::Error>(None)
        }
    })
    .await?;
    tracing::debug!(
        repository = %repo.name,
        duration_ms = started.elapsed().as_millis() as u64,
        "fetched"
    );
    Ok(head)
}

/// Reads and renders a sync's manifests at a commit, with the scopes known offline. Files
/// larger than `max_bytes` are refused before they are read.
///
/// # Errors
/// Git read or render errors, naming file and line.
pub(crate) async fn render(
    cache_dir: &Path,
    max_bytes: u64,
    repo: &Repository,
    sync: &Sync,
    commit: &str,
) -> Result<render::Rendered, Error> {
    let (path, rev) = (sync.path.clone(), commit.to_owned());
    let mut files = git::with_mirror(cache_dir, repo.url.as_str(), move |mirror| {
        git::read_path(
            mirror.repository(),
            &mirror.display_url(),
            &rev,
            &path,
            max_bytes,
        )
    })
    .await?;
    let selection = render::Selection::new(&sync.include, &sync.exclude);
    files.retain(|f| selection.selects(relative(&sync.path, &f.path)));
    let options = render::Options {
        vars: Some(&sync.vars),
        namespace: sync.namespace.as_deref(),
    };
    Ok(render::directory(&files, &options, &BuiltinScope)?)
}

/// A repository path relative to a sync's `path`.
fn relative<'a>(base: &str, path: &'a str) -> &'a str {
    if base.is_empty() {
        path
    } else {
        path.strip_prefix(base)
            .map_or(path, |rest| rest.trim_start_matches('/'))
    }
}

/// `<repo-url>#<path>` with credentials removed.
pub(crate) fn source(repo: &Repository, sync: &Sync) -> String {
    format!("{}#{}", repo.url.redacted(), sync.path)
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
            return finish(
                ctx,
                sync,
                Some(commit),
                mode,
                None,
                started,
                Err(e.to_string()),
            )
            .await;
        }
    };
    let result = pass(ctx, mapping, repo, sync, commit, mode, &mut old)
        .await
        .map_err(|e| e.to_string());
    finish(ctx, sync, Some(commit), mode, old, started, result).await
}

/// Records a failure that happened before a pass could start (a failed fetch, say): status
/// Failed, the last synced revision kept.
pub(crate) async fn record_failure(
    ctx: &Context,
    sync: &Sync,
    error: &Error,
    mode: Mode,
) -> Report {
    let started = Instant::now();
    let old = status::load(&ctx.store(), &sync.name).await.ok().flatten();
    finish(ctx, sync, None, mode, old, started, Err(error.to_string())).await
}

async fn pass(
    ctx: &Context,
    mapping: &Mapping,
    repo: &Repository,
    sync: &Sync,
    commit: &Commit,
    mode: Mode,
    old: &mut Option<SyncStatus>,
) -> Result<(Plan, ChangeSet), Error> {
    if mode == Mode::Apply {
        dependencies_ready(ctx, mapping, sync, commit).await?;
    }
    // the inventory this pass started from; `old` follows what is stored (see `reserve`)
    let inventory = &old
        .as_ref()
        .map(|o| o.inventory.clone())
        .unwrap_or_default();
    let render::Rendered {
        mut manifests,
        rejected,
    } = render(
        &ctx.cache_dir,
        ctx.max_manifest_bytes,
        repo,
        sync,
        &commit.id,
    )
    .await?;
    ctx.progress(
        &sync.name,
        &format!("rendered {} objects at {}", manifests.len(), commit.short()),
    );
    let empty = manifests.is_empty() && rejected.is_empty();
    if empty && !inventory.is_empty() && sync.prune && !sync.allow_empty {
        return Err(Refusal::Empty {
            managed: inventory.len(),
        }
        .into());
    }
    // objects that cannot be applied fail alone; the rest goes on
    let mut changes = ChangeSet::default();
    for r in rejected {
        changes.errors.push(apply::Error::NotApplied {
            origin: r.origin,
            id: r.what,
            reason: r.reason,
        });
    }
    // every request of the pass goes as the sync's ServiceAccount, when it has one
    let (client, _) = ctx.client_as(
        &format!("sync {:?}", sync.name),
        sync.namespace.as_deref(),
        sync.service_account.as_deref(),
    )?;
    let mut groups = render::groups(&manifests);
    groups.extend(inventory.keys().map(|id| id.group.clone()));
    groups.insert("apiextensions.k8s.io".to_owned());
    let mut resources = Resources::discover(&client, &groups).await?;
    // Argo CD's SkipDryRunOnMissingResource=true: a kind not served yet may come with the rest
    // of the pass (an operator that installs its CRDs); such objects go last
    let waits: Vec<bool> = {
        let scope = WithCrds::new(&manifests, &resources);
        manifests
            .iter()
            .map(|m| {
                apply::waits_for_kind(&m.object) && scope.namespaced(m.group(), m.kind()).is_none()
            })
            .collect()
    };
    let (deferred, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut manifests)
        .into_iter()
        .zip(waits)
        .partition(|(_, waits)| *waits);
    manifests = rest.into_iter().map(|(m, _)| m).collect();
    let mut deferred: Vec<Manifest> = deferred.into_iter().map(|(m, _)| m).collect();
    for (m, reason) in unservable(&mut manifests, &resources, sync) {
        fail_alone(&mut changes, &m, reason);
    }
    for (m, reason) in berths_own(&mut manifests, mapping, &ctx.namespace) {
        fail_alone(&mut changes, &m, reason);
    }
    for (m, reason) in bad_waves(&mut manifests) {
        fail_alone(&mut changes, &m, reason);
    }

    let source = source(repo, sync);
    let owner = Owner {
        sync: &sync.name,
        source: &source,
        commit: &commit.id,
        check_creates: mode != Mode::Apply,
    };
    // hooks are not synced objects: they run in their phases, once per new revision
    let hooks = take_hooks(&mut manifests, &mut changes);
    let new_revision = old.as_ref().is_none_or(|o| o.revision != commit.id);
    let hooks = Hooks {
        ctx,
        sync,
        client: &client,
        owner: &owner,
        hooks: if mode == Mode::Apply && new_revision {
            hooks
        } else {
            Vec::new()
        },
    };
    if let Err(reason) = hooks.run(&resources, apply::HookPhase::PreSync).await {
        hooks.failed(&resources).await;
        return Err(Refusal::Hook(reason).into());
    }
    let (first, second): (Vec<Manifest>, Vec<Manifest>) = manifests
        .iter()
        .cloned()
        .partition(|m| m.is_namespace() || m.is_crd());
    let mut plan = Plan::default();
    let stages = if deferred.is_empty() { 2 } else { 3 };
    for (stage, desired) in [first.clone(), second, Vec::new()].into_iter().enumerate() {
        let desired = if stage == 2 {
            if deferred.is_empty() {
                continue;
            }
            let waiting = std::mem::take(&mut deferred);
            let later = later_kinds(
                ctx,
                &client,
                &resources,
                &groups,
                sync,
                mode,
                &changes,
                &plan.entries,
                waiting,
            )
            .await?;
            let (now, ready, still) = later;
            for (m, reason) in still {
                fail_alone(&mut changes, &m, reason);
            }
            let Some(now) = now else { continue };
            resources = now;
            ready
        } else {
            desired
        };
        // what depends on a Namespace or CRD that failed is not attempted
        let (desired, blocked) = blocked_by_failures(desired, &first, &changes.failed);
        for (m, reason) in blocked {
            fail_alone(&mut changes, &m, reason);
        }
        if desired.is_empty() {
            continue;
        }
        let targets: Vec<_> = desired
            .iter()
            .map(|m| (m.api_version().to_owned(), m.id()))
            .collect();
        ctx.progress(
            &sync.name,
            &format!(
                "stage {} of {stages}: planning {} objects",
                stage + 1,
                desired.len()
            ),
        );
        let diff::Observed { live, refused } =
            diff::observe(&client, &resources, &targets, ctx.concurrency).await?;
        let (desired, unreadable): (Vec<Manifest>, Vec<Manifest>) = desired
            .into_iter()
            .partition(|m| !refused.contains_key(&m.id()));
        for m in unreadable {
            let message = refused.get(&m.id()).cloned().unwrap_or_default();
            fail_alone(&mut changes, &m, message);
        }
        check_ownership(ctx, mapping, sync, &resources, &desired, &live).await?;
        let mut entries = Vec::new();
        for (m, result) in desired.iter().zip(
            diff::plan(
                &client,
                &resources,
                &desired,
                &live,
                inventory,
                &owner,
                ctx.concurrency,
            )
            .await,
        ) {
            match result {
                Ok(entry) => entries.push(entry),
                Err(e) => fail_alone(&mut changes, m, e.to_string()),
            }
        }
        hold_back(&mut entries);
        if !sync.adopt {
            let refused: Vec<String> = entries
                .iter()
                .filter(|e| e.action == Action::Adopt)
                .map(|e| {
                    format!(
                        "{} exists and berth does not manage it; sync {:?} sets adopt: false \
                         (delete it, or allow adoption)",
                        e.id, sync.name
                    )
                })
                .collect();
            if !refused.is_empty() {
                return Err(Refusal::Adoption(refused).into());
            }
        }
        if mode == Mode::Apply {
            reserve(ctx, sync, commit, old, &entries).await?;
            let writes = entries
                .iter()
                .filter(|e| e.action != Action::Unchanged)
                .count();
            if writes > 0 {
                ctx.progress(
                    &sync.name,
                    &format!("stage {} of {stages}: applying {writes} changes", stage + 1),
                );
            }
            entries.sort_by_cached_key(|e| apply::order_key(&e.manifest.object));
            apply_in_order(ctx, &sync.name, &client, &resources, &entries, &mut changes).await;
            let new_crds: Vec<&diff::Entry> = entries
                .iter()
                .filter(|e| e.manifest.is_crd() && e.action != Action::Unchanged)
                .filter(|e| !changes.failed.contains(&e.id))
                .collect();
            let crds: Vec<String> = new_crds
                .iter()
                .map(|e| e.manifest.name().to_owned())
                .collect();
            if stage == 0 && !crds.is_empty() {
                apply::wait_established(&client, &resources, &crds, CRD_TIMEOUT).await?;
                // discovery can lag behind Established on a busy API server: look again until
                // every new kind is served (or give up after a few seconds and let it fail alone)
                let deadline = Instant::now() + Duration::from_secs(5);
                let pause = Duration::from_millis(250);
                resources = discover_until(&client, &groups, deadline, pause, |r| {
                    new_crds.iter().all(|e| {
                        let spec = &e.manifest.object["spec"];
                        let group = spec["group"].as_str().unwrap_or_default();
                        let kind = spec["names"]["kind"].as_str().unwrap_or_default();
                        r.preferred(group, kind).is_some()
                    })
                })
                .await?;
            }
        }
        plan.entries.extend(entries);
    }
    if changes.errors.is_empty()
        && let Err(reason) = hooks.run(&resources, apply::HookPhase::Sync).await
    {
        changes.errors.push(apply::Error::Hook(reason));
    }
    // never prune after a failure: what is missing may be missing by mistake
    if !changes.errors.is_empty() {
        hooks.failed(&resources).await;
        return Ok((plan, changes));
    }

    let orphans = {
        let candidates = diff::orphans(inventory, &manifests, &diff::LiveSet::new());
        let targets: Vec<_> = candidates
            .iter()
            .map(|o| (o.record.api_version.clone(), o.id.clone()))
            .collect();
        let observed = diff::observe(&client, &resources, &targets, ctx.concurrency).await?;
        // an orphan this identity may not read is neither pruned nor forgotten
        if !observed.refused.is_empty() {
            for (id, message) in observed.refused {
                changes.errors.push(apply::Error::Prune {
                    id: id.to_string(),
                    message,
                });
            }
            return Ok((plan, changes));
        }
        diff::orphans(inventory, &manifests, &observed.live)
    };
    if sync.prune {
        let mut deletes = Vec::new();
        for orphan in orphans {
            match apply::decide(&orphan, &sync.name) {
                apply::Decision::Delete => deletes.push(orphan),
                apply::Decision::Keep(reason) => changes.kept.push((orphan.id, reason)),
                apply::Decision::Gone => {}
            }
        }
        let (deletes, kept) = hand_over(ctx, &client, mapping, sync, &resources, deletes).await?;
        plan.prune = deletes;
        changes.kept.extend(kept);
        for (id, reason) in &changes.kept {
            info!(object = %id, reason, "kept object that left git");
        }
        if mode == Mode::Apply {
            if !plan.prune.is_empty() {
                ctx.progress(&sync.name, &format!("pruning {} objects", plan.prune.len()));
            }
            apply::prune(
                &client,
                &resources,
                &plan.prune,
                &sync.name,
                ctx.concurrency,
                &mut changes,
            )
            .await;
        }
    } else if !orphans.is_empty() {
        info!(
            count = orphans.len(),
            "objects left git; prune is disabled, leaving them"
        );
    }
    // `wait`, and PostSync hooks, need every object Healthy
    let post_sync = hooks.any(apply::HookPhase::PostSync);
    if (sync.wait || post_sync) && mode == Mode::Apply && changes.errors.is_empty() {
        ctx.progress(
            &sync.name,
            &format!(
                "waiting up to {}s for {} objects to be Healthy",
                sync.timeout.as_secs(),
                plan.entries.len()
            ),
        );
        let waited = wait_healthy(
            ctx,
            &client,
            &resources,
            &plan.entries,
            "the sync",
            sync.timeout,
        )
        .await;
        if waited.is_ok() {
            // every object was seen Healthy: the records say so rather than "just applied"
            for (_, record) in &mut changes.records {
                record.health = status::Health::Healthy;
            }
        }
        if sync.wait {
            changes.waited = Some(waited.clone());
        }
        if post_sync {
            let ran = match waited {
                Ok(()) => hooks.run(&resources, apply::HookPhase::PostSync).await,
                Err(reason) => Err(format!("PostSync hooks did not run: {reason}")),
            };
            if let Err(reason) = ran {
                changes.errors.push(apply::Error::Hook(reason));
                hooks.failed(&resources).await;
            }
        }
    }
    Ok((plan, changes))
}

/// The objects that waited for their kind (`SkipDryRunOnMissingResource=true`), once the rest of
/// the pass is applied and Healthy (an operator that installs the kind is running): discovery
/// is read again every second, up to the sync's `timeout`, until their kinds are served.
/// Returns the new discovery with the objects now served, and the others with why they fail.
/// Only a pass that applies, and applied the rest without failure, gets that far.
#[allow(clippy::too_many_arguments)]
async fn later_kinds(
    ctx: &Context,
    client: &kube::Client,
    resources: &Resources,
    groups: &BTreeSet<String>,
    sync: &Sync,
    mode: Mode,
    changes: &ChangeSet,
    applied: &[diff::Entry],
    waiting: Vec<Manifest>,
) -> Result<(Option<Resources>, Vec<Manifest>, Vec<(Manifest, String)>), Error> {
    let option = format!(
        "{}: SkipDryRunOnMissingResource=true",
        crate::vocab::ARGOCD_SYNC_OPTIONS
    );
    let fail_all = |waiting: Vec<Manifest>, why: &str| {
        let still = waiting
            .into_iter()
            .map(|m| (m, format!("{why} ({option})")))
            .collect();
        Ok((None, Vec::new(), still))
    };
    if mode != Mode::Apply {
        return fail_all(
            waiting,
            "its kind is not served yet; a pass that applies tries it after the rest",
        );
    }
    if !changes.errors.is_empty() {
        return fail_all(
            waiting,
            "its kind is not served, and the rest of the pass failed",
        );
    }
    let deadline = Instant::now() + sync.timeout;
    ctx.progress(
        &sync.name,
        &format!(
            "waiting for the kinds of {} objects (SkipDryRunOnMissingResource)",
            waiting.len()
        ),
    );
    if let Err(reason) = wait_healthy(
        ctx,
        client,
        resources,
        applied,
        "the rest of the pass",
        sync.timeout,
    )
    .await
    {
        return fail_all(waiting, &format!("not applied: {reason}"));
    }
    let now = discover_until(client, groups, deadline, Duration::from_secs(1), |r| {
        unservable(&mut waiting.clone(), r, sync).is_empty()
    })
    .await?;
    let mut ready = waiting;
    let still = unservable(&mut ready, &now, sync)
        .into_iter()
        .map(|(m, reason)| {
            let reason = format!(
                "{reason}, still {}s after the rest of the pass was applied ({option})",
                sync.timeout.as_secs()
            );
            (m, reason)
        })
        .collect();
    Ok((Some(now), ready, still))
}

/// Reads discovery again every `pause` until `served` holds for it or `deadline` passes;
/// returns the last discovery read either way.
async fn discover_until(
    client: &kube::Client,
    groups: &BTreeSet<String>,
    deadline: Instant,
    pause: Duration,
    served: impl Fn(&Resources) -> bool,
) -> Result<Resources, Error> {
    loop {
        let now = Resources::discover(client, groups).await?;
        if served(&now) || Instant::now() >= deadline {
            return Ok(now);
        }
        tokio::time::sleep(pause).await;
    }
}

/// Takes the hooks (and the objects marked `Skip`) out of the manifests; a hook annotation
/// that names no phase fails its object alone.
fn take_hooks(manifests: &mut Vec<Manifest>, changes: &mut ChangeSet) -> Vec<Manifest> {
    let mut hooks = Vec::new();
    let mut rest = Vec::new();
    for m in std::mem::take(manifests) {
        match apply::hook(&m.object) {
            Ok(apply::Hook::No) => rest.push(m),
            Ok(apply::Hook::Skip) => {}
            Ok(apply::Hook::Runs(_)) => hooks.push(m),
            Err(reason) => fail_alone(changes, &m, reason),
        }
    }
    *manifests = rest;
    hooks
}

/// The hooks of a pass and what running them needs.
struct Hooks<'a> {
    ctx: &'a Context,
    sync: &'a Sync,
    client: &'a kube::Client,
    owner: &'a Owner<'a>,
    /// Empty when this pass runs none (not a new revision, or not applying).
    hooks: Vec<Manifest>,
}

impl Hooks<'_> {
    fn of(&self, phase: apply::HookPhase) -> impl Iterator<Item = &Manifest> {
        self.hooks.iter().filter(move |m| {
            matches!(apply::hook(&m.object), Ok(apply::Hook::Runs(p)) if p.contains(&phase))
        })
    }

    fn any(&self, phase: apply::HookPhase) -> bool {
        self.of(phase).next().is_some()
    }

    /// Runs the hooks of a phase one after the other, in file order: each is created (after
    /// deleting the one before, by default), then must become Healthy (a Job complete) within
    /// the sync's timeout. The first that fails stops the phase; the error names it and why.
    async fn run(&self, resources: &Resources, phase: apply::HookPhase) -> Result<(), String> {
        for m in self.of(phase) {
            let id = m.id();
            let policy = apply::delete_policy(&m.object);
            if policy.before_creation {
                apply::delete_hook(self.client, resources, m.api_version(), &id)
                    .await
                    .map_err(|e| format!("{phase:?} hook {id}: {e}"))?;
            }
            self.ctx
                .announce(&self.sync.name, &format!("{phase:?} hook {id}: running"));
            let entry = diff::Entry {
                id: id.clone(),
                manifest: diff::stamp(m, self.owner),
                action: Action::Create,
                hash: String::new(),
                revision: self.owner.commit.to_owned(),
                live: None,
                predicted: None,
            };
            let mut created = ChangeSet::default();
            let one = std::slice::from_ref(&entry);
            apply::apply(self.client, resources, one, 1, &mut created).await;
            if let Some(e) = created.errors.pop() {
                return Err(format!("{phase:?} hook: {e}"));
            }
            let what = format!("{phase:?} hook");
            let result = wait_healthy(
                self.ctx,
                self.client,
                resources,
                one,
                &what,
                self.sync.timeout,
            )
            .await;
            info!(sync = %self.sync.name, hook = %id, ?phase, ok = result.is_ok(), "hook finished");
            let delete = if result.is_ok() {
                policy.on_success
            } else {
                policy.on_failure
            };
            if delete
                && let Err(e) =
                    apply::delete_hook(self.client, resources, m.api_version(), &id).await
            {
                warn!(error = %e, "failed to delete a finished hook");
            }
            result?;
        }
        Ok(())
    }

    /// Runs the SyncFail hooks after a failure; their own failure is only logged.
    async fn failed(&self, resources: &Resources) {
        if let Err(e) = self.run(resources, apply::HookPhase::SyncFail).await {
            warn!(sync = %self.sync.name, error = %e, "a SyncFail hook failed");
        }
    }
}

/// Records, before a stage writes, that the sync is about to own the objects it creates or
/// adopts: a pass cut short (a crash, a lost lease) leaves them in the inventory, so the next
/// pass finishes or prunes them instead of leaking them. The rest of the status is left as the
/// last finished pass wrote it; `old` follows what is stored.
async fn reserve(
    ctx: &Context,
    sync: &Sync,
    commit: &Commit,
    old: &mut Option<SyncStatus>,
    entries: &[diff::Entry],
) -> Result<(), Error> {
    let owned = |id: &ObjectId| old.as_ref().is_some_and(|o| o.inventory.contains_key(id));
    let new: Vec<_> = entries
        .iter()
        .filter(|e| e.action != Action::Unchanged && !owned(&e.id))
        .map(|e| {
            let record = status::Record {
                api_version: e.manifest.api_version().to_owned(),
                revision: commit.id.clone(),
                ..status::Record::default()
            };
            (e.id.clone(), record)
        })
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let stored = old.get_or_insert_with(|| SyncStatus {
        phase: Phase::OutOfSync,
        message: format!("applying revision {}", commit.short()),
        ..SyncStatus::default()
    });
    stored.inventory.extend(new);
    stored.resource_version = status::save(&ctx.store(), &sync.name, stored).await?;
    Ok(())
}

/// Refuses objects that another sync owns (its label says so) and still declares: every
/// object has one owning sync, and ownership moves only once the owner let go of it.
async fn check_ownership(
    ctx: &Context,
    mapping: &Mapping,
    sync: &Sync,
    resources: &Resources,
    desired: &[Manifest],
    live: &diff::LiveSet,
) -> Result<(), Error> {
    let mut foreign: BTreeMap<&str, Vec<ObjectId>> = BTreeMap::new();
    for m in desired {
        let id = m.id();
        if let Some(owner) = live.get(&id).and_then(diff::owner_of)
            && owner != sync.name
        {
            foreign.entry(owner).or_default().push(id);
        }
    }
    let mut conflicts = Vec::new();
    for (owner, ids) in foreign {
        let declared = declared_by(ctx, mapping, owner, resources).await;
        conflicts.extend(ids.into_iter().filter(|id| declared.contains(id)).map(|id| {
            format!(
                "{id} belongs to sync {owner:?}, which still declares it; sync {:?} declares it too",
                sync.name
            )
        }));
    }
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(Refusal::Owned(conflicts).into())
    }
}

/// What a sync declares at the head of its branch in the local mirror (nothing is fetched);
/// what it last recorded owning when that cannot be rendered; nothing when the mapping has
/// no such sync.
async fn declared_by(
    ctx: &Context,
    mapping: &Mapping,
    name: &str,
    resources: &Resources,
) -> BTreeSet<ObjectId> {
    let Some(other) = mapping.syncs.iter().find(|s| s.name == name) else {
        return BTreeSet::new();
    };
    let Some(repo) = mapping.repository(&other.repository) else {
        return BTreeSet::new();
    };
    let rendered = async {
        let branch = repo.branch.clone();
        let head = git::with_mirror(&ctx.cache_dir, repo.url.as_str(), move |mirror| {
            mirror.resolve(&branch)
        })
        .await?;
        let mut manifests = render(
            &ctx.cache_dir,
            ctx.max_manifest_bytes,
            repo,
            other,
            &head.id,
        )
        .await?
        .manifests;
        settle_namespaces(&mut manifests, resources, other);
        Ok::<_, Error>(manifests.iter().map(Manifest::id).collect())
    };
    match rendered.await {
        Ok(ids) => ids,
        Err(e) => {
            debug!(sync = name, error = %e, "cannot render; using its recorded inventory");
            status::load(&ctx.store(), name)
                .await
                .ok()
                .flatten()
                .map(|s| s.inventory.into_keys().collect())
                .unwrap_or_default()
        }
    }
}

/// Splits the orphans prune would delete into those it deletes and those it keeps: an
/// object another sync now declares is handed over (dropped from this inventory, not
/// deleted, so it keeps its uid), and a Namespace that holds objects this pass does not
/// prune stays, saying which.
async fn hand_over(
    ctx: &Context,
    client: &kube::Client,
    mapping: &Mapping,
    sync: &Sync,
    resources: &Resources,
    deletes: Vec<diff::Orphan>,
) -> Result<(Vec<diff::Orphan>, Vec<(ObjectId, String)>), Error> {
    let mut kept = Vec::new();
    if deletes.is_empty() {
        return Ok((deletes, kept));
    }
    let mut elsewhere: BTreeMap<ObjectId, &str> = BTreeMap::new();
    for other in mapping.syncs.iter().filter(|s| s.name != sync.name) {
        for id in declared_by(ctx, mapping, &other.name, resources).await {
            elsewhere.entry(id).or_insert(&other.name);
        }
    }
    let (mut namespaces, mut rest) = (Vec::new(), Vec::new());
    for orphan in deletes {
        if let Some(other) = elsewhere.get(&orphan.id) {
            kept.push((
                orphan.id,
                format!("declared by sync {other:?}, which takes it over"),
            ));
        } else if orphan.id.kind == "Namespace" && orphan.id.group.is_empty() {
            namespaces.push(orphan);
        } else {
            rest.push(orphan);
        }
    }
    let pruned: BTreeSet<&ObjectId> = rest.iter().map(|o| &o.id).collect();
    let mut deleted_namespaces = Vec::new();
    for ns in namespaces {
        let contents = cluster::namespace_contents(client, &ns.id.name)
            .await
            .map_err(|source| diff::Error::List {
                what: format!("the objects in namespace {}", ns.id.name),
                source,
            })?;
        let strangers: Vec<String> = contents
            .iter()
            .filter(|id| !pruned.contains(id))
            .map(ToString::to_string)
            .collect();
        if strangers.is_empty() {
            deleted_namespaces.push(ns);
        } else {
            let shown: Vec<&str> = strangers.iter().take(5).map(String::as_str).collect();
            let more = strangers.len().saturating_sub(shown.len());
            kept.push((
                ns.id,
                format!(
                    "it holds objects this sync does not prune: {}{}",
                    shown.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                ),
            ));
        }
    }
    rest.extend(deleted_namespaces);
    Ok((rest, kept))
}

/// Sets the sync's namespace on namespaced objects that name none, with scopes from
/// discovery and the CRDs among the objects.
fn settle_namespaces(manifests: &mut [Manifest], resources: &Resources, sync: &Sync) {
    let snapshot = manifests.to_vec();
    let scope = WithCrds::new(&snapshot, resources);
    for m in manifests.iter_mut() {
        render::default_namespace(m, sync.namespace.as_deref(), &scope);
    }
}

/// Settles scopes with discovery (CRDs in the set included) and takes out the objects that
/// cannot be applied: kinds nobody serves (all of them, each named), and namespaced objects
/// without a namespace. Returns them with the reason.
fn unservable(
    manifests: &mut Vec<Manifest>,
    resources: &Resources,
    sync: &Sync,
) -> Vec<(Manifest, String)> {
    settle_namespaces(manifests, resources, sync);
    let verdicts: Vec<Option<String>> = {
        let scope = WithCrds::new(manifests, resources);
        manifests
            .iter()
            .map(|m| match scope.namespaced(m.group(), m.kind()) {
                None => Some(format!(
                    "no API resource serves {} in {}",
                    m.kind(),
                    m.api_version()
                )),
                Some(true) if m.namespace().is_none() => Some(
                    "it is namespaced but names no namespace and the sync sets none".to_owned(),
                ),
                _ => None,
            })
            .collect()
    };
    let mut out = Vec::new();
    let mut kept = Vec::new();
    for (m, verdict) in std::mem::take(manifests).into_iter().zip(verdicts) {
        match verdict {
            Some(reason) => out.push((m, reason)),
            None => kept.push(m),
        }
    }
    *manifests = kept;
    out
}

/// Takes out the objects that are berth's own state, which no sync may declare whatever its
/// identity: its status records, its Lease and the Secrets the mapping references
/// (credentials, webhook secrets), all in berth's namespace. Returns them with the reason.
fn berths_own(
    manifests: &mut Vec<Manifest>,
    mapping: &Mapping,
    namespace: &str,
) -> Vec<(Manifest, String)> {
    let secrets: BTreeSet<&str> = mapping
        .repositories
        .iter()
        .flat_map(|r| [r.auth_secret.as_deref(), r.webhook_secret.as_deref()])
        .flatten()
        .collect();
    let what = |m: &Manifest| -> Option<&'static str> {
        if m.namespace() != Some(namespace) {
            return None;
        }
        let records = [
            RecordKind::Sync,
            RecordKind::Pipeline,
            RecordKind::Cleanup,
            RecordKind::Agent,
        ];
        match (m.group(), m.kind()) {
            ("", "ConfigMap") if records.iter().any(|k| m.name().starts_with(k.prefix())) => {
                Some("a status record")
            }
            ("", "Secret") if secrets.contains(m.name()) => Some("a Secret the mapping references"),
            ("coordination.k8s.io", "Lease") if m.name() == LEASE_NAME => Some("its Lease"),
            _ => None,
        }
    };
    let (own, rest): (Vec<Manifest>, Vec<Manifest>) = std::mem::take(manifests)
        .into_iter()
        .partition(|m| what(m).is_some());
    *manifests = rest;
    own.into_iter()
        .map(|m| {
            let reason = format!(
                "it is berth's own state ({}); no sync may declare it",
                what(&m).unwrap_or("berth's")
            );
            (m, reason)
        })
        .collect()
}

/// Splits a stage's objects into those to attempt and those that depend on a failed object
/// of the first stage: the custom resources of a CRD, the objects of a Namespace.
fn blocked_by_failures(
    desired: Vec<Manifest>,
    first: &[Manifest],
    failed: &[ObjectId],
) -> (Vec<Manifest>, Vec<(Manifest, String)>) {
    let failed_first: Vec<&Manifest> = first.iter().filter(|m| failed.contains(&m.id())).collect();
    if failed_first.is_empty() {
        return (desired, Vec::new());
    }
    let mut attempt = Vec::new();
    let mut blocked = Vec::new();
    for m in desired {
        let cause = failed_first.iter().find(|f| {
            let spec = &f.object["spec"];
            (f.is_namespace() && m.namespace() == Some(f.name()))
                || (f.is_crd()
                    && spec["group"].as_str() == Some(m.group())
                    && spec["names"]["kind"].as_str() == Some(m.kind()))
        });
        match cause {
            Some(f) => blocked.push((m, format!("it depends on {}, which failed", f.id()))),
            None => attempt.push(m),
        }
    }
    (attempt, blocked)
}

/// Records an object that is not applied, and why.
/// Applies the migration policies: an object held back is not written (an existing one counts
/// as unchanged, so it stays in the inventory; a missing one under `ssa: Ignore` is left out).
fn hold_back(entries: &mut Vec<diff::Entry>) {
    entries.retain_mut(|e| {
        let Some(reason) = apply::hold(&e.manifest.object, e.live.as_ref()) else {
            return true;
        };
        if e.action != Action::Unchanged {
            tracing::debug!(object = %e.id, %reason, "held back");
        }
        e.action = Action::Unchanged;
        e.live.is_some()
    });
}

/// Whether every sync this one depends on is Synced and Healthy, and (when it follows the same
/// repository) at the commit this pass applies.
async fn dependencies_ready(
    ctx: &Context,
    mapping: &Mapping,
    sync: &Sync,
    commit: &Commit,
) -> Result<(), Error> {
    for dep in &sync.depends_on {
        let waiting = |why: String| Refusal::Dependency(format!("sync {dep:?}, which {why}"));
        let Some(st) = status::load(&ctx.store(), dep).await? else {
            return Err(waiting("has not synced yet".to_owned()).into());
        };
        if st.phase != Phase::Synced || st.health != status::Health::Healthy {
            return Err(waiting(format!("is {} and {}", st.phase, st.health)).into());
        }
        let same_repository = mapping
            .syncs
            .iter()
            .any(|s| &s.name == dep && s.repository == sync.repository);
        if same_repository && st.revision != commit.id {
            let at = st.revision.get(..7).unwrap_or(&st.revision);
            return Err(waiting(format!("is at {at}, not yet {}", commit.short())).into());
        }
    }
    Ok(())
}

/// Takes out the manifests whose wave annotation is not an integer, with the reason.
fn bad_waves(manifests: &mut Vec<Manifest>) -> Vec<(Manifest, String)> {
    let (bad, good): (Vec<Manifest>, Vec<Manifest>) = std::mem::take(manifests)
        .into_iter()
        .partition(|m| apply::wave(&m.object).is_err());
    *manifests = good;
    bad.into_iter()
        .map(|m| {
            let reason = apply::wave(&m.object).err().unwrap_or_default();
            (m, reason)
        })
        .collect()
}

/// Applies entries sorted by wave and kind, one kind at a time. Before a wave with changes,
/// waits until every object of the earlier waves is Healthy (as Argo CD does). A wave that
/// fails, or whose predecessors become Degraded or stay unhealthy, stops the waves after it.
async fn apply_in_order(
    ctx: &Context,
    sync: &str,
    client: &kube::Client,
    resources: &Resources,
    entries: &[diff::Entry],
    changes: &mut ChangeSet,
) {
    let wave = |e: &diff::Entry| apply::order_key(&e.manifest.object).0;
    let mut offset = 0;
    for group in entries.chunk_by(|a, b| wave(a) == wave(b)) {
        let writes = group.iter().any(|e| e.action != Action::Unchanged);
        let stop = if offset > 0 && writes {
            let earlier = &entries[..offset];
            ctx.announce(
                sync,
                &format!(
                    "wave {}: waiting for {} objects of earlier waves to be Healthy",
                    wave(&group[0]),
                    earlier.len()
                ),
            );
            wait_healthy(
                ctx,
                client,
                resources,
                earlier,
                "an earlier wave",
                WAVE_TIMEOUT,
            )
            .await
            .err()
        } else {
            None
        };
        let errors = changes.errors.len();
        if stop.is_none() {
            for kind in group.chunk_by(|a, b| {
                apply::order_key(&a.manifest.object) == apply::order_key(&b.manifest.object)
            }) {
                apply::apply(client, resources, kind, ctx.concurrency, changes).await;
            }
        }
        offset += group.len();
        let reason = match stop {
            Some(reason) => reason,
            None if changes.errors.len() > errors && offset < entries.len() => {
                format!("wave {} failed", wave(&group[0]))
            }
            None => continue,
        };
        let rest = if changes.errors.len() > errors {
            &entries[offset..]
        } else {
            &entries[offset - group.len()..]
        };
        for e in rest.iter().filter(|e| e.action != Action::Unchanged) {
            fail_alone(changes, &e.manifest, format!("not applied: {reason}"));
        }
        return;
    }
}

/// Waits until each object is Healthy; the error names the one that is Degraded, or that was
/// still not Healthy at the deadline.
async fn wait_healthy(
    ctx: &Context,
    client: &kube::Client,
    resources: &Resources,
    objects: &[diff::Entry],
    what: &str,
    timeout: Duration,
) -> Result<(), String> {
    let targets: Vec<_> = objects
        .iter()
        .map(|e| (e.manifest.api_version().to_owned(), e.id.clone()))
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        let observed = diff::observe(client, resources, &targets, ctx.concurrency)
            .await
            .map_err(|e| e.to_string())?;
        let (h, who) = health::worst(
            objects
                .iter()
                .filter_map(|e| Some((e.id.to_string(), observed.live.get(&e.id)?))),
        );
        let who = who.map_or_else(String::new, |(id, why)| format!("{id}: {why}"));
        match h {
            status::Health::Degraded => return Err(format!("{what} is Degraded: {who}")),
            status::Health::Healthy | status::Health::Unknown => return Ok(()),
            status::Health::Progressing if Instant::now() >= deadline => {
                return Err(format!(
                    "{what} was not Healthy within {}s: {who}",
                    timeout.as_secs()
                ));
            }
            status::Health::Progressing => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

fn fail_alone(changes: &mut ChangeSet, m: &Manifest, reason: String) {
    changes.failed.push(m.id());
    changes.errors.push(apply::Error::NotApplied {
        origin: m.origin(),
        id: m.id().to_string(),
        reason,
    });
}

async fn finish(
    ctx: &Context,
    sync: &Sync,
    commit: Option<&Commit>,
    mode: Mode,
    old: Option<SyncStatus>,
    started: Instant,
    result: Result<(Plan, ChangeSet), String>,
) -> Report {
    let (plan, changes, error) = match result {
        Ok((plan, changes)) => (plan, changes, None),
        Err(e) => (Plan::default(), ChangeSet::default(), Some(e)),
    };
    let mut problems: Vec<String> = error.iter().cloned().collect();
    problems.extend(changes.errors.iter().map(ToString::to_string));
    // the same failures give the same message, whatever order the requests completed in
    problems.sort();
    problems.dedup();
    let phase = if !problems.is_empty() {
        Phase::Failed
    } else if mode != Mode::Apply && plan.differences() > 0 {
        Phase::OutOfSync
    } else {
        Phase::Synced
    };
    let message = if problems.is_empty() {
        changes.summary()
    } else {
        summarize_problems(&problems)
    };
    let old_revision = old.as_ref().map(|o| o.revision.clone()).unwrap_or_default();
    let report = |plan, changes, status_error, inventory| Report {
        sync: sync.name.clone(),
        revision: commit.map_or_else(|| old_revision.clone(), |c| c.id.clone()),
        plan,
        changes,
        phase,
        message: message.clone(),
        duration: started.elapsed(),
        status_error,
        inventory,
    };
    // a plan writes nothing; a check that could not look records nothing either
    if mode == Mode::Plan || (mode == Mode::Check && phase == Phase::Failed) {
        return report(plan, changes, None, None);
    }

    let old_inventory = old
        .as_ref()
        .map(|o| o.inventory.clone())
        .unwrap_or_default();
    let inventory = if mode == Mode::Check {
        old_inventory
    } else if phase == Phase::Failed {
        // Keep what we knew, plus what this pass applied: a failed pass forgets nothing.
        let mut inv = old_inventory;
        inv.extend(changes.records.iter().cloned());
        inv
    } else {
        changes.records.iter().cloned().collect()
    };
    let revision = match commit {
        Some(c) if error.is_none() && mode == Mode::Apply => c.id.clone(),
        _ => old_revision.clone(),
    };
    let at = commit.map_or_else(String::new, |c| format!("revision {}: ", c.short()));
    // objects that failed to apply are not what git says, so the sync is not healthy
    let (health, unhealthy) = match &changes.waited {
        _ if !changes.errors.is_empty() => (status::Health::Degraded, None),
        Some(Ok(())) => (status::Health::Healthy, None),
        Some(Err(why)) => (status::Health::Degraded, Some(why.clone())),
        None => health(&plan, old.as_ref()),
    };
    if let Some(why) = &unhealthy {
        tracing::info!(sync = %sync.name, %health, object = %why, "not healthy yet");
    }
    let drifted = plan.differences();
    let new = SyncStatus {
        phase,
        health,
        revision,
        resource_version: old
            .as_ref()
            .map(|o| o.resource_version.clone())
            .unwrap_or_default(),
        last_sync: String::new(),
        // The status message describes the state, so a no-op pass leaves it (and the
        // ConfigMap) alone; what a pass did goes to the Event and the log.
        message: match phase {
            Phase::Failed => format!("{at}{message}"),
            Phase::OutOfSync => format!("{drifted} objects differ from git"),
            // why a sync is Degraded stays in its status; a Progressing reason moves with
            // every replica that becomes ready and goes to the log only, so an unchanged
            // rollout writes nothing
            Phase::Synced => match unhealthy.as_deref() {
                Some(why) if health == status::Health::Degraded => {
                    format!("{} objects synced; Degraded: {why}", inventory.len())
                }
                _ => format!("{} objects synced", inventory.len()),
            },
        },
        inventory,
    };
    let inventory = new.inventory.clone();
    let flipped = old.as_ref().is_none_or(|o| o.phase != phase);
    let mut status_error = None;
    if let Some(next) = status::next(old.as_ref(), new, &store::now())
        && let Err(e) = status::save(&ctx.store(), &sync.name, &next).await
    {
        // the status on the cluster is not true now: the pass has failed, and says so where
        // it still can, unless a newer pass wrote the record meanwhile
        let text = format!("{at}{e}");
        warn!(error = %text, "failed to record status");
        if !matches!(e, store::Error::Conflict { .. })
            && let Err(e) =
                status::mark_failed(&ctx.store(), &sync.name, &text, &store::now()).await
        {
            warn!(error = %e, "failed to mark the status Failed");
        }
        let record = (RecordKind::Sync, sync.name.as_str());
        events::publish(
            &ctx.client,
            &ctx.namespace,
            record,
            Reason::SyncFailed,
            &text,
        )
        .await;
        status_error = Some(e.to_string());
    }
    let was = old.as_ref().map_or(status::Health::Unknown, |o| o.health);
    if was != health && mode == Mode::Apply {
        let reason = match health {
            status::Health::Healthy => Some(Reason::Healthy),
            status::Health::Progressing => Some(Reason::Progressing),
            status::Health::Degraded => Some(Reason::Degraded),
            status::Health::Unknown => None,
        };
        if let Some(reason) = reason {
            let why = unhealthy
                .as_deref()
                .map_or_else(String::new, |w| format!(": {w}"));
            let text = format!("{at}health {was} → {health}{why}");
            let record = (RecordKind::Sync, sync.name.as_str());
            events::publish(&ctx.client, &ctx.namespace, record, reason, &text).await;
        }
    }
    for h in [
        status::Health::Healthy,
        status::Health::Progressing,
        status::Health::Degraded,
        status::Health::Unknown,
    ] {
        ctx.metrics
            .sync_health
            .get_or_create(&crate::telemetry::HealthLabels {
                sync: sync.name.clone(),
                health: h.to_string(),
            })
            .set(i64::from(h == health));
    }
    if !changes.adopted.is_empty() {
        let ids: Vec<String> = changes.adopted.iter().map(ToString::to_string).collect();
        let text = format!("{at}adopted {}", ids.join(", "));
        let record = (RecordKind::Sync, sync.name.as_str());
        events::publish(&ctx.client, &ctx.namespace, record, Reason::Adopted, &text).await;
    }
    if mode == Mode::Check {
        // a check reports drift in status only
    } else if phase == Phase::Failed {
        if flipped || changes.changed() {
            events::publish(
                &ctx.client,
                &ctx.namespace,
                (RecordKind::Sync, &sync.name),
                Reason::SyncFailed,
                &message,
            )
            .await;
        }
        warn!(message = %message, "sync failed");
    } else if changes.changed() || flipped {
        let mut text = format!("{at}{}", changes.summary());
        for (id, reason) in &changes.kept {
            text.push_str(&format!("; kept {id}: {reason}"));
        }
        events::publish(
            &ctx.client,
            &ctx.namespace,
            (RecordKind::Sync, &sync.name),
            Reason::Synced,
            &text,
        )
        .await;
    }
    let r = report(plan, changes, status_error, Some(inventory));
    let labels = crate::telemetry::SyncLabels {
        sync: sync.name.clone(),
    };
    ctx.metrics
        .syncs
        .get_or_create(&crate::telemetry::SyncResult {
            sync: sync.name.clone(),
            result: if r.failed() { "failed" } else { "synced" }.to_owned(),
        })
        .inc();
    ctx.metrics
        .sync_duration
        .get_or_create(&labels)
        .observe(r.duration.as_secs_f64());
    ctx.metrics
        .objects_applied
        .get_or_create(&labels)
        .inc_by((r.changes.created.len() + r.changes.configured.len()) as u64);
    ctx.metrics
        .objects_pruned
        .get_or_create(&labels)
        .inc_by(r.changes.pruned.len() as u64);
    ctx.metrics
        .objects_adopted
        .get_or_create(&labels)
        .inc_by(r.changes.adopted.len() as u64);
    info!(
        sync = %sync.name,
        repository = %sync.repository,
        commit = %r.revision,
        status = %r.phase,
        created = r.changes.created.len(),
        configured = r.changes.configured.len(),
        unchanged = r.changes.unchanged,
        pruned = r.changes.pruned.len(),
        adopted = r.changes.adopted.len(),
        duration_ms = r.duration.as_millis() as u64,
        "sync finished"
    );
    r
}

/// How many problems a status message spells out; the rest are counted.
const SHOWN_PROBLEMS: usize = 5;

/// The first few problems and a count of the rest, so a pass where hundreds of objects fail
/// still leaves a readable message (and a ConfigMap annotation within its size limit).
fn summarize_problems(problems: &[String]) -> String {
    let mut text = problems
        .iter()
        .take(SHOWN_PROBLEMS)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN_PROBLEMS {
        text.push_str(&format!("; and {} more", problems.len() - SHOWN_PROBLEMS));
    }
    text
}

/// Health after a pass, with the object that decided it when not Healthy: objects of kinds a
/// controller reports on that were just created or changed are still rolling out; the rest are
/// judged from their live state. A failed render keeps the previous health.
fn health(plan: &Plan, old: Option<&SyncStatus>) -> (status::Health, Option<String>) {
    if plan.entries.is_empty() {
        return (old.map(|o| o.health).unwrap_or_default(), None);
    }
    // a just-applied workload decides before anything judged from an older live state
    let (changed, rest): (Vec<&diff::Entry>, Vec<&diff::Entry>) = plan
        .entries
        .iter()
        .partition(|e| e.action != Action::Unchanged);
    let (h, who) = health::worst_of(changed.into_iter().chain(rest).map(|e| {
        let a = health::after_pass(&e.id.kind, e.action != Action::Unchanged, e.live.as_ref());
        (e.id.to_string(), a)
    }));
    (h, who.map(|(id, reason)| format!("{id}: {reason}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(api_version: &str, kind: &str, namespace: &str, name: &str) -> Manifest {
        Manifest {
            object: serde_json::json!({"apiVersion": api_version, "kind": kind,
                "metadata": {"name": name, "namespace": namespace}}),
            file: "f.yaml".into(),
            line: 1,
            source: std::sync::Arc::from(""),
        }
    }

    #[test]
    fn berths_own_state_is_taken_out_of_any_sync() {
        let mapping = crate::config::parse(&[(
            std::path::PathBuf::from("berth.yaml"),
            "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: r\n    url: file:///r\n    auth: {secretRef: git-creds}\n    webhookSecretRef: hooks\n".to_owned(),
        )])
        .expect("mapping");
        let mut manifests = vec![
            manifest("v1", "Secret", "berth-system", "git-creds"),
            manifest("v1", "Secret", "berth-system", "hooks"),
            manifest("v1", "Secret", "team-a", "git-creds"),
            manifest("v1", "Secret", "berth-system", "other"),
            manifest("v1", "ConfigMap", "berth-system", "berth-sync-web"),
            manifest("v1", "ConfigMap", "berth-system", "berth-agent"),
            manifest("v1", "ConfigMap", "berth-system", "berth-mapping"),
            manifest("coordination.k8s.io/v1", "Lease", "berth-system", "berth"),
            manifest("coordination.k8s.io/v1", "Lease", "berth-system", "other"),
        ];
        let own = berths_own(&mut manifests, &mapping, "berth-system");
        let refused: Vec<String> = own.iter().map(|(m, _)| m.id().to_string()).collect();
        assert_eq!(
            refused,
            [
                "berth-system/Secret/git-creds",
                "berth-system/Secret/hooks",
                "berth-system/ConfigMap/berth-sync-web",
                "berth-system/ConfigMap/berth-agent",
                "berth-system/Lease.coordination.k8s.io/berth",
            ]
        );
        assert!(
            own[0].1.contains("a Secret the mapping references"),
            "{}",
            own[0].1
        );
        assert_eq!(manifests.len(), 4, "the rest stays");
    }

    #[test]
    fn long_problem_lists_are_cut_with_a_count() {
        let problems: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
        assert_eq!(
            summarize_problems(&problems),
            "p0; p1; p2; p3; p4; and 3 more"
        );
        assert_eq!(summarize_problems(&problems[..2]), "p0; p1");
    }
}
