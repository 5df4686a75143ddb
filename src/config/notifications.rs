//! The `notifications:` section: who is told what. Each entry names a sink (`slack`, `teams`,
//! `webhook`, `alertmanager`), the Secret with its URL, the events it wants and the syncs and
//! pipelines it follows (globs). Checked here, naming the file and line.

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::vocab::Reason;

use super::Error;
use super::values::{Names, Source, check_glob, check_name};

/// Something that happened to a sync or a run, as a notification's `on` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum EventKind {
    /// A pass failed.
    SyncFailed,
    /// The sync's objects are Degraded.
    Degraded,
    /// A check found the cluster differs from git.
    OutOfSync,
    /// A new revision was applied.
    Synced,
    /// Back to Synced and Healthy after a failure or a degradation.
    Recovered,
    /// Objects that left git were deleted.
    Pruned,
    /// Live objects were taken over.
    Adopted,
    RunFailed,
    RunSucceeded,
    Launched,
}

impl EventKind {
    pub(crate) const ALL: [Self; 10] = [
        Self::SyncFailed,
        Self::Degraded,
        Self::OutOfSync,
        Self::Synced,
        Self::Recovered,
        Self::Pruned,
        Self::Adopted,
        Self::RunFailed,
        Self::RunSucceeded,
        Self::Launched,
    ];

    /// What `on` means when it is not set: the failures, and recovery.
    pub(crate) const DEFAULT: [Self; 4] = [
        Self::SyncFailed,
        Self::Degraded,
        Self::Recovered,
        Self::RunFailed,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::SyncFailed => Reason::SyncFailed.as_str(),
            Self::Degraded => Reason::Degraded.as_str(),
            Self::OutOfSync => "OutOfSync",
            Self::Synced => Reason::Synced.as_str(),
            Self::Recovered => "Recovered",
            Self::Pruned => "Pruned",
            Self::Adopted => Reason::Adopted.as_str(),
            Self::RunFailed => Reason::RunFailed.as_str(),
            Self::RunSucceeded => Reason::RunSucceeded.as_str(),
            Self::Launched => Reason::Launched.as_str(),
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == text)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|e| e.as_str()).collect();
                format!("unknown event {text:?} (one of: {})", known.join(", "))
            })
    }

    /// Whether it is about a failure (shown as a warning).
    pub(crate) fn is_failure(self) -> bool {
        matches!(
            self,
            Self::SyncFailed | Self::Degraded | Self::OutOfSync | Self::RunFailed
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a notification is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SinkKind {
    /// A Slack incoming webhook, with Block Kit blocks.
    Slack,
    /// A Microsoft Teams Workflows webhook, with an Adaptive Card.
    Teams,
    /// Plain JSON, signed with the Secret's `secret` when it has one.
    Webhook,
    /// Alertmanager's `POST /api/v2/alerts`: an alert per failing sync, resolved on recovery.
    Alertmanager,
}

impl SinkKind {
    const ALL: [Self; 4] = [Self::Slack, Self::Teams, Self::Webhook, Self::Alertmanager];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Teams => "teams",
            Self::Webhook => "webhook",
            Self::Alertmanager => "alertmanager",
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| {
                format!("unknown type {text:?} (one of: slack, teams, webhook, alertmanager)")
            })
    }

    /// The events an alert can say: something that fires while it lasts, and recovery (which
    /// resolves it) or a failed run (an alert that ends by itself).
    fn says(self, event: EventKind) -> bool {
        self != Self::Alertmanager
            || matches!(
                event,
                EventKind::SyncFailed
                    | EventKind::Degraded
                    | EventKind::OutOfSync
                    | EventKind::Recovered
                    | EventKind::RunFailed
            )
    }
}

/// One entry of `notifications:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notification {
    pub name: String,
    pub kind: SinkKind,
    /// The Secret in berth's namespace: key `url`, and `secret` for signing webhooks.
    pub secret_ref: String,
    pub on: BTreeSet<EventKind>,
    /// Globs of sync names; every sync when empty.
    pub syncs: Vec<String>,
    /// Globs of pipeline names; every pipeline when empty.
    pub pipelines: Vec<String>,
}

impl Notification {
    /// Whether the notification follows this sync (or, with `run`, this pipeline).
    pub(crate) fn follows(&self, name: &str, run: bool) -> bool {
        let globs = if run { &self.pipelines } else { &self.syncs };
        globs.is_empty() || globs.iter().any(|g| glob_matches(g, name))
    }
}

fn glob_matches(pattern: &str, name: &str) -> bool {
    globset::Glob::new(pattern).is_ok_and(|g| g.compile_matcher().is_match(name))
}

/// The file format of one entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct NotificationFile {
    pub name: Spanned<String>,
    /// `slack` | `teams` | `webhook` | `alertmanager`.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub secret_ref: Spanned<String>,
    #[serde(default)]
    pub on: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub syncs: Vec<Spanned<String>>,
    #[serde(default)]
    pub pipelines: Vec<Spanned<String>>,
}

/// The names a notification's globs are checked against.
pub(super) struct Known<'a> {
    pub syncs: &'a [super::Sync],
    pub pipelines: &'a [super::Pipeline],
}

/// Checks one entry: its name (unique), type, Secret name and events, and that each glob is
/// valid and matches a sync (or pipeline) of the mapping, so a typo is not silence.
pub(super) fn notification(
    src: Source<'_>,
    n: NotificationFile,
    names: &mut Names,
    known: &Known<'_>,
) -> Result<Notification, Error> {
    let name = names.claim(src, &n.name)?;
    let kind = src.check(&n.kind, SinkKind::parse)?;
    let secret_ref = src.check(&n.secret_ref, |s| {
        check_name("secretRef", s).map(|()| s.to_owned())
    })?;
    let on = match &n.on {
        None => EventKind::DEFAULT
            .into_iter()
            .filter(|e| kind.says(*e))
            .collect(),
        Some(events) if events.is_empty() => {
            return Err(src.invalid(
                n.name.referenced,
                "`on` is empty: name the events to send, or leave it out for the failures and Recovered",
            ));
        }
        Some(events) => {
            let mut on = BTreeSet::new();
            for e in events {
                let event = src.check(e, EventKind::parse)?;
                if !kind.says(event) {
                    return Err(src.invalid(
                        e.referenced,
                        format!(
                            "an alertmanager notification sends alerts, which {event} is not \
                             (use SyncFailed, Degraded, OutOfSync, Recovered, RunFailed)"
                        ),
                    ));
                }
                on.insert(event);
            }
            on
        }
    };
    let syncs = globs(src, &n.syncs, "sync", known.syncs.iter().map(|s| &s.name))?;
    let pipelines = globs(
        src,
        &n.pipelines,
        "pipeline",
        known.pipelines.iter().map(|p| &p.name),
    )?;
    Ok(Notification {
        name,
        kind,
        secret_ref,
        on,
        syncs,
        pipelines,
    })
}

/// Valid globs that each match one of `names`.
fn globs<'a>(
    src: Source<'_>,
    patterns: &[Spanned<String>],
    what: &str,
    names: impl Iterator<Item = &'a String> + Clone,
) -> Result<Vec<String>, Error> {
    patterns
        .iter()
        .map(|p| {
            src.check(p, |glob| {
                check_glob(glob)?;
                if names.clone().any(|n| glob_matches(glob, n)) {
                    return Ok(glob.to_owned());
                }
                let defined: Vec<&str> = names.clone().map(String::as_str).collect();
                Err(format!(
                    "{glob:?} matches no {what} (defined: {})",
                    if defined.is_empty() {
                        "none".to_owned()
                    } else {
                        defined.join(", ")
                    }
                ))
            })
        })
        .collect()
}
