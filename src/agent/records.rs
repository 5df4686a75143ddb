//! What the dashboard's pages and `berth status` read: berth's records on the cluster, the
//! pipelines' recent runs, the Events about a sync, a run's logs, commit subjects from the
//! mirrors, and a sync's diff against the head of its branch. Reading only; the handlers that
//! render pages from these are in `dashboard.rs`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, LogParams};

use super::shared::Shared;
use crate::config::Mapping;
use crate::context::Context;
use crate::git;
use crate::source;
use crate::status::{self, SyncStatus};
use crate::sync::{self, Mode};
use crate::ui::graph;
use crate::ui::pages::{EventRow, Logs};
use crate::ui::status::{AgentState, Document, NotificationRow, StatusView, document};
use crate::{cleanup, pipelines, vocab};

/// How many Events a sync page lists.
const EVENTS_SHOWN: usize = 20;

/// Everything `berth status` and the overview read from the cluster.
pub(crate) struct Records {
    pub syncs: BTreeMap<String, SyncStatus>,
    pub pipelines: BTreeMap<String, pipelines::State>,
    pub rules: BTreeMap<String, cleanup::State>,
    pub agent: Option<AgentState>,
    /// The newest runs of each pipeline of the mapping, newest first.
    pub runs: BTreeMap<String, Vec<pipelines::Run>>,
    pub notifications: Vec<NotificationRow>,
}

impl Records {
    /// Reads the records in berth's namespace and up to `runs` runs per pipeline.
    ///
    /// # Errors
    /// The records cannot be read.
    pub(crate) async fn read(
        ctx: &Context,
        mapping: Option<&Mapping>,
        runs: usize,
    ) -> Result<Self, crate::store::Error> {
        let store = ctx.store();
        let syncs = status::list(&store).await?;
        let pipeline_states = pipelines::list_states(&store).await?;
        let rules = cleanup::list_states(&store).await?;
        let agent = store
            .get(vocab::RecordKind::Agent, "")
            .await
            .ok()
            .flatten()
            .map(|cm| {
                let a = crate::store::annotations(&cm);
                let get = |k: &str| a.get(k).cloned().unwrap_or_default();
                AgentState {
                    mapping: get(vocab::CONFIG_STATUS),
                    message: get(vocab::MESSAGE),
                    changed: get(vocab::LAST_SYNC),
                }
            });
        let mut notifications = Vec::new();
        for n in mapping.iter().flat_map(|m| &m.notifications) {
            let name = format!("notify-{}", n.name);
            let record = store
                .get(vocab::RecordKind::Outbox, &name)
                .await
                .ok()
                .flatten();
            let a = record
                .as_ref()
                .map(crate::store::annotations)
                .unwrap_or_default();
            let get = |k: &str| a.get(k).cloned().unwrap_or_default();
            notifications.push(NotificationRow {
                name: n.name.clone(),
                kind: n.kind.as_str().to_owned(),
                last_delivered: get(vocab::LAST_SYNC),
                error: get(vocab::MESSAGE),
            });
        }
        let mut recent = BTreeMap::new();
        for p in mapping.iter().flat_map(|m| &m.pipelines) {
            let namespace = p.namespace.as_deref().unwrap_or(&ctx.namespace);
            let found = pipelines::recent_runs(&ctx.client, namespace, &p.name, runs).await;
            if !found.is_empty() {
                recent.insert(p.name.clone(), found);
            }
        }
        Ok(Self {
            syncs,
            pipelines: pipeline_states,
            rules,
            agent,
            runs: recent,
            notifications,
        })
    }

    /// `berth status`'s document of these records.
    pub(crate) fn document(&self, mapping: Option<&Mapping>) -> Document {
        let newest: BTreeMap<String, pipelines::Run> = self
            .runs
            .iter()
            .filter_map(|(name, runs)| Some((name.clone(), runs.first()?.clone())))
            .collect();
        let mut doc = document(&StatusView {
            mapping,
            syncs: &self.syncs,
            pipelines: &self.pipelines,
            rules: &self.rules,
            newest: &newest,
            agent: self.agent.clone(),
            now: jiff::Timestamp::now(),
        });
        doc.notifications.clone_from(&self.notifications);
        doc
    }
}

/// Commit subjects of `revisions`, from the repositories' mirrors (remembered: they never
/// change).
pub(super) async fn subjects(
    ctx: &Context,
    shared: &Shared,
    mapping: &Mapping,
    revisions: &[(String, String)],
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (repository, revision) in revisions {
        if revision.is_empty() {
            continue;
        }
        let known = shared
            .subjects
            .lock()
            .expect("subjects lock")
            .get(revision)
            .cloned();
        let subject = match known {
            Some(s) => s,
            None => {
                let Some(repo) = mapping.repository(repository) else {
                    continue;
                };
                let rev = revision.clone();
                let read =
                    git::with_mirror(&ctx.cache_dir, repo.url.as_str(), move |m| m.commit(&rev))
                        .await;
                let Ok(commit) = read else { continue };
                shared
                    .subjects
                    .lock()
                    .expect("subjects lock")
                    .insert(revision.clone(), commit.subject.clone());
                commit.subject
            }
        };
        out.insert(revision.clone(), subject);
    }
    out
}

/// How long a fetch for a sync page counts as current: live updates and several viewers reuse
/// it rather than fetching on every page load.
const FETCH_REUSE: std::time::Duration = std::time::Duration::from_secs(10);

/// The head of a repository's branch: fetched now, or read from the mirror when the dashboard
/// fetched it less than [`FETCH_REUSE`] ago.
async fn head_of(
    ctx: &Context,
    shared: &Shared,
    repo: &crate::config::Repository,
) -> Result<git::Commit, String> {
    let recent = shared
        .fetched
        .lock()
        .expect("fetched lock")
        .get(&repo.name)
        .is_some_and(|at| at.elapsed() < FETCH_REUSE);
    if recent {
        let branch = repo.branch.clone();
        let read = git::with_mirror(&ctx.cache_dir, repo.url.as_str(), move |m| {
            m.resolve(&branch)
        })
        .await;
        if let Ok(head) = read {
            return Ok(head);
        }
    }
    let head = match source::refresh(ctx, repo, vec![repo.branch.clone()]).await {
        Ok(Some(head)) => head,
        Ok(None) => return Err("the branch has no head".to_owned()),
        Err(e) => return Err(e.to_string()),
    };
    shared
        .fetched
        .lock()
        .expect("fetched lock")
        .insert(repo.name.clone(), std::time::Instant::now());
    Ok(head)
}

/// The diff between live state and the head of the sync's branch.
pub(super) async fn current_diff(
    ctx: &Context,
    shared: &Shared,
    mapping: &Mapping,
    name: &str,
) -> (String, Result<Vec<String>, String>) {
    let Some(s) = mapping.syncs.iter().find(|s| s.name == name) else {
        return (
            String::new(),
            Err("the sync is not in the mapping".to_owned()),
        );
    };
    let Some(repo) = mapping.repository(&s.repository) else {
        return (
            String::new(),
            Err("its repository is not in the mapping".to_owned()),
        );
    };
    let head = match head_of(ctx, shared, repo).await {
        Ok(head) => head,
        Err(e) => return (String::new(), Err(e)),
    };
    let report = sync::run_once(ctx, mapping, repo, s, &head, Mode::Plan).await;
    if report.failed() {
        return (head.id, Err(report.message));
    }
    (head.id, Ok(crate::diff::plan_diffs(&report.plan)))
}

/// The Events about a sync's record, newest first.
pub(super) async fn sync_events(ctx: &Context, name: &str) -> Vec<EventRow> {
    let api: Api<Event> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let params = ListParams::default().fields(&format!(
        "involvedObject.name={}",
        vocab::RecordKind::Sync.config_map(name)
    ));
    let Ok(list) = api.list(&params).await else {
        return Vec::new();
    };
    let mut rows: Vec<(String, EventRow)> = list
        .items
        .into_iter()
        .map(|e| {
            let at = e
                .event_time
                .map(|t| t.0.to_string())
                .or_else(|| e.last_timestamp.map(|t| t.0.to_string()))
                .or_else(|| e.metadata.creation_timestamp.map(|t| t.0.to_string()))
                .unwrap_or_default();
            let row = EventRow {
                at: at.clone(),
                reason: e.reason.unwrap_or_default(),
                message: e.message.unwrap_or_default(),
            };
            (at, row)
        })
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0));
    rows.into_iter()
        .take(EVENTS_SHOWN)
        .map(|(_, r)| r)
        .collect()
}

/// The log of a run's node, from its pod when there is one.
pub(super) async fn node_logs(
    client: &kube::Client,
    namespace: &str,
    workflow: &str,
    node: &graph::Node,
) -> Logs {
    if node.kind != "Pod" {
        return Logs::Note(format!(
            "{} is a {} node: it runs no pod of its own.",
            node.name,
            if node.kind.is_empty() {
                "pending"
            } else {
                &node.kind
            }
        ));
    }
    // Argo names a node's pod after the node id, or (v3.4 and later) after the workflow, the
    // template and the id's number
    let number = node.id.rsplit('-').next().unwrap_or_default();
    let candidates = [
        node.id.clone(),
        format!("{workflow}-{}-{number}", node.template),
    ];
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for name in candidates {
        match pods.get_opt(&name).await {
            Ok(Some(_)) => {
                let params = LogParams {
                    container: Some("main".to_owned()),
                    tail_lines: Some(500),
                    ..LogParams::default()
                };
                return match pods.logs(&name, &params).await {
                    Ok(text) => Logs::Text(text),
                    Err(e) => Logs::Note(format!("The log of pod {name} could not be read: {e}")),
                };
            }
            Ok(None) => {}
            Err(e) => {
                return Logs::Note(format!(
                    "The pods of this run could not be read: {}",
                    crate::cluster::api_message(&e)
                ));
            }
        }
    }
    Logs::Note(format!(
        "There is no pod for {} (it has not started, or it was deleted).",
        node.name
    ))
}
