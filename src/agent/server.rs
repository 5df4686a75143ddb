//! The HTTP listener of `berth run`: webhook receivers (verify, parse, enqueue a refresh), the
//! delivery audit log, `/healthz`, `/readyz` and `/metrics`.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State as Extract};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::shared::{DeliveryRecord, State};
use crate::config::Repository;
use crate::pipelines::branch_matches;
use crate::store;
use crate::telemetry::DeliveryLabels;
use crate::webhook::{self, Kind};

/// Unverified webhook bodies held in memory at once; more wait their turn before their body
/// is read, so unsigned floods cannot drive memory up.
const BODIES_IN_FLIGHT: usize = 4;
/// How long a delivery waits for the webhook secrets at start.
const SECRETS_PATIENCE: Duration = Duration::from_secs(5);

/// Serves the public listener (`/webhooks/*`, probes, metrics) and the admin listener (the
/// `operators` routes: the dashboard and the delivery log) until `stop` flips.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    admin: tokio::net::TcpListener,
    operators: Router<State>,
    state: State,
    stop: CancellationToken,
) {
    let limit = state.max_webhook_bytes;
    let webhooks = Router::new()
        .route("/webhooks/{provider}", post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower::limit::ConcurrencyLimitLayer::new(BODIES_IN_FLIGHT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_too_large,
        ));
    let public = webhooks
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    let operators = operators.with_state(state);
    tokio::join!(
        run(listener, public, stop.clone()),
        run(admin, operators, stop)
    );
}

async fn run(listener: tokio::net::TcpListener, app: Router, stop: CancellationToken) {
    let shutdown = async move {
        stop.cancelled().await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        warn!(error = %e, "HTTP server stopped");
    }
}

/// Counts deliveries the body limit refused (413), which never reach [`receive`].
async fn count_too_large(
    Extract(state): Extract<State>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let provider = request
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        count(&state, &provider, "too-large");
        warn!(provider = %provider_label(&provider), "webhook delivery too large");
    }
    response
}

/// A provider name for metric labels: known ones as they are, anything else `unknown`, so
/// random paths cannot grow the label set.
fn provider_label(provider: &str) -> &str {
    if webhook::PROVIDERS.contains(&provider) {
        provider
    } else {
        "unknown"
    }
}

fn count(state: &State, provider: &str, result: &str) {
    state
        .ctx
        .metrics
        .webhook_deliveries
        .get_or_create(&DeliveryLabels {
            provider: provider_label(provider).to_owned(),
            result: result.to_owned(),
        })
        .inc();
}

async fn healthz(Extract(state): Extract<State>) -> Response {
    match state.shared.failed_task() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(how) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("an agent task failed: {how}\n"),
        )
            .into_response(),
    }
}

async fn ready(Extract(state): Extract<State>) -> Response {
    if !state.shared.is_leading() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "standby: another replica holds the lease\n",
        )
            .into_response();
    }
    if state.shared.secrets(Duration::ZERO).await.is_none() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "webhook secrets not loaded yet\n",
        )
            .into_response();
    }
    let reachable =
        tokio::time::timeout(Duration::from_secs(2), state.ctx.client.apiserver_version()).await;
    match reachable {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("API server unreachable: {e}\n"),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "API server did not answer within 2s\n",
        )
            .into_response(),
    }
}

async fn metrics(Extract(state): Extract<State>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.ctx.metrics.encode(),
    )
        .into_response()
}

/// The outcome of a delivery: status, result label, action text (for the delivery log),
/// the answer's text (for the sender) and matched repositories.
struct Verdict {
    status: StatusCode,
    result: &'static str,
    action: String,
    answer: String,
    matched: Vec<String>,
}

impl Verdict {
    fn new(status: StatusCode, result: &'static str, action: impl Into<String>) -> Self {
        let action = action.into();
        Self {
            status,
            result,
            answer: action.clone(),
            action,
            matched: Vec::new(),
        }
    }

    /// The same, but the sender learns only `answer`: nothing internal reaches the internet.
    fn private(mut self, answer: &str) -> Self {
        self.answer = answer.to_owned();
        self
    }
}

async fn receive(
    Extract(state): Extract<State>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !webhook::PROVIDERS.contains(&provider.as_str()) {
        // unknown paths are counted, never logged as deliveries
        count(&state, &provider, "unknown-provider");
        let text = format!(
            "unknown provider; use one of {}",
            webhook::PROVIDERS.join(", ")
        );
        return (StatusCode::NOT_FOUND, Json(json!({"action": text}))).into_response();
    }
    let headers: webhook::Headers = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned())))
        .collect();
    let (verdict, parsed) = judge(&state, &provider, &headers, &body).await;
    let record = DeliveryRecord {
        id: parsed.as_ref().map(|d| d.id.clone()).unwrap_or_default(),
        provider: provider.clone(),
        event: parsed.as_ref().map(|d| d.event.clone()).unwrap_or_default(),
        received: store::now(),
        repositories: parsed
            .as_ref()
            .map(|d| d.repositories.clone())
            .unwrap_or_default(),
        branch: parsed.as_ref().and_then(|d| d.branch.clone()),
        commit: parsed.as_ref().and_then(|d| d.commit.clone()),
        matched: verdict.matched.clone(),
        action: verdict.action.clone(),
        status: verdict.status.as_u16(),
    };
    info!(
        delivery = %record.id,
        provider = %record.provider,
        repository = %record.repositories.first().map_or("", String::as_str),
        branch = %record.branch.as_deref().unwrap_or_default(),
        commit = %record.commit.as_deref().unwrap_or_default(),
        matched = %record.matched.join(","),
        action = %record.action,
        status = record.status,
        "webhook delivery"
    );
    count(&state, &provider, verdict.result);
    state.shared.record(record);
    (
        verdict.status,
        Json(json!({"action": verdict.answer, "matched": verdict.matched})),
    )
        .into_response()
}

/// Verifies, then parses and acts on a delivery for a known provider. Nothing of an
/// unverified body is parsed.
async fn judge(
    state: &State,
    provider: &str,
    headers: &webhook::Headers,
    body: &[u8],
) -> (Verdict, Option<webhook::Delivery>) {
    let Some(secrets) = state.shared.secrets(SECRETS_PATIENCE).await else {
        let verdict = Verdict::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "webhook secrets are not loaded yet; retry",
        );
        return (verdict, None);
    };
    let mapping = state.shared.mapping();
    // the repositories whose own secret verifies the body
    let verified: Vec<&Repository> = mapping
        .repositories
        .iter()
        .filter(|r| {
            r.webhook_secret
                .as_ref()
                .and_then(|name| secrets.get(name))
                .is_some_and(|secret| webhook::verify(provider, headers, body, secret))
        })
        .collect();
    let ping = webhook::is_ping(provider, headers);
    if verified.is_empty() {
        let (status, result) = if ping {
            (StatusCode::OK, "ping")
        } else {
            (StatusCode::UNAUTHORIZED, "unauthorized")
        };
        let answer = if ping {
            "pong; the signature does not verify with the secret of any repository"
        } else {
            "the signature does not verify"
        };
        let unsigned: Vec<&str> = mapping
            .repositories
            .iter()
            .filter(|r| r.webhook_secret.is_none())
            .map(|r| r.name.as_str())
            .collect();
        let action = format!(
            "refused: no repository's webhook secret verifies the signature{}",
            if unsigned.is_empty() {
                String::new()
            } else {
                format!(" (without webhookSecretRef: {})", unsigned.join(", "))
            }
        );
        return (Verdict::new(status, result, action).private(answer), None);
    }
    let delivery = match webhook::parse(provider, headers, body) {
        Ok(d) => d,
        Err(e) => {
            return (
                Verdict::new(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
                None,
            );
        }
    };
    if state.shared.replayed(provider, &delivery.id) {
        let verdict = Verdict::new(
            StatusCode::OK,
            "duplicate",
            format!("ignored: delivery {} was handled already", delivery.id),
        );
        return (verdict, Some(delivery));
    }
    let case_insensitive = provider != "generic";
    let matched: Vec<&Repository> = verified
        .iter()
        .filter(|r| r.url.matches(&delivery.repositories, case_insensitive))
        .copied()
        .collect();
    let names =
        |repos: &[&Repository]| -> Vec<String> { repos.iter().map(|r| r.name.clone()).collect() };
    let mut verdict = decide(state, &mapping, &delivery, &matched, &names(&verified));
    verdict.matched = names(&matched);
    (verdict, Some(delivery))
}

/// What a verified, parsed delivery does.
fn decide(
    state: &State,
    mapping: &crate::config::Mapping,
    d: &webhook::Delivery,
    matched: &[&Repository],
    verified: &[String],
) -> Verdict {
    if d.kind == Kind::Ping {
        let text = if matched.is_empty() {
            format!(
                "pong; the signature verifies for {}, but no repository in the mapping has this \
                 delivery's URL",
                verified.join(", ")
            )
        } else {
            let names: Vec<&str> = matched.iter().map(|r| r.name.as_str()).collect();
            format!("pong; signature verified; matches {}", names.join(", "))
        };
        return Verdict::new(StatusCode::OK, "ping", text);
    }
    if matched.is_empty() {
        return Verdict::new(
            StatusCode::OK,
            "ignored",
            "ignored: no repository in the mapping matches",
        );
    }
    match d.kind {
        Kind::Tag => {
            let follows = |r: &Repository| {
                mapping.pipelines.iter().any(|p| {
                    p.repository == r.name && d.tags.iter().any(|t| branch_matches(&p.tags, t))
                })
            };
            wake(
                state,
                matched,
                follows,
                "ignored: no pipeline launches this tag",
            )
        }
        Kind::PullRequest => {
            let Some(event) = &d.pull_request else {
                return Verdict::new(StatusCode::OK, "ignored", "ignored: no pull request");
            };
            let follows = |r: &Repository| follows_pull_request(mapping, r, &event.pull.base);
            let verdict = wake(
                state,
                matched,
                |r| {
                    let wanted = follows(r);
                    if wanted {
                        state.shared.pull_request(&r.name, event.clone());
                    }
                    wanted
                },
                "ignored: no pipeline builds pull requests into this branch, and no sync previews them",
            );
            if verdict.status == StatusCode::ACCEPTED {
                Verdict {
                    action: format!(
                        "pull request #{} {}: {}",
                        event.pull.number, event.action, verdict.action
                    ),
                    ..verdict
                }
            } else {
                verdict
            }
        }
        Kind::Delete => Verdict::new(StatusCode::OK, "ignored", "ignored: branch or tag deleted"),
        Kind::Other | Kind::Ping => Verdict::new(
            StatusCode::OK,
            "ignored",
            format!("ignored: event {:?}", d.event),
        ),
        Kind::Push => {
            let follows = |r: &Repository| {
                let wanted = mapping.branches(r);
                d.branches.is_empty() || d.branches.iter().any(|b| branch_matches(&wanted, b))
            };
            wake(
                state,
                matched,
                follows,
                "ignored: no sync or pipeline follows this branch",
            )
        }
    }
}

/// Wakes the matched repositories that `follows` the delivery (it may hand them more first).
fn wake(
    state: &State,
    matched: &[&Repository],
    mut follows: impl FnMut(&Repository) -> bool,
    ignored: &'static str,
) -> Verdict {
    let followed: Vec<&Repository> = matched.iter().copied().filter(|r| follows(r)).collect();
    if followed.is_empty() {
        return Verdict::new(StatusCode::OK, "ignored", ignored);
    }
    for r in &followed {
        state.shared.refresh(&r.name);
    }
    let names: Vec<&str> = followed.iter().map(|r| r.name.as_str()).collect();
    Verdict::new(
        StatusCode::ACCEPTED,
        "accepted",
        format!("refresh {}", names.join(", ")),
    )
}

/// Whether a repository takes pull requests into `base`: a pipeline builds them, or its syncs
/// are previewed on pull requests into its branch (either needs its provider).
fn follows_pull_request(mapping: &crate::config::Mapping, r: &Repository, base: &str) -> bool {
    let built = mapping.pipelines.iter().any(|p| {
        p.repository == r.name
            && p.pull_requests
                .as_ref()
                .is_some_and(|prs| branch_matches(&prs.branches, base))
    });
    let previewed = base == r.branch && mapping.previewed(&r.name).next().is_some();
    r.provider.is_some() && (built || previewed)
}
