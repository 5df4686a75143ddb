//! What `berth status` and the dashboard's overview show (pure): the mapping joined with the
//! records on the cluster and the newest run of each pipeline.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::cleanup;
use crate::config::Mapping;
use crate::pipelines;
use crate::status::SyncStatus;

/// The state of the mapping file as the agent recorded it (`berth-agent`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct AgentState {
    /// `Valid` or `Invalid`.
    pub mapping: String,
    pub message: String,
    pub changed: String,
}

/// What `berth status` shows: the mapping (when it loads) joined with the records on the
/// cluster and the newest run of each pipeline.
pub(crate) struct StatusView<'a> {
    pub mapping: Option<&'a Mapping>,
    pub syncs: &'a BTreeMap<String, SyncStatus>,
    pub pipelines: &'a BTreeMap<String, pipelines::State>,
    pub rules: &'a BTreeMap<String, cleanup::State>,
    /// The newest run of each pipeline, read from the cluster (runs `trigger` launched
    /// included).
    pub newest: &'a BTreeMap<String, pipelines::Run>,
    pub agent: Option<AgentState>,
    pub now: Timestamp,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SyncRow {
    pub name: String,
    pub repository: String,
    pub revision: String,
    pub status: String,
    pub health: String,
    pub objects: usize,
    pub last_sync: String,
    pub message: String,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PipelineRow {
    pub name: String,
    pub repository: String,
    pub last_run: Option<pipelines::Run>,
    pub message: String,
    /// The last failed commit status request, if the latest failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub provider_error: String,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RuleRow {
    pub name: String,
    pub schedule: String,
    pub last_run: Option<String>,
    pub next_run: Option<String>,
    pub deleted: usize,
    pub stuck: usize,
    pub message: String,
}

/// Everything `berth status` reports, as tables print it and scripts read it.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Document {
    pub syncs: Vec<SyncRow>,
    pub pipelines: Vec<PipelineRow>,
    pub cleanup: Vec<RuleRow>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<NotificationRow>,
    pub agent: Option<AgentState>,
}

/// One notification: where it goes, when it last delivered, and why it is failing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct NotificationRow {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub last_delivered: String,
    /// The last delivery's error; empty while delivering.
    pub error: String,
}

pub(crate) fn document(view: &StatusView<'_>) -> Document {
    Document {
        syncs: sync_rows(view),
        pipelines: pipeline_rows(view),
        cleanup: rule_rows(view),
        notifications: Vec::new(),
        agent: view.agent.clone(),
    }
}

pub(crate) fn sync_rows(view: &StatusView<'_>) -> Vec<SyncRow> {
    let mut joined: BTreeMap<&str, (&str, Option<&SyncStatus>)> = BTreeMap::new();
    for s in view.mapping.iter().flat_map(|m| &m.syncs) {
        joined.insert(&s.name, (&s.repository, view.syncs.get(&s.name)));
    }
    for (name, st) in view.syncs {
        joined.entry(name).or_insert(("", Some(st)));
    }
    joined
        .into_iter()
        .map(|(name, (repo, st))| match st {
            Some(s) => SyncRow {
                name: name.to_owned(),
                repository: repo.to_owned(),
                revision: s.revision.clone(),
                status: s.phase.to_string(),
                health: s.health.to_string(),
                objects: s.inventory.len(),
                last_sync: s.last_sync.clone(),
                message: s.message.clone(),
            },
            None => SyncRow {
                name: name.to_owned(),
                repository: repo.to_owned(),
                revision: String::new(),
                status: "Unknown".into(),
                health: "Unknown".into(),
                objects: 0,
                last_sync: String::new(),
                message: "not synced yet".into(),
            },
        })
        .collect()
}

pub(crate) fn pipeline_rows(view: &StatusView<'_>) -> Vec<PipelineRow> {
    let mut names: Vec<(&str, &str)> = view
        .mapping
        .iter()
        .flat_map(|m| &m.pipelines)
        .map(|p| (p.name.as_str(), p.repository.as_str()))
        .collect();
    for name in view.pipelines.keys() {
        if !names.iter().any(|(n, _)| n == name) {
            names.push((name, ""));
        }
    }
    names
        .into_iter()
        .map(|(name, repo)| {
            let state = view.pipelines.get(name).cloned().unwrap_or_default();
            let last_run = view
                .newest
                .get(name)
                .cloned()
                .or_else(|| state.runs.first().cloned());
            PipelineRow {
                name: name.to_owned(),
                repository: repo.to_owned(),
                last_run,
                message: state.message,
                provider_error: state.provider_error,
            }
        })
        .collect()
}

pub(crate) fn rule_rows(view: &StatusView<'_>) -> Vec<RuleRow> {
    let mut rules: Vec<(&str, Option<&crate::schedule::Schedule>)> = view
        .mapping
        .iter()
        .flat_map(|m| &m.cleanup)
        .map(|r| (r.name.as_str(), Some(&r.schedule)))
        .collect();
    for name in view.rules.keys() {
        if !rules.iter().any(|(n, _)| n == name) {
            rules.push((name, None));
        }
    }
    rules
        .into_iter()
        .map(|(name, schedule)| {
            let state = view.rules.get(name).cloned().unwrap_or_default();
            let next_run = schedule
                .and_then(|s| s.due(view.now, state.last_run))
                .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string());
            RuleRow {
                name: name.to_owned(),
                schedule: schedule.map(|s| s.text().to_owned()).unwrap_or_default(),
                last_run: state.last_run.map(|t| t.to_string()),
                next_run,
                deleted: state.last.deleted.len(),
                stuck: state.last.stuck.len(),
                message: state.message,
            }
        })
        .collect()
}
