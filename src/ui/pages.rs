//! The dashboard's pages (pure): each takes a view model and returns the markup of its `main`.
//! `maud` escapes every value it inserts.

use std::collections::BTreeMap;

use maud::{Markup, html};

use super::graph::{self, Node};
use super::html::{badge, or, segment, table, table_at};
use super::status::{Document, SyncRow};
use crate::pipelines::Run;
use crate::webhook::DeliveryRecord;

pub(crate) fn short(revision: &str) -> &str {
    &revision[..revision.len().min(7)]
}

/// How urgent a sync row is: failures first, then what needs attention, then the rest.
fn urgency(status: &str, health: &str) -> u8 {
    match (status, health) {
        ("Failed", _) => 0,
        (_, "Degraded") => 1,
        ("OutOfSync", _) => 2,
        (_, "Progressing") => 3,
        ("Unknown", _) => 4,
        _ => 5,
    }
}

/// How urgent a pipeline is, by its newest run.
fn run_urgency(phase: &str) -> u8 {
    match phase {
        "Failed" | "Error" => 0,
        "Running" | "Pending" => 1,
        _ => 2,
    }
}

/// A run's duration in seconds, from Argo's RFC 3339 start and finish (or `now` while it runs).
pub(crate) fn duration(run: &Run, now: jiff::Timestamp) -> String {
    let Ok(start) = run.started.parse::<jiff::Timestamp>() else {
        return String::new();
    };
    let end = run.finished.parse::<jiff::Timestamp>().unwrap_or(now);
    let seconds = end.duration_since(start).as_secs().max(0);
    if seconds >= 60 {
        format!("{}m {}s", seconds / 60, seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

/// A form that posts an action, shown only to a request that carries the admin token.
fn action(path: &str, label: &str) -> Markup {
    html! {
        form method="post" action=(path) class="action" { button type="submit" { (label) } }
    }
}

/// The action that refreshes a repository.
fn refresh(repository: &str, label: &str) -> Markup {
    action(
        &format!("/actions/repositories/{}/refresh", segment(repository)),
        label,
    )
}

/// What the overview shows besides `berth status`'s document.
pub(crate) struct Overview<'a> {
    pub status: &'a Document,
    /// Commit subjects by full revision.
    pub subjects: &'a BTreeMap<String, String>,
    /// Recent runs per pipeline, newest first.
    pub runs: &'a BTreeMap<String, Vec<Run>>,
    /// Repositories, for the refresh action.
    pub repositories: &'a [String],
    /// Whether actions are offered: an admin token is set and the request carries it.
    pub actions: bool,
    /// Whether an admin token is set at all (then a sign-in form is offered).
    pub sign_in: bool,
    pub now: jiff::Timestamp,
}

fn sync_cells(r: &SyncRow, subjects: &BTreeMap<String, String>) -> Vec<Markup> {
    let subject = subjects.get(&r.revision).map_or("", String::as_str);
    let at = html! {
        (r.repository)
        @if !r.revision.is_empty() {
            "@" code class="revision" { (short(&r.revision)) } " " span class="subject" { (subject) }
        }
    };
    vec![
        html! { a href={ "/syncs/" (segment(&r.name)) } { (r.name) } },
        badge(&r.status),
        badge(&r.health),
        at,
        html! { (r.objects) },
        html! { (or(&r.last_sync, "never")) },
        html! { span class="message" { (r.message) } },
    ]
}

/// The overview: syncs, pipelines, cleanup rules and the agent's mapping state, failures first.
pub(crate) fn overview(o: &Overview<'_>) -> Markup {
    html! {
        h1 { "Overview" }
        @if let Some(agent) = o.status.agent.as_ref().filter(|a| a.mapping == "Invalid") {
            p class="alert" role="alert" {
                "The mapping file is invalid; the agent keeps the last valid one. " (agent.message)
            }
        }
        (overview_syncs(o))
        (overview_pipelines(o))
        (overview_cleanup(o))
        @if !o.status.notifications.is_empty() { (overview_notifications(o)) }
        (overview_agent(o))
    }
}

/// The overview's syncs, failures first.
fn overview_syncs(o: &Overview<'_>) -> Markup {
    let mut syncs: Vec<&SyncRow> = o.status.syncs.iter().collect();
    syncs.sort_by_key(|r| (urgency(&r.status, &r.health), r.name.clone()));
    let rows: Vec<Vec<Markup>> = syncs.iter().map(|r| sync_cells(r, o.subjects)).collect();
    table(
        "Syncs",
        &[
            "Sync",
            "Status",
            "Health",
            "Repository@revision",
            "Objects",
            "Last sync",
            "Message",
        ],
        &rows,
        "No syncs in the mapping.",
    )
}

/// A pipeline's recent runs as a list.
fn recent_runs(pipeline: &str, runs: &[Run], now: jiff::Timestamp) -> Markup {
    html! {
        @if runs.is_empty() {
            span class="empty" { "no runs yet" }
        } @else {
            ul class="runs" {
                @for r in runs {
                    li {
                        a href={ "/pipelines/" (segment(pipeline)) "/runs/" (segment(&r.name)) } { (r.name) }
                        " " (badge(or(&r.phase, "Pending"))) " " (r.branch) "@" code { (short(&r.revision)) }
                        " " (duration(r, now))
                    }
                }
            }
        }
    }
}

/// The overview's pipelines with their recent runs, those whose newest run failed first.
fn overview_pipelines(o: &Overview<'_>) -> Markup {
    let mut pipelines: Vec<_> = o.status.pipelines.iter().collect();
    let newest_phase = |name: &str| {
        o.runs
            .get(name)
            .and_then(|r| r.first())
            .map_or(String::new(), |r| r.phase.clone())
    };
    pipelines.sort_by_key(|p| (run_urgency(&newest_phase(&p.name)), p.name.clone()));
    let rows: Vec<Vec<Markup>> = pipelines
        .into_iter()
        .map(|p| {
            let runs = o.runs.get(&p.name).map_or(&[][..], Vec::as_slice);
            let trigger = format!("/actions/pipelines/{}/trigger", segment(&p.name));
            vec![
                html! {
                    strong { (p.name) } br; span class="subject" { (p.repository) }
                    @if o.actions { (action(&trigger, "Trigger")) }
                },
                recent_runs(&p.name, runs, o.now),
                html! {
                    span class="message" { (p.message) }
                    @if !p.provider_error.is_empty() {
                        br; span class="message error" { "Commit status failing: " (p.provider_error) }
                    }
                },
            ]
        })
        .collect();
    table(
        "Pipelines",
        &["Pipeline", "Recent runs", "Message"],
        &rows,
        "No pipelines in the mapping.",
    )
}

/// The overview's cleanup rules.
fn overview_cleanup(o: &Overview<'_>) -> Markup {
    let rows: Vec<Vec<Markup>> = o
        .status
        .cleanup
        .iter()
        .map(|r| {
            vec![
                html! { (r.name) },
                html! { code { (r.schedule) } },
                html! { (r.next_run.as_deref().unwrap_or("–")) },
                html! { (r.last_run.as_deref().unwrap_or("never")) },
                html! { (r.deleted) " deleted, " (r.stuck) " stuck" },
                html! { span class="message" { (r.message) } },
            ]
        })
        .collect();
    table(
        "Cleanup rules",
        &[
            "Rule",
            "Schedule",
            "Next run",
            "Last run",
            "Last result",
            "Message",
        ],
        &rows,
        "No cleanup rules in the mapping.",
    )
}

/// The overview's notifications: where each goes, its last delivery, and why it is failing.
fn overview_notifications(o: &Overview<'_>) -> Markup {
    let rows: Vec<Vec<Markup>> = o
        .status
        .notifications
        .iter()
        .map(|n| {
            vec![
                html! { (n.name) },
                html! { (n.kind) },
                html! { (or(&n.last_delivered, "never")) },
                html! {
                    @if n.error.is_empty() { (badge("Delivering")) }
                    @else { (badge("Failing")) " " span class="message error" { (n.error) } }
                },
            ]
        })
        .collect();
    table(
        "Notifications",
        &["Notification", "Type", "Last delivered", "State"],
        &rows,
        "No notifications in the mapping.",
    )
}

/// The overview's agent section: its mapping state, and the refresh actions or the sign-in.
fn overview_agent(o: &Overview<'_>) -> Markup {
    html! {
        section {
            h2 { "Agent" }
            @match &o.status.agent {
                Some(a) => p { "Mapping " (badge(&a.mapping)) " since " (a.changed) ". " (a.message) },
                None => p class="empty" { "The agent has not recorded its mapping yet." },
            }
            @if o.actions {
                div class="actions" {
                    @for r in o.repositories { (refresh(r, &format!("Refresh {r}"))) }
                }
            } @else if o.sign_in {
                form method="post" action="/sign-in" class="sign-in" {
                    label for="token" { "Admin token" } " "
                    input id="token" name="token" type="password" autocomplete="current-password";
                    " " button type="submit" { "Sign in for actions" }
                }
            }
        }
    }
}

/// One object of a sync: its inventory record with the action of the last pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectRow {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub health: String,
    pub action: String,
}

/// A pass the agent ran, as the sync page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PassRow {
    pub at: String,
    pub revision: String,
    pub phase: String,
    pub summary: String,
    pub duration_ms: u64,
}

/// An Event about a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventRow {
    pub at: String,
    pub reason: String,
    pub message: String,
}

/// A sync page.
pub(crate) struct SyncPage<'a> {
    pub row: &'a SyncRow,
    pub subject: &'a str,
    pub objects: &'a [ObjectRow],
    /// The diff between live state and the head of git, Secret values masked, per object; or
    /// why it could not be computed.
    pub diff: &'a Result<Vec<String>, String>,
    /// The commit the diff was computed against.
    pub head: &'a str,
    pub passes: &'a [PassRow],
    pub events: &'a [EventRow],
    pub actions: bool,
}

/// A sync: its state, objects grouped by kind, the diff against git, passes and Events.
pub(crate) fn sync(p: &SyncPage<'_>) -> Markup {
    let r = p.row;
    let passes: Vec<Vec<Markup>> = p
        .passes
        .iter()
        .map(|x| {
            vec![
                html! { (x.at) },
                html! { code { (short(&x.revision)) } },
                badge(&x.phase),
                html! { (x.summary) },
                html! { (x.duration_ms) " ms" },
            ]
        })
        .collect();
    let events: Vec<Vec<Markup>> = p
        .events
        .iter()
        .map(|e| {
            vec![
                html! { (e.at) },
                html! { (e.reason) },
                html! { (e.message) },
            ]
        })
        .collect();
    html! {
        p class="crumbs" { a href="/" { "Overview" } " / sync" }
        h1 { (r.name) }
        dl class="facts" {
            dt { "Status" } dd { (badge(&r.status)) }
            dt { "Health" } dd { (badge(&r.health)) }
            dt { "Revision" } dd { (r.repository) "@" code class="revision" { (short(&r.revision)) } " " (p.subject) }
            dt { "Objects" } dd { (r.objects) }
            dt { "Last sync" } dd { (or(&r.last_sync, "never")) }
            dt { "Message" } dd { (r.message) }
        }
        @if p.actions && !r.repository.is_empty() { (refresh(&r.repository, "Refresh now")) }
        (sync_objects(p.objects))
        (sync_diff(p))
        (table("Recent passes", &["At", "Revision", "Result", "Summary", "Duration"], &passes, "No pass since the agent started."))
        (table("Events", &["At", "Reason", "Message"], &events, "No Events."))
    }
}

/// A sync page's objects, one table per kind.
fn sync_objects(objects: &[ObjectRow]) -> Markup {
    let mut kinds: BTreeMap<&str, Vec<&ObjectRow>> = BTreeMap::new();
    for o in objects {
        kinds.entry(&o.kind).or_default().push(o);
    }
    let row = |o: &&ObjectRow| {
        vec![
            html! { (o.name) },
            html! { (or(&o.namespace, "–")) },
            badge(&o.health),
            html! { (o.action) },
        ]
    };
    html! {
        section {
            h2 { "Objects" }
            @if kinds.is_empty() { p class="empty" { "No objects recorded yet." } }
            @for (kind, objects) in &kinds {
                (table_at(
                    3,
                    &format!("{kind} ({})", objects.len()),
                    &["Name", "Namespace", "Health", "Last pass"],
                    &objects.iter().map(row).collect::<Vec<_>>(),
                    "",
                ))
            }
        }
    }
}

/// A sync page's diff between live state and the head of git.
fn sync_diff(p: &SyncPage<'_>) -> Markup {
    html! {
        section {
            h2 { "Diff against git " code class="revision" { (short(p.head)) } }
            @match p.diff {
                Ok(diffs) if diffs.is_empty() => p class="empty" { "Live state matches git." },
                Ok(diffs) => pre class="diff" tabindex="0" aria-label="diff" {
                    @for d in diffs { (diff_lines(d)) }
                },
                Err(e) => p class="alert" role="alert" { "The diff could not be computed: " (e) },
            }
        }
    }
}

/// A unified diff with added and removed lines marked for colour.
pub(crate) fn diff_lines(diff: &str) -> Markup {
    let class = |l: &str| {
        if l.starts_with("+++") || l.starts_with("---") {
            "file"
        } else if l.starts_with('+') {
            "add"
        } else if l.starts_with('-') {
            "del"
        } else {
            "ctx"
        }
    };
    html! { @for l in diff.lines() { span class=(class(l)) { (l) } "\n" } }
}

/// The logs of a run's node, when it has a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Logs {
    /// No node is selected.
    None,
    /// The pod's log.
    Text(String),
    /// Why there are none to show (no pod, not readable).
    Note(String),
}

/// A pipeline run page.
pub(crate) struct RunPage<'a> {
    pub pipeline: &'a str,
    pub namespace: &'a str,
    pub run: &'a Run,
    pub message: &'a str,
    pub nodes: &'a [Node],
    pub selected: Option<&'a str>,
    pub logs: &'a Logs,
    pub now: jiff::Timestamp,
}

/// A run page's heading and facts: phase, branch, commit, times, message and the failed step.
fn run_facts(p: &RunPage<'_>) -> Markup {
    let r = p.run;
    // what the run builds: a branch, a pull request (from its source branch) or a tag
    let (built, what) = match (r.pull_request, r.tag.as_str()) {
        (Some(n), _) => ("Pull request", format!("#{n} from {}", r.branch)),
        (None, "") => ("Branch", r.branch.clone()),
        (None, tag) => ("Tag", tag.to_owned()),
    };
    html! {
        p class="crumbs" { a href="/" { "Overview" } " / pipeline " (p.pipeline) " / run" }
        h1 { (r.name) }
        dl class="facts" {
            dt { "Phase" } dd { (badge(or(&r.phase, "Pending"))) }
            dt { (built) } dd { (what) }
            dt { "Commit" } dd { code class="revision" { (short(&r.revision)) } }
            dt { "Namespace" } dd { (p.namespace) }
            dt { "Started" } dd { (r.started) }
            dt { "Finished" } dd { (or(&r.finished, "–")) }
            dt { "Duration" } dd { (duration(r, p.now)) }
            dt { "Message" } dd { (p.message) }
            @if !r.failed_step.is_empty() {
                dt { "Failed step" } dd class="failed-step" { (r.failed_step) }
            }
        }
    }
}

/// A run: its facts, the graph of its steps and tasks, and the selected node's details.
pub(crate) fn run(p: &RunPage<'_>) -> Markup {
    let r = p.run;
    let base = format!(
        "/pipelines/{}/runs/{}",
        segment(p.pipeline),
        segment(&r.name)
    );
    let link = |id: &str| format!("{base}?node={}", segment(id));
    let rows: Vec<Vec<Markup>> = p
        .nodes
        .iter()
        .map(|n| {
            vec![
                html! { a href=(link(&n.id)) { (n.name) } },
                html! { (n.kind) },
                badge(or(&n.phase, "Pending")),
                html! { (n.started) },
                html! { (n.finished) },
                html! { (n.message) },
                html! {
                    @for (i, (k, v)) in n.outputs.iter().enumerate() {
                        @if i > 0 { " " }
                        code { (k) "=" (v) }
                    }
                },
            ]
        })
        .collect();
    html! {
        (run_facts(p))
        section {
            h2 { "Steps and tasks" }
            @if p.nodes.is_empty() {
                p class="empty" { "The Workflow controller has not reported any step yet." }
            } @else {
                div class="scroll graph-box" tabindex="0" role="region" aria-label="graph" {
                    (graph::svg(p.nodes, p.selected, link))
                }
            }
        }
        (table(
            "Nodes",
            &["Node", "Type", "Phase", "Started", "Finished", "Message", "Outputs"],
            &rows,
            "No nodes yet.",
        ))
        @if let Some(id) = p.selected {
            section id="logs" {
                h2 { "Logs of " (p.nodes.iter().find(|n| n.id == id).map_or(id, |n| n.name.as_str())) }
                @match p.logs {
                    Logs::Text(text) => pre class="logs" tabindex="0" { (text) },
                    Logs::Note(note) => p class="empty" { (note) },
                    Logs::None => {},
                }
            }
        }
    }
}

/// The webhook delivery log; `records` come newest first, as the log keeps them.
pub(crate) fn deliveries(records: &[DeliveryRecord]) -> Markup {
    let rows: Vec<Vec<Markup>> = records
        .iter()
        .map(|d| {
            vec![
                html! { (d.received) },
                html! { (d.provider) },
                html! { (d.event) },
                html! { (d.repositories.join(", ")) },
                html! {
                    (d.branch.as_deref().unwrap_or("–")) "@" code { (short(d.commit.as_deref().unwrap_or(""))) }
                },
                html! { (d.matched.join(", ")) },
                html! { (d.status) " " (d.action) },
            ]
        })
        .collect();
    html! {
        h1 { "Deliveries" }
        (table(
            "Webhook deliveries",
            &[
                "Received",
                "Provider",
                "Event",
                "Repositories",
                "Branch@commit",
                "Matched",
                "Result",
            ],
            &rows,
            "No webhook delivery since the agent started.",
        ))
    }
}

/// What a request could not get: a heading, why (as an alert when it is an error), and the way
/// back to the overview when there is nothing else to do.
pub(crate) enum Problem<'a> {
    /// An action or a read failed: the error, in an alert.
    Failed { heading: &'a str, error: &'a str },
    /// No such sync, pipeline, run or repository.
    NotFound(&'a str),
    /// The sign-in form's token was wrong.
    WrongToken,
}

/// The page of a [`Problem`].
pub(crate) fn problem(p: &Problem<'_>) -> Markup {
    let back = html! { p { a href="/" { "Back to the overview" } } };
    match p {
        Problem::Failed { heading, error } => html! {
            h1 { (heading) } p class="alert" role="alert" { (error) }
        },
        Problem::NotFound(what) => html! { h1 { "Not found" } p { (what) } (back) },
        Problem::WrongToken => html! { h1 { "Wrong token" } (back) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::status::{AgentState, NotificationRow, PipelineRow};

    fn row(name: &str, status: &str, health: &str) -> SyncRow {
        SyncRow {
            name: name.into(),
            repository: "config".into(),
            revision: "0123456789abcdef".into(),
            status: status.into(),
            health: health.into(),
            objects: 3,
            last_sync: "2026-11-26T10:00:00Z".into(),
            message: "3 objects synced".into(),
        }
    }

    #[test]
    fn the_overview_puts_failures_first_and_offers_actions_only_with_the_token() {
        let doc = Document {
            syncs: vec![
                row("a-fine", "Synced", "Healthy"),
                row("b-broken", "Failed", "Degraded"),
                row("c-drifted", "OutOfSync", "Healthy"),
            ],
            pipelines: vec![PipelineRow {
                name: "build".into(),
                repository: "source".into(),
                last_run: None,
                message: String::new(),
                provider_error: "gitea API for acme/source: POST https://git.example.com/api/v1/repos/acme/source/statuses/abc: 401 Unauthorized".into(),
            }],
            cleanup: Vec::new(),
            notifications: vec![NotificationRow {
                name: "team-chat".into(),
                kind: "slack".into(),
                last_delivered: String::new(),
                error: "team-chat (slack): 500 Internal Server Error".into(),
            }],
            agent: Some(AgentState {
                mapping: "Valid".into(),
                message: "loaded".into(),
                changed: "t".into(),
            }),
        };
        let subjects = BTreeMap::from([("0123456789abcdef".to_owned(), "add <web>".to_owned())]);
        let runs = BTreeMap::new();
        let repositories = ["config".to_owned()];
        let view = |actions, sign_in| Overview {
            status: &doc,
            subjects: &subjects,
            runs: &runs,
            repositories: &repositories,
            actions,
            sign_in,
            now: jiff::Timestamp::UNIX_EPOCH,
        };
        let html = overview(&view(false, false)).into_string();
        let at = |needle: &str| html.find(needle).expect(needle);
        assert!(at("b-broken") < at("c-drifted") && at("c-drifted") < at("a-fine"));
        assert!(html.contains("config@<code class=\"revision\">0123456</code>"));
        assert!(html.contains("add &lt;web&gt;"), "{html}");
        assert!(
            html.contains("Commit status failing: gitea API for acme/source: POST"),
            "{html}"
        );
        assert!(
            html.contains("team-chat (slack): 500 Internal Server Error"),
            "a failing notification shows why: {html}"
        );
        assert!(!html.contains("<form"), "read-only: {html}");
        assert!(
            overview(&view(false, true))
                .into_string()
                .contains("action=\"/sign-in\"")
        );
        let with = overview(&view(true, true)).into_string();
        assert!(with.contains("/actions/pipelines/build/trigger"));
        assert!(with.contains("/actions/repositories/config/refresh"));
    }

    #[test]
    fn problems_escape_what_they_name() {
        let html = problem(&Problem::NotFound("There is no sync \"<x>\".")).into_string();
        assert_eq!(
            html,
            "<h1>Not found</h1><p>There is no sync &quot;&lt;x&gt;&quot;.</p>\
             <p><a href=\"/\">Back to the overview</a></p>"
        );
        let html = problem(&Problem::Failed {
            heading: "Trigger failed",
            error: "<refused>",
        })
        .into_string();
        assert!(html.contains("<p class=\"alert\" role=\"alert\">&lt;refused&gt;</p>"));
        assert!(
            problem(&Problem::WrongToken)
                .into_string()
                .contains("Wrong token")
        );
    }

    #[test]
    fn run_durations_count_to_now_while_running() {
        let run = Run {
            started: "2026-11-26T10:00:00Z".into(),
            ..Run::default()
        };
        let now: jiff::Timestamp = "2026-11-26T10:01:05Z".parse().expect("time");
        assert_eq!(duration(&run, now), "1m 5s");
        let done = Run {
            finished: "2026-11-26T10:00:09Z".into(),
            ..run
        };
        assert_eq!(duration(&done, now), "9s");
    }

    #[test]
    fn a_failed_run_names_its_step_escaped() {
        let failed = Run {
            name: "ci-1".into(),
            phase: "Failed".into(),
            failed_step: "lint<x>: main: Error (exit code 1)".into(),
            ..Run::default()
        };
        let page = |run: &Run| {
            run_facts(&RunPage {
                pipeline: "ci",
                namespace: "runs",
                run,
                message: "child failed",
                nodes: &[],
                selected: None,
                logs: &Logs::Note(String::new()),
                now: jiff::Timestamp::UNIX_EPOCH,
            })
            .into_string()
        };
        let html = page(&failed);
        assert!(
            html.contains("<dt>Failed step</dt><dd class=\"failed-step\">lint&lt;x&gt;: main: Error (exit code 1)</dd>"),
            "{html}"
        );
        let ok = Run {
            phase: "Succeeded".into(),
            failed_step: String::new(),
            ..failed
        };
        assert!(!page(&ok).contains("Failed step"));
        let pull = Run {
            pull_request: Some(7),
            branch: "feature/<x>".into(),
            ..ok.clone()
        };
        assert!(
            page(&pull).contains("<dt>Pull request</dt><dd>#7 from feature/&lt;x&gt;</dd>"),
            "{}",
            page(&pull)
        );
        let tag = Run {
            tag: "v1.2.0".into(),
            ..ok
        };
        assert!(page(&tag).contains("<dt>Tag</dt><dd>v1.2.0</dd>"));
    }

    #[test]
    fn a_sync_page_groups_objects_by_kind_and_marks_the_diff() {
        let r = row("web", "OutOfSync", "Healthy");
        let objects = [
            ObjectRow {
                kind: "Secret".into(),
                namespace: "apps".into(),
                name: "db".into(),
                health: "Healthy".into(),
                action: "configured".into(),
            },
            ObjectRow {
                kind: "ConfigMap".into(),
                namespace: "apps".into(),
                name: "settings".into(),
                health: "Healthy".into(),
                action: "unchanged".into(),
            },
        ];
        let diff = Ok(vec![
            "--- live\n+++ git\n-  password: '++++'\n+  password: '+++++'\n".to_owned(),
        ]);
        let html = sync(&SyncPage {
            row: &r,
            subject: "rotate",
            objects: &objects,
            diff: &diff,
            head: "fedcba9876",
            passes: &[],
            events: &[],
            actions: false,
        })
        .into_string();
        assert!(
            html.find("ConfigMap (1)") < html.find("Secret (1)"),
            "{html}"
        );
        // maud escapes `&<>"` (attributes are always double-quoted, so `'` needs none)
        assert!(html.contains("<span class=\"add\">+  password: '+++++'</span>"));
        assert!(html.contains("<span class=\"del\">-  password: '++++'</span>"));
        assert!(html.contains("fedcba9"));
        assert!(!html.contains("<form"));
    }
}
