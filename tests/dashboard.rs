//! The dashboard in Debian's headless Chromium: `berth run` on the local control plane, real
//! git repositories, Workflows run by Argo's controller (KWOK plays the kubelet), and the pages
//! as a browser shows them. Each test writes screenshots of its pages at
//! 1280×800 to `docs/screenshots/` (README shows them) and runs axe-core on them.

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use common::{Berth, ChildGuard, GitDaemon, NamespaceGuard, Repo, client, namespace, unique};
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};

const WORKFLOW: &str = "apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: build-
spec:
  entrypoint: main
  templates:
    - name: main
      container: {image: alpine}
";

const TOKEN: &str = "let-me-act";

/// An agent with a sync, a pipeline and a cleanup rule, its admin listener, and the parts a
/// test changes.
struct Agent {
    _agent: ChildGuard,
    admin: String,
    _berth: Berth,
    config: Repo,
    /// Serves `config` over git://, so the agent sees a commit only when it fetches.
    daemon: GitDaemon,
    _source: Repo,
    client: kube::Client,
    runs_ns: NamespaceGuard,
    _app_ns: NamespaceGuard,
    _berth_ns: NamespaceGuard,
}

impl Agent {
    async fn start(token: Option<&str>) -> Self {
        let client = client().await;
        common::install_workflow_crds(&client).await;
        let berth_ns = namespace(&client, &unique("berth")).await;
        let app_ns = namespace(&client, &unique("app")).await;
        let runs_ns = namespace(&client, &unique("runs")).await;
        common::workflow_launcher(&client, &runs_ns.name, "ci").await;
        let config = Repo::new();
        config
            .write(
                "app/settings.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {level: info}\n",
            )
            .write(
                "app/db.yaml",
                "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: first-secret}\n",
            );
        config.commit("first settings");
        let daemon = GitDaemon::start(&config);
        let source = Repo::new();
        source.write(".argo/workflow.yaml", WORKFLOW);
        source.commit("first build");
        let mapping = format!(
            "apiVersion: berth.dev/v1alpha1
kind: Mapping
repositories:
  - {{name: config, url: \"{config}\", interval: 1h}}
  - {{name: source, url: \"{source}\", interval: 1h}}
syncs:
  - {{name: web, repository: config, path: app, namespace: {app}}}
pipelines:
  - {{name: build, repository: source, namespace: {runs}, serviceAccount: ci}}
cleanup:
  - {{name: old-builds, schedule: \"@daily\", namespace: {runs}, keepLast: 10}}
",
            config = daemon.url,
            source = source.url(),
            app = app_ns.name,
            runs = runs_ns.name,
        );
        let berth = Berth::new(&berth_ns.name, &mapping);
        let run: Vec<&str> = token.map_or_else(Vec::new, |t| vec!["--admin-token", t]);
        let (agent, _, admin) = berth.agent_with(&[], &run, |_| {});
        let synced = common::eventually(Duration::from_secs(60), || async {
            let cm = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
                client.clone(),
                &app_ns.name,
            )
            .get_opt("settings")
            .await
            .ok()
            .flatten();
            cm.map(drop)
        })
        .await;
        assert!(synced.is_some(), "the agent synced the config repository");
        Self {
            _agent: agent,
            admin,
            _berth: berth,
            config,
            daemon,
            _source: source,
            client,
            runs_ns,
            _app_ns: app_ns,
            _berth_ns: berth_ns,
        }
    }

    fn runs(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            &self.runs_ns.name,
            &common::workflow_resource(),
        )
    }

    /// Asks the agent to fetch the config repository now (as a webhook would).
    fn refresh(&self) -> u16 {
        common::http(
            "POST",
            &format!("{}/actions/repositories/config/refresh", self.admin),
            &[("Authorization", &format!("Bearer {TOKEN}"))],
            b"",
        )
        .0
    }
}

/// Runs axe-core on the page and fails on any serious or critical violation.
fn accessible(browser: &mut Browser, page: &str) {
    let serious = browser.serious_violations();
    assert!(serious.is_empty(), "{page}: {serious:#?}");
}

#[tokio::test]
async fn the_overview_lists_everything_and_follows_a_commit_without_a_reload() {
    let agent = Agent::start(Some(TOKEN)).await;
    let mut browser = Browser::start();
    assert_eq!(browser.goto(&format!("{}/", agent.admin)), 200);
    browser.wait_text("#live", "live", 10_000);
    // the keyboard reaches everything, starting with a way past the navigation
    let first = browser.call(json!({"op": "press", "key": "Tab"}));
    assert!(
        first["focused"]
            .as_str()
            .unwrap_or_default()
            .contains("Skip to content"),
        "{first}"
    );
    let next = browser.call(json!({"op": "press", "key": "Tab"}));
    assert!(
        next["focused"]
            .as_str()
            .unwrap_or_default()
            .contains("berth"),
        "{next}"
    );
    let main = browser.text("main");
    for needle in ["web", "first settings", "build", "old-builds", "@daily"] {
        assert!(main.contains(needle), "{needle}: {main}");
    }
    // a marker a reload would lose
    browser.eval("window.stillHere = true");
    let head = agent.config.git(&["rev-parse", "HEAD"]);
    assert!(main.contains(&head[..7]), "{main}");

    agent.config.write(
        "app/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {level: debug}\n",
    );
    let new = agent.config.commit("debug logging");
    agent.daemon.push(&agent.config);
    let started = Instant::now();
    assert_eq!(agent.refresh(), 303);
    browser.wait_text("main", &new[..7], 20_000);
    let shown = started.elapsed();
    println!(
        "commit → shown on the open overview: {} ms",
        shown.as_millis()
    );
    assert_eq!(
        browser.eval("window.stillHere === true"),
        json!(true),
        "no reload"
    );
    assert!(browser.text("main").contains("debug logging"));

    browser.screenshot("docs/screenshots/overview.png");
    accessible(&mut browser, "overview");
    // the same page in dark mode and on a phone stays readable
    browser.call(json!({"op": "colorScheme", "scheme": "dark"}));
    browser.screenshot("docs/screenshots/overview-dark.png");
    accessible(&mut browser, "overview, dark");
    browser.call(json!({"op": "viewport", "width": 390, "height": 844}));
    browser.screenshot("docs/screenshots/overview-phone.png");
    accessible(&mut browser, "overview, phone");
    let overflow = browser.eval("document.documentElement.scrollWidth <= window.innerWidth");
    assert_eq!(overflow, json!(true), "the page fits a phone's width");
}

/// A run with a steps group and a DAG: root → [0] → checkout → [1] → (test, lint); test's
/// DAG: unit → integration. lint exits 1; integration runs until the test ends its pod.
const DEMO: &str = r#"{
  "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
  "metadata": {"name": "demo",
               "labels": {"berth.dev/pipeline": "build", "berth.dev/revision": "0123456789abcdef"},
               "annotations": {"berth.dev/branch": "main"}},
  "spec": {"entrypoint": "main", "templates": [
    {"name": "main", "steps": [[{"name": "checkout", "template": "git"}],
                               [{"name": "test", "template": "test"}, {"name": "lint", "template": "lint"}]]},
    {"name": "git", "container": {"image": "alpine"},
     "outputs": {"parameters": [{"name": "sha", "valueFrom": {"path": "/tmp/sha"}}]}},
    {"name": "lint", "container": {"image": "alpine"},
     "metadata": {"annotations": {"berth.test/exit-code": "1"}}},
    {"name": "test", "dag": {"tasks": [{"name": "unit", "template": "unit"},
                                        {"name": "integration", "template": "it", "dependencies": ["unit"]}]}},
    {"name": "unit", "container": {"image": "alpine"}},
    {"name": "it", "container": {"image": "alpine"},
     "metadata": {"annotations": {"pod-complete.stage.kwok.x-k8s.io/delay": "1h"}}}
  ]}
}"#;

/// The controller's node ids of a Workflow by display name, once `ready` holds for its nodes.
async fn node_ids(
    runs: &Api<DynamicObject>,
    name: &str,
    ready: impl Fn(&std::collections::BTreeMap<String, (String, String)>) -> bool,
) -> std::collections::BTreeMap<String, (String, String)> {
    let found = common::eventually(Duration::from_secs(60), || async {
        let w = runs.get(name).await.ok()?;
        let nodes: std::collections::BTreeMap<String, (String, String)> = w.data["status"]["nodes"]
            .as_object()?
            .values()
            .map(|n| {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                (text(&n["displayName"]), (text(&n["id"]), text(&n["phase"])))
            })
            .collect();
        ready(&nodes).then_some(nodes)
    })
    .await;
    found.unwrap_or_else(|| panic!("the nodes of {name} did not get there"))
}

#[tokio::test]
async fn a_run_shows_its_steps_and_dag_as_a_graph_that_follows_the_node_statuses() {
    let agent = Agent::start(None).await;
    let runs = agent.runs();
    let run: DynamicObject = serde_json::from_str(DEMO).expect("workflow");
    runs.create(&PostParams::default(), &run)
        .await
        .expect("create run");
    // the executor's report of checkout's output, as Argo's wait container writes it
    let ids = node_ids(&runs, "demo", |n| n.contains_key("checkout")).await;
    let checkout = ids["checkout"].0.clone();
    common::report_outputs(
        &agent.client,
        &agent.runs_ns.name,
        "demo",
        &checkout,
        json!({"parameters": [{"name": "sha", "value": "abc1234"}]}),
    )
    .await;
    let phase = |n: &std::collections::BTreeMap<String, (String, String)>, name: &str| {
        n.get(name).map(|(_, p)| p.clone()).unwrap_or_default()
    };
    let ids = node_ids(&runs, "demo", |n| {
        phase(n, "integration") == "Running" && phase(n, "lint") == "Failed"
    })
    .await;
    let id = |name: &str| ids[name].0.clone();

    let mut browser = Browser::start();
    let url = format!("{}/pipelines/build/runs/demo", agent.admin);
    assert_eq!(browser.goto(&url), 200);
    browser.wait_text("#live", "live", 10_000);
    let phases = browser.attrs("svg.graph a.node", "data-phase");
    let nodes = browser.attrs("svg.graph a.node", "data-node");
    let phase_of = |name: &str| {
        nodes
            .iter()
            .position(|i| *i == id(name))
            .map(|i| phases[i].clone())
            .unwrap_or_default()
    };
    assert_eq!(nodes.len(), 8, "{nodes:?}");
    assert_eq!(phase_of("checkout"), "Succeeded");
    assert_eq!(phase_of("lint"), "Failed");
    assert_eq!(phase_of("integration"), "Running");
    let from = browser.attrs("svg.graph line.edge", "data-from");
    let to = browser.attrs("svg.graph line.edge", "data-to");
    let edges: Vec<(String, String)> = from.into_iter().zip(to).collect();
    for (a, b) in [
        ("demo", "[0]"),
        ("[0]", "checkout"),
        ("checkout", "[1]"),
        ("[1]", "test"),
        ("[1]", "lint"),
        ("test", "unit"),
        ("unit", "integration"),
    ] {
        assert!(
            edges.contains(&(id(a), id(b))),
            "{a} → {b}: {edges:?} ({ids:?})"
        );
    }
    assert_eq!(edges.len(), 7, "{edges:?}");
    let main = browser.text("main");
    assert!(
        main.contains("sha=abc1234") && main.contains("exit code 1"),
        "{main}"
    );
    assert!(main.contains("0123456"), "the commit: {main}");
    browser.screenshot("docs/screenshots/run.png");
    accessible(&mut browser, "run");

    // a node changes: the open page follows
    browser.eval("window.stillHere = true");
    common::finish_pods(&agent.client, &agent.runs_ns.name, "demo").await;
    browser.call(json!({"op": "waitFor",
        "selector": format!("svg.graph a[data-node=\"{}\"][data-phase=\"Succeeded\"]", id("integration")),
        "timeoutMs": 20000}));
    assert_eq!(
        browser.eval("window.stillHere === true"),
        json!(true),
        "no reload"
    );

    // a node's logs: its pod ran on KWOK's node, which serves its container's log through the
    // API server as a kubelet does (tests/control-plane.sh writes the lines)
    assert_eq!(
        browser.goto(&format!("{url}?node={}", id("integration"))),
        200
    );
    let logs = browser.text("#logs");
    assert!(
        logs.contains("berth test: a step run by KWOK") && logs.contains("berth test: done"),
        "{logs}"
    );
    // a node that runs no pod says so
    assert_eq!(browser.goto(&format!("{url}?node={}", id("test"))), 200);
    let note = browser.text("#logs");
    assert!(note.contains("runs no pod of its own"), "{note}");
    assert_eq!(
        browser.goto(&format!("{url}?node={}", id("integration"))),
        200
    );
    browser.screenshot("docs/screenshots/run-node.png");
    accessible(&mut browser, "run with a node selected");
    // keyboard: the graph's nodes are links in tab order
    let focusable = browser.count("svg.graph a[href]");
    assert_eq!(focusable, 8);
}

#[tokio::test]
async fn a_sync_page_shows_the_masked_secret_diff_before_the_sync() {
    let agent = Agent::start(Some(TOKEN)).await;
    agent.config.write(
        "app/db.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: second-secret}\n",
    );
    agent.config.commit("rotate the database password");
    agent.daemon.push(&agent.config);
    let mut browser = Browser::start();
    assert_eq!(browser.goto(&format!("{}/syncs/web", agent.admin)), 200);
    let main = browser.text("main");
    assert_eq!(browser.count("pre.diff"), 1, "{main}");
    let diff = browser.text("pre.diff");
    assert!(diff.contains("Secret/db"), "{diff}");
    assert!(diff.contains("password: +"), "masked: {diff}");
    assert!(
        !diff.contains("first-secret") && !diff.contains("second-secret"),
        "{diff}"
    );
    assert!(
        !diff.contains("Zmlyc3Qtc2VjcmV0"),
        "no base64 either: {diff}"
    );
    assert!(
        main.contains("ConfigMap (1)") && main.contains("Secret (1)"),
        "{main}"
    );
    assert!(
        main.contains("first settings"),
        "still at the synced commit: {main}"
    );
    browser.screenshot("docs/screenshots/sync.png");
    accessible(&mut browser, "sync");
}

#[tokio::test]
async fn actions_exist_only_with_the_token_and_trigger_launches_a_run() {
    // without --admin-token: no action anywhere, and the endpoints do not exist
    let plain = Agent::start(None).await;
    let mut browser = Browser::start();
    browser.goto(&format!("{}/", plain.admin));
    assert_eq!(browser.count("form"), 0, "strictly read-only");
    let (status, _) = common::http(
        "POST",
        &format!("{}/actions/pipelines/build/trigger", plain.admin),
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        b"",
    );
    assert_eq!(status, 404);
    drop(plain);

    let agent = Agent::start(Some(TOKEN)).await;
    // the agent's own launch of the source's head comes first
    let launched = common::eventually(Duration::from_secs(30), || async {
        let runs = agent.runs().list(&Default::default()).await.ok()?.items;
        (!runs.is_empty()).then_some(())
    })
    .await;
    assert!(launched.is_some(), "the agent launched the head");
    // a request without the token is refused (before anything is done) and launches nothing
    let (status, body) = common::http(
        "POST",
        &format!("{}/actions/pipelines/build/trigger", agent.admin),
        &[],
        b"",
    );
    assert_eq!(status, 401, "{body}");
    let before = agent
        .runs()
        .list(&Default::default())
        .await
        .expect("runs")
        .items
        .len();
    let after = agent
        .runs()
        .list(&Default::default())
        .await
        .expect("runs")
        .items;
    assert_eq!(after.len(), before, "nothing launched");

    browser.goto(&format!("{}/", agent.admin));
    assert_eq!(browser.count("form.action"), 0, "not signed in: no action");
    browser.call(json!({"op": "fill", "selector": "#token", "value": TOKEN}));
    browser.call(json!({"op": "click", "selector": "form.sign-in button"}));
    assert!(
        browser.count("form.action") >= 2,
        "signed in: refresh and trigger"
    );
    browser.screenshot("docs/screenshots/overview-actions.png");
    accessible(&mut browser, "overview with actions");
    let landed = browser.call(json!({"op": "click",
        "selector": "form[action=\"/actions/pipelines/build/trigger\"] button"}));
    let url = landed["url"].as_str().unwrap_or_default().to_owned();
    assert!(url.contains("/pipelines/build/runs/"), "{url}");
    let launched = agent
        .runs()
        .list(&Default::default())
        .await
        .expect("runs")
        .items;
    assert_eq!(launched.len(), before + 1, "one more Workflow");
    let new: Vec<String> = launched
        .iter()
        .filter_map(|w| w.metadata.name.clone())
        .filter(|n| !after.iter().any(|a| a.metadata.name.as_deref() == Some(n)))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(url.ends_with(&new[0]), "{url} names {}", new[0]);

    // the delivery log page
    browser.goto(&format!("{}/deliveries", agent.admin));
    assert!(browser.text("main").contains("Webhook deliveries"));
    browser.screenshot("docs/screenshots/deliveries.png");
    accessible(&mut browser, "deliveries");

    // SIGTERM stops the agent although a page still follows it, and the page says so
    browser.wait_text("#live", "live", 10_000);
    let mut agent = agent;
    let pid = agent._agent.0.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let mut exited = None;
    for _ in 0..200 {
        exited = agent._agent.0.try_wait().expect("wait");
        if exited.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exited.is_some(), "berth run did not stop within 20 s");
    browser.wait_text("#live", "connection lost", 20_000);
}
