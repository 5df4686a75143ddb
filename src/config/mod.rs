//! Mapping files → a validated [`Mapping`]: which repositories berth follows and what it
//! syncs from them. Unknown keys, bad values and dangling references are errors that name the
//! file, line and column.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod file;
mod notifications;
mod sections;
mod values;

use file::File;
pub(crate) use notifications::{EventKind, Notification, SinkKind};
use sections::Registry;
use values::Source;
pub(crate) use values::parse_duration;

use crate::git::has_extension;
use crate::render::yaml_message;
use crate::repo_url::RepoUrl;
use crate::schedule::Schedule;

/// The only `apiVersion` a mapping file may declare.
pub(crate) const API_VERSION: &str = "berth.dev/v1alpha1";
/// The only `kind` a mapping file may declare.
pub(crate) const KIND: &str = "Mapping";

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
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
pub(crate) struct Origin {
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
pub(crate) struct Mapping {
    pub repositories: Vec<Repository>,
    pub syncs: Vec<Sync>,
    pub pipelines: Vec<Pipeline>,
    pub cleanup: Vec<CleanupRule>,
    pub notifications: Vec<Notification>,
}

impl Mapping {
    /// The repository a sync reads from; validation guarantees it exists.
    pub(crate) fn repository(&self, name: &str) -> Option<&Repository> {
        self.repositories.iter().find(|r| r.name == name)
    }

    /// The syncs of repository `repo` (a name) that are previewed on pull requests.
    pub(crate) fn previewed<'a>(&'a self, repo: &'a str) -> impl Iterator<Item = &'a Sync> + 'a {
        self.syncs
            .iter()
            .filter(move |s| s.repository == repo && s.preview)
    }

    /// The branches (names or globs) a repository's syncs and pipelines follow.
    pub(crate) fn branches(&self, repo: &Repository) -> Vec<String> {
        let mut out = Vec::new();
        if self.syncs.iter().any(|s| s.repository == repo.name) {
            out.push(repo.branch.clone());
        }
        for p in self.pipelines.iter().filter(|p| p.repository == repo.name) {
            out.extend(p.branches.iter().cloned());
            // a pull request's Workflow file may be read at its target branch
            if let Some(prs) = &p.pull_requests {
                out.extend(prs.branches.iter().cloned());
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The syncs named on the command line, or all of them when `names` is empty.
    ///
    /// # Errors
    /// A name that is not a sync of this mapping.
    pub(crate) fn select_syncs(&self, names: &[String]) -> Result<Vec<&Sync>, String> {
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
pub(crate) enum WorkflowSource {
    /// A Workflow manifest at this path in the source repository, read at the commit.
    File(String),
    /// An Argo WorkflowTemplate of this name in the pipeline's namespace.
    Template(String),
}

/// Which pull requests launch a pipeline, and where their Workflow file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PullRequests {
    /// Globs of target branches.
    pub branches: Vec<String>,
    pub workflow_from: WorkflowFrom,
}

/// The commit a pull request's Workflow file is read at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum WorkflowFrom {
    /// The target branch's head: a pull request cannot change the pipeline that tests it.
    #[default]
    Base,
    /// The pull request's own commit.
    Head,
}

/// What happens to a branch's earlier runs when a new one launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Concurrency {
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
pub(crate) struct Pipeline {
    pub name: String,
    pub repository: String,
    /// Branch names or globs (`release/*`); never empty after loading.
    pub branches: Vec<String>,
    /// Path globs; when set, a commit launches only if a changed file matches one.
    pub paths: Vec<String>,
    /// Tag names or globs; a new matching tag launches its commit once.
    pub tags: Vec<String>,
    /// Pull requests against these target branches launch.
    pub pull_requests: Option<PullRequests>,
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
pub(crate) struct CleanupRule {
    pub name: String,
    /// Crontab (5 fields, or 6 with seconds first) or a macro such as `@hourly`, in an IANA
    /// time zone (UTC unless `timezone` names one).
    pub schedule: Schedule,
    /// Namespace of the runs; `None` means berth's own.
    pub namespace: Option<String>,
    /// Only runs of this pipeline.
    pub pipeline: Option<String>,
    /// A label selector that replaces the default (every Workflow berth launched).
    pub selector: Option<String>,
    /// The `serviceAccount` of `pipeline`, which deletes its runs.
    pub service_account: Option<String>,
    /// Keep this many newest finished runs per pipeline and branch.
    pub keep_last: Option<usize>,
    /// Delete finished runs that finished longer ago than this.
    pub older_than: Option<Duration>,
}

/// A git repository berth fetches.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Repository {
    pub name: String,
    pub url: RepoUrl,
    pub branch: String,
    /// Poll interval; `None` means webhook/notify only.
    pub interval: Option<Duration>,
    /// Secret in berth's namespace holding credentials.
    pub auth_secret: Option<String>,
    /// Secret in berth's namespace whose key `secret` verifies webhook deliveries.
    pub webhook_secret: Option<String>,
    /// The git host's API, for commit statuses and pull requests.
    pub provider: Option<crate::provider::Target>,
    /// Whether its syncs are previewed on pull requests unless a sync says otherwise.
    pub previews: bool,
}

/// Manifests under a path of a repository, applied to the cluster.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sync {
    pub name: String,
    pub repository: String,
    /// Path inside the repository, normalized: no leading `./` or `/`, no trailing `/`; empty
    /// for the repository root.
    pub path: String,
    pub namespace: Option<String>,
    pub prune: bool,
    pub self_heal: bool,
    /// The ServiceAccount (in `namespace`) every request of the sync impersonates.
    pub service_account: Option<String>,
    /// Whether live objects berth does not manage may be taken over (an `adopt` action).
    pub adopt: bool,
    /// Whether a render with no objects may prune everything the sync manages.
    pub allow_empty: bool,
    /// Globs relative to `path`: files read (all when empty), and files left out.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub vars: BTreeMap<String, String>,
    /// Whether a pass waits until every object is Healthy, for at most `timeout`.
    pub wait: bool,
    pub timeout: std::time::Duration,
    /// Syncs that must be Healthy (at the revision they last synced) before this one applies.
    pub depends_on: Vec<String>,
    /// Whether pull requests into the repository's branch that change files under `path` get
    /// a preview (a comment and a `berth/preview/<name>` status): the sync's `preview`, else
    /// its repository's `previews`.
    pub preview: bool,
    /// The Secret (read as the sync's account) whose `*.agekey` keys decrypt its SOPS files.
    pub decryption: Option<String>,
    /// Sources of `${NAME}` values in berth's namespace, in order: a later one, then `vars`,
    /// wins.
    pub vars_from: Vec<VarsFrom>,
}

/// A ConfigMap or Secret in berth's namespace whose keys are a sync's variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VarsFrom {
    /// Whether it is a Secret (its values are masked wherever they could show).
    pub secret: bool,
    pub name: String,
    pub optional: bool,
}

impl VarsFrom {
    pub(crate) fn kind(&self) -> &'static str {
        if self.secret { "Secret" } else { "ConfigMap" }
    }
}

impl Sync {
    /// Whether its files are substituted (it has `vars` or `varsFrom`).
    pub(crate) fn substitutes(&self) -> bool {
        !self.vars.is_empty() || !self.vars_from.is_empty()
    }
}

// ---- loading -----------------------------------------------------------------------------

/// Loads a mapping file, or every `*.yaml`/`*.yml` file of a directory (sorted, merged; the
/// extension in any letter case). Hidden files and directories (such as a mounted ConfigMap's
/// `..data`) are skipped.
///
/// # Errors
/// Unreadable files, YAML or schema errors, and invalid values, each with file and position.
pub(crate) fn load(path: &Path) -> Result<Mapping, Error> {
    let read_error = |p: &Path| {
        let path = p.to_path_buf();
        move |source| Error::Read { path, source }
    };
    let read = |p: &Path| std::fs::read_to_string(p).map_err(read_error(p));
    let meta = std::fs::metadata(path).map_err(read_error(path))?;
    let mut sources = Vec::new();
    if meta.is_dir() {
        let entries = std::fs::read_dir(path).map_err(read_error(path))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !name.starts_with('.') && has_extension(name, &["yaml", "yml"]) && p.is_file()
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
pub(crate) fn parse(sources: &[(PathBuf, String)]) -> Result<Mapping, Error> {
    let mut mapping = Mapping::default();
    let mut reg = Registry::default();
    let mut notifications = Vec::new();
    for (path, text) in sources {
        let src = Source { path };
        let file: File = serde_saphyr::from_str(text).map_err(|e| {
            let loc = e.location().unwrap_or(serde_saphyr::Location::UNKNOWN);
            src.invalid(loc, yaml_message(&e))
        })?;
        check_header(src, &file)?;
        for r in file.repositories {
            mapping
                .repositories
                .push(sections::repository(src, r, &mut reg)?);
        }
        for s in file.syncs {
            mapping.syncs.push(sections::sync(src, s, &mut reg)?);
        }
        for p in file.pipelines {
            mapping
                .pipelines
                .push(sections::pipeline(src, p, &mut reg)?);
        }
        for c in file.cleanup {
            mapping
                .cleanup
                .push(sections::cleanup_rule(src, c, &mut reg)?);
        }
        notifications.extend(file.notifications.into_iter().map(|n| (path, n)));
    }
    let mut names = values::Names::new("notification");
    let known = notifications::Known {
        syncs: &mapping.syncs,
        pipelines: &mapping.pipelines,
    };
    let notifications = notifications
        .into_iter()
        .map(|(path, n)| notifications::notification(Source { path }, n, &mut names, &known))
        .collect::<Result<_, _>>()?;
    mapping.notifications = notifications;
    check_dependencies(&mapping, &reg)?;
    reg.pipeline_refs.resolve(&reg.pipelines, |name, _| {
        format!("unknown pipeline {name:?}")
    })?;
    for rule in &mut mapping.cleanup {
        rule.service_account = rule.pipeline.as_ref().and_then(|name| {
            let p = mapping.pipelines.iter().find(|p| &p.name == name)?;
            p.service_account.clone()
        });
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
    check_pull_request_providers(&mapping, &reg.pull_request_pipelines)?;
    settle_previews(&mut mapping, &reg.previews)?;
    reg.repository_refs
        .resolve(&reg.repositories, |name, names| {
            let known = names.known();
            format!(
                "unknown repository {name:?} (defined: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        })?;
    Ok(mapping)
}

/// A mapping file's `apiVersion` and `kind`.
fn check_header(src: Source<'_>, file: &File) -> Result<(), Error> {
    if file.api_version.value != API_VERSION {
        return Err(src.invalid(
            file.api_version.referenced,
            format!(
                "apiVersion must be {API_VERSION}, not {:?}",
                file.api_version.value
            ),
        ));
    }
    if file.kind.value != KIND {
        return Err(src.invalid(
            file.kind.referenced,
            format!("kind must be {KIND}, not {:?}", file.kind.value),
        ));
    }
    Ok(())
}

/// Every `dependsOn` names a defined sync, and they form no cycle.
fn check_dependencies(mapping: &Mapping, reg: &Registry) -> Result<(), Error> {
    if let Some((_, name, origin)) = reg
        .dependents
        .iter()
        .find(|(_, to, _)| !reg.syncs.contains(to))
    {
        return Err(origin.clone().invalid(format!(
            "unknown sync {name:?} in dependsOn (defined: {})",
            reg.syncs.known().join(", ")
        )));
    }
    if let Some(cycle) = dependency_cycle(&mapping.syncs) {
        let (_, _, origin) = reg
            .dependents
            .iter()
            .find(|(from, to, _)| *from == cycle[0] && *to == cycle[1])
            .expect("every edge of a cycle was read from a dependsOn");
        return Err(origin
            .clone()
            .invalid(format!("dependsOn forms a cycle: {}", cycle.join(" → "))));
    }
    Ok(())
}

/// Every pipeline with `pullRequests` follows a repository with a `provider`, which lists
/// pull requests and takes their statuses.
fn check_pull_request_providers(
    mapping: &Mapping,
    pipelines: &[(String, Origin)],
) -> Result<(), Error> {
    let without_provider = |name: &String| {
        mapping
            .pipelines
            .iter()
            .find(|p| &p.name == name)
            .and_then(|p| mapping.repositories.iter().find(|r| r.name == p.repository))
            .is_some_and(|r| r.provider.is_none())
    };
    match pipelines.iter().find(|(name, _)| without_provider(name)) {
        Some((pipeline, origin)) => Err(origin.clone().invalid(format!(
            "pipeline {pipeline:?} has pullRequests, so its repository needs a provider (to \
             list pull requests and post their statuses)"
        ))),
        None => Ok(()),
    }
}

/// Each sync's `preview`: its own setting, else its repository's `previews`. A sync previewed
/// needs its repository's provider (to comment on pull requests and post statuses).
fn settle_previews(
    mapping: &mut Mapping,
    explicit: &BTreeMap<String, (bool, Origin)>,
) -> Result<(), Error> {
    for s in &mut mapping.syncs {
        let Some(repo) = mapping.repositories.iter().find(|r| r.name == s.repository) else {
            continue; // reported as an unknown repository
        };
        let own = explicit.get(&s.name);
        s.preview = own.map_or(repo.previews, |(on, _)| *on);
        if s.preview && repo.provider.is_none() {
            // previewed by its own key, else by the repository's (which is then written)
            let origin = own
                .or_else(|| explicit.get(&repository_key(&repo.name)))
                .map(|(_, o)| o.clone())
                .expect("a previewed sync's key or its repository's is written");
            return Err(origin.invalid(format!(
                "sync {:?} is previewed, so repository {:?} needs a provider (to comment on \
                 pull requests and post their statuses)",
                s.name, repo.name
            )));
        }
    }
    Ok(())
}

/// The key a repository's `previews` is registered under, beside the syncs' names.
pub(super) fn repository_key(name: &str) -> String {
    format!("repository/{name}")
}

/// A cycle among the syncs' `dependsOn`, as the names along it (the first repeated at the
/// end), or `None`.
fn dependency_cycle(syncs: &[Sync]) -> Option<Vec<String>> {
    fn visit<'a>(
        name: &'a str,
        syncs: &'a [Sync],
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == name) {
            let mut cycle: Vec<String> = path[at..].iter().map(|n| (*n).to_owned()).collect();
            cycle.push(name.to_owned());
            return Some(cycle);
        }
        if !done.insert(name) {
            return None;
        }
        path.push(name);
        let deps = syncs.iter().find(|s| s.name == name).map(|s| &s.depends_on);
        for dep in deps.into_iter().flatten() {
            if let Some(cycle) = visit(dep, syncs, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    syncs
        .iter()
        .find_map(|s| visit(&s.name, syncs, &mut Vec::new(), &mut done))
}

/// The syncs in an order that puts each after the syncs it depends on (otherwise as given).
pub(crate) fn dependency_order<'a>(syncs: &[&'a Sync]) -> Vec<&'a Sync> {
    let mut ordered: Vec<&Sync> = Vec::new();
    let mut pending: Vec<&Sync> = syncs.to_vec();
    while !pending.is_empty() {
        let ready = pending.iter().position(|s| {
            s.depends_on.iter().all(|d| {
                ordered.iter().any(|o| &o.name == d) || !pending.iter().any(|p| &p.name == d)
            })
        });
        // a cycle cannot pass validation; take the rest as they come if one did
        let next = pending.remove(ready.unwrap_or(0));
        ordered.push(next);
    }
    ordered
}

/// The syncs in levels that may pass side by side: each sync in the level after the deepest of
/// the syncs it depends on (those in `syncs`; others are not waited for here).
pub(crate) fn dependency_levels<'a>(syncs: &[&'a Sync]) -> Vec<Vec<&'a Sync>> {
    let mut depth: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut levels: Vec<Vec<&Sync>> = Vec::new();
    for s in dependency_order(syncs) {
        let d = s
            .depends_on
            .iter()
            .filter_map(|dep| depth.get(dep.as_str()))
            .map(|d| d + 1)
            .max()
            .unwrap_or(0);
        depth.insert(&s.name, d);
        if levels.len() <= d {
            levels.resize_with(d + 1, Vec::new);
        }
        levels[d].push(s);
    }
    levels
}

/// The Workflow file a pipeline reads when the mapping names none.
pub(crate) const DEFAULT_WORKFLOW: &str = ".argo/workflow.yaml";

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
    fn notifications_parse_with_defaults_and_errors_name_the_line() {
        let with = |entry: &str| format!("{GOOD}notifications:\n{entry}");
        let m = parse_one(&with(
            "  - {name: chat, type: slack, secretRef: chat, syncs: [\"w*\"]}\n  - name: am\n    type: alertmanager\n    secretRef: am\n    on: [SyncFailed, Recovered]\n",
        ))
        .expect("valid");
        let chat = &m.notifications[0];
        assert_eq!(chat.kind, SinkKind::Slack);
        assert_eq!(
            chat.on.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
            ["SyncFailed", "Degraded", "Recovered", "RunFailed"]
        );
        assert!(chat.follows("web", false) && !chat.follows("api", false));
        assert!(
            chat.follows("any-pipeline", true),
            "no pipeline globs: every pipeline"
        );
        assert_eq!(m.notifications[1].on.len(), 2);
        for (entry, at, says) in [
            (
                "  - {name: c, type: discord, secretRef: c}\n",
                "berth.yaml:15:21:",
                "unknown type \"discord\"",
            ),
            (
                "  - {name: c, type: slack, secretRef: c, on: [SyncFailed, Broke]}\n",
                "berth.yaml:15:59:",
                "unknown event \"Broke\"",
            ),
            (
                "  - {name: c, type: slack, secretRef: c, syncs: [wbe]}\n",
                "berth.yaml:15:50:",
                "\"wbe\" matches no sync (defined: web)",
            ),
            (
                "  - {name: c, type: slack, secretRef: c, pipelines: [\"*\"]}\n",
                "berth.yaml:15:54:",
                "matches no pipeline (defined: none)",
            ),
            (
                "  - {name: c, type: alertmanager, secretRef: c, on: [Synced]}\n",
                "berth.yaml:15:54:",
                "sends alerts, which Synced is not",
            ),
            (
                "  - {name: c, type: slack, secretRef: Chat}\n",
                "berth.yaml:15:39:",
                "secretRef name \"Chat\"",
            ),
            (
                "  - {name: c, type: slack, secretRef: c, on: []}\n",
                "berth.yaml:15:12:",
                "`on` is empty",
            ),
            (
                "  - {name: c, type: slack, secretRef: c}\n  - {name: c, type: teams, secretRef: c}\n",
                "berth.yaml:16:12:",
                "notification \"c\"",
            ),
        ] {
            let err = parse_one(&with(entry)).expect_err(entry).to_string();
            assert!(err.starts_with(at) && err.contains(says), "{entry}: {err}");
        }
    }

    #[test]
    fn unknown_key_names_file_line_and_column() {
        let text = GOOD.replace("    interval: 30s", "    intreval: 30s");
        let err = parse_one(&text).expect_err("unknown key").to_string();
        assert!(err.starts_with("berth.yaml:6:5:"), "{err}");
        assert!(err.contains("intreval"), "{err}");
    }

    #[test]
    fn unknown_repository_points_at_the_sync() {
        let text = GOOD.replace("    repository: config", "    repository: nope");
        let err = parse_one(&text).expect_err("dangling").to_string();
        assert!(err.starts_with("berth.yaml:10:17"), "{err}");
        assert!(err.contains("unknown repository \"nope\""), "{err}");
    }

    fn with_dependencies(edges: &[(&str, &str)]) -> String {
        let mut text = String::from(
            "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - name: config\n    url: https://example.com/c.git\nsyncs:\n",
        );
        for name in ["a", "b", "c"] {
            text.push_str(&format!("  - name: {name}\n    repository: config\n"));
            let deps: Vec<_> = edges
                .iter()
                .filter(|(f, _)| *f == name)
                .map(|(_, t)| *t)
                .collect();
            if !deps.is_empty() {
                text.push_str(&format!("    dependsOn: [{}]\n", deps.join(", ")));
            }
        }
        text
    }

    #[test]
    fn syncs_pass_in_levels_after_the_ones_they_depend_on() {
        let text = "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - {name: config, url: https://git.example.com/config.git}\nsyncs:\n  - {name: app, repository: config, dependsOn: [db, other]}\n  - {name: db, repository: config, dependsOn: [crds]}\n  - {name: crds, repository: config}\n  - {name: web, repository: config}\n  - {name: other, repository: config}\n";
        let m = parse_one(text).expect("mapping");
        // `other` is left out of the list, as a sync of another repository would be
        let some: Vec<&Sync> = m.syncs.iter().filter(|s| s.name != "other").collect();
        let names: Vec<Vec<&str>> = dependency_levels(&some)
            .iter()
            .map(|l| l.iter().map(|s| s.name.as_str()).collect())
            .collect();
        assert_eq!(names, vec![vec!["crds", "web"], vec!["db"], vec!["app"]]);
    }

    #[test]
    fn depends_on_is_checked_and_orders_syncs() {
        let m = parse_one(&with_dependencies(&[("a", "c"), ("b", "a")])).expect("valid");
        let all: Vec<&Sync> = m.syncs.iter().collect();
        let order: Vec<_> = dependency_order(&all)
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(order, ["c", "a", "b"]);
        let a = &m.syncs[0];
        assert!(!a.wait);
        assert_eq!(a.timeout, Duration::from_secs(300));

        let err = parse_one(&with_dependencies(&[("a", "b"), ("b", "c"), ("c", "a")]))
            .expect_err("cycle")
            .to_string();
        assert!(err.starts_with("berth.yaml:9:"), "{err}");
        assert!(
            err.contains("dependsOn forms a cycle: a → b → c → a"),
            "{err}"
        );
        let err = parse_one(&with_dependencies(&[("a", "a")]))
            .expect_err("self")
            .to_string();
        assert!(err.contains("cannot depend on itself"), "{err}");
        let err = parse_one(&with_dependencies(&[("a", "z")]))
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("unknown sync \"z\" in dependsOn"), "{err}");
    }

    #[test]
    fn wait_takes_a_timeout() {
        let text = GOOD.replace(
            "    repository: config\n",
            "    repository: config\n    wait: true\n    timeout: 10s\n",
        );
        let m = parse_one(&text).expect("valid");
        assert!(m.syncs[0].wait);
        assert_eq!(m.syncs[0].timeout, Duration::from_secs(10));
        let bad = GOOD.replace(
            "    repository: config\n",
            "    repository: config\n    timeout: soon\n",
        );
        assert!(parse_one(&bad).is_err());
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
        assert_eq!(
            m.cleanup[0].schedule,
            Schedule::new("*/15 * * * *", "UTC").expect("valid")
        );
        assert_eq!(
            m.cleanup[1].schedule,
            Schedule::new("*/2 * * * * *", "Europe/Berlin").expect("valid")
        );

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
    fn overflowing_tiny_and_huge_intervals_are_errors_at_the_key() {
        for (interval, needle) in [
            ("18446744073709551615s1s", "is too long"),
            ("213503982334602d", "is too long"),
            ("99999999999999999999s", "is too long"),
            ("18446744073709551615s", "at most 24h"),
            ("25h", "at most 24h"),
            ("1ms", "at least 1s"),
            ("-5s", "invalid duration"),
        ] {
            let text = GOOD.replace("interval: 30s", &format!("interval: {interval}"));
            let err = parse_one(&text).expect_err(interval).to_string();
            assert!(err.starts_with("berth.yaml:6:15: "), "{interval}: {err}");
            assert!(err.contains(needle), "{interval}: {err}");
        }
        for ok in ["1s", "24h", "0", "90m"] {
            let text = GOOD.replace("interval: 30s", &format!("interval: {ok}"));
            assert!(parse_one(&text).is_ok(), "{ok}");
        }
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

    #[test]
    fn directory_reads_extensions_in_any_case() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("MAPPING.YAML"), GOOD).expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not a mapping").expect("write");
        let m = load(dir.path()).expect("an upper-case .YAML file is a mapping file");
        assert_eq!(m.syncs.len(), 1);
    }

    /// GOOD with `provider` on its repository and a pipeline after it.
    fn with_provider(provider: &str, pipeline: &str) -> String {
        let text = GOOD.replace(
            "    auth: {secretRef: creds}\n",
            &format!("    auth: {{secretRef: creds}}\n{provider}"),
        );
        format!("{text}pipelines:\n{pipeline}")
    }

    #[test]
    fn a_provider_is_checked_where_it_is_written() {
        let ci = "  - name: ci\n    repository: config\n    tags: ['v*']\n    pullRequests: {branches: [main, 'release/*'], workflowFrom: head}\n";
        let m = parse_one(&with_provider(
            "    provider: {type: gitea, url: https://git.example.com/, secretRef: api}\n",
            ci,
        ))
        .expect("valid");
        let target = m.repositories[0].provider.as_ref().expect("provider");
        assert_eq!(
            (
                target.base.as_str(),
                target.project.as_str(),
                target.secret.as_deref()
            ),
            ("https://git.example.com", "acme/config", Some("api"))
        );
        let p = &m.pipelines[0];
        assert_eq!(p.tags, ["v*"]);
        let prs = p.pull_requests.as_ref().expect("pull requests");
        assert_eq!(prs.branches, ["main", "release/*"]);
        assert_eq!(prs.workflow_from, WorkflowFrom::Head);
        assert!(
            m.branches(&m.repositories[0])
                .contains(&"release/*".to_owned()),
            "a pull request's target branch is fetched for its Workflow file"
        );
        // the token defaults to the auth Secret
        let m = parse_one(&with_provider(
            "    provider: {type: gitea, url: https://git.example.com}\n",
            ci,
        ))
        .expect("valid");
        assert_eq!(
            m.repositories[0]
                .provider
                .as_ref()
                .and_then(|t| t.secret.as_deref()),
            Some("creds")
        );
        for (provider, at, message) in [
            (
                "    provider: {type: gogs, url: https://g.example.com}\n",
                "berth.yaml:8:",
                "no commit status API",
            ),
            (
                "    provider: {type: gitea}\n",
                "berth.yaml:8:",
                "provider url is required",
            ),
            (
                "    provider: {type: gitea, url: 'git@x:y'}\n",
                "berth.yaml:8:",
                "must be an http(s) URL",
            ),
            (
                "    provider: {type: gitea, url: https://x, secretRef: Bad_Name}\n",
                "berth.yaml:8:",
                "secretRef",
            ),
        ] {
            let err = parse_one(&with_provider(provider, ci))
                .expect_err(provider)
                .to_string();
            assert!(
                err.starts_with(at) && err.contains(message),
                "{provider}: {err}"
            );
        }
        let err = parse_one(&with_provider("", ci))
            .expect_err("no provider")
            .to_string();
        assert!(
            err.contains("pipeline \"ci\" has pullRequests, so its repository needs a provider"),
            "{err}"
        );
        let bad = "  - name: ci\n    repository: config\n    pullRequests: {workflowFrom: fork}\n";
        let err = parse_one(&with_provider(
            "    provider: {type: github, url: https://ghe.example.com/api/v3}\n",
            bad,
        ))
        .expect_err("workflowFrom")
        .to_string();
        assert!(
            err.contains("workflowFrom \"fork\" must be base or head"),
            "{err}"
        );
    }

    #[test]
    fn the_example_with_every_key_parses() {
        let m = parse_one(include_str!("../../examples/berth.yaml")).expect("examples/berth.yaml");
        let web = &m.repositories[1];
        assert!(web.provider.is_some());
        assert!(m.pipelines[0].pull_requests.is_some() && !m.pipelines[0].tags.is_empty());
    }

    #[test]
    fn previews_follow_the_repository_unless_a_sync_says_and_need_a_provider() {
        let text = |previews: &str, provider: &str, own: &str| {
            format!(
                "apiVersion: berth.dev/v1alpha1
kind: Mapping
repositories:
  - name: config
    url: https://github.com/acme/config.git
    auth: {{secretRef: creds}}
{previews}{provider}syncs:
  - {{name: web, repository: config, path: web}}
  - {{name: api, repository: config, path: api{own}}}
"
            )
        };
        let github = "    provider: {type: github}\n";
        let m =
            parse_one(&text("    previews: true\n", github, ", preview: false")).expect("valid");
        assert_eq!((m.syncs[0].preview, m.syncs[1].preview), (true, false));
        let m = parse_one(&text("", github, ", preview: true")).expect("valid");
        assert_eq!((m.syncs[0].preview, m.syncs[1].preview), (false, true));
        let err = parse_one(&text("", "", ", preview: true"))
            .expect_err("no provider")
            .to_string();
        assert!(err.starts_with("berth.yaml:9:"), "{err}");
        assert!(
            err.contains("sync \"api\" is previewed, so repository \"config\" needs a provider"),
            "{err}"
        );
        let err = parse_one(&text("    previews: true\n", "", ""))
            .expect_err("no provider")
            .to_string();
        assert!(err.starts_with("berth.yaml:7:"), "{err}");
    }

    #[test]
    fn decryption_and_vars_from_are_checked_where_they_are_written() {
        let with = |extra: &str| format!("{GOOD}{extra}");
        let m = parse_one(&with(
            "    decryption: {provider: sops, secretRef: sops-keys}\n    varsFrom:\n      - {kind: ConfigMap, name: cluster-vars}\n      - {kind: Secret, name: more, optional: true}\n",
        ))
        .expect("valid");
        let s = &m.syncs[0];
        assert_eq!(s.decryption.as_deref(), Some("sops-keys"));
        assert_eq!(s.vars_from.len(), 2);
        assert!(s.vars_from[1].secret && s.vars_from[1].optional && s.substitutes());
        let err = parse_one(&with("    decryption: {provider: vault, secretRef: k}\n"))
            .expect_err("provider")
            .to_string();
        assert!(
            err.starts_with("berth.yaml:14:28:") && err.contains("must be sops"),
            "{err}"
        );
        let err = parse_one(&with("    varsFrom: [{kind: Pod, name: x}]\n"))
            .expect_err("kind")
            .to_string();
        assert!(
            err.contains("varsFrom kind \"Pod\" must be ConfigMap or Secret"),
            "{err}"
        );
    }
}
