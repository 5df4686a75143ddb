//! The dashboard on the admin listener: gathers what the pages show (status records, runs,
//! Events, the diff against git, pod logs) and serves the pages of [`crate::ui`], a live feed
//! (server-sent events) that moves whenever berth's records, a pipeline's Workflows, a pass or a
//! delivery change, and, with `--admin-token`, two actions: refresh a repository and trigger a
//! pipeline. Every asset is in the binary.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt as _, watcher};
use maud::Markup;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::records::{Records, current_diff, node_logs, subjects, sync_events};
use super::shared::{Shared, State};
use crate::context::Context;
use crate::ui::graph;
use crate::ui::html::{Section, page};
use crate::ui::pages::{self, Logs, ObjectRow, Problem};
use crate::ui::status::AgentState;
use crate::{pipelines, vocab};

const STYLE: &str = include_str!("../ui/berth.css");
const SCRIPT: &str = include_str!("../ui/berth.js");
/// The cookie that carries the admin token once signed in.
const COOKIE: &str = "berth_admin";
/// How many runs per pipeline the overview lists.
const RUNS_SHOWN: usize = 5;

/// The dashboard's routes, to merge into the admin listener.
pub(super) fn routes() -> Router<State> {
    Router::new()
        .route("/", get(overview))
        .route("/deliveries", get(deliveries))
        .route("/previews", get(previews))
        .route("/previews/{repository}/{number}", get(preview_page))
        .route("/syncs/{name}", get(sync_page))
        .route("/pipelines/{name}/runs/{run}", get(run_page))
        .route("/live", get(live))
        .route("/assets/berth.css", get(style))
        .route("/assets/berth.js", get(script))
        .route("/sign-in", post(sign_in))
        .route("/actions/repositories/{name}/refresh", post(refresh))
        .route("/actions/pipelines/{name}/trigger", post(trigger))
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct PageQuery {
    /// Only the page's `main`, for the live update.
    fragment: Option<String>,
    /// The selected node of a run.
    node: Option<String>,
}

/// A page, whole or (for the live update) only its `main`.
fn respond(title: &str, section: Section, main: Markup, q: &PageQuery) -> Response {
    let body = if q.fragment.is_some() {
        main.into_string()
    } else {
        page(title, section, &main).into_string()
    };
    let mut r = Html(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A whole page that answers a request with `status`: why it could not be done.
fn problem(status: StatusCode, title: &str, what: &Problem<'_>) -> Response {
    let main = pages::problem(what);
    (
        status,
        Html(page(title, Section::Overview, &main).into_string()),
    )
        .into_response()
}

/// [`problem`] with the error in an alert under `heading`.
fn alert(status: StatusCode, title: &str, heading: &str, error: &str) -> Response {
    problem(status, title, &Problem::Failed { heading, error })
}

fn not_found(what: &str) -> Response {
    problem(StatusCode::NOT_FOUND, "not found", &Problem::NotFound(what))
}

/// Whether the request carries the admin token (cookie or bearer); never without one set.
fn authorized(state: &State, headers: &HeaderMap) -> bool {
    let Some(token) = &state.admin_token else {
        return false;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned());
    [bearer, cookie]
        .into_iter()
        .flatten()
        .any(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())))
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    alert(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "The API server could not be read",
        &e.to_string(),
    )
}

async fn overview(
    Extract(state): Extract<State>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let mapping = state.shared.mapping();
    let records = match Records::read(&state.ctx, Some(&mapping), RUNS_SHOWN).await {
        Ok(r) => r,
        Err(e) => return unavailable(e),
    };
    let mut doc = records.document(Some(&mapping));
    // before any reload the agent has recorded nothing: say what this process holds
    if doc.agent.is_none() {
        let error = state
            .shared
            .config_error
            .read()
            .expect("config error lock")
            .clone();
        doc.agent = Some(AgentState {
            mapping: if error.is_some() { "Invalid" } else { "Valid" }.to_owned(),
            message: error.unwrap_or_else(|| {
                let count = |n: usize, one: &str, many: &str| {
                    format!("{n} {}", if n == 1 { one } else { many })
                };
                format!(
                    "{}, {}, {}, {}; {}",
                    count(mapping.repositories.len(), "repository", "repositories"),
                    count(mapping.syncs.len(), "sync", "syncs"),
                    count(mapping.pipelines.len(), "pipeline", "pipelines"),
                    count(mapping.cleanup.len(), "cleanup rule", "cleanup rules"),
                    if state.shared.is_leading() {
                        "this replica works"
                    } else {
                        "this replica stands by"
                    }
                )
            }),
            changed: "start".to_owned(),
        });
    }
    let revisions: Vec<(String, String)> = doc
        .syncs
        .iter()
        .map(|r| (r.repository.clone(), r.revision.clone()))
        .collect();
    let subjects = subjects(&state.ctx, &state.shared, &mapping, &revisions).await;
    let repositories: Vec<String> = mapping
        .repositories
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let main = pages::overview(&pages::Overview {
        status: &doc,
        subjects: &subjects,
        runs: &records.runs,
        repositories: &repositories,
        actions: authorized(&state, &headers),
        sign_in: state.admin_token.is_some(),
        now: jiff::Timestamp::now(),
    });
    respond("Overview", Section::Overview, main, &q)
}

async fn sync_page(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let mapping = state.shared.mapping();
    let records = match Records::read(&state.ctx, Some(&mapping), 0).await {
        Ok(r) => r,
        Err(e) => return unavailable(e),
    };
    let doc = records.document(Some(&mapping));
    let Some(row) = doc.syncs.iter().find(|r| r.name == name) else {
        return not_found(&format!("There is no sync {name:?}."));
    };
    let activity = state.shared.activity(&name);
    let objects: Vec<ObjectRow> = records
        .syncs
        .get(&name)
        .map(|s| {
            s.inventory
                .iter()
                .map(|(id, record)| ObjectRow {
                    kind: id.kind.clone(),
                    namespace: id.namespace.clone(),
                    name: id.name.clone(),
                    health: record.health.to_string(),
                    action: activity
                        .actions
                        .get(&id.to_string())
                        .copied()
                        .unwrap_or("unchanged")
                        .to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    let (head, diff) = current_diff(&state.ctx, &state.shared, &mapping, &name).await;
    let events = sync_events(&state.ctx, &name).await;
    let subject = subjects(
        &state.ctx,
        &state.shared,
        &mapping,
        &[(row.repository.clone(), row.revision.clone())],
    )
    .await
    .remove(&row.revision)
    .unwrap_or_default();
    let passes: Vec<_> = activity.passes.iter().cloned().collect();
    let main = pages::sync(&pages::SyncPage {
        row,
        subject: &subject,
        objects: &objects,
        diff: &diff,
        head: &head,
        passes: &passes,
        events: &events,
        actions: authorized(&state, &headers),
    });
    respond(&format!("sync {name}"), Section::Overview, main, &q)
}

async fn run_page(
    Extract(state): Extract<State>,
    Path((pipeline, run)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Response {
    let mapping = state.shared.mapping();
    let Some(p) = mapping.pipelines.iter().find(|p| p.name == pipeline) else {
        return not_found(&format!("There is no pipeline {pipeline:?}."));
    };
    let namespace = p.namespace.as_deref().unwrap_or(&state.ctx.namespace);
    let api = pipelines::workflows(&state.ctx.client, namespace);
    let workflow: DynamicObject = match api.get_opt(&run).await {
        Ok(Some(w)) => w,
        Ok(None) => {
            return not_found(&format!(
                "There is no run {run:?} of pipeline {pipeline:?}."
            ));
        }
        Err(e) => return unavailable(e),
    };
    let object = serde_json::to_value(&workflow).expect("objects serialize");
    let nodes = graph::nodes(&object);
    let selected = q
        .node
        .as_deref()
        .filter(|id| nodes.iter().any(|n| n.id == *id));
    // logs are read as the pipeline's account, like everything else it does
    let logs = match selected.and_then(|id| nodes.iter().find(|n| n.id == id)) {
        None => Logs::None,
        Some(node) => match pipelines::client_for(&state.ctx, p) {
            Ok((client, _)) => node_logs(&client, namespace, &run, node).await,
            Err(e) => Logs::Note(format!("The pipeline's account cannot be used: {e}")),
        },
    };
    let main = pages::run(&pages::RunPage {
        pipeline: &pipeline,
        namespace,
        run: &pipelines::run_of(&object),
        message: object["status"]["message"].as_str().unwrap_or_default(),
        nodes: &nodes,
        selected,
        logs: &logs,
        now: jiff::Timestamp::now(),
    });
    respond(&format!("run {run}"), Section::Overview, main, &q)
}

/// The delivery log: a page for a browser (which asks for HTML), JSON for everything else.
/// The pull requests previewed.
async fn previews(
    Extract(state): Extract<State>,
    axum::extract::Query(q): axum::extract::Query<PageQuery>,
) -> Response {
    let main = crate::ui::previews::list(&state.shared.previews.list());
    respond("previews", Section::Previews, main, &q)
}

/// One pull request's preview, while the dashboard keeps it.
async fn preview_page(
    Extract(state): Extract<State>,
    Path((repository, number)): Path<(String, u64)>,
    axum::extract::Query(q): axum::extract::Query<PageQuery>,
) -> Response {
    match state.shared.previews.get(&repository, number) {
        Some((p, closed)) => {
            let main = crate::ui::previews::preview(&p, closed);
            respond(
                &format!("{repository} #{number}"),
                Section::Previews,
                main,
                &q,
            )
        }
        None => not_found(&format!(
            "No preview of pull request #{number} of repository {repository:?} (previews are              kept while berth runs, and for a day after their pull request closes)."
        )),
    }
}

async fn deliveries(
    Extract(state): Extract<State>,
    axum::extract::Query(q): axum::extract::Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if html {
        return deliveries_page(&state.shared, &q);
    }
    axum::Json(state.shared.delivery_log()).into_response()
}

/// The delivery log as a page.
fn deliveries_page(shared: &Shared, q: &PageQuery) -> Response {
    respond(
        "Deliveries",
        Section::Deliveries,
        pages::deliveries(&shared.delivery_log()),
        q,
    )
}

/// Server-sent events: a message whenever something the pages show may have changed (at most
/// every 200 ms); the page then fetches its `main` again.
async fn live(
    Extract(state): Extract<State>,
) -> Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>> {
    let changes = state.shared.changes();
    // the stream ends when the server stops, so a page left open never holds up a shutdown
    let start = (changes, state.stop.clone(), true);
    let stream = futures::stream::unfold(start, |(mut rx, stop, first)| async move {
        if !first {
            tokio::select! {
                changed = rx.changed() => changed.ok()?,
                () = stop.cancelled() => return None,
            }
            // changes in a burst (a pass writes several records) make one update
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let version = *rx.borrow_and_update();
        let event = SseEvent::default().data(version.to_string());
        Some((Ok(event), (rx, stop, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

fn form_field(body: &[u8], key: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Exchanges the admin token from the sign-in form for a cookie.
async fn sign_in(Extract(state): Extract<State>, body: Bytes) -> Response {
    let Some(token) = state.admin_token.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let given = form_field(&body, "token").unwrap_or_default();
    if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        return problem(StatusCode::UNAUTHORIZED, "sign in", &Problem::WrongToken);
    }
    let cookie = format!("{COOKIE}={given}; Path=/; HttpOnly; SameSite=Strict");
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Why an action is refused: no actions without a token (404), none without it (401).
fn refused(state: &State) -> Response {
    if state.admin_token.is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        "this action needs the admin token (sign in on the dashboard, or send Authorization: Bearer)\n",
    )
        .into_response()
}

fn back(headers: &HeaderMap) -> Response {
    let to = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("://").map(|i| &r[i + 3..]))
        .and_then(|rest| rest.find('/').map(|i| rest[i..].to_owned()))
        // a path of this listener only: never `//host`, which a browser reads as another site
        .filter(|path| !path.starts_with("//"))
        .unwrap_or_else(|| "/".to_owned());
    Redirect::to(&to).into_response()
}

/// A request that carries the admin token; any other is refused before its handler runs.
struct Authorized;

impl axum::extract::FromRequestParts<State> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &State,
    ) -> Result<Self, Response> {
        if authorized(state, &parts.headers) {
            Ok(Self)
        } else {
            Err(refused(state))
        }
    }
}

async fn refresh(
    _: Authorized,
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if state.shared.trigger(&name).is_none() {
        return not_found(&format!("There is no repository {name:?}."));
    }
    tracing::info!(repository = %name, "refresh requested on the dashboard");
    state.shared.refresh(&name);
    back(&headers)
}

async fn trigger(
    _: Authorized,
    Extract(state): Extract<State>,
    Path(name): Path<String>,
) -> Response {
    let mapping = state.shared.mapping();
    let Some(p) = mapping.pipelines.iter().find(|p| p.name == name) else {
        return not_found(&format!("There is no pipeline {name:?}."));
    };
    let repo = mapping
        .repository(&p.repository)
        .expect("validated mapping");
    let launched = pipelines::trigger(&state.ctx, p, repo, None, None).await;
    match launched {
        Ok((
            _,
            pipelines::Launched::Created { name: run, .. }
            | pipelines::Launched::Existed { name: run },
        )) => {
            tracing::info!(pipeline = %name, run = %run, "pipeline triggered on the dashboard");
            Redirect::to(&format!(
                "/pipelines/{}/runs/{}",
                crate::ui::html::segment(&name),
                crate::ui::html::segment(&run)
            ))
            .into_response()
        }
        Err(e) => alert(
            StatusCode::BAD_GATEWAY,
            "trigger failed",
            "The pipeline was not triggered",
            &e.to_string(),
        ),
    }
}

/// Moves [`Shared::changed`] whenever berth's records or the pipelines' Workflows change, until
/// `stop`. Metadata-only watches; the set of namespaces follows the mapping.
pub(super) async fn follow(ctx: Context, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let mapping = shared.mapping();
        let records: Api<PartialObjectMeta<ConfigMap>> =
            Api::namespaced(ctx.client.clone(), &ctx.namespace);
        let mut streams = vec![
            watcher::watcher(records, watcher::Config::default())
                .default_backoff()
                .map(|e| e.map(drop))
                .boxed(),
        ];
        let namespaces: std::collections::BTreeSet<String> = mapping
            .pipelines
            .iter()
            .map(|p| p.namespace.clone().unwrap_or_else(|| ctx.namespace.clone()))
            .collect();
        let resource = pipelines::workflow_resource();
        for ns in namespaces {
            let api: Api<PartialObjectMeta<DynamicObject>> =
                Api::namespaced_with(ctx.client.clone(), &ns, &resource);
            let config = watcher::Config::default().labels(vocab::PIPELINE_LABEL);
            streams.push(
                watcher::watcher(api, config)
                    .default_backoff()
                    .map(|e| e.map(drop))
                    .boxed(),
            );
        }
        let mut events = futures::stream::select_all(streams);
        let mut check = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            let stopped = stop.cancelled();
            tokio::select! {
                () = stopped => return,
                _ = check.tick() => {
                    if !Arc::ptr_eq(&mapping, &shared.mapping()) {
                        shared.changed();
                        break;
                    }
                }
                event = events.next() => match event {
                    Some(Ok(())) => shared.changed(),
                    Some(Err(e)) => debug!(error = %e, "dashboard watch"),
                    None => break,
                },
            }
        }
    }
}
