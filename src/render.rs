//! Files from git → the desired objects of a sync: parse YAML/JSON documents, substitute
//! `${VAR}`s, check identity fields, default namespaces and fill in defaults the API server
//! would reject if missing. Pure: no cluster, no network.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;
use serde_saphyr::Spanned;

use crate::git::{self, SourceFile};
use crate::object::{ObjectId, Scope, group_of};
use crate::vocab;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: String,
        line: u64,
        message: String,
    },
    #[error("duplicate object {id}: defined at {first} and {second}")]
    Duplicate {
        id: String,
        first: String,
        second: String,
    },
}

fn invalid(file: &str, line: u64, message: impl Into<String>) -> Error {
    Error::Invalid {
        file: file.to_owned(),
        line,
        message: message.into(),
    }
}

/// One desired object and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Manifest {
    pub object: Value,
    /// Repository-relative file.
    pub file: String,
    /// Line where the object starts.
    pub line: u64,
    /// The file's text (as substituted), shared by its objects, so that an error about a
    /// field can name the field's line.
    pub source: Arc<str>,
    /// Values that must never show (what a SOPS file encrypted, values from Secrets): when
    /// any, diffs and `berth render` mask the object's `data`, `stringData` and `binaryData`
    /// like a Secret's, and hide these strings wherever else they appear.
    pub hidden: Arc<[String]>,
}

impl Manifest {
    pub(crate) fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or_default()
    }

    pub(crate) fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    pub(crate) fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }

    pub(crate) fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"].as_str()
    }

    /// API group (empty for the core group).
    pub(crate) fn group(&self) -> &str {
        group_of(self.api_version())
    }

    pub(crate) fn id(&self) -> ObjectId {
        ObjectId {
            group: self.group().to_owned(),
            kind: self.kind().to_owned(),
            namespace: self.namespace().unwrap_or_default().to_owned(),
            name: self.name().to_owned(),
        }
    }

    /// `file:line`, for messages.
    pub(crate) fn origin(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    pub(crate) fn is_crd(&self) -> bool {
        self.kind() == "CustomResourceDefinition" && self.group() == "apiextensions.k8s.io"
    }

    pub(crate) fn is_namespace(&self) -> bool {
        self.kind() == "Namespace" && self.group().is_empty()
    }
}

/// Scopes declared by the CustomResourceDefinitions among the desired objects, in front of
/// another scope (built-in or discovered).
pub(crate) struct WithCrds<'a, S: Scope + ?Sized> {
    crds: BTreeMap<(String, String), bool>,
    inner: &'a S,
}

impl<'a, S: Scope + ?Sized> WithCrds<'a, S> {
    pub(crate) fn new(manifests: &[Manifest], inner: &'a S) -> Self {
        let crds = manifests
            .iter()
            .filter(|m| m.is_crd())
            .filter_map(|m| {
                let spec = &m.object["spec"];
                let group = spec["group"].as_str()?.to_owned();
                let kind = spec["names"]["kind"].as_str()?.to_owned();
                Some(((group, kind), spec["scope"].as_str() != Some("Cluster")))
            })
            .collect();
        Self { crds, inner }
    }
}

impl<S: Scope + ?Sized> Scope for WithCrds<'_, S> {
    fn namespaced(&self, group: &str, kind: &str) -> Option<bool> {
        self.crds
            .get(&(group.to_owned(), kind.to_owned()))
            .copied()
            .or_else(|| self.inner.namespaced(group, kind))
    }
}

/// Which files of a sync's path are read: those matching an `include` glob (every file when
/// there is none) and no `exclude` glob, paths relative to the sync's `path`.
pub(crate) struct Selection {
    include: Option<globset::GlobSet>,
    exclude: globset::GlobSet,
}

impl Selection {
    /// The selection of validated globs (invalid ones select nothing).
    pub(crate) fn new(include: &[String], exclude: &[String]) -> Self {
        let set = |patterns: &[String]| {
            let mut builder = globset::GlobSetBuilder::new();
            for p in patterns {
                if let Ok(g) = globset::GlobBuilder::new(p).literal_separator(true).build() {
                    builder.add(g);
                }
            }
            builder
                .build()
                .unwrap_or_else(|_| globset::GlobSet::empty())
        };
        Self {
            include: (!include.is_empty()).then(|| set(include)),
            exclude: set(exclude),
        }
    }

    /// Whether a file (relative to the sync's path) is read.
    pub(crate) fn selects(&self, relative: &str) -> bool {
        self.include.as_ref().is_none_or(|i| i.is_match(relative))
            && !self.exclude.is_match(relative)
    }
}

/// What a sync's render needs besides its files.
#[derive(Debug, Default)]
pub(crate) struct Options<'a> {
    /// `${NAME}` values; when `None` (a sync without `vars` or `varsFrom`), files are not
    /// substituted at all.
    pub vars: Option<&'a BTreeMap<String, String>>,
    /// Namespace for namespaced objects that name none.
    pub namespace: Option<&'a str>,
    /// The identities SOPS files are decrypted with; `None`: an encrypted file fails alone.
    pub keys: Option<&'a crate::sops::Keys>,
    /// Values (from Secrets) that must never show: an object whose text holds one is masked.
    pub hidden: &'a [String],
}

/// Renders a sync's files into its desired objects, sorted by file and position.
///
/// # Errors
/// Unparseable documents, unset variables, objects without apiVersion/kind/metadata.name and
/// duplicates, each naming file and line.
pub(crate) fn directory(
    files: Vec<SourceFile>,
    options: &Options<'_>,
    scope: &dyn Scope,
) -> Result<Rendered, Error> {
    let mut manifests = Vec::new();
    let mut rejected = Vec::new();
    for file in files {
        refuse_tool_file(&file.path)?;
        let text = String::from_utf8(file.content)
            .map_err(|_| invalid(&file.path, 1, "file is not valid UTF-8"))?;
        // one copy of the text, shared by the file's objects, and the file's own bytes gone
        // before its objects are built (an operator's bundle is megabytes)
        let (text, mut hidden) = match decrypted(&file.path, text, options.keys) {
            Ok(plain) => plain,
            Err(r) => {
                rejected.push(r);
                continue;
            }
        };
        let text: Arc<str> = match options.vars {
            Some(vars) => Arc::from(substitute_file(&text, vars, &file.path)?),
            _ => Arc::from(text),
        };
        hidden.extend(
            options
                .hidden
                .iter()
                .filter(|v| text.contains(v.as_str()))
                .cloned(),
        );
        let hidden: Arc<[String]> = Arc::from(hidden);
        for parsed in parse_file(&file.path, text)? {
            match parsed {
                Ok(mut m) => {
                    m.hidden = hidden.clone();
                    manifests.push(m);
                }
                Err(r) => rejected.push(r),
            }
        }
    }
    let scope = WithCrds::new(&manifests, scope);
    for m in &mut manifests {
        default_namespace(m, options.namespace, &scope);
        fill_protocols(&mut m.object);
    }
    check_duplicates(&manifests)?;
    Ok(Rendered {
        manifests,
        rejected,
    })
}

/// Kustomize's and Helm's own files: berth renders plain manifests and runs neither, so a
/// sync whose path holds one fails at render, saying what to do instead.
fn refuse_tool_file(path: &str) -> Result<(), Error> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let tool = match name {
        "kustomization.yaml" | "kustomization.yml" | "Kustomization" => "Kustomize",
        "Chart.yaml" | "Chart.yml" => "Helm",
        _ => return Ok(()),
    };
    Err(invalid(
        path,
        1,
        format!(
            "this is {tool}'s file, not a manifest: berth renders plain manifests and does not run \
             Kustomize or Helm. Exclude it (exclude: [\"{name}\"]), or render it in a pipeline \
             and sync the output"
        ),
    ))
}

/// A file's text to render: as it is, or decrypted when SOPS encrypted it (with the values
/// that were encrypted). A file that cannot be decrypted fails alone, naming it and why.
fn decrypted(
    path: &str,
    text: String,
    keys: Option<&crate::sops::Keys>,
) -> Result<(String, Vec<String>), Rejected> {
    if !crate::sops::is_encrypted(&text) {
        return Ok((text, Vec::new()));
    }
    let refuse = |reason: String| Rejected {
        origin: format!("{path}:1"),
        what: format!("SOPS file {path}"),
        reason,
    };
    let Some(keys) = keys else {
        return Err(refuse(
            "it is encrypted with SOPS, and the sync has no decryption (set decryption: \
             {provider: sops, secretRef: <Secret with *.agekey keys>})"
                .to_owned(),
        ));
    };
    let json = git::has_extension(path, &["json"]);
    let plain = crate::sops::decrypt(&text, json, keys).map_err(refuse)?;
    Ok((plain.text, plain.secrets))
}

/// What a render produced: the objects to sync, and the ones that cannot be synced on their
/// own (they fail alone, the others go on).
#[derive(Debug, Default)]
pub(crate) struct Rendered {
    pub manifests: Vec<Manifest>,
    pub rejected: Vec<Rejected>,
}

/// An object that cannot be synced, with where it is and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rejected {
    /// `file:line`.
    pub origin: String,
    /// `Kind generateName=prefix`, as far as it can be named.
    pub what: String,
    pub reason: String,
}

/// How manifests are parsed. File size is bounded before parsing (`--max-manifest-bytes`),
/// so the budget need not bound a document's size: real install files (Argo Workflows' CRDs,
/// a few hundred thousand nodes) parse. What it bounds is alias expansion, the one way a
/// small file grows without limit (a billion laughs).
pub(crate) fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 20_000_000;
    budget.max_events = 40_000_000;
    budget.max_documents = 100_000;
    budget.max_total_scalar_bytes = usize::MAX;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    // every alias replays its anchor's events: this caps the total a file may expand to
    options.alias_limits.max_total_replayed_events = 100_000;
    options
}

/// The documents of a YAML stream with the line each starts on, empty ones included (as
/// null), within the same limits as manifests.
///
/// # Errors
/// The text is not YAML, or breaks a limit.
pub(crate) fn yaml_documents(text: &str) -> Result<Vec<(u64, Value)>, serde_saphyr::Error> {
    let docs: Vec<Spanned<Value>> = serde_saphyr::from_multiple_with_options(text, yaml_options())?;
    Ok(docs
        .into_iter()
        .map(|d| (d.referenced.line().max(1), d.value))
        .collect())
}

/// A document of a stream with the line it starts on, or why it cannot be synced.
type Document = Result<(u64, Value), Rejected>;

/// Parses one file into objects; `List` kinds are expanded into their items. A document with
/// a duplicated field fails alone (the API server would refuse it, and which value was meant
/// is unknown); any other YAML error fails the file.
fn parse_file(path: &str, text: Arc<str>) -> Result<Vec<Result<Manifest, Rejected>>, Error> {
    let documents: Vec<Document> = if git::has_extension(path, &["json"]) {
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| invalid(path, e.line() as u64, format!("invalid JSON: {e}")))?;
        vec![Ok((1, value))]
    } else {
        match yaml_documents(&text) {
            Ok(docs) => docs.into_iter().map(Ok).collect(),
            Err(e) if duplicate_key(&e).is_some() => documents_alone(path, &text)?,
            Err(e) => return Err(yaml_error(path, &e)),
        }
    };
    let mut out = Vec::new();
    for document in documents {
        let (line, value) = match document {
            Ok(d) => d,
            Err(rejected) => {
                out.push(Err(rejected));
                continue;
            }
        };
        if value.is_null() {
            continue;
        }
        let is_list = value["kind"].as_str().is_some_and(|k| k.ends_with("List"))
            && value["items"].is_array();
        if is_list {
            let Value::Array(items) = value["items"].clone() else {
                continue;
            };
            for item in items {
                out.push(checked(path, line, item, &text)?);
            }
        } else {
            out.push(checked(path, line, value, &text)?);
        }
    }
    Ok(out)
}

fn yaml_error(path: &str, e: &serde_saphyr::Error) -> Error {
    let line = e.location().map_or(1, |l| l.line());
    invalid(path, line, format!("invalid YAML: {}", yaml_message(e)))
}

/// The key and line of a duplicated mapping key.
fn duplicate_key(e: &serde_saphyr::Error) -> Option<(String, u64)> {
    let mut e = e;
    loop {
        match e {
            serde_saphyr::Error::WithSnippet { error, .. }
            | serde_saphyr::Error::AliasError { error, .. } => e = error,
            serde_saphyr::Error::DuplicateMappingKey { key, location } => {
                return Some((key.clone().unwrap_or_default(), location.line()));
            }
            _ => return None,
        }
    }
}

/// The documents of a stream parsed one by one: one with a duplicated key becomes a
/// [`Rejected`] naming the key and its line (and the object, as far as it can be read).
fn documents_alone(path: &str, text: &str) -> Result<Vec<Document>, Error> {
    let mut out = Vec::new();
    for (first_line, document) in split_documents(text) {
        // padded with newlines, so lines and errors count from the top of the file
        let padded = format!("{}{document}", "\n".repeat(first_line as usize - 1));
        match yaml_documents(&padded) {
            Ok(docs) => out.extend(docs.into_iter().map(Ok)),
            Err(e) => {
                let Some((key, line)) = duplicate_key(&e) else {
                    return Err(yaml_error(path, &e));
                };
                let mut lenient = yaml_options();
                lenient.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
                let object: Value =
                    serde_saphyr::from_str_with_options(&padded, lenient).unwrap_or(Value::Null);
                let name = |pointer: &str| object.pointer(pointer).and_then(Value::as_str);
                out.push(Err(Rejected {
                    origin: format!("{path}:{line}"),
                    what: match (name("/kind"), name("/metadata/name")) {
                        (Some(kind), Some(n)) => format!("{kind} {n}"),
                        (Some(kind), None) => kind.to_owned(),
                        _ => "object".to_owned(),
                    },
                    reason: format!(
                        "field \"{key}\" is set twice; the API server would refuse it, and \
                         which value is meant is unclear: keep one"
                    ),
                }));
            }
        }
    }
    Ok(out)
}

/// A YAML stream split at its document markers (`---` at the start of a line): each part with
/// the line it starts on.
fn split_documents(text: &str) -> Vec<(u64, &str)> {
    let mut parts = Vec::new();
    let (mut start, mut start_line) = (0usize, 1u64);
    let mut offset = 0usize;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let is_marker =
            line.starts_with("---") && line[3..].chars().next().is_none_or(char::is_whitespace);
        if is_marker && offset > start {
            parts.push((start_line, &text[start..offset]));
            start = offset;
            start_line = index as u64 + 1;
        }
        offset += line.len();
    }
    if start < text.len() {
        parts.push((start_line, &text[start..]));
    }
    parts
}

fn checked(
    path: &str,
    line: u64,
    object: Value,
    source: &Arc<str>,
) -> Result<Result<Manifest, Rejected>, Error> {
    if !object.is_object() {
        return Err(invalid(path, line, "document is not a mapping"));
    }
    // generateName makes a new object at every apply: nothing a sync could keep equal to git,
    // but what a hook is for (each run a new object); a hook keeps its prefix as its name in
    // the pass, and the API server names each run
    let mut object = object;
    if let (None, Some(prefix)) = (
        object.pointer("/metadata/name"),
        object
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
            .map(str::to_owned),
    ) {
        let annotations = &object["metadata"]["annotations"];
        let hook = annotations.get(vocab::ARGOCD_HOOK).is_some()
            || annotations.get(vocab::HELM_HOOK).is_some();
        if hook && !prefix.is_empty() {
            object["metadata"]["name"] = Value::from(prefix);
            return checked(path, line, object, source);
        }
        return Ok(Err(Rejected {
            origin: format!("{path}:{line}"),
            what: format!(
                "{} generateName={prefix}",
                object["kind"].as_str().unwrap_or("object")
            ),
            reason: "an object with generateName and no name cannot be synced (each apply \
                     would create another): give it a name, or make it a hook \
                     (argocd.argoproj.io/hook or helm.sh/hook), which runs anew each revision"
                .to_owned(),
        }));
    }
    for (pointer, field) in [
        ("/apiVersion", "apiVersion"),
        ("/kind", "kind"),
        ("/metadata/name", "metadata.name"),
    ] {
        match object.pointer(pointer) {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => return Err(invalid(path, line, format!("object has no {field}"))),
        }
    }
    Ok(Ok(Manifest {
        object,
        file: path.to_owned(),
        line,
        source: Arc::clone(source),
        hidden: Default::default(),
    }))
}

/// The annotations that leave an object's text unsubstituted (Flux's, and berth's own).
const SUBSTITUTE_DISABLED: [&str; 2] = [vocab::FLUX_SUBSTITUTE, vocab::SUBSTITUTE];

/// Whether a document's text carries a substitute-disabled annotation.
fn substitution_disabled(document: &str) -> bool {
    SUBSTITUTE_DISABLED.iter().any(|key| {
        document.match_indices(key).any(|(at, _)| {
            let rest = document[at + key.len()..].trim_start_matches(['"', '\'']);
            rest.trim_start()
                .strip_prefix(':')
                .map(|v| v.trim_start().trim_start_matches(['"', '\'']))
                .is_some_and(|v| v.starts_with("disabled"))
        })
    })
}

/// Substitutes a file document by document, leaving alone those annotated
/// `kustomize.toolkit.fluxcd.io/substitute: disabled` or `berth.dev/substitute: disabled`.
fn substitute_file(
    text: &str,
    vars: &BTreeMap<String, String>,
    path: &str,
) -> Result<String, Error> {
    if !SUBSTITUTE_DISABLED.iter().any(|k| text.contains(k)) {
        return substitute(text, vars, path, 0);
    }
    let mut out = String::with_capacity(text.len());
    for (line, document) in split_documents(text) {
        if substitution_disabled(document) {
            out.push_str(document);
        } else {
            out.push_str(&substitute(document, vars, path, line - 1)?);
        }
    }
    Ok(out)
}

/// Replaces `${NAME}` with its value, and `${NAME:=default}` or `${NAME:-default}` with its
/// value or, when it is unset or empty, the default; `$${NAME}` stays as a literal `${NAME}`.
/// `skipped` lines come before `text` in its file (for the line an error names).
fn substitute(
    text: &str,
    vars: &BTreeMap<String, String>,
    path: &str,
    skipped: u64,
) -> Result<String, Error> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            // an escaped reference: emit `${` and skip past it unsubstituted
            out.push_str("${");
            rest = after;
            continue;
        }
        if let Some(body) = tail.strip_prefix("${")
            && let Some(end) = body.find('}')
            && let Some((name, default)) = reference(&body[..end])
        {
            let value = vars
                .get(name)
                .filter(|v| !(v.is_empty() && default.is_some()));
            let Some(value) = value.map(String::as_str).or(default) else {
                let line =
                    skipped + text[..text.len() - rest.len() + i].matches('\n').count() as u64 + 1;
                let known: Vec<_> = vars.keys().map(String::as_str).collect();
                return Err(invalid(
                    path,
                    line,
                    format!(
                        "variable ${{{name}}} is not set (vars: {}; write ${{{name}:=default}} \
                         for a default, or $${{{name}}} for a literal)",
                        known.join(", ")
                    ),
                ));
            };
            out.push_str(value);
            rest = &body[end + 1..];
            continue;
        }
        out.push('$');
        rest = &tail[1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A reference's variable name and default: `NAME`, `NAME:=default` or `NAME:-default`.
fn reference(body: &str) -> Option<(&str, Option<&str>)> {
    let (name, default) = match body.split_once(':') {
        Some((name, rest)) => {
            let default = rest.strip_prefix('=').or_else(|| rest.strip_prefix('-'))?;
            (name, Some(default))
        }
        None => (body, None),
    };
    is_var_name(name).then_some((name, default))
}

/// Whether `name` may be a `${NAME}` variable: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Sets the sync's namespace on namespaced objects that name none, and removes a namespace
/// from kinds known to be cluster-scoped. Unknown kinds are left for discovery to decide.
pub(crate) fn default_namespace(m: &mut Manifest, namespace: Option<&str>, scope: &dyn Scope) {
    let (group, kind) = (m.group().to_owned(), m.kind().to_owned());
    let metadata = &mut m.object["metadata"];
    match scope.namespaced(&group, &kind) {
        Some(true) => {
            if let (None, Some(ns)) = (metadata["namespace"].as_str(), namespace) {
                metadata["namespace"] = Value::String(ns.to_owned());
            }
        }
        Some(false) => {
            if let Some(map) = metadata.as_object_mut() {
                map.remove("namespace");
            }
        }
        None => {}
    }
}

/// Fills in the API default `TCP` for Service and container ports that omit `protocol` (a key
/// of those lists), as Flux does. Server-side apply before Kubernetes 1.26 rejected such
/// entries; current servers default the key themselves, so the same value is stored either
/// way, and berth's plan stays the same on both.
fn fill_protocols(object: &mut Value) {
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    let pod_spec = match kind.as_str() {
        "Service" => {
            set_protocols(&mut object["spec"]["ports"]);
            return;
        }
        "Pod" => object.pointer_mut("/spec"),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => object.pointer_mut("/spec/template/spec"),
        "CronJob" => object.pointer_mut("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    };
    if let Some(spec) = pod_spec {
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(containers)) = spec.get_mut(list) {
                for c in containers {
                    if let Some(ports) = c.get_mut("ports") {
                        set_protocols(ports);
                    }
                }
            }
        }
    }
}

fn set_protocols(ports: &mut Value) {
    if let Value::Array(ports) = ports {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            port.entry("protocol")
                .or_insert_with(|| Value::String("TCP".to_owned()));
        }
    }
}

fn check_duplicates(manifests: &[Manifest]) -> Result<(), Error> {
    let mut seen: BTreeMap<ObjectId, &Manifest> = BTreeMap::new();
    for m in manifests {
        if let Some(first) = seen.insert(m.id(), m) {
            return Err(Error::Duplicate {
                id: m.id().to_string(),
                first: first.origin(),
                second: m.origin(),
            });
        }
    }
    Ok(())
}

/// Groups used by a set of manifests, for a discovery limited to them.
pub(crate) fn groups(manifests: &[Manifest]) -> BTreeSet<String> {
    manifests.iter().map(|m| m.group().to_owned()).collect()
}

/// What a masked Secret value shows instead of the value (as in `berth diff`).
pub(crate) const MASK: &str = "++++++++";

/// Whether an object is a core/v1 Secret.
pub(crate) fn is_secret(object: &Value) -> bool {
    object["kind"] == "Secret"
        && group_of(object["apiVersion"].as_str().unwrap_or_default()).is_empty()
}

/// The object with every value of a Secret's `data` and `stringData` (and, for a `sensitive`
/// object, such as one a SOPS file held, its `binaryData` too) replaced by [`MASK`]; other
/// objects unchanged.
pub(crate) fn masked(object: &Value, sensitive: bool) -> Value {
    let mut o = object.clone();
    if is_secret(object) || sensitive {
        for field in ["data", "stringData", "binaryData"] {
            if let Some(values) = o[field].as_object_mut() {
                values.values_mut().for_each(|v| *v = Value::from(MASK));
            }
        }
    }
    o
}

/// A YAML error's message without the position and snippet serde-saphyr renders around it;
/// callers (manifests, mapping files, workflow files) print the position themselves.
pub(crate) fn yaml_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let first = full.lines().next().unwrap_or("invalid YAML").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    if first.starts_with("line ")
        && let Some((_, message)) = first.split_once(": ")
    {
        return message.to_owned();
    }
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_owned(),
        None => first.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::BuiltinScope;
    use serde_json::json;

    fn file(path: &str, text: &str) -> SourceFile {
        SourceFile {
            path: path.to_owned(),
            content: text.as_bytes().to_vec(),
        }
    }

    fn render(files: &[SourceFile], ns: Option<&str>) -> Result<Vec<Manifest>, Error> {
        directory(
            files.to_vec(),
            &Options {
                namespace: ns,
                ..Options::default()
            },
            &BuiltinScope,
        )
        .map(|r| r.manifests)
    }

    const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n";

    #[test]
    fn multi_document_streams_keep_their_lines() {
        let text = format!(
            "# leading comment\n---\n{CM}---\n---\n{}",
            CM.replace("name: a", "name: b")
        );
        let m = render(&[file("x.yaml", &text)], Some("web")).expect("render");
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].line, m[1].line), (3, 11));
        assert_eq!(m[1].namespace(), Some("web"));
        assert_eq!(m[1].id().key(), "_ConfigMap_web_b");
    }

    #[test]
    fn malformed_yaml_names_file_and_line() {
        let err = render(&[file("apps/bad.yaml", "a: 1\nb: [\n")], None)
            .expect_err("bad yaml")
            .to_string();
        assert!(err.starts_with("apps/bad.yaml:2: invalid YAML"), "{err}");
    }

    #[test]
    fn missing_identity_fields_are_errors() {
        for (text, field) in [
            ("kind: ConfigMap\nmetadata: {name: a}\n", "apiVersion"),
            ("apiVersion: v1\nmetadata: {name: a}\n", "kind"),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
                "metadata.name",
            ),
            ("- a\n", "not a mapping"),
        ] {
            let err = render(&[file("f.yaml", text)], None)
                .expect_err(field)
                .to_string();
            assert!(err.contains(field), "{field}: {err}");
            assert!(err.starts_with("f.yaml:1:"), "{err}");
        }
    }

    #[test]
    fn duplicates_name_both_files() {
        let err = render(&[file("a.yaml", CM), file("b/c.yaml", CM)], Some("x"))
            .expect_err("duplicate")
            .to_string();
        assert_eq!(
            err,
            "duplicate object x/ConfigMap/a: defined at a.yaml:1 and b/c.yaml:1"
        );
    }

    #[test]
    fn vars_substitute_and_unset_ones_fail_with_line() {
        let vars = BTreeMap::from([("ENV".to_owned(), "prod".to_owned())]);
        let opts = Options {
            vars: Some(&vars),
            ..Options::default()
        };
        let text = CM.replace("k: v", "k: ${ENV}\n  lit: $${ENV}\n  sh: $HOME");
        let m = directory(vec![file("a.yaml", &text)], &opts, &BuiltinScope)
            .expect("render")
            .manifests;
        assert_eq!(
            m[0].object["data"],
            json!({"k": "prod", "lit": "${ENV}", "sh": "$HOME"})
        );
        let text = format!("{CM}---\n{}", CM.replace("k: v", "k: ${REGION}"));
        let err = directory(vec![file("a.yaml", &text)], &opts, &BuiltinScope)
            .expect_err("unset")
            .to_string();
        assert!(
            err.starts_with("a.yaml:13: variable ${REGION} is not set"),
            "{err}"
        );
    }

    #[test]
    fn defaults_apply_and_annotated_objects_are_left_alone() {
        let vars = BTreeMap::from([
            ("SET".to_owned(), "prod".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ]);
        let opts = Options {
            vars: Some(&vars),
            ..Options::default()
        };
        let text = CM.replace(
            "k: v",
            "k: ${SET:=no}\n  d: ${UNSET:=fallback}\n  e: ${EMPTY:-dash}\n  f: \"${UNSET:=}\"",
        );
        let disabled = CM
            .replace(
                "name: a",
                "name: kept\n  annotations: {kustomize.toolkit.fluxcd.io/substitute: disabled}",
            )
            .replace("k: v", "k: ${X}");
        let own = CM
            .replace(
                "name: a",
                "name: own\n  annotations:\n    berth.dev/substitute: disabled",
            )
            .replace("k: v", "k: ${Y}");
        let all = format!(
            "{text}---\n{disabled}---\n{own}---\n{}",
            CM.replace("k: v", "k: ${NOPE}")
        );
        let err = directory(vec![file("a.yaml", &all)], &opts, &BuiltinScope)
            .expect_err("unset")
            .to_string();
        let line = all
            .lines()
            .position(|l| l.contains("${NOPE}"))
            .expect("line")
            + 1;
        assert!(
            err.starts_with(&format!("a.yaml:{line}: variable ${{NOPE}} is not set")),
            "{err}"
        );
        let all = format!("{text}---\n{disabled}---\n{own}");
        let m = directory(vec![file("a.yaml", &all)], &opts, &BuiltinScope)
            .expect("render")
            .manifests;
        assert_eq!(
            m[0].object["data"],
            json!({"k": "prod", "d": "fallback", "e": "dash", "f": ""})
        );
        assert_eq!(m[1].object["data"]["k"], "${X}");
        assert_eq!(m[2].object["data"]["k"], "${Y}");
    }

    #[test]
    fn kustomize_and_helm_files_fail_the_render_saying_what_to_do() {
        for name in ["apps/kustomization.yaml", "apps/chart/Chart.yaml"] {
            let err = render(&[file(name, CM)], None).expect_err(name).to_string();
            assert!(err.starts_with(&format!("{name}:1: this is ")), "{err}");
            assert!(
                err.contains("does not run Kustomize or Helm") && err.contains("exclude"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_hook_may_use_generate_name_and_keeps_its_prefix_as_its_name() {
        let text = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: schema-migrate-\n  annotations: {argocd.argoproj.io/hook: PreSync}\nspec: {}\n";
        let m = render(&[file("a.yaml", text)], Some("web")).expect("render");
        assert_eq!(m[0].object["metadata"]["name"], "schema-migrate-");
        assert_eq!(m[0].object["metadata"]["generateName"], "schema-migrate-");
    }

    #[test]
    fn without_vars_nothing_is_substituted() {
        let text = CM.replace("k: v", "k: ${ENV}");
        let m = render(&[file("a.yaml", &text)], None).expect("render");
        assert_eq!(m[0].object["data"]["k"], "${ENV}");
    }

    #[test]
    fn namespaces_default_only_for_namespaced_kinds() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: web, namespace: oops}\n---\n\
apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.acme.io}\n\
spec: {group: acme.io, scope: Cluster, names: {kind: Widget}}\n---\n\
apiVersion: acme.io/v1\nkind: Widget\nmetadata: {name: w}\n---\n\
apiVersion: other.io/v1\nkind: Gadget\nmetadata: {name: g}\n";
        let m = render(&[file("a.yaml", text)], Some("web")).expect("render");
        let ns: Vec<_> = m.iter().map(Manifest::namespace).collect();
        assert_eq!(ns, [None, None, None, None]);
        let m = render(&[file("b.yaml", CM)], Some("web")).expect("render");
        assert_eq!(m[0].namespace(), Some("web"));
    }

    #[test]
    fn lists_expand_and_json_files_parse() {
        let json = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}},
            {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}}]}"#;
        let m = render(&[file("l.json", json)], None).expect("render");
        assert_eq!(m.iter().map(Manifest::name).collect::<Vec<_>>(), ["a", "b"]);
        let err = render(&[file("l.json", "{\n\"a\": }")], None).expect_err("bad json");
        assert!(
            err.to_string().starts_with("l.json:2: invalid JSON"),
            "{err}"
        );
    }

    #[test]
    fn large_honest_files_parse_and_alias_bombs_fail_fast() {
        // 300k nodes: beyond serde-saphyr's default budget, within a real install file's size
        let mut big =
            String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n");
        for i in 0..150_000 {
            big.push_str(&format!("  k{i}: v\n"));
        }
        let m = render(&[file("big.yaml", &big)], None).expect("a large file parses");
        assert_eq!(
            m[0].object["data"].as_object().map(|d| d.len()),
            Some(150_000)
        );

        let mut bomb = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\n");
        bomb.push_str("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for (name, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            bomb.push_str(&format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let err = render(&[file("bomb.yaml", &bomb)], None).expect_err("a billion laughs");
        assert!(err.to_string().starts_with("bomb.yaml:"), "{err}");
    }

    #[test]
    fn a_generate_name_object_is_rejected_alone() {
        let text = format!(
            "{CM}---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: migrate-\nspec: {{}}\n"
        );
        let r = directory(
            vec![file("a.yaml", &text)],
            &Options::default(),
            &BuiltinScope,
        )
        .expect("the rest renders");
        assert_eq!(r.manifests.len(), 1);
        assert_eq!(r.rejected.len(), 1);
        assert_eq!(r.rejected[0].origin, "a.yaml:8");
        assert_eq!(r.rejected[0].what, "Job generateName=migrate-");
        assert!(r.rejected[0].reason.contains("give it a name"));
    }

    #[test]
    fn a_document_with_a_duplicated_field_is_rejected_alone() {
        let text = format!(
            "{CM}---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  replicas: 2\n---\n{}",
            CM.replace("name: a", "name: b")
        );
        let r = directory(
            vec![file("a.yaml", &text)],
            &Options::default(),
            &BuiltinScope,
        )
        .expect("the rest renders");
        assert_eq!(
            r.manifests.iter().map(Manifest::name).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(r.manifests[1].line, 16, "lines count from the file's top");
        assert_eq!(r.rejected.len(), 1);
        assert_eq!(r.rejected[0].origin, "a.yaml:14");
        assert_eq!(r.rejected[0].what, "Deployment web");
        assert!(
            r.rejected[0].reason.contains("\"replicas\" is set twice"),
            "{}",
            r.rejected[0].reason
        );
        // any other YAML error still fails the file, at its line
        let broken = format!("{CM}---\nkind: [\n");
        let e = directory(
            vec![file("b.yaml", &broken)],
            &Options::default(),
            &BuiltinScope,
        )
        .expect_err("broken");
        assert!(e.to_string().starts_with("b.yaml:"), "{e}");
    }

    #[test]
    fn include_and_exclude_select_files_below_the_path() {
        let all = Selection::new(&[], &[]);
        assert!(all.selects("setup/crds.yaml") && all.selects("app.yaml"));
        let no_setup = Selection::new(&[], &["setup/**".to_owned()]);
        assert!(!no_setup.selects("setup/crds.yaml") && !no_setup.selects("setup/a/b.yaml"));
        assert!(no_setup.selects("app.yaml") && no_setup.selects("other/setup.yaml"));
        let only = Selection::new(&["*.yaml".to_owned()], &["*-test.yaml".to_owned()]);
        assert!(only.selects("app.yaml") && !only.selects("app-test.yaml"));
        assert!(!only.selects("sub/app.yaml"), "* stays in one directory");
    }

    #[test]
    fn upper_case_json_files_parse_as_json() {
        let json = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#;
        let m = render(&[file("A.JSON", json)], None).expect("render");
        assert_eq!(m.iter().map(Manifest::name).collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn ports_get_tcp_when_protocol_is_missing() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n        ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n";
        let m = render(&[file("d.yaml", text)], None).expect("render");
        let ports = &m[0].object["spec"]["template"]["spec"]["containers"][0]["ports"];
        assert_eq!(ports[0]["protocol"], "TCP");
        assert_eq!(ports[1]["protocol"], "UDP");
        assert_eq!(m[1].object["spec"]["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn object_ids_round_trip_through_inventory_keys() {
        let id = ObjectId {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: "web".into(),
            name: "my_app".into(),
        };
        assert_eq!(ObjectId::from_key(&id.key()), Some(id.clone()));
        assert_eq!(id.to_string(), "web/Deployment.apps/my_app");
    }
}
