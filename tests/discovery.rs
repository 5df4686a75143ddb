//! How often a first sync of new CRDs reads discovery, against a real API server. A sync that
//! installed CRDs used to re-read discovery every 250 ms for 5 s when it had no custom
//! resources of them; the reads are counted from berth's own log of them, never timed.

mod common;

use std::process::Output;

use common::{App, crd_yaml, text, unique};
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};

/// Runs `berth sync` with its debug log as JSON, which must succeed and print `needle`;
/// returns the output and the groups of each discovery read it made, in order.
fn sync_counting_discovery(app: &App, needle: &str) -> (Output, Vec<Vec<String>>) {
    let mut cmd = app.berth.command(&["--log-format", "json", "sync"]);
    cmd.env("RUST_LOG", "warn,berth=debug");
    let out = cmd.output().expect("berth runs");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(needle),
        "{}",
        text(&out)
    );
    let reads = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("every line is JSON"))
        .filter(|event| event["message"] == "discovery read")
        .map(|event| {
            // the groups field is the Debug text of a list of strings
            let groups = event["groups"].as_str().expect("groups");
            serde_json::from_str(groups).expect("a list of group names")
        })
        .collect();
    (out, reads)
}

fn three_crds(group: &str) -> String {
    [("Gear", "gears"), ("Cog", "cogs"), ("Axle", "axles")]
        .iter()
        .map(|(kind, plural)| {
            crd_yaml(
                group,
                kind,
                plural,
                "{type: object, x-kubernetes-preserve-unknown-fields: true}",
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

#[tokio::test]
async fn a_first_sync_of_crds_alone_reads_discovery_once() {
    let app = App::new("").await;
    let group = format!("{}.example.com", unique("g"));
    app.repo.write("app/crds.yaml", &three_crds(&group));
    app.repo.commit("three CRDs");

    let (out, reads) = sync_counting_discovery(&app, "3 created");
    assert_eq!(
        reads.len(),
        1,
        "only the read the pass starts with: {reads:?}\n{}",
        text(&out)
    );
    assert!(
        reads[0].iter().any(|g| g == "apiextensions.k8s.io"),
        "{reads:?}"
    );
}

#[tokio::test]
async fn a_first_sync_of_crds_and_their_resources_applies_both_without_reading_discovery_again() {
    let app = App::new("").await;
    let group = format!("{}.example.com", unique("g"));
    app.repo.write("app/crds.yaml", &three_crds(&group)).write(
        "app/gear.yaml",
        &format!(
            "apiVersion: {group}/v1\nkind: Gear\nmetadata: {{name: first}}\nspec: {{teeth: 12}}\n"
        ),
    );
    app.repo.commit("three CRDs and a Gear");

    let (out, reads) = sync_counting_discovery(&app, "4 created");
    // the new kinds come from the Established CRDs themselves
    assert_eq!(reads.len(), 1, "{reads:?}\n{}", text(&out));
    assert!(
        reads[0].contains(&group),
        "the pass's groups include the Gear's: {reads:?}"
    );
    let gears =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(&group, "v1", "Gear"), "gears");
    let api: Api<DynamicObject> =
        Api::namespaced_with(app.client.clone(), &app.app_ns.name, &gears);
    let gear = api
        .get("first")
        .await
        .expect("the Gear was created in the same pass");
    assert_eq!(gear.data["spec"]["teeth"], 12);
}
