//! What the agent's parts share: the mapping in force, a wake-up per repository, the webhook
//! delivery log, the last mapping error and whether this replica leads. The HTTP server, file
//! watching and lease all work through it; it depends on nothing of theirs.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Notify;

use crate::config::Mapping;

/// How many webhook deliveries `/webhooks/deliveries` keeps.
pub(crate) const DELIVERY_LOG: usize = 100;

/// A webhook delivery as the audit log keeps it: no payload, no secret.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct DeliveryRecord {
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
}

impl Shared {
    pub(crate) fn new(mapping: Mapping) -> Self {
        let shared = Self {
            mapping: RwLock::new(Arc::new(mapping)),
            triggers: RwLock::new(HashMap::new()),
            deliveries: Mutex::new(VecDeque::new()),
            config_error: RwLock::new(None),
            leading: AtomicBool::new(true),
            failed_task: RwLock::new(None),
        };
        shared.reset_triggers();
        shared
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

    /// Records a task that ended on its own.
    pub(crate) fn task_failed(&self, how: String) {
        *self.failed_task.write().expect("task lock") = Some(how);
    }

    /// How a task failed, if one did.
    pub(crate) fn failed_task(&self) -> Option<String> {
        self.failed_task.read().expect("task lock").clone()
    }

    /// Wakes a repository's task.
    pub(crate) fn refresh(&self, repository: &str) {
        if let Some(t) = self.trigger(repository) {
            t.notify_one();
        }
    }

    /// Adds a delivery to the audit log, dropping the oldest beyond [`DELIVERY_LOG`].
    pub(crate) fn record(&self, delivery: DeliveryRecord) {
        let mut log = self.deliveries.lock().expect("delivery lock");
        log.push_front(delivery);
        log.truncate(DELIVERY_LOG);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Repository;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_refreshes_coalesces_into_one_pending_wake() {
        let shared = Shared::new(Mapping {
            repositories: vec![Repository {
                name: "r".into(),
                url: crate::repo_url::RepoUrl::parse("file:///x").expect("url"),
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
