//! The mapping file's format, as serde reads it: every key with its position, unknown keys
//! refused. [`super::parse`] turns it into the validated types.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct File {
    pub api_version: Spanned<String>,
    pub kind: Spanned<String>,
    #[serde(default)]
    pub repositories: Vec<RepositoryFile>,
    #[serde(default)]
    pub syncs: Vec<SyncFile>,
    #[serde(default)]
    pub pipelines: Vec<PipelineFile>,
    #[serde(default)]
    pub cleanup: Vec<CleanupFile>,
    #[serde(default)]
    pub notifications: Vec<super::notifications::NotificationFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RepositoryFile {
    /// Unique name, used by syncs and in status.
    pub name: Spanned<String>,
    /// `https://…`, `ssh://…`, `git@host:path` or `file://…`.
    pub url: Spanned<String>,
    /// Branch to follow.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Poll interval (`30s`, `5m`, `1h`); `0` = webhook/notify only.
    #[serde(default = "default_interval")]
    pub interval: Spanned<String>,
    /// Credentials: a Secret in berth's namespace.
    #[serde(default)]
    pub auth: Option<AuthFile>,
    /// Secret in berth's namespace with key `secret` for webhook verification.
    #[serde(default)]
    pub webhook_secret_ref: Option<String>,
    /// The git host's API: commit statuses and pull requests.
    #[serde(default)]
    pub provider: Option<Spanned<ProviderFile>>,
    /// Preview every sync of this repository on its pull requests (a sync's `preview` wins).
    #[serde(default)]
    pub previews: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ProviderFile {
    /// `github` | `gitlab` | `gitea` | `forgejo` | `bitbucket` | `bitbucket-server`.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// The API's base URL; derived for github.com, gitlab.com and bitbucket.org.
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    /// Secret with key `token` (Bitbucket also `username`); default: `auth.secretRef`.
    #[serde(default)]
    pub secret_ref: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct AuthFile {
    pub secret_ref: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct SyncFile {
    pub name: Spanned<String>,
    pub repository: Spanned<String>,
    #[serde(default = "default_path")]
    pub path: Spanned<String>,
    #[serde(default)]
    pub namespace: Option<Spanned<String>>,
    #[serde(default = "default_true")]
    pub prune: bool,
    #[serde(default)]
    pub self_heal: bool,
    /// ServiceAccount (in `namespace`) the sync acts as.
    #[serde(default)]
    pub service_account: Option<Spanned<String>>,
    /// Whether a pass may take over live objects berth does not manage.
    #[serde(default = "default_true")]
    pub adopt: bool,
    /// Whether a render with no objects may prune everything the sync manages.
    #[serde(default)]
    pub allow_empty: bool,
    /// Globs (relative to `path`) a manifest file must match to be read; all when empty.
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    /// Globs (relative to `path`) of manifest files to leave out.
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    #[serde(default)]
    pub vars: BTreeMap<String, Spanned<String>>,
    /// Whether a pass waits until every object is Healthy (up to `timeout`).
    #[serde(default)]
    pub wait: bool,
    /// How long `wait` waits; default 5m.
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    /// Syncs that must be Healthy before this one applies.
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    /// Whether pull requests that change this sync's path get a preview comment and status.
    #[serde(default)]
    pub preview: Option<Spanned<bool>>,
    /// How SOPS-encrypted files are decrypted.
    #[serde(default)]
    pub decryption: Option<Spanned<DecryptionFile>>,
    /// ConfigMaps and Secrets in berth's namespace whose keys are `${NAME}` values.
    #[serde(default)]
    pub vars_from: Vec<Spanned<VarsFromFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct DecryptionFile {
    /// `sops`.
    pub provider: Spanned<String>,
    /// Secret whose keys ending in `.agekey` hold age identities.
    pub secret_ref: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct VarsFromFile {
    /// `ConfigMap` or `Secret`.
    pub kind: Spanned<String>,
    pub name: Spanned<String>,
    /// Whether a missing source is skipped rather than failing the sync.
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PipelineFile {
    pub name: Spanned<String>,
    pub repository: Spanned<String>,
    /// Branch names or globs; default: the repository's branch.
    #[serde(default)]
    pub branches: Vec<Spanned<String>>,
    /// Path globs a changed file must match.
    #[serde(default)]
    pub paths: Vec<Spanned<String>>,
    /// Tag names or globs whose pushes launch the tagged commit.
    #[serde(default)]
    pub tags: Vec<Spanned<String>>,
    /// Pull requests that launch.
    #[serde(default)]
    pub pull_requests: Option<Spanned<PullRequestsFile>>,
    /// Workflow manifest in the source repository; default `.argo/workflow.yaml`.
    #[serde(default)]
    pub workflow: Option<Spanned<String>>,
    /// Name of a WorkflowTemplate to run instead of a file.
    #[serde(default)]
    pub workflow_template_ref: Option<Spanned<String>>,
    #[serde(default)]
    pub namespace: Option<Spanned<String>>,
    #[serde(default)]
    pub service_account: Option<String>,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// `allow` | `queue` | `cancel-in-progress`.
    #[serde(default)]
    pub concurrency: Option<Spanned<String>>,
    #[serde(default)]
    pub ttl_strategy: Option<serde_json::Value>,
    #[serde(default, rename = "podGC")]
    pub pod_gc: Option<serde_json::Value>,
    #[serde(default, rename = "artifactGC")]
    pub artifact_gc: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PullRequestsFile {
    /// Globs of target branches whose pull requests launch.
    #[serde(default)]
    pub branches: Vec<Spanned<String>>,
    /// `base` (default) | `head`: where the Workflow file is read.
    #[serde(default)]
    pub workflow_from: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct CleanupFile {
    pub name: Spanned<String>,
    /// `*/15 * * * *`, `0 */5 * * * *` (with seconds) or `@hourly`.
    pub schedule: Spanned<String>,
    /// IANA zone, default UTC.
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub namespace: Option<Spanned<String>>,
    #[serde(default)]
    pub pipeline: Option<Spanned<String>>,
    #[serde(default)]
    pub selector: Option<String>,
    #[serde(default)]
    pub keep_last: Option<usize>,
    #[serde(default)]
    pub older_than: Option<Spanned<String>>,
}

fn default_branch() -> String {
    "main".to_owned()
}

fn default_interval() -> Spanned<String> {
    unspanned("1m".to_owned())
}

fn default_path() -> Spanned<String> {
    unspanned(String::new())
}

fn unspanned(value: String) -> Spanned<String> {
    Spanned::new(
        value,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

fn default_true() -> bool {
    true
}
