//! Flags and verbs of the `berth` command; each verb does its work through the library and
//! turns the outcome into output and an exit code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Mapping};
use crate::diff::{self, Action};
use crate::sync::{self, Context, Mode, Report};
use crate::telemetry::LogFormat;
use crate::{agent, cleanup, cluster, pipelines, status};

/// berth: GitOps for Kubernetes from one mapping file.
///
/// berth fetches the git repositories a mapping file names and
///   - syncs: renders the plain YAML/JSON under each sync's path and keeps the cluster equal
///     to it with server-side apply, pruning what left git (status: ConfigMap berth-sync-<name>);
///   - pipelines: launches a source repository's Argo Workflow once per new commit
///     (status: berth-pipeline-<name>);
///   - cleanup: deletes old finished runs on cron schedules (status: berth-cleanup-<name>).
///
/// Exit codes: 0 success, 1 the operation found a failure (or differences, for `diff`),
/// 2 a usage or configuration error.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
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
        env = "BERTH_CONFIG",
        default_value = "berth.yaml"
    )]
    pub config: PathBuf,
    /// Kubeconfig file (default: in-cluster service account, then $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, env = "BERTH_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// berth's own namespace: status ConfigMaps, Events and credential Secrets live here.
    #[arg(
        short,
        long,
        global = true,
        env = "BERTH_NAMESPACE",
        default_value = "berth-system"
    )]
    pub namespace: String,
    /// Where bare git mirrors are kept between runs.
    #[arg(long, global = true, env = "BERTH_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Parallel API requests per sync.
    #[arg(long, global = true, env = "BERTH_CONCURRENCY", default_value_t = 32)]
    pub concurrency: usize,
    /// Log format (logs go to stderr; filter with RUST_LOG, e.g. RUST_LOG=berth=debug).
    #[arg(
        long,
        global = true,
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
        /// Address for webhooks (/webhooks/<provider>), /healthz, /readyz and /metrics.
        #[arg(long, env = "BERTH_LISTEN", default_value = "0.0.0.0:8080")]
        listen: std::net::SocketAddr,
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
    Diff {
        /// Syncs to diff (default: all).
        names: Vec<String>,
    },
    /// Print the manifests a sync would apply, as YAML.
    Render {
        /// The sync to render.
        name: String,
    },
    /// Show what the cluster records: syncs (revision, status, health, objects, last sync),
    /// pipelines (last run, phase) and cleanup rules (last and next run, deletions).
    Status,
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
    /// 1 invalid.
    Validate,
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

    async fn context(&self) -> Result<Context, crate::Error> {
        Ok(Context {
            client: cluster::connect(&self.target()).await?,
            namespace: self.namespace.clone(),
            cache_dir: self.cache_dir(),
            concurrency: self.concurrency,
            metrics: std::sync::Arc::new(crate::telemetry::Metrics::new()),
        })
    }
}

fn parse_duration_flag(text: &str) -> Result<std::time::Duration, String> {
    let d = config::parse_duration(text)?;
    if d < std::time::Duration::from_secs(3) {
        return Err("must be at least 3s".to_owned());
    }
    Ok(d)
}

/// Exit code for usage and configuration errors.
const USAGE: u8 = 2;

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

/// Runs the verb.
pub async fn run(args: Args) -> ExitCode {
    match &args.command {
        Command::Validate => return validate(&args).await,
        Command::Status => return show_status(&args).await,
        _ => {}
    }
    let mapping = match config::load(&args.config) {
        Ok(m) => m,
        Err(e) => return fail(USAGE, e),
    };
    match &args.command {
        Command::Run {
            listen,
            max_webhook_bytes,
            leader_elect,
            lease_duration,
        } => {
            let ctx = match args.context().await {
                Ok(c) => c,
                Err(e) => return fail(USAGE, e),
            };
            let options = agent::Options {
                config: args.config.clone(),
                listen: *listen,
                max_webhook_bytes: *max_webhook_bytes,
                leader_election: leader_elect.then_some(*lease_duration),
            };
            match agent::run(ctx, mapping, options, agent::shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(USAGE, format!("cannot listen on {listen}: {e}")),
            }
        }
        Command::Sync { names, dry_run } => {
            let mode = if *dry_run { Mode::Plan } else { Mode::Apply };
            match passes(&args, &mapping, names, mode).await {
                Ok(reports) => {
                    for r in &reports {
                        print_report(r, mode);
                    }
                    if reports.iter().any(Report::failed) {
                        ExitCode::from(1)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(code) => code,
            }
        }
        Command::Diff { names } => match passes(&args, &mapping, names, Mode::Plan).await {
            Ok(reports) => print_diffs(&reports),
            Err(code) => code,
        },
        Command::Render { name } => render(&args, &mapping, name).await,
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
        Command::Validate | Command::Status => unreachable!("handled above"),
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
    let mut reports = Vec::new();
    for repo in &mapping.repositories {
        let of_repo: Vec<_> = syncs.iter().filter(|s| s.repository == repo.name).collect();
        if of_repo.is_empty() {
            continue;
        }
        let fetched = match sync::credentials(&ctx, repo).await {
            Ok(creds) => sync::fetch(&ctx.cache_dir, repo, creds).await,
            Err(e) => Err(e),
        };
        for s in of_repo {
            let report = match &fetched {
                Ok(commit) => sync::run_once(&ctx, repo, s, commit, mode).await,
                Err(e) => sync::record_failure(&ctx, s, e, mode).await,
            };
            reports.push(report);
        }
    }
    Ok(reports)
}

fn print_report(r: &Report, mode: Mode) {
    let short = &r.revision[..r.revision.len().min(7)];
    let at = if short.is_empty() {
        String::new()
    } else {
        format!(" at {short}")
    };
    if r.failed() {
        let message = r.status_error.as_deref().unwrap_or(&r.message);
        println!("{}: Failed{at}: {message}", r.sync);
        return;
    }
    if mode == Mode::Plan {
        let verb = |a: Action| match a {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
        };
        println!("{}: {}{at} (dry run)", r.sync, r.phase);
        for e in r
            .plan
            .entries
            .iter()
            .filter(|e| e.action != Action::Unchanged)
        {
            println!("  {:<9} {}", verb(e.action), e.id);
        }
        for o in &r.plan.prune {
            println!("  {:<9} {}", "prune", o.id);
        }
        return;
    }
    println!(
        "{}: {}{at} ({}) in {:.1}s",
        r.sync,
        r.phase,
        r.changes.summary(),
        r.duration.as_secs_f64()
    );
}

fn print_diffs(reports: &[Report]) -> ExitCode {
    let mut differ = false;
    let mut failed = false;
    for r in reports {
        if r.failed() {
            eprintln!("error: {}: {}", r.sync, r.message);
            failed = true;
            continue;
        }
        for e in r
            .plan
            .entries
            .iter()
            .filter(|e| e.action != Action::Unchanged)
        {
            differ = true;
            let desired = e.predicted.as_ref().unwrap_or(&e.manifest.object);
            print!(
                "{}",
                diff::colorize(&diff::entry_diff(&e.id, e.live.as_ref(), Some(desired)))
            );
        }
        for o in &r.plan.prune {
            differ = true;
            print!(
                "{}",
                diff::colorize(&diff::entry_diff(&o.id, o.live.as_ref(), None))
            );
        }
    }
    if failed {
        ExitCode::from(USAGE)
    } else if differ {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

async fn trigger(
    args: &Args,
    mapping: &Mapping,
    name: &str,
    branch: Option<&str>,
    revision: Option<&str>,
) -> ExitCode {
    let Some(pipeline) = mapping.pipelines.iter().find(|p| p.name == name) else {
        let known: Vec<_> = mapping.pipelines.iter().map(|p| p.name.as_str()).collect();
        return fail(
            USAGE,
            format!("no pipeline named {name:?} (known: {})", known.join(", ")),
        );
    };
    let repo = mapping
        .repository(&pipeline.repository)
        .expect("validated mapping");
    let branch = branch.map_or_else(|| pipelines::default_branch(pipeline, repo), str::to_owned);
    let ctx = match args.context().await {
        Ok(c) => c,
        Err(e) => return fail(USAGE, e),
    };
    let result = async {
        let creds = sync::credentials(&ctx, repo).await?;
        sync::fetch_branches(&ctx.cache_dir, repo, creds, vec![branch.clone()]).await?;
        let commit = pipelines::resolve(&ctx.cache_dir, repo, &branch, revision).await?;
        Ok::<_, crate::Error>(
            pipelines::launch_commit(&ctx, pipeline, repo, &branch, &commit, true).await?,
        )
    }
    .await;
    let namespace = pipeline.namespace.as_deref().unwrap_or(&ctx.namespace);
    match result {
        Ok(pipelines::Launched::Created { name, queued }) => {
            let queued = if queued {
                " (queued behind a running run)"
            } else {
                ""
            };
            println!("launched {namespace}/{name} for {branch}{queued}");
            ExitCode::SUCCESS
        }
        Ok(pipelines::Launched::Existed { name }) => {
            println!("{namespace}/{name} exists already");
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}

async fn run_cleanup(args: &Args, mapping: &Mapping, names: &[String], dry_run: bool) -> ExitCode {
    let mut rules = Vec::new();
    for name in names {
        match mapping.cleanup.iter().find(|r| &r.name == name) {
            Some(r) => rules.push(r),
            None => {
                let known: Vec<_> = mapping.cleanup.iter().map(|r| r.name.as_str()).collect();
                return fail(
                    USAGE,
                    format!(
                        "no cleanup rule named {name:?} (known: {})",
                        known.join(", ")
                    ),
                );
            }
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
        let verb = if dry_run { "would delete" } else { "deleted" };
        for line in &outcome.deleted {
            println!("{rule}: {verb} {line}");
        }
        for line in &outcome.stuck {
            println!("{rule}: stuck in deletion {line}");
        }
        for line in &outcome.errors {
            println!("{rule}: error: {line}");
        }
        println!("{rule}: {}", cleanup::summary(&outcome, dry_run));
        failed |= !outcome.errors.is_empty() || !outcome.stuck.is_empty();
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

async fn render(args: &Args, mapping: &Mapping, name: &str) -> ExitCode {
    let Some(s) = mapping.syncs.iter().find(|s| s.name == name) else {
        let known: Vec<_> = mapping.syncs.iter().map(|s| s.name.as_str()).collect();
        return fail(
            USAGE,
            format!("no sync named {name:?} (known: {})", known.join(", ")),
        );
    };
    let repo = mapping
        .repository(&s.repository)
        .expect("validated mapping");
    let cache = args.cache_dir();
    let result = async {
        let creds = offline_credentials(args, repo, &mut None).await?;
        let commit = sync::fetch(&cache, repo, creds).await?;
        sync::render(&cache, repo, s, &commit.id).await
    }
    .await;
    match result {
        Ok(manifests) => {
            for m in manifests {
                let yaml =
                    serde_saphyr::to_string(&m.object).unwrap_or_else(|_| m.object.to_string());
                print!("---\n# Source: {}\n{yaml}", m.origin());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(USAGE, e),
    }
}

/// Credentials for verbs that otherwise work without a cluster: the Secret is read only when
/// the repository names one. `ctx` caches the connection across repositories.
async fn offline_credentials(
    args: &Args,
    repo: &crate::config::Repository,
    ctx: &mut Option<Context>,
) -> Result<Option<crate::git::Credentials>, crate::Error> {
    if repo.auth_secret.is_none() {
        return Ok(None);
    }
    if ctx.is_none() {
        let secret = repo.auth_secret.as_deref().unwrap_or_default();
        *ctx = Some(args.context().await.map_err(|e| crate::Error::Secret {
            name: secret.to_owned(),
            message: format!("credentials come from this Secret, which needs the cluster: {e}"),
        })?);
    }
    let ctx = ctx.as_ref().expect("set above");
    sync::credentials(ctx, repo).await
}

async fn validate(args: &Args) -> ExitCode {
    let mapping = match config::load(&args.config) {
        Ok(m) => m,
        Err(e) => return fail(1, e),
    };
    let cache = args.cache_dir();
    let mut ok = true;
    let mut ctx: Option<Context> = None;
    for repo in &mapping.repositories {
        let fetched = match offline_credentials(args, repo, &mut ctx).await {
            Ok(creds) => sync::fetch_branches(&cache, repo, creds, mapping.branches(repo)).await,
            Err(e) => Err(e),
        };
        let head = match fetched {
            Ok(c) => c,
            Err(e) => {
                println!("error  repository {}: {e}", repo.name);
                ok = false;
                continue;
            }
        };
        for p in mapping
            .pipelines
            .iter()
            .filter(|p| p.repository == repo.name)
        {
            match pipelines::check(&cache, p, repo).await {
                Ok(heads) if heads.is_empty() => {
                    println!("ok     pipeline {} (no matching branch yet)", p.name);
                }
                Ok(heads) => {
                    for (branch, short, problem) in heads {
                        match problem {
                            None => println!("ok     pipeline {} ({branch}@{short})", p.name),
                            Some(e) => {
                                println!("error  pipeline {} ({branch}): {e}", p.name);
                                ok = false;
                            }
                        }
                    }
                }
                Err(e) => {
                    println!("error  pipeline {}: {e}", p.name);
                    ok = false;
                }
            }
        }
        let Some(commit) = head else { continue };
        for s in mapping.syncs.iter().filter(|s| s.repository == repo.name) {
            match sync::render(&cache, repo, s, &commit.id).await {
                Ok(m) => println!(
                    "ok     sync {} ({} objects at {})",
                    s.name,
                    m.len(),
                    commit.short()
                ),
                Err(e) => {
                    println!("error  sync {}: {e}", s.name);
                    ok = false;
                }
            }
        }
    }
    if ok {
        println!("{}: valid", args.config.display());
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn show_status(args: &Args) -> ExitCode {
    let mapping = config::load(&args.config).ok();
    let ctx = match args.context().await {
        Ok(c) => c,
        Err(e) => return fail(USAGE, e),
    };
    let statuses = match status::list(&ctx.client, &ctx.namespace).await {
        Ok(s) => s,
        Err(e) => return fail(USAGE, e),
    };
    let mut rows: BTreeMap<String, (String, Option<&status::SyncStatus>)> = BTreeMap::new();
    if let Some(m) = &mapping {
        for s in &m.syncs {
            rows.insert(
                s.name.clone(),
                (s.repository.clone(), statuses.get(&s.name)),
            );
        }
    }
    for (name, st) in &statuses {
        rows.entry(name.clone())
            .or_insert_with(|| (String::new(), Some(st)));
    }
    let mut table = vec![[
        "SYNC".to_owned(),
        "REVISION".to_owned(),
        "STATUS".to_owned(),
        "HEALTH".to_owned(),
        "OBJECTS".to_owned(),
        "LAST SYNC".to_owned(),
        "MESSAGE".to_owned(),
    ]];
    for (name, (repo, st)) in rows {
        let revision = st
            .map(|s| s.revision[..s.revision.len().min(7)].to_owned())
            .unwrap_or_default();
        let at = if repo.is_empty() {
            revision
        } else {
            format!("{repo}@{revision}")
        };
        table.push(match st {
            Some(s) => [
                name,
                at,
                s.phase.to_string(),
                s.health.to_string(),
                s.inventory.len().to_string(),
                s.last_sync.clone(),
                s.message.chars().take(80).collect(),
            ],
            None => [
                name,
                at,
                "Unknown".into(),
                "Unknown".into(),
                "0".into(),
                "never".into(),
                "not synced yet".into(),
            ],
        });
    }
    print!("{}", format_table(&table));

    let states = match pipelines::list_states(&ctx.client, &ctx.namespace).await {
        Ok(s) => s,
        Err(e) => return fail(USAGE, e),
    };
    let mut names: Vec<(String, String)> = mapping
        .iter()
        .flat_map(|m| {
            m.pipelines
                .iter()
                .map(|p| (p.name.clone(), p.repository.clone()))
        })
        .collect();
    for name in states.keys() {
        if !names.iter().any(|(n, _)| n == name) {
            names.push((name.clone(), String::new()));
        }
    }
    if !names.is_empty() {
        print_pipelines(&names, &states);
    }

    let rules = match cleanup::list_states(&ctx.client, &ctx.namespace).await {
        Ok(s) => s,
        Err(e) => return fail(USAGE, status::api_message(&e)),
    };
    let mut rule_names: Vec<(String, String, String)> = mapping
        .iter()
        .flat_map(|m| {
            m.cleanup
                .iter()
                .map(|r| (r.name.clone(), r.schedule.clone(), r.timezone.clone()))
        })
        .collect();
    for name in rules.keys() {
        if !rule_names.iter().any(|(n, _, _)| n == name) {
            rule_names.push((name.clone(), String::new(), String::new()));
        }
    }
    if !rule_names.is_empty() {
        let mut table = vec![[
            "CLEANUP".to_owned(),
            "SCHEDULE".to_owned(),
            "LAST RUN".to_owned(),
            "NEXT RUN".to_owned(),
            "DELETED".to_owned(),
            "STUCK".to_owned(),
            "MESSAGE".to_owned(),
        ]];
        for (name, schedule, tz) in rule_names {
            let state = rules.get(&name).cloned().unwrap_or_default();
            let next = match (
                cleanup::parse_schedule(&schedule),
                jiff::tz::TimeZone::get(&tz),
            ) {
                (Ok(cron), Ok(tz)) => {
                    cleanup::due(jiff::Timestamp::now(), &cron, &tz, state.last_run)
                        .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
                        .unwrap_or_default()
                }
                _ => String::new(),
            };
            table.push([
                name,
                schedule,
                state
                    .last_run
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "never".into()),
                next,
                state.last.deleted.len().to_string(),
                state.last.stuck.len().to_string(),
                state.message.chars().take(80).collect(),
            ]);
        }
        println!();
        print!("{}", format_table(&table));
    }
    ExitCode::SUCCESS
}

fn print_pipelines(names: &[(String, String)], states: &BTreeMap<String, pipelines::State>) {
    let mut table = vec![[
        "PIPELINE".to_owned(),
        "REPOSITORY".to_owned(),
        "LAST RUN".to_owned(),
        "BRANCH@REVISION".to_owned(),
        "PHASE".to_owned(),
        "STARTED".to_owned(),
        "FINISHED".to_owned(),
        "MESSAGE".to_owned(),
    ]];
    for (name, repo) in names {
        let state = states.get(name).cloned().unwrap_or_default();
        let run = state.runs.first().cloned().unwrap_or_default();
        let at = if run.name.is_empty() {
            String::new()
        } else {
            format!(
                "{}@{}",
                run.branch,
                &run.revision[..run.revision.len().min(7)]
            )
        };
        let phase = match (run.name.is_empty(), run.phase.is_empty()) {
            (true, _) => "-".to_owned(),
            (false, true) => "Pending".to_owned(),
            (false, false) => run.phase.clone(),
        };
        table.push([
            name.clone(),
            repo.clone(),
            run.name,
            at,
            phase,
            run.started,
            run.finished,
            state.message.chars().take(80).collect(),
        ]);
    }
    println!();
    print!("{}", format_table(&table));
}

/// Left-aligned columns separated by three spaces, like kubectl's tables.
fn format_table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = [
            ["SYNC".to_owned(), "STATUS".to_owned()],
            ["web-prod".to_owned(), "Synced".to_owned()],
        ];
        assert_eq!(
            format_table(&rows),
            "SYNC       STATUS\nweb-prod   Synced\n"
        );
    }

    #[test]
    fn help_is_complete() {
        use clap::CommandFactory as _;
        Args::command().debug_assert();
    }
}
