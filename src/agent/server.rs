//! The HTTP listener of `berth run`: webhook receivers (verify, parse, enqueue a refresh), the
//! delivery audit log, `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State as Extract};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use k8s_openapi::api::core::v1::Secret;
use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn};

use super::shared::{DeliveryRecord, Shared};
use crate::cluster::api_message;
use crate::config::Repository;
use crate::context::Context;
use crate::pipelines::branch_matches;
use crate::store;
use crate::telemetry::DeliveryLabels;
use crate::webhook::{self, Kind};

/// What the handlers share.
#[derive(Clone)]
pub(super) struct State {
    pub shared: Arc<Shared>,
    pub ctx: Context,
    pub max_webhook_bytes: usize,
}

/// Serves until `stop` flips.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    state: State,
    mut stop: watch::Receiver<bool>,
) {
    let limit = state.max_webhook_bytes;
    let app = Router::new()
        .route("/webhooks/deliveries", get(deliveries))
        .route("/webhooks/{provider}", post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state);
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        warn!(error = %e, "HTTP server stopped");
    }
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

async fn deliveries(Extract(state): Extract<State>) -> Json<Vec<DeliveryRecord>> {
    Json(
        state
            .shared
            .deliveries
            .lock()
            .expect("delivery lock")
            .iter()
            .cloned()
            .collect(),
    )
}

/// The outcome of a delivery: status, result label, action text, matched repositories.
struct Verdict {
    status: StatusCode,
    result: &'static str,
    action: String,
    matched: Vec<String>,
}

impl Verdict {
    fn new(status: StatusCode, result: &'static str, action: impl Into<String>) -> Self {
        Self {
            status,
            result,
            action: action.into(),
            matched: Vec::new(),
        }
    }
}

async fn receive(
    Extract(state): Extract<State>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers: webhook::Headers = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned())))
        .collect();
    let parsed = webhook::parse(&provider, &headers, &body);
    let verdict = match &parsed {
        Err(webhook::Error::UnknownProvider(_)) => Verdict::new(
            StatusCode::NOT_FOUND,
            "unknown-provider",
            format!(
                "unknown provider {provider:?}; use one of {}",
                webhook::PROVIDERS.join(", ")
            ),
        ),
        Err(e) => Verdict::new(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
        Ok(d) if d.kind == Kind::Ping => Verdict::new(StatusCode::OK, "ping", "pong"),
        Ok(d) => decide(&state, d, &headers, &body).await,
    };
    let record = DeliveryRecord {
        id: parsed.as_ref().map(|d| d.id.clone()).unwrap_or_default(),
        provider: provider.clone(),
        event: parsed.as_ref().map(|d| d.event.clone()).unwrap_or_default(),
        received: store::now(),
        repositories: parsed
            .as_ref()
            .map(|d| d.repositories.clone())
            .unwrap_or_default(),
        branch: parsed.as_ref().ok().and_then(|d| d.branch.clone()),
        commit: parsed.as_ref().ok().and_then(|d| d.commit.clone()),
        matched: verdict.matched.clone(),
        action: verdict.action.clone(),
        status: verdict.status.as_u16(),
    };
    info!(
        delivery = %record.id,
        provider = %record.provider,
        repository = ?record.repositories.first(),
        branch = ?record.branch,
        commit = ?record.commit,
        matched = ?record.matched,
        action = %record.action,
        status = record.status,
        "webhook delivery"
    );
    if verdict.result != "unknown-provider" {
        state
            .ctx
            .metrics
            .webhook_deliveries
            .get_or_create(&DeliveryLabels {
                provider: provider.clone(),
                result: verdict.result.to_owned(),
            })
            .inc();
    }
    state.shared.record(record);
    (
        verdict.status,
        Json(json!({"action": verdict.action, "matched": verdict.matched})),
    )
        .into_response()
}

/// Matches, verifies and enqueues a parsed push delivery.
async fn decide(
    state: &State,
    d: &webhook::Delivery,
    headers: &webhook::Headers,
    body: &[u8],
) -> Verdict {
    let mapping = state.shared.mapping();
    let candidates: Vec<&Repository> = mapping
        .repositories
        .iter()
        .filter(|r| r.url.matches(&d.repositories))
        .collect();
    if candidates.is_empty() {
        return Verdict::new(
            StatusCode::OK,
            "ignored",
            "ignored: no repository in the mapping matches",
        );
    }
    // only repositories whose own secret verifies the signature count
    let mut verified = Vec::new();
    let mut reasons = Vec::new();
    for repo in candidates {
        let Some(secret_name) = &repo.webhook_secret else {
            reasons.push(format!("repository {} has no webhookSecretRef", repo.name));
            continue;
        };
        match webhook_secret(&state.ctx, secret_name).await {
            Ok(secret) if webhook::verify(&d.provider, headers, body, &secret) => {
                verified.push(repo)
            }
            Ok(_) => reasons.push(format!(
                "signature does not verify for repository {}",
                repo.name
            )),
            Err(e) => reasons.push(e),
        }
    }
    if verified.is_empty() {
        return Verdict::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("refused: {}", reasons.join("; ")),
        );
    }
    let matched: Vec<String> = verified.iter().map(|r| r.name.clone()).collect();
    let mut verdict = match d.kind {
        Kind::Tag => Verdict::new(StatusCode::OK, "ignored", "ignored: tag push"),
        Kind::Delete => Verdict::new(StatusCode::OK, "ignored", "ignored: branch or tag deleted"),
        Kind::Other | Kind::Ping => Verdict::new(
            StatusCode::OK,
            "ignored",
            format!("ignored: event {:?}", d.event),
        ),
        Kind::Push => {
            let followed: Vec<&&Repository> = verified
                .iter()
                .filter(|r| {
                    d.branch
                        .as_ref()
                        .is_none_or(|b| branch_matches(&mapping.branches(r), b))
                })
                .collect();
            if followed.is_empty() {
                Verdict::new(
                    StatusCode::OK,
                    "ignored",
                    "ignored: no sync or pipeline follows this branch",
                )
            } else {
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
        }
    };
    verdict.matched = matched;
    verdict
}

/// The `secret` key of a webhook Secret in berth's namespace.
async fn webhook_secret(ctx: &Context, name: &str) -> Result<Vec<u8>, String> {
    let api: kube::Api<Secret> = kube::Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let secret = api
        .get(name)
        .await
        .map_err(|e| format!("cannot read secret {name}: {}", api_message(&e)))?;
    secret
        .data
        .and_then(|d| d.get("secret").map(|v| v.0.clone()))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("secret {name} has no key \"secret\""))
}
