//! `berth run`: the long-running tasks. One task per repository polls at its interval (with
//! jitter) or wakes on a webhook or file event, syncs its syncs when the commit changes,
//! re-checks drift for `selfHeal` syncs, launches pipelines and backs off on failure. The
//! mapping file is watched and applied live. Shutdown lets the pass in progress finish.
//!
//! Its parts sit on [`shared::Shared`]: the HTTP server ([`server`]), file notifications
//! ([`files`]) and leader election ([`lease`]).

mod dashboard;
mod drift;
mod files;
mod lease;
mod records;
mod secrets;
mod server;
mod shared;
mod sources;

pub(crate) use records::Records;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, instrument, warn};

use crate::config::{self, Mapping, Repository};
use crate::context::Context;
use crate::notify::notifier::{Batch, Notifier, Seen};
use crate::notify::statuses::Reporter;
use crate::preview::Queue;
use crate::provider::State;
use crate::source;
use crate::store::{self, Fields};
use crate::sync::{self, Mode};
use crate::telemetry::{RepositoryLabels, ResultLabels};
use crate::vocab::{CONFIG_STATUS, FIELD_MANAGER, LAST_SYNC, MESSAGE, Reason, RecordKind};
use crate::{cleanup, events, pipelines};
use files::{Change, FileWatch};
use shared::Shared;

const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// File events closer together than this are handled as one.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How long the first pipeline passes wait for the first sync passes at start.
const FIRST_SYNCS_PATIENCE: Duration = Duration::from_secs(60);

/// Delay before retrying after `failures` consecutive failed passes: 5s, 10s, 20s … 5 min.
pub(crate) fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// `interval` spread by up to ±10%, so many repositories do not poll in lockstep. `unit` is a
/// random number in [0, 1).
pub(crate) fn jitter(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(0.9 + 0.2 * unit.clamp(0.0, 1.0))
}

/// Resolves when SIGTERM or Ctrl-C arrives.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// How `berth run` serves HTTP and elects a leader.
#[derive(Clone)]
pub(crate) struct Options {
    pub config: PathBuf,
    pub listen: std::net::SocketAddr,
    /// Where the operators' endpoints (the dashboard, the delivery log) are served.
    pub admin_listen: std::net::SocketAddr,
    /// The token that turns the dashboard's actions on.
    pub admin_token: Option<String>,
    pub max_webhook_bytes: usize,
    pub leader_election: Option<LeaderElection>,
}

/// Leader election among replicas.
#[derive(Clone)]
pub(crate) struct LeaderElection {
    /// How long a lease lasts without renewal.
    pub duration: Duration,
    /// A client outside the fence, for the Lease itself.
    pub client: kube::Client,
    /// The fence of the context's client, opened while the lease is held.
    pub fence: Arc<crate::cluster::Fence>,
}

/// Runs the agent until `shutdown` resolves; passes in progress finish first.
///
/// # Errors
/// The listen address cannot be bound.
pub(crate) async fn run(
    ctx: Context,
    mapping: Mapping,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared::new(mapping, ctx.metrics.refreshes.clone()));
    let services = Services::start(&ctx, &shared, &options).await?;
    let (changes_tx, mut changes) = mpsc::unbounded_channel();
    let mut files = FileWatch::new(changes_tx);
    files.watch(&options.config, &shared.mapping());

    let mut elector = options.leader_election.map(|e| {
        lease::Elector::new(
            &e.client,
            &ctx.namespace,
            lease::identity(),
            e.duration,
            e.fence,
        )
    });
    let period = elector
        .as_ref()
        .map_or(Duration::from_secs(3600), |e| e.period());
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = match &elector {
        Some(e) => {
            info!(identity = %e.identity(), "waiting for the lease");
            shared.set_leading(false);
            None
        }
        None => Some(Tasks::start(&ctx, &shared)),
    };
    tokio::pin!(shutdown);
    loop {
        let change = tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick(), if elector.is_some() => {
                let elector = elector.as_mut().expect("guarded");
                let lead = elector.step().await;
                match (lead, tasks.is_some()) {
                    (true, false) => tasks = Some(Tasks::start(&ctx, &shared)),
                    // lost or not renewed in time: stop at once, before the lease expires
                    (false, true) => tasks.take().expect("running").abort().await,
                    _ => {}
                }
                shared.set_leading(lead);
                continue;
            }
            Some(ended) = next_ended(&mut tasks) => {
                // a task ends only when stopped; one that ends otherwise is reported, never
                // silently gone: /healthz fails so the pod is restarted
                if let Err(e) = ended {
                    error!(error = %e, "an agent task failed; /healthz now reports it");
                    shared.task_failed(e.to_string());
                }
                continue;
            }
            change = changes.recv() => change,
        };
        let Some(first) = change else { break };
        // debounce: a save or a ConfigMap update arrives as several events
        let mut batch = vec![first];
        tokio::time::sleep(DEBOUNCE).await;
        while let Ok(more) = changes.try_recv() {
            batch.push(more);
        }
        batch.dedup();
        for change in batch {
            match change {
                Change::Repository(name) => shared.refresh(&name),
                Change::Config => {
                    if reload(&ctx, &shared, &options.config).await {
                        restart(&ctx, &shared, &mut tasks).await;
                        files.watch(&options.config, &shared.mapping());
                    }
                }
            }
        }
    }
    info!("shutting down after the passes in progress");
    if let Some(t) = tasks {
        t.stop().await;
    }
    if let Some(e) = elector.as_mut() {
        e.release().await;
    }
    services.stop().await;
    info!("agent stopped");
    Ok(())
}

/// After a reload: the running tasks (if this replica works) stop after their passes and start
/// again with the new mapping.
async fn restart(ctx: &Context, shared: &Arc<Shared>, tasks: &mut Option<Tasks>) {
    let running = tasks.take();
    let was_running = running.is_some();
    if let Some(t) = running {
        t.stop().await;
    }
    shared.reset_triggers();
    if was_running {
        *tasks = Some(Tasks::start(ctx, shared));
    }
}

/// What every replica runs whether or not it leads: the HTTP listeners, the dashboard's live
/// feed and the webhook secrets' watch.
struct Services {
    stop: CancellationToken,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Services {
    /// Binds the listeners and starts the services.
    ///
    /// # Errors
    /// A listen address cannot be bound.
    async fn start(
        ctx: &Context,
        shared: &Arc<Shared>,
        options: &Options,
    ) -> std::io::Result<Self> {
        let bind = |address: std::net::SocketAddr| async move {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("{address}: {e}")))?;
            info!(address = %listener.local_addr()?, "listening");
            Ok::<_, std::io::Error>(listener)
        };
        let listener = bind(options.listen).await?;
        let admin = bind(options.admin_listen).await?;
        let stop = CancellationToken::new();
        let state = shared::State {
            shared: shared.clone(),
            ctx: ctx.clone(),
            max_webhook_bytes: options.max_webhook_bytes,
            admin_token: options.admin_token.clone().map(Arc::from),
            stop: stop.clone(),
        };
        let operators = dashboard::routes();
        let server = server::serve(listener, admin, operators, state, stop.clone());
        // the dashboard's live pages follow berth's records and the pipelines' runs
        let feed = dashboard::follow(ctx.clone(), shared.clone(), stop.clone());
        // every replica keeps the webhook secrets, so a new leader answers at once
        let (client, namespace) = (ctx.client.clone(), ctx.namespace.clone());
        let secrets = secrets::follow(client, namespace, shared.clone(), stop.clone());
        let handles = vec![
            tokio::spawn(server),
            tokio::spawn(feed),
            tokio::spawn(secrets),
        ];
        Ok(Self { stop, handles })
    }

    async fn stop(self) {
        self.stop.cancel();
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

/// Reads the mapping again after a file event. Returns true when a new, valid mapping is in
/// force; an invalid one leaves the running mapping alone and is reported.
async fn reload(ctx: &Context, shared: &Shared, path: &Path) -> bool {
    match config::load(path) {
        Ok(new) => {
            let was_invalid = shared.config_error.write().expect("lock").take().is_some();
            if *shared.mapping() == new {
                if was_invalid {
                    record_config(
                        ctx,
                        ConfigState::Valid,
                        "the mapping is valid again (unchanged)",
                    )
                    .await;
                }
                return false;
            }
            log_mapping(&new, "mapping changed; applying it");
            *shared.mapping.write().expect("mapping lock") = Arc::new(new);
            ctx.metrics
                .config_reloads
                .get_or_create(&ResultLabels {
                    result: "applied".into(),
                })
                .inc();
            record_config(ctx, ConfigState::Valid, "mapping reloaded").await;
            true
        }
        Err(e) => {
            let message = e.to_string();
            error!(error = %message, "mapping change is invalid; keeping the running mapping");
            ctx.metrics
                .config_reloads
                .get_or_create(&ResultLabels {
                    result: "invalid".into(),
                })
                .inc();
            let repeated = shared.config_error.read().expect("lock").as_deref() == Some(&message);
            *shared.config_error.write().expect("lock") = Some(message.clone());
            if !repeated {
                record_config(ctx, ConfigState::Invalid, &message).await;
            }
            false
        }
    }
}

/// Whether the mapping on disk is valid, as `berth-agent` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConfigState {
    Valid,
    Invalid,
}

/// Records the mapping's state on `berth-agent` and as an Event.
async fn record_config(ctx: &Context, state: ConfigState, message: &str) {
    let (value, reason) = match state {
        ConfigState::Valid => ("Valid", Reason::ConfigReloaded),
        ConfigState::Invalid => ("Invalid", Reason::ConfigInvalid),
    };
    let fields = Fields {
        labels: BTreeMap::new(),
        annotations: BTreeMap::from([
            (CONFIG_STATUS.to_owned(), value.to_owned()),
            (MESSAGE.to_owned(), message.to_owned()),
            (LAST_SYNC.to_owned(), store::now()),
        ]),
        data: None,
        resource_version: None,
    };
    if let Err(e) = ctx
        .store()
        .write(RecordKind::Agent, "", FIELD_MANAGER, fields)
        .await
    {
        warn!(error = %e, "failed to record mapping status");
    }
    events::publish(
        &ctx.client,
        &ctx.namespace,
        (RecordKind::Agent, ""),
        reason,
        message,
    )
    .await;
}

/// Logs what a mapping holds.
fn log_mapping(mapping: &Mapping, message: &str) {
    info!(
        repositories = mapping.repositories.len(),
        syncs = mapping.syncs.len(),
        pipelines = mapping.pipelines.len(),
        cleanup_rules = mapping.cleanup.len(),
        "{message}"
    );
}

/// The next task of `tasks` to end, with how it ended; never resolves while none runs.
async fn next_ended(tasks: &mut Option<Tasks>) -> Option<Result<(), tokio::task::JoinError>> {
    match tasks {
        Some(t) if !t.set.is_empty() => t.set.join_next().await,
        _ => std::future::pending().await,
    }
}

/// The running tasks of one mapping generation.
struct Tasks {
    stop: CancellationToken,
    set: tokio::task::JoinSet<()>,
}

impl Tasks {
    fn start(ctx: &Context, shared: &Arc<Shared>) -> Self {
        let mapping = shared.mapping();
        let stop = CancellationToken::new();
        let stop_rx = &stop;
        let mut set = tokio::task::JoinSet::new();
        // the syncs' commit statuses: their tasks end with this generation's
        let statuses = Reporter::new(ctx.clone());
        let (guard, ended) = (statuses.guard(), stop_rx.clone());
        set.spawn(async move {
            ended.cancelled().await;
            drop(guard);
        });
        let notifier = Notifier::start(ctx, &mapping.notifications, stop_rx, &mut set);
        let board = shared.previews.clone();
        let previews = Queue::start(ctx, mapping.clone(), board, stop_rx, &mut set);
        for repo in mapping.repositories.clone() {
            let trigger = shared
                .trigger(&repo.name)
                .expect("a trigger per repository");
            let syncs: Vec<_> = mapping
                .syncs
                .iter()
                .filter(|s| s.repository == repo.name)
                .cloned()
                .collect();
            let drift = Arc::new(drift::Drift::new());
            if !syncs.is_empty() {
                let (ctx, drift, stop) = (ctx.clone(), drift.clone(), stop_rx.clone());
                let name = repo.name.clone();
                set.spawn(async move { drift::watch(ctx, name, syncs, drift, stop).await });
            }
            let (ctx, mapping, stop) = (ctx.clone(), mapping.clone(), stop_rx.clone());
            let wake = Wake {
                trigger,
                drift,
                shared: shared.clone(),
                statuses: statuses.clone(),
                notifier: notifier.clone(),
                batch: Batch::default(),
                previews: previews.clone(),
            };
            set.spawn(async move { poll(ctx, mapping, repo, wake, stop).await });
        }
        {
            let (ctx, mapping, stop) = (ctx.clone(), mapping.clone(), stop_rx.clone());
            let shared = shared.clone();
            set.spawn(async move { sources::follow(ctx, mapping, shared, stop).await });
        }
        if !mapping.pipelines.is_empty() {
            let (ctx, mapping, stop) = (ctx.clone(), (*mapping).clone(), stop_rx.clone());
            let notifier = notifier.clone();
            set.spawn(async move { pipelines::watch_runs(ctx, mapping, notifier, stop).await });
        }
        if !mapping.cleanup.is_empty() {
            let (ctx, mapping, stop) = (ctx.clone(), (*mapping).clone(), stop_rx.clone());
            set.spawn(async move { cleanup::run_scheduled(ctx, mapping, stop).await });
        }
        log_mapping(&mapping, "agent started");
        Self { stop, set }
    }

    /// Stops the tasks after their passes in progress.
    async fn stop(mut self) {
        self.stop.cancel();
        while self.set.join_next().await.is_some() {}
    }

    /// Stops the tasks now, mid-pass if need be (the lease is gone).
    async fn abort(mut self) {
        self.set.abort_all();
        while self.set.join_next().await.is_some() {}
    }
}

/// What wakes a repository loop: a webhook, file event or `berth trigger` (fetch and pass), or
/// a hand edit of a managed object (re-plan its sync at the commit already fetched).
struct Wake {
    trigger: Arc<Notify>,
    drift: Arc<drift::Drift>,
    /// Where passes are recorded for the dashboard.
    shared: Arc<Shared>,
    /// Posts the syncs' commit statuses.
    statuses: Arc<Reporter>,
    /// Tells the notifications what passes came to.
    notifier: Arc<Notifier>,
    /// What this repository's pass came to so far, told when it ends.
    batch: Batch,
    /// Where the repository's pull requests are offered for previews.
    previews: Queue,
}

/// The loop of one repository.
#[instrument(skip_all, fields(repository = %repo.name))]
async fn poll(
    ctx: Context,
    mapping: Arc<Mapping>,
    repo: Repository,
    wake: Wake,
    stop: CancellationToken,
) {
    let syncs: Vec<_> = mapping
        .syncs
        .iter()
        .filter(|s| s.repository == repo.name)
        .collect();
    let mut memory = Memory {
        done: HashMap::new(),
        evaluated: pipelines::Evaluated::new(),
        pulls: pipelines::PullRequests::default(),
        first: true,
    };
    let mut failures = 0u32;
    loop {
        // the requests this pass serves: all made before it fetches
        let asked = wake.shared.refreshes.requested(&repo.name);
        let (head, failed) = one_pass(&ctx, &mapping, &repo, &syncs, &wake, &mut memory).await;
        wake.shared.refreshes.served(&repo.name, asked);
        failures = if failed { failures + 1 } else { 0 };
        let delay = match (failed, repo.interval) {
            (true, _) => Some(backoff(failures)),
            (false, Some(interval)) => Some(jitter(interval, rand::random::<f64>())),
            // interval 0: only notifications start a pass
            (false, None) => None,
        };
        let deadline = delay.map(|d| tokio::time::Instant::now() + d);
        loop {
            let stopped = stop.cancelled();
            tokio::select! {
                () = stopped => return,
                () = wake.trigger.notified() => break,
                () = sleep_until(deadline) => break,
                () = wake.drift.wake.notified() => {
                    // a hand edit: only the syncs it touched, at the commit they passed at
                    let Some(commit) = &head else { continue };
                    let job = (&ctx, &*mapping, &repo, &wake);
                    if repair(job, &syncs, commit, &mut memory.done).await {
                        break;
                    }
                }
            }
        }
    }
}

/// What a repository's loop remembers between passes.
struct Memory {
    /// Last commit each sync passed at; a sync is re-run when the commit moves, when it failed,
    /// or (selfHeal) at every interval.
    done: HashMap<String, String>,
    evaluated: pipelines::Evaluated,
    pulls: pipelines::PullRequests,
    /// Before the first pass.
    first: bool,
}

/// One pass of a repository: fetch, then its syncs and its pipelines side by side. Returns
/// the head of its branch and whether anything failed.
async fn one_pass(
    ctx: &Context,
    mapping: &Arc<Mapping>,
    repo: &Repository,
    syncs: &[&crate::config::Sync],
    wake: &Wake,
    memory: &mut Memory,
) -> (Option<crate::git::Commit>, bool) {
    let started = Instant::now();
    let (heads, extra) = refs(ctx, mapping, repo, &wake.shared, &mut memory.pulls).await;
    let previewed = mapping.previewed(&repo.name).next().is_some();
    let mut branches = mapping.branches(repo);
    branches.extend(heads);
    let fetched = source::refresh_refs(ctx, repo, branches, extra).await;
    let labels = RepositoryLabels {
        repository: repo.name.clone(),
    };
    let elapsed = started.elapsed().as_secs_f64();
    ctx.metrics
        .fetch_duration
        .get_or_create(&labels)
        .observe(elapsed);
    let head = match fetched {
        Ok(head) => head,
        Err(e) => {
            warn!(error = %e, "fetch failed");
            for s in syncs {
                let report = sync::record_failure(ctx, s, &e, Mode::Apply).await;
                let seen = Seen::Sync(report.seen("", false));
                wake.batch.add(&wake.notifier, seen);
            }
            wake.batch.flush(&wake.notifier);
            wake.shared.synced_once(&repo.name);
            return (None, true);
        }
    };
    if previewed {
        wake.previews.offer(repo, &memory.pulls);
    }
    let Memory {
        done,
        evaluated,
        pulls,
        first,
    } = memory;
    // syncs and pipelines are independent: neither waits for the other
    let sync_all = async {
        let mut failed = false;
        if let Some(commit) = &head {
            // syncs pass side by side, a sync only after the ones it depends on
            for level in config::dependency_levels(syncs) {
                let mut passes = Vec::new();
                for s in level {
                    // a new commit, or a changed varsFrom or decryption source
                    let stale = wake.shared.take_stale(&s.name);
                    let moved = done.get(&s.name) != Some(&commit.id) || stale;
                    passes.push(async move {
                        (s, pass(ctx, mapping, repo, s, commit, moved, wake).await)
                    });
                }
                let passed: Vec<_> = futures::stream::iter(passes)
                    .buffer_unordered(SYNCS_AT_ONCE)
                    .collect()
                    .await;
                for (s, (sync_failed, outcome)) in passed {
                    failed |= sync_failed;
                    remember(done, &s.name, outcome);
                }
            }
        }
        wake.batch.flush(&wake.notifier);
        wake.shared.synced_once(&repo.name);
        failed
    };
    // at start, pipelines wait for the first sync passes: they often create the namespace and
    // the account a pipeline runs as
    let pipelines = async {
        if std::mem::take(first) && !wake.shared.first_syncs(FIRST_SYNCS_PATIENCE).await {
            info!(repository = %repo.name, "the first sync passes are still running; pipelines go on");
        }
        pipelines::pass(ctx, mapping, repo, evaluated, pulls).await
    };
    let (sync_failed, pipelines_ok) = tokio::join!(sync_all, pipelines);
    if pipelines_ok {
        // handled: their runs stopped and they are forgotten
        memory.pulls.closed.clear();
    }
    (head, sync_failed || !pipelines_ok)
}

/// Re-plans the syncs hand edits touched, at the commit they last passed at. Returns whether
/// one failed.
async fn repair(
    (ctx, mapping, repo, wake): (&Context, &Mapping, &Repository, &Wake),
    syncs: &[&crate::config::Sync],
    commit: &crate::git::Commit,
    done: &mut HashMap<String, String>,
) -> bool {
    let mut failed = false;
    for (name, changes) in wake.drift.take() {
        let Some(s) = syncs.iter().find(|s| s.name == name) else {
            continue;
        };
        if done.get(&s.name) != Some(&commit.id) {
            continue; // failing: the backoff retries it
        }
        let ids: Vec<String> = changes.iter().map(|c| c.id.to_string()).collect();
        info!(sync = %s.name, objects = %ids.join(", "), "changed by hand; re-planning");
        let (sync_failed, outcome) = pass(ctx, mapping, repo, s, commit, false, wake).await;
        failed |= sync_failed;
        remember(done, &s.name, outcome);
    }
    wake.batch.flush(&wake.notifier);
    failed
}

/// What a repository's pass fetches beside its branches: every tag when a pipeline launches
/// tags, and the heads of the open pull requests its pipelines build or its syncs preview
/// (refspecs, and source branches where the host has no pull request refs). Pull requests come from deliveries, and
/// from the provider's list on passes no delivery started.
async fn refs(
    ctx: &Context,
    mapping: &Mapping,
    repo: &Repository,
    shared: &Shared,
    pulls: &mut pipelines::PullRequests,
) -> (Vec<String>, Vec<String>) {
    let own: Vec<&config::Pipeline> = mapping
        .pipelines
        .iter()
        .filter(|p| p.repository == repo.name)
        .collect();
    let mut extra = Vec::new();
    if own.iter().any(|p| !p.tags.is_empty()) {
        extra.push("+refs/tags/*:refs/tags/*".to_owned());
    }
    let builds: Vec<&config::Pipeline> = own
        .into_iter()
        .filter(|p| p.pull_requests.is_some())
        .collect();
    let previewed = mapping
        .previewed(&repo.name)
        .next()
        .map(|_| repo.branch.as_str());
    let wanted = !builds.is_empty() || previewed.is_some();
    let Some(target) = repo.provider.as_ref().filter(|_| wanted) else {
        return (Vec::new(), extra);
    };
    let events = shared.take_pull_requests(&repo.name);
    for e in &events {
        pulls.event(e);
    }
    if events.is_empty() {
        let listed = async {
            let token = ctx.provider_token(target).await?;
            ctx.provider.open_pulls(target, &token).await
        };
        match listed.await {
            Ok(open) => pulls.listed(open),
            Err(e) => {
                warn!(error = %e, "cannot list open pull requests; using what deliveries said")
            }
        }
    }
    let (refspecs, heads) = pulls.fetch(&builds, previewed, target.kind.api());
    extra.extend(refspecs);
    (heads, extra)
}

/// How many syncs of a repository pass at once.
const SYNCS_AT_ONCE: usize = 4;

/// What a sync's pass changes in what its repository's loop remembers.
enum Outcome {
    /// A check: nothing.
    Checked,
    /// An apply failed: the commit is to be passed again.
    Failed,
    /// The commit was applied.
    Applied(String),
}

fn remember(done: &mut HashMap<String, String>, sync: &str, outcome: Outcome) {
    match outcome {
        Outcome::Checked => {}
        Outcome::Failed => {
            done.remove(sync);
        }
        Outcome::Applied(commit) => {
            done.insert(sync.to_owned(), commit);
        }
    }
}

/// One pass of a sync at `commit`. A sync applies when the commit `moved` or it heals drift
/// (`selfHeal`); otherwise it only checks. Hands the inventory to the drift watches. Returns
/// whether the pass failed, and what its loop is to remember of it.
async fn pass(
    ctx: &Context,
    mapping: &Mapping,
    repo: &Repository,
    s: &config::Sync,
    commit: &crate::git::Commit,
    moved: bool,
    wake: &Wake,
) -> (bool, Outcome) {
    // at the same commit, selfHeal re-applies drift; otherwise the check only reports it
    // (OutOfSync)
    let mode = if moved || s.self_heal {
        Mode::Apply
    } else {
        Mode::Check
    };
    if moved {
        tell_commit(ctx, repo, s, (&commit.id, State::Pending, ""), false, wake);
    }
    let report = sync::run_once(ctx, mapping, repo, s, commit, mode).await;
    if !report.revision.is_empty() {
        let state = sync::commit::state(report.outcome(), s.wait);
        let opened = moved && report.revision == commit.id;
        let told = (report.revision.as_str(), state, report.problem());
        tell_commit(ctx, repo, s, told, opened, wake);
    }
    // a check that could not look records nothing, and tells no one
    if !(mode == Mode::Check && report.failed()) {
        let applied = mode == Mode::Apply && moved && report.revision == commit.id;
        let seen = report.seen(&commit.subject, applied);
        wake.batch.add(&wake.notifier, Seen::Sync(seen));
    }
    if let Some(inventory) = &report.inventory {
        wake.drift.record(&s.name, inventory);
    }
    wake.shared.record_pass(
        &s.name,
        crate::ui::pages::PassRow {
            at: store::now(),
            revision: report.revision.clone(),
            phase: report.phase.to_string(),
            summary: report.message.clone(),
            duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        },
        (mode == Mode::Apply).then(|| report.changes.actions()),
    );
    let outcome = match (mode, report.failed()) {
        (Mode::Apply, true) => Outcome::Failed,
        (Mode::Apply, false) => Outcome::Applied(commit.id.clone()),
        _ => Outcome::Checked,
    };
    (report.failed(), outcome)
}

/// Hands a sync's commit status (revision, state, message) to its reporter, when the sync's
/// repository has a provider (posted by its own task: nothing waits here). `opened`: the pass
/// applied a new revision.
fn tell_commit(
    ctx: &Context,
    repo: &Repository,
    s: &config::Sync,
    (revision, state, message): (&str, State, &str),
    opened: bool,
    wake: &Wake,
) {
    let Some(target) = &repo.provider else {
        return;
    };
    let status = sync::commit::status(&s.name, state, message, ctx.external_url.as_deref());
    let (record, wanted) = sync::commit::wanted(&s.name, revision, status, opened);
    wake.statuses.observe(&s.name, &record, target, wanted);
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(20), Duration::from_secs(300));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let i = Duration::from_secs(60);
        assert_eq!(jitter(i, 0.0), Duration::from_secs(54));
        assert_eq!(jitter(i, 0.5), Duration::from_secs(60));
        assert!(jitter(i, 0.999) < Duration::from_secs(66));
    }
}
