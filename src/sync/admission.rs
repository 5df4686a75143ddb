//! Admission: which rendered objects a pass may try at all, decided before anything is read
//! from or written to the cluster (pure). An object refused here fails alone, with the reason;
//! the rest of the pass goes on.

use std::collections::{BTreeMap, BTreeSet};

use crate::apply;
use crate::config::{Mapping, Sync};
use crate::diff;
use crate::object::{ObjectId, Scope};
use crate::render::{self, Manifest, WithCrds};
use crate::vocab::{self, ARGOCD_SYNC_OPTIONS, LEASE_NAME, RecordKind};

/// What a pass does with each rendered object.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    /// Applied in the pass's stages.
    pub objects: Vec<Manifest>,
    /// Kinds not served yet that may come with the pass (an operator installing its CRDs):
    /// tried last (`SkipDryRunOnMissingResource=true`).
    pub deferred: Vec<Manifest>,
    /// Hooks: run in their phases, never synced objects.
    pub hooks: Vec<Manifest>,
    /// Refused, with why.
    pub refused: Vec<(Manifest, String)>,
}

/// Sorts rendered objects into what a pass applies, defers, runs as hooks and refuses, in
/// that order of checks: kinds that may wait, kinds nobody serves, berth's own state, bad
/// waves, then hooks (`Skip` objects are dropped).
pub(crate) fn admit(
    manifests: Vec<Manifest>,
    served: &dyn Scope,
    mapping: &Mapping,
    namespace: &str,
    sync: &Sync,
) -> Admission {
    let mut admission = Admission::default();
    let (deferred, mut rest) = defer(manifests, served);
    admission.deferred = deferred;
    admission
        .refused
        .extend(unservable(&mut rest, served, sync));
    admission
        .refused
        .extend(berths_own(&mut rest, mapping, namespace));
    admission.refused.extend(bad_waves(&mut rest));
    for m in rest {
        match apply::hook(&m.object) {
            Ok(apply::Hook::No) if generated(&m) => {
                let why = format!(
                    "{} generateName={} is not a hook that runs, and only such hooks may use \
                     generateName: give it a name",
                    m.kind(),
                    m.name()
                );
                admission.refused.push((m, why));
            }
            Ok(apply::Hook::No) => admission.objects.push(m),
            Ok(apply::Hook::Skip) => {
                if m.object["metadata"]["annotations"][vocab::HELM_HOOK].is_string() {
                    tracing::info!(object = %m.id(), "a Helm delete, rollback or test hook: berth never runs it; skipped");
                }
            }
            Ok(apply::Hook::Runs(_)) => admission.hooks.push(m),
            Err(reason) => admission.refused.push((m, reason)),
        }
    }
    admission
}

/// Whether an object was written with `generateName` (render named it by its prefix).
pub(crate) fn generated(m: &Manifest) -> bool {
    m.object["metadata"]["generateName"].is_string()
}

/// Splits off the objects that may wait for their kind (Argo CD's
/// `SkipDryRunOnMissingResource=true`) and whose kind is not served yet.
fn defer(manifests: Vec<Manifest>, served: &dyn Scope) -> (Vec<Manifest>, Vec<Manifest>) {
    let waits: Vec<bool> = {
        let scope = WithCrds::new(&manifests, served);
        manifests
            .iter()
            .map(|m| {
                apply::waits_for_kind(&m.object) && scope.namespaced(m.group(), m.kind()).is_none()
            })
            .collect()
    };
    let (deferred, rest): (Vec<_>, Vec<_>) =
        manifests.into_iter().zip(waits).partition(|(_, w)| *w);
    (
        deferred.into_iter().map(|(m, _)| m).collect(),
        rest.into_iter().map(|(m, _)| m).collect(),
    )
}

/// Why an object that waited for its kind is still not tried.
pub(crate) fn still_waiting(why: &str) -> String {
    format!("{why} ({ARGOCD_SYNC_OPTIONS}: SkipDryRunOnMissingResource=true)")
}

/// Sets the sync's namespace on namespaced objects that name none, with scopes from
/// discovery and the CRDs among the objects.
pub(crate) fn settle_namespaces(manifests: &mut [Manifest], served: &dyn Scope, sync: &Sync) {
    let scope = WithCrds::new(manifests, served);
    for m in manifests.iter_mut() {
        render::default_namespace(m, sync.namespace.as_deref(), &scope);
    }
}

/// Settles scopes (CRDs in the set included) and takes out the objects that cannot be
/// applied: kinds nobody serves (all of them, each named), and namespaced objects without a
/// namespace. Returns them with the reason.
pub(crate) fn unservable(
    manifests: &mut Vec<Manifest>,
    served: &dyn Scope,
    sync: &Sync,
) -> Vec<(Manifest, String)> {
    settle_namespaces(manifests, served, sync);
    let verdicts: Vec<Option<String>> = {
        let scope = WithCrds::new(manifests, served);
        manifests
            .iter()
            .map(|m| match scope.namespaced(m.group(), m.kind()) {
                None => Some(format!(
                    "no API resource serves {} in {}",
                    m.kind(),
                    m.api_version()
                )),
                Some(true) if m.namespace().is_none() => Some(
                    "it is namespaced but names no namespace and the sync sets none".to_owned(),
                ),
                _ => None,
            })
            .collect()
    };
    split(manifests, verdicts)
}

/// Takes out the objects that are berth's own state, which no sync may declare whatever its
/// identity: its status records, its Lease and the Secrets the mapping references
/// (credentials, webhook secrets, git host tokens), all in berth's namespace.
fn berths_own(
    manifests: &mut Vec<Manifest>,
    mapping: &Mapping,
    namespace: &str,
) -> Vec<(Manifest, String)> {
    let secrets: BTreeSet<&str> = mapping
        .repositories
        .iter()
        .flat_map(|r| [r.auth_secret.as_deref(), r.webhook_secret.as_deref()])
        .flatten()
        .collect();
    let records = [
        RecordKind::Sync,
        RecordKind::Pipeline,
        RecordKind::Cleanup,
        RecordKind::Agent,
    ];
    let verdicts = manifests
        .iter()
        .map(|m| {
            if m.namespace() != Some(namespace) {
                return None;
            }
            let what = match (m.group(), m.kind()) {
                ("", "ConfigMap") if records.iter().any(|k| m.name().starts_with(k.prefix())) => {
                    "a status record"
                }
                ("", "Secret") if secrets.contains(m.name()) => "a Secret the mapping references",
                ("coordination.k8s.io", "Lease") if m.name() == LEASE_NAME => "its Lease",
                _ => return None,
            };
            Some(format!(
                "it is berth's own state ({what}); no sync may declare it"
            ))
        })
        .collect();
    split(manifests, verdicts)
}

/// Takes out the objects whose wave annotation is not an integer, with the reason.
fn bad_waves(manifests: &mut Vec<Manifest>) -> Vec<(Manifest, String)> {
    let verdicts = manifests
        .iter()
        .map(|m| apply::wave(&m.object).err())
        .collect();
    split(manifests, verdicts)
}

/// Keeps the objects without a verdict; returns the others with theirs.
fn split(manifests: &mut Vec<Manifest>, verdicts: Vec<Option<String>>) -> Vec<(Manifest, String)> {
    let mut out = Vec::new();
    let mut kept = Vec::new();
    for (m, verdict) in std::mem::take(manifests).into_iter().zip(verdicts) {
        match verdict {
            Some(reason) => out.push((m, reason)),
            None => kept.push(m),
        }
    }
    *manifests = kept;
    out
}

/// What an object of the definitions stage provides to the objects after it: a Namespace its
/// objects, a CRD its kind. Kept for the whole pass in place of the definitions themselves
/// (an operator's CRDs are megabytes).
#[derive(Debug, Clone)]
pub(crate) struct Definition {
    pub id: ObjectId,
    provides: Provides,
}

#[derive(Debug, Clone)]
enum Provides {
    Namespace(String),
    Kind { group: String, kind: String },
    Nothing,
}

impl Definition {
    pub(crate) fn of(m: &Manifest) -> Self {
        let spec = &m.object["spec"];
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        let provides = if m.is_namespace() {
            Provides::Namespace(m.name().to_owned())
        } else if m.is_crd() {
            Provides::Kind {
                group: text(&spec["group"]),
                kind: text(&spec["names"]["kind"]),
            }
        } else {
            Provides::Nothing
        };
        Self {
            id: m.id(),
            provides,
        }
    }

    /// Whether the object needs this definition (lives in the Namespace, is of the kind).
    pub(crate) fn needed_by(&self, m: &Manifest) -> bool {
        match &self.provides {
            Provides::Namespace(name) => m.namespace() == Some(name.as_str()),
            Provides::Kind { group, kind } => m.group() == group && m.kind() == kind,
            Provides::Nothing => false,
        }
    }
}

/// Splits a stage's objects into those to attempt and those that depend on a failed object
/// of the definitions stage: the custom resources of a CRD, the objects of a Namespace.
pub(crate) fn blocked_by_failures(
    desired: Vec<Manifest>,
    definitions: &[Definition],
    failed: &[ObjectId],
) -> (Vec<Manifest>, Vec<(Manifest, String)>) {
    let failed_first: Vec<&Definition> = definitions
        .iter()
        .filter(|d| failed.contains(&d.id))
        .collect();
    if failed_first.is_empty() {
        return (desired, Vec::new());
    }
    let mut attempt = Vec::new();
    let mut blocked = Vec::new();
    for m in desired {
        match failed_first.iter().find(|d| d.needed_by(&m)) {
            Some(d) => blocked.push((m, format!("it depends on {}, which failed", d.id))),
            None => attempt.push(m),
        }
    }
    (attempt, blocked)
}

/// The objects live under another sync's name (its label), by that sync: each must be
/// checked against what the other sync still declares.
pub(crate) fn foreign<'l>(
    desired: &[Manifest],
    live: &'l diff::LiveSet,
    sync: &str,
) -> BTreeMap<&'l str, Vec<ObjectId>> {
    let mut foreign: BTreeMap<&str, Vec<ObjectId>> = BTreeMap::new();
    for m in desired {
        let id = m.id();
        if let Some(owner) = live.get(&id).and_then(diff::owner_of)
            && owner != sync
        {
            foreign.entry(owner).or_default().push(id);
        }
    }
    foreign
}

/// Ownership: an object another sync owns and still declares is refused (every object has one
/// owning sync, and ownership moves only once the owner let go of it). One line per object.
pub(crate) fn conflicts(
    owner: &str,
    ids: Vec<ObjectId>,
    declared: &BTreeSet<ObjectId>,
    sync: &str,
) -> Vec<(ObjectId, String)> {
    ids.into_iter()
        .filter(|id| declared.contains(id))
        .map(|id| {
            let why = format!(
                "{id} belongs to sync {owner:?}, which still declares it; sync {sync:?} declares it too"
            );
            (id, why)
        })
        .collect()
}

/// Applies the migration policies: an object held back is not written (an existing one counts
/// as unchanged, so it stays in the inventory; a missing one under `ssa: Ignore` is left out).
pub(crate) fn hold_back(entries: &mut Vec<diff::Entry>) {
    entries.retain_mut(|e| {
        let Some(reason) = apply::hold(&e.manifest.object, e.live.as_ref()) else {
            return true;
        };
        if e.action != diff::Action::Unchanged {
            tracing::debug!(object = %e.id, %reason, "held back");
        }
        e.action = diff::Action::Unchanged;
        e.live.is_some()
    });
}

/// The adoptions a sync with `adopt: false` refuses, one line per object.
pub(crate) fn refused_adoptions(entries: &[diff::Entry], sync: &Sync) -> Vec<String> {
    if sync.adopt {
        return Vec::new();
    }
    entries
        .iter()
        .filter(|e| e.action == diff::Action::Adopt)
        .map(|e| {
            format!(
                "{} exists and berth does not manage it; sync {:?} sets adopt: false \
                 (delete it, or allow adoption)",
                e.id, sync.name
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::BuiltinScope;

    const NS: &str = "berth-system";

    fn mapping() -> Mapping {
        crate::config::parse(&[(
            std::path::PathBuf::from("berth.yaml"),
            "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: r\n    url: file:///r\n    auth: {secretRef: git-creds}\n    webhookSecretRef: hooks\nsyncs:\n  - {name: web, repository: r, path: apps, namespace: web}\n".to_owned(),
        )])
        .expect("mapping")
    }

    fn object(text: &str) -> Manifest {
        let object: serde_json::Value = serde_saphyr::from_str(text).expect("yaml");
        Manifest {
            object,
            file: "f.yaml".into(),
            line: 1,
            source: std::sync::Arc::from(text),
            hidden: Default::default(),
        }
    }

    fn manifest(api_version: &str, kind: &str, namespace: &str, name: &str) -> Manifest {
        let ns = if namespace.is_empty() {
            String::new()
        } else {
            format!(", namespace: {namespace}")
        };
        object(&format!(
            "{{apiVersion: {api_version}, kind: {kind}, metadata: {{name: {name}{ns}}}}}"
        ))
    }

    fn annotated(kind: &str, name: &str, key: &str, value: &str) -> Manifest {
        object(&format!(
            "{{apiVersion: v1, kind: {kind}, metadata: {{name: {name}, annotations: {{{key}: '{value}'}}}}}}"
        ))
    }

    fn ids(list: &[Manifest]) -> Vec<String> {
        list.iter().map(|m| m.id().to_string()).collect()
    }

    fn refused(a: &Admission) -> Vec<(String, String)> {
        a.refused
            .iter()
            .map(|(m, why)| (m.id().to_string(), why.clone()))
            .collect()
    }

    fn admit_all(manifests: Vec<Manifest>) -> Admission {
        let mapping = mapping();
        admit(manifests, &BuiltinScope, &mapping, NS, &mapping.syncs[0])
    }

    #[test]
    fn admission_table() {
        struct Case {
            what: &'static str,
            objects: Vec<Manifest>,
            admitted: Vec<&'static str>,
            deferred: Vec<&'static str>,
            hooks: Vec<&'static str>,
            /// (object, a part of the reason)
            refused: Vec<(&'static str, &'static str)>,
        }
        let crd = object(
            "{apiVersion: apiextensions.k8s.io/v1, kind: CustomResourceDefinition, metadata: {name: widgets.example.com}, spec: {group: example.com, scope: Namespaced, names: {kind: Widget}}}",
        );
        let cases = vec![
            Case {
                what: "a kind nobody serves is refused, naming it; the rest is admitted",
                objects: vec![
                    manifest("example.com/v1", "Widget", "web", "w"),
                    manifest("v1", "ConfigMap", "", "c"),
                ],
                admitted: vec!["web/ConfigMap/c"],
                deferred: vec![],
                hooks: vec![],
                refused: vec![(
                    "web/Widget.example.com/w",
                    "no API resource serves Widget in example.com/v1",
                )],
            },
            Case {
                what: "a CRD in the same set serves its kind",
                objects: vec![crd.clone(), manifest("example.com/v1", "Widget", "", "w")],
                admitted: vec![
                    "CustomResourceDefinition.apiextensions.k8s.io/widgets.example.com",
                    "web/Widget.example.com/w",
                ],
                deferred: vec![],
                hooks: vec![],
                refused: vec![],
            },
            Case {
                what: "an unserved kind that may wait for it is deferred, not refused",
                objects: vec![object(
                    "{apiVersion: example.com/v1, kind: Gadget, metadata: {name: g, namespace: web, annotations: {argocd.argoproj.io/sync-options: SkipDryRunOnMissingResource=true}}}",
                )],
                admitted: vec![],
                deferred: vec!["web/Gadget.example.com/g"],
                hooks: vec![],
                refused: vec![],
            },
            Case {
                what: "berth's own records, Lease and referenced Secrets are refused",
                objects: vec![
                    manifest("v1", "ConfigMap", NS, "berth-sync-web"),
                    manifest("coordination.k8s.io/v1", "Lease", NS, "berth"),
                    manifest("v1", "Secret", NS, "hooks"),
                    manifest("v1", "Secret", NS, "other"),
                ],
                admitted: vec!["berth-system/Secret/other"],
                deferred: vec![],
                hooks: vec![],
                refused: vec![
                    ("berth-system/ConfigMap/berth-sync-web", "a status record"),
                    ("berth-system/Lease.coordination.k8s.io/berth", "its Lease"),
                    (
                        "berth-system/Secret/hooks",
                        "a Secret the mapping references",
                    ),
                ],
            },
            Case {
                what: "a wave that is not an integer is refused",
                objects: vec![annotated("ConfigMap", "c", "berth.dev/wave", "soon")],
                admitted: vec![],
                deferred: vec![],
                hooks: vec![],
                refused: vec![("web/ConfigMap/c", "soon")],
            },
            Case {
                what: "hooks are taken out, Skip is dropped, an unknown phase is refused",
                objects: vec![
                    annotated("ConfigMap", "pre", "argocd.argoproj.io/hook", "PreSync"),
                    annotated("ConfigMap", "skip", "argocd.argoproj.io/hook", "Skip"),
                    annotated("ConfigMap", "bad", "argocd.argoproj.io/hook", "Sometime"),
                ],
                admitted: vec![],
                deferred: vec![],
                hooks: vec!["web/ConfigMap/pre"],
                refused: vec![("web/ConfigMap/bad", "Sometime")],
            },
        ];
        for case in cases {
            let a = admit_all(case.objects);
            assert_eq!(ids(&a.objects), case.admitted, "{}: admitted", case.what);
            assert_eq!(ids(&a.deferred), case.deferred, "{}: deferred", case.what);
            assert_eq!(ids(&a.hooks), case.hooks, "{}: hooks", case.what);
            let got = refused(&a);
            assert_eq!(got.len(), case.refused.len(), "{}: {got:?}", case.what);
            for ((id, why), (want_id, part)) in got.iter().zip(&case.refused) {
                assert_eq!(id, want_id, "{}", case.what);
                assert!(why.contains(part), "{}: {why:?} lacks {part:?}", case.what);
            }
        }
    }

    #[test]
    fn a_namespaced_object_without_a_namespace_is_refused_when_the_sync_sets_none() {
        let mapping = mapping();
        let mut sync = mapping.syncs[0].clone();
        sync.namespace = None;
        let a = admit(
            vec![manifest("v1", "ConfigMap", "", "c")],
            &BuiltinScope,
            &mapping,
            NS,
            &sync,
        );
        assert!(a.objects.is_empty());
        assert!(
            a.refused[0].1.contains("names no namespace"),
            "{:?}",
            a.refused
        );
    }

    #[test]
    fn objects_of_a_failed_definition_are_blocked() {
        let definitions = vec![Definition::of(&manifest("v1", "Namespace", "", "web"))];
        let failed = vec![definitions[0].id.clone()];
        let (attempt, blocked) = blocked_by_failures(
            vec![
                manifest("v1", "ConfigMap", "web", "a"),
                manifest("v1", "ConfigMap", "other", "b"),
            ],
            &definitions,
            &failed,
        );
        assert_eq!(ids(&attempt), ["other/ConfigMap/b"]);
        assert_eq!(blocked.len(), 1);
        assert!(
            blocked[0]
                .1
                .contains("it depends on Namespace/web, which failed"),
            "{blocked:?}"
        );
    }

    #[test]
    fn an_object_another_sync_still_declares_is_a_conflict() {
        let desired = vec![
            manifest("v1", "ConfigMap", "web", "shared"),
            manifest("v1", "ConfigMap", "web", "mine"),
        ];
        let mut live = diff::LiveSet::new();
        for m in &desired {
            let mut object = m.object.clone();
            object["metadata"]["labels"] = serde_json::json!({"app.kubernetes.io/managed-by": "berth", "berth.dev/sync": "api"});
            live.insert(m.id(), object);
        }
        let foreign = foreign(&desired, &live, "web");
        assert_eq!(foreign.keys().copied().collect::<Vec<_>>(), ["api"]);
        let declared = BTreeSet::from([desired[0].id()]);
        let ids = foreign["api"].clone();
        let found = conflicts("api", ids, &declared, "web");
        assert_eq!(found.len(), 1, "the other sync let go of `mine`: {found:?}");
        assert!(
            found[0]
                .1
                .starts_with("web/ConfigMap/shared belongs to sync \"api\"")
        );
    }
}
