//! berth: a GitOps sync agent for Kubernetes.
//!
//! ```text
//!  git::Mirror::fetch ─► git::read_path ─► render::directory ─► diff::plan ─► apply::apply
//!   (bare mirror)          (commit tree)     (desired objects)    (dry-run)     apply::prune
//!                                                                                    │
//!                                                       status::next ─► status::save ◄┘
//! ```
//!
//! `sync` runs one pass of those steps; `agent` runs them on timers for `berth run`.

pub mod agent;
pub mod apply;
pub mod cleanup;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod diff;
pub mod git;
pub mod lease;
pub mod pipelines;
pub mod render;
pub mod server;
pub mod status;
pub mod sync;
pub mod telemetry;
pub mod webhook;

/// Any failure of a berth operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    Status(#[from] status::Error),
    #[error(transparent)]
    Pipeline(#[from] pipelines::Error),
    #[error("failed to read secret {name}: {message}")]
    Secret { name: String, message: String },
}

impl Error {
    /// A stable PascalCase reason, for Events and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Config(_) => "InvalidMapping",
            Self::Git(_) => "GitError",
            Self::Render(_) => "RenderError",
            Self::Cluster(_) => "ClusterUnreachable",
            Self::Diff(_) => "PlanError",
            Self::Apply(_) => "ApplyError",
            Self::Status(_) => "StatusError",
            Self::Pipeline(_) => "PipelineError",
            Self::Secret { .. } => "SecretError",
        }
    }
}
