//! The rules between syncs: every object has one owning sync, ownership moves only once the
//! owner lets go (or another sync takes over what left git), and a sync waits for the syncs it
//! depends on.

use std::collections::{BTreeMap, BTreeSet};

use tracing::debug;

use crate::cluster::{self, Resources};
use crate::config::{Mapping, Sync};
use crate::context::Context;
use crate::diff;
use crate::git::Commit;
use crate::object::ObjectId;
use crate::render::Manifest;
use crate::source;
use crate::status::{self, Health, Phase};

use super::admission::{self, settle_namespaces};
use super::{Error, Refusal};

/// The objects another sync owns (its label says so) and still declares, each with why it is
/// refused.
pub(crate) async fn conflicts(
    ctx: &Context,
    mapping: &Mapping,
    sync: &Sync,
    resources: &Resources,
    desired: &[Manifest],
    live: &diff::LiveSet,
) -> Vec<(ObjectId, String)> {
    let mut conflicts = Vec::new();
    for (owner, ids) in admission::foreign(desired, live, &sync.name) {
        let declared = declared_by(ctx, mapping, owner, resources).await;
        conflicts.extend(admission::conflicts(owner, ids, &declared, &sync.name));
    }
    conflicts
}

/// Refuses a pass whose objects another sync owns and still declares.
pub(crate) fn refuse(conflicts: Vec<(ObjectId, String)>) -> Result<(), Error> {
    if conflicts.is_empty() {
        Ok(())
    } else {
        let reasons = conflicts.into_iter().map(|(_, why)| why).collect();
        Err(Refusal::Owned(reasons).into())
    }
}

/// What a sync declares at the head of its branch in the local mirror (nothing is fetched);
/// what it last recorded owning when that cannot be rendered; nothing when the mapping has
/// no such sync.
async fn declared_by(
    ctx: &Context,
    mapping: &Mapping,
    name: &str,
    resources: &Resources,
) -> BTreeSet<ObjectId> {
    let Some(other) = mapping.syncs.iter().find(|s| s.name == name) else {
        return BTreeSet::new();
    };
    let Some(repo) = mapping.repository(&other.repository) else {
        return BTreeSet::new();
    };
    let rendered = async {
        let head = source::head(&ctx.cache_dir, repo).await?;
        let max = ctx.max_manifest_bytes;
        let inputs = source::inputs(ctx, other).await?;
        let mut manifests = source::render(&ctx.cache_dir, max, (repo, other, &inputs), &head.id)
            .await?
            .manifests;
        settle_namespaces(&mut manifests, resources, other);
        Ok::<_, source::Error>(manifests.iter().map(Manifest::id).collect())
    };
    match rendered.await {
        Ok(ids) => ids,
        Err(e) => {
            debug!(sync = name, error = %e, "cannot render; using its recorded inventory");
            status::load(&ctx.store(), name)
                .await
                .ok()
                .flatten()
                .map(|s| s.inventory.into_keys().collect())
                .unwrap_or_default()
        }
    }
}

/// Splits the orphans prune would delete into those it deletes and those it keeps: an
/// object another sync now declares is handed over (dropped from this inventory, not
/// deleted, so it keeps its uid), and a Namespace that holds objects this pass does not
/// prune stays, saying which.
pub(crate) async fn hand_over(
    ctx: &Context,
    client: &kube::Client,
    mapping: &Mapping,
    sync: &Sync,
    resources: &Resources,
    deletes: Vec<diff::Orphan>,
) -> Result<(Vec<diff::Orphan>, Vec<(ObjectId, String)>), Error> {
    let mut kept = Vec::new();
    if deletes.is_empty() {
        return Ok((deletes, kept));
    }
    let mut elsewhere: BTreeMap<ObjectId, &str> = BTreeMap::new();
    for other in mapping.syncs.iter().filter(|s| s.name != sync.name) {
        for id in declared_by(ctx, mapping, &other.name, resources).await {
            elsewhere.entry(id).or_insert(&other.name);
        }
    }
    let (mut namespaces, mut rest) = (Vec::new(), Vec::new());
    for orphan in deletes {
        if let Some(other) = elsewhere.get(&orphan.id) {
            let why = format!("declared by sync {other:?}, which takes it over");
            kept.push((orphan.id, why));
        } else if orphan.id.kind == "Namespace" && orphan.id.group.is_empty() {
            namespaces.push(orphan);
        } else {
            rest.push(orphan);
        }
    }
    let pruned: BTreeSet<ObjectId> = rest.iter().map(|o| o.id.clone()).collect();
    for ns in namespaces {
        let contents = cluster::namespace_contents(client, &ns.id.name)
            .await
            .map_err(|source| diff::Error::List {
                what: format!("the objects in namespace {}", ns.id.name),
                source,
            })?;
        let strangers: Vec<String> = contents
            .iter()
            .filter(|id| !pruned.contains(id))
            .map(ToString::to_string)
            .collect();
        if strangers.is_empty() {
            rest.push(ns);
        } else {
            kept.push((ns.id, holds(&strangers)));
        }
    }
    Ok((rest, kept))
}

/// Why a Namespace is kept: the first few objects it still holds, and a count of the rest.
fn holds(strangers: &[String]) -> String {
    let shown: Vec<&str> = strangers.iter().take(5).map(String::as_str).collect();
    let more = strangers.len().saturating_sub(shown.len());
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "it holds objects this sync does not prune: {}{tail}",
        shown.join(", ")
    )
}

/// Whether every sync this one depends on is Synced and Healthy, and (when it follows the same
/// repository) at the commit this pass applies.
pub(crate) async fn dependencies_ready(
    ctx: &Context,
    mapping: &Mapping,
    sync: &Sync,
    commit: &Commit,
) -> Result<(), Error> {
    for dep in &sync.depends_on {
        let waiting = |why: String| Refusal::Dependency(format!("sync {dep:?}, which {why}"));
        let Some(st) = status::load(&ctx.store(), dep).await? else {
            return Err(waiting("has not synced yet".to_owned()).into());
        };
        if st.phase != Phase::Synced || st.health != Health::Healthy {
            return Err(waiting(format!("is {} and {}", st.phase, st.health)).into());
        }
        let same_repository = mapping
            .syncs
            .iter()
            .any(|s| &s.name == dep && s.repository == sync.repository);
        if same_repository && st.revision != commit.id {
            let at = st.revision.get(..7).unwrap_or(&st.revision);
            return Err(waiting(format!("is at {at}, not yet {}", commit.short())).into());
        }
    }
    Ok(())
}
