//! A pipeline's status record, `berth-pipeline-<name>`: the last launched commit per branch and
//! the launcher's status (written by the launcher), and the recent runs (written by the run
//! watcher). Each writer applies only its own fields, so neither overwrites the other.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use tracing::warn;

use super::run::Run;
use super::workflow::Trigger;
use crate::context::Context;
use crate::store::{self, Error, Fields, Store};
use crate::vocab::{
    FIELD_MANAGER, LAST_SYNC, MESSAGE, PIPELINE_LABEL, PROVIDER_ERROR, RUN_WATCHER, RecordKind,
    STATUS,
};

/// Data key: the last launched commit per branch (JSON object).
const LAUNCHED: &str = "launched";
/// Data key: the recent runs (JSON array).
const RUNS: &str = "runs";
/// Data key: the last launched commit per open pull request (JSON object).
const PULL_REQUESTS: &str = "pullRequests";
/// Data key: per branch, pull request or tag, the last commit a `paths` filter skipped (JSON
/// object).
const SKIPPED: &str = "skipped";
/// Data key: the commit of every matching tag seen (JSON object); absent until the first look.
const TAGS: &str = "tags";

/// What berth keeps about a pipeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct State {
    /// Last launched commit per branch.
    pub launched: BTreeMap<String, String>,
    /// Last launched commit per pull request, until it closes.
    pub pulls: BTreeMap<u64, String>,
    /// The commit of each matching tag seen; `None` before the pipeline first looked at tags
    /// (the tags found then are noted, not launched).
    pub tags: Option<BTreeMap<String, String>>,
    /// The last commit a `paths` filter skipped, per branch, pull request or tag
    /// (`main`, `pull request #3`, `tag v1`).
    pub skipped: BTreeMap<String, String>,
    pub runs: Vec<Run>,
    pub status: String,
    pub message: String,
    /// The last failed request for a commit status (no token); empty once one succeeds.
    pub provider_error: String,
}

/// The launcher's verdict on its last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Launched,
    Failed,
    /// A commit no `paths` glob matched.
    Skipped,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Launched => "Launched",
            Self::Failed => "Failed",
            Self::Skipped => "Skipped",
        }
    }
}

/// Reads a pipeline's state; empty when it never ran.
///
/// # Errors
/// The API server cannot be read.
pub(crate) async fn load(store: &Store, pipeline: &str) -> Result<State, Error> {
    Ok(store
        .get(RecordKind::Pipeline, pipeline)
        .await?
        .map(|cm| state_of(&cm))
        .unwrap_or_default())
}

/// Every pipeline's state in berth's namespace, by pipeline name.
///
/// # Errors
/// The API server cannot be read.
pub(crate) async fn list(store: &Store) -> Result<BTreeMap<String, State>, Error> {
    store.list(RecordKind::Pipeline, state_of).await
}

fn state_of(cm: &ConfigMap) -> State {
    let annotations = store::annotations(cm);
    let get = |k: &str| annotations.get(k).cloned().unwrap_or_default();
    State {
        launched: store::data_json(cm, LAUNCHED).unwrap_or_default(),
        pulls: store::data_json(cm, PULL_REQUESTS).unwrap_or_default(),
        tags: store::data_json(cm, TAGS),
        skipped: store::data_json(cm, SKIPPED).unwrap_or_default(),
        runs: store::data_json(cm, RUNS).unwrap_or_default(),
        status: get(STATUS),
        message: get(MESSAGE),
        provider_error: get(PROVIDER_ERROR),
    }
}

fn labels(pipeline: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(PIPELINE_LABEL.to_owned(), pipeline.to_owned())])
}

/// Records the launcher's outcome (or keeps the last one) and what `change` does to the
/// launched commits. They are read first and written back whole; when they cannot be read
/// nothing is written, so a read error never forgets a launch.
pub(super) async fn record(
    ctx: &Context,
    pipeline: &str,
    outcome: Option<(Outcome, &str)>,
    change: impl FnOnce(&mut State),
) {
    let store = ctx.store();
    let mut state = match load(&store, pipeline).await {
        Ok(state) => state,
        Err(e) => {
            warn!(pipeline, error = %e, "failed to record pipeline status");
            return;
        }
    };
    change(&mut state);
    let (status, message) = match outcome {
        Some((o, m)) => (o.as_str().to_owned(), m.to_owned()),
        None => (state.status.clone(), state.message.clone()),
    };
    let mut data = BTreeMap::from([
        (LAUNCHED.to_owned(), json(&state.launched)),
        (PULL_REQUESTS.to_owned(), json(&state.pulls)),
        (SKIPPED.to_owned(), json(&state.skipped)),
    ]);
    if let Some(tags) = &state.tags {
        data.insert(TAGS.to_owned(), json(tags));
    }
    let fields = Fields {
        labels: labels(pipeline),
        annotations: BTreeMap::from([
            (STATUS.to_owned(), status),
            (MESSAGE.to_owned(), message),
            (LAST_SYNC.to_owned(), store::now()),
        ]),
        data: Some(data),
        resource_version: None,
    };
    if let Err(e) = store
        .write(RecordKind::Pipeline, pipeline, FIELD_MANAGER, fields)
        .await
    {
        warn!(pipeline, error = %e, "failed to record pipeline status");
    }
}

/// Records the launcher's outcome and, when `launched` is given, that commit as the last
/// launched one of its branch, pull request or tag.
pub(super) async fn record_status(
    ctx: &Context,
    pipeline: &str,
    outcome: Outcome,
    message: &str,
    launched: Option<(&Trigger, &str)>,
) {
    record(ctx, pipeline, Some((outcome, message)), |state| {
        if let Some((trigger, sha)) = launched {
            state.note(trigger, sha);
        }
    })
    .await;
}

impl State {
    /// Notes `sha` as launched for its trigger.
    pub(super) fn note(&mut self, trigger: &Trigger, sha: &str) {
        match trigger {
            Trigger::Branch(b) => {
                self.launched.insert(b.clone(), sha.to_owned());
            }
            Trigger::Pull(p) => {
                self.pulls.insert(p.number, sha.to_owned());
            }
            Trigger::Tag(t) => {
                self.tags
                    .get_or_insert_default()
                    .insert(t.clone(), sha.to_owned());
            }
        }
    }

    /// The commit last launched for a trigger.
    pub(super) fn last(&self, trigger: &Trigger) -> Option<&String> {
        match trigger {
            Trigger::Branch(b) => self.launched.get(b),
            Trigger::Pull(p) => self.pulls.get(&p.number),
            Trigger::Tag(t) => self.tags.as_ref().and_then(|tags| tags.get(t)),
        }
    }
}

/// A value as JSON for a record's data.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("maps serialize")
}

/// Records a pipeline's recent runs (the run watcher's field).
///
/// # Errors
/// The write is rejected.
pub(super) async fn record_runs(ctx: &Context, pipeline: &str, runs: &[Run]) -> Result<(), Error> {
    let fields = Fields {
        labels: labels(pipeline),
        annotations: BTreeMap::new(),
        data: Some(BTreeMap::from([(
            RUNS.to_owned(),
            serde_json::to_string(runs).expect("runs serialize"),
        )])),
        resource_version: None,
    };
    ctx.store()
        .write(RecordKind::Pipeline, pipeline, RUN_WATCHER, fields)
        .await
        .map(drop)
}
