//! berth: a GitOps sync agent for Kubernetes.
//!
//! ```text
//!  git::Mirror::fetch ─► git::read_path ─► render::directory ─► diff::plan ─► apply::apply
//!   (bare mirror)          (commit tree)     (desired objects)    (dry-run)     apply::prune
//!                                                                                    │
//!                                                       status::next ─► status::save ◄┘
//! ```
//!
//! `sync` runs one pass of those steps; `pipelines` launches Workflows and `cleanup` deletes old
//! runs; `agent` runs all of them on timers, webhooks and file events for `berth run`; `cli`
//! is the command line. ARCHITECTURE.md draws the layers: every module imports only modules
//! below it.

// the vocabulary and values everything else is written in
mod object;
mod repo_url;
mod schedule;
mod vocab;

// the outside world: git, git hosts' APIs, the API server, status records, Events, metrics
mod cluster;
mod context;
mod events;
pub mod git;
mod provider;
mod store;
pub mod telemetry;

// the steps of a sync, in data-flow order
mod apply;
mod config;
mod diff;
mod health;
mod locate;
mod notify;
mod render;
mod sops;
mod source;
mod status;
mod sync;

// the other jobs, the agent and the command line
mod agent;
mod cleanup;
pub mod cli;
mod pipelines;
mod preview;
mod ui;
pub mod webhook;

/// Any failure of a berth operation.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Git(#[from] git::Error),
    #[error(transparent)]
    Render(#[from] render::Error),
    #[error(transparent)]
    Cluster(#[from] cluster::Error),
    #[error(transparent)]
    Diff(#[from] diff::Error),
    #[error(transparent)]
    Apply(#[from] apply::Error),
    #[error(transparent)]
    Status(#[from] store::Error),
    #[error(transparent)]
    Pipeline(#[from] pipelines::Error),
    #[error(transparent)]
    Context(#[from] context::Error),
    #[error(transparent)]
    Source(#[from] source::Error),
    #[error(transparent)]
    Sync(#[from] sync::Error),
}
