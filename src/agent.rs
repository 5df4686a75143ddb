//! `berth run`: one task per repository polls at its interval (with jitter), syncs its syncs
//! when the commit changes, re-checks drift for `selfHeal` syncs, backs off on failure, and
//! stops after the pass in progress when shutdown is signalled.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, instrument, warn};

use crate::config::{Mapping, Repository};
use crate::sync::{self, Context, Mode};
use crate::{cleanup, pipelines};

/// Poll interval for repositories with `interval: 0` until notifications arrive (issue-free
/// fallback: never, they wait for a trigger).
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Delay before retrying after `failures` consecutive failed passes: 5s, 10s, 20s … 5 min.
pub fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// `interval` spread by up to ±10%, so many repositories do not poll in lockstep. `unit` is a
/// random number in [0, 1).
pub fn jitter(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(0.9 + 0.2 * unit.clamp(0.0, 1.0))
}

/// Resolves when SIGTERM or Ctrl-C arrives.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler can be installed");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs the agent until `shutdown` resolves; passes in progress finish first.
pub async fn run(ctx: Context, mapping: Mapping, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for repo in mapping.repositories.clone() {
        let (ctx, mapping, stop) = (ctx.clone(), mapping.clone(), stop_rx.clone());
        tasks.spawn(async move { poll(ctx, mapping, repo, stop).await });
    }
    if !mapping.pipelines.is_empty() {
        let (ctx, mapping, stop) = (ctx.clone(), mapping.clone(), stop_rx.clone());
        tasks.spawn(async move { pipelines::watch_runs(ctx, mapping, stop).await });
    }
    if !mapping.cleanup.is_empty() {
        let (ctx, mapping, stop) = (ctx.clone(), mapping.clone(), stop_rx.clone());
        tasks.spawn(async move { cleanup::run_scheduled(ctx, mapping, stop).await });
    }
    info!(
        repositories = mapping.repositories.len(),
        syncs = mapping.syncs.len(),
        pipelines = mapping.pipelines.len(),
        cleanup_rules = mapping.cleanup.len(),
        "agent started"
    );
    shutdown.await;
    info!("shutting down after the passes in progress");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    info!("agent stopped");
}

/// The loop of one repository.
#[instrument(skip_all, fields(repository = %repo.name))]
async fn poll(ctx: Context, mapping: Mapping, repo: Repository, mut stop: watch::Receiver<bool>) {
    let syncs: Vec<_> = mapping
        .syncs
        .iter()
        .filter(|s| s.repository == repo.name)
        .collect();
    let branches = mapping.branches(&repo);
    // Last commit each sync passed at; a sync is re-run when the commit moves, when it failed,
    // or (selfHeal) at every interval.
    let mut done: HashMap<String, String> = HashMap::new();
    let mut evaluated = pipelines::Evaluated::new();
    let mut failures = 0u32;
    loop {
        let fetched = match sync::credentials(&ctx, &repo).await {
            Ok(creds) => sync::fetch_branches(&ctx.cache_dir, &repo, creds, branches.clone()).await,
            Err(e) => Err(e),
        };
        let mut failed = false;
        match fetched {
            Ok(head) => {
                if let Some(commit) = head {
                    for s in &syncs {
                        let moved = done.get(&s.name) != Some(&commit.id);
                        if !moved && !s.self_heal {
                            continue;
                        }
                        let report = sync::run_once(&ctx, &repo, s, &commit, Mode::Apply).await;
                        if report.failed() {
                            failed = true;
                            done.remove(&s.name);
                        } else {
                            done.insert(s.name.clone(), commit.id.clone());
                        }
                    }
                }
                pipelines::pass(&ctx, &mapping, &repo, &mut evaluated).await;
            }
            Err(e) => {
                warn!(error = %e, "fetch failed");
                failed = true;
                for s in &syncs {
                    sync::record_failure(&ctx, s, &e, Mode::Apply).await;
                }
            }
        }
        failures = if failed { failures + 1 } else { 0 };
        let delay = match (failed, repo.interval) {
            (true, _) => backoff(failures),
            (false, Some(interval)) => jitter(interval, rand::random::<f64>()),
            // interval 0: no polling; only notifications trigger a pass
            (false, None) => Duration::MAX,
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = sleep(delay) => {}
        }
    }
}

async fn sleep(d: Duration) {
    if d == Duration::MAX {
        std::future::pending::<()>().await;
    } else {
        tokio::time::sleep(d).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(20), Duration::from_secs(300));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let i = Duration::from_secs(60);
        assert_eq!(jitter(i, 0.0), Duration::from_secs(54));
        assert_eq!(jitter(i, 0.5), Duration::from_secs(60));
        assert!(jitter(i, 0.999) < Duration::from_secs(66));
    }
}
