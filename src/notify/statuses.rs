//! Commit statuses, for anything whose state a commit shows: a pipeline's runs, a sync's
//! revisions. Each stream (a run, a sync) has its own task, which follows the newest state
//! wanted for it and posts it when it is a transition in the host's words. Each posted state
//! is remembered in a record (per key: a run's name, a revision), so a restart never posts one
//! twice. Posting never holds anything up: a task retries with backoff and records the last
//! error.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::context::Context;
use crate::provider::{Api, State, Status, Target, backoff};
use crate::store::{self, Fields};
use crate::vocab::{PROVIDER_ERROR, RecordKind, STATUS_REPORTER};

/// Data key of a record: the state posted per key (JSON object).
const STATUSES: &str = "statuses";
/// How many keys' posted states a record keeps (the newest).
const KEEP: usize = 500;

/// What was posted for one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Posted {
    pub state: State,
    /// When, for keeping the newest.
    pub at: String,
}

/// Whether `desired` is a transition to post after `last`: the host's word for it differs,
/// and it does not step back from running to pending.
pub(crate) fn due(api: &dyn Api, last: Option<State>, desired: State) -> bool {
    match last {
        None => true,
        Some(State::Running) if desired == State::Pending => false,
        Some(last) => api.state(last) != api.state(desired),
    }
}

/// Where a stream's posted states are remembered: a record, with the labels it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub kind: RecordKind,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// The newest state wanted on a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    /// What the posted state is remembered by: a run's name, a revision.
    pub key: String,
    pub sha: String,
    pub status: Status,
    /// Whether the stream ends once this state is posted (a finished run); a sync's stream
    /// goes on to its next revision.
    pub last: bool,
    /// A state to post first when nothing was posted for the key yet: a sync's `pending`,
    /// should its pass have ended before the task could post it.
    pub opening: Option<Status>,
    /// Post only when nothing was posted for the key yet (a sync's `pending` as a pass starts:
    /// a retry of a revision already told is not news).
    pub first_only: bool,
}

impl Wanted {
    /// What to post after `last`, if anything is due.
    pub(crate) fn due(&self, api: &dyn Api, last: Option<State>) -> Option<&Status> {
        if self.first_only && last.is_some() {
            return None;
        }
        let status = match (&self.opening, last) {
            (Some(opening), None) => opening,
            _ => &self.status,
        };
        due(api, last, status.state).then_some(status)
    }
}

/// A record's posted states (`None` until read), behind the lock that orders its writes.
type PostedStates = Arc<tokio::sync::Mutex<Option<BTreeMap<String, Posted>>>>;

/// Posts commit statuses, one task per stream.
pub(crate) struct Reporter {
    ctx: Context,
    /// Per record: the states posted, loaded at first use.
    posted: Mutex<HashMap<String, PostedStates>>,
    /// Per stream being reported: its newest wanted state, which its task follows.
    streams: Mutex<HashMap<String, watch::Sender<Wanted>>>,
    tasks: Mutex<JoinSet<()>>,
}

impl Reporter {
    pub(crate) fn new(ctx: Context) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            posted: Mutex::default(),
            streams: Mutex::default(),
            tasks: Mutex::new(JoinSet::new()),
        })
    }

    /// Stops every stream's task when the guard drops.
    pub(crate) fn guard(self: &Arc<Self>) -> impl Drop + use<> {
        struct Guard(Arc<Reporter>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.tasks.lock().expect("tasks lock").abort_all();
            }
        }
        Guard(self.clone())
    }

    /// A stream's wanted state changed: its task posts what is due, started on first sight.
    pub(crate) fn observe(
        self: &Arc<Self>,
        stream: &str,
        record: &Record,
        target: &Target,
        wanted: Wanted,
    ) {
        let key = format!("{}/{}/{stream}", record.kind.label(), record.name);
        let mut streams = self.streams.lock().expect("streams lock");
        if let Some(tx) = streams.get(&key)
            && !tx.is_closed()
        {
            tx.send_replace(wanted);
            return;
        }
        let (tx, rx) = watch::channel(wanted);
        streams.insert(key.clone(), tx);
        drop(streams);
        let (me, record, target) = (self.clone(), record.clone(), target.clone());
        let mut tasks = self.tasks.lock().expect("tasks lock");
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            me.report(&record, &target, rx).await;
            me.streams.lock().expect("streams lock").remove(&key);
        });
    }

    /// The posted states of a record, behind the lock that orders its writes.
    fn posted_of(&self, record: &Record) -> PostedStates {
        self.posted
            .lock()
            .expect("posted lock")
            .entry(record.kind.config_map(&record.name))
            .or_default()
            .clone()
    }

    /// Follows one stream: posts each due state, until a last one is posted.
    async fn report(&self, record: &Record, target: &Target, mut rx: watch::Receiver<Wanted>) {
        let api = target.kind.api();
        let posted = self.posted_of(record);
        let mut failures = 0u32;
        loop {
            let wanted = rx.borrow_and_update().clone();
            let last = {
                let mut guard = posted.lock().await;
                if guard.is_none() {
                    match load(&self.ctx, record).await {
                        Ok(map) => *guard = Some(map),
                        Err(e) => {
                            warn!(record = %record.name, error = %e, "cannot read the posted commit statuses; retrying");
                            drop(guard);
                            failures += 1;
                            tokio::time::sleep(Duration::from_secs(u64::from(failures.min(30))))
                                .await;
                            continue;
                        }
                    }
                }
                guard
                    .as_ref()
                    .and_then(|m| m.get(&wanted.key))
                    .map(|p| p.state)
            };
            let Some(status) = wanted.due(api, last) else {
                if wanted.last || rx.changed().await.is_err() {
                    return;
                }
                continue;
            };
            let state = status.state;
            let sent = async {
                let token = self.ctx.provider_token(target).await?;
                let call = api.status(target, &wanted.sha, status);
                self.ctx.provider.send(target, &token, &call).await
            }
            .await;
            let context = &status.context;
            match sent {
                Ok(_) => {
                    info!(context, key = %wanted.key, state = state.as_str(), "posted commit status");
                    failures = 0;
                    let done = Some((wanted.key.as_str(), state));
                    self.remember(record, &posted, done, None).await;
                }
                Err(e) => {
                    failures += 1;
                    warn!(context, key = %wanted.key, state = state.as_str(), error = %e, "posting the commit status failed; retrying");
                    self.remember(record, &posted, None, Some(e.to_string()))
                        .await;
                    // a refusal may pass once the token or the settings are fixed: retried
                    // slower than an outage
                    let cap = if e.retryable() { 60 } else { 300 };
                    let wait = backoff(failures, &e, Duration::from_secs(cap));
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        changed = rx.changed() => if changed.is_err() { return },
                    }
                }
            }
        }
    }

    /// Records a posted state (and clears the last error), or the last error.
    async fn remember(
        &self,
        record: &Record,
        posted: &tokio::sync::Mutex<Option<BTreeMap<String, Posted>>>,
        state: Option<(&str, State)>,
        error: Option<String>,
    ) {
        let mut guard = posted.lock().await;
        let map = guard.get_or_insert_default();
        if let Some((key, state)) = state {
            let at = store::now();
            map.insert(key.to_owned(), Posted { state, at });
            keep_newest(map);
        }
        let fields = Fields {
            labels: record.labels.clone(),
            annotations: BTreeMap::from([(PROVIDER_ERROR.to_owned(), error.unwrap_or_default())]),
            data: Some(BTreeMap::from([(
                STATUSES.to_owned(),
                serde_json::to_string(&*map).expect("a map serializes"),
            )])),
            resource_version: None,
        };
        let store = self.ctx.store();
        if let Err(e) = store
            .write(record.kind, &record.name, STATUS_REPORTER, fields)
            .await
        {
            warn!(record = %record.name, error = %e, "cannot record the posted commit status");
        }
    }
}

/// Drops the oldest entries beyond [`KEEP`].
fn keep_newest(map: &mut BTreeMap<String, Posted>) {
    while map.len() > KEEP {
        let oldest = map
            .iter()
            .min_by(|a, b| a.1.at.cmp(&b.1.at))
            .map(|(k, _)| k.clone())
            .expect("a non-empty map has a minimum");
        map.remove(&oldest);
    }
}

/// The states posted in a record.
async fn load(ctx: &Context, record: &Record) -> Result<BTreeMap<String, Posted>, store::Error> {
    Ok(ctx
        .store()
        .get(record.kind, &record.name)
        .await?
        .and_then(|cm| store::data_json(&cm, STATUSES))
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Kind;

    #[test]
    fn only_transitions_in_the_hosts_words_are_posted() {
        let (github, gitlab) = (Kind::GitHub.api(), Kind::GitLab.api());
        assert!(due(github, None, State::Pending));
        assert!(!due(github, Some(State::Pending), State::Pending));
        // GitHub has no running: pending already says it
        assert!(!due(github, Some(State::Pending), State::Running));
        assert!(due(gitlab, Some(State::Pending), State::Running));
        assert!(!due(gitlab, Some(State::Running), State::Pending));
        assert!(due(github, Some(State::Pending), State::Success));
        assert!(!due(github, Some(State::Success), State::Success));
        // a retried run runs again; a sync that degrades after success fails
        assert!(due(github, Some(State::Failure), State::Running));
        assert!(due(github, Some(State::Success), State::Failure));
        // GitLab and Bitbucket have one failed state
        assert!(!due(gitlab, Some(State::Failure), State::Error));
        assert!(!due(
            Kind::Bitbucket.api(),
            Some(State::Pending),
            State::Running
        ));
    }

    #[test]
    fn an_opening_state_goes_first_and_a_first_only_state_never_repeats() {
        let github = Kind::GitHub.api();
        let status = |state| Status {
            state,
            context: "berth/sync/web".into(),
            description: String::new(),
            target_url: None,
        };
        let finished = Wanted {
            key: "abc".into(),
            sha: "abc".into(),
            status: status(State::Failure),
            last: false,
            opening: Some(status(State::Pending)),
            first_only: false,
        };
        let state = |s: Option<&Status>| s.map(|s| s.state);
        assert_eq!(
            state(finished.due(github, None)),
            Some(State::Pending),
            "pending first"
        );
        assert_eq!(
            state(finished.due(github, Some(State::Pending))),
            Some(State::Failure)
        );
        assert_eq!(
            state(finished.due(github, Some(State::Failure))),
            None,
            "told once"
        );
        let starting = Wanted {
            status: status(State::Pending),
            opening: None,
            first_only: true,
            ..finished
        };
        assert_eq!(state(starting.due(github, None)), Some(State::Pending));
        assert_eq!(
            state(starting.due(github, Some(State::Failure))),
            None,
            "a retried revision is not pending again"
        );
    }

    #[test]
    fn a_record_keeps_the_newest_states() {
        let mut map: BTreeMap<String, Posted> = (0..KEEP + 3)
            .map(|i| {
                let at = format!("2026-12-01T10:{:02}:{:02}Z", i / 60, i % 60);
                (
                    format!("k{i}"),
                    Posted {
                        state: State::Success,
                        at,
                    },
                )
            })
            .collect();
        keep_newest(&mut map);
        assert_eq!(map.len(), KEEP);
        for gone in ["k0", "k1", "k2"] {
            assert!(!map.contains_key(gone), "{gone} is among the oldest");
        }
        assert!(map.contains_key(&format!("k{}", KEEP + 2)));
    }
}
