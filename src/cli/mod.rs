//! Flags and verbs of the `berth` command. Each verb does its work through the library and
//! hands the outcome to [`output`], which formats it; the verb picks the exit code.

mod output;
mod revision;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Mapping, Repository};
use crate::context::Context;
use crate::git::Credentials;
use crate::source;
use crate::sync::{self, Mode, Report};
use crate::telemetry::LogFormat;
use crate::{agent, cleanup, cluster, diff, pipelines};

/// berth: GitOps for Kubernetes from one mapping file.
///
/// berth fetches the git repositories a mapping file names and
///   - syncs: renders the plain YAML/JSON under each sync's path and keeps the cluster
///     equal to it with server-side apply, pruning what left git
///     (status: ConfigMap berth-sync-<name>);
///   - pipelines: launches a source repository's Argo Workflow once per new commit
///     (status: berth-pipeline-<name>);
///   - cleanup: deletes old finished runs on cron schedules
///     (status: berth-cleanup-<name>).
///
/// Exit codes, for every verb:
///   0  success
///   1  the work ran and found a failure (a sync failed, `diff` found differences,
///      `validate` found a render problem)
///   2  the work could not start: the command line, the mapping file or the kubeconfig is
///      wrong, or the API server cannot be reached
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    verbatim_doc_comment,
    propagate_version = true,
    after_help = "Examples:
  berth validate                      check berth.yaml and render every sync, offline
  berth diff web-prod                 what a sync would change (exit 1 if anything)
  berth sync --dry-run                plan every sync, write nothing
  berth sync                          apply every sync once
  berth run --listen 0.0.0.0:8080     the agent: polling, webhooks, file events, pipelines, cleanup
  berth trigger web-ci --branch main  launch a pipeline now
  berth cleanup --dry-run             list the runs cleanup rules would delete
  berth status                        syncs, pipelines and cleanup rules as the cluster records them"
)]
pub struct Args {
    /// Mapping file, or a directory of *.yaml mapping files.
    #[arg(
        short,
        long,
        global = true,
        help_heading = "Global options",
        env = "BERTH_CONFIG",
        default_value = "berth.yaml"
    )]
    pub config: PathBuf,
    /// Kubeconfig file (default: in-cluster service account, then $KUBECONFIG, then ~/.kube/config).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "BERTH_KUBECONFIG"
    )]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, global = true, help_heading = "Global options")]
    pub context: Option<String>,
    /// berth's own namespace: status ConfigMaps, Events and credential Secrets live here.
    #[arg(
        short,
        long,
        global = true,
        help_heading = "Global options",
        env = "BERTH_NAMESPACE",
        default_value = "berth-system"
    )]
    pub namespace: String,
    /// Where bare git mirrors are kept between runs [default: $XDG_CACHE_HOME/berth/git,
    /// else ~/.cache/berth/git].
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "BERTH_CACHE_DIR"
    )]
    pub cache_dir: Option<PathBuf>,
    /// Parallel API requests per sync.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "BERTH_CONCURRENCY",
        default_value_t = 32
    )]
    pub concurrency: usize,
    /// The largest manifest file berth reads (bytes); a larger one fails the render with its
    /// name and size, before it is loaded.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "BERTH_MAX_MANIFEST_BYTES",
        default_value_t = 32 * 1024 * 1024
    )]
    pub max_manifest_bytes: u64,
    /// Act as this ServiceAccount (in the sync's or pipeline's namespace) for every sync and
    /// pipeline that names none, as Flux's --default-service-account: RBAC then limits what a
    /// config repository can do. A sync without a namespace is then an error.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "BERTH_DEFAULT_SERVICE_ACCOUNT"
    )]
    pub default_service_account: Option<String>,
    /// Log format (logs go to stderr; filter with RUST_LOG, e.g. RUST_LOG=berth=debug).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "BERTH_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: poll repositories at their interval and sync when the commit changes
    /// (and, with selfHeal, re-apply drift), launch pipelines, fire cleanup rules, receive
    /// webhooks, and apply edits of the mapping file live. Stops cleanly on SIGTERM or Ctrl-C,
    /// after the passes in progress.
    Run {
        /// Address for webhooks (/webhooks/<provider>), /healthz, /readyz and /metrics: the
        /// one to expose to git hosts.
        #[arg(long, env = "BERTH_LISTEN", default_value = "0.0.0.0:8080")]
        listen: std::net::SocketAddr,
        /// Address for operators: the dashboard (/: every sync, pipeline run and cleanup rule,
        /// live) and the webhook delivery log (/deliveries). Keep it private (`kubectl
        /// port-forward`).
        #[arg(long, env = "BERTH_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
        admin_listen: std::net::SocketAddr,
        /// Turns on the dashboard's actions (refresh a repository, trigger a pipeline) for
        /// requests that carry this token (sign in on the page, or `Authorization: Bearer`).
        /// Without it the dashboard is strictly read-only. Prefer the environment variable.
        #[arg(long, env = "BERTH_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// Largest webhook body accepted; larger deliveries get 413.
        #[arg(long, env = "BERTH_MAX_WEBHOOK_BYTES", default_value_t = 5 * 1024 * 1024)]
        max_webhook_bytes: usize,
        /// Elect a leader among replicas with the Lease `berth` in berth's namespace: only the
        /// holder works and reports ready. Use it whenever more than one replica runs.
        #[arg(long, env = "BERTH_LEADER_ELECT")]
        leader_elect: bool,
        /// How long a lease lasts without renewal; a standby takes over within it. The
        /// leader renews every third of it and stops working after two thirds unrenewed.
        #[arg(long, env = "BERTH_LEASE_DURATION", default_value = "15s", value_parser = parse_duration_flag)]
        lease_duration: std::time::Duration,
        /// The dashboard's public address (`https://berth.example.com`). Commit statuses on
        /// the git host link to a run's page under it; without it they carry no link.
        #[arg(long, env = "BERTH_EXTERNAL_URL", value_parser = parse_external_url)]
        external_url: Option<String>,
    },
    /// Run one sync pass now and exit: 0 all synced, 1 a sync failed.
    Sync {
        /// Syncs to run (default: all).
        names: Vec<String>,
        /// Show what would be created, updated and pruned; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show a unified diff of live vs desired state (server-side dry-run based, so API
    /// defaults are not differences). Exit 0 no differences, 1 differences, 2 error.
    #[command(after_help = "Examples:
  berth diff web-prod                       live vs the head of the sync's branch
  berth diff --revision 3f2a9c1             live vs a commit, as a pull request's preview shows it
  berth diff web --revision refs/pull/7/head
  berth diff --revision feature/scale-web   a branch of the syncs' repository")]
    Diff {
        /// Syncs to diff (default: all; with --revision, those of one repository).
        names: Vec<String>,
        /// Diff live state against this commit instead (a sha, a branch, or a ref such as
        /// refs/pull/7/head, fetched first): the plan, what would fail, and each object's diff,
        /// as a pull request's preview shows them. Writes nothing.
        #[arg(long, value_name = "SHA-OR-REF")]
        revision: Option<String>,
    },
    /// Print the manifests a sync would apply, as YAML. Secret values are masked.
    Render {
        /// The sync to render.
        name: String,
        /// Print Secret `data` and `stringData` values as they are.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Show what the cluster records: syncs (revision, status, health, objects, last sync),
    /// pipelines (newest run, phase), cleanup rules (last and next run, deletions) and the
    /// agent's mapping state.
    Status {
        /// `table` (messages cut at 80 characters), `wide` (whole messages), or `json` and
        /// `yaml` for scripts.
        #[arg(short, long, value_enum, default_value_t)]
        output: StatusFormat,
    },
    /// Launch a pipeline now, for the head of a branch or a given commit. A commit that was
    /// launched before gets a second run with a suffixed name. Exit 0 launched, 1 failed.
    Trigger {
        /// The pipeline to launch.
        pipeline: String,
        /// Branch to launch (default: the pipeline's first branch name without globs, else the
        /// repository's branch).
        #[arg(long)]
        branch: Option<String>,
        /// Commit to launch (full or short sha) instead of the branch head; it must be on the
        /// fetched branch's history.
        #[arg(long)]
        revision: Option<String>,
    },
    /// Run cleanup rules now and print the runs they delete. Exit 0 ok, 1 a rule failed or
    /// left runs stuck in deletion.
    Cleanup {
        /// Rules to run (default: all).
        names: Vec<String>,
        /// Print what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the mapping file, render every sync from git and parse every pipeline's workflow
    /// file, without touching the cluster (except to read credential Secrets). Exit 0 valid,
    /// 1 a sync or workflow file has a problem, 2 the mapping itself is invalid.
    #[command(after_help = "Examples:
  berth validate             offline: the mapping, every render, every workflow file
  berth validate --cluster   also read varsFrom sources and SOPS keys, and decrypt every file")]
    Validate {
        /// Also read each sync's inputs from the cluster (its varsFrom ConfigMaps and
        /// Secrets, and its SOPS keys, as the sync's account): list the files a sync cannot
        /// decrypt with the keys it is given, and render with the real variables.
        #[arg(long)]
        cluster: bool,
    },
}

impl Args {
    fn cache_dir(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
                .unwrap_or_else(std::env::temp_dir);
            base.join("berth").join("git")
        })
    }

    fn target(&self) -> cluster::Target<'_> {
        cluster::Target {
            kubeconfig: self.kubeconfig.as_deref(),
            context: self.context.as_deref(),
        }
    }

    /// The context of a one-shot verb, once the API server has answered: a verb that cannot
    /// reach it says so first, naming the server and the cause.
    async fn context(&self) -> Result<Context, crate::Error> {
        let connection = cluster::connect(&self.target(), None).await?;
        cluster::reach(&connection).await?;
        let mut ctx = self.context_with(connection);
        // a person at a terminal sees long work move; a pipe or a log gets only the result
        ctx.progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
        Ok(ctx)
    }

    /// A context working through `connection`.
    fn context_with(&self, connection: cluster::Connection) -> Context {
        let metrics = std::sync::Arc::new(crate::telemetry::Metrics::new());
        Context {
            client: connection.client.clone(),
            identities: std::sync::Arc::new(crate::context::Identities::new(
                connection,
                self.default_service_account.clone(),
            )),
            namespace: self.namespace.clone(),
            cache_dir: self.cache_dir(),
            concurrency: self.concurrency,
            max_manifest_bytes: self.max_manifest_bytes,
            progress: false,
            provider: crate::provider::Client::new(metrics.clone()),
            metrics,
            external_url: None,
            claims: std::sync::Arc::default(),
        }
    }
}

/// An http(s) address without query or fragment; a trailing `/` is dropped.
fn parse_external_url(text: &str) -> Result<String, String> {
    let url = text.trim_end_matches('/');
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match host {
        Some(h) if !h.is_empty() && !url.contains(['?', '#', ' ']) => Ok(url.to_owned()),
        _ => Err("must be an http(s) URL such as https://berth.example.com".to_owned()),
    }
}

fn parse_duration_flag(text: &str) -> Result<std::time::Duration, String> {
    let d = config::parse_duration(text)?;
    if d < std::time::Duration::from_secs(3) {
        return Err("must be at least 3s".to_owned());
    }
    Ok(d)
}

/// How `berth status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StatusFormat {
    /// Tables, messages cut at 80 characters.
    #[default]
    Table,
    /// Tables with whole messages.
    Wide,
    /// One JSON document, for scripts.
    Json,
    /// The same document as YAML.
    Yaml,
}

/// Exit code for usage and configuration errors.
const USAGE: u8 = 2;

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{}", crate::telemetry::error_line(&message.to_string()));
    ExitCode::from(code)
}

/// Writes a verb's output to stdout. A closed pipe (`berth status | head`) is not a failure of
/// the verb, so a write error ends the output quietly.
fn print(write: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>) {
    let mut out = std::io::stdout().lock();
    let _ = write(&mut out).and_then(|()| out.flush());
}

/// Exit 1 when the verb found a failure, else 0.
fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The entry of `list` named `name`, or a usage error listing the known names.
fn find<'a, T>(
    what: &str,
    list: &'a [T],
    name: &str,
    name_of: fn(&T) -> &str,
) -> Result<&'a T, ExitCode> {
    list.iter().find(|t| name_of(t) == name).ok_or_else(|| {
        let known: Vec<&str> = list.iter().map(name_of).collect();
        fail(
            USAGE,
            format!("no {what} named {name:?} (known: {})", known.join(", ")),
        )
    })
}

/// Runs the verb.
pub async fn run(args: Args) -> ExitCode {
    match &args.command {
        Command::Validate { cluster } => return validate(&args, *cluster).await,
        Command::Status { output } => return show_status(&args, *output).await,
        _ => {}
    }
    let mapping = match config::load(&args.config) {
        Ok(m) => m,
        Err(e) => return fail(USAGE, e),
    };
    match &args.command {
        Command::Run {
            listen,
            admin_listen,
            admin_token,
            max_webhook_bytes,
            leader_elect,
            lease_duration,
            external_url,
        } => {
            let fence = leader_elect.then(|| std::sync::Arc::new(cluster::Fence::default()));
            let connected = async {
                // the agent starts even while the API server is away, and retries
                let working = cluster::connect(&args.target(), fence.clone()).await?;
                let mut ctx = args.context_with(working);
                ctx.external_url = external_url.as_deref().map(std::sync::Arc::from);
                let election = match fence {
                    Some(fence) => Some(agent::LeaderElection {
                        duration: *lease_duration,
                        client: cluster::connect(&args.target(), None).await?.client,
                        fence,
                    }),
                    None => None,
                };
                Ok::<_, crate::Error>((ctx, election))
            };
            let (ctx, leader_election) = match connected.await {
                Ok(c) => c,
                Err(e) => return fail(USAGE, e),
            };
            let options = agent::Options {
                config: args.config.clone(),
                listen: *listen,
                admin_listen: *admin_listen,
                admin_token: admin_token.clone().filter(|t| !t.is_empty()),
                max_webhook_bytes: *max_webhook_bytes,
                leader_election,
            };
            match agent::run(ctx, mapping, options, agent::shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(USAGE, format!("cannot listen on {e}")),
            }
        }
        Command::Sync { names, dry_run } => {
            let mode = if *dry_run { Mode::Plan } else { Mode::Apply };
            match passes(&args, &mapping, names, mode).await {
                Ok(reports) => {
                    print(|w| reports.iter().try_for_each(|r| output::report(w, r, mode)));
                    exit(reports.iter().any(Report::failed))
                }
                Err(code) => code,
            }
        }
        Command::Diff { names, revision } => {
            diff(&args, &mapping, names, revision.as_deref()).await
        }
        Command::Render { name, show_secrets } => {
            render(&args, &mapping, name, *show_secrets).await
        }
        Command::Cleanup { names, dry_run } => run_cleanup(&args, &mapping, names, *dry_run).await,
        Command::Trigger {
            pipeline,
            branch,
            revision,
        } => {
            trigger(
                &args,
                &mapping,
                pipeline,
                branch.as_deref(),
                revision.as_deref(),
            )
            .await
        }
        Command::Validate { .. } | Command::Status { .. } => unreachable!("handled above"),
    }
}

/// `berth diff`: live state against the head of each sync's branch, or with a revision, the
/// preview of that commit.
async fn diff(
    args: &Args,
    mapping: &Mapping,
    names: &[String],
    revision: Option<&str>,
) -> ExitCode {
    if let Some(revision) = revision {
        return revision::diff(args, mapping, names, revision).await;
    }
    match passes(args, mapping, names, Mode::Plan).await {
        Ok(reports) => {
            let mut found = output::Diffs::default();
            print(|w| {
                found = output::diffs(w, &mut std::io::stderr(), &reports, diff::colorize)?;
                Ok(())
            });
            if found.failed {
                ExitCode::from(USAGE)
            } else {
                exit(found.differ)
            }
        }
        Err(code) => code,
    }
}

/// Fetches each repository once and runs the selected syncs.
async fn passes(
    args: &Args,
    mapping: &Mapping,
    names: &[String],
    mode: Mode,
) -> Result<Vec<Report>, ExitCode> {
    let syncs = mapping.select_syncs(names).map_err(|e| fail(USAGE, e))?;
    let ctx = args.context().await.map_err(|e| fail(USAGE, e))?;
    // each repository once, then the syncs, each after those it depends on
    let mut fetched = std::collections::HashMap::new();
    for repo in &mapping.repositories {
        if syncs.iter().any(|s| s.repository == repo.name) {
            ctx.progress(&repo.name, &format!("fetching {}", repo.url));
            let head = source::refresh(&ctx, repo, vec![repo.branch.clone()]).await;
            fetched.insert(repo.name.as_str(), (repo, head));
        }
    }
    let mut reports = Vec::new();
    for s in crate::config::dependency_order(&syncs) {
        let Some((repo, head)) = fetched.get(s.repository.as_str()) else {
            continue;
        };
        let report = match head {
            Ok(Some(commit)) => sync::run_once(&ctx, mapping, repo, s, commit, mode).await,
            Ok(None) => unreachable!("the repository's own branch was fetched"),
            Err(e) => sync::record_failure(&ctx, s, e, mode).await,
        };
        reports.push(report);
    }
    Ok(reports)
}

async fn trigger(
    args: &Args,
    mapping: &Mapping,
    name: &str,
    branch: Option<&str>,
    revision: Option<&str>,
) -> ExitCode {
    let pipeline = match find("pipeline", &mapping.pipelines, name, |p| &p.name) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let repo = mapping
        .repository(&pipeline.repository)
        .expect("validated mapping");
    let ctx = match args.context().await {
        Ok(c) => c,
        Err(e) => return fail(USAGE, e),
    };
    let result = pipelines::trigger(&ctx, pipeline, repo, branch, revision).await;
    let namespace = pipeline.namespace.as_deref().unwrap_or(&ctx.namespace);
    match result {
        Ok((branch, launched)) => {
            print(|w| output::launched(w, namespace, &branch, &launched));
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}

async fn run_cleanup(args: &Args, mapping: &Mapping, names: &[String], dry_run: bool) -> ExitCode {
    let mut rules = Vec::new();
    for name in names {
        match find("cleanup rule", &mapping.cleanup, name, |r| &r.name) {
            Ok(r) => rules.push(r),
            Err(code) => return code,
        }
    }
    if names.is_empty() {
        rules = mapping.cleanup.iter().collect();
    }
    let ctx = match args.context().await {
        Ok(c) => c,
        Err(e) => return fail(USAGE, e),
    };
    let mut failed = false;
    for (rule, outcome) in cleanup::run_now(&ctx, &rules, dry_run).await {
        print(|w| output::cleanup_outcome(w, &rule, &outcome, dry_run));
        failed |= !outcome.errors.is_empty() || !outcome.stuck.is_empty();
    }
    exit(failed)
}

async fn render(args: &Args, mapping: &Mapping, name: &str, show_secrets: bool) -> ExitCode {
    let s = match find("sync", &mapping.syncs, name, |s| &s.name) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let repo = mapping
        .repository(&s.repository)
        .expect("validated mapping");
    let cache = args.cache_dir();
    let result = async {
        let mut ctx = None;
        let creds = offline_credentials(args, repo, &mut ctx).await?;
        let commit = source::fetch(&cache, repo, creds).await?;
        // a sync with varsFrom or SOPS files renders with what the cluster holds for it
        let inputs = if s.decryption.is_some() || !s.vars_from.is_empty() {
            let ctx = secrets_context(args, &mut ctx, "varsFrom and decryption").await?;
            source::inputs(ctx, s).await?
        } else {
            source::Inputs {
                vars: s.substitutes().then(|| s.vars.clone()),
                ..source::Inputs::default()
            }
        };
        let inputs = &inputs;
        Ok::<_, crate::Error>(
            source::render(
                &cache,
                args.max_manifest_bytes,
                (repo, s, inputs),
                &commit.id,
            )
            .await?,
        )
    }
    .await;
    match result {
        Ok(rendered) => {
            print(|w| output::manifests(w, &rendered.manifests, show_secrets));
            for r in &rendered.rejected {
                let line = format!("{}: {}: {}", r.origin, r.what, r.reason);
                eprintln!("{}", crate::telemetry::error_line(&line));
            }
            if rendered.rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(USAGE)
            }
        }
        Err(e) => fail(USAGE, e),
    }
}

/// Credentials for verbs that otherwise work without a cluster: the Secret is read only when
/// the repository names one. `ctx` caches the connection across repositories.
async fn offline_credentials(
    args: &Args,
    repo: &Repository,
    ctx: &mut Option<Context>,
) -> Result<Option<Credentials>, crate::Error> {
    let Some(secret) = repo.auth_secret.as_deref() else {
        return Ok(None);
    };
    let ctx = secrets_context(args, ctx, secret).await?;
    Ok(ctx.credentials(Some(secret)).await?)
}

/// The context `berth validate` reads a Secret with, connected on first use; the error says
/// the Secret needs the cluster.
async fn secrets_context<'a>(
    args: &Args,
    ctx: &'a mut Option<Context>,
    secret: &str,
) -> Result<&'a Context, crate::context::Error> {
    if ctx.is_none() {
        *ctx = Some(
            args.context()
                .await
                .map_err(|e| crate::context::Error::Secret {
                    name: secret.to_owned(),
                    message: format!("this Secret is read from the cluster: {e}"),
                })?,
        );
    }
    Ok(ctx.as_ref().expect("set above"))
}

/// `berth validate`'s check of a repository's provider: its token Secret can be read and
/// holds a token (the type and the URL were checked when the mapping loaded).
async fn check_provider(
    args: &Args,
    target: &crate::provider::Target,
    ctx: &mut Option<Context>,
) -> Result<String, String> {
    let secret = target.secret.as_deref().unwrap_or_default();
    let ctx = secrets_context(args, ctx, secret)
        .await
        .map_err(|e| e.to_string())?;
    ctx.provider_token(target)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "{} API at {} (token from Secret {}/{secret})",
        target.kind.as_str(),
        target.base,
        ctx.namespace
    ))
}

/// `berth validate`'s check of a notification: its Secret can be read and holds a `url` (its
/// type, events and globs were checked when the mapping loaded). Never shows the URL.
async fn check_notification(
    args: &Args,
    n: &config::Notification,
    ctx: &mut Option<Context>,
) -> (bool, String) {
    let what = format!("notification {} ({})", n.name, n.kind.as_str());
    let read = match secrets_context(args, ctx, &n.secret_ref).await {
        Ok(ctx) => crate::notify::notifier::sink_secret(ctx, n).await,
        Err(e) => Err(e.to_string()),
    };
    match read {
        Ok((_, secret)) => {
            let events: Vec<&str> = n.on.iter().map(|e| e.as_str()).collect();
            let signed = if secret.is_some() && n.kind == config::SinkKind::Webhook {
                ", signed"
            } else {
                ""
            };
            (
                true,
                format!(
                    "{what}: on {} (URL from Secret {}{signed})",
                    events.join(", "),
                    n.secret_ref
                ),
            )
        }
        Err(e) => (false, format!("{what}: {e}")),
    }
}

/// `berth validate`'s check of a repository's pipelines: each one's workflow file parses at
/// every matching branch head in the mirror.
async fn check_pipelines(
    cache: &Path,
    mapping: &Mapping,
    repo: &Repository,
) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for p in mapping
        .pipelines
        .iter()
        .filter(|p| p.repository == repo.name)
    {
        match pipelines::check(cache, p, repo).await {
            Ok(heads) if heads.is_empty() => {
                out.push((
                    true,
                    format!("pipeline {} (no matching branch yet)", p.name),
                ));
            }
            Ok(heads) => {
                for (branch, short, problem) in heads {
                    out.push(match problem {
                        None => (true, format!("pipeline {} ({branch}@{short})", p.name)),
                        Some(e) => (false, format!("pipeline {} ({branch}): {e}", p.name)),
                    });
                }
            }
            Err(e) => out.push((false, format!("pipeline {}: {e}", p.name))),
        }
    }
    out
}

async fn validate(args: &Args, cluster: bool) -> ExitCode {
    let mapping = match config::load(&args.config) {
        Ok(m) => m,
        Err(e) => return fail(USAGE, e),
    };
    let cache = args.cache_dir();
    let mut ok = true;
    let mut ctx: Option<Context> = None;
    let mut check = |passed: bool, what: String| {
        ok &= passed;
        print(|w| output::check(w, passed, &what));
    };
    // with a default account, every sync needs a namespace to find it in
    if let Some(account) = &args.default_service_account {
        for s in mapping
            .syncs
            .iter()
            .filter(|s| s.namespace.is_none() && s.service_account.is_none())
        {
            check(
                false,
                format!(
                    "sync {}: has no namespace, so it cannot act as the default service account \
                     {account:?}; set its namespace",
                    s.name
                ),
            );
        }
    }
    for n in &mapping.notifications {
        let (passed, what) = check_notification(args, n, &mut ctx).await;
        check(passed, what);
    }
    for repo in &mapping.repositories {
        if let Some(target) = &repo.provider {
            match check_provider(args, target, &mut ctx).await {
                Ok(what) => check(true, format!("repository {}: {what}", repo.name)),
                Err(e) => check(false, format!("repository {}: provider: {e}", repo.name)),
            }
        }
        let fetched = match offline_credentials(args, repo, &mut ctx).await {
            Ok(creds) => {
                source::fetch_branches(&cache, repo, creds, mapping.branches(repo), Vec::new())
                    .await
                    .map_err(crate::Error::from)
            }
            Err(e) => Err(e),
        };
        let head = match fetched {
            Ok(c) => c,
            Err(e) => {
                check(false, format!("repository {}: {e}", repo.name));
                continue;
            }
        };
        for (passed, what) in check_pipelines(&cache, &mapping, repo).await {
            check(passed, what);
        }
        let Some(commit) = head else { continue };
        for s in mapping.syncs.iter().filter(|s| s.repository == repo.name) {
            for (passed, what) in check_sync(args, (repo, s), &commit, cluster, &mut ctx).await {
                check(passed, what);
            }
        }
    }
    if ok {
        print(|w| writeln!(w, "{}: valid", args.config.display()));
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// What `berth validate` finds of one sync at `commit`: its render, and with `cluster` its
/// inputs (varsFrom, SOPS keys) and every file it cannot decrypt. Offline, a sync with
/// `varsFrom` is rendered unsubstituted and its SOPS files are not decrypted (noted).
async fn check_sync(
    args: &Args,
    (repo, s): (&Repository, &crate::config::Sync),
    commit: &crate::git::Commit,
    cluster: bool,
    ctx: &mut Option<Context>,
) -> Vec<(bool, String)> {
    let inputs = if cluster {
        let read = async {
            let ctx = secrets_context(args, ctx, "varsFrom and decryption").await?;
            source::inputs(ctx, s).await.map_err(crate::Error::from)
        };
        match read.await {
            Ok(inputs) => inputs,
            Err(e) => return vec![(false, format!("sync {}: {e}", s.name))],
        }
    } else {
        source::Inputs {
            vars: (s.substitutes() && s.vars_from.is_empty()).then(|| s.vars.clone()),
            ..source::Inputs::default()
        }
    };
    let cache = args.cache_dir();
    let rendered = source::render(
        &cache,
        args.max_manifest_bytes,
        (repo, s, &inputs),
        &commit.id,
    )
    .await;
    let r = match rendered {
        Ok(r) => r,
        Err(e) => return vec![(false, format!("sync {}: {e}", s.name))],
    };
    let mut out = Vec::new();
    for rejected in &r.rejected {
        let offline = !cluster && s.decryption.is_some() && rejected.what.starts_with("SOPS file");
        if offline {
            out.push((
                true,
                format!(
                    "sync {}: {} not decrypted (berth validate --cluster decrypts it)",
                    s.name, rejected.what
                ),
            ));
        } else {
            let problem = format!(
                "{}: {}: {}",
                rejected.origin, rejected.what, rejected.reason
            );
            out.push((false, format!("sync {}: {problem}", s.name)));
        }
    }
    if out.iter().all(|(passed, _)| *passed) {
        out.insert(
            0,
            (
                true,
                format!(
                    "sync {} ({} objects at {})",
                    s.name,
                    r.manifests.len(),
                    commit.short()
                ),
            ),
        );
    }
    out
}

/// `berth status`: reads berth's records from the cluster and prints them joined with the
/// mapping (when it loads).
async fn show_status(args: &Args, format: StatusFormat) -> ExitCode {
    let mapping = config::load(&args.config).ok();
    let ctx = match args.context().await {
        Ok(c) => c,
        Err(e) => return fail(USAGE, e),
    };
    let records = match agent::Records::read(&ctx, mapping.as_ref(), 1).await {
        Ok(r) => r,
        Err(e) => return fail(USAGE, e),
    };
    let doc = records.document(mapping.as_ref());
    print(|w| output::status_document(w, &doc, format));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_is_complete() {
        use clap::CommandFactory as _;
        Args::command().debug_assert();
    }
}
