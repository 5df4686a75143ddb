//! Commit statuses of runs: each run of a pipeline whose repository has a `provider` posts its
//! state on the commit it builds (`pending` at launch, `running` where the host has it, then
//! `success`, `failure` or `error`). Which state is due and what it says is decided here;
//! [`crate::notify::statuses`] posts it on transitions only, remembered in the pipeline's
//! record, never holding up a launch.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::run::Run;
use crate::config::Pipeline;
use crate::context::Context;
use crate::notify::statuses::{Record, Reporter, Wanted};
use crate::provider::{State, Status, Target};
use crate::vocab::{PIPELINE_LABEL, RecordKind};

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

/// What a run's commit should show now, for the commit-status [`Reporter`]: remembered in the
/// pipeline's record by the run's name; a finished run's stream ends.
pub(crate) fn wanted(pipeline: &str, run: &Run, external: Option<&str>) -> (Record, Wanted) {
    let state = desired(run);
    let record = Record {
        kind: RecordKind::Pipeline,
        name: pipeline.to_owned(),
        labels: BTreeMap::from([(PIPELINE_LABEL.to_owned(), pipeline.to_owned())]),
    };
    let wanted = Wanted {
        key: run.name.clone(),
        sha: run.revision.clone(),
        status: status(pipeline, run, state, external),
        last: state.is_final(),
        opening: None,
        first_only: false,
    };
    (record, wanted)
}

/// Posts a run's state on its commit (its own task does; nothing waits here).
pub(crate) fn observe(
    reporter: &Arc<Reporter>,
    ctx: &Context,
    pipeline: &Pipeline,
    target: &Target,
    run: &Run,
) {
    let (record, wanted) = wanted(&pipeline.name, run, ctx.external_url.as_deref());
    reporter.observe(&run.name, &record, target, wanted);
}

#[cfg(test)]
mod tests {
    use super::*;

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
