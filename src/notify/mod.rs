//! Telling the world outside the cluster what became of a commit: commit statuses on the git
//! host (`statuses.rs`), for pipelines' runs and syncs alike.

pub(crate) mod statuses;
