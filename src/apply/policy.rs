//! Per-object apply policies that Argo CD and Flux users already write in their manifests, so
//! a repository moves over unchanged (pure). Pruning's opt-outs are in `prune::decide`.

use serde_json::Value;

use crate::object;
use crate::vocab;

fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object["metadata"]["annotations"][key].as_str()
}

/// Why an object is not to be applied at all this pass, when it is not: Flux's `ssa: Ignore`
/// (never applied), `ssa: IfNotPresent` and `reconcile: disabled` (created when missing, then
/// left alone; the latter also when the live object carries it).
pub(crate) fn hold(desired: &Value, live: Option<&Value>) -> Option<String> {
    let ssa = annotation(desired, vocab::FLUX_SSA);
    if ssa == Some("Ignore") {
        return Some(format!("{}: Ignore", vocab::FLUX_SSA));
    }
    live?;
    if ssa == Some("IfNotPresent") {
        return Some(format!("{}: IfNotPresent, and it exists", vocab::FLUX_SSA));
    }
    let disabled = [Some(desired), live]
        .into_iter()
        .flatten()
        .any(|o| annotation(o, vocab::FLUX_RECONCILE) == Some("disabled"));
    disabled.then(|| format!("{}: disabled", vocab::FLUX_RECONCILE))
}

/// Argo CD's `SkipDryRunOnMissingResource=true`: an object whose kind is not served yet waits
/// for the rest of the pass (whose CRDs or operators may bring the kind) instead of failing.
pub(crate) fn waits_for_kind(desired: &Value) -> bool {
    object::has_option(
        desired,
        vocab::ARGOCD_SYNC_OPTIONS,
        "SkipDryRunOnMissingResource=true",
    )
}

/// Whether an apply leaves fields other managers own to them (Flux's `ssa: Merge`) instead of
/// taking them over (the default, `Override`); a conflict then fails the object.
pub(crate) fn merge(desired: &Value) -> bool {
    annotation(desired, vocab::FLUX_SSA) == Some("Merge")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with(key: &str, value: &str) -> Value {
        json!({"kind": "ConfigMap", "metadata": {"name": "x", "annotations": {key: value}}})
    }

    #[test]
    fn flux_policies_hold_objects_back() {
        let plain = json!({"kind": "ConfigMap", "metadata": {"name": "x"}});
        assert_eq!(hold(&plain, Some(&plain)), None);
        let ignore = with(vocab::FLUX_SSA, "Ignore");
        assert!(hold(&ignore, None).is_some(), "never even created");
        let if_not_present = with(vocab::FLUX_SSA, "IfNotPresent");
        assert_eq!(hold(&if_not_present, None), None, "created when missing");
        assert!(hold(&if_not_present, Some(&plain)).is_some());
        let disabled = with(vocab::FLUX_RECONCILE, "disabled");
        assert_eq!(hold(&disabled, None), None);
        assert!(hold(&disabled, Some(&plain)).is_some());
        assert!(
            hold(&plain, Some(&disabled)).is_some(),
            "set by hand on the live object"
        );
        assert!(merge(&with(vocab::FLUX_SSA, "Merge")));
        assert!(!merge(&with(vocab::FLUX_SSA, "Override")));
    }

    #[test]
    fn argo_option_lists_are_comma_separated_and_trimmed() {
        let options = with(
            vocab::ARGOCD_SYNC_OPTIONS,
            "Prune=false, SkipDryRunOnMissingResource=true",
        );
        assert!(waits_for_kind(&options));
        assert!(object::has_option(
            &options,
            vocab::ARGOCD_SYNC_OPTIONS,
            "Prune=false"
        ));
        assert!(!waits_for_kind(&with(
            vocab::ARGOCD_SYNC_OPTIONS,
            "SkipDryRunOnMissingResource=false"
        )));
    }
}
