//! One function per section of a mapping file: a parsed entry in, a validated value out, with
//! its names claimed and its references noted for [`super::parse`] to resolve.

use std::collections::BTreeMap;

use super::file::{CleanupFile, PipelineFile, RepositoryFile, SyncFile};
use super::values::{
    Names, References, Source, check_glob, namespace, normalize_path, parse_duration,
    parse_interval,
};
use super::{
    CleanupRule, Concurrency, DEFAULT_WORKFLOW, Error, Pipeline, Repository, Sync, WorkflowSource,
};
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
    Ok(Repository {
        name,
        url,
        branch: r.branch,
        interval: (!interval.is_zero()).then_some(interval),
        auth_secret: r.auth.map(|a| a.secret_ref),
        webhook_secret: r.webhook_secret_ref,
    })
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
    Ok(Sync {
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

/// How long a sync with `wait: true` waits for its objects when the mapping sets no timeout.
const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub(super) fn pipeline(
    src: Source<'_>,
    p: PipelineFile,
    reg: &mut Registry,
) -> Result<Pipeline, Error> {
    let name = reg.pipelines.claim(src, &p.name)?;
    for pattern in p.branches.iter().chain(&p.paths) {
        src.check(pattern, check_glob)?;
    }
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
