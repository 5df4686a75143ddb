//! The outcome of a pass, decided purely: [`judge`] turns the stored record, what the pass did
//! and the mode into a [`Verdict`] (the status, the health, the record to write, the Events and
//! the metrics); `record` carries it out. The rules users rely on most live here:
//! - a failed pass forgets nothing: the inventory keeps what it had and gains what was applied;
//! - the revision stays on error: a pass that stopped keeps the one synced before (one whose
//!   objects failed alone applied the rest of its commit, and names it);
//! - an Event is sent only when something flips, or the pass wrote something;
//! - a plan writes nothing, and a check that could not look records nothing.

use std::collections::BTreeMap;

use crate::apply::ChangeSet;
use crate::diff::{self, Action, Plan};
use crate::git::Commit;
use crate::health;
use crate::object::ObjectId;
use crate::status::{self, Health, Phase, SyncStatus};
use crate::vocab::Reason;

use super::Mode;

/// How many problems a status message spells out; the rest are counted.
const SHOWN_PROBLEMS: usize = 5;

/// What a pass (or a failure before one could start) leaves to judge.
#[derive(Debug)]
pub(crate) struct Passed {
    /// The commit the pass was for; none when it failed before knowing one (a fetch).
    pub commit: Option<Commit>,
    /// The sync's phase and health as the last finished pass left them (before this pass's
    /// own writes: its reservations and its `Progressing` while waiting).
    pub before: Option<(Phase, Health)>,
    /// What the pass planned and did, or why it stopped.
    pub result: Result<(Plan, ChangeSet), String>,
}

/// The counters a pass adds to.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub applied: u64,
    pub pruned: u64,
    pub adopted: u64,
}

/// What a pass comes to.
#[derive(Debug)]
pub(crate) struct Verdict {
    pub phase: Phase,
    pub health: Health,
    /// What went wrong, or what the pass did.
    pub message: String,
    /// The revision the report names: the pass's commit, else the one synced before.
    pub revision: String,
    /// `revision abc1234: `, prefixed to what the record and Events say.
    pub at: String,
    /// Why the sync is not Healthy, when known (logged).
    pub unhealthy: Option<String>,
    /// False for a plan, and for a check that could not look: nothing is written, sent or
    /// counted.
    pub records: bool,
    /// The record to write; `None` when it would not change.
    pub write: Option<SyncStatus>,
    /// What the sync manages after the pass.
    pub inventory: BTreeMap<ObjectId, status::Record>,
    /// Events to publish on the sync's record, in order.
    pub events: Vec<(Reason, String)>,
    pub counts: Counts,
}

/// Decides what a pass comes to. `now` stamps the record when it changes.
pub(crate) fn judge(old: Option<&SyncStatus>, passed: &Passed, mode: Mode, now: &str) -> Verdict {
    let empty = (Plan::default(), ChangeSet::default());
    let (plan, changes) = passed.result.as_ref().unwrap_or(&empty);
    let error = passed.result.as_ref().err();
    let mut problems: Vec<String> = error.into_iter().cloned().collect();
    problems.extend(changes.errors.iter().map(ToString::to_string));
    // the same failures give the same message, whatever order the requests completed in
    problems.sort();
    problems.dedup();
    let phase = if !problems.is_empty() {
        Phase::Failed
    } else if mode != Mode::Apply && plan.differences() > 0 {
        Phase::OutOfSync
    } else {
        Phase::Synced
    };
    let message = if problems.is_empty() {
        changes.summary()
    } else {
        summarize_problems(&problems)
    };
    let old_revision = old.map(|o| o.revision.clone()).unwrap_or_default();
    let commit = passed.commit.as_ref();
    let at = commit.map_or_else(String::new, |c| format!("revision {}: ", c.short()));
    let (health, unhealthy) = judge_health(plan, changes, old);
    let mut verdict = Verdict {
        phase,
        health,
        revision: commit.map_or_else(|| old_revision.clone(), |c| c.id.clone()),
        at,
        unhealthy,
        records: !(mode == Mode::Plan || (mode == Mode::Check && phase == Phase::Failed)),
        write: None,
        inventory: BTreeMap::new(),
        events: Vec::new(),
        counts: Counts::default(),
        message,
    };
    if !verdict.records {
        return verdict;
    }
    verdict.inventory = inventory(old, changes, mode, phase);
    let revision = match commit {
        Some(c) if error.is_none() && mode == Mode::Apply => c.id.clone(),
        _ => old_revision,
    };
    let new = SyncStatus {
        phase,
        health,
        revision,
        resource_version: old.map(|o| o.resource_version.clone()).unwrap_or_default(),
        last_sync: String::new(),
        message: record_message(&verdict, plan, verdict.inventory.len()),
        inventory: verdict.inventory.clone(),
    };
    verdict.write = status::next(old, new, now);
    verdict.events = events(&verdict, passed.before, changes, mode);
    verdict.counts = Counts {
        applied: (changes.created.len() + changes.configured.len()) as u64,
        pruned: changes.pruned.len() as u64,
        adopted: changes.adopted.len() as u64,
    };
    verdict
}

/// The inventory after a pass: a check keeps it; a failed pass keeps what it knew plus what
/// it applied (it forgets nothing); a pass that succeeded is exactly what it applied.
fn inventory(
    old: Option<&SyncStatus>,
    changes: &ChangeSet,
    mode: Mode,
    phase: Phase,
) -> BTreeMap<ObjectId, status::Record> {
    let mut kept = old.map(|o| o.inventory.clone()).unwrap_or_default();
    if mode == Mode::Check {
        return kept;
    }
    if phase != Phase::Failed {
        kept.clear();
    }
    kept.extend(changes.records.iter().cloned());
    kept
}

/// Health after a pass: objects that failed to apply are not what git says (Degraded); a
/// `wait` decides when it ran; otherwise the plan's objects are judged.
fn judge_health(
    plan: &Plan,
    changes: &ChangeSet,
    old: Option<&SyncStatus>,
) -> (Health, Option<String>) {
    match &changes.waited {
        _ if !changes.errors.is_empty() => (Health::Degraded, None),
        Some(Ok(())) => (Health::Healthy, None),
        Some(Err(why)) => (Health::Degraded, Some(why.clone())),
        None => plan_health(plan, old),
    }
}

/// The record's message describes the state, so a no-op pass leaves it (and the ConfigMap)
/// alone; what a pass did goes to the Event and the log. Why a sync is Degraded stays in it; a
/// Progressing reason moves with every replica that becomes ready and is only logged.
fn record_message(verdict: &Verdict, plan: &Plan, managed: usize) -> String {
    match verdict.phase {
        Phase::Failed => format!("{}{}", verdict.at, verdict.message),
        Phase::OutOfSync => format!("{} objects differ from git", plan.differences()),
        Phase::Synced => match verdict.unhealthy.as_deref() {
            Some(why) if verdict.health == Health::Degraded => {
                format!("{managed} objects synced; Degraded: {why}")
            }
            _ => format!("{managed} objects synced"),
        },
    }
}

/// The Events of a pass: a health flip (in a pass that applies), adoptions, and a failure or a
/// sync when the phase flipped or the pass wrote something. A check reports drift in its
/// record only.
fn events(
    verdict: &Verdict,
    before: Option<(Phase, Health)>,
    changes: &ChangeSet,
    mode: Mode,
) -> Vec<(Reason, String)> {
    let mut events = Vec::new();
    let at = &verdict.at;
    let (phase, health) = (verdict.phase, verdict.health);
    let was = before.map_or(Health::Unknown, |(_, h)| h);
    let flipped = before.is_none_or(|(p, _)| p != phase);
    if was != health && mode == Mode::Apply {
        let reason = match health {
            Health::Healthy => Some(Reason::Healthy),
            Health::Progressing => Some(Reason::Progressing),
            Health::Degraded => Some(Reason::Degraded),
            Health::Unknown => None,
        };
        let why = verdict
            .unhealthy
            .as_deref()
            .map_or_else(String::new, |w| format!(": {w}"));
        if let Some(reason) = reason {
            events.push((reason, format!("{at}health {was} → {health}{why}")));
        }
    }
    if !changes.adopted.is_empty() {
        let ids: Vec<String> = changes.adopted.iter().map(ToString::to_string).collect();
        events.push((Reason::Adopted, format!("{at}adopted {}", ids.join(", "))));
    }
    if mode == Mode::Check || !(flipped || changes.changed()) {
        return events;
    }
    if phase == Phase::Failed {
        events.push((Reason::SyncFailed, verdict.message.clone()));
    } else {
        let mut text = format!("{at}{}", changes.summary());
        for (id, reason) in &changes.kept {
            text.push_str(&format!("; kept {id}: {reason}"));
        }
        events.push((Reason::Synced, text));
    }
    events
}

/// The first few problems and a count of the rest, so a pass where hundreds of objects fail
/// still leaves a readable message (and a ConfigMap annotation within its size limit).
fn summarize_problems(problems: &[String]) -> String {
    let mut text = problems
        .iter()
        .take(SHOWN_PROBLEMS)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN_PROBLEMS {
        text.push_str(&format!("; and {} more", problems.len() - SHOWN_PROBLEMS));
    }
    text
}

/// Health from the plan, with the object that decided it when not Healthy: objects of kinds a
/// controller reports on that were just created or changed are still rolling out; the rest are
/// judged from their live state. A pass with no objects (a failed render) keeps the previous
/// health.
fn plan_health(plan: &Plan, old: Option<&SyncStatus>) -> (Health, Option<String>) {
    if plan.entries.is_empty() {
        return (old.map(|o| o.health).unwrap_or_default(), None);
    }
    // a just-applied workload decides before anything judged from an older live state
    let (changed, rest): (Vec<&diff::Entry>, Vec<&diff::Entry>) = plan
        .entries
        .iter()
        .partition(|e| e.action != Action::Unchanged);
    let (h, who) = health::worst_of(changed.into_iter().chain(rest).map(|e| {
        let a = health::after_pass(&e.id.kind, e.action != Action::Unchanged, e.live.as_ref());
        (e.id.to_string(), a)
    }));
    (h, who.map(|(id, reason)| format!("{id}: {reason}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply;
    use crate::render::Manifest;

    const NOW: &str = "2026-12-02T10:00:00Z";
    const OLD: &str = "1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const NEW: &str = "2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn id(name: &str) -> ObjectId {
        ObjectId {
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: "web".into(),
            name: name.into(),
        }
    }

    fn rec(revision: &str) -> status::Record {
        status::Record {
            api_version: "v1".into(),
            revision: revision.into(),
            ..status::Record::default()
        }
    }

    fn stored(phase: Phase, health: Health, names: &[&str]) -> SyncStatus {
        SyncStatus {
            phase,
            health,
            revision: OLD.into(),
            last_sync: "earlier".into(),
            message: format!("{} objects synced", names.len()),
            inventory: names.iter().map(|n| (id(n), rec(OLD))).collect(),
            resource_version: "7".into(),
        }
    }

    fn entry(kind: &str, name: &str, action: Action) -> diff::Entry {
        let object = serde_json::json!({"apiVersion": if kind == "Deployment" {"apps/v1"} else {"v1"},
            "kind": kind, "metadata": {"name": name, "namespace": "web"}});
        let manifest = Manifest {
            object,
            file: "f.yaml".into(),
            line: 1,
            source: std::sync::Arc::from(""),
            hidden: Default::default(),
        };
        diff::Entry {
            id: manifest.id(),
            manifest,
            action,
            hash: String::new(),
            revision: NEW.into(),
            live: None,
            predicted: None,
        }
    }

    /// A pass that applied `created` (new ConfigMaps) and left `unchanged` as they were.
    fn applied(created: &[&str], unchanged: &[&str]) -> (Plan, ChangeSet) {
        let mut plan = Plan::default();
        let mut changes = ChangeSet::default();
        for n in created {
            plan.entries.push(entry("ConfigMap", n, Action::Create));
            changes.created.push(id(n));
            changes.records.push((id(n), rec(NEW)));
        }
        for n in unchanged {
            plan.entries.push(entry("ConfigMap", n, Action::Unchanged));
            changes.unchanged += 1;
            changes.records.push((id(n), rec(OLD)));
        }
        (plan, changes)
    }

    fn failing(mut result: (Plan, ChangeSet), name: &str) -> (Plan, ChangeSet) {
        result.1.failed.push(id(name));
        result.1.errors.push(apply::Error::NotApplied {
            origin: "f.yaml:1".into(),
            id: id(name).to_string(),
            reason: "refused".into(),
        });
        result
    }

    fn commit() -> Commit {
        Commit {
            id: NEW.into(),
            subject: "change".into(),
        }
    }

    fn passed(old: Option<&SyncStatus>, result: Result<(Plan, ChangeSet), String>) -> Passed {
        Passed {
            commit: Some(commit()),
            before: old.map(|o| (o.phase, o.health)),
            result,
        }
    }

    fn reasons(v: &Verdict) -> Vec<Reason> {
        v.events.iter().map(|(r, _)| *r).collect()
    }

    /// One row: the stored record, what the pass did, the mode, and what must come of it.
    struct Case {
        what: &'static str,
        old: Option<SyncStatus>,
        result: Result<(Plan, ChangeSet), String>,
        mode: Mode,
        phase: Phase,
        health: Health,
        /// The revision written, or `None` when nothing is written.
        writes: Option<&'static str>,
        inventory: Vec<&'static str>,
        events: Vec<Reason>,
    }

    #[test]
    fn judge_table() {
        let synced = stored(Phase::Synced, Health::Healthy, &["a", "b"]);
        let failed = stored(Phase::Failed, Health::Degraded, &["a", "b"]);
        let mut waited_ok = applied(&["a"], &[]);
        waited_ok.1.waited = Some(Ok(()));
        let mut waited_bad = applied(&["a"], &[]);
        waited_bad.1.waited = Some(Err("web/ConfigMap/a: broken".into()));
        let mut adopted = applied(&[], &["a"]);
        adopted.1.adopted.push(id("a"));
        let mut deployment = applied(&[], &[]);
        deployment
            .0
            .entries
            .push(entry("Deployment", "web", Action::Create));
        let mut drift = applied(&[], &["a"]);
        drift.0.entries[0].action = Action::Update;
        let cases = vec![
            Case {
                what: "a first sync records the commit and what it applied",
                old: None,
                result: Ok(applied(&["a", "b"], &[])),
                mode: Mode::Apply,
                phase: Phase::Synced,
                health: Health::Healthy,
                writes: Some(NEW),
                inventory: vec!["a", "b"],
                events: vec![Reason::Healthy, Reason::Synced],
            },
            Case {
                what: "a no-op resync writes nothing and sends nothing",
                old: Some(SyncStatus {
                    revision: NEW.into(),
                    ..synced.clone()
                }),
                result: Ok(applied(&[], &["a", "b"])),
                mode: Mode::Apply,
                phase: Phase::Synced,
                health: Health::Healthy,
                writes: None,
                inventory: vec!["a", "b"],
                events: vec![],
            },
            Case {
                what: "an object that failed alone: the rest is applied, nothing is forgotten",
                old: Some(synced.clone()),
                result: Ok(failing(applied(&["c"], &[]), "d")),
                mode: Mode::Apply,
                phase: Phase::Failed,
                health: Health::Degraded,
                writes: Some(NEW),
                inventory: vec!["a", "b", "c"],
                events: vec![Reason::Degraded, Reason::SyncFailed],
            },
            Case {
                what: "a pass that stopped keeps revision, inventory and health",
                old: Some(synced.clone()),
                result: Err("cannot render f.yaml:3".into()),
                mode: Mode::Apply,
                phase: Phase::Failed,
                health: Health::Healthy,
                writes: Some(OLD),
                inventory: vec!["a", "b"],
                events: vec![Reason::SyncFailed],
            },
            Case {
                what: "the same failure again flips nothing and sends nothing",
                old: Some(SyncStatus {
                    message: "revision 2222222: cannot render f.yaml:3".into(),
                    ..failed.clone()
                }),
                result: Err("cannot render f.yaml:3".into()),
                mode: Mode::Apply,
                phase: Phase::Failed,
                health: Health::Degraded,
                writes: None,
                inventory: vec!["a", "b"],
                events: vec![],
            },
            Case {
                what: "recovery after a failure is an Event for the phase and the health",
                old: Some(failed.clone()),
                result: Ok(applied(&[], &["a", "b"])),
                mode: Mode::Apply,
                phase: Phase::Synced,
                health: Health::Healthy,
                writes: Some(NEW),
                inventory: vec!["a", "b"],
                events: vec![Reason::Healthy, Reason::Synced],
            },
            Case {
                what: "a wait that ended Healthy",
                old: Some(synced.clone()),
                result: Ok(waited_ok),
                mode: Mode::Apply,
                phase: Phase::Synced,
                health: Health::Healthy,
                writes: Some(NEW),
                inventory: vec!["a"],
                events: vec![Reason::Synced],
            },
            Case {
                what: "a wait that ended Degraded says why",
                old: Some(synced.clone()),
                result: Ok(waited_bad),
                mode: Mode::Apply,
                phase: Phase::Synced,
                health: Health::Degraded,
                writes: Some(NEW),
                inventory: vec!["a"],
                events: vec![Reason::Degraded, Reason::Synced],
            },
            Case {
                what: "a just-applied workload is Progressing",
                old: Some(synced.clone()),
                result: Ok(deployment),
                mode: Mode::Apply,
                phase: Phase::Synced,
                health: Health::Progressing,
                writes: Some(NEW),
                inventory: vec![],
                events: vec![Reason::Progressing],
            },
            Case {
                what: "an adoption is an Event of its own",
                old: Some(synced.clone()),
                result: Ok(adopted),
                mode: Mode::Apply,
                phase: Phase::Synced,
                health: Health::Healthy,
                writes: Some(NEW),
                inventory: vec!["a"],
                events: vec![Reason::Adopted, Reason::Synced],
            },
            Case {
                what: "a check records drift without Events, keeping the inventory",
                old: Some(synced.clone()),
                result: Ok(drift),
                mode: Mode::Check,
                phase: Phase::OutOfSync,
                health: Health::Healthy,
                writes: Some(OLD),
                inventory: vec!["a", "b"],
                events: vec![],
            },
            Case {
                what: "a check that could not look records nothing",
                old: Some(synced.clone()),
                result: Err("connection refused".into()),
                mode: Mode::Check,
                phase: Phase::Failed,
                health: Health::Healthy,
                writes: None,
                inventory: vec![],
                events: vec![],
            },
            Case {
                what: "a plan writes nothing",
                old: Some(synced.clone()),
                result: Ok(failing(applied(&["c"], &[]), "d")),
                mode: Mode::Plan,
                phase: Phase::Failed,
                health: Health::Degraded,
                writes: None,
                inventory: vec![],
                events: vec![],
            },
        ];
        for case in cases {
            let p = passed(case.old.as_ref(), case.result);
            let v = judge(case.old.as_ref(), &p, case.mode, NOW);
            assert_eq!(v.phase, case.phase, "{}: phase", case.what);
            assert_eq!(v.health, case.health, "{}: health", case.what);
            assert_eq!(
                v.write.as_ref().map(|w| w.revision.as_str()),
                case.writes,
                "{}: write",
                case.what
            );
            if let Some(w) = &v.write {
                assert_eq!(w.last_sync, NOW, "{}", case.what);
                assert_eq!(w.inventory, v.inventory, "{}", case.what);
                assert_eq!((w.phase, w.health), (v.phase, v.health), "{}", case.what);
            }
            let names: Vec<&str> = v.inventory.keys().map(|i| i.name.as_str()).collect();
            assert_eq!(names, case.inventory, "{}: inventory", case.what);
            assert_eq!(reasons(&v), case.events, "{}: events", case.what);
        }
    }

    #[test]
    fn a_failure_before_a_pass_keeps_the_revision_and_names_no_commit() {
        let old = stored(Phase::Synced, Health::Healthy, &["a"]);
        let p = Passed {
            commit: None,
            before: Some((old.phase, old.health)),
            result: Err("fetch: connection refused".into()),
        };
        let v = judge(Some(&old), &p, Mode::Apply, NOW);
        assert_eq!(v.revision, OLD);
        let w = v.write.expect("the failure is recorded");
        assert_eq!(w.message, "fetch: connection refused");
        assert_eq!(w.revision, OLD);
        assert_eq!(v.events[0].1, "fetch: connection refused");
    }

    #[test]
    fn event_texts_say_what_flipped_and_what_was_kept() {
        let old = stored(Phase::Synced, Health::Healthy, &["a", "b"]);
        let mut result = applied(&[], &["a"]);
        result.1.pruned.push(id("b"));
        result
            .1
            .kept
            .push((id("c"), "declared by sync \"api\"".into()));
        let v = judge(
            Some(&old),
            &passed(Some(&old), Ok(result)),
            Mode::Apply,
            NOW,
        );
        let (reason, text) = &v.events[0];
        assert_eq!(*reason, Reason::Synced);
        assert!(text.starts_with("revision 2222222: "), "{text}");
        assert!(text.contains("1 pruned"), "{text}");
        assert!(
            text.contains("kept web/ConfigMap/c: declared by sync"),
            "{text}"
        );
        assert_eq!(v.counts.pruned, 1);

        let mut waited = applied(&["a"], &[]);
        waited.1.waited = Some(Err("web/ConfigMap/a: broken".into()));
        let v = judge(
            Some(&old),
            &passed(Some(&old), Ok(waited)),
            Mode::Apply,
            NOW,
        );
        assert_eq!(
            v.events[0].1,
            "revision 2222222: health Healthy → Degraded: web/ConfigMap/a: broken"
        );
        let w = v.write.expect("written");
        assert_eq!(
            w.message,
            "1 objects synced; Degraded: web/ConfigMap/a: broken"
        );
    }

    #[test]
    fn long_problem_lists_are_cut_with_a_count() {
        let problems: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
        assert_eq!(
            summarize_problems(&problems),
            "p0; p1; p2; p3; p4; and 3 more"
        );
        assert_eq!(summarize_problems(&problems[..2]), "p0; p1");
    }
}
