//! Carrying out what a pass comes to, and the writes of the sync's record during a pass: the
//! objects a stage is about to own ([`reserve`]) and `Progressing` while it waits for health
//! ([`progressing`]). Nothing here decides; [`super::outcome::judge`] did.

use std::time::Instant;

use tracing::{info, warn};

use crate::context::Context;
use crate::diff::{self, Action};
use crate::git::Commit;
use crate::object::ObjectId;
use crate::status::{self, Health, Phase, SyncStatus};
use crate::telemetry::{HealthLabels, SyncLabels, SyncResult};
use crate::vocab::{Reason, RecordKind};
use crate::{config::Sync, events, store};

use super::outcome::{Passed, Verdict, judge};
use super::{Error, Mode, Report};

/// Judges a pass and carries the verdict out: the record, the Events, the metrics and the
/// log line. Returns the pass's report.
pub(crate) async fn record(
    ctx: &Context,
    sync: &Sync,
    mode: Mode,
    old: Option<SyncStatus>,
    passed: Passed,
    started: Instant,
) -> Report {
    let verdict = judge(old.as_ref(), &passed, mode, &store::now());
    let (plan, changes) = passed.result.unwrap_or_default();
    let mut report = Report {
        sync: sync.name.clone(),
        revision: verdict.revision.clone(),
        plan,
        changes,
        phase: verdict.phase,
        health: verdict.health,
        message: verdict.message.clone(),
        unhealthy: verdict.unhealthy.clone(),
        duration: started.elapsed(),
        status_error: None,
        inventory: None,
    };
    if !verdict.records {
        return report;
    }
    if let Some(why) = &verdict.unhealthy {
        info!(sync = %sync.name, health = %verdict.health, object = %why, "not healthy yet");
    }
    report.status_error = write(ctx, sync, &verdict).await;
    let record = (RecordKind::Sync, sync.name.as_str());
    for (reason, text) in &verdict.events {
        events::publish(&ctx.client, &ctx.namespace, record, *reason, text).await;
    }
    if report.phase == Phase::Failed {
        warn!(message = %report.message, "sync failed");
    }
    report.inventory = Some(verdict.inventory);
    count(ctx, sync, &verdict.counts, &report);
    health_gauge(ctx, &sync.name, verdict.health);
    log(sync, &report);
    report
}

/// Writes the verdict's record, if it changed. When that fails, the record is not true now:
/// the pass has failed, and says so where it still can (unless a newer pass wrote the record
/// meanwhile). Returns the error.
async fn write(ctx: &Context, sync: &Sync, verdict: &Verdict) -> Option<String> {
    let next = verdict.write.as_ref()?;
    let e = status::save(&ctx.store(), &sync.name, next).await.err()?;
    let text = format!("{}{e}", verdict.at);
    warn!(error = %text, "failed to record status");
    if !matches!(e, store::Error::Conflict { .. })
        && let Err(e) = status::mark_failed(&ctx.store(), &sync.name, &text, &store::now()).await
    {
        warn!(error = %e, "failed to mark the status Failed");
    }
    let record = (RecordKind::Sync, sync.name.as_str());
    events::publish(
        &ctx.client,
        &ctx.namespace,
        record,
        Reason::SyncFailed,
        &text,
    )
    .await;
    Some(e.to_string())
}

fn count(ctx: &Context, sync: &Sync, counts: &super::outcome::Counts, report: &Report) {
    let labels = SyncLabels {
        sync: sync.name.clone(),
    };
    let result = if report.failed() { "failed" } else { "synced" };
    let m = &ctx.metrics;
    m.syncs
        .get_or_create(&SyncResult {
            sync: sync.name.clone(),
            result: result.to_owned(),
        })
        .inc();
    m.sync_duration
        .get_or_create(&labels)
        .observe(report.duration.as_secs_f64());
    m.objects_applied
        .get_or_create(&labels)
        .inc_by(counts.applied);
    m.objects_pruned
        .get_or_create(&labels)
        .inc_by(counts.pruned);
    m.objects_adopted
        .get_or_create(&labels)
        .inc_by(counts.adopted);
}

/// Sets the `berth_sync_health` gauge: 1 for the sync's health, 0 for the others.
fn health_gauge(ctx: &Context, sync: &str, health: Health) {
    for h in [
        Health::Healthy,
        Health::Progressing,
        Health::Degraded,
        Health::Unknown,
    ] {
        let labels = HealthLabels {
            sync: sync.to_owned(),
            health: h.to_string(),
        };
        ctx.metrics
            .sync_health
            .get_or_create(&labels)
            .set(i64::from(h == health));
    }
}

fn log(sync: &Sync, r: &Report) {
    info!(
        sync = %sync.name,
        repository = %sync.repository,
        commit = %r.revision,
        status = %r.phase,
        created = r.changes.created.len(),
        configured = r.changes.configured.len(),
        unchanged = r.changes.unchanged,
        pruned = r.changes.pruned.len(),
        adopted = r.changes.adopted.len(),
        duration_ms = r.duration.as_millis() as u64,
        "sync finished"
    );
}

/// The record of a sync that has none yet, while a pass applies `commit`.
fn first(commit: &Commit) -> SyncStatus {
    SyncStatus {
        phase: Phase::OutOfSync,
        message: format!("applying revision {}", commit.short()),
        ..SyncStatus::default()
    }
}

/// Records, before a stage writes, that the sync is about to own the objects it creates or
/// adopts: a pass cut short (a crash, a lost lease) leaves them in the inventory, so the next
/// pass finishes or prunes them instead of leaking them. The rest of the record is left as the
/// last finished pass wrote it; `old` follows what is stored.
pub(crate) async fn reserve(
    ctx: &Context,
    sync: &Sync,
    commit: &Commit,
    old: &mut Option<SyncStatus>,
    entries: &[diff::Entry],
) -> Result<(), Error> {
    let owned = |id: &ObjectId| old.as_ref().is_some_and(|o| o.inventory.contains_key(id));
    let new: Vec<_> = entries
        .iter()
        .filter(|e| e.action != Action::Unchanged && !owned(&e.id))
        .map(|e| {
            let record = status::Record {
                api_version: e.manifest.api_version().to_owned(),
                revision: commit.id.clone(),
                ..status::Record::default()
            };
            (e.id.clone(), record)
        })
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let stored = old.get_or_insert_with(|| first(commit));
    stored.inventory.extend(new);
    stored.resource_version = status::save(&ctx.store(), &sync.name, stored).await?;
    Ok(())
}

/// Records that the sync is `Progressing` while a pass that applied a new revision (or
/// changed objects) waits for its objects to become Healthy: the record, the dashboard,
/// `berth status` and the health gauge say so from the moment the wait begins. The inventory
/// gains what the pass applied. A failure to write is logged; the pass goes on.
pub(crate) async fn progressing(
    ctx: &Context,
    sync: &Sync,
    commit: &Commit,
    old: &mut Option<SyncStatus>,
    applied: &[(ObjectId, status::Record)],
    waiting: &str,
) {
    let stored = old.get_or_insert_with(|| first(commit));
    if stored.health == Health::Progressing {
        return;
    }
    stored.health = Health::Progressing;
    stored.message = format!("revision {}: {waiting}", commit.short());
    stored.inventory.extend(applied.iter().cloned());
    stored.last_sync = store::now();
    match status::save(&ctx.store(), &sync.name, stored).await {
        Ok(version) => stored.resource_version = version,
        Err(e) => warn!(sync = %sync.name, error = %e, "failed to record Progressing"),
    }
    health_gauge(ctx, &sync.name, Health::Progressing);
}
