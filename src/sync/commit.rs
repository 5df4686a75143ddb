//! What a sync's commit shows on the git host (with a `provider` on its repository): `pending`
//! when a pass starts applying a new revision, `success` once it is Synced (and Healthy, for
//! a `wait` sync), `failure` when it failed or degraded, naming the object. Pure: which state
//! is due and what it says; [`crate::notify::statuses`] posts it on transitions only,
//! remembered in the sync's outbox record, never holding up a pass.

use std::collections::BTreeMap;

use crate::notify::statuses::{Record, Wanted};
use crate::provider::{State, Status};
use crate::status::{Health, Phase};
use crate::vocab::{RecordKind, SYNC_LABEL};

/// What a pass came to, as far as the commit is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub phase: Phase,
    pub health: Health,
    /// The pass failed in a way the phase does not show (its record could not be written, a
    /// wait timed out).
    pub failed: bool,
}

/// The state the commit of a pass shows: a failure or a degradation fails it; a `wait` sync
/// is pending until Healthy.
pub(crate) fn state(outcome: Outcome, wait: bool) -> State {
    if outcome.failed || outcome.phase == Phase::Failed || outcome.health == Health::Degraded {
        State::Failure
    } else if wait && outcome.health != Health::Healthy {
        State::Pending
    } else {
        State::Success
    }
}

/// The status of a sync at a revision in a state: context `berth/sync/<name>`, what it came
/// to (the failure's message names the object), and the sync's dashboard page.
pub(crate) fn status(sync: &str, state: State, message: &str, external: Option<&str>) -> Status {
    let description = match state {
        State::Pending | State::Running => "applying".to_owned(),
        State::Success => "synced".to_owned(),
        State::Failure | State::Error => message.to_owned(),
    };
    Status {
        state,
        context: format!("berth/sync/{sync}"),
        description,
        target_url: external.map(|base| format!("{base}/syncs/{sync}")),
    }
}

/// The wanted state of a sync's commit, for the commit-status reporter: remembered by
/// revision in the sync's outbox record; the stream goes on to the next revision. `pending`
/// as a pass starts is news only for a revision not told yet; a pass's result that `opened`
/// (it applied a new revision) posts `pending` first, should that not have gone out yet.
pub(crate) fn wanted(sync: &str, revision: &str, status: Status, opened: bool) -> (Record, Wanted) {
    let record = Record {
        kind: RecordKind::Outbox,
        name: format!("sync-{sync}"),
        labels: BTreeMap::from([(SYNC_LABEL.to_owned(), sync.to_owned())]),
    };
    let starting = status.state == State::Pending && !opened;
    let opening = opened.then(|| Status {
        state: State::Pending,
        description: "applying".to_owned(),
        ..status.clone()
    });
    let wanted = Wanted {
        key: revision.to_owned(),
        sha: revision.to_owned(),
        status,
        last: false,
        opening,
        first_only: starting,
    };
    (record, wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(phase: Phase, health: Health) -> Outcome {
        Outcome {
            phase,
            health,
            failed: false,
        }
    }

    #[test]
    fn states_follow_the_pass() {
        use Health::{Degraded, Healthy, Progressing, Unknown};
        use Phase::{Failed, OutOfSync, Synced};
        for (outcome, wait, want) in [
            (outcome(Synced, Healthy), false, State::Success),
            (outcome(Synced, Progressing), false, State::Success),
            (outcome(Synced, Unknown), false, State::Success),
            (outcome(Synced, Progressing), true, State::Pending),
            (outcome(Synced, Healthy), true, State::Success),
            (outcome(Synced, Degraded), false, State::Failure),
            (outcome(Synced, Degraded), true, State::Failure),
            (outcome(Failed, Healthy), false, State::Failure),
            (outcome(OutOfSync, Healthy), false, State::Success),
            (
                Outcome {
                    failed: true,
                    ..outcome(Synced, Healthy)
                },
                false,
                State::Failure,
            ),
        ] {
            assert_eq!(state(outcome, wait), want, "{outcome:?} wait={wait}");
        }
    }

    #[test]
    fn statuses_name_the_sync_the_failure_and_link_its_page() {
        let s = status(
            "web",
            State::Failure,
            "ConfigMap web/settings: refused",
            Some("https://b.example"),
        );
        assert_eq!(s.context, "berth/sync/web");
        assert_eq!(s.description, "ConfigMap web/settings: refused");
        assert_eq!(s.target_url.as_deref(), Some("https://b.example/syncs/web"));
        assert_eq!(
            status("web", State::Pending, "x", None).description,
            "applying"
        );
        assert_eq!(status("web", State::Success, "x", None).target_url, None);
        let (record, told) = wanted("web", "0123abc", s, true);
        assert_eq!(
            record.kind.config_map(&record.name),
            "berth-outbox-sync-web"
        );
        assert_eq!(
            (told.key.as_str(), told.last, told.first_only),
            ("0123abc", false, false)
        );
        let opening = told.opening.map(|o| (o.state, o.context));
        assert_eq!(opening, Some((State::Pending, "berth/sync/web".to_owned())));
        let pending = status("web", State::Pending, "", None);
        let (_, starting) = wanted("web", "0123abc", pending, false);
        assert!(starting.first_only && starting.opening.is_none());
    }
}
