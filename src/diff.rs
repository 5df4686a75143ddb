//! Desired vs live → a [`Plan`]: which objects to create, update, leave alone or prune, decided
//! by comparing live state with the server-side-apply dry-run result, so API defaults never
//! show as drift. Also the human-readable text diffs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::IsTerminal as _;

use futures::{StreamExt as _, TryStreamExt as _};
use kube::Client;
use kube::api::{ListParams, PatchParams};
use serde_json::{Map, Value};
use sha2::Digest as _;

use crate::cluster::{self, Resources};
use crate::object::ObjectId;
use crate::render::Manifest;
use crate::status::Record;
use crate::vocab;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{origin}: no API resource serves {kind} in {api_version}")]
    UnknownKind {
        origin: String,
        api_version: String,
        kind: String,
    },
    #[error("failed to list {what}: {source}")]
    List {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{origin}: dry-run of {id} failed: {message}")]
    DryRun {
        origin: String,
        id: String,
        message: String,
    },
}

/// What a sync's pass does with one desired object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Create,
    Update,
    /// Take over a live object berth does not manage (created by hand, say).
    Adopt,
    Unchanged,
}

/// Whether a live object carries berth's managed-by label.
pub(crate) fn managed_by_berth(live: &Value) -> bool {
    live["metadata"]["labels"][vocab::MANAGED_BY] == vocab::MANAGER_VALUE
}

/// The sync a live object's labels name as its owner, when berth manages it.
pub(crate) fn owner_of(live: &Value) -> Option<&str> {
    managed_by_berth(live)
        .then(|| live["metadata"]["labels"][vocab::SYNC_LABEL].as_str())
        .flatten()
}

/// One desired object with its decision.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub id: ObjectId,
    /// The object to apply: the rendered manifest with berth's labels and annotations.
    pub manifest: Manifest,
    pub action: Action,
    /// Fingerprint of the desired object (without the revision annotation).
    pub hash: String,
    /// Commit recorded as this object's last change.
    pub revision: String,
    /// The live object, when there is one.
    pub live: Option<Value>,
    /// What the API server would hold after applying (dry-run), when it was asked.
    pub predicted: Option<Value>,
}

/// An inventory entry missing from the desired set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Orphan {
    pub id: ObjectId,
    pub record: Record,
    pub live: Option<Value>,
}

/// The plan of one sync pass.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    pub entries: Vec<Entry>,
    pub prune: Vec<Orphan>,
}

impl Plan {
    /// How many objects differ from git: creates, updates and prunes, except leftovers marked
    /// with Argo CD's `compare-options: IgnoreExtraneous` (still pruned, never counted).
    pub(crate) fn differences(&self) -> usize {
        let changed = self
            .entries
            .iter()
            .filter(|e| e.action != Action::Unchanged)
            .count();
        let leftovers = self
            .prune
            .iter()
            .filter(|o| {
                !o.live.as_ref().is_some_and(|live| {
                    crate::object::has_option(
                        live,
                        vocab::ARGOCD_COMPARE_OPTIONS,
                        "IgnoreExtraneous",
                    )
                })
            })
            .count();
        changed + leftovers
    }
}

/// Who owns the objects: the sync, its source and the commit being synced.
#[derive(Debug, Clone)]
pub(crate) struct Owner<'a> {
    pub sync: &'a str,
    /// `<repo-url>#<path>`, credentials removed.
    pub source: &'a str,
    pub commit: &'a str,
    /// Also dry-run the objects to be created (a plan: `diff`, `sync --dry-run`), so that what
    /// the server would refuse shows before anything is applied. An apply skips it: the apply
    /// itself is checked the same way.
    pub check_creates: bool,
}

/// Adds berth's labels and source annotation (not the revision) to a rendered object.
pub(crate) fn stamp(mut m: Manifest, owner: &Owner<'_>) -> Manifest {
    let metadata = m.object["metadata"]
        .as_object_mut()
        .expect("render checked that metadata is a mapping");
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if !labels.is_object() {
        *labels = Value::Object(Map::new());
    }
    labels[vocab::MANAGED_BY] = Value::from(vocab::MANAGER_VALUE);
    labels[vocab::SYNC_LABEL] = Value::from(owner.sync);
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !annotations.is_object() {
        *annotations = Value::Object(Map::new());
    }
    annotations[vocab::SOURCE] = Value::from(owner.source);
    m
}

/// A stable fingerprint of an object's desired content.
pub(crate) fn fingerprint(object: &Value) -> String {
    // serde_json maps are sorted (no preserve_order feature), so this text is canonical.
    let text = serde_json::to_string(object).expect("a JSON value always serializes");
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Adds the revision annotation to a stamped object.
fn set_revision(m: &mut Manifest, revision: &str) {
    m.object["metadata"]["annotations"][vocab::REVISION] = Value::from(revision);
}

/// The first decision, before any dry-run: `Some(action)` when it is already known, `None`
/// when the dry-run result must decide between update and unchanged.
///
/// An object is known unchanged, with no request, when its recorded fingerprint matches and
/// either its live resourceVersion is the one recorded after berth last applied or checked it,
/// or only its status moved since: same `metadata.generation` (which every spec change bumps)
/// and the labels and annotations berth declares still hold their desired values.
pub(crate) fn presume(
    live: Option<&Value>,
    record: Option<&Record>,
    desired: &Value,
    hash: &str,
) -> Option<Action> {
    let Some(live) = live else {
        return Some(Action::Create);
    };
    let record = record.filter(|r| r.hash == hash)?;
    let meta = &live["metadata"];
    let rv = meta["resourceVersion"].as_str();
    let same_version = rv.is_some() && rv == Some(record.resource_version.as_str());
    let status_only = record.generation > 0
        && meta["generation"].as_i64() == Some(record.generation)
        && ["labels", "annotations"].iter().all(|field| {
            desired["metadata"][field]
                .as_object()
                .is_none_or(|want| want.iter().all(|(k, v)| &meta[field][k] == v))
        });
    (same_version || status_only).then_some(Action::Unchanged)
}

/// Compares the live object with the dry-run result, ignoring server bookkeeping.
pub(crate) fn decide(live: &Value, predicted: &Value) -> Action {
    if same(live, predicted) {
        Action::Unchanged
    } else {
        Action::Update
    }
}

/// `normalize(a) == normalize(b)`, without copying either object (an operator's CRD is
/// megabytes): only the metadata is normalized; everything else but status is compared in
/// place.
fn same(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let rest = |m: &Map<String, Value>| {
        m.iter()
            .filter(|(k, _)| *k != "status" && *k != "metadata")
            .count()
    };
    let meta = |m: &Map<String, Value>| {
        let only =
            serde_json::json!({ "metadata": m.get("metadata").cloned().unwrap_or(Value::Null) });
        normalize(&only)
    };
    rest(a) == rest(b)
        && a.iter()
            .filter(|(k, _)| *k != "status" && *k != "metadata")
            .all(|(k, v)| b.get(k) == Some(v))
        && meta(a) == meta(b)
}

/// Metadata fields that change on every write or belong to the server.
const NOISE: [&str; 7] = [
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
    "deletionTimestamp",
];

/// The object without status and server bookkeeping, as compared and shown in diffs.
pub(crate) fn normalize(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(map) = o.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for key in NOISE {
                meta.remove(key);
            }
            if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
                if annotations.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
    }
    o
}

/// Live objects, keyed by identity, for every (resource, namespace) the desired set and
/// the inventory touch.
pub(crate) type LiveSet = HashMap<ObjectId, Value>;

/// Lists the live objects of the types and namespaces that `ids` use: one paginated list per
/// (resource, namespace) instead of a request per object.
///
/// # Errors
/// A list request fails.
pub(crate) async fn observe(
    client: &Client,
    resources: &Resources,
    targets: &[(String, ObjectId)],
    concurrency: usize,
) -> Result<Observed, Error> {
    let wanted: HashSet<&ObjectId> = targets.iter().map(|(_, id)| id).collect();
    let wanted = &wanted;
    let calls: Vec<_> = list_scopes(resources, targets)
        .into_iter()
        .map(|((_, _, ns), r)| async move {
            let here: Vec<&ObjectId> = wanted
                .iter()
                .filter(|id| id.group == r.api.group && id.kind == r.api.kind)
                .filter(|id| !r.namespaced || id.namespace == ns)
                .copied()
                .collect();
            // a cluster-scoped type is the whole cluster's (all of its CRDs, say): read only
            // the few objects wanted of it; a namespace's list is the sync's own
            let objects = if !r.namespaced && here.len() <= FEW {
                get_wanted(client, &r, &ns, &here).await?
            } else {
                list_wanted(client, &r, &ns, wanted).await?
            };
            Ok::<_, Error>((r, ns, objects))
        })
        .collect();
    let lists = futures::stream::iter(calls)
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    let mut live = LiveSet::new();
    let mut refused = HashMap::new();
    for (r, ns, objects) in lists {
        match objects {
            Ok(objects) => live.extend(objects),
            Err(message) => {
                for (_, id) in targets.iter().filter(|(_, id)| {
                    id.group == r.api.group
                        && id.kind == r.api.kind
                        && (!r.namespaced || id.namespace == ns)
                }) {
                    refused.insert(id.clone(), message.clone());
                }
            }
        }
    }
    Ok(Observed { live, refused })
}

/// The lists that cover the targets: one per served type and namespace (cluster-scoped types
/// with an empty namespace), keyed by API version, kind and namespace.
fn list_scopes(
    resources: &Resources,
    targets: &[(String, ObjectId)],
) -> BTreeMap<(String, String, String), cluster::Resource> {
    let mut scopes = BTreeMap::new();
    for (api_version, id) in targets {
        let resource = resources
            .get(api_version, &id.kind)
            .or_else(|| resources.preferred(&id.group, &id.kind));
        if let Some(r) = resource {
            let ns = if r.namespaced {
                id.namespace.clone()
            } else {
                String::new()
            };
            scopes.insert(
                (r.api.api_version.clone(), r.api.kind.clone(), ns),
                r.clone(),
            );
        }
    }
    scopes
}

/// Up to this many objects of one cluster-scoped type are read one by one (after a
/// metadata-only list says which exist) rather than by listing the whole type: a few CRDs in
/// a cluster of large ones.
const FEW: usize = 32;

/// Reads the few wanted objects of one type: a metadata-only list says which exist, then each
/// of those is read. Same results as [`list_wanted`].
///
/// # Errors
/// Any refusal but a 403 of the list.
async fn get_wanted(
    client: &Client,
    r: &cluster::Resource,
    ns: &str,
    wanted: &[&ObjectId],
) -> Result<Result<Vec<(ObjectId, Value)>, String>, Error> {
    let api = cluster::api(client, r, Some(ns).filter(|n| !n.is_empty()));
    let mut existing = HashSet::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = match api.list_metadata(&params).await {
            Ok(page) => page,
            Err(e) => return refused(r, ns, e).map(Err),
        };
        existing.extend(page.items.into_iter().filter_map(|o| o.metadata.name));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    let mut objects = Vec::new();
    for id in wanted.iter().filter(|id| existing.contains(&id.name)) {
        let mut value = match cluster::get(client, &api, &id.name).await {
            Ok(Some(o)) => o,
            Ok(None) => continue,
            Err(e) => return refused(r, ns, e).map(Err),
        };
        value["apiVersion"] = Value::from(r.api.api_version.clone());
        value["kind"] = Value::from(r.api.kind.clone());
        objects.push(((*id).clone(), value));
    }
    Ok(Ok(objects))
}

/// A refused read of one type in one namespace (all of them when empty): `Ok(message)` when
/// this identity may not read there (only those objects fail), else the error.
fn refused(r: &cluster::Resource, ns: &str, e: kube::Error) -> Result<String, Error> {
    match e {
        kube::Error::Api(s) if s.code == 403 => Ok(s.message),
        source => {
            let what = if ns.is_empty() {
                r.api.plural.clone()
            } else {
                format!("{} in {ns}", r.api.plural)
            };
            Err(Error::List { what, source })
        }
    }
}

/// Lists one type in one namespace (all of them when empty), a page at a time, keeping only
/// the wanted objects, without their managedFields (nothing reads them, and they are often
/// the larger half of an object). `Ok(Err(message))` when this identity may not list there:
/// only those objects fail.
///
/// # Errors
/// Any other refusal of the list.
async fn list_wanted(
    client: &Client,
    r: &cluster::Resource,
    ns: &str,
    wanted: &HashSet<&ObjectId>,
) -> Result<Result<Vec<(ObjectId, Value)>, String>, Error> {
    let api = cluster::api(client, r, Some(ns).filter(|n| !n.is_empty()));
    let mut objects: Vec<(ObjectId, Value)> = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = match api.list(&params).await {
            Ok(page) => page,
            Err(e) => return refused(r, ns, e).map(Err),
        };
        for mut o in page.items {
            let id = ObjectId {
                group: r.api.group.clone(),
                kind: r.api.kind.clone(),
                namespace: o.metadata.namespace.clone().unwrap_or_default(),
                name: o.metadata.name.clone().unwrap_or_default(),
            };
            if !wanted.contains(&id) {
                continue;
            }
            o.metadata.managed_fields = None;
            let mut value = serde_json::to_value(&o).expect("objects from the API serialize");
            value["apiVersion"] = Value::from(r.api.api_version.clone());
            value["kind"] = Value::from(r.api.kind.clone());
            objects.push((id, value));
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(Ok(objects)),
        }
    }
}

/// What [`observe`] saw: the live objects, and the targets whose list the API server refused
/// this identity (with its message, which names the user and the verb).
#[derive(Debug, Default)]
pub(crate) struct Observed {
    pub live: LiveSet,
    pub refused: HashMap<ObjectId, String>,
}

/// Builds the plan for the desired objects of one stage: decides what it can from records,
/// and asks the API server (server-side apply dry-run) about the rest. One result per desired
/// object, in order: an object whose dry-run is refused fails alone.
pub(crate) async fn plan(
    client: &Client,
    resources: &Resources,
    desired: Vec<Manifest>,
    mut live: LiveSet,
    inventory: &BTreeMap<ObjectId, Record>,
    owner: &Owner<'_>,
    concurrency: usize,
) -> Vec<Result<Entry, (Manifest, Error)>> {
    // each manifest and live object moves into its entry: an operator's CRDs are megabytes,
    // and a copy of every object would double the pass's memory
    let budget = &cluster::InFlight::new();
    let checks: Vec<_> = desired
        .into_iter()
        .map(|manifest| {
            let current = live.remove(&manifest.id());
            async move {
                let _admitted = budget.admit(&manifest.object).await;
                let mut full = stamp(manifest, owner);
                let id = full.id();
                let hash = fingerprint(&full.object);
                let record = inventory.get(&id);
                let revision = match record {
                    Some(r) if r.hash == hash && !r.revision.is_empty() => r.revision.clone(),
                    _ => owner.commit.to_owned(),
                };
                set_revision(&mut full, &revision);
                match decide_entry(
                    client,
                    resources,
                    &full,
                    current.as_ref(),
                    record,
                    &hash,
                    owner,
                )
                .await
                {
                    Ok((action, predicted)) => Ok(Entry {
                        id,
                        manifest: full,
                        action,
                        hash,
                        revision,
                        live: current,
                        predicted,
                    }),
                    Err(e) => Err((full, e)),
                }
            }
        })
        .collect();
    futures::stream::iter(checks)
        .buffered(concurrency.max(1))
        .collect()
        .await
}

/// The action for one stamped object, and the dry-run result where a diff shows it.
async fn decide_entry(
    client: &Client,
    resources: &Resources,
    full: &Manifest,
    current: Option<&Value>,
    record: Option<&Record>,
    hash: &str,
    owner: &Owner<'_>,
) -> Result<(Action, Option<Value>), Error> {
    Ok(match current {
        None if owner.check_creates => {
            check_create(client, resources, full).await?;
            (Action::Create, None)
        }
        Some(live) if !managed_by_berth(live) => {
            (Action::Adopt, Some(dry_run(client, resources, full).await?))
        }
        _ => match presume(current, record, &full.object, hash) {
            Some(action) => (action, None),
            None => {
                let predicted = dry_run(client, resources, full).await?;
                let current = current.expect("presume decides creates");
                // kept only where a diff shows it
                match decide(current, &predicted) {
                    Action::Unchanged => (Action::Unchanged, None),
                    action => (action, Some(predicted)),
                }
            }
        },
    })
}

/// Asks the server whether it would create the object (the diff still shows the object as
/// git has it). An object that depends on something the same pass creates first (its
/// namespace, or its kind) cannot be asked yet and passes.
///
/// # Errors
/// The server refuses the object (a field its schema lacks, a rule it breaks).
async fn check_create(
    client: &Client,
    resources: &Resources,
    manifest: &Manifest,
) -> Result<(), Error> {
    let Ok(resource) = resource_for(resources, manifest) else {
        return Ok(());
    };
    match apply_dry_run(client, resource, manifest).await {
        Err(e) if !cluster::is_not_found(&e) => Err(dry_run_error(manifest, &e)),
        _ => Ok(()),
    }
}

/// What the API server would store if the object were applied now.
async fn dry_run(
    client: &Client,
    resources: &Resources,
    manifest: &Manifest,
) -> Result<Value, Error> {
    let resource = resource_for(resources, manifest)?;
    apply_dry_run(client, resource, manifest)
        .await
        .map_err(|e| dry_run_error(manifest, &e))
}

/// A server-side apply dry-run of the manifest. Strict: a field the schema lacks fails the
/// object, as it would in Flux; kubectl only warns, and the server would drop the field
/// silently.
async fn apply_dry_run(
    client: &Client,
    resource: &cluster::Resource,
    manifest: &Manifest,
) -> Result<Value, kube::Error> {
    let params = PatchParams::apply(vocab::FIELD_MANAGER)
        .force()
        .dry_run()
        .validation_strict();
    let api = cluster::api(client, resource, manifest.namespace());
    cluster::apply(client, &api, manifest.name(), &params, &manifest.object).await
}

fn dry_run_error(manifest: &Manifest, e: &kube::Error) -> Error {
    let (origin, message) = refusal(manifest, e);
    Error::DryRun {
        origin,
        id: manifest.id().to_string(),
        message,
    }
}

/// Where and why the API server refused a manifest: at the line of each field it names
/// (strict field validation), else at the object.
pub(crate) fn refusal(manifest: &Manifest, e: &kube::Error) -> (String, String) {
    let message = cluster::api_message(e);
    crate::locate::explain(manifest, &message).unwrap_or_else(|| (manifest.origin(), message))
}

/// The discovered resource for a manifest.
///
/// # Errors
/// The kind is not served by the cluster.
pub(crate) fn resource_for<'r>(
    resources: &'r Resources,
    manifest: &Manifest,
) -> Result<&'r cluster::Resource, Error> {
    resources
        .get(manifest.api_version(), manifest.kind())
        .ok_or_else(|| Error::UnknownKind {
            origin: manifest.origin(),
            api_version: manifest.api_version().to_owned(),
            kind: manifest.kind().to_owned(),
        })
}

/// Orphans: inventory entries no longer desired, with their live object when it exists.
pub(crate) fn orphans(
    inventory: &BTreeMap<ObjectId, Record>,
    declared: &HashSet<ObjectId>,
    live: &LiveSet,
) -> Vec<Orphan> {
    inventory
        .iter()
        .filter(|(id, _)| !declared.contains(id))
        .map(|(id, record)| Orphan {
            id: id.clone(),
            record: record.clone(),
            live: live.get(id).cloned(),
        })
        .collect()
}

// ---- text diffs --------------------------------------------------------------------------

/// A unified diff between two texts, the one format berth shows diffs in.
pub(crate) fn text_diff(name: &str, live: &str, desired: &str) -> String {
    let diff = similar::TextDiff::from_lines(live, desired);
    diff.unified_diff()
        .context_radius(3)
        .header(&format!("live/{name}"), &format!("desired/{name}"))
        .to_string()
}

/// The diff of every change a plan holds (creates, updates, prunes), one text per object,
/// Secret values masked.
pub(crate) fn plan_diffs(plan: &Plan) -> Vec<String> {
    let changes = plan
        .entries
        .iter()
        .filter(|e| e.action != Action::Unchanged)
        .map(planned_diff);
    let prunes = plan
        .prune
        .iter()
        .map(|o| entry_diff(&o.id, o.live.as_ref(), None));
    changes.chain(prunes).collect()
}

/// The diff text for one plan entry or orphan, with Secret values masked.
pub(crate) fn entry_diff(id: &ObjectId, live: Option<&Value>, desired: Option<&Value>) -> String {
    hidden_diff(id, live, desired, &[])
}

/// The diff of a plan entry, masked as its manifest requires.
pub(crate) fn planned_diff(e: &Entry) -> String {
    let desired = e.predicted.as_ref().unwrap_or(&e.manifest.object);
    hidden_diff(&e.id, e.live.as_ref(), Some(desired), &e.manifest.hidden)
}

/// [`entry_diff`] for an object whose `hidden` values must never show (a SOPS file's, a
/// Secret's variables): its data fields are masked like a Secret's, and each hidden value (and
/// each line of one) is replaced wherever else it appears.
pub(crate) fn hidden_diff(
    id: &ObjectId,
    live: Option<&Value>,
    desired: Option<&Value>,
    hidden: &[String],
) -> String {
    let mut live = live.map(normalize);
    let mut desired = desired.map(normalize);
    if (id.kind == "Secret" && id.group.is_empty()) || !hidden.is_empty() {
        mask_secrets(live.as_mut(), desired.as_mut());
    }
    let text = |v: Option<&Value>| {
        v.map(|v| serde_saphyr::to_string(v).unwrap_or_else(|_| v.to_string()))
            .unwrap_or_default()
    };
    let diff = text_diff(
        &id.to_string(),
        &text(live.as_ref()),
        &text(desired.as_ref()),
    );
    scrub(diff, hidden)
}

/// `text` with every hidden value, and every line of a multi-line one, replaced by a mask.
/// Values shorter than 4 characters are left: they would mask ordinary words.
pub(crate) fn scrub(mut text: String, hidden: &[String]) -> String {
    let mut pieces: Vec<&str> = hidden
        .iter()
        .flat_map(|v| std::iter::once(v.as_str()).chain(v.lines()))
        .map(str::trim)
        .filter(|p| p.len() >= 4)
        .collect();
    // longest first, so a value is masked whole before any part of it
    pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in pieces {
        if text.contains(p) {
            text = text.replace(p, crate::render::MASK);
        }
    }
    text
}

/// Replaces Secret values with `+` runs: equal values get equal masks, changed ones differ.
fn mask_secrets(live: Option<&mut Value>, desired: Option<&mut Value>) {
    let mut live = live;
    let mut desired = desired;
    for field in ["data", "stringData", "binaryData"] {
        let live_map = live
            .as_deref()
            .and_then(|v| v[field].as_object())
            .cloned()
            .unwrap_or_default();
        let desired_map = desired
            .as_deref()
            .and_then(|v| v[field].as_object())
            .cloned()
            .unwrap_or_default();
        // `get_mut`, not indexing: indexing would add the missing field as null
        if let Some(v) = live
            .as_deref_mut()
            .and_then(|v| v.get_mut(field))
            .and_then(Value::as_object_mut)
        {
            for value in v.values_mut() {
                *value = Value::from(crate::render::MASK);
            }
        }
        if let Some(v) = desired
            .as_deref_mut()
            .and_then(|v| v.get_mut(field))
            .and_then(Value::as_object_mut)
        {
            for (key, value) in v.iter_mut() {
                let same = live_map.get(key) == desired_map.get(key);
                *value = Value::from(if same { "++++++++" } else { "+++++++++++++" });
            }
        }
    }
}

/// Colors a unified diff for a terminal: additions green, removals red, hunks cyan.
pub(crate) fn colorize(diff: &str) -> String {
    if !std::io::stdout().is_terminal() || std::env::var_os("NO_COLOR").is_some() {
        return diff.to_owned();
    }
    diff.lines()
        .map(|line| {
            let color = if line.starts_with("+++") || line.starts_with("---") {
                "1"
            } else if line.starts_with('+') {
                "32"
            } else if line.starts_with('-') {
                "31"
            } else if line.starts_with("@@") {
                "36"
            } else {
                return format!("{line}\n");
            };
            format!("\x1b[{color}m{line}\x1b[0m\n")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(object: Value) -> Manifest {
        Manifest {
            object,
            file: "a.yaml".into(),
            line: 1,
            source: std::sync::Arc::from(""),
            hidden: Default::default(),
        }
    }

    fn owner() -> Owner<'static> {
        Owner {
            sync: "web",
            source: "https://git/x.git#apps",
            commit: "c0ffee",
            check_creates: false,
        }
    }

    #[test]
    fn stamp_adds_labels_and_source_but_not_revision() {
        let m = manifest(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "labels": {"app": "x"}}}));
        let s = stamp(m.clone(), &owner());
        let meta = &s.object["metadata"];
        assert_eq!(meta["labels"]["app"], "x");
        assert_eq!(meta["labels"][vocab::MANAGED_BY], "berth");
        assert_eq!(meta["labels"][vocab::SYNC_LABEL], "web");
        assert_eq!(meta["annotations"][vocab::SOURCE], "https://git/x.git#apps");
        assert!(meta["annotations"].get(vocab::REVISION).is_none());
    }

    #[test]
    fn server_defaults_and_bookkeeping_are_not_drift() {
        let predicted = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "resourceVersion": "2", "managedFields": [{"x": 1}],
                         "creationTimestamp": "t2", "uid": "u"},
            "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80, "protocol": "TCP"}]},
            "status": {"loadBalancer": {}}});
        let mut live = predicted.clone();
        live["metadata"]["resourceVersion"] = json!("1");
        live["metadata"]["managedFields"] = json!([]);
        live["status"] = json!({});
        assert_eq!(decide(&live, &predicted), Action::Unchanged);
        live["spec"]["ports"][0]["port"] = json!(81);
        assert_eq!(decide(&live, &predicted), Action::Update);
        live["spec"]["ports"][0]["port"] = json!(80);
        live["metadata"]["labels"] = json!({"app": "s"});
        assert_eq!(decide(&live, &predicted), Action::Update, "metadata counts");
        live["metadata"]["labels"] = json!(null);
        live["metadata"]
            .as_object_mut()
            .expect("map")
            .remove("labels");
        live["extra"] = json!(1);
        assert_eq!(
            decide(&live, &predicted),
            Action::Update,
            "a field only live has"
        );
        live.as_object_mut().expect("map").remove("extra");
        live["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"});
        assert_eq!(
            decide(&live, &predicted),
            Action::Unchanged,
            "kubectl's annotation is noise"
        );
    }

    #[test]
    fn presume_skips_requests_only_when_record_matches_live() {
        let desired = json!({"metadata": {"labels": {"a": "1"}}});
        let live = json!({"metadata": {"resourceVersion": "7", "labels": {"a": "1"}}});
        let record = Record {
            api_version: "v1".into(),
            resource_version: "7".into(),
            generation: 0,
            hash: "h".into(),
            revision: "c".into(),
            health: crate::status::Health::Healthy,
        };
        let p = |live: Option<&Value>, record: Option<&Record>, hash: &str| {
            presume(live, record, &desired, hash)
        };
        assert_eq!(p(None, Some(&record), "h"), Some(Action::Create));
        assert_eq!(p(Some(&live), Some(&record), "h"), Some(Action::Unchanged));
        assert_eq!(p(Some(&live), Some(&record), "other"), None);
        assert_eq!(p(Some(&live), None, "h"), None);
        let drifted = json!({"metadata": {"resourceVersion": "8", "labels": {"a": "1"}}});
        assert_eq!(p(Some(&drifted), Some(&record), "h"), None);
    }

    #[test]
    fn presume_ignores_status_updates_but_not_spec_or_label_edits() {
        let desired = json!({"metadata": {"labels": {"a": "1"}, "annotations": {"x": "y"}}});
        let record = Record {
            resource_version: "7".into(),
            generation: 2,
            hash: "h".into(),
            ..Record::default()
        };
        let live = |rv: &str, generation: i64, label: &str| {
            json!({"metadata": {"resourceVersion": rv, "generation": generation,
                "labels": {"a": label, "extra": "kept"},
                "annotations": {"x": "y", "deployment.kubernetes.io/revision": "1"}}})
        };
        let p = |l: &Value| presume(Some(l), Some(&record), &desired, "h");
        assert_eq!(
            p(&live("9", 2, "1")),
            Some(Action::Unchanged),
            "status-only update"
        );
        assert_eq!(p(&live("9", 3, "1")), None, "spec edited: generation moved");
        assert_eq!(p(&live("9", 2, "2")), None, "a declared label edited");
    }

    #[test]
    fn fingerprint_is_stable_and_sensitive() {
        let a = json!({"b": 1, "a": [1, 2]});
        let b = json!({"a": [1, 2], "b": 1});
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&json!({"a": [2, 1], "b": 1})));
        assert_eq!(fingerprint(&a).len(), 32);
    }

    #[test]
    fn orphans_are_inventory_entries_not_desired() {
        let keep = manifest(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "keep", "namespace": "n"}}));
        let record = Record::default();
        let inventory = BTreeMap::from([
            (keep.id(), record.clone()),
            (
                ObjectId::from_key("_ConfigMap_n_gone").expect("key"),
                record,
            ),
        ]);
        let o = orphans(&inventory, &HashSet::from([keep.id()]), &LiveSet::new());
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].id.name, "gone");
        assert!(o[0].live.is_none());
    }

    #[test]
    fn secret_values_are_masked_but_changes_still_show() {
        let id = ObjectId::from_key("_Secret_n_s").expect("key");
        let live = json!({"kind": "Secret", "data": {"same": "c2VjcmV0", "changed": "b2xk"}});
        let desired = json!({"kind": "Secret", "data": {"same": "c2VjcmV0", "changed": "bmV3"}});
        let text = entry_diff(&id, Some(&live), Some(&desired));
        assert!(!text.contains("c2VjcmV0") && !text.contains("bmV3") && !text.contains("b2xk"));
        assert!(text.contains("-  changed: ++++++++"), "{text}");
        assert!(text.contains("+  changed: +++++++++++++"), "{text}");
        assert!(!text.contains("-  same"), "{text}");
        // a Secret written with stringData only gets no `data: null` from the masking
        let created = json!({"kind": "Secret", "stringData": {"token": "s3cr3t"}});
        let text = entry_diff(&id, None, Some(&created));
        assert!(
            !text.contains("data: null") && !text.contains("s3cr3t"),
            "{text}"
        );
        assert!(text.contains("+  token: +++++++++++++"), "{text}");
    }

    #[test]
    fn text_diff_has_headers_and_hunks() {
        let d = text_diff("cm", "a: 1\nb: 2\n", "a: 1\nb: 3\n");
        assert!(d.starts_with("--- live/cm\n+++ desired/cm\n@@"), "{d}");
        assert!(d.contains("-b: 2\n+b: 3\n"), "{d}");
    }
}
