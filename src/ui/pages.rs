//! The dashboard's pages (pure): each takes a view model and returns the HTML of its `main`.

use std::collections::BTreeMap;

use super::graph::{self, Node};
use super::html::{badge, escape, or, segment, table, table_at};
use super::status::{Document, SyncRow};
use crate::pipelines::Run;
use crate::webhook::DeliveryRecord;

fn short(revision: &str) -> &str {
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
fn action(path: &str, label: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"action\"><button type=\"submit\">{}</button></form>",
        escape(path),
        escape(label)
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

fn sync_cells(r: &SyncRow, subjects: &BTreeMap<String, String>) -> Vec<String> {
    let subject = subjects.get(&r.revision).map_or("", String::as_str);
    let at = if r.revision.is_empty() {
        escape(&r.repository)
    } else {
        format!(
            "{}@<code class=\"revision\">{}</code> <span class=\"subject\">{}</span>",
            escape(&r.repository),
            escape(short(&r.revision)),
            escape(subject)
        )
    };
    vec![
        format!(
            "<a href=\"/syncs/{}\">{}</a>",
            segment(&r.name),
            escape(&r.name)
        ),
        badge(&r.status),
        badge(&r.health),
        at,
        r.objects.to_string(),
        escape(or(&r.last_sync, "never")),
        format!("<span class=\"message\">{}</span>", escape(&r.message)),
    ]
}

/// The overview: syncs, pipelines, cleanup rules and the agent's mapping state, failures first.
pub(crate) fn overview(o: &Overview<'_>) -> String {
    let mut out = String::from("<h1>Overview</h1>");
    if let Some(agent) = &o.status.agent
        && agent.mapping == "Invalid"
    {
        out.push_str(&format!(
            "<p class=\"alert\" role=\"alert\">The mapping file is invalid; the agent keeps the last \
             valid one. {}</p>",
            escape(&agent.message)
        ));
    }
    out.push_str(&overview_syncs(o));
    out.push_str(&overview_pipelines(o));
    out.push_str(&overview_cleanup(o));
    out.push_str(&overview_agent(o));
    out
}

/// The overview's syncs, failures first.
fn overview_syncs(o: &Overview<'_>) -> String {
    let mut syncs: Vec<&SyncRow> = o.status.syncs.iter().collect();
    syncs.sort_by_key(|r| (urgency(&r.status, &r.health), r.name.clone()));
    let rows: Vec<Vec<String>> = syncs.iter().map(|r| sync_cells(r, o.subjects)).collect();
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

/// The overview's pipelines with their recent runs, those whose newest run failed first.
fn overview_pipelines(o: &Overview<'_>) -> String {
    let mut pipelines: Vec<_> = o.status.pipelines.iter().collect();
    let newest_phase = |name: &str| {
        o.runs
            .get(name)
            .and_then(|r| r.first())
            .map_or(String::new(), |r| r.phase.clone())
    };
    pipelines.sort_by_key(|p| (run_urgency(&newest_phase(&p.name)), p.name.clone()));
    let mut rows = Vec::new();
    for p in pipelines {
        let runs = o.runs.get(&p.name).cloned().unwrap_or_default();
        let runs_html = if runs.is_empty() {
            "<span class=\"empty\">no runs yet</span>".to_owned()
        } else {
            let items: Vec<String> = runs
                .iter()
                .map(|r| {
                    format!(
                        "<li><a href=\"/pipelines/{}/runs/{}\">{}</a> {} {}@<code>{}</code> {}</li>",
                        segment(&p.name),
                        segment(&r.name),
                        escape(&r.name),
                        badge(or(&r.phase, "Pending")),
                        escape(&r.branch),
                        escape(short(&r.revision)),
                        escape(&duration(r, o.now))
                    )
                })
                .collect();
            format!("<ul class=\"runs\">{}</ul>", items.join(""))
        };
        let mut name = format!(
            "<strong>{}</strong><br><span class=\"subject\">{}</span>",
            escape(&p.name),
            escape(&p.repository)
        );
        if o.actions {
            name.push_str(&action(
                &format!("/actions/pipelines/{}/trigger", segment(&p.name)),
                "Trigger",
            ));
        }
        let mut message = format!("<span class=\"message\">{}</span>", escape(&p.message));
        if !p.provider_error.is_empty() {
            message.push_str(&format!(
                "<br><span class=\"message error\">Commit status failing: {}</span>",
                escape(&p.provider_error)
            ));
        }
        rows.push(vec![name, runs_html, message]);
    }
    table(
        "Pipelines",
        &["Pipeline", "Recent runs", "Message"],
        &rows,
        "No pipelines in the mapping.",
    )
}

/// The overview's cleanup rules.
fn overview_cleanup(o: &Overview<'_>) -> String {
    let rows: Vec<Vec<String>> = o
        .status
        .cleanup
        .iter()
        .map(|r| {
            vec![
                escape(&r.name),
                format!("<code>{}</code>", escape(&r.schedule)),
                escape(r.next_run.as_deref().unwrap_or("–")),
                escape(r.last_run.as_deref().unwrap_or("never")),
                format!("{} deleted, {} stuck", r.deleted, r.stuck),
                format!("<span class=\"message\">{}</span>", escape(&r.message)),
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

/// The overview's agent section: its mapping state, and the refresh actions or the sign-in.
fn overview_agent(o: &Overview<'_>) -> String {
    let agent = match &o.status.agent {
        Some(a) => format!(
            "<p>Mapping {} since {}. {}</p>",
            badge(&a.mapping),
            escape(&a.changed),
            escape(&a.message)
        ),
        None => "<p class=\"empty\">The agent has not recorded its mapping yet.</p>".to_owned(),
    };
    let mut out = format!("<section><h2>Agent</h2>{agent}");
    if o.actions {
        out.push_str("<div class=\"actions\">");
        for r in o.repositories {
            out.push_str(&action(
                &format!("/actions/repositories/{}/refresh", segment(r)),
                &format!("Refresh {r}"),
            ));
        }
        out.push_str("</div>");
    } else if o.sign_in {
        out.push_str(SIGN_IN);
    }
    out.push_str("</section>");
    out
}

const SIGN_IN: &str = "<form method=\"post\" action=\"/sign-in\" class=\"sign-in\">\
    <label for=\"token\">Admin token</label> <input id=\"token\" name=\"token\" type=\"password\" \
    autocomplete=\"current-password\"> <button type=\"submit\">Sign in for actions</button></form>";

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
pub(crate) fn sync(p: &SyncPage<'_>) -> String {
    let r = p.row;
    let mut out = format!(
        "<p class=\"crumbs\"><a href=\"/\">Overview</a> / sync</p><h1>{}</h1>\
         <dl class=\"facts\"><dt>Status</dt><dd>{}</dd><dt>Health</dt><dd>{}</dd>\
         <dt>Revision</dt><dd>{}@<code class=\"revision\">{}</code> {}</dd>\
         <dt>Objects</dt><dd>{}</dd><dt>Last sync</dt><dd>{}</dd><dt>Message</dt><dd>{}</dd></dl>",
        escape(&r.name),
        badge(&r.status),
        badge(&r.health),
        escape(&r.repository),
        escape(short(&r.revision)),
        escape(p.subject),
        r.objects,
        escape(or(&r.last_sync, "never")),
        escape(&r.message)
    );
    if p.actions && !r.repository.is_empty() {
        out.push_str(&action(
            &format!("/actions/repositories/{}/refresh", segment(&r.repository)),
            "Refresh now",
        ));
    }
    out.push_str(&sync_objects(p.objects));
    out.push_str(&sync_diff(p));
    let rows: Vec<Vec<String>> = p
        .passes
        .iter()
        .map(|x| {
            vec![
                escape(&x.at),
                format!("<code>{}</code>", escape(short(&x.revision))),
                badge(&x.phase),
                escape(&x.summary),
                format!("{} ms", x.duration_ms),
            ]
        })
        .collect();
    out.push_str(&table(
        "Recent passes",
        &["At", "Revision", "Result", "Summary", "Duration"],
        &rows,
        "No pass since the agent started.",
    ));
    let rows: Vec<Vec<String>> = p
        .events
        .iter()
        .map(|e| vec![escape(&e.at), escape(&e.reason), escape(&e.message)])
        .collect();
    out.push_str(&table(
        "Events",
        &["At", "Reason", "Message"],
        &rows,
        "No Events.",
    ));
    out
}

/// A sync page's objects, one table per kind.
fn sync_objects(objects: &[ObjectRow]) -> String {
    let mut kinds: BTreeMap<&str, Vec<&ObjectRow>> = BTreeMap::new();
    for o in objects {
        kinds.entry(&o.kind).or_default().push(o);
    }
    let mut out = String::from("<section><h2>Objects</h2>");
    if kinds.is_empty() {
        out.push_str("<p class=\"empty\">No objects recorded yet.</p>");
    }
    for (kind, objects) in kinds {
        let rows: Vec<Vec<String>> = objects
            .iter()
            .map(|o| {
                vec![
                    escape(&o.name),
                    escape(or(&o.namespace, "–")),
                    badge(&o.health),
                    escape(&o.action),
                ]
            })
            .collect();
        out.push_str(&table_at(
            3,
            &format!("{kind} ({})", objects.len()),
            &["Name", "Namespace", "Health", "Last pass"],
            &rows,
            "",
        ));
    }
    out.push_str("</section>");
    out
}

/// A sync page's diff between live state and the head of git.
fn sync_diff(p: &SyncPage<'_>) -> String {
    let mut out = format!(
        "<section><h2>Diff against git <code class=\"revision\">{}</code></h2>",
        escape(short(p.head))
    );
    match p.diff {
        Ok(diffs) if diffs.is_empty() => {
            out.push_str("<p class=\"empty\">Live state matches git.</p>");
        }
        Ok(diffs) => {
            out.push_str(&format!(
                "<pre class=\"diff\" tabindex=\"0\" aria-label=\"diff\">{}</pre>",
                diffs
                    .iter()
                    .map(|d| diff_html(d))
                    .collect::<Vec<_>>()
                    .join("")
            ));
        }
        Err(e) => out.push_str(&format!(
            "<p class=\"alert\" role=\"alert\">The diff could not be computed: {}</p>",
            escape(e)
        )),
    }
    out.push_str("</section>");
    out
}

/// A unified diff with added and removed lines marked for colour.
fn diff_html(diff: &str) -> String {
    diff.lines()
        .map(|l| {
            let class = if l.starts_with("+++") || l.starts_with("---") {
                "file"
            } else if l.starts_with('+') {
                "add"
            } else if l.starts_with('-') {
                "del"
            } else {
                "ctx"
            };
            format!("<span class=\"{class}\">{}</span>\n", escape(l))
        })
        .collect()
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
fn run_facts(p: &RunPage<'_>) -> String {
    let r = p.run;
    let failed_step = if r.failed_step.is_empty() {
        String::new()
    } else {
        format!(
            "<dt>Failed step</dt><dd class=\"failed-step\">{}</dd>",
            escape(&r.failed_step)
        )
    };
    // what the run builds: a branch, a pull request (from its source branch) or a tag
    let (built, what) = match (r.pull_request, r.tag.as_str()) {
        (Some(n), _) => ("Pull request", format!("#{n} from {}", r.branch)),
        (None, "") => ("Branch", r.branch.clone()),
        (None, tag) => ("Tag", tag.to_owned()),
    };
    format!(
        "<p class=\"crumbs\"><a href=\"/\">Overview</a> / pipeline {} / run</p><h1>{}</h1>\
         <dl class=\"facts\"><dt>Phase</dt><dd>{}</dd><dt>{built}</dt><dd>{}</dd>\
         <dt>Commit</dt><dd><code class=\"revision\">{}</code></dd><dt>Namespace</dt><dd>{}</dd>\
         <dt>Started</dt><dd>{}</dd><dt>Finished</dt><dd>{}</dd><dt>Duration</dt><dd>{}</dd>\
         <dt>Message</dt><dd>{}</dd>{failed_step}</dl>",
        escape(p.pipeline),
        escape(&r.name),
        badge(or(&r.phase, "Pending")),
        escape(&what),
        escape(short(&r.revision)),
        escape(p.namespace),
        escape(&r.started),
        escape(or(&r.finished, "–")),
        escape(&duration(r, p.now)),
        escape(p.message),
    )
}

/// A run: its facts, the graph of its steps and tasks, and the selected node's details.
pub(crate) fn run(p: &RunPage<'_>) -> String {
    let r = p.run;
    let base = format!(
        "/pipelines/{}/runs/{}",
        segment(p.pipeline),
        segment(&r.name)
    );
    let mut out = run_facts(p);
    out.push_str("<section><h2>Steps and tasks</h2>");
    if p.nodes.is_empty() {
        out.push_str(
            "<p class=\"empty\">The Workflow controller has not reported any step yet.</p>",
        );
    } else {
        out.push_str(
            "<div class=\"scroll graph-box\" tabindex=\"0\" role=\"region\" aria-label=\"graph\">",
        );
        out.push_str(&graph::svg(p.nodes, p.selected, |id| {
            format!("{base}?node={}", segment(id))
        }));
        out.push_str("</div>");
    }
    out.push_str("</section>");
    let rows: Vec<Vec<String>> = p
        .nodes
        .iter()
        .map(|n| {
            let outputs: Vec<String> = n
                .outputs
                .iter()
                .map(|(k, v)| format!("<code>{}={}</code>", escape(k), escape(v)))
                .collect();
            vec![
                format!(
                    "<a href=\"{base}?node={}\">{}</a>",
                    segment(&n.id),
                    escape(&n.name)
                ),
                escape(&n.kind),
                badge(or(&n.phase, "Pending")),
                escape(&n.started),
                escape(&n.finished),
                escape(&n.message),
                outputs.join(" "),
            ]
        })
        .collect();
    out.push_str(&table(
        "Nodes",
        &[
            "Node", "Type", "Phase", "Started", "Finished", "Message", "Outputs",
        ],
        &rows,
        "No nodes yet.",
    ));
    if let Some(id) = p.selected {
        let name = p
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map_or(id, |n| n.name.as_str());
        out.push_str(&format!(
            "<section id=\"logs\"><h2>Logs of {}</h2>",
            escape(name)
        ));
        match p.logs {
            Logs::Text(text) => out.push_str(&format!(
                "<pre class=\"logs\" tabindex=\"0\">{}</pre>",
                escape(text)
            )),
            Logs::Note(note) => out.push_str(&format!("<p class=\"empty\">{}</p>", escape(note))),
            Logs::None => {}
        }
        out.push_str("</section>");
    }
    out
}

/// The webhook delivery log; `records` come newest first, as the log keeps them.
pub(crate) fn deliveries(records: &[DeliveryRecord]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|d| {
            vec![
                escape(&d.received),
                escape(&d.provider),
                escape(&d.event),
                escape(&d.repositories.join(", ")),
                format!(
                    "{}@<code>{}</code>",
                    escape(d.branch.as_deref().unwrap_or("–")),
                    escape(short(d.commit.as_deref().unwrap_or("")))
                ),
                escape(&d.matched.join(", ")),
                format!("{} {}", d.status, escape(&d.action)),
            ]
        })
        .collect();
    format!(
        "<h1>Deliveries</h1>{}",
        table(
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
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::status::{AgentState, PipelineRow};

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
        let html = overview(&view(false, false));
        let at = |needle: &str| html.find(needle).expect(needle);
        assert!(at("b-broken") < at("c-drifted") && at("c-drifted") < at("a-fine"));
        assert!(html.contains("config@<code class=\"revision\">0123456</code>"));
        assert!(html.contains("add &lt;web&gt;"), "{html}");
        assert!(
            html.contains("Commit status failing: gitea API for acme/source: POST"),
            "{html}"
        );
        assert!(!html.contains("<form"), "read-only: {html}");
        assert!(overview(&view(false, true)).contains("action=\"/sign-in\""));
        let with = overview(&view(true, true));
        assert!(with.contains("/actions/pipelines/build/trigger"));
        assert!(with.contains("/actions/repositories/config/refresh"));
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
        });
        assert!(
            html.find("ConfigMap (1)") < html.find("Secret (1)"),
            "{html}"
        );
        assert!(html.contains("<span class=\"add\">+  password: &#39;+++++&#39;</span>"));
        assert!(html.contains("fedcba9"));
        assert!(!html.contains("<form"));
    }
}
