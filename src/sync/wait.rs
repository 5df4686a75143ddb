//! Waiting inside a pass: for objects to become Healthy (`wait`, waves, hooks), for new CRDs
//! to be Established and their kinds served, and for the kinds objects deferred to the end of
//! the pass are waiting for.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::apply::{self, ChangeSet};
use crate::cluster::Resources;
use crate::config::Sync;
use crate::context::Context;
use crate::diff::{self, Action};
use crate::health;
use crate::render::Manifest;
use crate::status::Health;

use super::Error;
use super::admission::{still_waiting, unservable};

/// How long a CRD may take to become Established before its stage fails.
const CRD_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until each object is Healthy; the error names the one that is Degraded, or that was
/// still not Healthy at the deadline.
pub(crate) async fn healthy(
    ctx: &Context,
    client: &kube::Client,
    resources: &Resources,
    objects: &[diff::Entry],
    what: &str,
    timeout: Duration,
) -> Result<(), String> {
    let targets: Vec<_> = objects
        .iter()
        .map(|e| (e.manifest.api_version().to_owned(), e.id.clone()))
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        let observed = diff::observe(client, resources, &targets, ctx.concurrency)
            .await
            .map_err(|e| e.to_string())?;
        let (h, who) = health::worst(
            objects
                .iter()
                .filter_map(|e| Some((e.id.to_string(), observed.live.get(&e.id)?))),
        );
        let who = who.map_or_else(String::new, |(id, why)| format!("{id}: {why}"));
        match h {
            Health::Degraded => return Err(format!("{what} is Degraded: {who}")),
            Health::Healthy | Health::Unknown => return Ok(()),
            Health::Progressing if Instant::now() >= deadline => {
                return Err(format!(
                    "{what} was not Healthy within {}s: {who}",
                    timeout.as_secs()
                ));
            }
            Health::Progressing => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// After the definitions stage applied CRDs: for the new CRDs of groups the pass has objects
/// of, waits until they are Established (watching them), and adds their kinds from their own
/// specs (Established means the API server serves them), without reading discovery again. A
/// CRD that nothing in the pass uses is not waited for: its record reads Progressing until it
/// is Established, and a `wait` sync waits for that with the rest. Returns the discovery to go
/// on with.
pub(crate) async fn definitions(
    client: &kube::Client,
    groups: &BTreeSet<String>,
    entries: &[diff::Entry],
    changes: &ChangeSet,
    mut resources: Resources,
) -> Result<Resources, Error> {
    let needed: Vec<&diff::Entry> = entries
        .iter()
        .filter(|e| e.manifest.is_crd() && e.action != Action::Unchanged)
        .filter(|e| !changes.failed.contains(&e.id))
        .filter(|e| {
            let group = e.manifest.object["spec"]["group"].as_str();
            group.is_some_and(|g| groups.contains(g))
        })
        .collect();
    if needed.is_empty() {
        return Ok(resources);
    }
    let names: Vec<String> = needed
        .iter()
        .map(|e| e.manifest.name().to_owned())
        .collect();
    apply::wait_established(client, &names, CRD_TIMEOUT).await?;
    for e in needed {
        resources.add_crd(&e.manifest.object);
    }
    Ok(resources)
}

/// Reads discovery again every `pause` until `served` holds for it or `deadline` passes;
/// returns the last discovery read either way.
async fn discover_until(
    client: &kube::Client,
    groups: &BTreeSet<String>,
    deadline: Instant,
    pause: Duration,
    served: impl Fn(&Resources) -> bool,
) -> Result<Resources, Error> {
    loop {
        let now = Resources::discover(client, groups).await?;
        if served(&now) || Instant::now() >= deadline {
            return Ok(now);
        }
        tokio::time::sleep(pause).await;
    }
}

/// What became of the objects that waited for their kind.
pub(crate) struct Later {
    /// Discovery read again, when the pass got as far as looking.
    pub resources: Option<Resources>,
    /// Now served: planned and applied in the last stage.
    pub ready: Vec<Manifest>,
    /// Still not served, or not tried, with why.
    pub still: Vec<(Manifest, String)>,
}

/// The objects that waited for their kind (`SkipDryRunOnMissingResource=true`), once the rest of
/// the pass is applied and Healthy (an operator that installs the kind is running): discovery
/// is read again every second, up to the sync's `timeout`, until their kinds are served.
/// Only a pass that applies, and applied the rest without failure, gets that far.
pub(crate) async fn later_kinds(
    ctx: &Context,
    client: &kube::Client,
    resources: &Resources,
    groups: &BTreeSet<String>,
    sync: &Sync,
    (applying, changes, applied): (bool, &ChangeSet, &[diff::Entry]),
    waiting: Vec<Manifest>,
) -> Result<Later, Error> {
    let fail_all = |waiting: Vec<Manifest>, why: &str| Later {
        resources: None,
        ready: Vec::new(),
        still: waiting
            .into_iter()
            .map(|m| (m, still_waiting(why)))
            .collect(),
    };
    if !applying {
        let why = "its kind is not served yet; a pass that applies tries it after the rest";
        return Ok(fail_all(waiting, why));
    }
    if !changes.errors.is_empty() {
        let why = "its kind is not served, and the rest of the pass failed";
        return Ok(fail_all(waiting, why));
    }
    let deadline = Instant::now() + sync.timeout;
    let text = format!(
        "waiting for the kinds of {} objects (SkipDryRunOnMissingResource)",
        waiting.len()
    );
    ctx.progress(&sync.name, &text);
    let rest = "the rest of the pass";
    if let Err(reason) = healthy(ctx, client, resources, applied, rest, sync.timeout).await {
        return Ok(fail_all(waiting, &format!("not applied: {reason}")));
    }
    let now = discover_until(client, groups, deadline, Duration::from_secs(1), |r| {
        unservable(&mut waiting.clone(), r, sync).is_empty()
    })
    .await?;
    let mut ready = waiting;
    let seconds = sync.timeout.as_secs();
    let still = unservable(&mut ready, &now, sync)
        .into_iter()
        .map(|(m, reason)| {
            let why = format!("{reason}, still {seconds}s after the rest of the pass was applied");
            (m, still_waiting(&why))
        })
        .collect();
    Ok(Later {
        resources: Some(now),
        ready,
        still,
    })
}
