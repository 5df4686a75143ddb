//! The run watcher: follows the Workflows berth launched, records each pipeline's recent runs,
//! publishes an Event when a run finishes, resumes queued runs and hands each run to the
//! commit status [`Reporter`].

use std::collections::{BTreeSet, HashMap};

use futures::StreamExt as _;
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::Value;
use tracing::{info, warn};

use super::launch::resume_queued;
use super::report;
use super::run::{Run, record_run, run_of, workflows};
use super::state;
use crate::config::EventKind;
use crate::config::{Concurrency, Mapping, Pipeline};
use crate::context::Context;
use crate::events;
use crate::notify::events::RunSeen;
use crate::notify::notifier::{Notifier, Seen};
use crate::notify::statuses::Reporter;
use crate::vocab::{MANAGED_BY, MANAGER_VALUE, PIPELINE_LABEL, Reason, RecordKind};

/// Watches the Workflows berth launched in the pipelines' namespaces, records each pipeline's
/// last runs, emits an Event when a run finishes, and resumes queued runs. Returns when `stop`
/// flips.
pub(crate) async fn watch_runs(
    ctx: Context,
    mapping: Mapping,
    notifier: std::sync::Arc<Notifier>,
    stop: tokio_util::sync::CancellationToken,
) {
    let namespaces: BTreeSet<String> = mapping
        .pipelines
        .iter()
        .map(|p| p.namespace.clone().unwrap_or_else(|| ctx.namespace.clone()))
        .collect();
    let selector = format!("{MANAGED_BY}={MANAGER_VALUE},{PIPELINE_LABEL}");
    let streams = namespaces.into_iter().map(|ns| {
        let config = watcher::Config::default().labels(&selector);
        watcher(workflows(&ctx.client, &ns), config)
            .default_backoff()
            .applied_objects()
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let mut runs: HashMap<String, Vec<Run>> = HashMap::new();
    let reporter = Reporter::new(ctx.clone());
    let _stop_reports = reporter.guard();
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return,
            next = events.next() => next,
        };
        let Some(event) = next else { return };
        let object = match event {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(error = %e, "workflow watch error (retrying)");
                continue;
            }
        };
        let Some(pipeline) = mapping.pipelines.iter().find(|p| {
            object
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(PIPELINE_LABEL))
                == Some(&p.name)
        }) else {
            continue;
        };
        let value = serde_json::to_value(&object).expect("objects serialize");
        if let Some(target) = mapping
            .repositories
            .iter()
            .find(|r| r.name == pipeline.repository)
            .and_then(|r| r.provider.as_ref())
        {
            report::observe(&reporter, &ctx, pipeline, target, &run_of(&value));
        }
        if let Some(event) = observe_run(&ctx, pipeline, &value, &mut runs).await {
            tell(&ctx, &mapping, pipeline, &run_of(&value), event, &notifier).await;
        }
    }
}

/// Tells the notifications about a run that launched or finished, with its commit's subject.
async fn tell(
    ctx: &Context,
    mapping: &Mapping,
    pipeline: &Pipeline,
    run: &Run,
    event: EventKind,
    notifier: &Notifier,
) {
    let title = match mapping.repository(&pipeline.repository) {
        Some(repo) => {
            crate::source::resolve(&ctx.cache_dir, repo, &run.branch, Some(&run.revision))
                .await
                .map(|c| c.subject)
                .unwrap_or_default()
        }
        None => String::new(),
    };
    let message = match event {
        EventKind::Launched => format!("launched for {}", run.branch),
        _ if !run.failed_step.is_empty() => format!("failed at step {}", run.failed_step),
        _ => format!("{} ({})", run.phase, run.branch),
    };
    notifier.tell(vec![Seen::Run(RunSeen {
        pipeline: pipeline.name.clone(),
        run: run.name.clone(),
        event,
        revision: run.revision.clone(),
        title,
        message,
    })]);
}

/// Records a run's change in the pipeline's record. Returns what is news for the
/// notifications: a run new to the record (`Launched`), or one that finished now.
async fn observe_run(
    ctx: &Context,
    pipeline: &Pipeline,
    value: &Value,
    cache: &mut HashMap<String, Vec<Run>>,
) -> Option<EventKind> {
    let known = match cache.get(&pipeline.name) {
        Some(r) => r.clone(),
        None => state::load(&ctx.store(), &pipeline.name)
            .await
            .map(|s| s.runs)
            .unwrap_or_default(),
    };
    let run = run_of(value);
    let created = value["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or_default();
    let (updated, finished_now) = record_run(&known, run.clone(), created);
    if updated == known {
        cache.insert(pipeline.name.clone(), updated);
        return None;
    }
    if let Err(e) = state::record_runs(ctx, &pipeline.name, &updated).await {
        warn!(pipeline = %pipeline.name, error = %e, "failed to record run");
        return None;
    }
    let new =
        !known.iter().any(|r| r.name == run.name) && updated.iter().any(|r| r.name == run.name);
    cache.insert(pipeline.name.clone(), updated);
    if finished_now {
        let mut message = format!(
            "{} {} ({}@{})",
            run.name,
            run.phase,
            run.branch,
            &run.revision[..run.revision.len().min(7)]
        );
        if !run.failed_step.is_empty() {
            message.push_str(&format!(": failed at step {}", run.failed_step));
        }
        info!(pipeline = %pipeline.name, run = %run.name, phase = %run.phase, "run finished");
        if let Some(reason) = Reason::of_run(&run.phase) {
            events::publish(
                &ctx.client,
                &ctx.namespace,
                (RecordKind::Pipeline, &pipeline.name),
                reason,
                &message,
            )
            .await;
        }
        if pipeline.concurrency == Concurrency::Queue {
            let namespace = pipeline.namespace.as_deref().unwrap_or(&ctx.namespace);
            let resumed = match super::client_for(ctx, pipeline) {
                Ok((client, _)) => {
                    resume_queued(&client, namespace, &pipeline.name, &run.group()).await
                }
                Err(e) => Err(e.into()),
            };
            if let Err(e) = resumed {
                warn!(pipeline = %pipeline.name, error = %e, "failed to resume queued run");
            }
        }
    }
    if finished_now {
        return match run.phase.as_str() {
            "Succeeded" => Some(EventKind::RunSucceeded),
            "Failed" | "Error" => Some(EventKind::RunFailed),
            _ => None,
        };
    }
    (new && !super::run::is_finished(&run.phase)).then_some(EventKind::Launched)
}
