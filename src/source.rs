//! A repository's commit as a sync or a pipeline reads it: fetching branches, tags and pull
//! request heads into the bare mirror, and rendering the manifests of a sync's path at a
//! commit. `sync` and `pipelines` both start here.

use std::path::Path;
use std::time::Instant;

use tracing::instrument;

use crate::config::{Repository, Sync};
use crate::context::{self, Context};
use crate::git::{self, Commit, Credentials};
use crate::object::BuiltinScope;
use crate::render;

/// Why a commit could not be fetched or rendered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Credentials(#[from] context::Error),
    #[error(transparent)]
    Git(#[from] git::Error),
    #[error(transparent)]
    Render(#[from] render::Error),
    /// A `varsFrom` source or the decryption keys are missing or unusable.
    #[error("{0}")]
    Input(String),
}

/// What a sync's render takes from the cluster: its variables (`varsFrom`, then `vars`), the
/// values from Secrets among them (never to be shown), and its SOPS keys.
#[derive(Debug, Default)]
pub(crate) struct Inputs {
    /// `None` for a sync without `vars` or `varsFrom`: its files are not substituted.
    pub vars: Option<std::collections::BTreeMap<String, String>>,
    pub hidden: Vec<String>,
    pub keys: Option<crate::sops::Keys>,
}

/// Reads a sync's inputs: each `varsFrom` source in berth's namespace (as berth), in order,
/// then its `vars`; and its decryption keys (the `*.agekey` keys of its Secret, read as the
/// sync's account where it has one).
///
/// # Errors
/// A source that is not `optional` is missing, or a Secret cannot be read, each named.
pub(crate) async fn inputs(ctx: &Context, sync: &Sync) -> Result<Inputs, Error> {
    let mut inputs = Inputs::default();
    if sync.substitutes() {
        let mut vars = std::collections::BTreeMap::new();
        for source in &sync.vars_from {
            let data = ctx
                .namespace_data(&ctx.client, source.secret, &source.name)
                .await?;
            let Some(data) = data else {
                if source.optional {
                    continue;
                }
                return Err(Error::Input(format!(
                    "varsFrom: {} {}/{} does not exist (set optional: true to go on without it)",
                    source.kind(),
                    ctx.namespace,
                    source.name
                )));
            };
            for (k, v) in data {
                if render::is_var_name(&k) {
                    if source.secret && !v.is_empty() {
                        inputs.hidden.push(v.clone());
                    }
                    vars.insert(k, v);
                }
            }
        }
        vars.extend(sync.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        inputs.vars = Some(vars);
    }
    if let Some(name) = &sync.decryption {
        let what = format!("sync {:?}", sync.name);
        let (client, _) = ctx.client_as(
            &what,
            sync.namespace.as_deref(),
            sync.service_account.as_deref(),
        )?;
        let data = ctx.namespace_data(&client, true, name).await?;
        let data = data.ok_or_else(|| {
            Error::Input(format!(
                "decryption: Secret {}/{name} does not exist",
                ctx.namespace
            ))
        })?;
        let mut keys = crate::sops::Keys::default();
        for (k, v) in data.iter().filter(|(k, _)| k.ends_with(".agekey")) {
            keys.add(&format!("Secret {}/{name} key {k}", ctx.namespace), v)
                .map_err(Error::Input)?;
        }
        if keys.is_empty() {
            return Err(Error::Input(format!(
                "decryption: Secret {}/{name} has no key ending in .agekey holding an age identity",
                ctx.namespace
            )));
        }
        inputs.keys = Some(keys);
    }
    Ok(inputs)
}

/// Reads a repository's credentials and fetches `branches` (names or globs) into its mirror.
/// Returns the head of the repository's own `branch` when `branches` names it.
///
/// # Errors
/// Credentials, network, or the repository's branch missing.
pub(crate) async fn refresh(
    ctx: &Context,
    repo: &Repository,
    branches: Vec<String>,
) -> Result<Option<Commit>, Error> {
    refresh_refs(ctx, repo, branches, Vec::new()).await
}

/// [`refresh`], fetching the refspecs in `extra` too (tags, pull request heads).
///
/// # Errors
/// Credentials, network, or the repository's branch missing.
pub(crate) async fn refresh_refs(
    ctx: &Context,
    repo: &Repository,
    branches: Vec<String>,
    extra: Vec<String>,
) -> Result<Option<Commit>, Error> {
    let creds = ctx.credentials(repo.auth_secret.as_deref()).await?;
    fetch_branches(&ctx.cache_dir, repo, creds, branches, extra).await
}

/// Fetches a repository's branch into its mirror and resolves the head commit.
///
/// # Errors
/// Network or a missing branch.
#[instrument(skip_all, fields(repository = %repo.name))]
pub(crate) async fn fetch(
    cache_dir: &Path,
    repo: &Repository,
    creds: Option<Credentials>,
) -> Result<Commit, Error> {
    let head = fetch_branches(
        cache_dir,
        repo,
        creds,
        vec![repo.branch.clone()],
        Vec::new(),
    )
    .await?;
    Ok(head.expect("the repository's branch was asked for"))
}

/// Fetches branches (names or globs) of a repository into its mirror. Returns the head of the
/// repository's own `branch` when `branches` names it.
///
/// # Errors
/// Network, or the repository's branch missing.
pub(crate) async fn fetch_branches(
    cache_dir: &Path,
    repo: &Repository,
    creds: Option<Credentials>,
    branches: Vec<String>,
    extra: Vec<String>,
) -> Result<Option<Commit>, Error> {
    let started = Instant::now();
    let branch = repo.branch.clone();
    let head = git::with_mirror(cache_dir, repo.url.as_str(), move |mirror| {
        let patterns: Vec<&str> = branches.iter().map(String::as_str).collect();
        mirror.fetch_refs(&patterns, &extra, creds.as_ref())?;
        if branches.contains(&branch) {
            mirror.resolve(&branch).map(Some)
        } else {
            Ok::<_, git::Error>(None)
        }
    })
    .await?;
    tracing::debug!(
        repository = %repo.name,
        duration_ms = started.elapsed().as_millis() as u64,
        "fetched"
    );
    Ok(head)
}

/// The head of the repository's branch in the local mirror; nothing is fetched.
///
/// # Errors
/// The mirror has no such branch.
pub(crate) async fn head(cache_dir: &Path, repo: &Repository) -> Result<Commit, Error> {
    let branch = repo.branch.clone();
    Ok(
        git::with_mirror(cache_dir, repo.url.as_str(), move |mirror| {
            mirror.resolve(&branch)
        })
        .await?,
    )
}

/// A commit of the mirror: `revision` (a sha or a ref) when given, else the head of `branch`.
///
/// # Errors
/// Unknown branch or revision.
pub(crate) async fn resolve(
    cache_dir: &Path,
    repo: &Repository,
    branch: &str,
    revision: Option<&str>,
) -> Result<Commit, Error> {
    let (branch, revision) = (branch.to_owned(), revision.map(str::to_owned));
    Ok(
        git::with_mirror(cache_dir, repo.url.as_str(), move |mirror| match revision {
            Some(r) => mirror.commit(&r),
            None => mirror.resolve(&branch),
        })
        .await?,
    )
}

/// Reads and renders a sync's manifests at a commit, with the scopes known offline. Files
/// larger than `max_bytes` are refused before they are read.
///
/// # Errors
/// Git read or render errors, naming file and line.
pub(crate) async fn render(
    cache_dir: &Path,
    max_bytes: u64,
    (repo, sync, inputs): (&Repository, &Sync, &Inputs),
    commit: &str,
) -> Result<render::Rendered, Error> {
    let (path, rev) = (sync.path.clone(), commit.to_owned());
    let mut files = git::with_mirror(cache_dir, repo.url.as_str(), move |mirror| {
        git::read_path(
            mirror.repository(),
            &mirror.display_url(),
            &rev,
            &path,
            max_bytes,
        )
    })
    .await?;
    let selection = render::Selection::new(&sync.include, &sync.exclude);
    files.retain(|f| selection.selects(relative(&sync.path, &f.path)));
    let options = render::Options {
        vars: inputs.vars.as_ref(),
        namespace: sync.namespace.as_deref(),
        keys: inputs.keys.as_ref(),
        hidden: &inputs.hidden,
    };
    Ok(render::directory(files, &options, &BuiltinScope)?)
}

/// Whether a change to `path` (a repository path) can change what a sync renders: it is under
/// the sync's `path` and its include and exclude globs select it.
pub(crate) fn touches(sync: &Sync, path: &str) -> bool {
    let under = sync.path.is_empty()
        || path
            .strip_prefix(&sync.path)
            .is_some_and(|rest| rest.starts_with('/'));
    under
        && render::Selection::new(&sync.include, &sync.exclude).selects(relative(&sync.path, path))
}

/// A pull request's head in the mirror (by its ref, else its source branch), and the head of
/// the repository's branch.
///
/// # Errors
/// The mirror lacks the head or the branch.
pub(crate) async fn pull_request(
    cache_dir: &Path,
    repo: &Repository,
    head_ref: Option<String>,
    head_branch: &str,
) -> Result<(Commit, Commit), Error> {
    let (branch, head_branch) = (repo.branch.clone(), head_branch.to_owned());
    Ok(
        git::with_mirror(cache_dir, repo.url.as_str(), move |mirror| {
            let head = match &head_ref {
                Some(r) => mirror.reference(r).map_or_else(|| mirror.commit(r), Ok)?,
                None => mirror.resolve(&head_branch)?,
            };
            Ok::<_, git::Error>((head, mirror.resolve(&branch)?))
        })
        .await?,
    )
}

/// The files `head` changes since it parted from `base`.
///
/// # Errors
/// The mirror lacks `head`.
pub(crate) async fn changed_since(
    cache_dir: &Path,
    repo: &Repository,
    base: &str,
    head: &str,
) -> Result<Vec<String>, Error> {
    let (base, head) = (base.to_owned(), head.to_owned());
    Ok(
        git::with_mirror(cache_dir, repo.url.as_str(), move |mirror| {
            let since = mirror.merge_base(&base, &head);
            let url = mirror.display_url();
            git::changed_paths(mirror.repository(), &url, since.as_deref(), &head)
        })
        .await?,
    )
}

/// A repository path relative to a sync's `path`.
fn relative<'a>(base: &str, path: &'a str) -> &'a str {
    if base.is_empty() {
        path
    } else {
        path.strip_prefix(base)
            .map_or(path, |rest| rest.trim_start_matches('/'))
    }
}

/// `<repo-url>#<path>` with credentials removed: where a sync's objects come from.
pub(crate) fn label(repo: &Repository, sync: &Sync) -> String {
    format!("{}#{}", repo.url.redacted(), sync.path)
}

#[cfg(test)]
mod tests {
    use super::{relative, touches};

    #[test]
    fn a_sync_is_touched_by_files_its_path_and_globs_select() {
        let text = "apiVersion: berth.dev/v1alpha1\nkind: Mapping\nrepositories:\n  - {name: c, url: https://git.example.com/c.git}\nsyncs:\n  - {name: web, repository: c, path: apps/web}\n";
        let mapping =
            crate::config::parse(&[("berth.yaml".into(), text.to_owned())]).expect("valid");
        let mut sync = mapping.syncs[0].clone();
        assert!(touches(&sync, "apps/web/deploy.yaml"));
        assert!(touches(&sync, "apps/web/x/y.yaml"));
        assert!(!touches(&sync, "apps/webber/deploy.yaml"));
        assert!(!touches(&sync, "README.md"));
        sync.exclude = vec!["test/**".into()];
        assert!(!touches(&sync, "apps/web/test/a.yaml"));
        sync.path = String::new();
        sync.exclude.clear();
        assert!(touches(&sync, "README.md"));
    }

    #[test]
    fn paths_are_relative_to_the_sync() {
        assert_eq!(relative("", "a/b.yaml"), "a/b.yaml");
        assert_eq!(relative("apps/web", "apps/web/x/d.yaml"), "x/d.yaml");
        assert_eq!(relative("apps/web", "other/d.yaml"), "other/d.yaml");
    }
}
