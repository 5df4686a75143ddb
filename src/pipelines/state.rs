//! A pipeline's status record, `berth-pipeline-<name>`: the last launched commit per branch and
//! the launcher's status (written by the launcher), and the recent runs (written by the run
//! watcher). Each writer applies only its own fields, so neither overwrites the other.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use tracing::warn;

use super::run::Run;
use crate::context::Context;
use crate::store::{self, Error, Fields, Store};
use crate::vocab::{
    FIELD_MANAGER, LAST_SYNC, MESSAGE, PIPELINE_LABEL, RUN_WATCHER, RecordKind, STATUS,
};

/// Data key: the last launched commit per branch (JSON object).
const LAUNCHED: &str = "launched";
/// Data key: the recent runs (JSON array).
const RUNS: &str = "runs";

/// What berth keeps about a pipeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct State {
    /// Last launched commit per branch.
    pub launched: BTreeMap<String, String>,
    pub runs: Vec<Run>,
    pub status: String,
    pub message: String,
}

/// The launcher's verdict on its last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Launched,
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Launched => "Launched",
            Self::Failed => "Failed",
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
        runs: store::data_json(cm, RUNS).unwrap_or_default(),
        status: get(STATUS),
        message: get(MESSAGE),
    }
}

fn labels(pipeline: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(PIPELINE_LABEL.to_owned(), pipeline.to_owned())])
}

/// Records the launcher's outcome and, when `launched` is given, that commit as the branch's
/// last launched one. The launched commits are read first and written back whole; when they
/// cannot be read nothing is written, so a read error never forgets a launch.
pub(super) async fn record_status(
    ctx: &Context,
    pipeline: &str,
    outcome: Outcome,
    message: &str,
    launched: Option<(&str, &str)>,
) {
    let store = ctx.store();
    let mut state = match load(&store, pipeline).await {
        Ok(state) => state,
        Err(e) => {
            warn!(pipeline, error = %e, "failed to record pipeline status");
            return;
        }
    };
    if let Some((branch, sha)) = launched {
        state.launched.insert(branch.to_owned(), sha.to_owned());
    }
    let fields = Fields {
        labels: labels(pipeline),
        annotations: BTreeMap::from([
            (STATUS.to_owned(), outcome.as_str().to_owned()),
            (MESSAGE.to_owned(), message.to_owned()),
            (LAST_SYNC.to_owned(), store::now()),
        ]),
        data: Some(BTreeMap::from([(
            LAUNCHED.to_owned(),
            serde_json::to_string(&state.launched).expect("a map serializes"),
        )])),
        resource_version: None,
    };
    if let Err(e) = store
        .write(RecordKind::Pipeline, pipeline, FIELD_MANAGER, fields)
        .await
    {
        warn!(pipeline, error = %e, "failed to record pipeline status");
    }
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
