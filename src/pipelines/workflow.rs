//! The pure part of a pipeline: which branches and changed paths launch, the names of runs, and
//! the Workflow object a launch creates ([`workflow`]) from the file in the source repository.

use serde_json::{Map, Value, json};
use sha2::Digest as _;

use super::Error;
use crate::config::{Pipeline, Repository, WorkflowSource};
use crate::git::Commit;
use crate::provider::PullRequest;
use crate::render::{yaml_documents, yaml_message};
use crate::vocab::{
    BASE_ANNOTATION, BRANCH_ANNOTATION, BRANCH_LABEL, LAUNCHED_ANNOTATION, MANAGED_BY,
    MANAGER_VALUE, PIPELINE_LABEL, PULL_REQUEST_LABEL, REPOSITORY_LABEL, REVISION,
    SUBJECT_ANNOTATION, TAG_ANNOTATION, TAG_LABEL,
};

/// What a run builds: a branch's head, a pull request's head, or a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trigger {
    Branch(String),
    Pull(PullRequest),
    Tag(String),
}

impl Trigger {
    /// The `branch` parameter: the branch, the pull request's source branch, or empty for a
    /// tag.
    pub(crate) fn branch(&self) -> &str {
        match self {
            Self::Branch(b) => b,
            Self::Pull(p) => &p.head_branch,
            Self::Tag(_) => "",
        }
    }

    /// The runs that share a concurrency group with this one.
    pub(crate) fn group(&self) -> Group {
        match self {
            Self::Branch(b) => Group::Branch(b.clone()),
            Self::Pull(p) => Group::Pull(p.number),
            Self::Tag(t) => Group::Tag(t.clone()),
        }
    }

    /// For messages: `main`, `pull request #3 (feature → main)`, `tag v1.2.0`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Branch(b) => b.clone(),
            Self::Pull(p) => format!(
                "pull request #{} ({} → {})",
                p.number, p.head_branch, p.base
            ),
            Self::Tag(t) => format!("tag {t}"),
        }
    }
}

/// A concurrency group of a pipeline's runs: one branch, one pull request, or one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Group {
    Branch(String),
    Pull(u64),
    Tag(String),
}

impl Group {
    /// The label selector of the group's runs of `pipeline`. A branch's runs leave out pull
    /// request and tag runs, which carry the branch label too (a pull request's source branch).
    pub(crate) fn selector(&self, pipeline: &str) -> String {
        match self {
            Self::Branch(b) => format!(
                "{PIPELINE_LABEL}={pipeline},{BRANCH_LABEL}={},!{PULL_REQUEST_LABEL},!{TAG_LABEL}",
                label_value(b)
            ),
            Self::Pull(n) => format!("{PIPELINE_LABEL}={pipeline},{PULL_REQUEST_LABEL}={n}"),
            Self::Tag(t) => format!("{PIPELINE_LABEL}={pipeline},{TAG_LABEL}={}", label_value(t)),
        }
    }
}

/// What one launch needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Launch<'a> {
    pub pipeline: &'a Pipeline,
    pub repository: &'a Repository,
    pub trigger: &'a Trigger,
    pub commit: &'a Commit,
    /// Namespace the Workflow goes to.
    pub namespace: &'a str,
    /// The Workflow's name.
    pub name: String,
    /// When it is launched (RFC 3339, nanoseconds).
    pub at: String,
}

/// A DNS-label name of at most 63 characters: the parts joined with `-`, shortened with a hash
/// of the whole when too long, so distinct inputs keep distinct names.
pub(crate) fn dns_name(parts: &[&str]) -> String {
    let full = parts.join("-");
    if full.len() <= 63 {
        return full;
    }
    let digest = sha2::Sha256::digest(full.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}-{hash}", full[..54].trim_end_matches('-'))
}

/// The deterministic name of a pipeline's run for a commit: `<pipeline>-<sha>` for a branch,
/// `<pipeline>-pr<N>-<sha>` for a pull request, `<pipeline>-<tag>-<sha>` for a tag. A manual
/// re-launch adds a suffix.
pub(crate) fn workflow_name(
    pipeline: &str,
    trigger: &Trigger,
    commit: &Commit,
    suffix: Option<&str>,
) -> String {
    let part = match trigger {
        Trigger::Branch(_) => None,
        Trigger::Pull(p) => Some(format!("pr{}", p.number)),
        Trigger::Tag(t) => Some(dns_part(t)),
    };
    let mut parts = vec![pipeline];
    parts.extend(part.as_deref());
    parts.push(commit.short());
    parts.extend(suffix);
    dns_name(&parts)
}

/// Any text as part of a DNS name: lowercase letters, digits and `-`, with a short hash of the
/// text when anything had to change, so `v1.2` and `v1-2` stay apart.
fn dns_part(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned.trim_matches('-');
    if cleaned == text {
        return cleaned.to_owned();
    }
    let digest = sha2::Sha256::digest(text.as_bytes());
    let hash: String = digest.iter().take(2).map(|b| format!("{b:02x}")).collect();
    format!("{cleaned}-{hash}")
}

/// A label value for any string: invalid characters become `-`, and long values are cut with a
/// hash.
pub(crate) fn label_value(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned();
    if cleaned.len() <= 63 && cleaned == s {
        return cleaned;
    }
    let digest = sha2::Sha256::digest(s.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let head: String = cleaned.chars().take(54).collect();
    let head = head.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if head.is_empty() {
        hash
    } else {
        format!("{head}-{hash}")
    }
}

/// Whether a branch is one of the pipeline's (names or globs).
pub(crate) fn branch_matches(patterns: &[String], branch: &str) -> bool {
    patterns.iter().any(|p| {
        p == branch
            || globset::Glob::new(p)
                .map(|g| g.compile_matcher().is_match(branch))
                .unwrap_or(false)
    })
}

/// Whether any changed path matches the pipeline's `paths` (always true without `paths`).
pub(crate) fn paths_match(patterns: &[String], changed: &[String]) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let mut builder = globset::GlobSetBuilder::new();
    for p in patterns {
        if let Ok(g) = globset::GlobBuilder::new(p).literal_separator(true).build() {
            builder.add(g);
        }
    }
    let Ok(set) = builder.build() else {
        return false;
    };
    changed.iter().any(|c| set.is_match(c))
}

/// Parses a workflow file; it must be one `argoproj.io/v1alpha1` `Workflow`.
///
/// # Errors
/// Unparseable, or not a Workflow.
pub(crate) fn parse_workflow(file: &str, revision: &str, content: &[u8]) -> Result<Value, Error> {
    let invalid = |message: String| Error::InvalidFile {
        file: file.to_owned(),
        revision: revision.to_owned(),
        message,
    };
    let text = std::str::from_utf8(content).map_err(|_| invalid("not UTF-8".to_owned()))?;
    let documents: Vec<(u64, Value)> = yaml_documents(text)
        .map_err(|e| {
            let line = e.location().map_or(1, |l| l.line());
            invalid(format!("line {line}: {}", yaml_message(&e)))
        })?
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .collect();
    let is_workflow = |v: &Value| {
        v["kind"] == "Workflow"
            && v["apiVersion"]
                .as_str()
                .is_some_and(|a| a.starts_with("argoproj.io/"))
    };
    let describe = |v: &Value| {
        let kind = v["kind"].as_str().unwrap_or_default();
        if kind.is_empty() {
            "no kind".to_owned()
        } else {
            format!("{} {kind}", v["apiVersion"].as_str().unwrap_or_default())
        }
    };
    let workflows: Vec<&(u64, Value)> = documents.iter().filter(|(_, v)| is_workflow(v)).collect();
    let value = match (workflows.as_slice(), documents.as_slice()) {
        ([(_, workflow)], _) => workflow.clone(),
        ([], []) => return Err(invalid("the file holds no document".to_owned())),
        ([], [(_, only)]) => {
            return Err(invalid(format!(
                "expected an argoproj.io/v1alpha1 Workflow, found {}",
                describe(only)
            )));
        }
        ([], all) => {
            let found: Vec<String> = all
                .iter()
                .map(|(line, v)| format!("{} (line {line})", describe(v)))
                .collect();
            return Err(invalid(format!(
                "expected an argoproj.io/v1alpha1 Workflow among its documents, found {}",
                found.join(", ")
            )));
        }
        (several, _) => {
            let lines: Vec<String> = several.iter().map(|(line, _)| line.to_string()).collect();
            return Err(invalid(format!(
                "holds {} Workflows (lines {}); which one to launch is ambiguous, keep one",
                several.len(),
                lines.join(", ")
            )));
        }
    };
    if !value["spec"].is_object() {
        return Err(invalid("the Workflow has no spec".to_owned()));
    }
    Ok(value)
}

/// Builds the Workflow to create: the file's spec (or a `workflowTemplateRef`), berth's name,
/// labels and annotations, and the commit facts as `spec.arguments.parameters`. Parameters the
/// file declares keep their values unless the mapping overrides them; `repo`, `revision`,
/// `short-sha` and `branch` always describe the commit. Nothing is substituted into text.
pub(crate) fn workflow(launch: &Launch<'_>, file: Option<&Value>) -> Value {
    let p = launch.pipeline;
    let mut spec = match (&p.source, file) {
        (WorkflowSource::Template(name), _) => json!({"workflowTemplateRef": {"name": name}}),
        (WorkflowSource::File(_), Some(f)) => f["spec"].clone(),
        (WorkflowSource::File(_), None) => json!({}),
    };
    let file_meta = file.map(|f| f["metadata"].clone()).unwrap_or(Value::Null);

    let mut params: Vec<Value> = spec["arguments"]["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut set = |name: &str, value: &str| match params.iter_mut().find(|v| v["name"] == name) {
        Some(existing) => {
            existing["value"] = Value::from(value);
            if let Some(o) = existing.as_object_mut() {
                o.remove("valueFrom");
            }
        }
        None => params.push(json!({"name": name, "value": value})),
    };
    for (name, value) in &p.parameters {
        set(name, value);
    }
    // never the credentials a mapping URL may carry
    set("repo", &launch.repository.url.without_userinfo());
    set("revision", &launch.commit.id);
    set("short-sha", launch.commit.short());
    set("branch", launch.trigger.branch());
    match launch.trigger {
        Trigger::Branch(_) => {}
        Trigger::Pull(pr) => {
            set("pr-number", &pr.number.to_string());
            set("pr-base-branch", &pr.base);
            set("pr-head-branch", &pr.head_branch);
        }
        Trigger::Tag(tag) => set("tag", tag),
    }
    spec["arguments"]["parameters"] = Value::Array(params);

    if let Some(sa) = &p.service_account {
        spec["serviceAccountName"] = Value::from(sa.clone());
    }
    for (key, value) in [
        ("ttlStrategy", &p.ttl_strategy),
        ("podGC", &p.pod_gc),
        ("artifactGC", &p.artifact_gc),
    ] {
        if let Some(v) = value
            && spec.get(key).is_none_or(Value::is_null)
        {
            spec[key] = v.clone();
        }
    }

    let (labels, annotations) = metadata(launch, &file_meta);
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": launch.name,
            "namespace": launch.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    })
}

/// A run's labels and annotations: the file's own, then berth's (what launched it, from which
/// repository, commit, branch, pull request or tag).
fn metadata(launch: &Launch<'_>, file_meta: &Value) -> (Map<String, Value>, Map<String, Value>) {
    let mut labels = file_meta["labels"].as_object().cloned().unwrap_or_default();
    labels.insert(MANAGED_BY.into(), Value::from(MANAGER_VALUE));
    labels.insert(
        PIPELINE_LABEL.into(),
        Value::from(launch.pipeline.name.clone()),
    );
    labels.insert(
        REPOSITORY_LABEL.into(),
        Value::from(launch.repository.name.clone()),
    );
    labels.insert(REVISION.into(), Value::from(launch.commit.id.clone()));
    let branch = launch.trigger.branch();
    if !branch.is_empty() {
        labels.insert(BRANCH_LABEL.into(), Value::from(label_value(branch)));
    }
    let mut annotations = file_meta["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    annotations.insert(BRANCH_ANNOTATION.into(), Value::from(branch));
    match launch.trigger {
        Trigger::Branch(_) => {}
        Trigger::Pull(pr) => {
            labels.insert(
                PULL_REQUEST_LABEL.into(),
                Value::from(pr.number.to_string()),
            );
            annotations.insert(BASE_ANNOTATION.into(), Value::from(pr.base.clone()));
        }
        Trigger::Tag(tag) => {
            labels.insert(TAG_LABEL.into(), Value::from(label_value(tag)));
            annotations.insert(TAG_ANNOTATION.into(), Value::from(tag.clone()));
        }
    }
    annotations.insert(
        SUBJECT_ANNOTATION.into(),
        Value::from(launch.commit.subject.clone()),
    );
    annotations.insert(LAUNCHED_ANNOTATION.into(), Value::from(launch.at.clone()));
    (labels, annotations)
}

/// The branch `berth trigger` launches when none is given: the pipeline's first branch that
/// is a plain name, else the repository's branch.
pub(crate) fn default_branch(pipeline: &Pipeline, repository: &Repository) -> String {
    pipeline
        .branches
        .iter()
        .find(|b| !b.contains(['*', '?', '[', '{']))
        .cloned()
        .unwrap_or_else(|| repository.branch.clone())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::Concurrency;

    fn pipeline() -> Pipeline {
        Pipeline {
            name: "web-ci".into(),
            repository: "web".into(),
            branches: vec!["main".into(), "release/*".into()],
            paths: vec![],
            tags: vec![],
            pull_requests: None,
            source: WorkflowSource::File(".argo/workflow.yaml".into()),
            namespace: Some("argo".into()),
            service_account: Some("ci".into()),
            parameters: BTreeMap::from([("image".into(), "registry/web".into())]),
            concurrency: Concurrency::Allow,
            ttl_strategy: Some(json!({"secondsAfterCompletion": 3600})),
            pod_gc: None,
            artifact_gc: Some(json!({"strategy": "OnWorkflowDeletion"})),
        }
    }

    fn repository() -> Repository {
        Repository {
            name: "web".into(),
            url: crate::repo_url::RepoUrl::parse("https://user:token@git.example.com/acme/web.git")
                .expect("url"),
            branch: "main".into(),
            interval: None,
            auth_secret: None,
            webhook_secret: None,
            provider: None,
            previews: false,
        }
    }

    fn commit() -> Commit {
        Commit {
            id: "0123456789abcdef0123456789abcdef01234567".into(),
            subject: "fix: the thing".into(),
        }
    }

    const FILE: &str = "apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: ci-
  labels: {team: web}
spec:
  entrypoint: main
  ttlStrategy: {secondsAfterSuccess: 60}
  arguments:
    parameters:
      - {name: image, value: from-file}
      - {name: registry, value: docker.io}
      - {name: revision, value: stale}
  templates:
    - name: main
      container: {image: alpine, args: ['{{workflow.parameters.revision}}']}
";

    #[test]
    fn workflow_carries_name_labels_annotations_and_parameters() {
        let (p, r, c) = (pipeline(), repository(), commit());
        let trigger = Trigger::Branch("release/1.2".into());
        let launch = Launch {
            pipeline: &p,
            repository: &r,
            trigger: &trigger,
            commit: &c,
            namespace: "argo",
            at: String::new(),
            name: workflow_name(&p.name, &trigger, &c, None),
        };
        let file =
            parse_workflow(".argo/workflow.yaml", "0123456", FILE.as_bytes()).expect("valid");
        let w = workflow(&launch, Some(&file));
        let meta = &w["metadata"];
        assert_eq!(meta["name"], "web-ci-0123456");
        assert!(meta.get("generateName").is_none());
        assert_eq!(meta["namespace"], "argo");
        assert_eq!(meta["labels"]["team"], "web");
        assert_eq!(meta["labels"][PIPELINE_LABEL], "web-ci");
        assert_eq!(meta["labels"][REPOSITORY_LABEL], "web");
        assert_eq!(meta["labels"]["berth.dev/revision"], c.id);
        assert_eq!(meta["labels"][BRANCH_LABEL], label_value("release/1.2"));
        assert!(label_value("release/1.2").starts_with("release-1.2-"));
        assert_eq!(meta["annotations"][BRANCH_ANNOTATION], "release/1.2");
        assert_eq!(meta["annotations"][SUBJECT_ANNOTATION], "fix: the thing");
        let params: BTreeMap<String, String> = w["spec"]["arguments"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().expect("name").into(),
                    p["value"].as_str().expect("value").into(),
                )
            })
            .collect();
        assert_eq!(params["repo"], "https://git.example.com/acme/web.git");
        assert_eq!(params["revision"], c.id);
        assert_eq!(params["short-sha"], "0123456");
        assert_eq!(params["branch"], "release/1.2");
        assert_eq!(
            params["image"], "registry/web",
            "the mapping overrides the file"
        );
        assert_eq!(
            params["registry"], "docker.io",
            "the file's own values stay"
        );
        assert_eq!(w["spec"]["serviceAccountName"], "ci");
        assert_eq!(
            w["spec"]["ttlStrategy"],
            json!({"secondsAfterSuccess": 60}),
            "the file's own wins"
        );
        assert_eq!(
            w["spec"]["artifactGC"],
            json!({"strategy": "OnWorkflowDeletion"})
        );
        assert_eq!(
            w["spec"]["templates"][0]["container"]["args"][0],
            "{{workflow.parameters.revision}}"
        );
    }

    #[test]
    fn pull_request_and_tag_runs_carry_their_parameters_labels_and_groups() {
        let (p, r, c) = (pipeline(), repository(), commit());
        let pr = Trigger::Pull(PullRequest {
            number: 7,
            base: "main".into(),
            head_branch: "feature/login".into(),
            head_sha: c.id.clone(),
        });
        let tag = Trigger::Tag("v1.2.0".into());
        let build = |trigger: &Trigger| {
            workflow(
                &Launch {
                    pipeline: &p,
                    repository: &r,
                    trigger,
                    commit: &c,
                    namespace: "argo",
                    name: "x".into(),
                    at: String::new(),
                },
                None,
            )
        };
        let params = |w: &Value| -> BTreeMap<String, String> {
            w["spec"]["arguments"]["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or_default().into(),
                        p["value"].as_str().unwrap_or_default().into(),
                    )
                })
                .collect()
        };
        let w = build(&pr);
        let got = params(&w);
        assert_eq!(
            (
                got["pr-number"].as_str(),
                got["pr-base-branch"].as_str(),
                got["pr-head-branch"].as_str(),
                got["branch"].as_str()
            ),
            ("7", "main", "feature/login", "feature/login")
        );
        assert!(!got.contains_key("tag"));
        assert_eq!(w["metadata"]["labels"][PULL_REQUEST_LABEL], "7");
        assert_eq!(w["metadata"]["annotations"][BASE_ANNOTATION], "main");
        let w = build(&tag);
        let got = params(&w);
        assert_eq!(
            (got["tag"].as_str(), got["branch"].as_str()),
            ("v1.2.0", "")
        );
        assert!(!got.contains_key("pr-number"));
        assert_eq!(w["metadata"]["labels"][TAG_LABEL], "v1.2.0");
        assert!(w["metadata"]["labels"].get(BRANCH_LABEL).is_none());
        assert_eq!(
            pr.group().selector("ci"),
            "berth.dev/pipeline=ci,berth.dev/pull-request=7"
        );
        assert_eq!(
            Trigger::Branch("main".into()).group().selector("ci"),
            "berth.dev/pipeline=ci,berth.dev/branch=main,!berth.dev/pull-request,!berth.dev/tag"
        );
        assert_eq!(tag.describe(), "tag v1.2.0");
        assert_eq!(pr.describe(), "pull request #7 (feature/login → main)");
    }

    #[test]
    fn template_pipelines_reference_the_template() {
        let mut p = pipeline();
        p.source = WorkflowSource::Template("build".into());
        let (r, c) = (repository(), commit());
        let trigger = Trigger::Branch("main".into());
        let launch = Launch {
            pipeline: &p,
            repository: &r,
            trigger: &trigger,
            commit: &c,
            namespace: "argo",
            name: "x".into(),
            at: String::new(),
        };
        let w = workflow(&launch, None);
        assert_eq!(w["spec"]["workflowTemplateRef"]["name"], "build");
        assert_eq!(
            w["spec"]["arguments"]["parameters"]
                .as_array()
                .map(Vec::len),
            Some(5)
        );
    }

    #[test]
    fn non_workflow_files_are_rejected_with_file_and_commit() {
        let err = parse_workflow("ci.yaml", "abc1234", b"apiVersion: v1\nkind: ConfigMap\n")
            .expect_err("not a workflow")
            .to_string();
        assert_eq!(
            err,
            "ci.yaml at commit abc1234: expected an argoproj.io/v1alpha1 Workflow, found v1 ConfigMap"
        );
        let err = parse_workflow("ci.yaml", "abc1234", b"kind: [")
            .expect_err("yaml")
            .to_string();
        assert!(
            err.starts_with("ci.yaml at commit abc1234: line 1"),
            "{err}"
        );
    }

    #[test]
    fn several_documents_launch_their_one_workflow_and_ambiguity_is_named() {
        let template = "apiVersion: argoproj.io/v1alpha1\nkind: WorkflowTemplate\nmetadata: {name: t}\nspec: {entrypoint: main}\n";
        for text in [
            format!("{FILE}---\n"),
            format!("---\n{FILE}---\n---\n"),
            format!("{template}---\n{FILE}"),
        ] {
            let w = parse_workflow("ci.yaml", "abc1234", text.as_bytes()).expect("one Workflow");
            assert_eq!(w["kind"], "Workflow");
            assert_eq!(w["spec"]["entrypoint"], "main");
        }
        let err = parse_workflow(
            "ci.yaml",
            "abc1234",
            format!("{FILE}---\n{FILE}").as_bytes(),
        )
        .expect_err("two")
        .to_string();
        assert!(err.contains("holds 2 Workflows (lines 1, 18)"), "{err}");
        let err = parse_workflow(
            "ci.yaml",
            "abc1234",
            format!("{template}---\n{template}").as_bytes(),
        )
        .expect_err("none")
        .to_string();
        assert!(
            err.contains("found argoproj.io/v1alpha1 WorkflowTemplate (line 1), argoproj.io/v1alpha1 WorkflowTemplate (line 6)"),
            "{err}"
        );
        let err = parse_workflow("ci.yaml", "abc1234", b"---\n")
            .expect_err("empty")
            .to_string();
        assert!(err.contains("no document"), "{err}");
        assert!(!err.contains("from_str"), "{err}");
    }

    #[test]
    fn names_are_dns_labels_even_when_long() {
        let c = commit();
        let main = Trigger::Branch("main".into());
        assert_eq!(workflow_name("web-ci", &main, &c, None), "web-ci-0123456");
        assert_eq!(
            workflow_name("web-ci", &main, &c, Some("a1b2c")),
            "web-ci-0123456-a1b2c"
        );
        let long = "p".repeat(52);
        let n = workflow_name(&long, &main, &c, Some("a1b2c"));
        assert!(n.len() <= 63, "{n}");
        assert_ne!(n, workflow_name(&long, &main, &c, Some("zzzzz")));
        let pr = Trigger::Pull(PullRequest {
            number: 12,
            base: "main".into(),
            head_branch: "feature/x".into(),
            head_sha: c.id.clone(),
        });
        assert_eq!(
            workflow_name("web-ci", &pr, &c, None),
            "web-ci-pr12-0123456"
        );
        let v = workflow_name("web-ci", &Trigger::Tag("v1.2.0".into()), &c, None);
        assert!(
            v.starts_with("web-ci-v1-2-0-") && v.ends_with("-0123456"),
            "{v}"
        );
        assert_ne!(
            v,
            workflow_name("web-ci", &Trigger::Tag("v1-2-0".into()), &c, None)
        );
        assert_eq!(
            workflow_name("web-ci", &Trigger::Tag("v2".into()), &c, None),
            "web-ci-v2-0123456"
        );
        assert_eq!(label_value("main"), "main");
        let l = label_value("feature/Ünïcode branch");
        assert!(
            l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{l}"
        );
    }

    #[test]
    fn branches_and_paths_match_globs() {
        let branches = vec!["main".to_owned(), "release/*".to_owned()];
        assert!(branch_matches(&branches, "main"));
        assert!(branch_matches(&branches, "release/1.0"));
        assert!(!branch_matches(&branches, "feature/x"));
        let paths = vec!["src/**".to_owned(), "Dockerfile".to_owned()];
        assert!(paths_match(&paths, &["src/main.rs".to_owned()]));
        assert!(paths_match(
            &paths,
            &["docs/a.md".to_owned(), "Dockerfile".to_owned()]
        ));
        assert!(!paths_match(&paths, &["docs/a.md".to_owned()]));
        assert!(!paths_match(&paths, &["sub/Dockerfile".to_owned()]));
        assert!(paths_match(&[], &[]));
    }
}
