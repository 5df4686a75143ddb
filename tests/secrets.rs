//! Secrets in git and values from the cluster, on the real API server: files encrypted by the
//! real SOPS with keys made by the real age, decrypted by berth in memory only; `varsFrom`
//! ConfigMaps and Secrets, defaults, and the substitute-disabled annotation.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};

use common::sops::Sops;
use common::{App, eventually, put_secret, text};

const KEYS: &str = "    decryption: {provider: sops, secretRef: sops-keys}\n";

fn secret(ns: &str, name: &str, key: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{team: web}}\nstringData:\n  {key}: {value}\n"
    )
}

/// Every file under `dir`, read as text where it is text.
fn all_files(dir: &std::path::Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    out
}

async fn secret_value(client: &kube::Client, ns: &str, name: &str, key: &str) -> Option<String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = api.get_opt(name).await.ok()??;
    let v = s.data?.get(key)?.0.clone();
    String::from_utf8(v).ok()
}

#[tokio::test]
async fn encrypted_files_sync_and_their_plaintext_never_leaves_memory() {
    let app = App::new(KEYS).await;
    let ns = &app.app_ns.name;
    let sops = Sops::new();
    let stranger = Sops::new();
    put_secret(
        &app.client,
        &app.berth_ns.name,
        "sops-keys",
        "main.agekey",
        &sops.identity,
    )
    .await;
    // a Secret encrypted whole, one with encrypted_regex, a ConfigMap in JSON
    let whole = sops.encrypt(
        "whole.yaml",
        &secret(ns, "whole", "password", "plain-whole-4411"),
        &[],
    );
    let regex = sops.encrypt(
        "regex.yaml",
        &secret(ns, "regex", "token", "plain-regex-5522"),
        &["--encrypted-regex", "^(data|stringData)$"],
    );
    let json = format!(
        r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "settings", "namespace": "{ns}"}}, "data": {{"url": "postgres://plain-json-6633@db"}}}}"#
    );
    let json = sops.encrypt("settings.json", &json, &[]);
    // a file changed after it was encrypted: its unencrypted label moves, and only the MAC
    // can tell
    let tampered = sops
        .encrypt(
            "tampered.yaml",
            &secret(ns, "tampered", "token", "plain-tampered-7744"),
            &["--encrypted-regex", "^(data|stringData)$"],
        )
        .replace("team: web", "team: ops");
    // a file for a key berth does not have
    let foreign = stranger.encrypt(
        "foreign.yaml",
        &secret(ns, "foreign", "token", "plain-foreign-8855"),
        &[],
    );
    app.repo
        .write("app/whole.yaml", &whole)
        .write("app/regex.yaml", &regex)
        .write("app/settings.json", &json)
        .write("app/tampered.yaml", &tampered)
        .write("app/foreign.yaml", &foreign);
    app.repo.commit("encrypted");
    let plaintexts = [
        "plain-whole-4411",
        "plain-regex-5522",
        "plain-json-6633",
        "plain-tampered-7744",
        "plain-foreign-8855",
    ];

    // validate --cluster names both bad files before any sync
    let out = app.berth.run(&["validate", "--cluster"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("app/tampered.yaml") && said.contains("MAC does not match"),
        "{said}"
    );
    assert!(
        said.contains("app/foreign.yaml") && said.contains(&stranger.recipient),
        "{said}"
    );
    assert!(!said.contains("app/whole.yaml:1"), "{said}");

    let log = tempfile::NamedTempFile::new().expect("log file");
    let stderr = log.reopen().expect("log");
    let (agent, _, _) = app.berth.agent_with(&[], &[], |cmd| {
        cmd.stderr(stderr).env("RUST_LOG", "berth=debug");
    });
    let synced = eventually(Duration::from_secs(60), || async {
        let whole = secret_value(&app.client, ns, "whole", "password").await?;
        let regex = secret_value(&app.client, ns, "regex", "token").await?;
        (whole == "plain-whole-4411" && regex == "plain-regex-5522").then_some(())
    })
    .await;
    assert!(synced.is_some(), "the encrypted Secrets did not sync");
    let cms: Api<ConfigMap> = Api::namespaced(app.client.clone(), ns);
    let settings = cms.get("settings").await.expect("the encrypted ConfigMap");
    assert_eq!(
        settings.data.expect("data")["url"],
        "postgres://plain-json-6633@db"
    );
    // the bad files failed alone, each named
    let failed = eventually(Duration::from_secs(30), || async {
        let cm = common::status(&app.client, &app.berth_ns.name, "app").await;
        let message = cm.metadata.annotations?.get("berth.dev/message")?.clone();
        (message.contains("tampered.yaml") && message.contains("foreign.yaml")).then_some(message)
    })
    .await
    .expect("the sync names both bad files");
    assert!(failed.contains(&stranger.recipient), "{failed}");
    let secrets: Api<Secret> = Api::namespaced(app.client.clone(), ns);
    assert!(secrets.get_opt("tampered").await.expect("get").is_none());
    assert!(secrets.get_opt("foreign").await.expect("get").is_none());

    // diff and render mask what SOPS encrypted, the ConfigMap's values included
    cms.patch(
        "settings",
        &PatchParams::apply("hand-edit").force(),
        &Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings"}, "data": {"url": "postgres://edited-by-hand@db"}})),
    )
    .await
    .expect("hand edit");
    let diff = text(&app.berth.run(&["diff"]));
    assert!(diff.contains("ConfigMap/settings"), "{diff}");
    let render = text(&app.berth.run(&["render", "app"]));
    assert!(render.contains("name: settings"), "{render}");
    drop(agent);

    // the plaintext is nowhere: cache, log, records, Events, diff, render
    let mut places = vec![
        ("the cache directory", all_files(app.berth.cache.path())),
        (
            "the agent's log",
            std::fs::read_to_string(log.path()).expect("log"),
        ),
        ("berth diff", diff),
        ("berth render", render),
    ];
    let records: Api<ConfigMap> = Api::namespaced(app.client.clone(), &app.berth_ns.name);
    let all = records.list(&ListParams::default()).await.expect("records");
    places.push((
        "the status records",
        serde_json::to_string(&all.items).expect("json"),
    ));
    let events: Api<Event> = Api::namespaced(app.client.clone(), &app.berth_ns.name);
    let all = events.list(&ListParams::default()).await.expect("events");
    places.push((
        "the Events",
        serde_json::to_string(&all.items).expect("json"),
    ));
    for (place, content) in &places {
        assert!(
            !content.is_empty() || *place == "the Events",
            "{place} is empty"
        );
        for p in plaintexts {
            assert!(!content.contains(p), "{place} holds {p}");
        }
    }
}

#[tokio::test]
async fn values_come_from_config_maps_and_secrets_with_defaults() {
    let extra = "    varsFrom:
      - {kind: ConfigMap, name: cluster-vars}
      - {kind: Secret, name: cluster-secret-vars, optional: true}
    vars: {ENV: prod}
";
    let app = App::new(extra).await;
    let (ns, berth_ns) = (&app.app_ns.name, &app.berth_ns.name);
    let config_maps: Api<ConfigMap> = Api::namespaced(app.client.clone(), berth_ns);
    let vars = |greeting: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cluster-vars"}, "data": {"GREETING": greeting, "ENV": "from-cluster"}})
    };
    let params = PatchParams::apply("berth-tests").force();
    config_maps
        .patch("cluster-vars", &params, &Patch::Apply(vars("hello")))
        .await
        .expect("vars");
    put_secret(
        &app.client,
        berth_ns,
        "cluster-secret-vars",
        "PASSWORD",
        "pw-from-secret-9911",
    )
    .await;
    let settings = format!(
        "apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {ns}}}
data:
  greeting: ${{GREETING}}
  env: ${{ENV}}
  region: ${{REGION:=eu-west-1}}
  zone: ${{ZONE:-a}}
  password: ${{PASSWORD}}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: literal
  namespace: {ns}
  annotations: {{kustomize.toolkit.fluxcd.io/substitute: disabled}}
data:
  script: echo ${{HOME}} ${{X}}
"
    );
    app.repo.write("app/settings.yaml", &settings);
    app.repo.commit("settings");
    let (agent, _, _) = app.berth.agent_with(&[], &[], |_| {});
    let cms: Api<ConfigMap> = Api::namespaced(app.client.clone(), ns);
    let data = |name: &'static str| {
        let cms = cms.clone();
        async move { cms.get_opt(name).await.ok()??.data }
    };
    let first = eventually(Duration::from_secs(60), || data("settings"))
        .await
        .expect("settings synced");
    assert_eq!(first["greeting"], "hello");
    assert_eq!(first["env"], "prod", "vars wins over varsFrom");
    assert_eq!(
        (first["region"].as_str(), first["zone"].as_str()),
        ("eu-west-1", "a")
    );
    assert_eq!(first["password"], "pw-from-secret-9911");
    let literal = data("literal").await.expect("literal synced");
    assert_eq!(literal["script"], "echo ${HOME} ${X}");

    // a change to the ConfigMap applies again, with no new commit
    config_maps
        .patch("cluster-vars", &params, &Patch::Apply(vars("bonjour")))
        .await
        .expect("vars");
    let changed = eventually(Duration::from_secs(30), || async {
        let d = data("settings").await?;
        (d["greeting"] == "bonjour").then_some(())
    })
    .await;
    assert!(changed.is_some(), "a varsFrom change did not apply");

    // a value from a Secret is masked in diff (the agent stopped: it would apply the change)
    drop(agent);
    put_secret(
        &app.client,
        berth_ns,
        "cluster-secret-vars",
        "PASSWORD",
        "pw-rotated-9922",
    )
    .await;
    let diff = text(&app.berth.run(&["diff"]));
    assert!(diff.contains("ConfigMap/settings"), "{diff}");
    assert!(
        !diff.contains("pw-rotated-9922") && !diff.contains("pw-from-secret-9911"),
        "{diff}"
    );

    // a source that is not optional fails the sync, naming it
    config_maps
        .delete("cluster-vars", &Default::default())
        .await
        .expect("delete");
    let out = app.berth.run(&["sync", "--dry-run"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("ConfigMap {berth_ns}/cluster-vars does not exist")),
        "{said}"
    );
}
