//! What is news, decided purely: a sync's pass or a run's change, held against what a
//! notification last knew of its subject, becomes the events it sends. Only transitions are
//! news: a sync that fails at every interval fails once, then recovers once. Each sent event
//! is remembered by (subject, revision, event), so a restart or a new leader sends nothing
//! twice.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::{EventKind, Notification};

/// How many sent events a notification remembers (the newest).
const KEEP: usize = 2000;

/// Where a sync stands, as far as its notifications are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub(crate) enum Condition {
    #[default]
    Fine,
    OutOfSync,
    Degraded,
    Failed,
}

impl Condition {
    /// The event that says the sync came to this condition.
    fn event(self) -> Option<EventKind> {
        match self {
            Self::Fine => None,
            Self::OutOfSync => Some(EventKind::OutOfSync),
            Self::Degraded => Some(EventKind::Degraded),
            Self::Failed => Some(EventKind::SyncFailed),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Fine => "Fine",
            Self::OutOfSync => "OutOfSync",
            Self::Degraded => "Degraded",
            Self::Failed => "Failed",
        }
    }

    fn bad(self) -> bool {
        matches!(self, Self::Degraded | Self::Failed)
    }
}

/// What a sync's pass came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncSeen {
    pub sync: String,
    /// The commit the pass was for (full sha; empty when none is known, as after a failed
    /// fetch).
    pub revision: String,
    /// The commit's subject line.
    pub title: String,
    pub condition: Condition,
    /// Synced and Healthy: what recovery means.
    pub healthy: bool,
    /// It applied a new revision.
    pub applied: bool,
    /// What went wrong, naming the object; or what the pass changed.
    pub message: String,
    pub pruned: Vec<String>,
    pub adopted: Vec<String>,
}

/// What happened to a run of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunSeen {
    pub pipeline: String,
    pub run: String,
    pub event: EventKind,
    pub revision: String,
    pub title: String,
    pub message: String,
}

/// Something to tell: one event about one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Happened {
    pub event: EventKind,
    /// `sync web` or `pipeline build run build-x7k2`.
    pub subject: String,
    pub revision: String,
    pub title: String,
    pub message: String,
    /// The dashboard page.
    pub url: Option<String>,
    pub time: String,
    /// What it is remembered by: subject, revision, event.
    pub key: String,
}

impl Happened {
    /// The 7-character short sha.
    pub(crate) fn short(&self) -> &str {
        &self.revision[..self.revision.len().min(7)]
    }
}

/// What a notification knows of its subjects: each sync's condition (and since when), and
/// the events it sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Known {
    #[serde(default)]
    pub syncs: BTreeMap<String, Standing>,
    /// Sent event keys, with when (for keeping the newest).
    #[serde(default)]
    pub sent: BTreeMap<String, String>,
    /// The alerts that fire (Alertmanager): `alertname/sync`.
    #[serde(default)]
    pub alerted: BTreeSet<String>,
}

/// A sync's condition, the revision it was seen at, and since when it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Standing {
    pub condition: Condition,
    pub revision: String,
    pub since: String,
    /// What went wrong, naming the object.
    #[serde(default)]
    pub message: String,
}

/// The key an event is remembered by.
fn key(subject: &str, revision: &str, event: EventKind) -> String {
    format!("{subject}@{revision}#{event}")
}

impl Known {
    /// The events a sync's pass is news of for `notification` (its `on` and globs), with
    /// the sync's standing updated. `base` is the dashboard's address.
    pub(crate) fn sync(
        &mut self,
        n: &Notification,
        seen: &SyncSeen,
        base: Option<&str>,
        now: &str,
    ) -> Vec<Happened> {
        if !n.follows(&seen.sync, false) {
            return Vec::new();
        }
        let was = self.syncs.get(&seen.sync).cloned().unwrap_or_default();
        let subject = format!("sync {}", seen.sync);
        let mut events = Vec::new();
        let now_condition = seen.condition;
        // a new revision failing again is news; the same failure at every interval is not
        let changed = now_condition != was.condition
            || (now_condition == Condition::Failed && seen.revision != was.revision);
        let mut standing = was.clone();
        if changed && let Some(event) = now_condition.event() {
            events.push((event, seen.message.clone()));
            // the next recovery is news, even at a revision that recovered before
            self.forget(&subject, &[EventKind::Recovered]);
            standing = Standing {
                condition: now_condition,
                revision: seen.revision.clone(),
                since: now.to_owned(),
                message: seen.message.clone(),
            };
        } else if now_condition == Condition::Fine && (seen.healthy || !was.condition.bad()) {
            // a failure or degradation ends only when Synced and Healthy
            if was.condition.bad() {
                events.push((EventKind::Recovered, format!("recovered: {}", seen.message)));
                // a later failure of the same revision is news again
                let failures = [
                    EventKind::SyncFailed,
                    EventKind::Degraded,
                    EventKind::OutOfSync,
                ];
                self.forget(&subject, &failures);
            }
            standing = Standing {
                condition: Condition::Fine,
                revision: seen.revision.clone(),
                since: if was.condition == Condition::Fine {
                    was.since.clone()
                } else {
                    now.to_owned()
                },
                message: String::new(),
            };
        }
        if seen.applied {
            events.push((EventKind::Synced, seen.message.clone()));
            if !seen.pruned.is_empty() {
                events.push((
                    EventKind::Pruned,
                    format!("pruned {}", seen.pruned.join(", ")),
                ));
            }
        }
        if !seen.adopted.is_empty() {
            events.push((
                EventKind::Adopted,
                format!("adopted {}", seen.adopted.join(", ")),
            ));
        }
        self.syncs.insert(seen.sync.clone(), standing);
        let url = base.map(|b| format!("{b}/syncs/{}", seen.sync));
        let (revision, title) = (&seen.revision, &seen.title);
        events
            .into_iter()
            .filter_map(|(event, message)| {
                let happened = Happened {
                    event,
                    key: key(&subject, revision, event),
                    subject: subject.clone(),
                    revision: revision.clone(),
                    title: title.clone(),
                    message,
                    url: url.clone(),
                    time: now.to_owned(),
                };
                self.news(n, happened)
            })
            .collect()
    }

    /// Forgets that `events` of `subject` were sent, at any revision: they are news again.
    fn forget(&mut self, subject: &str, events: &[EventKind]) {
        let prefix = format!("{subject}@");
        self.sent.retain(|k, _| {
            !(k.starts_with(&prefix) && events.iter().any(|e| k.ends_with(&format!("#{e}"))))
        });
    }

    /// The event a run's change is news of for `notification`, if any.
    pub(crate) fn run(
        &mut self,
        n: &Notification,
        seen: &RunSeen,
        base: Option<&str>,
        now: &str,
    ) -> Option<Happened> {
        if !n.follows(&seen.pipeline, true) {
            return None;
        }
        let subject = format!("pipeline {} run {}", seen.pipeline, seen.run);
        let url = base.map(|b| format!("{b}/pipelines/{}/runs/{}", seen.pipeline, seen.run));
        let happened = Happened {
            event: seen.event,
            key: key(&subject, &seen.revision, seen.event),
            subject,
            revision: seen.revision.clone(),
            title: seen.title.clone(),
            message: seen.message.clone(),
            url,
            time: now.to_owned(),
        };
        self.news(n, happened)
    }

    /// An event the notification wants and has not sent, now remembered as sent.
    fn news(&mut self, n: &Notification, happened: Happened) -> Option<Happened> {
        if !n.on.contains(&happened.event) || self.sent.contains_key(&happened.key) {
            return None;
        }
        self.sent
            .insert(happened.key.clone(), happened.time.clone());
        while self.sent.len() > KEEP {
            let oldest = self
                .sent
                .iter()
                .min_by(|a, b| a.1.cmp(b.1))
                .map(|(k, _)| k.clone())
                .expect("a non-empty map has a minimum");
            self.sent.remove(&oldest);
        }
        Some(happened)
    }

    /// The syncs whose condition is one of `conditions`: what an alert fires for.
    pub(crate) fn firing(&self, conditions: &BTreeSet<Condition>) -> Vec<(&str, &Standing)> {
        self.syncs
            .iter()
            .filter(|(_, s)| conditions.contains(&s.condition))
            .map(|(name, s)| (name.as_str(), s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SinkKind;

    fn notification(on: &[EventKind]) -> Notification {
        Notification {
            name: "chat".into(),
            kind: SinkKind::Webhook,
            secret_ref: "chat".into(),
            on: on.iter().copied().collect(),
            syncs: vec!["web-*".into()],
            pipelines: Vec::new(),
        }
    }

    fn seen(revision: &str, condition: Condition, healthy: bool) -> SyncSeen {
        SyncSeen {
            sync: "web-1".into(),
            revision: revision.into(),
            title: "a commit".into(),
            condition,
            healthy,
            applied: false,
            message: "Deployment web/web: refused".into(),
            pruned: Vec::new(),
            adopted: Vec::new(),
        }
    }

    fn events(known: &mut Known, n: &Notification, s: &SyncSeen) -> Vec<EventKind> {
        known
            .sync(n, s, Some("https://berth"), "2026-12-06T10:00:00Z")
            .into_iter()
            .map(|h| h.event)
            .collect()
    }

    #[test]
    fn a_failure_at_every_interval_is_told_once_then_its_recovery() {
        let n = notification(&EventKind::DEFAULT);
        let mut known = Known::default();
        assert!(events(&mut known, &n, &seen("a", Condition::Fine, true)).is_empty());
        for _ in 0..10 {
            let told = events(&mut known, &n, &seen("b", Condition::Failed, false));
            assert!(told.len() <= 1);
        }
        assert_eq!(known.sent.len(), 1, "one SyncFailed");
        // fixed but still rolling out: not recovered yet
        assert!(events(&mut known, &n, &seen("c", Condition::Fine, false)).is_empty());
        assert_eq!(
            events(&mut known, &n, &seen("c", Condition::Fine, true)),
            vec![EventKind::Recovered]
        );
        assert!(events(&mut known, &n, &seen("c", Condition::Fine, true)).is_empty());
        // failing again at a revision that failed before is news again
        assert_eq!(
            events(&mut known, &n, &seen("b", Condition::Failed, false)),
            vec![EventKind::SyncFailed]
        );
        // and so is recovering again at a revision that recovered before
        assert_eq!(
            events(&mut known, &n, &seen("c", Condition::Fine, true)),
            vec![EventKind::Recovered]
        );
        assert_eq!(
            events(&mut known, &n, &seen("c", Condition::Degraded, false)),
            vec![EventKind::Degraded]
        );
        assert_eq!(
            events(&mut known, &n, &seen("c", Condition::Fine, true)),
            vec![EventKind::Recovered]
        );
    }

    #[test]
    fn a_restart_sends_nothing_twice() {
        let n = notification(&EventKind::ALL);
        let mut known = Known::default();
        let mut applied = seen("a", Condition::Fine, true);
        applied.applied = true;
        applied.pruned = vec!["ConfigMap web/old".into()];
        assert_eq!(
            events(&mut known, &n, &applied),
            vec![EventKind::Synced, EventKind::Pruned]
        );
        // what the record holds is all a new process knows
        let restart = |known: &Known| -> Known {
            let text = serde_json::to_string(known).expect("serializes");
            serde_json::from_str(&text).expect("reads back")
        };
        let mut again = restart(&known);
        assert!(
            events(&mut again, &n, &applied).is_empty(),
            "applied again after a restart"
        );
        assert_eq!(
            events(&mut again, &n, &seen("b", Condition::Failed, false)),
            vec![EventKind::SyncFailed]
        );
        let mut again = restart(&again);
        assert!(events(&mut again, &n, &seen("b", Condition::Failed, false)).is_empty());
    }

    #[test]
    fn on_and_globs_filter_what_is_sent() {
        let n = notification(&[EventKind::Degraded]);
        let mut known = Known::default();
        assert!(events(&mut known, &n, &seen("a", Condition::Failed, false)).is_empty());
        assert_eq!(
            events(&mut known, &n, &seen("a", Condition::Degraded, false)),
            vec![EventKind::Degraded]
        );
        let mut other = seen("a", Condition::Failed, false);
        other.sync = "api".into();
        assert!(events(&mut known, &n, &other).is_empty());
        assert!(!known.syncs.contains_key("api"), "not followed, not kept");
        let run = RunSeen {
            pipeline: "build".into(),
            run: "build-x".into(),
            event: EventKind::RunFailed,
            revision: "a".into(),
            title: String::new(),
            message: "failed at step test".into(),
        };
        let all = notification(&[EventKind::RunFailed]);
        let first = known.run(&all, &run, None, "t");
        assert_eq!(
            first.map(|h| h.subject),
            Some("pipeline build run build-x".into())
        );
        assert!(known.run(&all, &run, None, "t").is_none(), "told once");
    }

    #[test]
    fn the_newest_sent_events_are_kept() {
        let n = notification(&[EventKind::RunFailed]);
        let mut known = Known::default();
        for i in 0..KEEP + 5 {
            let run = RunSeen {
                pipeline: "p".into(),
                run: format!("r{i}"),
                event: EventKind::RunFailed,
                revision: "a".into(),
                title: String::new(),
                message: String::new(),
            };
            let at = format!(
                "2026-12-06T{:02}:{:02}:{:02}Z",
                i / 3600,
                i / 60 % 60,
                i % 60
            );
            known.run(&n, &run, None, &at);
        }
        assert_eq!(known.sent.len(), KEEP);
        assert!(!known.sent.contains_key("pipeline p run r0@a#RunFailed"));
    }
}
