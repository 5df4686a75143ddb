//! Shared scaffolding for integration tests: the local control plane (or the cluster
//! `KUBECONFIG` names), real git repositories in temp dirs, and the `berth` binary.

#![allow(
    dead_code,
    reason = "each test binary and bench uses a different part of this shared module"
)]

pub mod browser;
pub mod forge;
pub mod receiver;
pub mod sops;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Runs `tests/control-plane.sh ARGS` (with `BERTH_WATCH_PID` set when `watch`), returning
/// its output; it fails the test when the script does.
fn control_plane(args: &[&std::ffi::OsStr], watch: bool) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/control-plane.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).args(args);
    if watch {
        cmd.env("BERTH_WATCH_PID", std::process::id().to_string());
    }
    let out = cmd.output().expect("control-plane.sh runs");
    assert!(
        out.status.success(),
        "control-plane.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The first line a control-plane.sh command printed.
fn printed(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The kubeconfig of the cluster tests run against. Without `KUBECONFIG`, this starts a local
/// control plane with `tests/control-plane.sh`, which stops it when this test process exits.
pub fn kubeconfig() -> &'static Path {
    static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();
    KUBECONFIG.get_or_init(|| {
        if let Some(path) = std::env::var_os("KUBECONFIG")
            .map(PathBuf::from)
            .filter(|p| p.is_file())
        {
            return path;
        }
        control_plane(&["install".as_ref()], false);
        let dir = tempfile::Builder::new()
            .prefix("berth-cp-")
            .tempdir()
            .expect("tempdir")
            .keep();
        PathBuf::from(printed(&control_plane(
            &["start".as_ref(), dir.as_os_str()],
            true,
        )))
    })
}

/// The version of a component of the test control plane (`kubernetes`, `argo-workflows`,
/// `etcd`, `kwok`), as `tests/control-plane.sh versions` prints it.
pub fn component_version(name: &str) -> String {
    printed(&control_plane(&["versions".as_ref()], false))
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no version of {name}"))
}

/// The source of a Go module (`MODULE@VERSION`) from the module proxy, for tests that sync
/// public manifests as their projects publish them (nothing of them is committed here).
pub fn go_module(module: &str) -> PathBuf {
    PathBuf::from(printed(&control_plane(
        &["module".as_ref(), module.as_ref()],
        false,
    )))
}

/// The kubectl built with the control plane's release (`tests/control-plane.sh kubectl`).
pub fn kubectl() -> PathBuf {
    PathBuf::from(printed(&control_plane(&["kubectl".as_ref()], false)))
}

/// A file of an npm package (`PACKAGE@VERSION`), unpacked and cached by
/// `tests/control-plane.sh npm`: the git hosts' published API descriptions and examples.
pub fn npm_file(spec: &str, file: &str) -> PathBuf {
    let dir = printed(&control_plane(
        &["npm".as_ref(), spec.as_ref(), file.as_ref()],
        false,
    ));
    Path::new(&dir).join(file)
}

/// A Gitea server (`tests/control-plane.sh gitea`: built from its Go module, SQLite, on
/// loopback) with an admin `berth` and its access token; stopped when dropped.
pub struct Gitea {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    pub user: String,
    pub token: String,
    dir: tempfile::TempDir,
}

impl Gitea {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-gitea-")
            .tempdir()
            .expect("tempdir");
        let env = printed(&control_plane(
            &["gitea".as_ref(), dir.path().as_os_str()],
            false,
        ));
        let text = std::fs::read_to_string(&env).expect("gitea.env");
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{key} in {env}"))
                .to_owned()
        };
        Self {
            url: value("GITEA_URL"),
            user: value("GITEA_USER"),
            token: value("GITEA_TOKEN"),
            dir,
        }
    }

    /// Calls Gitea's API (`/api/v1` + `path`) as the admin; returns the status and the body.
    pub fn api(&self, method: &str, path: &str, body: &serde_json::Value) -> (u16, String) {
        let auth = format!("token {}", self.token);
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        http(
            method,
            &format!("{}/api/v1{path}", self.url),
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            &body,
        )
    }

    /// Creates the admin's repository `name`; returns its clone URL.
    pub fn create_repo(&self, name: &str) -> String {
        let (code, body) = self.api(
            "POST",
            "/user/repos",
            &serde_json::json!({"name": name, "default_branch": "main", "private": true}),
        );
        assert_eq!(code, 201, "{body}");
        format!("{}/{}/{name}.git", self.url, self.user)
    }

    /// Pushes `repo`'s main to the admin's repository `name` over HTTP.
    pub fn push(&self, repo: &Repo, name: &str) {
        self.push_ref(repo, name, "main");
    }

    /// Pushes a refspec of `repo` (`feature`, `v1.2.0`, `+feature`) to the admin's repository
    /// `name` over HTTP.
    pub fn push_ref(&self, repo: &Repo, name: &str, refspec: &str) {
        let url = self
            .url
            .replace("http://", &format!("http://{}:{}@", self.user, self.token));
        repo.git(&[
            "push",
            "-q",
            &format!("{url}/{}/{name}.git", self.user),
            refspec,
        ]);
    }

    /// Waits until Gitea's branch `branch` of repository `name` shows `commit`: Gitea handles
    /// a push in a queue, and a push is done (its webhooks decided) once the branch moved.
    pub async fn wait_branch(&self, name: &str, branch: &str, commit: &str) {
        let path = format!("/repos/{}/{name}/branches/{branch}", self.user);
        let moved = eventually(Duration::from_secs(30), || async {
            let (code, body) = self.api("GET", &path, &serde_json::Value::Null);
            (code == 200 && body.contains(commit)).then_some(())
        })
        .await;
        assert!(moved.is_some(), "Gitea did not take the push of {branch}");
    }

    /// Adds a webhook to repository `name` for `events`, signed with `secret`.
    pub fn hook(&self, name: &str, url: &str, secret: &str, events: &[&str]) {
        let (code, body) = self.api(
            "POST",
            &format!("/repos/{}/{name}/hooks", self.user),
            &serde_json::json!({"type": "gitea", "active": true, "events": events,
                "config": {"url": url, "content_type": "json", "secret": secret}}),
        );
        assert_eq!(code, 201, "{body}");
    }

    /// The commit statuses Gitea holds for `sha` in repository `name`, oldest first, as
    /// (context, state, description, target_url).
    pub fn statuses(&self, name: &str, sha: &str) -> Vec<(String, String, String, String)> {
        let (code, body) = self.api(
            "GET",
            &format!(
                "/repos/{}/{name}/commits/{sha}/statuses?limit=50",
                self.user
            ),
            &serde_json::Value::Null,
        );
        assert_eq!(code, 200, "{body}");
        let list: Vec<serde_json::Value> = serde_json::from_str(&body).expect("statuses");
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        let mut out: Vec<(i64, (String, String, String, String))> = list
            .iter()
            .map(|s| {
                (
                    s["id"].as_i64().unwrap_or_default(),
                    (
                        text(&s["context"]),
                        text(&s["status"]),
                        text(&s["description"]),
                        text(&s["target_url"]),
                    ),
                )
            })
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out.into_iter().map(|(_, s)| s).collect()
    }
}

impl Drop for Gitea {
    fn drop(&mut self) {
        control_plane(&["stop".as_ref(), self.dir.path().as_os_str()], false);
    }
}

/// The `/metrics` of `berth run` listening at `base` (empty until it listens).
pub fn metrics(base: &str) -> String {
    if std::net::TcpStream::connect(base.trim_start_matches("http://")).is_err() {
        return String::new();
    }
    http("GET", &format!("{base}/metrics"), &[], b"").1
}

/// How many times `berth run` listening at `base` has fetched `repository`, from its
/// `/metrics` (0 until it listens).
pub fn fetches(base: &str, repository: &str) -> f64 {
    metric(
        &metrics(base),
        &format!("berth_git_fetch_duration_seconds_count{{repository=\"{repository}\"}}"),
    )
}

/// Delivers GitHub's push webhook for `sha` of the repository at `clone_url` to `berth run` at
/// `base`, signed with `secret`; returns the answer's status.
pub fn github_push(base: &str, clone_url: &str, sha: &str, secret: &str) -> u16 {
    let body = serde_json::json!({"ref": "refs/heads/main", "after": sha,
        "repository": {"clone_url": clone_url}})
    .to_string()
    .into_bytes();
    let sig = berth::webhook::sign(secret.as_bytes(), &body);
    http(
        "POST",
        &format!("{base}/webhooks/github"),
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)],
        &body,
    )
    .0
}

/// Delivers a signed Gitea `pull_request` webhook (`synchronized`: a push to open pull request
/// `number` from `head` into main, now at `sha`) to `berth run` at `base`; returns the status.
pub fn gitea_pull_request(
    base: &str,
    clone_url: &str,
    (number, head, sha): (u64, &str, &str),
    secret: &str,
) -> u16 {
    let body = serde_json::json!({"action": "synchronized", "number": number,
        "pull_request": {"number": number, "head": {"ref": head, "sha": sha},
                         "base": {"ref": "main"}},
        "repository": {"clone_url": clone_url}})
    .to_string()
    .into_bytes();
    let signature = berth::webhook::sign(secret.as_bytes(), &body);
    http(
        "POST",
        &format!("{base}/webhooks/gitea"),
        &[
            ("X-Gitea-Event", "pull_request"),
            ("X-Gitea-Signature", signature.trim_start_matches("sha256=")),
        ],
        &body,
    )
    .0
}

/// How many wake-ups of `repository`'s loop `berth run` at `base` has been asked for, and how
/// many of them finished passes have served.
pub fn refreshes(base: &str, repository: &str) -> (f64, f64) {
    let (_, text) = http("GET", &format!("{base}/metrics"), &[], b"");
    let sample = |name: &str| metric(&text, &format!("{name}{{repository=\"{repository}\"}}"));
    (
        sample("berth_refresh_requests_total"),
        sample("berth_refresh_requests_served_total"),
    )
}

/// Waits until every wake-up asked of `repository`'s loop has been served by a finished pass
/// (nothing asked is pending, so no further pass comes of it); returns how many were asked.
pub async fn refreshes_served(base: &str, repository: &str) -> f64 {
    let served = eventually(Duration::from_secs(60), || async {
        let (asked, served) = refreshes(base, repository);
        (asked == served).then_some(asked)
    })
    .await;
    served.unwrap_or_else(|| panic!("a wake-up of {repository} was never served"))
}

/// Waits until `berth run` at `base` has fetched `repository` `n` more times (at least 2): the
/// passes after all but the last of those fetches have completed.
pub async fn more_fetches(base: &str, repository: &str, n: u32) {
    let start = fetches(base, repository);
    let passed = eventually(Duration::from_secs(60), || async {
        (fetches(base, repository) >= start + f64::from(n)).then_some(())
    })
    .await;
    assert!(
        passed.is_some(),
        "berth made no further pass of {repository}"
    );
}

/// A namespaced CustomResourceDefinition `PLURAL.GROUP` of kind `kind`, version `v1`, whose
/// `spec` has the schema `spec` (YAML, in flow style or indented by 14).
pub fn crd_yaml(group: &str, kind: &str, plural: &str, spec: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: {plural}.{group}}}
spec:
  group: {group}
  scope: Namespaced
  names: {{kind: {kind}, plural: {plural}, singular: {singular}, listKind: {kind}List}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {spec}
",
        singular = kind.to_lowercase()
    )
}

/// The Events in a namespace with the given reason: their messages.
pub async fn event_messages(client: &Client, namespace: &str, reason: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), namespace);
    events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.message.unwrap_or_default())
        .collect()
}

/// A client for the test cluster.
pub async fn client() -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig()).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

/// A unique, DNS-safe name with the given prefix.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// Creates a namespace; it is deleted when the returned guard drops.
pub async fn namespace(client: &Client, name: &str) -> NamespaceGuard {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    NamespaceGuard {
        client: client.clone(),
        name: name.to_owned(),
    }
}

pub struct NamespaceGuard {
    client: Client,
    pub name: String,
}

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        let (client, name) = (self.client.clone(), self.name.clone());
        // best effort: the control plane is thrown away after the run anyway
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let api: Api<Namespace> = Api::all(client);
                let _ = api.delete(&name, &DeleteParams::background()).await;
            });
        }
    }
}

/// A child process that is killed and reaped when the guard drops, even if a test panics.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real git repository in a temp dir, driven with the git CLI.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Self { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.email", "test@example.com"]);
        repo.git(&["config", "user.name", "Test"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(self.path())
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Copies the files of `dir` whose names `keep` accepts into `under/`, unchanged.
    pub fn copy_files(&self, dir: &Path, under: &str, keep: impl Fn(&str) -> bool) -> &Self {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| keep(n))
            .collect();
        names.sort();
        assert!(!names.is_empty(), "no files taken from {}", dir.display());
        for name in names {
            let text = std::fs::read_to_string(dir.join(&name)).expect("read");
            self.write(&format!("{under}/{name}"), &text);
        }
        self
    }

    pub fn write(&self, path: &str, content: &str) -> &Self {
        let full = self.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, content).expect("write");
        self
    }

    pub fn remove(&self, path: &str) -> &Self {
        self.git(&["rm", "-q", path]);
        self
    }

    /// Commits everything and returns the full sha.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

/// A mapping file, a berth namespace and a cache dir for running the binary.
pub struct Berth {
    pub namespace: String,
    pub mapping: PathBuf,
    pub cache: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    _work: tempfile::TempDir,
}

impl Berth {
    pub fn new(namespace: &str, mapping: &str) -> Self {
        let work = tempfile::tempdir().expect("tempdir");
        let path = work.path().join("berth.yaml");
        std::fs::write(&path, mapping).expect("write mapping");
        Self {
            namespace: namespace.to_owned(),
            mapping: path,
            cache: tempfile::tempdir().expect("tempdir"),
            env: Vec::new(),
            _work: work,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("--kubeconfig")
            .arg(kubeconfig())
            .arg("--namespace")
            .arg(&self.namespace)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .arg("--config")
            .arg(&self.mapping)
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `berth run` on free loopback ports; returns the process and the base URL.
    pub fn agent(&self) -> (ChildGuard, String) {
        let (child, base, _) = self.agent_with(&[], &[], |_| {});
        (child, base)
    }

    /// Starts `berth GLOBAL run RUN --listen <free port> --admin-listen <free port>`, adjusted
    /// by `configure` (stdio, environment); returns the process, the base URL and the admin
    /// listener's URL.
    pub fn agent_with(
        &self,
        global: &[&str],
        run: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> (ChildGuard, String, String) {
        let listen = free_address();
        let admin = free_address();
        let mut args: Vec<&str> = global.to_vec();
        args.push("run");
        args.extend(run);
        args.extend(["--listen", &listen, "--admin-listen", &admin]);
        let mut cmd = self.command(&args);
        configure(&mut cmd);
        let child = cmd.spawn().expect("berth run starts");
        (
            ChildGuard(child),
            format!("http://{listen}"),
            format!("http://{admin}"),
        )
    }

    /// Runs a one-shot verb and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("berth runs")
    }
}

/// A loopback address with a port that was free a moment ago, and that nothing else on the
/// machine will take before berth binds it. Ports the kernel hands to outgoing connections
/// (`ip_local_port_range`) are avoided: a client of the API server could take one between this
/// check and berth's bind. Within one test binary no port is given twice.
pub fn free_address() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000, ephemeral_low.max(10_001));
    let span = high - low;
    // binaries run one after another, but a stale agent may still hold a port for a moment
    let base = std::process::id() * 97;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < span, "no free loopback port below {high}");
        let port = low + (base + n) % span;
        let address = format!("127.0.0.1:{port}");
        if std::net::TcpListener::bind(&address).is_ok() {
            return address;
        }
    }
}

/// Runs `berth ARGS`, asserts it succeeded and that its output contains `needle`.
pub fn succeeds(berth: &Berth, args: &[&str], needle: &str) -> Output {
    let out = berth.run(args);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(needle),
        "{}",
        text(&out)
    );
    out
}

pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A mapping with one repository and one sync.
pub fn mapping(url: &str, sync: &str, path: &str, namespace: &str, extra: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1
kind: Mapping
repositories:
  - name: config
    url: {url}
    branch: main
    interval: 1s
syncs:
  - name: {sync}
    repository: config
    path: {path}
    namespace: {namespace}
{extra}"
    )
}

/// A sync `app` of path `app` in a fresh repository, into a fresh namespace, with berth's own
/// namespace: what most tests start from. `extra` adds lines to the sync (see [`mapping`]).
pub struct App {
    pub client: Client,
    pub berth_ns: NamespaceGuard,
    pub app_ns: NamespaceGuard,
    pub repo: Repo,
    pub berth: Berth,
}

impl App {
    pub async fn new(extra: &str) -> Self {
        Self::sync("app", "app", extra).await
    }

    /// The same with the sync named `sync`, of the repository's `path`.
    pub async fn sync(sync: &str, path: &str, extra: &str) -> Self {
        let client = client().await;
        let berth_ns = namespace(&client, &unique("berth")).await;
        let app_ns = namespace(&client, &unique("app")).await;
        let repo = Repo::new();
        let berth = Berth::new(
            &berth_ns.name,
            &mapping(&repo.url(), sync, path, &app_ns.name, extra),
        );
        Self {
            client,
            berth_ns,
            app_ns,
            repo,
            berth,
        }
    }
}

/// The status ConfigMap of a sync.
pub async fn status(client: &Client, namespace: &str, sync: &str) -> ConfigMap {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    api.get(&format!("berth-sync-{sync}"))
        .await
        .expect("status ConfigMap")
}

/// Creates or replaces a Secret with one key.
pub async fn put_secret(client: &Client, namespace: &str, name: &str, key: &str, value: &str) {
    use k8s_openapi::api::core::v1::Secret;
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        string_data: Some(std::collections::BTreeMap::from([(
            key.to_owned(),
            value.to_owned(),
        )])),
        ..Default::default()
    };
    match api.get_opt(name).await.expect("read secret") {
        Some(existing) => {
            secret.metadata.resource_version = existing.metadata.resource_version;
            api.replace(name, &PostParams::default(), &secret)
                .await
                .expect("replace secret");
        }
        None => {
            api.create(&PostParams::default(), &secret)
                .await
                .expect("create secret");
        }
    }
}

/// Polls `check` every 200ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Makes sure the Workflow kind is served. The test control plane installs Argo Workflows'
/// full CRDs with its controller; on a cluster without them (`BERTH_NO_ARGO=1`), this applies
/// the minimal ones in `manifests/argo-workflows-crds.yaml` (idempotent).
pub async fn install_workflow_crds(client: &Client) {
    use kube::api::{DynamicObject, Patch, PatchParams};
    use kube::core::{ApiResource, GroupVersionKind};
    if argo_controller(client).await {
        return;
    }
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/argo-workflows-crds.yaml"
    ))
    .expect("CRD manifest");
    let crd = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        "customresourcedefinitions",
    );
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &crd);
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("yaml");
    for doc in docs {
        let name = doc["metadata"]["name"].as_str().expect("name").to_owned();
        api.patch(
            &name,
            &PatchParams::apply("berth-tests").force(),
            &Patch::Apply(&doc),
        )
        .await
        .expect("apply CRD");
    }
    let workflows: Api<DynamicObject> = Api::all_with(client.clone(), &workflow_resource());
    let ready = eventually(Duration::from_secs(30), || async {
        workflows.list(&Default::default()).await.ok().map(drop)
    })
    .await;
    assert!(ready.is_some(), "the Workflow CRD was not served");
}

/// Whether the cluster runs Argo Workflows' controller (the test control plane does, unless
/// started with `BERTH_NO_ARGO=1`): its full Workflow CRD is installed and the controller's
/// configuration exists.
pub async fn argo_controller(client: &Client) -> bool {
    static ARGO: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    *ARGO
        .get_or_init(|| async {
            let config: Api<ConfigMap> = Api::namespaced(client.clone(), "argo");
            config
                .get_opt("workflow-controller-configmap")
                .await
                .ok()
                .flatten()
                .is_some()
        })
        .await
}

/// Ends the running pods of a Workflow as a kubelet does when their containers exit 0. KWOK
/// runs a Workflow's pods on the test control plane: a step whose template sets
/// `pod-complete.stage.kwok.x-k8s.io/delay` (an hour, say) runs until this ends it, and Argo's
/// controller then finishes the step as it would any other.
pub async fn finish_pods(client: &Client, namespace: &str, workflow: &str) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{ListParams, Patch, PatchParams};
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("workflows.argoproj.io/workflow={workflow}");
    let running = eventually(Duration::from_secs(30), || async {
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .ok()?;
        let running: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .collect();
        (!running.is_empty()).then_some(running)
    })
    .await
    .unwrap_or_else(|| panic!("no running pod of {workflow}"));
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    for pod in running {
        let spec = pod.spec.as_ref().expect("pod spec");
        let statuses: Vec<serde_json::Value> = spec
            .containers
            .iter()
            .map(|c| {
                serde_json::json!({"name": c.name, "image": c.image, "imageID": "", "ready": false,
                    "restartCount": 0, "started": false,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                             "startedAt": now, "finishedAt": now}}})
            })
            .collect();
        let status =
            serde_json::json!({"status": {"phase": "Succeeded", "containerStatuses": statuses}});
        pods.patch_status(
            pod.metadata.name.as_deref().expect("name"),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("end the pod");
    }
}

/// Reports a step's outputs as Argo's executor (the wait container) does: a
/// WorkflowTaskResult named after the node, labelled with its Workflow and as complete.
pub async fn report_outputs(
    client: &Client,
    namespace: &str,
    workflow: &str,
    node: &str,
    outputs: serde_json::Value,
) {
    let results: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("argoproj.io", "v1alpha1", "WorkflowTaskResult"),
            "workflowtaskresults",
        ),
    );
    let report: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
        "metadata": {"name": node, "labels": {"workflows.argoproj.io/workflow": workflow,
                     "workflows.argoproj.io/report-outputs-completed": "true"}},
        "outputs": outputs
    }))
    .expect("task result");
    results
        .create(&PostParams::default(), &report)
        .await
        .expect("report the step's outputs");
}

/// Waits until a Workflow reaches `phase` as Argo's controller reports it; returns it.
pub async fn workflow_phase(
    client: &Client,
    namespace: &str,
    name: &str,
    phase: &str,
) -> kube::api::DynamicObject {
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &workflow_resource());
    let reached = eventually(Duration::from_secs(60), || async {
        let w = api.get(name).await.ok()?;
        (w.data["status"]["phase"] == phase).then_some(w)
    })
    .await;
    match reached {
        Some(w) => w,
        None => {
            let now = api.get(name).await.map(|w| w.data["status"].clone());
            panic!("{name} did not reach {phase}: {now:?}")
        }
    }
}

pub fn workflow_resource() -> kube::core::ApiResource {
    kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Workflow"),
        "workflows",
    )
}

/// The Workflows in a namespace, sorted by name.
pub async fn workflows(client: &Client, namespace: &str) -> Vec<kube::api::DynamicObject> {
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &workflow_resource());
    let mut items = api
        .list(&Default::default())
        .await
        .expect("list workflows")
        .items;
    items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    items
}

/// A self-signed CA and a serving certificate for 127.0.0.1; returns (ca.crt, cert, key).
pub fn tls_files(dir: &std::path::Path) -> (String, String, String) {
    let run = |args: &[&str]| {
        let ok = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            ok.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write");
    run(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "tls.crt",
    ]);
    let p = |f: &str| dir.join(f).display().to_string();
    (p("ca.crt"), p("tls.crt"), p("tls.key"))
}

/// A bare clone of `repo` at `<dir>/config.git`, the copy a server serves.
fn bare_clone(repo: &Repo, dir: &Path) -> PathBuf {
    let bare = dir.join("config.git");
    let out = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(repo.path())
        .arg(&bare)
        .output()
        .expect("git clone");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bare
}

/// Pushes `main` of `repo` to a served bare copy.
fn push_main(repo: &Repo, bare: &Path) {
    repo.git(&[
        "push",
        "-q",
        "--force",
        &bare.display().to_string(),
        "main:main",
    ]);
}

/// A git repository served over HTTPS with token auth (`git http-backend` behind
/// `tests/fixtures/git-https-server.py`), on a free loopback port.
pub struct GitServer {
    /// `https://127.0.0.1:<port>/config.git`
    pub url: String,
    /// CA bundle to trust (pass as `SSL_CERT_FILE`).
    pub ca: String,
    /// The bare repository being served; push to it with `push`.
    pub bare: PathBuf,
    _process: ChildGuard,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl GitServer {
    pub fn start(repo: &Repo, user: &str, token: &str) -> Self {
        let served = tempfile::tempdir().expect("tempdir");
        let bare = bare_clone(repo, served.path());
        let tls = tempfile::tempdir().expect("tempdir");
        let (ca, cert, key) = tls_files(tls.path());
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/git-https-server.py"
        );
        let mut process = ChildGuard(
            Command::new("python3")
                .args([
                    script,
                    &served.path().display().to_string(),
                    &cert,
                    &key,
                    user,
                    token,
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("server starts"),
        );
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(process.0.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("port");
        Self {
            url: format!("https://127.0.0.1:{}/config.git", line.trim()),
            ca,
            bare,
            _process: process,
            _dirs: (served, tls),
        }
    }

    /// Pushes the repository's `main` to the served copy.
    pub fn push(&self, repo: &Repo) {
        push_main(repo, &self.bare);
    }
}

/// A repository served read-only over the git protocol by `git daemon` on a free port.
pub struct GitDaemon {
    /// `git://127.0.0.1:<port>/config.git`
    pub url: String,
    pub bare: PathBuf,
    pid_file: PathBuf,
    _process: ChildGuard,
    _dir: tempfile::TempDir,
}

impl GitDaemon {
    pub fn start(repo: &Repo) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = bare_clone(repo, dir.path());
        let address = free_address();
        let port = address.rsplit(':').next().expect("a port");
        // `git daemon` runs git-daemon as a child: its pid file names the process to stop
        let pid_file = dir.path().join("daemon.pid");
        let process = ChildGuard(
            Command::new("git")
                .args([
                    "daemon",
                    "--reuseaddr",
                    "--export-all",
                    "--listen=127.0.0.1",
                ])
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", dir.path().display()))
                .arg(format!("--pid-file={}", pid_file.display()))
                .arg(dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("git daemon starts"),
        );
        let url = format!("git://127.0.0.1:{port}/config.git");
        for _ in 0..100 {
            if std::net::TcpStream::connect(&address).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            url,
            bare,
            pid_file,
            _process: process,
            _dir: dir,
        }
    }

    /// Pushes the repository's `main` to the served copy.
    pub fn push(&self, repo: &Repo) {
        push_main(repo, &self.bare);
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

/// A minimal HTTP/1.1 request over loopback: (status, body).
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    stream.write_all(body).expect("write body");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).to_string();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    )
}

/// The body of a chunked HTTP/1.1 answer.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// The value of one sample line of a Prometheus text exposition (0 when absent).
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// A repository served over ssh by Debian's OpenSSH server, to root with a key only, on port
/// 22 of a random loopback address (so the scp-like `root@host:path` form works as well).
pub struct SshServer {
    /// `ssh://root@<host>/<path>/config.git`
    pub url: String,
    /// `root@<host>:<path>/config.git`
    pub scp_url: String,
    /// The client's private key (OpenSSH format).
    pub identity: String,
    /// The server's `known_hosts` line.
    pub known_hosts: String,
    pub bare: PathBuf,
    _process: ChildGuard,
    _dir: tempfile::TempDir,
}

impl SshServer {
    pub fn start(repo: &Repo) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let keygen = |name: &str| {
            let path = dir.path().join(name);
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(&path)
                .output()
                .expect("ssh-keygen runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            path
        };
        let host_key = keygen("host");
        let client_key = keygen("client");
        let read = |p: PathBuf| std::fs::read_to_string(p).expect("key file");
        std::fs::write(
            dir.path().join("authorized_keys"),
            read(client_key.with_extension("pub")),
        )
        .expect("authorized_keys");
        let bare = bare_clone(repo, dir.path());
        let host = format!(
            "127.{}.{}.{}",
            rand::random::<u8>() % 250 + 1,
            rand::random::<u8>(),
            rand::random::<u8>() % 250 + 2
        );
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {host}:22\nHostKey {}\nAuthorizedKeysFile {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile none\nLogLevel VERBOSE\n",
                host_key.display(),
                dir.path().join("authorized_keys").display()
            ),
        )
        .expect("sshd_config");
        std::fs::create_dir_all("/run/sshd").expect("privilege separation directory");
        let process = ChildGuard(
            Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("sshd starts"),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((host.as_str(), 22)).is_err() {
            assert!(std::time::Instant::now() < deadline, "sshd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let public = read(host_key.with_extension("pub"));
        let mut fields = public.split_whitespace();
        let known_hosts = format!(
            "{host} {} {}\n",
            fields.next().expect("key type"),
            fields.next().expect("key")
        );
        Self {
            url: format!("ssh://root@{host}{}", bare.display()),
            scp_url: format!("root@{host}:{}", bare.display()),
            identity: read(client_key),
            known_hosts,
            bare,
            _process: process,
            _dir: dir,
        }
    }

    /// Pushes the repository's `main` to the served copy.
    pub fn push(&self, repo: &Repo) {
        push_main(repo, &self.bare);
    }
}

/// Creates or replaces a Secret with several keys.
pub async fn put_secret_data(client: &Client, namespace: &str, name: &str, data: &[(&str, &str)]) {
    use k8s_openapi::api::core::v1::Secret;
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        string_data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Default::default()
    };
    let _ = api.delete(name, &DeleteParams::default()).await;
    api.create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
}

/// A ServiceAccount `name` in `namespace` that may manage Argo Workflows there, as a
/// pipeline's account needs: berth launches, terminates, resumes and cleans up as it.
pub async fn workflow_launcher(client: &Client, namespace: &str, name: &str) {
    let rules = serde_json::json!([{"apiGroups": ["argoproj.io"], "resources": ["workflows"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]}]);
    account_with_rules(client, namespace, name, rules).await;
}

/// A ServiceAccount `name` in `namespace`, bound to a Role of its name with `rules`, and no
/// other rights.
pub async fn account_with_rules(
    client: &Client,
    namespace: &str,
    name: &str,
    rules: serde_json::Value,
) {
    use kube::api::{DynamicObject, Patch, PatchParams};
    use kube::core::{ApiResource, GroupVersionKind};
    let params = PatchParams::apply("berth-tests").force();
    let objects = [
        (
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            serde_json::json!({}),
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            serde_json::json!({"rules": rules}),
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            serde_json::json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]}),
        ),
    ];
    for (group, version, kind, plural, extra) in objects {
        let resource =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let mut body = extra;
        body["apiVersion"] = resource.api_version.clone().into();
        body["kind"] = kind.into();
        body["metadata"] = serde_json::json!({"name": name, "namespace": namespace});
        api.patch(name, &params, &Patch::Apply(&body))
            .await
            .unwrap_or_else(|e| panic!("{kind} {namespace}/{name}: {e}"));
    }
}

/// The `p`-quantile (0..1) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Prints a benchmark's p50, p90 and max over its samples of `what` (deliveries, runs).
pub fn report_latency(name: &str, what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name}: p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms over {} {what}",
        percentile(&samples, 0.5).as_secs_f64() * 1000.0,
        percentile(&samples, 0.9).as_secs_f64() * 1000.0,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        samples.len()
    );
}

/// Server-side applies one manifest (with `params`: a dry-run, a forced apply) through the
/// kind discovery resolves for it; returns the kind. Panics naming the object if refused.
pub async fn apply_manifest(
    client: &Client,
    discovery: &kube::discovery::Discovery,
    manifest: &serde_json::Value,
    params: &kube::api::PatchParams,
) -> String {
    use kube::api::{DynamicObject, Patch};
    let object: DynamicObject = serde_json::from_value(manifest.clone()).expect("object");
    let (resource, caps) = discovery.resolve_object(&object).expect("kind served");
    let api: Api<DynamicObject> = match object.metadata.namespace.as_deref() {
        Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => {
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        _ => Api::all_with(client.clone(), &resource),
    };
    let name = object.metadata.name.clone().expect("name");
    api.patch(&name, params, &Patch::Apply(manifest))
        .await
        .unwrap_or_else(|e| panic!("apply of {} {name}: {e}", resource.kind));
    resource.kind
}
