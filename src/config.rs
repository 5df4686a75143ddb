//! Mapping files → a validated [`Mapping`]: which repositories berth follows and what it
//! syncs from them. Unknown keys, bad values and dangling references are errors that name the
//! file, line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// The only `apiVersion` a mapping file may declare.
pub const API_VERSION: &str = "berth.dev/v1alpha1";
/// The only `kind` a mapping file may declare.
pub const KIND: &str = "Mapping";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read mapping {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", .path.display())]
    Invalid {
        path: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{}: no mapping files (*.yaml, *.yml) in this directory", .path.display())]
    Empty { path: PathBuf },
}

/// A position in a mapping file, for errors that point at the offending key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub path: PathBuf,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// The merged, validated content of every mapping file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapping {
    pub repositories: Vec<Repository>,
    pub syncs: Vec<Sync>,
    pub pipelines: Vec<Pipeline>,
    pub cleanup: Vec<CleanupRule>,
}

impl Mapping {
    /// The repository a sync reads from; validation guarantees it exists.
    pub fn repository(&self, name: &str) -> Option<&Repository> {
        self.repositories.iter().find(|r| r.name == name)
    }

    /// The branches (names or globs) a repository's syncs and pipelines follow.
    pub fn branches(&self, repo: &Repository) -> Vec<String> {
        let mut out = Vec::new();
        if self.syncs.iter().any(|s| s.repository == repo.name) {
            out.push(repo.branch.clone());
        }
        for p in self.pipelines.iter().filter(|p| p.repository == repo.name) {
            out.extend(p.branches.iter().cloned());
        }
        out.sort();
        out.dedup();
        out
    }

    /// The syncs named on the command line, or all of them when `names` is empty.
    ///
    /// # Errors
    /// A name that is not a sync of this mapping.
    pub fn select_syncs(&self, names: &[String]) -> Result<Vec<&Sync>, String> {
        if names.is_empty() {
            return Ok(self.syncs.iter().collect());
        }
        names
            .iter()
            .map(|n| {
                self.syncs.iter().find(|s| &s.name == n).ok_or_else(|| {
                    let known: Vec<_> = self.syncs.iter().map(|s| s.name.as_str()).collect();
                    format!("no sync named {n:?} (known: {})", known.join(", "))
                })
            })
            .collect()
    }
}

/// Where a pipeline's Workflow comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkflowSource {
    /// A Workflow manifest at this path in the source repository, read at the commit.
    File(String),
    /// An Argo WorkflowTemplate of this name in the pipeline's namespace.
    Template(String),
}

/// What happens to a branch's earlier runs when a new one launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Concurrency {
    /// Runs overlap freely.
    #[default]
    Allow,
    /// The new run waits (suspended) until the earlier ones finish.
    Queue,
    /// Earlier running runs are terminated.
    CancelInProgress,
}

/// A source repository whose new commits launch an Argo Workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub name: String,
    pub repository: String,
    /// Branch names or globs (`release/*`); never empty after loading.
    pub branches: Vec<String>,
    /// Path globs; when set, a commit launches only if a changed file matches one.
    pub paths: Vec<String>,
    pub source: WorkflowSource,
    /// Namespace of the Workflows; `None` means berth's own.
    pub namespace: Option<String>,
    pub service_account: Option<String>,
    pub parameters: BTreeMap<String, String>,
    pub concurrency: Concurrency,
    /// Copied onto each Workflow unless its file sets its own.
    pub ttl_strategy: Option<serde_json::Value>,
    pub pod_gc: Option<serde_json::Value>,
    pub artifact_gc: Option<serde_json::Value>,
}

/// A scheduled deletion of old finished pipeline runs.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanupRule {
    pub name: String,
    /// Crontab (5 fields, or 6 with seconds first) or a macro such as `@hourly`; validated.
    pub schedule: String,
    /// IANA time zone the schedule is read in; validated.
    pub timezone: String,
    /// Namespace of the runs; `None` means berth's own.
    pub namespace: Option<String>,
    /// Only runs of this pipeline.
    pub pipeline: Option<String>,
    /// A label selector that replaces the default (every Workflow berth launched).
    pub selector: Option<String>,
    /// Keep this many newest finished runs per pipeline and branch.
    pub keep_last: Option<usize>,
    /// Delete finished runs that finished longer ago than this.
    pub older_than: Option<Duration>,
}

/// A git repository berth fetches.
#[derive(Debug, Clone, PartialEq)]
pub struct Repository {
    pub name: String,
    pub url: String,
    pub branch: String,
    /// Poll interval; `None` means webhook/notify only.
    pub interval: Option<Duration>,
    /// Secret in berth's namespace holding credentials.
    pub auth_secret: Option<String>,
    /// Secret in berth's namespace whose key `secret` verifies webhook deliveries.
    pub webhook_secret: Option<String>,
}

/// Manifests under a path of a repository, applied to the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Sync {
    pub name: String,
    pub repository: String,
    /// Path inside the repository, normalized: no leading `./` or `/`, no trailing `/`; empty
    /// for the repository root.
    pub path: String,
    pub namespace: Option<String>,
    pub prune: bool,
    pub self_heal: bool,
    pub vars: BTreeMap<String, String>,
}

// ---- file format -------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    api_version: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default)]
    repositories: Vec<RepositoryFile>,
    #[serde(default)]
    syncs: Vec<SyncFile>,
    #[serde(default)]
    pipelines: Vec<PipelineFile>,
    #[serde(default)]
    cleanup: Vec<CleanupFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CleanupFile {
    name: Spanned<String>,
    /// `*/15 * * * *`, `0 */5 * * * *` (with seconds) or `@hourly`.
    schedule: Spanned<String>,
    /// IANA zone, default UTC.
    #[serde(default)]
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    namespace: Option<Spanned<String>>,
    #[serde(default)]
    pipeline: Option<Spanned<String>>,
    #[serde(default)]
    selector: Option<String>,
    #[serde(default)]
    keep_last: Option<usize>,
    #[serde(default)]
    older_than: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PipelineFile {
    name: Spanned<String>,
    repository: Spanned<String>,
    /// Branch names or globs; default: the repository's branch.
    #[serde(default)]
    branches: Vec<Spanned<String>>,
    /// Path globs a changed file must match.
    #[serde(default)]
    paths: Vec<Spanned<String>>,
    /// Workflow manifest in the source repository; default `.argo/workflow.yaml`.
    #[serde(default)]
    workflow: Option<Spanned<String>>,
    /// Name of a WorkflowTemplate to run instead of a file.
    #[serde(default)]
    workflow_template_ref: Option<Spanned<String>>,
    #[serde(default)]
    namespace: Option<Spanned<String>>,
    #[serde(default)]
    service_account: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, String>,
    /// `allow` | `queue` | `cancel-in-progress`.
    #[serde(default)]
    concurrency: Option<Spanned<String>>,
    #[serde(default)]
    ttl_strategy: Option<serde_json::Value>,
    #[serde(default, rename = "podGC")]
    pod_gc: Option<serde_json::Value>,
    #[serde(default, rename = "artifactGC")]
    artifact_gc: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RepositoryFile {
    /// Unique name, used by syncs and in status.
    name: Spanned<String>,
    /// `https://…`, `ssh://…`, `git@host:path` or `file://…`.
    url: Spanned<String>,
    /// Branch to follow.
    #[serde(default = "default_branch")]
    branch: String,
    /// Poll interval (`30s`, `5m`, `1h`); `0` = webhook/notify only.
    #[serde(default = "default_interval")]
    interval: Spanned<String>,
    /// Credentials: a Secret in berth's namespace.
    #[serde(default)]
    auth: Option<AuthFile>,
    /// Secret in berth's namespace with key `secret` for webhook verification.
    #[serde(default)]
    webhook_secret_ref: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AuthFile {
    secret_ref: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SyncFile {
    name: Spanned<String>,
    repository: Spanned<String>,
    #[serde(default = "default_path")]
    path: Spanned<String>,
    #[serde(default)]
    namespace: Option<Spanned<String>>,
    #[serde(default = "default_true")]
    prune: bool,
    #[serde(default)]
    self_heal: bool,
    #[serde(default)]
    vars: BTreeMap<String, Spanned<String>>,
}

fn default_branch() -> String {
    "main".to_owned()
}

fn default_interval() -> Spanned<String> {
    unspanned("1m".to_owned())
}

fn default_path() -> Spanned<String> {
    unspanned(String::new())
}

fn unspanned(value: String) -> Spanned<String> {
    Spanned::new(
        value,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

fn default_true() -> bool {
    true
}

// ---- loading -----------------------------------------------------------------------------

/// Loads a mapping file, or every `*.yaml`/`*.yml` file of a directory (sorted, merged).
/// Hidden files and directories (such as a mounted ConfigMap's `..data`) are skipped.
///
/// # Errors
/// Unreadable files, YAML or schema errors, and invalid values, each with file and position.
pub fn load(path: &Path) -> Result<Mapping, Error> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| Error::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let meta = std::fs::metadata(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut sources = Vec::new();
    if meta.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !name.starts_with('.')
                    && (name.ends_with(".yaml") || name.ends_with(".yml"))
                    && p.is_file()
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::Empty {
                path: path.to_path_buf(),
            });
        }
        for f in files {
            let text = read(&f)?;
            sources.push((f, text));
        }
    } else {
        sources.push((path.to_path_buf(), read(path)?));
    }
    parse(&sources)
}

/// Parses and validates mapping sources given as (path, text) pairs.
///
/// # Errors
/// See [`load`].
pub fn parse(sources: &[(PathBuf, String)]) -> Result<Mapping, Error> {
    let mut mapping = Mapping::default();
    let mut repo_names: BTreeMap<String, Origin> = BTreeMap::new();
    let mut sync_names: BTreeMap<String, Origin> = BTreeMap::new();
    let mut sync_refs = Vec::new();
    let mut pipeline_names: BTreeMap<String, Origin> = BTreeMap::new();
    let mut rule_names: BTreeMap<String, Origin> = BTreeMap::new();
    let mut pipeline_refs = Vec::new();
    for (path, text) in sources {
        let at = |loc: serde_saphyr::Location| Origin {
            path: path.clone(),
            line: loc.line(),
            column: loc.column(),
        };
        let invalid = |loc: serde_saphyr::Location, message: String| Error::Invalid {
            path: path.clone(),
            line: loc.line(),
            column: loc.column(),
            message,
        };
        let file: File = serde_saphyr::from_str(text).map_err(|e| {
            let loc = e.location().unwrap_or(serde_saphyr::Location::UNKNOWN);
            invalid(loc, yaml_message(&e))
        })?;
        if file.api_version.value != API_VERSION {
            return Err(invalid(
                file.api_version.referenced,
                format!(
                    "apiVersion must be {API_VERSION}, not {:?}",
                    file.api_version.value
                ),
            ));
        }
        if file.kind.value != KIND {
            return Err(invalid(
                file.kind.referenced,
                format!("kind must be {KIND}, not {:?}", file.kind.value),
            ));
        }
        for r in file.repositories {
            let name = r.name.value.clone();
            check_name("repository", &name).map_err(|m| invalid(r.name.referenced, m))?;
            if let Some(first) = repo_names.insert(name.clone(), at(r.name.referenced)) {
                return Err(invalid(
                    r.name.referenced,
                    format!("repository {name:?} is already defined at {first}"),
                ));
            }
            check_url(&r.url.value).map_err(|m| invalid(r.url.referenced, m))?;
            let interval =
                parse_duration(&r.interval.value).map_err(|m| invalid(r.interval.referenced, m))?;
            mapping.repositories.push(Repository {
                name,
                url: r.url.value,
                branch: r.branch,
                interval: (!interval.is_zero()).then_some(interval),
                auth_secret: r.auth.map(|a| a.secret_ref),
                webhook_secret: r.webhook_secret_ref,
            });
        }
        for s in file.syncs {
            let name = s.name.value.clone();
            check_name("sync", &name).map_err(|m| invalid(s.name.referenced, m))?;
            if let Some(first) = sync_names.insert(name.clone(), at(s.name.referenced)) {
                return Err(invalid(
                    s.name.referenced,
                    format!("sync {name:?} is already defined at {first}"),
                ));
            }
            let path_value =
                normalize_path(&s.path.value).map_err(|m| invalid(s.path.referenced, m))?;
            let namespace = match s.namespace {
                Some(ns) => {
                    check_name("namespace", &ns.value).map_err(|m| invalid(ns.referenced, m))?;
                    Some(ns.value)
                }
                None => None,
            };
            let mut vars = BTreeMap::new();
            for (k, v) in s.vars {
                if !is_var_name(&k) {
                    return Err(invalid(
                        v.referenced,
                        format!("variable name {k:?} must match [A-Za-z_][A-Za-z0-9_]*"),
                    ));
                }
                if v.value.contains('\n') {
                    return Err(invalid(
                        v.referenced,
                        format!("variable {k} must be a single line"),
                    ));
                }
                vars.insert(k, v.value);
            }
            sync_refs.push((s.repository.value.clone(), at(s.repository.referenced)));
            mapping.syncs.push(Sync {
                name,
                repository: s.repository.value,
                path: path_value,
                namespace,
                prune: s.prune,
                self_heal: s.self_heal,
                vars,
            });
        }
        for p in file.pipelines {
            let name = p.name.value.clone();
            check_name("pipeline", &name).map_err(|m| invalid(p.name.referenced, m))?;
            if let Some(first) = pipeline_names.insert(name.clone(), at(p.name.referenced)) {
                return Err(invalid(
                    p.name.referenced,
                    format!("pipeline {name:?} is already defined at {first}"),
                ));
            }
            for pattern in p.branches.iter().chain(&p.paths) {
                check_glob(&pattern.value).map_err(|m| invalid(pattern.referenced, m))?;
            }
            let source = match (p.workflow, p.workflow_template_ref) {
                (Some(_), Some(t)) => {
                    return Err(invalid(
                        t.referenced,
                        "set workflow or workflowTemplateRef, not both".to_owned(),
                    ));
                }
                (Some(w), None) => WorkflowSource::File(
                    normalize_path(&w.value).map_err(|m| invalid(w.referenced, m))?,
                ),
                (None, Some(t)) => WorkflowSource::Template(t.value),
                (None, None) => WorkflowSource::File(DEFAULT_WORKFLOW.to_owned()),
            };
            let namespace = match p.namespace {
                Some(ns) => {
                    check_name("namespace", &ns.value).map_err(|m| invalid(ns.referenced, m))?;
                    Some(ns.value)
                }
                None => None,
            };
            let concurrency = match p.concurrency {
                None => Concurrency::Allow,
                Some(c) => match c.value.as_str() {
                    "allow" => Concurrency::Allow,
                    "queue" => Concurrency::Queue,
                    "cancel-in-progress" => Concurrency::CancelInProgress,
                    other => {
                        return Err(invalid(
                            c.referenced,
                            format!(
                                "concurrency {other:?} must be allow, queue or cancel-in-progress"
                            ),
                        ));
                    }
                },
            };
            sync_refs.push((p.repository.value.clone(), at(p.repository.referenced)));
            mapping.pipelines.push(Pipeline {
                name,
                repository: p.repository.value,
                branches: p.branches.into_iter().map(|b| b.value).collect(),
                paths: p.paths.into_iter().map(|b| b.value).collect(),
                source,
                namespace,
                service_account: p.service_account,
                parameters: p.parameters,
                concurrency,
                ttl_strategy: p.ttl_strategy,
                pod_gc: p.pod_gc,
                artifact_gc: p.artifact_gc,
            });
        }
        for c in file.cleanup {
            let name = c.name.value.clone();
            check_name("cleanup rule", &name).map_err(|m| invalid(c.name.referenced, m))?;
            if let Some(first) = rule_names.insert(name.clone(), at(c.name.referenced)) {
                return Err(invalid(
                    c.name.referenced,
                    format!("cleanup rule {name:?} is already defined at {first}"),
                ));
            }
            crate::cleanup::parse_schedule(&c.schedule.value).map_err(|m| {
                invalid(c.schedule.referenced, format!("cleanup rule {name:?}: {m}"))
            })?;
            let timezone = match c.timezone {
                Some(tz) => {
                    jiff::tz::TimeZone::get(&tz.value).map_err(|e| {
                        invalid(
                            tz.referenced,
                            format!(
                                "cleanup rule {name:?}: unknown time zone {:?}: {e}",
                                tz.value
                            ),
                        )
                    })?;
                    tz.value
                }
                None => "UTC".to_owned(),
            };
            let older_than = match c.older_than {
                Some(d) => Some(parse_duration(&d.value).map_err(|m| invalid(d.referenced, m))?),
                None => None,
            };
            if c.keep_last.is_none() && older_than.is_none() {
                return Err(invalid(
                    c.name.referenced,
                    format!("cleanup rule {name:?} needs keepLast, olderThan or both"),
                ));
            }
            let namespace = match c.namespace {
                Some(ns) => {
                    check_name("namespace", &ns.value).map_err(|m| invalid(ns.referenced, m))?;
                    Some(ns.value)
                }
                None => None,
            };
            if let Some(p) = &c.pipeline {
                pipeline_refs.push((p.value.clone(), at(p.referenced)));
            }
            mapping.cleanup.push(CleanupRule {
                name,
                schedule: c.schedule.value,
                timezone,
                namespace,
                pipeline: c.pipeline.map(|p| p.value),
                selector: c.selector,
                keep_last: c.keep_last,
                older_than,
            });
        }
    }
    for (pipeline, origin) in pipeline_refs {
        if !pipeline_names.contains_key(&pipeline) {
            return Err(Error::Invalid {
                path: origin.path,
                line: origin.line,
                column: origin.column,
                message: format!("unknown pipeline {pipeline:?}"),
            });
        }
    }
    for pipeline in &mut mapping.pipelines {
        if pipeline.branches.is_empty()
            && let Some(repo) = mapping
                .repositories
                .iter()
                .find(|r| r.name == pipeline.repository)
        {
            pipeline.branches.push(repo.branch.clone());
        }
    }
    for (repo, origin) in sync_refs {
        if !repo_names.contains_key(&repo) {
            let known: Vec<_> = repo_names.keys().map(String::as_str).collect();
            return Err(Error::Invalid {
                path: origin.path,
                line: origin.line,
                column: origin.column,
                message: format!(
                    "unknown repository {repo:?} (defined: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            });
        }
    }
    Ok(mapping)
}

/// The YAML error's message without the position and snippet serde-saphyr renders around it;
/// callers print the position themselves.
pub fn yaml_message(e: &serde_saphyr::Error) -> String {
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

/// The Workflow file a pipeline reads when the mapping names none.
pub const DEFAULT_WORKFLOW: &str = ".argo/workflow.yaml";

fn check_glob(pattern: &str) -> Result<(), String> {
    globset::Glob::new(pattern)
        .map(drop)
        .map_err(|e| format!("invalid glob {pattern:?}: {e}"))
}

/// Names end up in object names (`berth-sync-<name>`), so they must be DNS labels.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 52
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?} must be lowercase letters, digits and '-', at most 52 characters"
        ))
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let scp_like = !url.contains("://") && url.contains('@') && url.contains(':');
    if url.starts_with("https://")
        || url.starts_with("http://")
        || url.starts_with("ssh://")
        || url.starts_with("file://")
        || url.starts_with("git://")
        || scp_like
    {
        Ok(())
    } else {
        Err(format!(
            "url {:?} must be https://, ssh://, git@host:path, git:// or file://",
            crate::git::redact(url)
        ))
    }
}

fn normalize_path(path: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("path {path:?} must stay inside the repository")),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `0`, `90s`, `5m`, `1h30m`, `7d`, `250ms`.
///
/// # Errors
/// A value that is not a sequence of number+unit pairs.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?} (examples: 30s, 5m, 1h30m, 7d, 0)");
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86400),
            _ => return Err(bad()),
        };
        total += d;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(text: &str) -> Result<Mapping, Error> {
        parse(&[(PathBuf::from("berth.yaml"), text.to_owned())])
    }

    const GOOD: &str = "apiVersion: berth.dev/v1alpha1
kind: Mapping
repositories:
  - name: config
    url: https://git.example.com/acme/config.git
    interval: 30s
    auth: {secretRef: creds}
syncs:
  - name: web
    repository: config
    path: ./apps/web/
    namespace: web
    vars: {ENV: prod}
";

    #[test]
    fn good_mapping_parses_with_defaults() {
        let m = parse_one(GOOD).expect("valid");
        let r = &m.repositories[0];
        assert_eq!(r.branch, "main");
        assert_eq!(r.interval, Some(Duration::from_secs(30)));
        assert_eq!(r.auth_secret.as_deref(), Some("creds"));
        let s = &m.syncs[0];
        assert_eq!(s.path, "apps/web");
        assert!(s.prune);
        assert!(!s.self_heal);
        assert_eq!(s.vars["ENV"], "prod");
    }

    #[test]
    fn unknown_key_names_file_line_and_column() {
        let text = GOOD.replace("    interval: 30s", "    intreval: 30s");
        let err = parse_one(&text).expect_err("unknown key").to_string();
        assert!(err.starts_with("berth.yaml:6:"), "{err}");
        assert!(err.contains("intreval"), "{err}");
    }

    #[test]
    fn unknown_repository_points_at_the_sync() {
        let text = GOOD.replace("    repository: config", "    repository: nope");
        let err = parse_one(&text).expect_err("dangling").to_string();
        assert!(err.starts_with("berth.yaml:10:17"), "{err}");
        assert!(err.contains("unknown repository \"nope\""), "{err}");
    }

    #[test]
    fn duplicate_sync_names_the_first_definition() {
        let text = format!("{GOOD}  - name: web\n    repository: config\n");
        let err = parse_one(&text).expect_err("duplicate").to_string();
        assert!(err.contains("already defined at berth.yaml:9"), "{err}");
    }

    #[test]
    fn zero_interval_means_no_polling() {
        let text = GOOD.replace("interval: 30s", "interval: 0");
        assert_eq!(
            parse_one(&text).expect("valid").repositories[0].interval,
            None
        );
    }

    #[test]
    fn bad_values_are_rejected() {
        for (from, to, needle) in [
            ("interval: 30s", "interval: soon", "invalid duration"),
            ("name: web", "name: Web_App", "lowercase"),
            ("path: ./apps/web/", "path: ../x", "inside the repository"),
            ("url: https://", "url: ftp://", "must be https"),
            ("kind: Mapping", "kind: Other", "kind must be"),
        ] {
            let err = parse_one(&GOOD.replace(from, to))
                .expect_err(to)
                .to_string();
            assert!(err.contains(needle), "{to}: {err}");
        }
    }

    #[test]
    fn pipelines_parse_with_defaults() {
        let text = format!(
            "{GOOD}pipelines:
  - name: web-ci
    repository: config
  - name: release
    repository: config
    branches: [\"release/*\"]
    paths: [\"src/**\"]
    workflowTemplateRef: build
    concurrency: cancel-in-progress
    artifactGC: {{strategy: OnWorkflowDeletion}}
"
        );
        let m = parse_one(&text).expect("valid");
        let (a, b) = (&m.pipelines[0], &m.pipelines[1]);
        assert_eq!(a.branches, ["main"], "defaults to the repository's branch");
        assert_eq!(a.source, WorkflowSource::File(DEFAULT_WORKFLOW.into()));
        assert_eq!(a.concurrency, Concurrency::Allow);
        assert_eq!(b.source, WorkflowSource::Template("build".into()));
        assert_eq!(b.concurrency, Concurrency::CancelInProgress);
        assert_eq!(
            b.artifact_gc,
            Some(serde_json::json!({"strategy": "OnWorkflowDeletion"}))
        );
        assert_eq!(m.branches(&m.repositories[0]), ["main", "release/*"]);
    }

    #[test]
    fn bad_pipelines_are_rejected_at_the_key() {
        let base = format!("{GOOD}pipelines:\n  - name: ci\n    repository: config\n");
        for (extra, needle) in [
            (
                "    concurrency: sometimes\n",
                "berth.yaml:17:18: concurrency \"sometimes\"",
            ),
            (
                "    workflow: a.yaml\n    workflowTemplateRef: t\n",
                "not both",
            ),
            ("    branches: [\"release/[\"]\n", "invalid glob"),
        ] {
            let err = parse_one(&format!("{base}{extra}"))
                .expect_err(extra)
                .to_string();
            assert!(err.contains(needle), "{extra}: {err}");
        }
    }

    #[test]
    fn cleanup_rules_parse_and_bad_schedules_name_the_rule() {
        let text = format!(
            "{GOOD}cleanup:
  - name: old-runs
    schedule: \"*/15 * * * *\"
    keepLast: 5
    olderThan: 7d
  - name: secondly
    schedule: \"*/2 * * * * *\"
    timezone: Europe/Berlin
    olderThan: 1h
  - name: hourly
    schedule: \"@hourly\"
    keepLast: 1
"
        );
        let m = parse_one(&text).expect("valid");
        assert_eq!(m.cleanup.len(), 3);
        assert_eq!(m.cleanup[0].keep_last, Some(5));
        assert_eq!(
            m.cleanup[0].older_than,
            Some(Duration::from_secs(7 * 86400))
        );
        assert_eq!(m.cleanup[0].timezone, "UTC");
        assert_eq!(m.cleanup[1].timezone, "Europe/Berlin");

        let bad = text.replace("\"*/15 * * * *\"", "\"every day\"");
        let err = parse_one(&bad).expect_err("bad schedule").to_string();
        assert!(
            err.starts_with("berth.yaml:16:15: cleanup rule \"old-runs\""),
            "{err}"
        );
        for (from, to, needle) in [
            (
                "    keepLast: 5\n    olderThan: 7d\n",
                "",
                "needs keepLast, olderThan",
            ),
            (
                "timezone: Europe/Berlin",
                "timezone: Mars/Base",
                "unknown time zone",
            ),
            (
                "    keepLast: 1\n",
                "    keepLast: 1\n    pipeline: nope\n",
                "unknown pipeline",
            ),
        ] {
            let err = parse_one(&text.replace(from, to))
                .expect_err(needle)
                .to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").is_err());
    }

    #[test]
    fn directory_merges_files_and_skips_hidden_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (repo, sync) = GOOD.split_at(GOOD.find("syncs:").expect("syncs"));
        std::fs::write(dir.path().join("a.yaml"), repo).expect("write");
        std::fs::write(
            dir.path().join("b.yml"),
            format!("apiVersion: berth.dev/v1alpha1\nkind: Mapping\n{sync}"),
        )
        .expect("write");
        std::fs::create_dir(dir.path().join("..data")).expect("mkdir");
        std::fs::write(dir.path().join(".hidden.yaml"), "garbage: [").expect("write");
        let m = load(dir.path()).expect("valid directory");
        assert_eq!(m.repositories.len(), 1);
        assert_eq!(m.syncs.len(), 1);
    }
}
