//! Commit statuses: each run of a pipeline whose repository has a `provider` posts its state on
//! the commit it builds (`pending` at launch, `running` where the host has it, then `success`,
//! `failure` or `error`). Only transitions are posted, and each posted state is remembered in
//! the pipeline's record, so a restart never posts one twice. Posting never holds up a launch:
//! every run has its own task, which retries with backoff and records the last error.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::run::Run;
use crate::config::Pipeline;
use crate::context::Context;
use crate::provider::{Api, State, Status, Target, backoff};
use crate::store::{self, Fields};
use crate::vocab::{PIPELINE_LABEL, PROVIDER_ERROR, RecordKind, STATUS_REPORTER};

/// Data key of the pipeline's record: the state posted per run (JSON object).
const STATUSES: &str = "statuses";
/// How many runs' posted states a record keeps (the newest).
const KEEP: usize = 500;

/// What was posted for one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Posted {
    pub state: State,
    /// When, for keeping the newest.
    pub at: String,
}

/// The state a run's commit should show, from the phase the controller reports.
pub(crate) fn desired(run: &Run) -> State {
    match run.phase.as_str() {
        "Running" => State::Running,
        "Succeeded" => State::Success,
        "Failed" => State::Failure,
        "Error" => State::Error,
        // not picked up yet, or Pending
        _ => State::Pending,
    }
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

/// The status of a run in a state: context `berth/<pipeline>`, a description naming the failed
/// step, and the run's dashboard page when the public address is known.
pub(crate) fn status(pipeline: &str, run: &Run, state: State, external: Option<&str>) -> Status {
    let description = match state {
        State::Pending => "waiting to start".to_owned(),
        State::Running => "running".to_owned(),
        State::Success => match took(run) {
            Some(d) => format!("succeeded in {d}"),
            None => "succeeded".to_owned(),
        },
        State::Failure | State::Error if !run.failed_step.is_empty() => {
            format!("failed at step {}", run.failed_step)
        }
        State::Failure => "failed".to_owned(),
        State::Error => "ended in error".to_owned(),
    };
    Status {
        state,
        context: format!("berth/{pipeline}"),
        description,
        target_url: external.map(|base| format!("{base}/pipelines/{pipeline}/runs/{}", run.name)),
    }
}

/// How long a finished run took, as `1m 5s`.
fn took(run: &Run) -> Option<String> {
    let started: jiff::Timestamp = run.started.parse().ok()?;
    let finished: jiff::Timestamp = run.finished.parse().ok()?;
    let secs = finished.duration_since(started).as_secs().max(0);
    Some(match secs {
        s if s < 60 => format!("{s}s"),
        s => format!("{}m {}s", s / 60, s % 60),
    })
}

/// A pipeline's posted states (`None` until read from its record), behind the lock that
/// orders the record's writes.
type PostedStates = Arc<tokio::sync::Mutex<Option<BTreeMap<String, Posted>>>>;

/// Posts the commit statuses of the runs the watcher sees.
pub(crate) struct Reporter {
    ctx: Context,
    /// Per pipeline: the states posted, loaded from its record at first use. The lock also
    /// orders the record's writes.
    posted: Mutex<HashMap<String, PostedStates>>,
    /// Per run being reported: its newest view, which its task follows.
    runs: Mutex<HashMap<String, watch::Sender<Run>>>,
    tasks: Mutex<JoinSet<()>>,
}

impl Reporter {
    pub(crate) fn new(ctx: Context) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            posted: Mutex::default(),
            runs: Mutex::default(),
            tasks: Mutex::new(JoinSet::new()),
        })
    }

    /// Stops every run's task when the guard drops (the watcher returned).
    pub(crate) fn guard(self: &Arc<Self>) -> impl Drop + use<> {
        struct Guard(Arc<Reporter>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.tasks.lock().expect("tasks lock").abort_all();
            }
        }
        Guard(self.clone())
    }

    /// A run changed: its task posts what is due, started on first sight.
    pub(crate) fn observe(self: &Arc<Self>, pipeline: &Pipeline, target: &Target, run: Run) {
        let key = format!("{}/{}", pipeline.name, run.name);
        let mut runs = self.runs.lock().expect("runs lock");
        if let Some(tx) = runs.get(&key)
            && !tx.is_closed()
        {
            tx.send_replace(run);
            return;
        }
        let (tx, rx) = watch::channel(run);
        runs.insert(key.clone(), tx);
        drop(runs);
        let (me, pipeline, target) = (self.clone(), pipeline.name.clone(), target.clone());
        let mut tasks = self.tasks.lock().expect("tasks lock");
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            me.report(&pipeline, &target, rx).await;
            me.runs.lock().expect("runs lock").remove(&key);
        });
    }

    /// The posted states of a pipeline, behind the lock that orders its record's writes.
    fn posted_of(
        &self,
        pipeline: &str,
    ) -> Arc<tokio::sync::Mutex<Option<BTreeMap<String, Posted>>>> {
        self.posted
            .lock()
            .expect("posted lock")
            .entry(pipeline.to_owned())
            .or_default()
            .clone()
    }

    /// Follows one run until its final state is posted.
    async fn report(&self, pipeline: &str, target: &Target, mut rx: watch::Receiver<Run>) {
        let api = target.kind.api();
        let posted = self.posted_of(pipeline);
        let mut failures = 0u32;
        loop {
            let run = rx.borrow_and_update().clone();
            let want = desired(&run);
            let last = {
                let mut guard = posted.lock().await;
                if guard.is_none() {
                    match load(&self.ctx, pipeline).await {
                        Ok(map) => *guard = Some(map),
                        Err(e) => {
                            warn!(pipeline, error = %e, "cannot read the posted commit statuses; retrying");
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
                    .and_then(|m| m.get(&run.name))
                    .map(|p| p.state)
            };
            if !due(api, last, want) {
                if want.is_final() || rx.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let status = status(pipeline, &run, want, self.ctx.external_url.as_deref());
            let sent = async {
                let token = self.ctx.provider_token(target).await?;
                let call = api.status(target, &run.revision, &status);
                self.ctx.provider.send(target, &token, &call).await
            }
            .await;
            match sent {
                Ok(_) => {
                    info!(pipeline, run = %run.name, state = want.as_str(), "posted commit status");
                    failures = 0;
                    self.remember(pipeline, &posted, Some((&run.name, want)), None)
                        .await;
                }
                Err(e) => {
                    failures += 1;
                    warn!(pipeline, run = %run.name, state = want.as_str(), error = %e, "posting the commit status failed; retrying");
                    self.remember(pipeline, &posted, None, Some(e.to_string()))
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
        pipeline: &str,
        posted: &tokio::sync::Mutex<Option<BTreeMap<String, Posted>>>,
        state: Option<(&str, State)>,
        error: Option<String>,
    ) {
        let mut guard = posted.lock().await;
        let map = guard.get_or_insert_default();
        if let Some((run, state)) = state {
            map.insert(
                run.to_owned(),
                Posted {
                    state,
                    at: store::now(),
                },
            );
            while map.len() > KEEP {
                let oldest = map
                    .iter()
                    .min_by(|a, b| a.1.at.cmp(&b.1.at))
                    .map(|(k, _)| k.clone())
                    .expect("a non-empty map has a minimum");
                map.remove(&oldest);
            }
        }
        let fields = Fields {
            labels: BTreeMap::from([(PIPELINE_LABEL.to_owned(), pipeline.to_owned())]),
            annotations: BTreeMap::from([(PROVIDER_ERROR.to_owned(), error.unwrap_or_default())]),
            data: Some(BTreeMap::from([(
                STATUSES.to_owned(),
                serde_json::to_string(&*map).expect("a map serializes"),
            )])),
            resource_version: None,
        };
        if let Err(e) = self
            .ctx
            .store()
            .write(RecordKind::Pipeline, pipeline, STATUS_REPORTER, fields)
            .await
        {
            warn!(pipeline, error = %e, "cannot record the posted commit status");
        }
    }
}

/// The states posted for a pipeline's runs, from its record.
async fn load(ctx: &Context, pipeline: &str) -> Result<BTreeMap<String, Posted>, store::Error> {
    Ok(ctx
        .store()
        .get(RecordKind::Pipeline, pipeline)
        .await?
        .and_then(|cm| store::data_json(&cm, STATUSES))
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Kind;

    fn run(phase: &str) -> Run {
        Run {
            name: "ci-0123456".into(),
            branch: "main".into(),
            revision: "0123456789".into(),
            phase: phase.into(),
            started: "2026-12-01T10:00:00Z".into(),
            finished: "2026-12-01T10:01:05Z".into(),
            ..Run::default()
        }
    }

    #[test]
    fn phases_map_to_states() {
        for (phase, state) in [
            ("", State::Pending),
            ("Pending", State::Pending),
            ("Running", State::Running),
            ("Succeeded", State::Success),
            ("Failed", State::Failure),
            ("Error", State::Error),
        ] {
            assert_eq!(desired(&run(phase)), state, "{phase}");
        }
    }

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
        // a retried run runs again
        assert!(due(github, Some(State::Failure), State::Running));
        // GitLab and Bitbucket have one failed state
        assert!(!due(gitlab, Some(State::Failure), State::Error));
        assert!(!due(
            Kind::Bitbucket.api(),
            Some(State::Pending),
            State::Running
        ));
    }

    #[test]
    fn statuses_name_the_pipeline_the_failed_step_and_link_the_run_page() {
        let s = status(
            "web-ci",
            &run("Succeeded"),
            State::Success,
            Some("https://berth.example.com"),
        );
        assert_eq!(s.context, "berth/web-ci");
        assert_eq!(s.description, "succeeded in 1m 5s");
        assert_eq!(
            s.target_url.as_deref(),
            Some("https://berth.example.com/pipelines/web-ci/runs/ci-0123456")
        );
        let mut failed = run("Failed");
        failed.failed_step = "test: Error (exit code 2)".into();
        let s = status("web-ci", &failed, State::Failure, None);
        assert_eq!(s.description, "failed at step test: Error (exit code 2)");
        assert_eq!(s.target_url, None);
        assert_eq!(
            status("web-ci", &run(""), State::Pending, None).description,
            "waiting to start"
        );
    }
}
