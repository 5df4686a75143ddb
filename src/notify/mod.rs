//! Telling the world outside the cluster: commit statuses on the git host (`statuses.rs`),
//! for pipelines' runs and syncs alike, and notifications to chat, webhooks and Alertmanager
//! (`events.rs` decides what is news, `sinks.rs` what each sink is sent, `notifier.rs`
//! delivers it).

pub(crate) mod events;
pub(crate) mod notifier;
pub(crate) mod sinks;
pub(crate) mod statuses;
