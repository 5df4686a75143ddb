//! What the verbs print, as pure functions of their results written to any [`Write`], so every
//! line and table can be unit-tested. The verbs in `cli` gather; this module only formats.

use std::collections::BTreeMap;
use std::io::{self, Write};

use jiff::Timestamp;

use crate::cleanup;
use crate::config::Mapping;
use crate::diff::{self, Action};
use crate::pipelines;
use crate::render::{self, Manifest};
use crate::status::SyncStatus;
use crate::sync::{Mode, Report};

/// The 7-character form of a commit id.
fn short(revision: &str) -> &str {
    &revision[..revision.len().min(7)]
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
            writeln!(errors, "error: {}: {}", r.sync, r.message)?;
            found.failed = true;
            continue;
        }
        for e in r
            .plan
            .entries
            .iter()
            .filter(|e| e.action != Action::Unchanged)
        {
            found.differ = true;
            let desired = e.predicted.as_ref().unwrap_or(&e.manifest.object);
            let text = diff::entry_diff(&e.id, e.live.as_ref(), Some(desired));
            write!(out, "{}", colorize(&text))?;
        }
        for o in &r.plan.prune {
            found.differ = true;
            write!(
                out,
                "{}",
                colorize(&diff::entry_diff(&o.id, o.live.as_ref(), None))
            )?;
        }
    }
    Ok(found)
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
            render::masked(&m.object)
        };
        let yaml = serde_saphyr::to_string(&object).unwrap_or_else(|_| object.to_string());
        write!(w, "---\n# Source: {}\n{yaml}", m.origin())?;
    }
    Ok(())
}

/// One line of `berth validate`: `ok` or `error`, then what was checked.
pub(super) fn check(w: &mut impl Write, ok: bool, what: &str) -> io::Result<()> {
    writeln!(w, "{:<6} {what}", if ok { "ok" } else { "error" })
}

/// What `berth status` shows: the mapping (when it loads) joined with the records on the
/// cluster.
pub(super) struct StatusView<'a> {
    pub mapping: Option<&'a Mapping>,
    pub syncs: &'a BTreeMap<String, SyncStatus>,
    pub pipelines: &'a BTreeMap<String, pipelines::State>,
    pub rules: &'a BTreeMap<String, cleanup::State>,
    pub now: Timestamp,
}

/// `berth status`: a table of syncs, then of pipelines and cleanup rules when there are any.
/// Entries of the mapping that never ran show as such; records of entries no longer in the
/// mapping still show.
pub(super) fn status(w: &mut impl Write, view: &StatusView<'_>) -> io::Result<()> {
    write!(w, "{}", format_table(&sync_rows(view)))?;
    let pipelines = pipeline_rows(view);
    if pipelines.len() > 1 {
        write!(w, "\n{}", format_table(&pipelines))?;
    }
    let rules = rule_rows(view);
    if rules.len() > 1 {
        write!(w, "\n{}", format_table(&rules))?;
    }
    Ok(())
}

fn cells<const N: usize>(texts: [&str; N]) -> [String; N] {
    texts.map(str::to_owned)
}

fn message(text: &str) -> String {
    text.chars().take(80).collect()
}

fn sync_rows(view: &StatusView<'_>) -> Vec<[String; 7]> {
    let mut joined: BTreeMap<&str, (&str, Option<&SyncStatus>)> = BTreeMap::new();
    for s in view.mapping.iter().flat_map(|m| &m.syncs) {
        joined.insert(&s.name, (&s.repository, view.syncs.get(&s.name)));
    }
    for (name, st) in view.syncs {
        joined.entry(name).or_insert(("", Some(st)));
    }
    let mut rows = vec![cells([
        "SYNC",
        "REVISION",
        "STATUS",
        "HEALTH",
        "OBJECTS",
        "LAST SYNC",
        "MESSAGE",
    ])];
    for (name, (repo, st)) in joined {
        let revision = st.map(|s| short(&s.revision)).unwrap_or_default();
        let at = if repo.is_empty() {
            revision.to_owned()
        } else {
            format!("{repo}@{revision}")
        };
        rows.push(match st {
            Some(s) => [
                name.to_owned(),
                at,
                s.phase.to_string(),
                s.health.to_string(),
                s.inventory.len().to_string(),
                s.last_sync.clone(),
                message(&s.message),
            ],
            None => [
                name.to_owned(),
                at,
                "Unknown".into(),
                "Unknown".into(),
                "0".into(),
                "never".into(),
                "not synced yet".into(),
            ],
        });
    }
    rows
}

fn pipeline_rows(view: &StatusView<'_>) -> Vec<[String; 8]> {
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
    for (name, repo) in names {
        let state = view.pipelines.get(name).cloned().unwrap_or_default();
        let run = state.runs.first().cloned().unwrap_or_default();
        let at = if run.name.is_empty() {
            String::new()
        } else {
            format!("{}@{}", run.branch, short(&run.revision))
        };
        let phase = match (run.name.is_empty(), run.phase.is_empty()) {
            (true, _) => "-".to_owned(),
            (false, true) => "Pending".to_owned(),
            (false, false) => run.phase.clone(),
        };
        rows.push([
            name.to_owned(),
            repo.to_owned(),
            run.name,
            at,
            phase,
            run.started,
            run.finished,
            message(&state.message),
        ]);
    }
    rows
}

fn rule_rows(view: &StatusView<'_>) -> Vec<[String; 7]> {
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
    let mut rows = vec![cells([
        "CLEANUP", "SCHEDULE", "LAST RUN", "NEXT RUN", "DELETED", "STUCK", "MESSAGE",
    ])];
    for (name, schedule) in rules {
        let state = view.rules.get(name).cloned().unwrap_or_default();
        let next = schedule
            .and_then(|s| s.due(view.now, state.last_run))
            .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
            .unwrap_or_default();
        rows.push([
            name.to_owned(),
            schedule.map(|s| s.text().to_owned()).unwrap_or_default(),
            state
                .last_run
                .map_or_else(|| "never".to_owned(), |t| t.to_string()),
            next,
            state.last.deleted.len().to_string(),
            state.last.stuck.len().to_string(),
            message(&state.message),
        ]);
    }
    rows
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
    use crate::config;
    use crate::pipelines::Run;
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
        let view = StatusView {
            mapping: Some(&mapping),
            syncs: &syncs,
            pipelines: &pipelines,
            rules: &rules,
            now: "2026-11-25T12:30:00Z".parse().expect("time"),
        };
        let long = "x".repeat(80);
        let expected = format!(
            "\
SYNC   REVISION         STATUS    HEALTH    OBJECTS   LAST SYNC              MESSAGE
api    config@          Unknown   Unknown   0         never                  not synced yet
gone   fedcba9          Failed    Unknown   0                                {long}
web    config@0123456   Synced    Healthy   0         2026-11-25T12:00:00Z   3 objects synced

PIPELINE   REPOSITORY   LAST RUN     BRANCH@REVISION   PHASE     STARTED                FINISHED   MESSAGE
ci         config       ci-0123456   main@0123456      Pending   2026-11-25T11:00:00Z              launched

CLEANUP    SCHEDULE    LAST RUN               NEXT RUN               DELETED   STUCK   MESSAGE
old-runs   0 * * * *   2026-11-25T11:00:00Z   2026-11-25T12:30:00Z   0         0
"
        );
        assert_eq!(text(|w| status(w, &view)), expected);
    }

    #[test]
    fn status_without_pipelines_or_rules_shows_only_syncs() {
        let empty = BTreeMap::new();
        let view = StatusView {
            mapping: None,
            syncs: &BTreeMap::new(),
            pipelines: &empty,
            rules: &BTreeMap::new(),
            now: Timestamp::UNIX_EPOCH,
        };
        assert_eq!(
            text(|w| status(w, &view)),
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
}
