//! The image users install, run as a cluster runs it: the image `tests/image.sh` builds, started
//! with podman against the test control plane through the in-cluster configuration (the
//! ServiceAccount's token, CA and namespace mounted where the kubelet mounts them,
//! `KUBERNETES_SERVICE_HOST`/`PORT`), with the user, the read-only root filesystem, the
//! capabilities, the volumes, the arguments, the probes and the grace period read from
//! `deploy/deployment.yaml`, and the mapping from `deploy/mapping.yaml` mounted as its
//! ConfigMap would be.
//!
//! Ignored in a plain `cargo test`: it needs the image. `tests/run.sh` runs it after
//! `tests/image.sh` (`BERTH_IMAGE=localhost/berth:test cargo test --test image -- --ignored`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{GitDaemon, Repo, client, free_address, namespace, unique};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{Api, PatchParams, PostParams};
use kube::discovery::Discovery;
use serde_json::Value;

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn manifests(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo_file(path)).expect("read deploy/");
    serde_saphyr::from_multiple(&text).expect("yaml")
}

/// podman as `tests/image.sh` runs it.
fn podman(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo_file("tests/image.sh"))
        .arg("podman")
        .args(args)
        .output()
        .expect("podman runs")
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The status of `GET url`, or None while nothing listens.
fn status_of(url: &str) -> Option<u16> {
    let host = url.strip_prefix("http://")?.split('/').next()?;
    std::net::TcpStream::connect(host).ok()?;
    Some(common::http("GET", url, &[], b"").0)
}

/// The Deployment's pod spec and its one container.
struct Shipped {
    pod: Value,
    container: Value,
}

impl Shipped {
    fn read() -> Self {
        let deployment = manifests("deploy/deployment.yaml")
            .into_iter()
            .find(|m| m["kind"] == "Deployment")
            .expect("deploy/deployment.yaml has a Deployment");
        let pod = deployment["spec"]["template"]["spec"].clone();
        let containers = pod["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "one container");
        let container = containers[0].clone();
        Self { pod, container }
    }

    /// The container port a probe's named port stands for.
    fn port(&self, name: &Value) -> u64 {
        if let Some(n) = name.as_u64() {
            return n;
        }
        self.container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == *name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port named {name}"))
    }

    fn mount_of(&self, volume: &str) -> String {
        self.container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["name"] == volume)
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_else(|| panic!("volume {volume} is not mounted"))
            .to_owned()
    }

    /// The grace period SIGTERM has, as the kubelet would give it.
    fn grace(&self) -> Duration {
        Duration::from_secs(
            self.pod["terminationGracePeriodSeconds"]
                .as_u64()
                .unwrap_or(30),
        )
    }
}

/// Writes a directory as the kubelet projects a ConfigMap volume: the keys as symlinks into
/// `..data`, itself a symlink to a timestamped directory.
fn configmap_volume(dir: &Path, data: &serde_json::Map<String, Value>) {
    let stamp = dir.join("..2026_12_07_00_00_00.000000001");
    std::fs::create_dir_all(&stamp).expect("mkdir");
    for (key, value) in data {
        std::fs::write(stamp.join(key), value.as_str().expect("text")).expect("write");
        std::os::unix::fs::symlink(format!("..data/{key}"), dir.join(key)).expect("symlink");
    }
    std::os::unix::fs::symlink(stamp.file_name().expect("name"), dir.join("..data"))
        .expect("symlink");
}

fn chown_65532(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "65532:65532"])
        .arg(path)
        .status()
        .expect("chown");
    assert!(status.success(), "chown {}", path.display());
}

/// Applies files of `deploy/` for real (server-side, forced), as README's install does.
async fn apply_deploy_files(client: &kube::Client, files: &[&str]) {
    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("discovery");
    let forced = PatchParams::apply("berth-tests").force();
    for m in files.iter().flat_map(|f| manifests(f)) {
        common::apply_manifest(client, &discovery, &m, &forced).await;
    }
}

/// The ServiceAccount volume: a bound token for `berth`, the cluster's CA and the namespace.
async fn service_account_volume(client: &kube::Client, dir: &Path, namespace: &str) {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request("berth", &PostParams::default(), &request)
        .await
        .expect("a token for the ServiceAccount berth");
    let token = token.status.expect("token status").token;
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("token"), token).expect("token");
    std::fs::copy(cluster_ca(), dir.join("ca.crt")).expect("ca.crt");
    std::fs::write(dir.join("namespace"), namespace).expect("namespace");
}

fn kubeconfig_cluster() -> Value {
    let text = std::fs::read_to_string(common::kubeconfig()).expect("kubeconfig");
    let config: Value = serde_saphyr::from_str(&text).expect("kubeconfig yaml");
    config["clusters"][0]["cluster"].clone()
}

fn cluster_ca() -> PathBuf {
    PathBuf::from(
        kubeconfig_cluster()["certificate-authority"]
            .as_str()
            .expect("the test kubeconfig names its CA file"),
    )
}

/// The API server's host and port, as the kubelet's environment names them.
fn api_server() -> (String, String) {
    let server = kubeconfig_cluster()["server"]
        .as_str()
        .expect("server")
        .to_owned();
    let rest = server.strip_prefix("https://").expect("https server");
    let (host, port) = rest.trim_end_matches('/').rsplit_once(':').expect("port");
    (host.to_owned(), port.to_owned())
}

/// The container's arguments from the manifest, with the listeners moved to free loopback
/// ports (the container shares the host's network, where the API server listens on loopback).
fn args_on(container: &Value, listen: &str, admin: &str) -> Vec<String> {
    container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| {
            let a = a.as_str().expect("text");
            if a.starts_with("--listen=") {
                format!("--listen={listen}")
            } else if a.starts_with("--admin-listen=") {
                format!("--admin-listen={admin}")
            } else {
                a.to_owned()
            }
        })
        .collect()
}

/// The podman flags for what the manifest's security contexts ask for.
fn security_flags(shipped: &Shipped) -> Vec<String> {
    let (pod, c) = (
        &shipped.pod["securityContext"],
        &shipped.container["securityContext"],
    );
    let user = pod["runAsUser"].as_u64().expect("runAsUser");
    let group = pod["runAsGroup"].as_u64().expect("runAsGroup");
    assert_eq!(
        pod["runAsNonRoot"], true,
        "the manifest asks for a non-root user"
    );
    let mut flags = vec![format!("--user={user}:{group}")];
    if let Some(fs) = pod["fsGroup"].as_u64() {
        flags.push(format!("--group-add={fs}"));
    }
    if c["readOnlyRootFilesystem"] == true {
        flags.push("--read-only".to_owned());
        // the kubelet mounts no writable /tmp either
        flags.push("--read-only-tmpfs=false".to_owned());
    }
    if c["allowPrivilegeEscalation"] == false {
        flags.push("--security-opt=no-new-privileges".to_owned());
    }
    for cap in c["capabilities"]["drop"].as_array().into_iter().flatten() {
        flags.push(format!("--cap-drop={}", cap.as_str().expect("cap")));
    }
    // RuntimeDefault is podman's default seccomp profile
    assert_eq!(pod["seccompProfile"]["type"], "RuntimeDefault");
    if let Some(memory) = memory_limit(&shipped.container) {
        flags.push(format!("--memory={memory}"));
    }
    flags
}

/// The container's memory limit as podman writes it (`256Mi` → `256m`).
fn memory_limit(container: &Value) -> Option<String> {
    let limit = container["resources"]["limits"]["memory"].as_str()?;
    Some(limit.replace("Mi", "m").replace("Gi", "g"))
}

fn image() -> String {
    std::env::var("BERTH_IMAGE")
        .expect("BERTH_IMAGE names the image tests/image.sh built (localhost/berth:test)")
}

#[tokio::test]
#[ignore = "needs the image tests/image.sh builds; tests/run.sh runs it with BERTH_IMAGE set"]
async fn the_image_syncs_a_repository_in_cluster_as_65532_read_only_and_stops_on_sigterm() {
    let image = image();
    let client = client().await;
    let shipped = Shipped::read();
    apply_deploy_files(&client, &["deploy/namespace.yaml", "deploy/rbac.yaml"]).await;
    let berth_ns = shipped.container["args"]
        .as_array()
        .expect("args")
        .iter()
        .find_map(|a| a.as_str()?.strip_prefix("--namespace="))
        .expect("the manifest names berth's namespace")
        .to_owned();

    // the repository the shipped mapping syncs, served by git daemon on loopback
    let target = namespace(&client, &unique("image")).await;
    let repo = Repo::new();
    let mapping_data = manifests("deploy/mapping.yaml")
        .into_iter()
        .find(|m| m["kind"] == "ConfigMap")
        .expect("deploy/mapping.yaml has the ConfigMap")["data"]
        .clone();
    let mut mapping: Value =
        serde_saphyr::from_str(mapping_data["berth.yaml"].as_str().expect("berth.yaml"))
            .expect("mapping yaml");
    let path = mapping["syncs"][0]["path"]
        .as_str()
        .expect("path")
        .to_owned();
    repo.write(
        &format!("{path}/settings.yaml"),
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: from-the-image, namespace: {}}}\ndata: {{built: by-podman}}\n",
            target.name
        ),
    );
    repo.commit("an app");
    let daemon = GitDaemon::start(&repo);
    mapping["repositories"][0]["url"] = Value::from(daemon.url.clone());
    let mut data = mapping_data.as_object().expect("data").clone();
    data.insert(
        "berth.yaml".to_owned(),
        Value::from(serde_json::to_string_pretty(&mapping).expect("json")),
    );

    // the volumes: the mapping as its ConfigMap, the cache as an emptyDir writable by fsGroup,
    // the ServiceAccount's token, CA and namespace
    let volumes = tempfile::tempdir().expect("tempdir");
    let (config_dir, cache_dir, sa_dir) = (
        volumes.path().join("mapping"),
        volumes.path().join("cache"),
        volumes.path().join("serviceaccount"),
    );
    configmap_volume(&config_dir, &data);
    std::fs::create_dir_all(&cache_dir).expect("mkdir");
    chown_65532(&cache_dir);
    service_account_volume(&client, &sa_dir, &berth_ns).await;
    chown_65532(&sa_dir);

    let (host, port) = api_server();
    let (listen, admin) = (free_address(), free_address());
    let name = unique("berth-image");
    let mut run: Vec<String> = vec![
        "run".into(),
        "--detach".into(),
        format!("--name={name}"),
        "--network=host".into(),
        format!("--env=KUBERNETES_SERVICE_HOST={host}"),
        format!("--env=KUBERNETES_SERVICE_PORT={port}"),
        format!("--env=POD_NAME={name}"),
        format!(
            "--volume={}:{}:ro",
            config_dir.display(),
            shipped.mount_of("mapping")
        ),
        format!(
            "--volume={}:{}",
            cache_dir.display(),
            shipped.mount_of("cache")
        ),
        format!("--volume={}:{SA_DIR}:ro", sa_dir.display()),
    ];
    run.extend(security_flags(&shipped));
    run.push(image.clone());
    run.extend(args_on(&shipped.container, &listen, &admin));
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    podman_ok(&run);
    let _removed = Removed(name.clone());

    // the probes, on the port the manifest names
    let http_port = shipped.port(&shipped.container["readinessProbe"]["httpGet"]["port"]);
    assert_eq!(
        Some(http_port),
        shipped.container["args"]
            .as_array()
            .and_then(|a| a.iter().find_map(|a| a.as_str()?.strip_prefix("--listen=")))
            .and_then(|l| l.rsplit_once(':')?.1.parse().ok()),
        "the probes' port is the one berth listens on"
    );
    let url = |probe: &str| {
        let path = shipped.container[probe]["httpGet"]["path"]
            .as_str()
            .expect("probe path");
        format!("http://{listen}{path}")
    };
    let logs = || {
        let out = podman(&["logs", &name]);
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
    };
    let ready = common::eventually(Duration::from_secs(60), || async {
        (status_of(&url("readinessProbe")) == Some(200)).then_some(())
    })
    .await;
    assert!(ready.is_some(), "/readyz never answered 200:\n{}", logs());
    assert_eq!(status_of(&url("livenessProbe")), Some(200), "/healthz");

    // the synced object is on the cluster, written by the ServiceAccount's identity
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &target.name);
    let synced = common::eventually(Duration::from_secs(60), || async {
        configmaps.get_opt("from-the-image").await.ok().flatten()
    })
    .await
    .unwrap_or_else(|| panic!("the repository was not synced:\n{}", logs()));
    assert_eq!(
        synced
            .data
            .as_ref()
            .and_then(|d| d.get("built"))
            .map(String::as_str),
        Some("by-podman")
    );
    let metrics = common::http("GET", &format!("http://{listen}/metrics"), &[], b"");
    assert_eq!(metrics.0, 200);
    assert!(
        metrics
            .1
            .contains("berth_syncs_total{sync=\"apps\",result=\"synced\"}"),
        "{}",
        metrics.1
    );

    // as the manifest's user, with a read-only root filesystem
    let user = podman_ok(&["top", &name, "huser", "hgroup"]);
    assert!(
        user.lines()
            .skip(1)
            .all(|l| l.split_whitespace().eq(["65532", "65532"])),
        "{user}"
    );
    let inspected: Value =
        serde_json::from_str(&podman_ok(&["inspect", &name])).expect("podman inspect");
    assert_eq!(inspected[0]["HostConfig"]["ReadonlyRootfs"], true);
    let log = logs();
    assert!(
        log.lines().all(|l| l.starts_with('{')),
        "--log-format=json: every line is JSON:\n{log}"
    );

    // SIGTERM: berth stops within the grace period, cleanly
    let grace = shipped.grace();
    let started = Instant::now();
    podman_ok(&["kill", "--signal=TERM", &name]);
    let code = podman_ok(&["wait", &name]);
    let took = started.elapsed();
    assert_eq!(code, "0", "exit code after SIGTERM:\n{}", logs());
    assert!(
        took < grace,
        "stopped after {took:?}, the grace period is {grace:?}"
    );
}

#[test]
#[ignore = "needs the image tests/image.sh builds; tests/run.sh runs it with BERTH_IMAGE set"]
fn the_image_holds_berth_its_libraries_ca_certificates_and_time_zone_data_only() {
    let image = image();
    let inspected: Value =
        serde_json::from_str(&podman_ok(&["image", "inspect", &image])).expect("inspect");
    assert_eq!(inspected[0]["Config"]["User"], "65532:65532");
    let container = podman_ok(&["create", &image]);
    let _removed = Removed(container.clone());
    let tar = tempfile::NamedTempFile::new().expect("tempfile");
    let tar_path = tar.path().to_str().expect("path").to_owned();
    podman_ok(&["export", "--output", &tar_path, &container]);
    let listing = Command::new("tar")
        .args(["-tf", &tar_path])
        .output()
        .expect("tar");
    let listing = String::from_utf8_lossy(&listing.stdout).to_string();
    // what berth links, as the host (the same Debian release) resolves it
    let ldd = Command::new("ldd")
        .arg(repo_file("target/release/berth"))
        .output()
        .expect("ldd");
    let libraries: Vec<String> = String::from_utf8_lossy(&ldd.stdout)
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            match words.as_slice() {
                [_, "=>", path, ..] if path.starts_with('/') => Some((*path).to_owned()),
                [path, ..] if path.starts_with('/') => Some((*path).to_owned()),
                _ => None,
            }
        })
        .map(|p| p.trim_start_matches('/').to_owned())
        .collect();
    assert!(libraries.len() >= 3, "{libraries:?}");
    // what podman itself adds to every container's root
    let runtime = [
        "dev/",
        "proc/",
        "sys/",
        "run/",
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
    ];
    let mut files = 0;
    for entry in listing.lines().map(|l| l.trim_start_matches("./")) {
        if entry.is_empty() || entry.ends_with('/') {
            continue;
        }
        files += 1;
        let known = entry == "usr/local/bin/berth"
            || libraries.iter().any(|l| l == entry)
            || entry.starts_with("usr/share/zoneinfo/")
            || entry == "etc/ssl/certs/ca-certificates.crt"
            || entry == "etc/passwd"
            || entry == "etc/group"
            || runtime.iter().any(|r| entry.starts_with(r) || entry == *r);
        assert!(
            known,
            "the image holds {entry}, which is none of berth's parts"
        );
    }
    for part in [
        "usr/local/bin/berth",
        "etc/ssl/certs/ca-certificates.crt",
        "usr/share/zoneinfo/UTC",
    ] {
        assert!(
            listing.lines().any(|l| l.trim_start_matches("./") == part),
            "no {part}"
        );
    }
    for lib in &libraries {
        assert!(
            listing.lines().any(|l| l.trim_start_matches("./") == lib),
            "no {lib}"
        );
    }
    assert!(files > 100, "{files} files");
}

/// Removes a container when the test ends, passed or not.
struct Removed(String);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time=0", &self.0]);
    }
}

/// README's in-cluster install, word for word, against the test cluster: every `kubectl` line
/// runs as written, with `--dry-run=server` added to each `kubectl apply` (so nothing is
/// installed), and the `IMAGE=` line sets the reference. The build-and-push line cannot run
/// without a registry; it must build this Dockerfile into `$IMAGE`.
#[tokio::test]
async fn readme_install_commands_apply_to_a_real_api_server() {
    // a server dry-run cannot place objects in a namespace it only pretended to create: the
    // namespace is made for real first, as the install's first apply would
    apply_deploy_files(&client().await, &["deploy/namespace.yaml"]).await;
    let readme = std::fs::read_to_string(repo_file("README.md")).expect("README.md");
    let section = readme
        .split_once("\n## Install on a cluster\n")
        .expect("README has the install section")
        .1;
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("the section starts with a sh block")
        .0;
    let lines: Vec<&str> = block.lines().collect();
    let build = lines
        .iter()
        .find(|l| l.starts_with("podman build"))
        .expect("a podman build line");
    assert!(
        build.contains("build -t \"$IMAGE\" . && podman push \"$IMAGE\""),
        "{build}"
    );
    assert!(lines[0].starts_with("IMAGE="), "the block sets IMAGE first");
    let script: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.starts_with("podman "))
        .collect();
    let kubectl = common::kubectl();
    let wrapper = format!(
        "set -euo pipefail\nkubectl() {{ if [ \"$1\" = apply ]; then {k} \"$@\" --dry-run=server; else {k} \"$@\"; fi; }}\n",
        k = kubectl.display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(wrapper + &script.join("\n"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KUBECONFIG", common::kubeconfig())
        .output()
        .expect("bash");
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for applied in [
        "namespace/berth-system",
        "clusterrole.rbac.authorization.k8s.io/berth",
        "configmap/berth-mapping",
        "service/berth",
        "deployment.apps/berth",
    ] {
        assert!(
            printed
                .lines()
                .any(|l| l.starts_with(applied) && l.ends_with("(server dry run)")),
            "{applied} was not applied:\n{printed}"
        );
    }
}

/// The reference `deploy/` names is the one README explains, and README's `kubectl set image`
/// names the Deployment's container.
#[test]
fn readme_explains_the_image_reference_deploy_names() {
    let shipped = Shipped::read();
    let reference = shipped.container["image"].as_str().expect("image");
    let readme = std::fs::read_to_string(repo_file("README.md")).expect("README.md");
    assert!(
        readme.contains(&format!("`deploy/deployment.yaml` names `{reference}`")),
        "README does not explain {reference}"
    );
    let name = shipped.container["name"].as_str().expect("name");
    assert!(
        readme.contains(&format!("deploy/deployment.yaml {name}=\"$IMAGE\"")),
        "README's set image does not name the container {name}"
    );
}
