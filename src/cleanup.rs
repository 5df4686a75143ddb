//! Cleanup: cron-scheduled deletion of old finished pipeline runs, by age and by count, never a
//! running one. [`select`] decides (pure); [`sweep`] lists, deletes and records;
//! [`run_scheduled`] fires each rule at its schedule.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, DynamicObject, ListParams};
use kube::runtime::wait::await_condition;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::cluster::{api_message, is_not_found};
use crate::config::{CleanupRule, Mapping};
use crate::context::Context;
use crate::events;
use crate::pipelines::{RunInfo, is_finished, workflow_api_message, workflows};
use crate::store::{self, Fields, Store};
use crate::telemetry::RuleLabels;
use crate::vocab::{
    FIELD_MANAGER, LAST_SYNC, MANAGED_BY, MANAGER_VALUE, MESSAGE, PIPELINE_LABEL, Reason,
    RecordKind, STATUS,
};

/// How long deleted runs may take to disappear before they count as stuck (a finalizer, such as
/// Argo's artifact garbage collection, holding them).
pub(crate) const STUCK_AFTER: Duration = Duration::from_secs(10);
/// How many deleted runs are watched at once while they disappear.
const WATCHED_AT_ONCE: usize = 16;

/// A run chosen for deletion and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Selected {
    pub run: RunInfo,
    pub reason: String,
}

/// Chooses the runs a rule deletes. Only finished runs (phase Succeeded, Failed or Error) are
/// candidates; Running, Pending and phase-less runs never are. A run goes when it finished
/// longer than `olderThan` ago, or when it is beyond the newest `keepLast` finished runs of its
/// pipeline and branch; with both set, either suffices. Runs already being deleted are skipped.
pub(crate) fn select(runs: &[RunInfo], rule: &CleanupRule, now: Timestamp) -> Vec<Selected> {
    let mut groups: BTreeMap<(&str, &str), Vec<&RunInfo>> = BTreeMap::new();
    for run in runs {
        if is_finished(&run.phase) && run.deleting.is_none() {
            groups
                .entry((&run.pipeline, &run.branch))
                .or_default()
                .push(run);
        }
    }
    let mut out = Vec::new();
    for group in groups.values_mut() {
        // newest first: by finish time, then creation, then name
        group.sort_by(|a, b| {
            (b.finished.or(b.created), &b.name).cmp(&(a.finished.or(a.created), &a.name))
        });
        for (index, run) in group.iter().enumerate() {
            let too_many = rule.keep_last.is_some_and(|keep| index >= keep);
            let age = run.finished.map(|f| now.duration_since(f));
            let too_old = match (rule.older_than, age) {
                (Some(limit), Some(age)) => {
                    jiff::SignedDuration::try_from(limit).is_ok_and(|limit| age > limit)
                }
                _ => false,
            };
            let reason = match (too_many, too_old) {
                (true, _) => format!(
                    "beyond the newest {} of {}@{}",
                    rule.keep_last.unwrap_or_default(),
                    run.pipeline,
                    run.branch
                ),
                (false, true) => format!(
                    "finished {} ago, older than {}",
                    human(age.unwrap_or_default()),
                    human(
                        jiff::SignedDuration::try_from(rule.older_than.unwrap_or_default())
                            .unwrap_or_default()
                    )
                ),
                (false, false) => continue,
            };
            out.push(Selected {
                run: (*run).clone(),
                reason,
            });
        }
    }
    out.sort_by(|a, b| a.run.name.cmp(&b.run.name));
    out
}

fn human(d: jiff::SignedDuration) -> String {
    let s = d.as_secs().max(0);
    match s {
        s if s >= 86_400 => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The label selector a rule lists runs with: its own, or every Workflow berth launched
/// (optionally of one pipeline).
pub(crate) fn selector(rule: &CleanupRule) -> String {
    let mut parts = vec![match &rule.selector {
        Some(s) => s.clone(),
        None => format!("{MANAGED_BY}={MANAGER_VALUE},{PIPELINE_LABEL}"),
    }];
    if let Some(p) = &rule.pipeline {
        parts.push(format!("{PIPELINE_LABEL}={p}"));
    }
    parts.join(",")
}

/// What one rule run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Outcome {
    /// When it ran (RFC 3339).
    pub at: String,
    /// Finished runs it looked at.
    pub considered: usize,
    /// `namespace/name: reason` of each run deleted (or, in a dry run, to be deleted).
    pub deleted: Vec<String>,
    /// Runs still present after [`STUCK_AFTER`] because a finalizer holds them.
    pub stuck: Vec<String>,
    pub errors: Vec<String>,
}

/// Runs a rule once: list, select, delete (background propagation), wait a bounded time for
/// the deletions, report runs a finalizer holds. In a dry run nothing is deleted or recorded.
pub(crate) async fn sweep(ctx: &Context, rule: &CleanupRule, dry_run: bool) -> Outcome {
    let now = Timestamp::now();
    let mut outcome = Outcome {
        at: store::now(),
        ..Outcome::default()
    };
    let namespace = rule.namespace.as_deref().unwrap_or(&ctx.namespace);
    // a rule for one pipeline deletes as that pipeline's account; others as the default one
    let client = match ctx.client_as(
        &format!("cleanup rule {:?}", rule.name),
        Some(namespace),
        rule.service_account.as_deref(),
    ) {
        Ok((client, _)) => client,
        Err(e) => {
            outcome.errors.push(e.to_string());
            return outcome;
        }
    };
    let api = workflows(&client, namespace);
    let runs: Vec<RunInfo> = match api
        .list(&ListParams::default().labels(&selector(rule)))
        .await
    {
        Ok(list) => list
            .items
            .iter()
            .map(|o| RunInfo::from_object(&serde_json::to_value(o).expect("objects serialize")))
            .collect(),
        Err(e) => {
            outcome.errors.push(format!(
                "failed to list runs in {namespace}: {}",
                workflow_api_message(&e)
            ));
            return outcome;
        }
    };
    outcome.considered = runs.iter().filter(|r| is_finished(&r.phase)).count();
    // runs an earlier sweep asked to delete and a finalizer still holds
    let held: Vec<RunInfo> = runs
        .iter()
        .filter(|r| r.deleting.is_some() && !r.finalizers.is_empty())
        .cloned()
        .collect();
    let chosen = select(&runs, rule, now);
    let line = |s: &Selected| format!("{}/{}: {}", s.run.namespace, s.run.name, s.reason);
    if dry_run {
        outcome.deleted = chosen.iter().map(line).collect();
        return outcome;
    }
    let mut pending = Vec::new();
    for s in &chosen {
        match api.delete(&s.run.name, &DeleteParams::background()).await {
            Ok(_) => {
                outcome.deleted.push(line(s));
                pending.push(s.run.name.clone());
            }
            Err(e) if is_not_found(&e) => outcome.deleted.push(line(s)),
            Err(e) => outcome.errors.push(format!(
                "failed to delete {namespace}/{}: {}",
                s.run.name,
                api_message(&e)
            )),
        }
    }
    // watch each deleted run until it is gone, for a bounded time: what is still there then is
    // held by a finalizer
    let deadline = tokio::time::Instant::now() + STUCK_AFTER;
    let gone = |name: String| {
        let api = api.clone();
        async move {
            let absent = |o: Option<&DynamicObject>| o.is_none();
            let watched = await_condition(api, &name, absent);
            let done = tokio::time::timeout_at(deadline, watched).await;
            (name, matches!(done, Ok(Ok(_))))
        }
    };
    let watched: Vec<(String, bool)> = futures::stream::iter(pending)
        .map(gone)
        .buffer_unordered(WATCHED_AT_ONCE)
        .collect()
        .await;
    let mut remaining: Vec<RunInfo> = Vec::new();
    for (name, _) in watched.into_iter().filter(|(_, gone)| !gone) {
        if let Ok(Some(o)) = api.get_opt(&name).await {
            let object = serde_json::to_value(&o).expect("objects serialize");
            remaining.push(RunInfo::from_object(&object));
        }
    }
    outcome.stuck = remaining.iter().chain(&held).map(stuck_line).collect();
    outcome
}

fn stuck_line(r: &RunInfo) -> String {
    format!(
        "{}/{} (finalizers: {})",
        r.namespace,
        r.name,
        r.finalizers.join(", ")
    )
}

// ---- status ---------------------------------------------------------------------------------

/// Data key of a rule's record: its last outcome (JSON).
const LAST: &str = "last";

/// A rule's recorded state.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct State {
    pub last_run: Option<Timestamp>,
    pub status: String,
    pub message: String,
    pub last: Outcome,
}

/// Reads every cleanup rule's state in berth's namespace.
///
/// # Errors
/// The API server cannot be read.
pub(crate) async fn list_states(store: &Store) -> Result<BTreeMap<String, State>, store::Error> {
    store.list(RecordKind::Cleanup, state_of).await
}

/// A rule's state; `None` when it never ran or cannot be read (then the rule runs as if new).
async fn load_state(store: &Store, rule: &str) -> Option<State> {
    store
        .get(RecordKind::Cleanup, rule)
        .await
        .ok()
        .flatten()
        .map(|cm| state_of(&cm))
}

fn state_of(cm: &ConfigMap) -> State {
    let annotations = store::annotations(cm);
    let get = |k: &str| annotations.get(k).cloned().unwrap_or_default();
    State {
        last_run: get(LAST_SYNC).parse().ok(),
        status: get(STATUS),
        message: get(MESSAGE),
        last: store::data_json(cm, LAST).unwrap_or_default(),
    }
}

/// A one-line summary of an outcome.
pub(crate) fn summary(outcome: &Outcome, dry_run: bool) -> String {
    let mut s = format!(
        "{} {} of {} finished runs",
        if dry_run { "would delete" } else { "deleted" },
        outcome.deleted.len(),
        outcome.considered
    );
    if !outcome.stuck.is_empty() {
        s.push_str(&format!(
            "; {} stuck in deletion: {}",
            outcome.stuck.len(),
            outcome.stuck.join(", ")
        ));
    }
    if !outcome.errors.is_empty() {
        s.push_str(&format!("; errors: {}", outcome.errors.join("; ")));
    }
    s
}

/// Records a rule run in `berth-cleanup-<rule>` and, when something happened, an Event.
pub(crate) async fn record(
    ctx: &Context,
    rule: &CleanupRule,
    outcome: &Outcome,
    previous: Option<&State>,
) {
    ctx.metrics
        .cleanup_deletions
        .get_or_create(&RuleLabels {
            rule: rule.name.clone(),
        })
        .inc_by(outcome.deleted.len() as u64);
    let failed = !outcome.errors.is_empty() || !outcome.stuck.is_empty();
    let message = summary(outcome, false);
    let fields = Fields {
        labels: BTreeMap::new(),
        annotations: BTreeMap::from([
            (
                STATUS.to_owned(),
                if failed { "Failed" } else { "Succeeded" }.to_owned(),
            ),
            (LAST_SYNC.to_owned(), outcome.at.clone()),
            (MESSAGE.to_owned(), message.clone()),
        ]),
        data: Some(BTreeMap::from([(
            LAST.to_owned(),
            serde_json::to_string(outcome).expect("outcomes serialize"),
        )])),
        resource_version: None,
    };
    if let Err(e) = ctx
        .store()
        .write(RecordKind::Cleanup, &rule.name, FIELD_MANAGER, fields)
        .await
    {
        warn!(rule = %rule.name, error = %e, "failed to record cleanup");
    }
    let publish = |reason, text: String| async move {
        let record = (RecordKind::Cleanup, rule.name.as_str());
        events::publish(&ctx.client, &ctx.namespace, record, reason, &text).await;
    };
    let newly_stuck: Vec<&str> = outcome
        .stuck
        .iter()
        .filter(|s| previous.is_none_or(|p| !p.last.stuck.contains(s)))
        .map(String::as_str)
        .collect();
    if !newly_stuck.is_empty() {
        let text = format!(
            "runs stuck in deletion after {}s (a finalizer holds them): {}",
            STUCK_AFTER.as_secs(),
            newly_stuck.join(", ")
        );
        publish(Reason::CleanupStuck, text).await;
    }
    if !outcome.errors.is_empty() {
        publish(Reason::CleanupFailed, outcome.errors.join("; ")).await;
    } else if !outcome.deleted.is_empty() {
        publish(Reason::CleanedUp, message).await;
    }
}

/// Fires every rule at its schedule until `stop` flips; a fire missed while the agent was down
/// runs once at start.
pub(crate) async fn run_scheduled(
    ctx: Context,
    mapping: Mapping,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for rule in mapping.cleanup {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        tasks.spawn(async move {
            let mut state = load_state(&ctx.store(), &rule.name).await;
            loop {
                let now = Timestamp::now();
                let Some(at) = rule.schedule.due(now, state.as_ref().and_then(|s| s.last_run)) else {
                    warn!(rule = %rule.name, "schedule has no next time");
                    return;
                };
                let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                let outcome = sweep(&ctx, &rule, false).await;
                info!(rule = %rule.name, deleted = outcome.deleted.len(), stuck = outcome.stuck.len(), errors = outcome.errors.len(), "cleanup finished");
                record(&ctx, &rule, &outcome, state.as_ref()).await;
                state = Some(State {
                    last_run: outcome.at.parse().ok().or(Some(Timestamp::now())),
                    last: outcome,
                    ..State::default()
                });
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Runs the named rules (all when empty) now, for `berth cleanup`.
pub(crate) async fn run_now(
    ctx: &Context,
    rules: &[&CleanupRule],
    dry_run: bool,
) -> Vec<(String, Outcome)> {
    let mut out = Vec::new();
    for rule in rules {
        let previous = load_state(&ctx.store(), &rule.name).await;
        let outcome = sweep(ctx, rule, dry_run).await;
        if !dry_run {
            record(ctx, rule, &outcome, previous.as_ref()).await;
        }
        out.push((rule.name.clone(), outcome));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(keep_last: Option<usize>, older_than: Option<Duration>) -> CleanupRule {
        CleanupRule {
            name: "r".into(),
            schedule: crate::schedule::Schedule::new("@hourly", "UTC").expect("hourly"),
            namespace: None,
            pipeline: None,
            selector: None,
            service_account: None,
            keep_last,
            older_than,
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn run(name: &str, phase: &str, finished_minutes_ago: Option<i64>, now: Timestamp) -> RunInfo {
        RunInfo {
            name: name.into(),
            namespace: "argo".into(),
            pipeline: "ci".into(),
            branch: "main".into(),
            phase: phase.into(),
            finished: finished_minutes_ago.map(|m| now - jiff::SignedDuration::from_mins(m)),
            created: None,
            deleting: None,
            finalizers: vec![],
        }
    }

    fn names(s: &[Selected]) -> Vec<&str> {
        s.iter().map(|s| s.run.name.as_str()).collect()
    }

    #[test]
    fn keep_last_deletes_the_oldest_finished_and_never_running_ones() {
        let now = ts("2026-11-25T12:00:00Z");
        let mut runs: Vec<RunInfo> = (0..12)
            .map(|i| {
                run(
                    &format!("r{i:02}"),
                    if i % 3 == 0 { "Failed" } else { "Succeeded" },
                    Some(100 - i),
                    now,
                )
            })
            .collect();
        runs.push(run("running", "Running", None, now));
        runs.push(run("pending", "Pending", None, now));
        runs.push(run("new", "", None, now));
        let chosen = select(&runs, &rule(Some(5), None), now);
        assert_eq!(
            names(&chosen),
            ["r00", "r01", "r02", "r03", "r04", "r05", "r06"]
        );
        assert!(
            chosen[0].reason.contains("beyond the newest 5 of ci@main"),
            "{}",
            chosen[0].reason
        );
    }

    #[test]
    fn keep_last_counts_per_pipeline_and_branch() {
        let now = ts("2026-11-25T12:00:00Z");
        let mut a = run("a", "Succeeded", Some(10), now);
        a.branch = "dev".into();
        let b = run("b", "Succeeded", Some(20), now);
        let c = run("c", "Succeeded", Some(5), now);
        let chosen = select(&[a, b, c], &rule(Some(1), None), now);
        assert_eq!(names(&chosen), ["b"]);
    }

    #[test]
    fn older_than_uses_finished_at_and_either_rule_suffices() {
        let now = ts("2026-11-25T12:00:00Z");
        let runs = vec![
            run("old", "Succeeded", Some(61), now),
            run("fresh", "Error", Some(59), now),
            run("no-finish-time", "Failed", None, now),
            run("old-running", "Running", None, now),
        ];
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(names(&select(&runs, &rule(None, hour), now)), ["old"]);
        assert!(
            select(&runs, &rule(None, hour), now)[0]
                .reason
                .starts_with("finished 1h1m ago")
        );
        let both = select(&runs, &rule(Some(1), hour), now);
        assert_eq!(names(&both), ["no-finish-time", "old"]);
    }

    #[test]
    fn runs_being_deleted_are_not_selected_again() {
        let now = ts("2026-11-25T12:00:00Z");
        let mut r = run("held", "Succeeded", Some(600), now);
        r.deleting = Some(now);
        assert!(select(&[r], &rule(Some(0), None), now).is_empty());
    }

    #[test]
    fn default_selector_only_matches_berth_runs() {
        assert_eq!(
            selector(&rule(Some(1), None)),
            "app.kubernetes.io/managed-by=berth,berth.dev/pipeline"
        );
        let mut r = rule(Some(1), None);
        r.pipeline = Some("ci".into());
        assert_eq!(
            selector(&r),
            "app.kubernetes.io/managed-by=berth,berth.dev/pipeline,berth.dev/pipeline=ci"
        );
    }
}
