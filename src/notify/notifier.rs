//! Delivers notifications: one task per entry of `notifications:`. Passes and runs hand it
//! what they came to ([`Seen`]) and go on; nothing waits for a sink. The task gathers a burst
//! (until it is quiet for [`QUIET`], at most [`WINDOW`]) into one message, decides what is news
//! against what its record knows ([`Known`]), delivers it with a timeout and retries with
//! backoff while the sink is down (what comes meanwhile joins the same message), and records
//! what it sent only once it was delivered. So a restart or a new leader sends nothing twice,
//! and a dead sink loses nothing once it is back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::events::{Happened, Known, RunSeen, SyncSeen};
use super::sinks::{self, Delivery};
use crate::cluster::api_message;
use crate::config::{Notification, SinkKind};
use crate::context::Context;
use crate::store::{self, Fields};
use crate::telemetry::NotificationLabels;
use crate::vocab::{LAST_SYNC, MESSAGE, NOTIFIER, RecordKind};

/// A burst ends when nothing new came for this long…
const QUIET: Duration = Duration::from_millis(150);
/// …or this long after it began.
const WINDOW: Duration = Duration::from_secs(1);
/// How often firing alerts are sent again, so Alertmanager keeps them firing.
const ALERT_REFRESH: Duration = Duration::from_secs(60);
/// The longest wait between retries of a sink that is down.
const MAX_RETRY: Duration = Duration::from_secs(60);
/// Data key of a notification's record: what it knows ([`Known`], JSON).
const KNOWN: &str = "known";

/// What a pass or a run came to.
#[derive(Debug, Clone)]
pub(crate) enum Seen {
    Sync(SyncSeen),
    Run(RunSeen),
}

/// Hands what happened to every notification's task.
pub(crate) struct Notifier {
    senders: Vec<mpsc::UnboundedSender<Vec<Seen>>>,
}

impl Notifier {
    /// Starts a task per notification into `set`; they end when `stop` is cancelled.
    pub(crate) fn start(
        ctx: &Context,
        notifications: &[Notification],
        stop: &CancellationToken,
        set: &mut tokio::task::JoinSet<()>,
    ) -> Arc<Self> {
        let mut senders = Vec::new();
        for n in notifications {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.push(tx);
            let task = Task {
                ctx: ctx.clone(),
                n: n.clone(),
                known: None,
                recorded: Known::default(),
                delivered_at: String::new(),
                outbox: Vec::new(),
                pending: Vec::new(),
            };
            set.spawn(task.run(rx, stop.clone()));
        }
        Arc::new(Self { senders })
    }

    /// Tells every notification; never waits.
    pub(crate) fn tell(&self, seen: Vec<Seen>) {
        if seen.is_empty() {
            return;
        }
        for tx in &self.senders {
            let _ = tx.send(seen.clone());
        }
    }
}

/// What one repository's pass came to, told as one arrival when the pass ends, so the syncs a
/// commit broke go out in one message however long the pass takes. A pass that goes on for
/// longer than [`PATIENCE`] tells what it has so far rather than hold it.
#[derive(Default)]
pub(crate) struct Batch(std::sync::Mutex<Option<(Instant, Vec<Seen>)>>);

/// The longest a pass holds what it came to.
const PATIENCE: Duration = Duration::from_secs(5);

impl Batch {
    /// Adds what a sync's pass came to.
    pub(crate) fn add(&self, notifier: &Notifier, seen: Seen) {
        let mut held = self.0.lock().expect("batch lock");
        let (since, list) = held.get_or_insert_with(|| (Instant::now(), Vec::new()));
        list.push(seen);
        if since.elapsed() >= PATIENCE
            && let Some((_, list)) = held.take()
        {
            notifier.tell(list);
        }
    }

    /// Tells what was held: the pass ended.
    pub(crate) fn flush(&self, notifier: &Notifier) {
        let held = self.0.lock().expect("batch lock").take();
        if let Some((_, list)) = held {
            notifier.tell(list);
        }
    }
}

/// One notification's delivery task.
struct Task {
    ctx: Context,
    n: Notification,
    /// What is known, once the record was read: what was sent, and what is being sent.
    known: Option<Known>,
    /// What the record holds: only what was delivered.
    recorded: Known,
    /// When the last message was delivered.
    delivered_at: String,
    /// What is to be sent, in order.
    outbox: Vec<Happened>,
    /// What came before the record could be read.
    pending: Vec<Seen>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Vec<Seen>>, stop: CancellationToken) {
        let alerting = self.n.kind == SinkKind::Alertmanager;
        let mut refresh = tokio::time::interval(ALERT_REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry_at: Option<Instant> = None;
        let mut failures = 0u32;
        loop {
            let mut refreshing = false;
            tokio::select! {
                () = stop.cancelled() => return,
                seen = rx.recv() => {
                    let Some(seen) = seen else { return };
                    self.pending.extend(seen);
                    gather(&mut rx, &mut self.pending).await;
                }
                _ = refresh.tick(), if alerting => refreshing = true,
                () = sleep_until(retry_at) => {}
            }
            if self.known.is_none() {
                match self.load().await {
                    Ok(known) => {
                        self.recorded = known.clone();
                        self.known = Some(known);
                    }
                    Err(e) => {
                        warn!(notification = %self.n.name, error = %e, "cannot read what the notification sent; retrying");
                        failures += 1;
                        retry_at = Some(Instant::now() + retry(failures));
                        continue;
                    }
                }
            }
            let changed = self.decide();
            let delivery = self.delivery(refreshing || changed || failures > 0);
            let Some(delivery) = delivery else {
                if changed {
                    self.record(None).await;
                }
                retry_at = None;
                continue;
            };
            match self.deliver(delivery).await {
                Ok(()) => {
                    self.count("delivered");
                    self.delivered_at = store::now();
                    failures = 0;
                    retry_at = None;
                    if !self.outbox.is_empty() {
                        info!(notification = %self.n.name, events = self.outbox.len(), "notification delivered");
                    }
                    self.outbox.clear();
                    self.record(None).await;
                }
                Err(e) => {
                    self.count("failed");
                    failures += 1;
                    let wait = retry(failures);
                    warn!(notification = %self.n.name, error = %e, retry_in_s = wait.as_secs(), "notification not delivered; retrying");
                    // alerts are sent again from what was delivered
                    if let Some(known) = self.known.as_mut() {
                        known.alerted = self.recorded.alerted.clone();
                    }
                    self.record(Some(&e)).await;
                    retry_at = Some(Instant::now() + wait);
                }
            }
        }
    }

    /// Turns what came into news, added to the outbox. True when what is known changed.
    fn decide(&mut self) -> bool {
        let Some(known) = self.known.as_mut() else {
            return false;
        };
        let before = known.clone();
        let base = self.ctx.external_url.as_deref();
        let now = store::now();
        for seen in self.pending.drain(..) {
            match &seen {
                Seen::Sync(s) => self.outbox.extend(known.sync(&self.n, s, base, &now)),
                Seen::Run(r) => self.outbox.extend(known.run(&self.n, r, base, &now)),
            }
        }
        *known != before
    }

    /// What to send now: the outbox as one message, or (Alertmanager) the alerts, when
    /// something changed or it is time to send them again.
    fn delivery(&mut self, alerts_due: bool) -> Option<Delivery> {
        if self.n.kind == SinkKind::Alertmanager {
            let known = self.known.as_mut()?;
            if !alerts_due && self.outbox.is_empty() {
                return None;
            }
            let base = self.ctx.external_url.as_deref();
            let now = jiff::Timestamp::now();
            let delivery = sinks::alerts(&self.n, known, &self.outbox, base, now);
            if delivery.is_none() {
                self.outbox.clear();
            }
            return delivery;
        }
        if self.outbox.is_empty() {
            return None;
        }
        // the secret is read at delivery; the message is built without it here
        Some(sinks::message(self.n.kind, &self.outbox, None))
    }

    /// Reads the Secret and posts. The error names the notification and the Secret, never its
    /// URL or secret.
    async fn deliver(&self, mut delivery: Delivery) -> Result<(), String> {
        let (url, secret) = sink_secret(&self.ctx, &self.n).await?;
        if self.n.kind == SinkKind::Webhook
            && let Some(secret) = secret
        {
            delivery = sinks::message(self.n.kind, &self.outbox, Some(&secret));
        }
        let url = format!("{}{}", url.trim_end_matches('/'), delivery.path);
        let url = if delivery.path.is_empty() {
            url.trim_end_matches('/').to_owned()
        } else {
            url
        };
        self.ctx
            .provider
            .post(&url, delivery.body, &delivery.headers)
            .await
            .map_err(|e| format!("{} ({}): {e}", self.n.name, self.n.kind.as_str()))
    }

    fn count(&self, result: &str) {
        let labels = NotificationLabels {
            notification: self.n.name.clone(),
            result: result.to_owned(),
        };
        self.ctx.metrics.notifications.get_or_create(&labels).inc();
    }

    fn record_name(&self) -> String {
        format!("notify-{}", self.n.name)
    }

    /// What the record knows.
    async fn load(&self) -> Result<Known, store::Error> {
        Ok(self
            .ctx
            .store()
            .get(RecordKind::Outbox, &self.record_name())
            .await?
            .and_then(|cm| store::data_json(&cm, KNOWN))
            .unwrap_or_default())
    }

    /// Writes what is known as sent, with the last delivery error (empty when delivered).
    /// While delivery fails, the record keeps what it had: what was not delivered is not
    /// remembered as sent.
    async fn record(&mut self, error: Option<&str>) {
        if error.is_none()
            && let Some(known) = &self.known
        {
            self.recorded = known.clone();
        }
        let annotations = BTreeMap::from([
            (MESSAGE.to_owned(), error.unwrap_or_default().to_owned()),
            (LAST_SYNC.to_owned(), self.delivered_at.clone()),
        ]);
        let data = Some(BTreeMap::from([(
            KNOWN.to_owned(),
            serde_json::to_string(&self.recorded).expect("what is known serializes"),
        )]));
        let fields = Fields {
            labels: BTreeMap::new(),
            annotations,
            data,
            resource_version: None,
        };
        let store = self.ctx.store();
        if let Err(e) = store
            .write(RecordKind::Outbox, &self.record_name(), NOTIFIER, fields)
            .await
        {
            warn!(notification = %self.n.name, error = %e, "cannot record what the notification sent");
        }
    }
}

/// A notification's URL and signing secret (keys `url` and `secret` of its Secret, in berth's
/// namespace). The error names the Secret, never what it holds.
///
/// # Errors
/// The Secret cannot be read, or has no `url`.
pub(crate) async fn sink_secret(
    ctx: &Context,
    n: &Notification,
) -> Result<(String, Option<String>), String> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let where_ = format!("Secret {}/{}", ctx.namespace, n.secret_ref);
    let secret = api
        .get(&n.secret_ref)
        .await
        .map_err(|e| format!("{where_}: {}", api_message(&e)))?;
    let data = secret.data.unwrap_or_default();
    let value = |k: &str| {
        data.get(k)
            .map(|v| String::from_utf8_lossy(&v.0).trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let url = value("url").ok_or_else(|| format!("{where_} has no key `url`"))?;
    Ok((url, value("secret")))
}

/// Adds what comes in a burst: until nothing came for [`QUIET`], at most [`WINDOW`].
async fn gather(rx: &mut mpsc::UnboundedReceiver<Vec<Seen>>, into: &mut Vec<Seen>) {
    let end = Instant::now() + WINDOW;
    loop {
        let quiet = (Instant::now() + QUIET).min(end);
        match tokio::time::timeout_at(quiet, rx.recv()).await {
            Ok(Some(seen)) => into.extend(seen),
            Ok(None) | Err(_) => return,
        }
    }
}

/// 1 s, 2 s, 4 s … up to a minute.
fn retry(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(MAX_RETRY)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_minute() {
        assert_eq!(retry(1), Duration::from_secs(1));
        assert_eq!(retry(3), Duration::from_secs(4));
        assert_eq!(retry(20), MAX_RETRY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_gathered_until_quiet() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let run = |i: usize| {
            Seen::Run(RunSeen {
                pipeline: "p".into(),
                run: format!("r{i}"),
                event: crate::config::EventKind::RunFailed,
                revision: String::new(),
                title: String::new(),
                message: String::new(),
            })
        };
        let sender = tokio::spawn(async move {
            for i in 0..5 {
                tx.send(vec![run(i)]).expect("open");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // after a quiet spell: the next burst
            tokio::time::sleep(Duration::from_millis(500)).await;
            tx.send(vec![run(9)]).expect("open");
        });
        let mut got = Vec::new();
        gather(&mut rx, &mut got).await;
        assert_eq!(
            got.len(),
            5,
            "five 100 ms apart are one burst; the next is not in it"
        );
        sender.await.expect("sender");
    }
}
