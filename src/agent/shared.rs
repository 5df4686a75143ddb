//! What the agent's parts share: the mapping in force, a wake-up per repository, the webhook
//! delivery log, the last mapping error and whether this replica leads. The HTTP server, file
//! watching and lease all work through it; it depends on nothing of theirs.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Notify;

use crate::config::Mapping;
use crate::telemetry::Refreshes;
use crate::ui::pages::PassRow;

/// How many webhook deliveries the delivery log keeps.
pub(crate) const DELIVERY_LOG: usize = 100;
/// How many delivery ids per provider are remembered to recognize replays.
pub(crate) const REMEMBERED_DELIVERIES: usize = 1000;

/// Webhook secrets by Secret name (the value of its key `secret`), as a watch keeps them.
pub(crate) type Secrets = Arc<HashMap<String, Vec<u8>>>;

pub(crate) use crate::webhook::DeliveryRecord;
use crate::webhook::PullRequestEvent;

/// State the agent's tasks and its HTTP server share.
pub(crate) struct Shared {
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
    leading: AtomicBool,
    /// How an agent task ended that should not have (a panic); `/healthz` reports it.
    failed_task: RwLock<Option<String>>,
    /// The webhook secrets in berth's namespace; `None` until the watch has listed them.
    secrets: tokio::sync::watch::Sender<Option<Secrets>>,
    /// Recent delivery ids, `provider/id`, oldest first.
    seen: Mutex<VecDeque<String>>,
    /// Moves whenever something the dashboard shows may have changed.
    changes: tokio::sync::watch::Sender<u64>,
    /// What the agent's passes did, per sync, for the dashboard.
    activity: Mutex<HashMap<String, Activity>>,
    /// Commit subjects by revision, as read from the mirrors (they never change).
    pub subjects: Mutex<HashMap<String, String>>,
    /// When the dashboard last fetched each repository.
    pub fetched: Mutex<HashMap<String, std::time::Instant>>,
    /// Pull request deliveries per repository, waiting for its loop's next pass.
    pull_requests: Mutex<HashMap<String, Vec<PullRequestEvent>>>,
    /// Repositories whose syncs have finished their first pass since the agent started.
    synced_once: tokio::sync::watch::Sender<std::collections::BTreeSet<String>>,
    /// Wake-ups asked of each repository's loop, and served (exported at `/metrics`).
    pub refreshes: Refreshes,
    /// The pull requests' previews, for the dashboard.
    pub previews: Arc<crate::preview::Board>,
    /// Syncs whose varsFrom or decryption source changed: their next pass applies.
    stale: Mutex<std::collections::BTreeSet<String>>,
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct State {
    pub shared: Arc<Shared>,
    pub ctx: crate::context::Context,
    pub max_webhook_bytes: usize,
    /// The dashboard's admin token, when actions are on.
    pub admin_token: Option<Arc<str>>,
    /// Flips when the server stops (long-lived responses end then).
    pub stop: tokio_util::sync::CancellationToken,
}

/// How many passes per sync the dashboard lists.
pub(crate) const PASSES_KEPT: usize = 10;

/// What the agent's recent passes of one sync did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Activity {
    /// Newest first.
    pub passes: VecDeque<PassRow>,
    /// What the newest pass that applied did to each object it changed (by object id);
    /// objects not named were unchanged.
    pub actions: HashMap<String, &'static str>,
}

impl Shared {
    pub(crate) fn new(mapping: Mapping, refreshes: Refreshes) -> Self {
        let shared = Self {
            mapping: RwLock::new(Arc::new(mapping)),
            triggers: RwLock::new(HashMap::new()),
            deliveries: Mutex::new(VecDeque::new()),
            config_error: RwLock::new(None),
            leading: AtomicBool::new(true),
            failed_task: RwLock::new(None),
            secrets: tokio::sync::watch::Sender::new(None),
            seen: Mutex::new(VecDeque::new()),
            changes: tokio::sync::watch::Sender::new(0),
            activity: Mutex::new(HashMap::new()),
            subjects: Mutex::new(HashMap::new()),
            fetched: Mutex::new(HashMap::new()),
            pull_requests: Mutex::new(HashMap::new()),
            synced_once: tokio::sync::watch::Sender::new(std::collections::BTreeSet::new()),
            refreshes,
            previews: Arc::default(),
            stale: Mutex::default(),
        };
        shared.reset_triggers();
        shared
    }

    /// Notes that a repository's syncs finished their first pass (whatever its result).
    pub(crate) fn synced_once(&self, repository: &str) {
        self.synced_once
            .send_if_modified(|done| done.insert(repository.to_owned()));
    }

    /// Waits, at most `patience`, until every repository with syncs has finished its first
    /// sync pass since start: the namespace, ServiceAccount and RBAC a pipeline runs with are
    /// often what those syncs create. Returns false when the patience ran out.
    pub(crate) async fn first_syncs(&self, patience: std::time::Duration) -> bool {
        let wanted: std::collections::BTreeSet<String> = self
            .mapping()
            .syncs
            .iter()
            .map(|s| s.repository.clone())
            .collect();
        let mut done = self.synced_once.subscribe();
        let all = done.wait_for(|done| wanted.is_subset(done));
        tokio::time::timeout(patience, all).await.is_ok()
    }

    pub(crate) fn mapping(&self) -> Arc<Mapping> {
        self.mapping.read().expect("mapping lock").clone()
    }

    /// One wake-up per repository of the mapping in force.
    pub(crate) fn reset_triggers(&self) {
        let mapping = self.mapping();
        let triggers = mapping
            .repositories
            .iter()
            .map(|r| (r.name.clone(), Arc::new(Notify::new())))
            .collect();
        *self.triggers.write().expect("trigger lock") = triggers;
    }

    pub(crate) fn trigger(&self, repository: &str) -> Option<Arc<Notify>> {
        self.triggers
            .read()
            .expect("trigger lock")
            .get(repository)
            .cloned()
    }

    /// Whether this replica does the work (holds the lease, or runs without election).
    pub(crate) fn is_leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    pub(crate) fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
    }

    /// Replaces the webhook secrets (the watch listed or changed them).
    pub(crate) fn set_secrets(&self, secrets: HashMap<String, Vec<u8>>) {
        self.secrets.send_replace(Some(Arc::new(secrets)));
    }

    /// The webhook secrets, waiting up to `patience` for the first list; `None` if they are
    /// not loaded by then.
    pub(crate) async fn secrets(&self, patience: std::time::Duration) -> Option<Secrets> {
        let mut rx = self.secrets.subscribe();
        let loaded = tokio::time::timeout(patience, rx.wait_for(Option::is_some)).await;
        loaded.ok()?.ok()?.clone()
    }

    /// Whether a delivery id was seen before (and remembers it if not). Deliveries without
    /// an id are never replays.
    pub(crate) fn replayed(&self, provider: &str, id: &str) -> bool {
        if id.is_empty() {
            return false;
        }
        let key = format!("{provider}/{id}");
        let mut seen = self.seen.lock().expect("delivery ids lock");
        if seen.contains(&key) {
            return true;
        }
        seen.push_back(key);
        if seen.len() > REMEMBERED_DELIVERIES {
            seen.pop_front();
        }
        false
    }

    /// Records a task that ended on its own.
    pub(crate) fn task_failed(&self, how: String) {
        *self.failed_task.write().expect("task lock") = Some(how);
    }

    /// How a task failed, if one did.
    pub(crate) fn failed_task(&self) -> Option<String> {
        self.failed_task.read().expect("task lock").clone()
    }

    /// Wakes a repository's task, and counts the request.
    pub(crate) fn refresh(&self, repository: &str) {
        if let Some(t) = self.trigger(repository) {
            self.refreshes.request(repository);
            t.notify_one();
        }
    }

    /// Marks a sync to apply on its next pass, whatever its commit (a source of it changed).
    pub(crate) fn mark_stale(&self, sync: &str) {
        self.stale
            .lock()
            .expect("stale lock")
            .insert(sync.to_owned());
    }

    /// Whether a sync was marked to apply; the mark is taken.
    pub(crate) fn take_stale(&self, sync: &str) -> bool {
        self.stale.lock().expect("stale lock").remove(sync)
    }

    /// Hands a pull request delivery to a repository's loop and wakes it.
    pub(crate) fn pull_request(&self, repository: &str, event: PullRequestEvent) {
        self.pull_requests
            .lock()
            .expect("pull request lock")
            .entry(repository.to_owned())
            .or_default()
            .push(event);
        self.refresh(repository);
    }

    /// The pull request deliveries for a repository since the last call, oldest first.
    pub(crate) fn take_pull_requests(&self, repository: &str) -> Vec<PullRequestEvent> {
        self.pull_requests
            .lock()
            .expect("pull request lock")
            .remove(repository)
            .unwrap_or_default()
    }

    /// Adds a delivery to the audit log, dropping the oldest beyond [`DELIVERY_LOG`].
    pub(crate) fn record(&self, delivery: DeliveryRecord) {
        {
            let mut log = self.deliveries.lock().expect("delivery lock");
            log.push_front(delivery);
            log.truncate(DELIVERY_LOG);
        }
        self.changed();
    }

    /// The delivery log, newest first.
    pub(crate) fn delivery_log(&self) -> Vec<DeliveryRecord> {
        self.deliveries
            .lock()
            .expect("delivery lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Tells the dashboard's live pages that something may have changed.
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Follows [`Shared::changed`].
    pub(crate) fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Records a pass of a sync: `actions` (object id, what was done) are kept when the pass
    /// applied, replacing those of the pass before.
    pub(crate) fn record_pass(
        &self,
        sync: &str,
        pass: PassRow,
        actions: Option<HashMap<String, &'static str>>,
    ) {
        {
            let mut all = self.activity.lock().expect("activity lock");
            let a = all.entry(sync.to_owned()).or_default();
            a.passes.push_front(pass);
            a.passes.truncate(PASSES_KEPT);
            if let Some(actions) = actions {
                a.actions = actions;
            }
        }
        self.changed();
    }

    /// What the agent's passes of `sync` did (empty before its first pass).
    pub(crate) fn activity(&self, sync: &str) -> Activity {
        self.activity
            .lock()
            .expect("activity lock")
            .get(sync)
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Repository;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_refreshes_coalesces_into_one_pending_wake() {
        let shared = Shared::new(
            Mapping {
                repositories: vec![Repository {
                    name: "r".into(),
                    url: crate::repo_url::RepoUrl::parse("file:///x").expect("url"),
                    branch: "main".into(),
                    interval: None,
                    auth_secret: None,
                    webhook_secret: None,
                    provider: None,
                    previews: false,
                }],
                ..Mapping::default()
            },
            Refreshes::default(),
        );
        let trigger = shared.trigger("r").expect("trigger");
        for _ in 0..50 {
            shared.refresh("r");
        }
        assert_eq!(shared.refreshes.requested("r"), 50, "each request counts");
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
        assert_eq!(
            shared.refreshes.requested("unknown"),
            0,
            "no loop, nothing asked"
        );
        // a pass that started after 50 requests serves them all, once
        shared.refreshes.served("r", 50);
        shared.refreshes.served("r", 20);
        assert_eq!(
            shared
                .refreshes
                .served
                .get_or_create(&crate::telemetry::RepositoryLabels {
                    repository: "r".into()
                })
                .get(),
            50
        );
    }

    #[test]
    fn the_delivery_log_keeps_the_newest_hundred() {
        let shared = Shared::new(Mapping::default(), Refreshes::default());
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

    #[test]
    fn a_delivery_id_is_a_replay_the_second_time_only() {
        let shared = Shared::new(Mapping::default(), Refreshes::default());
        assert!(!shared.replayed("github", "d-1"));
        assert!(shared.replayed("github", "d-1"));
        assert!(!shared.replayed("gitlab", "d-1"), "ids are per provider");
        assert!(!shared.replayed("github", "") && !shared.replayed("github", ""));
        for i in 0..REMEMBERED_DELIVERIES {
            shared.replayed("github", &i.to_string());
        }
        assert!(
            !shared.replayed("github", "d-1"),
            "the oldest ids are forgotten"
        );
    }
}
