//! Argo CD's resource hooks (pure): which objects are hooks, in which phases they run, and
//! when they are deleted.

use serde_json::Value;

use crate::vocab;

/// When a hook runs in a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before anything is applied; a failure stops the pass.
    PreSync,
    /// With the objects, after they are applied.
    Sync,
    /// After every object is applied and Healthy.
    PostSync,
    /// When the pass fails.
    SyncFail,
}

/// What a hook annotation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hook {
    /// Not a hook: an ordinary object.
    No,
    /// Never applied (`Skip`).
    Skip,
    /// Run in these phases.
    Runs(Vec<Phase>),
}

/// The hook an object declares: Argo CD's annotation, else Helm's mapped as Argo CD maps it
/// (Argo CD's wins when both are set). An unknown phase is an error naming it.
///
/// # Errors
/// The annotation names a phase Argo CD (or Helm) does not define.
pub(crate) fn hook(object: &Value) -> Result<Hook, String> {
    let annotations = &object["metadata"]["annotations"];
    if let Some(text) = annotations[vocab::ARGOCD_HOOK].as_str() {
        return argo_hook(text);
    }
    match annotations[vocab::HELM_HOOK].as_str() {
        Some(text) => helm_hook(text),
        None => Ok(Hook::No),
    }
}

fn argo_hook(text: &str) -> Result<Hook, String> {
    let mut phases = Vec::new();
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        phases.push(match word {
            "PreSync" => Phase::PreSync,
            "Sync" => Phase::Sync,
            "PostSync" => Phase::PostSync,
            "SyncFail" => Phase::SyncFail,
            "Skip" => return Ok(Hook::Skip),
            other => {
                return Err(format!(
                    "annotation {}: unknown phase {other:?} (PreSync, Sync, PostSync, SyncFail or Skip)",
                    vocab::ARGOCD_HOOK
                ));
            }
        });
    }
    Ok(if phases.is_empty() {
        Hook::No
    } else {
        Hook::Runs(phases)
    })
}

/// Helm's hooks as Argo CD runs them: install and upgrade hooks before and after the sync.
/// Delete, rollback and test hooks never run in a pass (berth deletes no release), so such
/// an object is skipped.
fn helm_hook(text: &str) -> Result<Hook, String> {
    let mut phases = Vec::new();
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let phase = match word {
            "pre-install" | "pre-upgrade" => Phase::PreSync,
            "post-install" | "post-upgrade" => Phase::PostSync,
            "pre-delete" | "post-delete" | "pre-rollback" | "post-rollback" | "test"
            | "test-success" => continue,
            other => {
                return Err(format!(
                    "annotation {}: unknown hook {other:?} (pre-install, pre-upgrade, \
                     post-install, post-upgrade, pre-delete, post-delete, pre-rollback, \
                     post-rollback or test)",
                    vocab::HELM_HOOK
                ));
            }
        };
        if !phases.contains(&phase) {
            phases.push(phase);
        }
    }
    Ok(if phases.is_empty() {
        Hook::Skip
    } else {
        Hook::Runs(phases)
    })
}

/// The order of a hook within its phase: Argo CD's sync wave, else Helm's hook weight (0 by
/// default); hooks of one weight keep their file order.
pub(crate) fn weight(object: &Value) -> i64 {
    let annotations = &object["metadata"]["annotations"];
    [
        vocab::WAVE,
        vocab::ARGOCD_SYNC_WAVE,
        vocab::HELM_HOOK_WEIGHT,
    ]
    .iter()
    .find_map(|k| annotations[*k].as_str()?.trim().parse().ok())
    .unwrap_or(0)
}

/// When a hook object is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeletePolicy {
    /// Delete an existing one before creating it again (the default when none is set).
    pub before_creation: bool,
    pub on_success: bool,
    pub on_failure: bool,
}

/// The deletion policy an object declares: Argo CD's annotation, else Helm's.
pub(crate) fn delete_policy(object: &Value) -> DeletePolicy {
    let annotations = &object["metadata"]["annotations"];
    let (text, words) = match (
        annotations[vocab::ARGOCD_HOOK_DELETE_POLICY].as_str(),
        annotations[vocab::HELM_HOOK_DELETE_POLICY].as_str(),
    ) {
        (Some(t), _) => (t, ["HookSucceeded", "HookFailed", "BeforeHookCreation"]),
        (None, Some(t)) => (t, ["hook-succeeded", "hook-failed", "before-hook-creation"]),
        (None, None) => ("", ["HookSucceeded", "HookFailed", "BeforeHookCreation"]),
    };
    let given: Vec<&str> = text.split(',').map(str::trim).collect();
    let has = |w: &str| given.contains(&w);
    let none = !words.iter().any(|w| has(w));
    DeletePolicy {
        before_creation: none || has(words[2]),
        on_success: has(words[0]),
        on_failure: has(words[1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn annotated(annotations: Value) -> Value {
        json!({"kind": "Job", "metadata": {"name": "migrate", "annotations": annotations}})
    }

    #[test]
    fn hook_phases_and_skip() {
        assert_eq!(hook(&annotated(json!({}))), Ok(Hook::No));
        let pre = annotated(json!({"argocd.argoproj.io/hook": "PreSync"}));
        assert_eq!(hook(&pre), Ok(Hook::Runs(vec![Phase::PreSync])));
        let both = annotated(json!({"argocd.argoproj.io/hook": "PreSync, PostSync"}));
        assert_eq!(
            hook(&both),
            Ok(Hook::Runs(vec![Phase::PreSync, Phase::PostSync]))
        );
        let skip = annotated(json!({"argocd.argoproj.io/hook": "Skip"}));
        assert_eq!(hook(&skip), Ok(Hook::Skip));
        let bad = annotated(json!({"argocd.argoproj.io/hook": "Presync"}));
        assert!(hook(&bad).is_err_and(|e| e.contains("\"Presync\"")));
    }

    #[test]
    fn helm_hooks_map_as_argo_cd_maps_them() {
        let helm = |v: &str| annotated(json!({"helm.sh/hook": v}));
        assert_eq!(
            hook(&helm("pre-install,pre-upgrade")),
            Ok(Hook::Runs(vec![Phase::PreSync]))
        );
        assert_eq!(
            hook(&helm("post-install")),
            Ok(Hook::Runs(vec![Phase::PostSync]))
        );
        assert_eq!(hook(&helm("test")), Ok(Hook::Skip));
        assert_eq!(hook(&helm("pre-delete")), Ok(Hook::Skip));
        assert!(hook(&helm("pre-instal")).is_err_and(|e| e.contains("\"pre-instal\"")));
        // Argo CD's annotation wins
        let both = annotated(
            json!({"helm.sh/hook": "pre-install", "argocd.argoproj.io/hook": "PostSync"}),
        );
        assert_eq!(hook(&both), Ok(Hook::Runs(vec![Phase::PostSync])));
        assert_eq!(weight(&annotated(json!({"helm.sh/hook-weight": "-2"}))), -2);
        assert_eq!(weight(&annotated(json!({}))), 0);
        let p = delete_policy(&annotated(
            json!({"helm.sh/hook-delete-policy": "hook-succeeded"}),
        ));
        assert!(!p.before_creation && p.on_success && !p.on_failure);
        let p = delete_policy(&annotated(
            json!({"helm.sh/hook-delete-policy": "before-hook-creation",
            "argocd.argoproj.io/hook-delete-policy": "HookFailed"}),
        ));
        assert!(!p.before_creation && p.on_failure, "Argo CD's policy wins");
    }

    #[test]
    fn delete_policy_defaults_to_before_creation() {
        let none = delete_policy(&annotated(json!({})));
        assert!(none.before_creation && !none.on_success && !none.on_failure);
        let p = delete_policy(&annotated(
            json!({"argocd.argoproj.io/hook-delete-policy": "HookSucceeded,HookFailed"}),
        ));
        assert!(!p.before_creation && p.on_success && p.on_failure);
    }
}
