//! One function per section of a mapping file: a parsed entry in, a validated value out, with
//! its names claimed and its references noted for [`super::parse`] to resolve.

use std::collections::BTreeMap;

use serde_saphyr::Spanned;

use super::file::{
    CleanupFile, PipelineFile, ProviderFile, PullRequestsFile, RepositoryFile, SyncFile,
};
use super::values::{
    Names, References, Source, check_glob, namespace, normalize_path, parse_duration,
    parse_interval,
};
use super::{
    CleanupRule, Concurrency, DEFAULT_WORKFLOW, Error, Pipeline, PullRequests, Repository, Sync,
    WorkflowFrom, WorkflowSource,
};
use crate::provider::{Kind, Target};
use crate::render::is_var_name;
use crate::repo_url::RepoUrl;
use crate::schedule::{Invalid, Schedule};

/// The names and references collected across all files.
pub(super) struct Registry {
    pub repositories: Names,
    pub syncs: Names,
    pub pipelines: Names,
    pub rules: Names,
    /// Repositories named by syncs and pipelines.
    pub repository_refs: References,
    /// Pipelines named by cleanup rules.
    pub pipeline_refs: References,
    /// Each `dependsOn` edge (from, to) and where it is written.
    pub dependents: Vec<(String, String, super::Origin)>,
    /// Pipelines with `pullRequests`, and where that is written (their repository needs a
    /// provider).
    pub pull_request_pipelines: Vec<(String, super::Origin)>,
    /// Each sync's own `preview` and each repository's `previews` (under
    /// [`super::repository_key`]), with where they are written.
    pub previews: BTreeMap<String, (bool, super::Origin)>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            repositories: Names::new("repository"),
            syncs: Names::new("sync"),
            pipelines: Names::new("pipeline"),
            rules: Names::new("cleanup rule"),
            repository_refs: References::default(),
            pipeline_refs: References::default(),
            dependents: Vec::new(),
            pull_request_pipelines: Vec::new(),
            previews: BTreeMap::new(),
        }
    }
}

pub(super) fn repository(
    src: Source<'_>,
    r: RepositoryFile,
    reg: &mut Registry,
) -> Result<Repository, Error> {
    let name = reg.repositories.claim(src, &r.name)?;
    let url = src.check(&r.url, RepoUrl::parse)?;
    let interval = src.check(&r.interval, parse_interval)?;
    let auth_secret = r.auth.map(|a| a.secret_ref);
    let provider = r
        .provider
        .map(|p| provider(src, p, &url, auth_secret.as_deref()))
        .transpose()?;
    if let Some(p) = &r.previews {
        let at = (p.value, src.at(p.referenced));
        reg.previews.insert(super::repository_key(&name), at);
    }
    Ok(Repository {
        previews: r.previews.is_some_and(|p| p.value),
        name,
        url,
        branch: r.branch,
        interval: (!interval.is_zero()).then_some(interval),
        auth_secret,
        webhook_secret: r.webhook_secret_ref,
        provider,
    })
}

/// A repository's `provider`: its type, its API's URL (derived for the public hosts), and the
/// Secret with its token.
fn provider(
    src: Source<'_>,
    p: Spanned<ProviderFile>,
    url: &RepoUrl,
    auth_secret: Option<&str>,
) -> Result<Target, Error> {
    let at = p.referenced;
    let p = p.value;
    let kind = src.check(&p.kind, Kind::parse)?;
    let secret = match &p.secret_ref {
        Some(s) => Some(src.check(s, |n| {
            super::values::check_name("secretRef", n).map(|()| n.to_owned())
        })?),
        None => auth_secret.map(str::to_owned),
    };
    if secret.is_none() {
        return Err(src.invalid(
            at,
            "provider needs a token: set provider.secretRef (a Secret with key `token`) or \
             auth.secretRef",
        ));
    }
    let target = |u: Option<&str>| Target::new(kind, u, url, secret.clone());
    match &p.url {
        Some(u) => src.check(u, |u| target(Some(u))),
        None => target(None).map_err(|m| src.invalid(p.kind.referenced, m)),
    }
}

pub(super) fn sync(src: Source<'_>, s: SyncFile, reg: &mut Registry) -> Result<Sync, Error> {
    let name = reg.syncs.claim(src, &s.name)?;
    let path = src.check(&s.path, normalize_path)?;
    for pattern in s.include.iter().chain(&s.exclude) {
        src.check(pattern, check_glob)?;
    }
    let namespace = namespace(src, s.namespace)?;
    let service_account = match s.service_account {
        Some(sa) if namespace.is_none() => {
            return Err(src.invalid(
                sa.referenced,
                "serviceAccount needs the sync's namespace, where the ServiceAccount lives",
            ));
        }
        Some(sa) => Some(src.check(&sa, |n| {
            super::values::check_name("serviceAccount", n).map(|()| n.to_owned())
        })?),
        None => None,
    };
    let mut vars = BTreeMap::new();
    for (k, v) in s.vars {
        if !is_var_name(&k) {
            return Err(src.invalid(
                v.referenced,
                format!("variable name {k:?} must match [A-Za-z_][A-Za-z0-9_]*"),
            ));
        }
        if v.value.contains('\n') {
            return Err(src.invalid(v.referenced, format!("variable {k} must be a single line")));
        }
        vars.insert(k, v.value);
    }
    reg.repository_refs.add(src, &s.repository);
    for dep in &s.depends_on {
        if dep.value == name {
            return Err(src.invalid(dep.referenced, "a sync cannot depend on itself"));
        }
        reg.dependents
            .push((name.clone(), dep.value.clone(), src.at(dep.referenced)));
    }
    let timeout = match &s.timeout {
        Some(t) => src.check(t, super::values::parse_interval)?,
        None => DEFAULT_TIMEOUT,
    };
    if let Some(p) = &s.preview {
        reg.previews
            .insert(name.clone(), (p.value, src.at(p.referenced)));
    }
    let (decryption, vars_from) = inputs(src, s.decryption, s.vars_from)?;
    Ok(Sync {
        preview: false, // settled once every repository is known
        decryption,
        vars_from,
        name,
        repository: s.repository.value,
        path,
        namespace,
        prune: s.prune,
        self_heal: s.self_heal,
        service_account,
        adopt: s.adopt,
        allow_empty: s.allow_empty,
        include: s.include.into_iter().map(|g| g.value).collect(),
        exclude: s.exclude.into_iter().map(|g| g.value).collect(),
        vars,
        wait: s.wait,
        timeout,
        depends_on: s.depends_on.into_iter().map(|d| d.value).collect(),
    })
}

/// A sync's `decryption` (its Secret's name) and `varsFrom` sources, checked.
fn inputs(
    src: Source<'_>,
    decryption: Option<Spanned<super::file::DecryptionFile>>,
    sources: Vec<Spanned<super::file::VarsFromFile>>,
) -> Result<(Option<String>, Vec<crate::config::VarsFrom>), Error> {
    let decryption = decryption
        .map(|d| {
            src.check(&d.value.provider, |p| {
                (p == "sops").then_some(()).ok_or_else(|| {
                    format!("decryption provider {p:?} must be sops (the only one berth has)")
                })
            })?;
            src.check(&d.value.secret_ref, |n| {
                super::values::check_name("secretRef", n).map(|()| n.to_owned())
            })
        })
        .transpose()?;
    let mut vars_from = Vec::new();
    for v in sources {
        let v = v.value;
        let secret = src.check(&v.kind, |k| match k {
            "ConfigMap" => Ok(false),
            "Secret" => Ok(true),
            other => Err(format!(
                "varsFrom kind {other:?} must be ConfigMap or Secret"
            )),
        })?;
        let name = src.check(&v.name, |n| {
            super::values::check_name("varsFrom name", n).map(|()| n.to_owned())
        })?;
        vars_from.push(crate::config::VarsFrom {
            secret,
            name,
            optional: v.optional,
        });
    }
    Ok((decryption, vars_from))
}

/// How long a sync with `wait: true` waits for its objects when the mapping sets no timeout.
const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub(super) fn pipeline(
    src: Source<'_>,
    p: PipelineFile,
    reg: &mut Registry,
) -> Result<Pipeline, Error> {
    let name = reg.pipelines.claim(src, &p.name)?;
    for pattern in p.branches.iter().chain(&p.paths).chain(&p.tags) {
        src.check(pattern, check_glob)?;
    }
    let pull_requests = match p.pull_requests {
        None => None,
        Some(prs) => {
            reg.pull_request_pipelines
                .push((name.clone(), src.at(prs.referenced)));
            Some(pull_requests(src, prs.value)?)
        }
    };
    let source = match (p.workflow, p.workflow_template_ref) {
        (Some(_), Some(t)) => {
            return Err(src.invalid(
                t.referenced,
                "set workflow or workflowTemplateRef, not both",
            ));
        }
        (Some(w), None) => WorkflowSource::File(src.check(&w, normalize_path)?),
        (None, Some(t)) => WorkflowSource::Template(t.value),
        (None, None) => WorkflowSource::File(DEFAULT_WORKFLOW.to_owned()),
    };
    let namespace = namespace(src, p.namespace)?;
    let concurrency = match &p.concurrency {
        None => Concurrency::Allow,
        Some(c) => src.check(c, |value| match value {
            "allow" => Ok(Concurrency::Allow),
            "queue" => Ok(Concurrency::Queue),
            "cancel-in-progress" => Ok(Concurrency::CancelInProgress),
            other => Err(format!(
                "concurrency {other:?} must be allow, queue or cancel-in-progress"
            )),
        })?,
    };
    reg.repository_refs.add(src, &p.repository);
    Ok(Pipeline {
        name,
        repository: p.repository.value,
        branches: p.branches.into_iter().map(|b| b.value).collect(),
        paths: p.paths.into_iter().map(|b| b.value).collect(),
        tags: p.tags.into_iter().map(|t| t.value).collect(),
        pull_requests,
        source,
        namespace,
        service_account: p.service_account,
        parameters: p.parameters,
        concurrency,
        ttl_strategy: p.ttl_strategy,
        pod_gc: p.pod_gc,
        artifact_gc: p.artifact_gc,
    })
}

/// A pipeline's `pullRequests`: target branch globs (at least one) and `workflowFrom`.
fn pull_requests(src: Source<'_>, prs: PullRequestsFile) -> Result<PullRequests, Error> {
    for pattern in &prs.branches {
        src.check(pattern, check_glob)?;
    }
    let workflow_from = match &prs.workflow_from {
        None => WorkflowFrom::Base,
        Some(w) => src.check(w, |value| match value {
            "base" => Ok(WorkflowFrom::Base),
            "head" => Ok(WorkflowFrom::Head),
            other => Err(format!("workflowFrom {other:?} must be base or head")),
        })?,
    };
    let branches: Vec<String> = prs.branches.into_iter().map(|b| b.value).collect();
    Ok(PullRequests {
        branches: if branches.is_empty() {
            vec!["*".to_owned()]
        } else {
            branches
        },
        workflow_from,
    })
}

pub(super) fn cleanup_rule(
    src: Source<'_>,
    c: CleanupFile,
    reg: &mut Registry,
) -> Result<CleanupRule, Error> {
    let name = reg.rules.claim(src, &c.name)?;
    let zone = c.timezone.as_ref().map_or("UTC", |tz| tz.value.as_str());
    let schedule = Schedule::new(&c.schedule.value, zone).map_err(|e| {
        let at = match (&e, &c.timezone) {
            (Invalid::TimeZone(_), Some(tz)) => tz.referenced,
            _ => c.schedule.referenced,
        };
        src.invalid(at, format!("cleanup rule {name:?}: {e}"))
    })?;
    let older_than = c
        .older_than
        .as_ref()
        .map(|d| src.check(d, parse_duration))
        .transpose()?;
    if c.keep_last.is_none() && older_than.is_none() {
        return Err(src.invalid(
            c.name.referenced,
            format!("cleanup rule {name:?} needs keepLast, olderThan or both"),
        ));
    }
    let namespace = namespace(src, c.namespace)?;
    if let Some(p) = &c.pipeline {
        reg.pipeline_refs.add(src, p);
    }
    Ok(CleanupRule {
        name,
        schedule,
        namespace,
        pipeline: c.pipeline.map(|p| p.value),
        selector: c.selector,
        service_account: None,
        keep_last: c.keep_last,
        older_than,
    })
}
