//! Pull request previews: what a pull request into a config repository's branch would do to
//! the live cluster, told on the pull request. Each repository's loop offers its open pull
//! requests; one task per mapping generation previews them on its own queue, a few at a time
//! and never two of one pull request at once, so a preview never delays a sync.
//!
//! A preview is a plan-only pass of each sync the pull request changes, at its head, as the
//! sync's own account (server-side dry-runs: nothing is written to the cluster). It posts one
//! comment per pull request, found again by [`comment::MARKER`] after a restart and edited on
//! every push, and a `berth/preview/<sync>` status on the head. [`Board`] keeps the previews for
//! the dashboard, a day past their pull request's close.

pub(crate) mod comment;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Mapping, Repository};
use crate::context::Context;
use crate::git::Commit;
use crate::pipelines::PullRequests;
use crate::provider::{self, PullRequest};
use crate::sync::{self, Mode};
use crate::telemetry::PreviewLabels;
use crate::{source, store};

use comment::{Preview, SyncPreview};

/// How many pull requests are previewed at once.
const AT_ONCE: usize = 2;
/// How long a closed pull request's preview stays on the dashboard.
const KEEP_CLOSED: Duration = Duration::from_secs(24 * 3600);

/// A pull request, by its repository's name and its number.
type Key = (String, u64);

/// The previews the dashboard shows, by pull request.
#[derive(Debug, Default)]
pub(crate) struct Board(Mutex<BTreeMap<Key, Posted>>);

#[derive(Debug, Clone)]
struct Posted {
    preview: Preview,
    /// When its pull request was seen closed.
    closed: Option<Instant>,
}

impl Board {
    fn put(&self, preview: Preview) {
        let mut held = self.0.lock().expect("board lock");
        let key = (preview.repository.clone(), preview.number);
        held.insert(
            key,
            Posted {
                preview,
                closed: None,
            },
        );
    }

    fn close(&self, key: &Key, now: Instant) {
        let mut held = self.0.lock().expect("board lock");
        if let Some(p) = held.get_mut(key) {
            p.closed.get_or_insert(now);
        }
        held.retain(|_, p| {
            p.closed
                .is_none_or(|at| now.duration_since(at) < KEEP_CLOSED)
        });
    }

    /// The preview of a pull request, while the dashboard keeps it.
    pub(crate) fn get(&self, repository: &str, number: u64) -> Option<(Preview, bool)> {
        let held = self.0.lock().expect("board lock");
        let p = held.get(&(repository.to_owned(), number))?;
        let expired = p.closed.is_some_and(|at| at.elapsed() >= KEEP_CLOSED);
        (!expired).then(|| (p.preview.clone(), p.closed.is_some()))
    }

    /// Every preview kept, with whether its pull request closed.
    pub(crate) fn list(&self) -> Vec<(Preview, bool)> {
        let held = self.0.lock().expect("board lock");
        held.values()
            .filter(|p| p.closed.is_none_or(|at| at.elapsed() < KEEP_CLOSED))
            .map(|p| (p.preview.clone(), p.closed.is_some()))
            .collect()
    }
}

/// What a repository's loop hands the previews.
#[derive(Debug)]
enum Offer {
    /// The open pull requests into the repository's branch, and those known closed.
    Pulls {
        repo: Box<Repository>,
        open: Vec<PullRequest>,
        closed: Vec<u64>,
    },
}

/// The previews' queue: repository loops offer pull requests, its task previews them.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    offers: mpsc::UnboundedSender<Offer>,
}

impl Queue {
    /// Starts the previews' task for this mapping generation (it ends with `stop`).
    pub(crate) fn start(
        ctx: &Context,
        mapping: Arc<Mapping>,
        board: Arc<Board>,
        stop: &CancellationToken,
        set: &mut tokio::task::JoinSet<()>,
    ) -> Self {
        let (offers, rx) = mpsc::unbounded_channel();
        // its own context: a preview's claims never hold up a sync passing at the same time
        let mut own = ctx.clone();
        own.claims = Arc::default();
        own.progress = false;
        let stop = stop.clone();
        set.spawn(async move { work(own, mapping, board, rx, stop).await });
        Self { offers }
    }

    /// Offers what a repository's pass knows of its pull requests; returns at once.
    pub(crate) fn offer(&self, repo: &Repository, pulls: &PullRequests) {
        let open: Vec<PullRequest> = pulls.targeting(&repo.branch).cloned().collect();
        let closed = pulls.closed.iter().copied().collect();
        let _ = self.offers.send(Offer::Pulls {
            repo: Box::new(repo.clone()),
            open,
            closed,
        });
    }
}

/// What the previews remember of a pull request between its pushes.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// The head and base commits last previewed and told.
    told: Option<(String, String)>,
    /// berth's comment on it, once found or posted.
    comment: Option<provider::Comment>,
}

/// The previews' task: takes offers, previews the pull requests whose head or base moved,
/// [`AT_ONCE`] at a time, one at a time per pull request.
async fn work(
    ctx: Context,
    mapping: Arc<Mapping>,
    board: Arc<Board>,
    mut offers: mpsc::UnboundedReceiver<Offer>,
    stop: CancellationToken,
) {
    let mut seen: HashMap<Key, Seen> = HashMap::new();
    let mut pending: BTreeMap<Key, (Repository, PullRequest)> = BTreeMap::new();
    let mut running: BTreeSet<Key> = BTreeSet::new();
    let mut offered: HashMap<String, BTreeSet<u64>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        while tasks.len() < AT_ONCE {
            let Some(key) = pending.keys().find(|k| !running.contains(*k)).cloned() else {
                break;
            };
            let (repo, pull) = pending.remove(&key).expect("found");
            let memory = seen.remove(&key).unwrap_or_default();
            running.insert(key.clone());
            let (ctx, mapping, board) = (ctx.clone(), mapping.clone(), board.clone());
            tasks.spawn(async move {
                let memory = preview(&ctx, &mapping, &board, &repo, &pull, memory).await;
                (key, memory)
            });
        }
        tokio::select! {
            () = stop.cancelled() => break,
            Some(done) = tasks.join_next() => {
                if let Ok((key, memory)) = done {
                    running.remove(&key);
                    seen.insert(key, memory);
                }
            }
            offer = offers.recv() => {
                let Some(Offer::Pulls { repo, open, closed }) = offer else { break };
                let known = offered.entry(repo.name.clone()).or_default();
                let now: BTreeSet<u64> = open.iter().map(|p| p.number).collect();
                for n in closed.iter().copied().chain(known.difference(&now).copied()) {
                    let key = (repo.name.clone(), n);
                    board.close(&key, Instant::now());
                    seen.remove(&key);
                    pending.remove(&key);
                }
                *known = now;
                for pull in open {
                    pending.insert((repo.name.clone(), pull.number), ((*repo).clone(), pull));
                }
            }
        }
    }
    // a preview under way finishes: its comment is never left half told
    while tasks.join_next().await.is_some() {}
}

/// Previews one pull request when its head or its base moved since it was last told, and tells
/// it. Returns what to remember of it; a preview that could not be told is tried again on the
/// next offer.
async fn preview(
    ctx: &Context,
    mapping: &Mapping,
    board: &Board,
    repo: &Repository,
    pull: &PullRequest,
    mut memory: Seen,
) -> Seen {
    let Some(target) = &repo.provider else {
        return memory;
    };
    let api = target.kind.api();
    let at = (&ctx.cache_dir, repo);
    let found = source::pull_request(at.0, at.1, api.head_ref(pull.number), &pull.head_branch);
    let (head, base) = match found.await {
        Ok(found) => found,
        // not fetched yet: the next pass has it
        Err(e) => {
            tracing::debug!(number = pull.number, error = %e, "pull request head not in the mirror");
            return memory;
        }
    };
    let now = (head.id.clone(), base.id.clone());
    if memory.told.as_ref() == Some(&now) {
        return memory;
    }
    let changed = match source::changed_since(at.0, at.1, &base.id, &head.id).await {
        Ok(changed) => changed,
        Err(e) => {
            warn!(number = pull.number, error = %e, "cannot tell what the pull request changes");
            return memory;
        }
    };
    let syncs: Vec<&crate::config::Sync> = mapping
        .previewed(&repo.name)
        .filter(|s| changed.iter().any(|p| source::touches(s, p)))
        .collect();
    let count = |result: &str| {
        let labels = PreviewLabels {
            repository: repo.name.clone(),
            result: result.to_owned(),
        };
        ctx.metrics.previews.get_or_create(&labels).inc();
    };
    if syncs.is_empty() && memory.comment.is_none() {
        // touches no previewed sync: nothing is told
        memory.told = Some(now);
        count("untouched");
        return memory;
    }
    let made = make(ctx, mapping, repo, pull.number, &head, &syncs).await;
    board.put(made.clone());
    match tell(ctx, target, pull.number, &made, memory.comment.take()).await {
        Ok(comment) => {
            memory.comment = Some(comment);
            memory.told = Some(now);
            count("told");
            info!(repository = %repo.name, number = pull.number, head = %head.short(), syncs = syncs.len(), "previewed");
        }
        Err((comment, e)) => {
            memory.comment = comment;
            count("failed");
            warn!(repository = %repo.name, number = pull.number, error = %e, "cannot tell the preview; trying again on the next pass");
        }
    }
    memory
}

/// The preview of `syncs` at `head`: a plan-only pass of each, as its own account.
pub(crate) async fn make(
    ctx: &Context,
    mapping: &Mapping,
    repo: &Repository,
    number: u64,
    head: &Commit,
    syncs: &[&crate::config::Sync],
) -> Preview {
    let mut previews = Vec::new();
    for s in syncs {
        let report = sync::run_once(ctx, mapping, repo, s, head, Mode::Plan).await;
        previews.push(SyncPreview::of(&report));
    }
    Preview {
        repository: repo.name.clone(),
        number,
        head: head.id.clone(),
        at: store::now(),
        syncs: previews,
    }
}

/// Posts each sync's status on the head, then the comment (an edit of the one berth posted
/// before, found by its marker when not remembered). Returns the comment; on failure, the
/// comment known so far with the error.
async fn tell(
    ctx: &Context,
    target: &provider::Target,
    number: u64,
    made: &Preview,
    known: Option<provider::Comment>,
) -> Result<provider::Comment, (Option<provider::Comment>, provider::Error)> {
    let api = target.kind.api();
    let token = match ctx.provider_token(target).await {
        Ok(t) => t,
        Err(e) => return Err((known, e)),
    };
    let link = made.link(ctx.external_url.as_deref());
    for s in &made.syncs {
        let status = comment::status(s, link.clone());
        let call = api.status(target, &made.head, &status);
        if let Err(e) = ctx.provider.send_retrying(target, &token, &call, 3).await {
            return Err((known, e));
        }
    }
    let existing = match known {
        Some(c) => Some(c),
        None => match ctx
            .provider
            .find_comment(target, &token, number, comment::MARKER)
            .await
        {
            Ok(found) => found,
            Err(e) => return Err((None, e)),
        },
    };
    let text = comment::comment(made, link.as_deref(), api.comment_limit());
    if let Some(c) = existing.as_ref().filter(|c| c.body == text) {
        return Ok(c.clone());
    }
    ctx.provider
        .put_comment(target, &token, number, existing.as_ref(), &text)
        .await
        .map_err(|e| {
            // deleted by hand: the next try finds none and posts a new one
            let gone = matches!(e, provider::Error::Answer { code: 404, .. });
            (existing.filter(|_| !gone), e)
        })
}
