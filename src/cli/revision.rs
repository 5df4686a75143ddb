//! `berth diff --revision`: the preview a pull request gets, for any commit of the syncs'
//! repository. Nothing is written: each sync is planned with server-side dry-runs as its own
//! account.

use std::collections::BTreeSet;
use std::process::ExitCode;

use super::{Args, USAGE, fail, output, print};
use crate::config::Mapping;
use crate::{diff, preview, source};

/// Previews `names` (default: every sync, which must then share one repository) at `revision`.
/// Exit 0 no differences, 1 differences, 2 something would fail or the work could not start.
pub(super) async fn diff(
    args: &Args,
    mapping: &Mapping,
    names: &[String],
    revision: &str,
) -> ExitCode {
    let syncs = match mapping.select_syncs(names) {
        Ok(s) => s,
        Err(e) => return fail(USAGE, e),
    };
    let repos: BTreeSet<&str> = syncs.iter().map(|s| s.repository.as_str()).collect();
    let Some(name) = repos.first().filter(|_| repos.len() == 1) else {
        let list: Vec<&str> = repos.into_iter().collect();
        return fail(
            USAGE,
            format!(
                "--revision names a commit of one repository, and these syncs come from {}: \
                 name the syncs of one of them",
                list.join(", ")
            ),
        );
    };
    let repo = mapping.repository(name).expect("validated mapping");
    let ctx = match args.context().await {
        Ok(c) => c,
        Err(e) => return fail(USAGE, e),
    };
    ctx.progress(&repo.name, &format!("fetching {} and {revision}", repo.url));
    let (branches, extra) = wanted(&repo.branch, revision);
    if let Err(e) = source::refresh_refs(&ctx, repo, branches, extra).await {
        return fail(USAGE, e);
    }
    let mut found = source::resolve(&ctx.cache_dir, repo, &repo.branch, Some(revision)).await;
    if found.is_err() && is_commit_id(revision) {
        // a commit of another branch: fetch them all, then look again
        ctx.progress(
            &repo.name,
            &format!(
                "{revision} is not on {}; fetching every branch",
                repo.branch
            ),
        );
        if let Err(e) = source::refresh_refs(&ctx, repo, vec!["*".to_owned()], Vec::new()).await {
            return fail(USAGE, e);
        }
        found = source::resolve(&ctx.cache_dir, repo, &repo.branch, Some(revision)).await;
    }
    let commit = match found {
        Ok(c) => c,
        Err(e) => {
            return fail(
                USAGE,
                format!(
                    "{e} (a pull request's head is fetched by its ref, such as \
                     refs/pull/7/head)"
                ),
            );
        }
    };
    let made = preview::make(&ctx, mapping, repo, 0, &commit, &syncs).await;
    print(|w| output::preview(w, &made, diff::colorize));
    let failed = made.syncs.iter().any(|s| !s.clean());
    let differ = made.syncs.iter().any(|s| !s.changes.is_empty());
    ExitCode::from(if failed { USAGE } else { u8::from(differ) })
}

/// Whether `revision` reads as a commit id, which may be on a branch not fetched yet.
fn is_commit_id(revision: &str) -> bool {
    revision.len() >= 4 && revision.chars().all(|c| c.is_ascii_hexdigit())
}

/// What to fetch for `revision`: the repository's branch, and the revision itself when it names
/// a ref (`refs/…`) or a branch rather than a commit.
fn wanted(branch: &str, revision: &str) -> (Vec<String>, Vec<String>) {
    let mut branches = vec![branch.to_owned()];
    let mut extra = Vec::new();
    let sha = is_commit_id(revision);
    if revision.starts_with("refs/") {
        extra.push(format!("+{revision}:{revision}"));
    } else if !sha && revision != branch {
        branches.push(revision.to_owned());
    }
    (branches, extra)
}

#[cfg(test)]
mod tests {
    use super::wanted;

    #[test]
    fn refs_and_branches_are_fetched_and_commits_looked_up() {
        assert_eq!(
            wanted("main", "refs/pull/7/head"),
            (
                vec!["main".to_owned()],
                vec!["+refs/pull/7/head:refs/pull/7/head".to_owned()]
            )
        );
        assert_eq!(
            wanted("main", "feature/x"),
            (vec!["main".to_owned(), "feature/x".to_owned()], vec![])
        );
        assert_eq!(wanted("main", "3f2a9c1"), (vec!["main".to_owned()], vec![]));
        assert_eq!(wanted("main", "main"), (vec!["main".to_owned()], vec![]));
    }
}
