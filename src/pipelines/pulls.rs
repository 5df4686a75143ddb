//! The open pull requests of a repository, as its loop knows them: from the provider's list
//! (complete) and from webhook deliveries (each one pull request). Pure.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Pipeline;
use crate::provider::{Api, PullRequest};
use crate::webhook::PullRequestEvent;

use super::workflow::branch_matches;

/// What a repository's loop knows of its pull requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PullRequests {
    /// Open pull requests by number.
    pub open: BTreeMap<u64, PullRequest>,
    /// Pull requests a delivery said closed or merged since the last pass.
    pub closed: BTreeSet<u64>,
    /// Whether `open` is the provider's whole list, so a pull request missing from it is
    /// closed. Deliveries alone never say that (after a restart berth knows only what
    /// arrives).
    pub complete: bool,
}

impl PullRequests {
    /// Takes in a delivery.
    pub(crate) fn event(&mut self, e: &PullRequestEvent) {
        let n = e.pull.number;
        if e.closed {
            self.open.remove(&n);
            self.closed.insert(n);
        } else {
            self.open.insert(n, e.pull.clone());
            self.closed.remove(&n);
        }
    }

    /// Takes in the provider's list of open pull requests, which replaces what was known.
    pub(crate) fn listed(&mut self, open: Vec<PullRequest>) {
        self.open = open.into_iter().map(|p| (p.number, p)).collect();
        self.closed.retain(|n| !self.open.contains_key(n));
        self.complete = true;
    }

    /// Whether pull request `n` is known to be closed.
    pub(crate) fn is_closed(&self, n: u64) -> bool {
        self.closed.contains(&n) || (self.complete && !self.open.contains_key(&n))
    }

    /// The open pull requests a pipeline builds: those whose target branch it names.
    pub(crate) fn wanted<'a>(
        &'a self,
        pipeline: &'a Pipeline,
    ) -> impl Iterator<Item = &'a PullRequest> + 'a {
        let targets = pipeline
            .pull_requests
            .as_ref()
            .map(|p| p.branches.as_slice())
            .unwrap_or_default();
        self.open
            .values()
            .filter(move |p| !targets.is_empty() && branch_matches(targets, &p.base))
    }

    /// The open pull requests into `branch`.
    pub(crate) fn targeting<'a>(
        &'a self,
        branch: &'a str,
    ) -> impl Iterator<Item = &'a PullRequest> + 'a {
        self.open.values().filter(move |p| p.base == branch)
    }

    /// What to fetch for the pipelines' pull requests, and for those into `previewed` (the
    /// branch of a repository whose syncs are previewed): refspecs of their head refs, and
    /// the source branches of those the host has no ref for (Bitbucket Cloud).
    pub(crate) fn fetch(
        &self,
        pipelines: &[&Pipeline],
        previewed: Option<&str>,
        api: &dyn Api,
    ) -> (Vec<String>, Vec<String>) {
        let (mut refspecs, mut branches) = (Vec::new(), Vec::new());
        let previews = previewed.into_iter().flat_map(|b| self.targeting(b));
        let numbers: BTreeSet<u64> = pipelines
            .iter()
            .flat_map(|p| self.wanted(p))
            .chain(previews)
            .map(|pr| pr.number)
            .collect();
        for n in numbers {
            match api.head_ref(n) {
                Some(r) => refspecs.push(format!("+{r}:{r}")),
                None => branches.push(self.open[&n].head_branch.clone()),
            }
        }
        (refspecs, branches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Concurrency, PullRequests as Prs, WorkflowFrom, WorkflowSource};
    use crate::provider::Kind;

    fn pr(n: u64, base: &str) -> PullRequest {
        PullRequest {
            number: n,
            base: base.into(),
            head_branch: format!("feature-{n}"),
            head_sha: format!("{n:040}"),
        }
    }

    fn event(n: u64, closed: bool) -> PullRequestEvent {
        PullRequestEvent {
            pull: pr(n, "main"),
            closed,
            action: String::new(),
        }
    }

    fn pipeline(targets: &[&str]) -> Pipeline {
        Pipeline {
            name: "ci".into(),
            repository: "web".into(),
            branches: vec!["main".into()],
            paths: vec![],
            tags: vec![],
            pull_requests: Some(Prs {
                branches: targets.iter().map(|t| (*t).to_owned()).collect(),
                workflow_from: WorkflowFrom::Base,
            }),
            source: WorkflowSource::File(".argo/workflow.yaml".into()),
            namespace: None,
            service_account: None,
            parameters: Default::default(),
            concurrency: Concurrency::Allow,
            ttl_strategy: None,
            pod_gc: None,
            artifact_gc: None,
        }
    }

    #[test]
    fn deliveries_open_and_close_and_only_a_full_list_closes_by_absence() {
        let mut prs = PullRequests::default();
        prs.event(&event(1, false));
        prs.event(&event(2, false));
        prs.event(&event(2, true));
        assert_eq!(prs.open.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert!(prs.is_closed(2));
        assert!(
            !prs.is_closed(3),
            "deliveries alone never close what they did not name"
        );
        prs.listed(vec![pr(1, "main"), pr(4, "main")]);
        assert!(prs.is_closed(3) && prs.is_closed(2) && !prs.is_closed(4));
        prs.event(&event(2, false));
        assert!(!prs.is_closed(2), "a reopened pull request is open again");
    }

    #[test]
    fn a_pipeline_fetches_the_heads_of_the_pull_requests_it_builds() {
        let mut prs = PullRequests::default();
        prs.listed(vec![pr(1, "main"), pr(2, "release/1"), pr(3, "dev")]);
        let p = pipeline(&["main", "release/*"]);
        let (refspecs, branches) = prs.fetch(&[&p], None, Kind::GitHub.api());
        assert_eq!(
            refspecs,
            vec![
                "+refs/pull/1/head:refs/pull/1/head",
                "+refs/pull/2/head:refs/pull/2/head"
            ]
        );
        assert!(branches.is_empty());
        // previews add the pull requests into the config repository's branch, once each
        let (refspecs, _) = prs.fetch(&[&p], Some("dev"), Kind::GitHub.api());
        assert_eq!(refspecs.len(), 3);
        assert_eq!(refspecs[2], "+refs/pull/3/head:refs/pull/3/head");
        let (refspecs, _) = prs.fetch(&[], Some("main"), Kind::GitHub.api());
        assert_eq!(refspecs, vec!["+refs/pull/1/head:refs/pull/1/head"]);
        let (refspecs, _) = prs.fetch(&[&p], None, Kind::GitLab.api());
        assert_eq!(
            refspecs[0],
            "+refs/merge-requests/1/head:refs/merge-requests/1/head"
        );
        let (refspecs, _) = prs.fetch(&[&p], None, Kind::BitbucketServer.api());
        assert_eq!(
            refspecs[0],
            "+refs/pull-requests/1/from:refs/pull-requests/1/from"
        );
        let (refspecs, branches) = prs.fetch(&[&p], None, Kind::Bitbucket.api());
        assert!(refspecs.is_empty());
        assert_eq!(branches, vec!["feature-1", "feature-2"]);
        let none = pipeline(&[]);
        assert_eq!(prs.wanted(&none).count(), 0);
    }
}
