//! What the verbs print, as pure functions of their results written to any [`Write`], so every
//! line and table can be unit-tested. The verbs in `cli` gather; this module only formats.

use std::io::{self, Write};

use crate::cleanup;
use crate::diff::{self, Action};
use crate::pipelines;
use crate::render::{self, Manifest};
use crate::sync::{Mode, Report};

/// The 7-character form of a commit id.
fn short(revision: &str) -> &str {
    &revision[..revision.len().min(7)]
}

/// A pipeline's message in `berth status`: the step that failed its last run, else the
/// pipeline's own message.
fn run_message(run: &pipelines::Run, message: &str) -> String {
    if run.failed_step.is_empty() {
        message.to_owned()
    } else {
        format!("failed at step {}", run.failed_step)
    }
}

/// One sync's result for `berth sync` (with `--dry-run`, the planned changes).
pub(super) fn report(w: &mut impl Write, r: &Report, mode: Mode) -> io::Result<()> {
    let short = short(&r.revision);
    let at = if short.is_empty() {
        String::new()
    } else {
        format!(" at {short}")
    };
    if r.failed() {
        let message = r.status_error.as_deref().unwrap_or(&r.message);
        return writeln!(w, "{}: Failed{at}: {message}", r.sync);
    }
    if mode == Mode::Plan {
        let verb = |a: Action| match a {
            Action::Create => "create",
            Action::Update => "update",
            Action::Adopt => "adopt",
            Action::Unchanged => "unchanged",
        };
        writeln!(w, "{}: {}{at} (dry run)", r.sync, r.phase)?;
        for e in r
            .plan
            .entries
            .iter()
            .filter(|e| e.action != Action::Unchanged)
        {
            writeln!(w, "  {:<9} {}", verb(e.action), e.id)?;
        }
        for o in &r.plan.prune {
            writeln!(w, "  {:<9} {}", "prune", o.id)?;
        }
        return Ok(());
    }
    writeln!(
        w,
        "{}: {}{at} ({}) in {:.1}s",
        r.sync,
        r.phase,
        r.changes.summary(),
        r.duration.as_secs_f64()
    )
}

/// What `berth diff` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Diffs {
    pub differ: bool,
    pub failed: bool,
}

/// Unified diffs of every planned change (`colorize` for a terminal); failed syncs go to
/// `errors`.
pub(super) fn diffs(
    out: &mut impl Write,
    errors: &mut impl Write,
    reports: &[Report],
    colorize: fn(&str) -> String,
) -> io::Result<Diffs> {
    let mut found = Diffs::default();
    for r in reports {
        if r.failed() {
            // what failed, then the diff of what the plan still holds
            writeln!(errors, "error: {}: {}", r.sync, r.message)?;
            found.failed = true;
        }
        found.differ |= r.plan.differences() > 0;
        for text in diff::plan_diffs(&r.plan) {
            write!(out, "{}", colorize(&text))?;
        }
    }
    Ok(found)
}

/// A preview for `berth diff --revision`: per sync, the plan, what would fail, then each
/// object's diff.
pub(super) fn preview(
    w: &mut impl Write,
    p: &crate::preview::comment::Preview,
    colorize: fn(&str) -> String,
) -> io::Result<()> {
    for s in &p.syncs {
        let verdict = if s.clean() {
            "applies cleanly"
        } else {
            "would fail"
        };
        writeln!(
            w,
            "{}: {verdict} at {}: {}",
            s.sync,
            short(&p.head),
            s.summary()
        )?;
        for problem in &s.problems {
            writeln!(w, "  error: {problem}")?;
        }
        for c in &s.changes {
            writeln!(w, "  {:<9} {}", c.action, c.object)?;
        }
    }
    for s in &p.syncs {
        for c in &s.changes {
            write!(w, "{}", colorize(&c.diff))?;
        }
    }
    Ok(())
}

/// The outcome of `berth trigger`.
pub(super) fn launched(
    w: &mut impl Write,
    namespace: &str,
    branch: &str,
    launched: &pipelines::Launched,
) -> io::Result<()> {
    match launched {
        pipelines::Launched::Created { name, queued } => {
            let queued = if *queued {
                " (queued behind a running run)"
            } else {
                ""
            };
            writeln!(w, "launched {namespace}/{name} for {branch}{queued}")
        }
        pipelines::Launched::Existed { name } => writeln!(w, "{namespace}/{name} exists already"),
    }
}

/// One cleanup rule's run for `berth cleanup`: each deleted, stuck and failed run, then a
/// summary line.
pub(super) fn cleanup_outcome(
    w: &mut impl Write,
    rule: &str,
    outcome: &cleanup::Outcome,
    dry_run: bool,
) -> io::Result<()> {
    let verb = if dry_run { "would delete" } else { "deleted" };
    for line in &outcome.deleted {
        writeln!(w, "{rule}: {verb} {line}")?;
    }
    for line in &outcome.stuck {
        writeln!(w, "{rule}: stuck in deletion {line}")?;
    }
    for line in &outcome.errors {
        writeln!(w, "{rule}: error: {line}")?;
    }
    writeln!(w, "{rule}: {}", cleanup::summary(outcome, dry_run))
}

/// `berth render`: each manifest as a YAML document headed by its source; Secret values
/// masked unless `show_secrets`.
pub(super) fn manifests(
    w: &mut impl Write,
    manifests: &[Manifest],
    show_secrets: bool,
) -> io::Result<()> {
    for m in manifests {
        let object = if show_secrets {
            m.object.clone()
        } else {
            render::masked(&m.object, !m.hidden.is_empty())
        };
        let yaml = serde_saphyr::to_string(&object).unwrap_or_else(|_| object.to_string());
        let yaml = if show_secrets {
            yaml
        } else {
            crate::diff::scrub(yaml, &m.hidden)
        };
        write!(w, "---\n# Source: {}\n{yaml}", m.origin())?;
    }
    Ok(())
}

/// One line of `berth validate`: `ok` or `error`, then what was checked.
pub(super) fn check(w: &mut impl Write, ok: bool, what: &str) -> io::Result<()> {
    writeln!(w, "{:<6} {what}", if ok { "ok" } else { "error" })
}

pub(super) use super::StatusFormat as Format;
use crate::ui::status::Document;
#[cfg(test)]
use crate::ui::status::{AgentState, StatusView, document};

/// `berth status`: tables of syncs, then of pipelines and cleanup rules when there are any,
/// then the agent's mapping state when it recorded one; or the same as JSON or YAML.
/// Entries of the mapping that never ran show as such; records of entries no longer in the
/// mapping still show.
#[cfg(test)]
fn status(w: &mut impl Write, view: &StatusView<'_>, format: Format) -> io::Result<()> {
    status_document(w, &document(view), format)
}

/// [`status`] of a document already built.
pub(super) fn status_document(
    w: &mut impl Write,
    doc: &Document,
    format: Format,
) -> io::Result<()> {
    match format {
        Format::Json => {
            let text = serde_json::to_string_pretty(&doc).expect("the status document serializes");
            writeln!(w, "{text}")
        }
        Format::Yaml => {
            let text = serde_saphyr::to_string(&doc).expect("the status document serializes");
            write!(w, "{text}")
        }
        Format::Table | Format::Wide => tables(w, doc, format == Format::Wide),
    }
}

fn or_never(text: &str) -> String {
    if text.is_empty() {
        "never".to_owned()
    } else {
        text.to_owned()
    }
}

fn tables(w: &mut impl Write, doc: &Document, wide: bool) -> io::Result<()> {
    let cut = |text: &str| {
        if wide || text.chars().count() <= 80 {
            text.to_owned()
        } else {
            format!("{}…", text.chars().take(79).collect::<String>())
        }
    };
    let mut syncs = vec![cells([
        "SYNC",
        "REVISION",
        "STATUS",
        "HEALTH",
        "OBJECTS",
        "LAST SYNC",
        "MESSAGE",
    ])];
    for r in &doc.syncs {
        let revision = short(&r.revision);
        let at = match (r.repository.is_empty(), revision.is_empty()) {
            (_, true) => r.repository.clone(),
            (true, false) => revision.to_owned(),
            (false, false) => format!("{}@{revision}", r.repository),
        };
        syncs.push([
            r.name.clone(),
            at,
            r.status.clone(),
            r.health.clone(),
            r.objects.to_string(),
            if r.last_sync.is_empty() && r.status == "Unknown" {
                "never".to_owned()
            } else {
                r.last_sync.clone()
            },
            cut(&r.message),
        ]);
    }
    write!(w, "{}", format_table(&syncs))?;
    if !doc.pipelines.is_empty() {
        let mut rows = vec![cells([
            "PIPELINE",
            "REPOSITORY",
            "LAST RUN",
            "BRANCH@REVISION",
            "PHASE",
            "STARTED",
            "FINISHED",
            "MESSAGE",
        ])];
        for p in &doc.pipelines {
            let run = p.last_run.clone().unwrap_or_default();
            let at = match (run.name.is_empty(), run.pull_request, run.tag.is_empty()) {
                (true, _, _) => String::new(),
                (false, Some(n), _) => format!("#{n} {}@{}", run.branch, short(&run.revision)),
                (false, None, false) => format!("{}@{}", run.tag, short(&run.revision)),
                (false, None, true) => format!("{}@{}", run.branch, short(&run.revision)),
            };
            let phase = match (run.name.is_empty(), run.phase.is_empty()) {
                (true, _) => "-".to_owned(),
                (false, true) => "Pending".to_owned(),
                (false, false) => run.phase.clone(),
            };
            let mut message = run_message(&run, &p.message);
            if !p.provider_error.is_empty() {
                message = format!("commit status failing: {}; {message}", p.provider_error);
            }
            let message = cut(&message);
            rows.push([
                p.name.clone(),
                p.repository.clone(),
                run.name,
                at,
                phase,
                run.started,
                run.finished,
                message,
            ]);
        }
        write!(w, "\n{}", format_table(&rows))?;
    }
    if !doc.cleanup.is_empty() {
        let mut rows = vec![cells([
            "CLEANUP", "SCHEDULE", "LAST RUN", "NEXT RUN", "DELETED", "STUCK", "MESSAGE",
        ])];
        for r in &doc.cleanup {
            rows.push([
                r.name.clone(),
                r.schedule.clone(),
                r.last_run.clone().unwrap_or_else(|| "never".to_owned()),
                r.next_run.clone().unwrap_or_default(),
                r.deleted.to_string(),
                r.stuck.to_string(),
                cut(&r.message),
            ]);
        }
        write!(w, "\n{}", format_table(&rows))?;
    }
    if !doc.notifications.is_empty() {
        let mut rows = vec![cells(["NOTIFICATION", "TYPE", "LAST DELIVERED", "ERROR"])];
        for n in &doc.notifications {
            rows.push([
                n.name.clone(),
                n.kind.clone(),
                or_never(&n.last_delivered),
                cut(&n.error),
            ]);
        }
        write!(w, "\n{}", format_table(&rows))?;
    }
    if let Some(agent) = &doc.agent {
        let rows = vec![
            cells(["MAPPING", "CHANGED", "MESSAGE"]),
            [
                agent.mapping.clone(),
                agent.changed.clone(),
                cut(&agent.message),
            ],
        ];
        write!(w, "\n{}", format_table(&rows))?;
    }
    Ok(())
}

fn cells<const N: usize>(texts: [&str; N]) -> [String; N] {
    texts.map(str::to_owned)
}

/// Left-aligned columns separated by three spaces, like kubectl's tables.
fn format_table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use std::collections::BTreeMap;

    use jiff::Timestamp;

    use crate::config;
    use crate::pipelines::Run;
    use crate::status::SyncStatus;
    use crate::status::{Health, Phase};

    fn text(write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        write(&mut out).expect("writing to a Vec succeeds");
        String::from_utf8(out).expect("output is UTF-8")
    }

    #[test]
    fn tables_align_columns() {
        let rows = [
            ["SYNC".to_owned(), "STATUS".to_owned()],
            ["web-prod".to_owned(), "Synced".to_owned()],
        ];
        assert_eq!(
            format_table(&rows),
            "SYNC       STATUS\nweb-prod   Synced\n"
        );
    }

    const MAPPING: &str = "apiVersion: berth.dev/v1alpha1
kind: Mapping
repositories:
  - name: config
    url: https://git.example.com/acme/config.git
syncs:
  - name: web
    repository: config
  - name: api
    repository: config
pipelines:
  - name: ci
    repository: config
cleanup:
  - name: old-runs
    schedule: \"0 * * * *\"
    keepLast: 5
";

    #[test]
    fn status_joins_the_mapping_with_the_records_on_the_cluster() {
        let mapping =
            config::parse(&[(PathBuf::from("berth.yaml"), MAPPING.to_owned())]).expect("valid");
        let web = SyncStatus {
            phase: Phase::Synced,
            health: Health::Healthy,
            revision: "0123456789abcdef".into(),
            last_sync: "2026-11-25T12:00:00Z".into(),
            message: "3 objects synced".into(),
            ..SyncStatus::default()
        };
        let gone = SyncStatus {
            phase: Phase::Failed,
            revision: "fedcba9876543210".into(),
            message: "x".repeat(100),
            ..SyncStatus::default()
        };
        let syncs = BTreeMap::from([("web".to_owned(), web), ("gone".to_owned(), gone)]);
        let ci = pipelines::State {
            runs: vec![Run {
                name: "ci-0123456".into(),
                branch: "main".into(),
                revision: "0123456789abcdef".into(),
                started: "2026-11-25T11:00:00Z".into(),
                ..Run::default()
            }],
            message: "launched".into(),
            ..pipelines::State::default()
        };
        let pipelines = BTreeMap::from([("ci".to_owned(), ci)]);
        let rules = BTreeMap::from([(
            "old-runs".to_owned(),
            cleanup::State {
                last_run: Some("2026-11-25T11:00:00Z".parse().expect("time")),
                ..cleanup::State::default()
            },
        )]);
        let none = BTreeMap::new();
        let view = StatusView {
            mapping: Some(&mapping),
            syncs: &syncs,
            pipelines: &pipelines,
            rules: &rules,
            newest: &none,
            agent: None,
            now: "2026-11-25T12:30:00Z".parse().expect("time"),
        };
        let long = format!("{}…", "x".repeat(79));
        let expected = format!(
            "\
SYNC   REVISION         STATUS    HEALTH    OBJECTS   LAST SYNC              MESSAGE
api    config           Unknown   Unknown   0         never                  not synced yet
gone   fedcba9          Failed    Unknown   0                                {long}
web    config@0123456   Synced    Healthy   0         2026-11-25T12:00:00Z   3 objects synced

PIPELINE   REPOSITORY   LAST RUN     BRANCH@REVISION   PHASE     STARTED                FINISHED   MESSAGE
ci         config       ci-0123456   main@0123456      Pending   2026-11-25T11:00:00Z              launched

CLEANUP    SCHEDULE    LAST RUN               NEXT RUN               DELETED   STUCK   MESSAGE
old-runs   0 * * * *   2026-11-25T11:00:00Z   2026-11-25T12:30:00Z   0         0
"
        );
        assert_eq!(text(|w| status(w, &view, Format::Table)), expected);

        // wide: whole messages; json: the same facts for scripts
        let wide = text(|w| status(w, &view, Format::Wide));
        assert!(wide.contains(&"x".repeat(100)), "{wide}");
        let json: serde_json::Value =
            serde_json::from_str(&text(|w| status(w, &view, Format::Json))).expect("JSON");
        assert_eq!(json["syncs"][1]["name"], "gone");
        assert_eq!(json["syncs"][1]["message"], "x".repeat(100));
        assert_eq!(json["syncs"][2]["objects"], 0);
        assert_eq!(json["pipelines"][0]["lastRun"]["name"], "ci-0123456");
        assert_eq!(json["cleanup"][0]["nextRun"], "2026-11-25T12:30:00Z");
        assert!(json["agent"].is_null());
        let yaml = text(|w| status(w, &view, Format::Yaml));
        assert!(yaml.contains("name: gone"), "{yaml}");
    }

    #[test]
    fn status_shows_the_newest_run_and_an_invalid_mapping() {
        let newest = BTreeMap::from([(
            "ci".to_owned(),
            Run {
                name: "ci-trigger".into(),
                branch: "main".into(),
                revision: "abcdef0123".into(),
                phase: "Running".into(),
                ..Run::default()
            },
        )]);
        let recorded = BTreeMap::from([("ci".to_owned(), pipelines::State::default())]);
        let view = StatusView {
            mapping: None,
            syncs: &BTreeMap::new(),
            pipelines: &recorded,
            rules: &BTreeMap::new(),
            newest: &newest,
            agent: Some(AgentState {
                mapping: "Invalid".into(),
                message: "berth.yaml:3:1: unknown field `colour`".into(),
                changed: "2026-11-25T12:00:00Z".into(),
            }),
            now: Timestamp::UNIX_EPOCH,
        };
        let out = text(|w| status(w, &view, Format::Table));
        let row = out
            .lines()
            .find(|l| l.starts_with("ci "))
            .expect("the pipeline row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            ["ci", "ci-trigger", "main@abcdef0", "Running"],
            "{out}"
        );
        assert!(
            out.ends_with(
                "MAPPING   CHANGED                MESSAGE\nInvalid   2026-11-25T12:00:00Z   berth.yaml:3:1: unknown field `colour`\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn status_without_pipelines_or_rules_shows_only_syncs() {
        let empty = BTreeMap::new();
        let view = StatusView {
            mapping: None,
            syncs: &BTreeMap::new(),
            pipelines: &empty,
            rules: &BTreeMap::new(),
            newest: &BTreeMap::new(),
            agent: None,
            now: Timestamp::UNIX_EPOCH,
        };
        assert_eq!(
            text(|w| status(w, &view, Format::Table)),
            "SYNC   REVISION   STATUS   HEALTH   OBJECTS   LAST SYNC   MESSAGE\n"
        );
    }

    #[test]
    fn cleanup_lines_name_the_rule() {
        let outcome = cleanup::Outcome {
            considered: 3,
            deleted: vec!["argo/ci-1: beyond the newest 2 of ci@main".into()],
            ..cleanup::Outcome::default()
        };
        assert_eq!(
            text(|w| cleanup_outcome(w, "old", &outcome, true)),
            "old: would delete argo/ci-1: beyond the newest 2 of ci@main\n\
             old: would delete 1 of 3 finished runs\n"
        );
        assert_eq!(
            text(|w| check(w, false, "sync web: bad")),
            "error  sync web: bad\n"
        );
        assert_eq!(text(|w| check(w, true, "sync web")), "ok     sync web\n");
    }

    #[test]
    fn a_revision_preview_lists_the_plan_the_problems_and_the_diffs() {
        use crate::preview::comment::{Change, Counts, Preview, SyncPreview};
        let p = Preview {
            repository: "config".into(),
            number: 0,
            head: "0123456789abcdef".into(),
            at: String::new(),
            syncs: vec![SyncPreview {
                sync: "web".into(),
                counts: Counts {
                    update: 1,
                    unchanged: 2,
                    ..Counts::default()
                },
                changes: vec![Change {
                    action: "update",
                    object: "web/ConfigMap/a".into(),
                    diff: "--- live/web/ConfigMap/a\n+++ desired/web/ConfigMap/a\n".into(),
                }],
                problems: vec!["a.yaml:3: ConfigMap b was not applied: forbidden".into()],
            }],
        };
        let mut out = Vec::new();
        preview(&mut out, &p, |d| d.to_owned()).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            "web: would fail at 0123456: 1 to update, 2 unchanged\n  error: a.yaml:3: ConfigMap b was not applied: forbidden\n  update    web/ConfigMap/a\n--- live/web/ConfigMap/a\n+++ desired/web/ConfigMap/a\n"
        );
    }
}
