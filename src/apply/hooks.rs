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

/// The hook an object declares; an unknown phase is an error naming it.
///
/// # Errors
/// The annotation names a phase Argo CD does not define.
pub(crate) fn hook(object: &Value) -> Result<Hook, String> {
    let Some(text) = object["metadata"]["annotations"][vocab::ARGOCD_HOOK].as_str() else {
        return Ok(Hook::No);
    };
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

/// When a hook object is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeletePolicy {
    /// Delete an existing one before creating it again (the default when none is set).
    pub before_creation: bool,
    pub on_success: bool,
    pub on_failure: bool,
}

/// The deletion policy an object declares.
pub(crate) fn delete_policy(object: &Value) -> DeletePolicy {
    let text = object["metadata"]["annotations"][vocab::ARGOCD_HOOK_DELETE_POLICY]
        .as_str()
        .unwrap_or_default();
    let words: Vec<&str> = text.split(',').map(str::trim).collect();
    let has = |w: &str| words.contains(&w);
    let none = !["HookSucceeded", "HookFailed", "BeforeHookCreation"]
        .iter()
        .any(|w| has(w));
    DeletePolicy {
        before_creation: none || has("BeforeHookCreation"),
        on_success: has("HookSucceeded"),
        on_failure: has("HookFailed"),
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
    fn delete_policy_defaults_to_before_creation() {
        let none = delete_policy(&annotated(json!({})));
        assert!(none.before_creation && !none.on_success && !none.on_failure);
        let p = delete_policy(&annotated(
            json!({"argocd.argoproj.io/hook-delete-policy": "HookSucceeded,HookFailed"}),
        ));
        assert!(!p.before_creation && p.on_success && p.on_failure);
    }
}
