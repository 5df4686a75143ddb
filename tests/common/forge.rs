//! A repository on a real Gitea (built from its Go module) with a pipeline's workflow file, a
//! namespace for berth with the token and webhook Secrets, and one for the runs: what the tests
//! of pipelines on pull requests, tags and commit statuses share.

use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams};

use super::{Berth, ChildGuard, Gitea, Repo, client, namespace, put_secret_data, unique};

pub const SECRET: &str = "gitea-hook-secret";
/// The dashboard's public address berth is given.
pub const EXTERNAL: &str = "https://berth.example.com";

/// A workflow of two steps, the second of which exits 2.
pub const FAILING: &str = "apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: ci-
spec:
  entrypoint: main
  templates:
    - name: main
      steps:
        - - {name: build, template: ok}
        - - {name: test, template: fails}
    - name: ok
      container: {image: alpine}
    - name: fails
      metadata:
        annotations: {berth.test/exit-code: '2'}
      container: {image: alpine}
";

/// A Workflow whose step runs until the test ends its pod; `flavor` marks which file it is.
pub fn workflow(flavor: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: ci-
  labels: {{flavor: {flavor}}}
spec:
  entrypoint: main
  templates:
    - name: main
      metadata:
        annotations: {{pod-complete.stage.kwok.x-k8s.io/delay: 1h}}
      container: {{image: alpine}}
"
    )
}

/// A Gitea with repository `web` (main holds the workflow file), a namespace for berth with
/// the token and hook Secrets, and one for the runs with the pipelines' account.
pub struct Host {
    pub client: kube::Client,
    pub gitea: Gitea,
    pub repo: Repo,
    pub clone_url: String,
    pub berth_ns: super::NamespaceGuard,
    pub wf_ns: super::NamespaceGuard,
}

pub async fn host() -> Host {
    let client = client().await;
    assert!(
        super::argo_controller(&client).await,
        "these tests need Argo's controller"
    );
    let gitea = Gitea::start();
    let berth_ns = namespace(&client, &unique("berth")).await;
    let wf_ns = namespace(&client, &unique("wf")).await;
    super::workflow_launcher(&client, &wf_ns.name, "ci").await;
    let repo = Repo::new();
    repo.write(".argo/workflow.yaml", &workflow("base"))
        .write("src/main.rs", "fn main() {}\n");
    let first = repo.commit("initial");
    let clone_url = gitea.create_repo("web");
    gitea.push(&repo, "web");
    gitea.wait_branch("web", "main", &first).await;
    put_secret_data(
        &client,
        &berth_ns.name,
        "gitea-token",
        &[
            ("username", gitea.user.as_str()),
            ("token", gitea.token.as_str()),
        ],
    )
    .await;
    put_secret_data(&client, &berth_ns.name, "hooks", &[("secret", SECRET)]).await;
    Host {
        client,
        gitea,
        repo,
        clone_url,
        berth_ns,
        wf_ns,
    }
}

impl Host {
    /// The mapping: repository `web` on Gitea with `provider` (`@GITEA@` is Gitea's
    /// address), and `pipelines` (`@NS@` is the runs' namespace).
    pub fn mapping(&self, provider: &str, interval: &str, pipelines: &str) -> String {
        let pipelines = pipelines.replace("@NS@", &self.wf_ns.name);
        self.mapping_with(provider, interval, &format!("pipelines:\n{pipelines}"))
    }

    /// The mapping: repository `web` on Gitea with `provider`, then `sections` as they are.
    pub fn mapping_with(&self, provider: &str, interval: &str, sections: &str) -> String {
        format!(
            "apiVersion: berth.dev/v1alpha1
kind: Mapping
repositories:
  - name: web
    url: {url}
    auth: {{secretRef: gitea-token}}
    webhookSecretRef: hooks
    interval: {interval}
    provider: {provider}
{sections}",
            url = self.clone_url,
            provider = provider.replace("@GITEA@", &self.gitea.url),
        )
    }

    /// Starts `berth run` with the dashboard's public address; returns it and its base URL.
    pub fn agent(&self, berth: &Berth) -> (ChildGuard, String) {
        let (child, base, _) = self.agent_with(berth, |_| {});
        (child, base)
    }

    /// [`Host::agent`], adjusted by `configure`; returns the admin listener's URL too.
    pub fn agent_with(
        &self,
        berth: &Berth,
        configure: impl FnOnce(&mut std::process::Command),
    ) -> (ChildGuard, String, String) {
        berth.agent_with(&[], &["--external-url", EXTERNAL], configure)
    }

    /// Waits until berth takes webhooks, then makes Gitea send it pushes and pull requests.
    pub async fn hook(&self, base: &str) {
        let ready = super::eventually(Duration::from_secs(30), || async {
            std::net::TcpStream::connect(base.trim_start_matches("http://")).ok()?;
            let (code, _) = super::http("POST", &format!("{base}/webhooks/gitea"), &[], b"{}");
            (code == 401).then_some(())
        })
        .await;
        assert!(ready.is_some(), "berth did not take webhooks");
        self.gitea.hook(
            "web",
            &format!("{base}/webhooks/gitea"),
            SECRET,
            &["push", "pull_request", "pull_request_sync"],
        );
    }

    /// Commits on branch `branch` (created from main when new) and pushes it; returns the sha.
    pub async fn push_branch(&self, branch: &str, file: &str, content: &str) -> String {
        if self
            .repo
            .git(&["branch", "--list", branch])
            .trim()
            .is_empty()
        {
            self.repo.git(&["branch", branch, "main"]);
        }
        self.repo.git(&["checkout", "-q", branch]);
        self.repo.write(file, content);
        let sha = self.repo.commit(&format!("change {file}"));
        self.repo.git(&["checkout", "-q", "main"]);
        self.gitea
            .push_ref(&self.repo, "web", &format!("+{branch}"));
        self.gitea.wait_branch("web", branch, &sha).await;
        sha
    }

    /// Opens a pull request from `head` into main; returns its number.
    pub fn open_pull_request(&self, head: &str) -> u64 {
        let (code, body) = self.gitea.api(
            "POST",
            &format!("/repos/{}/web/pulls", self.gitea.user),
            &serde_json::json!({"head": head, "base": "main", "title": format!("{head} into main")}),
        );
        assert_eq!(code, 201, "{body}");
        let pr: serde_json::Value = serde_json::from_str(&body).expect("pull request");
        pr["number"].as_u64().expect("number")
    }

    pub fn close_pull_request(&self, number: u64) {
        let (code, body) = self.gitea.api(
            "PATCH",
            &format!("/repos/{}/web/pulls/{number}", self.gitea.user),
            &serde_json::json!({"state": "closed"}),
        );
        assert_eq!(code, 201, "{body}");
    }

    /// Waits for the Workflow of `pipeline` built for `sha` with `selector`, and returns it.
    pub async fn run_for(&self, pipeline: &str, sha: &str, selector: &str) -> DynamicObject {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.wf_ns.name,
            &super::workflow_resource(),
        );
        let labels = format!("berth.dev/pipeline={pipeline},berth.dev/revision={sha},{selector}");
        let found = super::eventually(Duration::from_secs(60), || async {
            let list = api
                .list(&ListParams::default().labels(&labels))
                .await
                .ok()?;
            list.items.into_iter().next()
        })
        .await;
        found.unwrap_or_else(|| panic!("no run of {pipeline} for {sha} ({selector})"))
    }

    /// The runs of `pipeline` with `selector`.
    pub async fn runs(&self, pipeline: &str, selector: &str) -> Vec<DynamicObject> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.wf_ns.name,
            &super::workflow_resource(),
        );
        let labels = format!("berth.dev/pipeline={pipeline},{selector}");
        api.list(&ListParams::default().labels(&labels))
            .await
            .expect("list runs")
            .items
    }

    /// Waits until Gitea holds the statuses `states` (in order) for `sha`, and returns them.
    pub async fn statuses(
        &self,
        sha: &str,
        states: &[&str],
    ) -> Vec<(String, String, String, String)> {
        let found = super::eventually(Duration::from_secs(90), || async {
            let all = self.gitea.statuses("web", sha);
            let got: Vec<&str> = all.iter().map(|s| s.1.as_str()).collect();
            (got == states).then_some(all)
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "statuses of {sha}: expected {states:?}, Gitea holds {:?}",
                self.gitea.statuses("web", sha)
            )
        })
    }
}

pub fn name(w: &DynamicObject) -> String {
    w.metadata.name.clone().expect("name")
}

pub fn params(w: &DynamicObject) -> std::collections::BTreeMap<String, String> {
    w.data["spec"]["arguments"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_owned(),
                p["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
