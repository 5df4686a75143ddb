//! Logs: a tracing subscriber writing text or JSON lines to stderr, filtered by `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, fields at the top level.
    Json,
}

/// Installs the global subscriber. `RUST_LOG` filters (default: `info` for berth, `warn` for
/// libraries, nothing from kube-client, whose errors berth reports itself).
pub fn init(format: LogFormat) {
    let _ = FORMAT.set(format);
    let filter = EnvFilter::try_from_default_env()
        // kube-client's own error lines name no object; the same errors reach berth,
        // which reports them with the object
        .unwrap_or_else(|_| EnvFilter::new("warn,berth=info,kube_client=off"));
    // colour only for a person at a terminal, and never with NO_COLOR set
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    // A subscriber may already be set (tests); the first one stays.
    drop(result);
}

/// The log format chosen at start.
static FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// An error that ends a verb, as one line on stderr in the chosen log format: `error: …` as
/// text, or a JSON object with `timestamp`, `level` and `message`, so that a log collector
/// reading JSON never meets a plain line.
pub fn error_line(message: &str) -> String {
    match FORMAT.get().copied().unwrap_or_default() {
        LogFormat::Text => format!("error: {message}"),
        LogFormat::Json => serde_json::json!({
            "timestamp": jiff::Timestamp::now().to_string(),
            "level": "ERROR",
            "message": message,
        })
        .to_string(),
    }
}

// ---- metrics --------------------------------------------------------------------------------

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SyncLabels {
    pub sync: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SyncResult {
    pub sync: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HealthLabels {
    pub sync: String,
    pub health: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RepositoryLabels {
    pub repository: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PreviewLabels {
    pub repository: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DeliveryLabels {
    pub provider: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PipelineResult {
    pub pipeline: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct NotificationLabels {
    pub notification: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RuleLabels {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabels {
    pub result: String,
}

fn duration_histogram() -> Histogram {
    // 5 ms … ~82 s
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Every metric berth exports at `/metrics`. Labels stay bounded: sync, repository, pipeline
/// and rule names come from the mapping; object names never appear.
pub(crate) struct Metrics {
    pub registry: Registry,
    pub syncs: Family<SyncResult, Counter>,
    pub sync_duration: Family<SyncLabels, Histogram, fn() -> Histogram>,
    pub objects_applied: Family<SyncLabels, Counter>,
    pub objects_pruned: Family<SyncLabels, Counter>,
    pub objects_adopted: Family<SyncLabels, Counter>,
    pub sync_health: Family<HealthLabels, Gauge>,
    pub fetch_duration: Family<RepositoryLabels, Histogram, fn() -> Histogram>,
    pub watched_objects: Family<RepositoryLabels, Gauge>,
    pub webhook_deliveries: Family<DeliveryLabels, Counter>,
    pub pipeline_launches: Family<PipelineResult, Counter>,
    pub cleanup_deletions: Family<RuleLabels, Counter>,
    pub config_reloads: Family<ResultLabels, Counter>,
    pub provider_requests: Family<DeliveryLabels, Counter>,
    pub previews: Family<PreviewLabels, Counter>,
    pub notifications: Family<NotificationLabels, Counter>,
    pub refreshes: Refreshes,
}

/// Wake-ups asked of a repository's loop (webhooks, file events, dashboard actions), and how
/// many of them finished passes have served: a pass serves every request made before it
/// started. While the two differ a pass is due; when they are equal, nothing asked is pending.
#[derive(Clone, Debug, Default)]
pub(crate) struct Refreshes {
    pub requested: Family<RepositoryLabels, Counter>,
    pub served: Family<RepositoryLabels, Counter>,
}

impl Refreshes {
    fn register(r: &mut Registry) -> Self {
        Self {
            requested: register(
                r,
                "refresh_requests",
                "Wake-ups asked of a repository's loop by webhooks, file events and dashboard actions",
                Family::default(),
            ),
            served: register(
                r,
                "refresh_requests_served",
                "Of those, how many finished passes have served (a pass serves every request made before it started)",
                Family::default(),
            ),
        }
    }

    fn label(repository: &str) -> RepositoryLabels {
        RepositoryLabels {
            repository: repository.to_owned(),
        }
    }

    /// Counts a request; returns how many there have been.
    pub(crate) fn request(&self, repository: &str) -> u64 {
        self.requested.get_or_create(&Self::label(repository)).inc() + 1
    }

    /// How many requests there have been so far.
    pub(crate) fn requested(&self, repository: &str) -> u64 {
        self.requested.get_or_create(&Self::label(repository)).get()
    }

    /// Notes that a pass which started after `requested` requests has finished.
    pub(crate) fn served(&self, repository: &str, requested: u64) {
        let served = self.served.get_or_create(&Self::label(repository));
        let now = served.get();
        if requested > now {
            served.inc_by(requested - now);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers a metric and hands back a handle to it.
fn register<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

/// A family of duration histograms (5 ms … ~82 s).
fn durations<L>() -> Family<L, Histogram, fn() -> Histogram>
where
    L: Clone + std::hash::Hash + Eq,
{
    Family::new_with_constructor(duration_histogram)
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let r = &mut registry;
        Self {
            syncs: register(
                r,
                "syncs",
                "Sync passes by sync and result (synced, failed)",
                Family::default(),
            ),
            sync_duration: register(
                r,
                "sync_duration_seconds",
                "Duration of sync passes",
                durations(),
            ),
            objects_applied: register(
                r,
                "objects_applied",
                "Objects created or updated by server-side apply",
                Family::default(),
            ),
            objects_adopted: register(
                r,
                "objects_adopted",
                "Live objects berth did not manage, taken over by a sync",
                Family::default(),
            ),
            objects_pruned: register(
                r,
                "objects_pruned",
                "Objects deleted because they left git",
                Family::default(),
            ),
            sync_health: register(
                r,
                "sync_health",
                "1 for a sync's current health (Healthy, Progressing, Degraded, Unknown), 0 for the others",
                Family::default(),
            ),
            fetch_duration: register(
                r,
                "git_fetch_duration_seconds",
                "Duration of git fetches (its count is the number of fetches)",
                durations(),
            ),
            watched_objects: register(
                r,
                "watched_objects",
                "Managed objects the drift watches of a repository's syncs have seen",
                Family::default(),
            ),
            webhook_deliveries: register(
                r,
                "webhook_deliveries",
                "Webhook deliveries by provider and result (accepted, ignored, unauthorized, invalid, ping)",
                Family::default(),
            ),
            pipeline_launches: register(
                r,
                "pipeline_launches",
                "Pipeline launches by pipeline and result (launched, failed)",
                Family::default(),
            ),
            cleanup_deletions: register(
                r,
                "cleanup_deletions",
                "Pipeline runs deleted by cleanup rules",
                Family::default(),
            ),
            config_reloads: register(
                r,
                "config_reloads",
                "Mapping reloads after a file change, by result (applied, invalid)",
                Family::default(),
            ),
            provider_requests: register(
                r,
                "provider_requests",
                "Requests to git hosts' APIs by provider and result (ok, client-error, server-error, network-error)",
                Family::default(),
            ),
            previews: register(
                r,
                "previews",
                "Pull request heads previewed, by repository and result (told, untouched: the pull request changes no previewed sync, failed: the host could not be told)",
                Family::default(),
            ),
            notifications: register(
                r,
                "notifications",
                "Notification deliveries by notification and result (delivered, failed)",
                Family::default(),
            ),
            refreshes: Refreshes::register(r),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_with_labels() {
        let m = Metrics::new();
        m.syncs
            .get_or_create(&SyncResult {
                sync: "web".into(),
                result: "synced".into(),
            })
            .inc();
        m.fetch_duration
            .get_or_create(&RepositoryLabels {
                repository: "config".into(),
            })
            .observe(0.02);
        let text = m.encode();
        assert!(
            text.contains("berth_syncs_total{sync=\"web\",result=\"synced\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("berth_git_fetch_duration_seconds_count{repository=\"config\"} 1"),
            "{text}"
        );
    }
}
