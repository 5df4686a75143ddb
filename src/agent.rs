//! `berth run`: the long-running tasks. One task per repository polls at its interval (with
//! jitter) or wakes on a webhook or file event, syncs its syncs when the commit changes,
//! re-checks drift for `selfHeal` syncs, launches pipelines and backs off on failure. The
//! mapping file is watched and applied live. Shutdown lets the pass in progress finish.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{error, info, instrument, warn};

use crate::config::{self, Mapping, Repository};
use crate::status::{self, EventType};
use crate::sync::{self, Context, Mode};
use crate::telemetry::{RepositoryLabels, ResultLabels};
use crate::{cleanup, pipelines, server};

const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// File events closer together than this are handled as one.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How many webhook deliveries `/webhooks/deliveries` keeps.
pub const DELIVERY_LOG: usize = 100;
/// The agent's own status ConfigMap (mapping reloads).
pub const AGENT_STATUS: &str = "berth-agent";

/// Delay before retrying after `failures` consecutive failed passes: 5s, 10s, 20s … 5 min.
pub fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// `interval` spread by up to ±10%, so many repositories do not poll in lockstep. `unit` is a
/// random number in [0, 1).
pub fn jitter(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(0.9 + 0.2 * unit.clamp(0.0, 1.0))
}

/// Resolves when SIGTERM or Ctrl-C arrives.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// A webhook delivery as the audit log keeps it: no payload, no secret.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryRecord {
    pub id: String,
    pub provider: String,
    pub event: String,
    pub received: String,
    pub repositories: Vec<String>,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub matched: Vec<String>,
    pub action: String,
    pub status: u16,
}

/// State the agent's tasks and its HTTP server share.
pub struct Shared {
    /// The mapping in force.
    pub mapping: RwLock<Arc<Mapping>>,
    /// Per repository: wakes its task for an immediate pass. A wake while a pass runs is kept
    /// (one permit), so it causes exactly one more pass: bursts coalesce, nothing is lost.
    pub triggers: RwLock<HashMap<String, Arc<Notify>>>,
    pub deliveries: Mutex<VecDeque<DeliveryRecord>>,
    /// The last mapping reload error, if the file on disk is invalid.
    pub config_error: RwLock<Option<String>>,
    /// Whether this replica works (always, without leader election). Readiness follows it,
    /// so a Service sends webhooks to the leader.
    pub leading: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub fn new(mapping: Mapping) -> Self {
        let shared = Self {
            mapping: RwLock::new(Arc::new(mapping)),
            triggers: RwLock::new(HashMap::new()),
            deliveries: Mutex::new(VecDeque::new()),
            config_error: RwLock::new(None),
            leading: std::sync::atomic::AtomicBool::new(true),
        };
        shared.reset_triggers();
        shared
    }

    pub fn mapping(&self) -> Arc<Mapping> {
        self.mapping.read().expect("mapping lock").clone()
    }

    fn reset_triggers(&self) {
        let mapping = self.mapping();
        let triggers = mapping
            .repositories
            .iter()
            .map(|r| (r.name.clone(), Arc::new(Notify::new())))
            .collect();
        *self.triggers.write().expect("trigger lock") = triggers;
    }

    fn trigger(&self, repository: &str) -> Option<Arc<Notify>> {
        self.triggers
            .read()
            .expect("trigger lock")
            .get(repository)
            .cloned()
    }

    /// Wakes a repository's task.
    pub fn refresh(&self, repository: &str) {
        if let Some(t) = self.trigger(repository) {
            t.notify_one();
        }
    }

    /// Adds a delivery to the audit log, dropping the oldest beyond [`DELIVERY_LOG`].
    pub fn record(&self, delivery: DeliveryRecord) {
        let mut log = self.deliveries.lock().expect("delivery lock");
        log.push_front(delivery);
        log.truncate(DELIVERY_LOG);
    }
}

/// How `berth run` serves HTTP.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub listen: std::net::SocketAddr,
    pub max_webhook_bytes: usize,
    /// Lease duration when leader election is on.
    pub leader_election: Option<Duration>,
}

/// What the file watcher reports.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Config,
    Repository(String),
}

/// Runs the agent until `shutdown` resolves; passes in progress finish first.
///
/// # Errors
/// The listen address cannot be bound.
pub async fn run(
    ctx: Context,
    mapping: Mapping,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared::new(mapping));
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    info!(address = %listener.local_addr()?, "listening");
    let (server_stop, server_stopped) = watch::channel(false);
    let server = tokio::spawn(server::serve(
        listener,
        server::State {
            shared: shared.clone(),
            ctx: ctx.clone(),
            max_webhook_bytes: options.max_webhook_bytes,
        },
        server_stopped,
    ));

    let (changes_tx, mut changes) = mpsc::unbounded_channel();
    let mut files = FileWatch::new(changes_tx);
    files.watch(&options.config, &shared.mapping());

    let mut elector = options.leader_election.map(|d| {
        crate::lease::Elector::new(&ctx.client, &ctx.namespace, crate::lease::identity(), d)
    });
    let period = elector
        .as_ref()
        .map_or(Duration::from_secs(3600), |e| e.period());
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = match &elector {
        Some(e) => {
            info!(identity = %e.identity(), "waiting for the lease");
            shared
                .leading
                .store(false, std::sync::atomic::Ordering::SeqCst);
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
                shared.leading.store(lead, std::sync::atomic::Ordering::SeqCst);
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
                        let running = tasks.take();
                        let was_running = running.is_some();
                        if let Some(t) = running {
                            t.stop().await;
                        }
                        shared.reset_triggers();
                        files.watch(&options.config, &shared.mapping());
                        if was_running {
                            tasks = Some(Tasks::start(&ctx, &shared));
                        }
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
    let _ = server_stop.send(true);
    let _ = server.await;
    info!("agent stopped");
    Ok(())
}

/// Reads the mapping again after a file event. Returns true when a new, valid mapping is in
/// force; an invalid one leaves the running mapping alone and is reported.
async fn reload(ctx: &Context, shared: &Shared, path: &Path) -> bool {
    match config::load(path) {
        Ok(new) => {
            let was_invalid = shared.config_error.write().expect("lock").take().is_some();
            if *shared.mapping() == new {
                if was_invalid {
                    record_config(ctx, "Valid", "the mapping is valid again (unchanged)").await;
                }
                return false;
            }
            info!(
                repositories = new.repositories.len(),
                syncs = new.syncs.len(),
                pipelines = new.pipelines.len(),
                cleanup_rules = new.cleanup.len(),
                "mapping changed; applying it"
            );
            *shared.mapping.write().expect("mapping lock") = Arc::new(new);
            ctx.metrics
                .config_reloads
                .get_or_create(&ResultLabels {
                    result: "applied".into(),
                })
                .inc();
            record_config(ctx, "Valid", "mapping reloaded").await;
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
                record_config(ctx, "Invalid", &message).await;
            }
            false
        }
    }
}

/// Records the mapping's state on `berth-agent` and as an Event.
async fn record_config(ctx: &Context, state: &str, message: &str) {
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": AGENT_STATUS,
            "labels": {status::MANAGED_BY: status::MANAGER_VALUE},
            "annotations": {
                "berth.dev/config-status": state,
                status::MESSAGE: message,
                status::LAST_SYNC: status::now(),
            },
        },
    });
    let params = kube::api::PatchParams::apply(status::FIELD_MANAGER).force();
    if let Err(e) = api
        .patch(AGENT_STATUS, &params, &kube::api::Patch::Apply(&body))
        .await
    {
        warn!(error = %status::api_message(&e), "failed to record mapping status");
    }
    let (kind, reason) = if state == "Valid" {
        (EventType::Normal, "ConfigReloaded")
    } else {
        (EventType::Warning, "ConfigInvalid")
    };
    status::event(
        &ctx.client,
        &ctx.namespace,
        AGENT_STATUS,
        kind,
        reason,
        message,
    )
    .await;
}

/// The running tasks of one mapping generation.
struct Tasks {
    stop: watch::Sender<bool>,
    set: tokio::task::JoinSet<()>,
}

impl Tasks {
    fn start(ctx: &Context, shared: &Arc<Shared>) -> Self {
        let mapping = shared.mapping();
        let (stop, stop_rx) = watch::channel(false);
        let mut set = tokio::task::JoinSet::new();
        for repo in mapping.repositories.clone() {
            let trigger = shared
                .trigger(&repo.name)
                .expect("a trigger per repository");
            let (ctx, mapping, stop) = (ctx.clone(), mapping.clone(), stop_rx.clone());
            set.spawn(async move { poll(ctx, mapping, repo, trigger, stop).await });
        }
        if !mapping.pipelines.is_empty() {
            let (ctx, mapping, stop) = (ctx.clone(), (*mapping).clone(), stop_rx.clone());
            set.spawn(async move { pipelines::watch_runs(ctx, mapping, stop).await });
        }
        if !mapping.cleanup.is_empty() {
            let (ctx, mapping, stop) = (ctx.clone(), (*mapping).clone(), stop_rx.clone());
            set.spawn(async move { cleanup::run_scheduled(ctx, mapping, stop).await });
        }
        info!(
            repositories = mapping.repositories.len(),
            syncs = mapping.syncs.len(),
            pipelines = mapping.pipelines.len(),
            cleanup_rules = mapping.cleanup.len(),
            "agent started"
        );
        Self { stop, set }
    }

    /// Stops the tasks after their passes in progress.
    async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.set.join_next().await.is_some() {}
    }

    /// Stops the tasks now, mid-pass if need be (the lease is gone).
    async fn abort(mut self) {
        self.set.abort_all();
        while self.set.join_next().await.is_some() {}
    }
}

/// The loop of one repository.
#[instrument(skip_all, fields(repository = %repo.name))]
async fn poll(
    ctx: Context,
    mapping: Arc<Mapping>,
    repo: Repository,
    trigger: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let syncs: Vec<_> = mapping
        .syncs
        .iter()
        .filter(|s| s.repository == repo.name)
        .collect();
    let branches = mapping.branches(&repo);
    // Last commit each sync passed at; a sync is re-run when the commit moves, when it failed,
    // or (selfHeal) at every interval.
    let mut done: HashMap<String, String> = HashMap::new();
    let mut evaluated = pipelines::Evaluated::new();
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let fetched = match sync::credentials(&ctx, &repo).await {
            Ok(creds) => sync::fetch_branches(&ctx.cache_dir, &repo, creds, branches.clone()).await,
            Err(e) => Err(e),
        };
        ctx.metrics
            .fetch_duration
            .get_or_create(&RepositoryLabels {
                repository: repo.name.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
        let failed = match fetched {
            Ok(head) => {
                // syncs and pipelines are independent: neither waits for the other
                let syncs = async {
                    let Some(commit) = head else { return false };
                    let mut failed = false;
                    for s in &syncs {
                        let moved = done.get(&s.name) != Some(&commit.id);
                        if !moved && !s.self_heal {
                            continue;
                        }
                        let report = sync::run_once(&ctx, &repo, s, &commit, Mode::Apply).await;
                        if report.failed() {
                            failed = true;
                            done.remove(&s.name);
                        } else {
                            done.insert(s.name.clone(), commit.id.clone());
                        }
                    }
                    failed
                };
                let pipelines = pipelines::pass(&ctx, &mapping, &repo, &mut evaluated);
                let (sync_failed, pipelines_ok) = tokio::join!(syncs, pipelines);
                sync_failed || !pipelines_ok
            }
            Err(e) => {
                warn!(error = %e, "fetch failed");
                for s in &syncs {
                    sync::record_failure(&ctx, s, &e, Mode::Apply).await;
                }
                true
            }
        };
        failures = if failed { failures + 1 } else { 0 };
        let delay = match (failed, repo.interval) {
            (true, _) => Some(backoff(failures)),
            (false, Some(interval)) => Some(jitter(interval, rand::random::<f64>())),
            // interval 0: only notifications start a pass
            (false, None) => None,
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = trigger.notified() => {}
            () = sleep(delay) => {}
        }
    }
}

async fn sleep(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending::<()>().await,
    }
}

/// File-system notifications for the mapping and for `file://` repositories.
struct FileWatch {
    watcher: Option<notify::RecommendedWatcher>,
    /// Watched directory → what a change under it means.
    targets: Arc<RwLock<BTreeMap<PathBuf, Change>>>,
    watched: Vec<PathBuf>,
}

impl FileWatch {
    fn new(tx: mpsc::UnboundedSender<Change>) -> Self {
        let targets: Arc<RwLock<BTreeMap<PathBuf, Change>>> = Arc::default();
        let lookup = targets.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if event.kind.is_access() {
                return;
            }
            let targets = lookup.read().expect("watch lock");
            for path in &event.paths {
                // the most specific watched directory containing the path decides
                if let Some((_, change)) =
                    targets.iter().rev().find(|(dir, _)| path.starts_with(dir))
                {
                    let _ = tx.send(change.clone());
                }
            }
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "file notifications unavailable; relying on polling");
                None
            }
        };
        Self {
            watcher,
            targets,
            watched: Vec::new(),
        }
    }

    /// (Re)watches the mapping (its directory, so replaced files and a ConfigMap's `..data`
    /// swap are seen) and the refs of every `file://` repository.
    fn watch(&mut self, config: &Path, mapping: &Mapping) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for path in self.watched.drain(..) {
            let _ = watcher.unwatch(&path);
        }
        let mut targets = BTreeMap::new();
        let config_dir = if config.is_dir() {
            config.to_path_buf()
        } else {
            config
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        };
        let config_dir = std::fs::canonicalize(&config_dir).unwrap_or(config_dir);
        let mut watch =
            |path: PathBuf, mode: RecursiveMode, change: Change| match watcher.watch(&path, mode) {
                Ok(()) => {
                    self.watched.push(path.clone());
                    targets.insert(path, change);
                }
                Err(e) => warn!(path = %path.display(), error = %e, "cannot watch"),
            };
        watch(config_dir, RecursiveMode::NonRecursive, Change::Config);
        for repo in &mapping.repositories {
            let Some(dir) = repo.url.strip_prefix("file://") else {
                continue;
            };
            let dir = PathBuf::from(dir);
            let git_dir = if dir.join(".git").is_dir() {
                dir.join(".git")
            } else {
                dir
            };
            let git_dir = std::fs::canonicalize(&git_dir).unwrap_or(git_dir);
            let change = Change::Repository(repo.name.clone());
            watch(
                git_dir.join("refs"),
                RecursiveMode::Recursive,
                change.clone(),
            );
            // packed-refs and HEAD live at the top of the git directory
            watch(git_dir, RecursiveMode::NonRecursive, change);
        }
        *self.targets.write().expect("watch lock") = targets;
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

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_refreshes_coalesces_into_one_pending_wake() {
        let shared = Shared::new(Mapping {
            repositories: vec![Repository {
                name: "r".into(),
                url: "file:///x".into(),
                branch: "main".into(),
                interval: None,
                auth_secret: None,
                webhook_secret: None,
            }],
            ..Mapping::default()
        });
        let trigger = shared.trigger("r").expect("trigger");
        for _ in 0..50 {
            shared.refresh("r");
        }
        // one stored permit: the first wait returns at once, the second does not
        tokio::time::timeout(Duration::from_millis(10), trigger.notified())
            .await
            .expect("a pending wake");
        assert!(
            tokio::time::timeout(Duration::from_millis(10), trigger.notified())
                .await
                .is_err()
        );
        shared.refresh("unknown");
    }

    #[test]
    fn the_delivery_log_keeps_the_newest_hundred() {
        let shared = Shared::new(Mapping::default());
        for i in 0..120 {
            shared.record(DeliveryRecord {
                id: i.to_string(),
                provider: "github".into(),
                event: "push".into(),
                received: String::new(),
                repositories: vec![],
                branch: None,
                commit: None,
                matched: vec![],
                action: String::new(),
                status: 202,
            });
        }
        let log = shared.deliveries.lock().expect("lock");
        assert_eq!(log.len(), DELIVERY_LOG);
        assert_eq!(log[0].id, "119");
    }
}
