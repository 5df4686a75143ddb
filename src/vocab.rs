//! berth's vocabulary on the cluster: the field manager, every label and annotation key, the
//! names of its status ConfigMaps and the reasons of its Events. Each string is defined here
//! once; every other module refers to these names.

use std::fmt;

/// Field manager of every server-side apply berth makes.
pub(crate) const FIELD_MANAGER: &str = "berth";
/// Field manager of the pipeline run watcher's writes to a pipeline's status ConfigMap, so
/// they never remove the fields the launcher applies (and the other way round).
pub(crate) const RUN_WATCHER: &str = "berth-run-watcher";
/// Field manager of the commit status reporter's writes to a pipeline's status ConfigMap (the
/// states it posted, its last error).
pub(crate) const STATUS_REPORTER: &str = "berth-status-reporter";
/// Field manager of the notifications' records (`berth-outbox-notify-*`).
pub(crate) const NOTIFIER: &str = "berth-notifier";

// ---- labels ---------------------------------------------------------------------------------

/// Label marking objects berth manages, with value [`MANAGER_VALUE`].
pub(crate) const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub(crate) const MANAGER_VALUE: &str = "berth";
/// Label naming the sync that owns an object.
pub(crate) const SYNC_LABEL: &str = "berth.dev/sync";
/// Label on status ConfigMaps saying which kind of record they hold ([`RecordKind`]).
pub(crate) const KIND_LABEL: &str = "berth.dev/kind";
/// Label: the pipeline that launched a Workflow.
pub(crate) const PIPELINE_LABEL: &str = "berth.dev/pipeline";
/// Label: the repository (mapping name) a Workflow was launched from.
pub(crate) const REPOSITORY_LABEL: &str = "berth.dev/repository";
/// Label: the branch of a run, made a valid label value.
pub(crate) const BRANCH_LABEL: &str = "berth.dev/branch";
/// Label: the pull request (its number) a run builds.
pub(crate) const PULL_REQUEST_LABEL: &str = "berth.dev/pull-request";
/// Label: the tag a run builds, made a valid label value (the name as it is in
/// [`TAG_ANNOTATION`]).
pub(crate) const TAG_LABEL: &str = "berth.dev/tag";

// ---- annotations (and [`REVISION`], also a label on Workflows) -------------------------------

/// Annotation `<repo-url>#<path>` on synced objects.
pub(crate) const SOURCE: &str = "berth.dev/source";
/// The commit of the last change (on objects), the synced commit (on status), the launched
/// commit (a label on Workflows).
pub(crate) const REVISION: &str = "berth.dev/revision";
/// Annotation that keeps an object when it leaves git (`disabled`).
pub(crate) const PRUNE: &str = "berth.dev/prune";
/// Argo CD's sync options annotation; `Prune=false` is honored like [`PRUNE`].
pub(crate) const ARGOCD_SYNC_OPTIONS: &str = "argocd.argoproj.io/sync-options";
/// Argo CD's compare options annotation; `IgnoreExtraneous` keeps a leftover object from making
/// a sync `OutOfSync`.
pub(crate) const ARGOCD_COMPARE_OPTIONS: &str = "argocd.argoproj.io/compare-options";
/// Flux's prune opt-out, honored like [`PRUNE`].
pub(crate) const FLUX_PRUNE: &str = "kustomize.toolkit.fluxcd.io/prune";
/// Flux's reconcile opt-out: `disabled` leaves an existing object alone, never pruned.
pub(crate) const FLUX_RECONCILE: &str = "kustomize.toolkit.fluxcd.io/reconcile";
/// Flux's apply policy: `Ignore`, `IfNotPresent`, `Merge` or `Override` (the default).
pub(crate) const FLUX_SSA: &str = "kustomize.toolkit.fluxcd.io/ssa";
/// Argo CD's hook annotation: `PreSync`, `Sync`, `PostSync`, `SyncFail` or `Skip`.
pub(crate) const ARGOCD_HOOK: &str = "argocd.argoproj.io/hook";
/// Argo CD's hook deletion policy: `HookSucceeded`, `HookFailed`, `BeforeHookCreation`.
pub(crate) const ARGOCD_HOOK_DELETE_POLICY: &str = "argocd.argoproj.io/hook-delete-policy";
/// Helm's hook annotation (`pre-install`, `post-upgrade`, …), mapped onto Argo CD's phases.
pub(crate) const HELM_HOOK: &str = "helm.sh/hook";
/// Helm's hook weight: the order of hooks within a phase.
pub(crate) const HELM_HOOK_WEIGHT: &str = "helm.sh/hook-weight";
/// Helm's hook deletion policy: `before-hook-creation`, `hook-succeeded`, `hook-failed`.
pub(crate) const HELM_HOOK_DELETE_POLICY: &str = "helm.sh/hook-delete-policy";
/// Label on the runs of a `generateName` hook: which hook of its sync made them.
pub(crate) const HOOK_LABEL: &str = "berth.dev/hook";
/// The wave an object is applied in (an integer, default 0); lower waves first.
pub(crate) const WAVE: &str = "berth.dev/wave";
/// Argo CD's sync-wave annotation, honored like [`WAVE`].
pub(crate) const ARGOCD_SYNC_WAVE: &str = "argocd.argoproj.io/sync-wave";
/// Status ConfigMap annotations.
pub(crate) const STATUS: &str = "berth.dev/status";
/// On an object: `disabled` leaves its text unsubstituted.
pub(crate) const SUBSTITUTE: &str = "berth.dev/substitute";
/// Flux's annotation of the same meaning, honored as it is.
pub(crate) const FLUX_SUBSTITUTE: &str = "kustomize.toolkit.fluxcd.io/substitute";
pub(crate) const HEALTH: &str = "berth.dev/health";
pub(crate) const LAST_SYNC: &str = "berth.dev/last-sync";
pub(crate) const MESSAGE: &str = "berth.dev/message";
/// Annotation on `berth-agent`: whether the mapping on disk is valid.
pub(crate) const CONFIG_STATUS: &str = "berth.dev/config-status";
/// Annotation on Workflows: the branch name as it is.
pub(crate) const BRANCH_ANNOTATION: &str = "berth.dev/branch";
/// Annotation on Workflows: the tag name as it is.
pub(crate) const TAG_ANNOTATION: &str = "berth.dev/tag";
/// Annotation on Workflows: the pull request's target branch.
pub(crate) const BASE_ANNOTATION: &str = "berth.dev/base-branch";
/// Annotation on a pipeline's status ConfigMap: the last failed request to the git host's API
/// (no token), cleared by the next that succeeds.
pub(crate) const PROVIDER_ERROR: &str = "berth.dev/provider-error";
/// Annotation on Workflows: the commit's subject line.
pub(crate) const SUBJECT_ANNOTATION: &str = "berth.dev/commit-subject";
/// Annotation on runs: when berth launched the run, to the nanosecond (runs created in the same
/// second have the same creationTimestamp; this orders them by launch).
pub(crate) const LAUNCHED_ANNOTATION: &str = "berth.dev/launched-at";
/// Annotation on runs created suspended by `concurrency: queue`.
pub(crate) const QUEUED_ANNOTATION: &str = "berth.dev/queued";

/// Name of the Lease replicas elect a leader with, in berth's namespace.
pub(crate) const LEASE_NAME: &str = "berth";

// ---- status ConfigMaps ----------------------------------------------------------------------

/// The kinds of status record berth keeps, one ConfigMap each, named `<prefix><name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// `berth-sync-<sync>`: status and inventory of a sync.
    Sync,
    /// `berth-pipeline-<pipeline>`: launched commits and recent runs.
    Pipeline,
    /// `berth-cleanup-<rule>`: the last run of a cleanup rule.
    Cleanup,
    /// `berth-agent`: the state of the mapping file.
    Agent,
    /// `berth-outbox-<subject>`: what berth told the outside world about a subject (the commit
    /// statuses posted for a sync, `sync-<sync>`), kept apart from the subject's own record,
    /// whose writes are fenced.
    Outbox,
}

impl RecordKind {
    /// The value of [`KIND_LABEL`].
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Pipeline => "pipeline",
            Self::Cleanup => "cleanup",
            Self::Agent => "agent",
            Self::Outbox => "outbox",
        }
    }

    /// What the ConfigMap's name starts with; the agent's record has no suffix.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Self::Sync => "berth-sync-",
            Self::Pipeline => "berth-pipeline-",
            Self::Cleanup => "berth-cleanup-",
            Self::Agent => "berth-agent",
            Self::Outbox => "berth-outbox-",
        }
    }

    /// The ConfigMap of one record: `berth-sync-web`, or `berth-agent` for the agent.
    pub(crate) fn config_map(self, name: &str) -> String {
        format!("{}{name}", self.prefix())
    }
}

// ---- Events ---------------------------------------------------------------------------------

/// The reason of every Event berth records, on one of its status ConfigMaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Synced,
    SyncFailed,
    Adopted,
    Launched,
    LaunchFailed,
    Skipped,
    RunSucceeded,
    RunFailed,
    RunError,
    CleanedUp,
    CleanupFailed,
    CleanupStuck,
    ConfigReloaded,
    ConfigInvalid,
    Healthy,
    Progressing,
    Degraded,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Synced => "Synced",
            Self::SyncFailed => "SyncFailed",
            Self::Adopted => "Adopted",
            Self::Launched => "Launched",
            Self::LaunchFailed => "LaunchFailed",
            Self::Skipped => "Skipped",
            Self::RunSucceeded => "RunSucceeded",
            Self::RunFailed => "RunFailed",
            Self::RunError => "RunError",
            Self::CleanedUp => "CleanedUp",
            Self::CleanupFailed => "CleanupFailed",
            Self::CleanupStuck => "CleanupStuck",
            Self::ConfigReloaded => "ConfigReloaded",
            Self::ConfigInvalid => "ConfigInvalid",
            Self::Healthy => "Healthy",
            Self::Progressing => "Progressing",
            Self::Degraded => "Degraded",
        }
    }

    /// The action an Event reports (events.k8s.io's `action`).
    pub(crate) fn action(self) -> &'static str {
        match self {
            Self::Synced | Self::SyncFailed | Self::Adopted => "Sync",
            Self::Launched | Self::LaunchFailed | Self::Skipped => "Launch",
            Self::RunSucceeded | Self::RunFailed | Self::RunError => "Run",
            Self::CleanedUp | Self::CleanupFailed | Self::CleanupStuck => "Cleanup",
            Self::ConfigReloaded | Self::ConfigInvalid => "Reload",
            Self::Healthy | Self::Progressing | Self::Degraded => "Health",
        }
    }

    /// Whether the Event is a Warning (else Normal).
    pub(crate) fn is_warning(self) -> bool {
        matches!(
            self,
            Self::SyncFailed
                | Self::LaunchFailed
                | Self::RunFailed
                | Self::RunError
                | Self::CleanupFailed
                | Self::CleanupStuck
                | Self::ConfigInvalid
                | Self::Degraded
        )
    }

    /// The reason for a run that finished in an Argo phase; `None` for unfinished phases.
    pub(crate) fn of_run(phase: &str) -> Option<Self> {
        match phase {
            "Succeeded" => Some(Self::RunSucceeded),
            "Failed" => Some(Self::RunFailed),
            "Error" => Some(Self::RunError),
            _ => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_carry_their_prefix() {
        assert_eq!(RecordKind::Sync.config_map("web"), "berth-sync-web");
        assert_eq!(RecordKind::Pipeline.config_map("ci"), "berth-pipeline-ci");
        assert_eq!(RecordKind::Cleanup.config_map("old"), "berth-cleanup-old");
        assert_eq!(RecordKind::Agent.config_map(""), "berth-agent");
    }

    #[test]
    fn finished_run_phases_have_reasons() {
        assert_eq!(Reason::of_run("Succeeded"), Some(Reason::RunSucceeded));
        assert_eq!(Reason::of_run("Error"), Some(Reason::RunError));
        assert_eq!(Reason::of_run("Running"), None);
        assert!(Reason::RunFailed.is_warning() && !Reason::Launched.is_warning());
    }
}
