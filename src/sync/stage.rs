//! The stages of a pass and the waves inside each. Definitions (Namespaces and CRDs) go
//! first, so the objects that live in them can be planned; the objects that waited for their
//! kind go last. Inside a stage, objects are applied by wave and kind, and a wave with changes
//! waits until the waves before it are Healthy (as Argo CD does).

use std::time::Duration;

use crate::apply::{self, ChangeSet};
use crate::cluster::Resources;
use crate::context::Context;
use crate::diff::{self, Action};
use crate::render::Manifest;

use super::wait;

/// How long a wave waits for the waves before it to become Healthy.
const WAVE_TIMEOUT: Duration = Duration::from_secs(300);

/// A stage of a pass, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Namespaces and CustomResourceDefinitions.
    Definitions,
    /// Every other object whose kind is served.
    Objects,
    /// Objects whose kind was not served when the pass began
    /// (`SkipDryRunOnMissingResource=true`), once the rest is applied and Healthy.
    WaitingKinds,
}

impl Stage {
    /// Whether an object is applied in the definitions stage.
    pub(crate) fn is_definition(m: &Manifest) -> bool {
        m.is_namespace() || m.is_crd()
    }

    /// "stage 2 of 3", counting only the stages this pass has.
    pub(crate) fn progress(self, with_waiting: bool) -> String {
        let total = if with_waiting { 3 } else { 2 };
        let n = match self {
            Self::Definitions => 1,
            Self::Objects => 2,
            Self::WaitingKinds => 3,
        };
        format!("stage {n} of {total}")
    }
}

/// Records an object that is not applied, and why.
pub(crate) fn fail_alone(changes: &mut ChangeSet, m: &Manifest, reason: String) {
    changes.failed.push(m.id());
    changes.errors.push(apply::Error::NotApplied {
        origin: m.origin(),
        id: m.id().to_string(),
        reason,
    });
}

/// What stops the waves after a group: the earlier waves' wait failed, or this wave failed.
fn stop_reason(wait: Option<String>, failed: bool, wave: i64, last: bool) -> Option<String> {
    match wait {
        Some(reason) => Some(reason),
        None if failed && !last => Some(format!("wave {wave} failed")),
        None => None,
    }
}

/// Applies entries sorted by wave and kind, one kind at a time. Before a wave with changes,
/// waits until every object of the earlier waves is Healthy. A wave that fails, or whose
/// predecessors become Degraded or stay unhealthy, stops the waves after it.
pub(crate) async fn apply_in_waves(
    ctx: &Context,
    sync: &str,
    client: &kube::Client,
    resources: &Resources,
    entries: &[diff::Entry],
    changes: &mut ChangeSet,
) {
    let wave = |e: &diff::Entry| apply::order_key(&e.manifest.object).0;
    let mut offset = 0;
    for group in entries.chunk_by(|a, b| wave(a) == wave(b)) {
        let writes = group.iter().any(|e| e.action != Action::Unchanged);
        let waited = if offset > 0 && writes {
            let earlier = &entries[..offset];
            let text = format!(
                "wave {}: waiting for {} objects of earlier waves to be Healthy",
                wave(&group[0]),
                earlier.len()
            );
            ctx.announce(sync, &text);
            let why = "an earlier wave";
            wait::healthy(ctx, client, resources, earlier, why, WAVE_TIMEOUT)
                .await
                .err()
        } else {
            None
        };
        let errors = changes.errors.len();
        if waited.is_none() {
            for kind in group.chunk_by(|a, b| {
                apply::order_key(&a.manifest.object) == apply::order_key(&b.manifest.object)
            }) {
                apply::apply(client, resources, kind, ctx.concurrency, changes).await;
            }
        }
        offset += group.len();
        let failed = changes.errors.len() > errors;
        let last = offset >= entries.len();
        let Some(reason) = stop_reason(waited, failed, wave(&group[0]), last) else {
            continue;
        };
        let rest = if failed {
            &entries[offset..]
        } else {
            &entries[offset - group.len()..]
        };
        for e in rest.iter().filter(|e| e.action != Action::Unchanged) {
            fail_alone(changes, &e.manifest, format!("not applied: {reason}"));
        }
        return;
    }
}
