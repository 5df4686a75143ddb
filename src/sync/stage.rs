//! The stages of a pass and the waves inside each. Definitions (Namespaces and CRDs) go
//! first, so the objects that live in them can be planned; the objects that waited for their
//! kind go last. Objects that need nothing of the definitions go beside them, in a pass of
//! one wave. Inside a stage, objects are applied by wave and kind, and a wave with changes
//! waits until the waves before it are Healthy (as Argo CD does).

use std::time::Duration;

use crate::apply::{self, ChangeSet};
use crate::cluster::Resources;
use crate::context::Context;
use crate::diff::{self, Action};
use crate::render::Manifest;

use super::admission::Definition;
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

/// Splits the objects after the definitions into those that need nothing of them (neither a
/// Namespace nor a kind the definitions define) and the rest. Only a pass of one wave has
/// any of the first kind, since waves order objects across kinds: there, they are planned
/// and applied beside the definitions instead of after every CRD is created (megabytes an
/// API server takes seconds over) and Established.
pub(crate) fn beside_definitions(
    rest: Vec<Manifest>,
    definitions: &[Manifest],
    defined: &[Definition],
) -> (Vec<Manifest>, Vec<Manifest>) {
    if definitions.is_empty() {
        return (Vec::new(), rest);
    }
    let wave = |m: &Manifest| apply::order_key(&m.object).0;
    let first = wave(&definitions[0]);
    if !definitions.iter().chain(&rest).all(|m| wave(m) == first) {
        return (Vec::new(), rest);
    }
    rest.into_iter()
        .partition(|m| !defined.iter().any(|d| d.needed_by(m)))
}

/// Applies a definitions stage: the definitions by kind, and beside them (concurrently) the
/// objects that need nothing of them, by kind.
pub(crate) async fn apply_beside(
    ctx: &Context,
    sync: &str,
    (client, resources): (&kube::Client, &Resources),
    entries: &mut [diff::Entry],
    changes: &mut ChangeSet,
) {
    // a stable sort: each part stays in apply order
    entries.sort_by_key(|e| !Stage::is_definition(&e.manifest));
    let n = entries
        .iter()
        .filter(|e| Stage::is_definition(&e.manifest))
        .count();
    let (definitions, beside) = entries.split_at(n);
    let mut theirs = ChangeSet::default();
    tokio::join!(
        apply_in_waves(ctx, sync, client, resources, definitions, changes),
        apply_in_waves(ctx, sync, client, resources, beside, &mut theirs),
    );
    changes.absorb(theirs);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> Manifest {
        Manifest {
            object: serde_saphyr::from_str(text).expect("yaml"),
            file: "f.yaml".into(),
            line: 1,
            source: std::sync::Arc::from(text),
            hidden: Default::default(),
        }
    }

    fn names(ms: &[Manifest]) -> Vec<&str> {
        ms.iter().map(Manifest::name).collect()
    }

    fn crd() -> Manifest {
        manifest(
            "{apiVersion: apiextensions.k8s.io/v1, kind: CustomResourceDefinition, metadata: {name: widgets.example.com}, spec: {group: example.com, names: {kind: Widget, plural: widgets}}}",
        )
    }

    #[test]
    fn objects_needing_nothing_of_the_definitions_go_beside_them_in_a_pass_of_one_wave() {
        let definitions = vec![
            crd(),
            manifest("{apiVersion: v1, kind: Namespace, metadata: {name: fresh}}"),
        ];
        let defined: Vec<Definition> = definitions.iter().map(Definition::of).collect();
        let rest = vec![
            manifest(
                "{apiVersion: apps/v1, kind: Deployment, metadata: {name: controller, namespace: live}}",
            ),
            manifest(
                "{apiVersion: example.com/v1, kind: Widget, metadata: {name: w, namespace: live}}",
            ),
            manifest(
                "{apiVersion: v1, kind: ConfigMap, metadata: {name: in-fresh, namespace: fresh}}",
            ),
        ];
        let (beside, after) = beside_definitions(rest, &definitions, &defined);
        assert_eq!(names(&beside), ["controller"]);
        assert_eq!(names(&after), ["w", "in-fresh"]);
    }

    #[test]
    fn with_waves_or_without_definitions_nothing_goes_beside() {
        let definitions = vec![crd()];
        let defined: Vec<Definition> = definitions.iter().map(Definition::of).collect();
        let waved = vec![manifest(
            "{apiVersion: v1, kind: ConfigMap, metadata: {name: late, namespace: live, annotations: {argocd.argoproj.io/sync-wave: '1'}}}",
        )];
        let (beside, after) = beside_definitions(waved, &definitions, &defined);
        assert!(beside.is_empty());
        assert_eq!(names(&after), ["late"]);
        let plain = vec![manifest(
            "{apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: live}}",
        )];
        let (beside, after) = beside_definitions(plain, &[], &[]);
        assert!(beside.is_empty());
        assert_eq!(names(&after), ["c"]);
    }
}
