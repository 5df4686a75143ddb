//! Object identity: which Kubernetes object a manifest, a live object or an inventory entry
//! is ([`ObjectId`]), and whether its kind is namespaced ([`Scope`]). Pure.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Marks, after the kind, an inventory key whose name is base64url-encoded.
const ENCODED: &str = ".b64";

/// Identity of a Kubernetes object, independent of API version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ObjectId {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectId {
    /// The inventory key `<group>_<kind>_<namespace>_<name>`, a valid ConfigMap data key for
    /// every legal object name: a name with other characters than letters, digits, `-`, `.`
    /// and `_` (RBAC's `system:metrics-server`) is stored base64url-encoded, marked by `.b64`
    /// after the kind. Group, kind and namespace never hold such characters.
    pub(crate) fn key(&self) -> String {
        let plain = self
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if plain {
            format!(
                "{}_{}_{}_{}",
                self.group, self.kind, self.namespace, self.name
            )
        } else {
            let name = URL_SAFE_NO_PAD.encode(&self.name);
            format!(
                "{}_{}{ENCODED}_{}_{name}",
                self.group, self.kind, self.namespace
            )
        }
    }

    /// Parses an inventory key.
    pub(crate) fn from_key(key: &str) -> Option<Self> {
        let mut parts = key.splitn(4, '_');
        let (group, kind, namespace, name) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let (kind, name) = match kind.strip_suffix(ENCODED) {
            Some(kind) => {
                let bytes = URL_SAFE_NO_PAD.decode(name).ok()?;
                (kind, String::from_utf8(bytes).ok()?)
            }
            None => (kind, name.to_owned()),
        };
        Some(Self {
            group: group.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name,
        })
    }
}

impl fmt::Display for ObjectId {
    /// `Kind/name`, `Kind.group/name` or with `namespace/` in front, as kubectl prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.namespace.is_empty() {
            write!(f, "{}/", self.namespace)?;
        }
        if self.group.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}.{}/{}", self.kind, self.group, self.name)
        }
    }
}

/// The group part of an apiVersion (`apps/v1` → `apps`, `v1` → ``).
pub(crate) fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// Whether a kind is namespaced; `None` when unknown.
pub(crate) trait Scope {
    fn namespaced(&self, group: &str, kind: &str) -> Option<bool>;
}

/// Scopes known without a cluster: the built-in cluster-scoped kinds; everything else in a
/// well-known group is namespaced.
pub(crate) struct BuiltinScope;

const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("", "ComponentStatus"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("node.k8s.io", "RuntimeClass"),
    ("networking.k8s.io", "IngressClass"),
    ("policy", "PodSecurityPolicy"),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
];

const BUILTIN_GROUPS: &[&str] = &[
    "",
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "scheduling.k8s.io",
    "node.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "admissionregistration.k8s.io",
    "certificates.k8s.io",
    "flowcontrol.apiserver.k8s.io",
];

impl Scope for BuiltinScope {
    fn namespaced(&self, group: &str, kind: &str) -> Option<bool> {
        if CLUSTER_SCOPED.contains(&(group, kind)) {
            Some(false)
        } else if BUILTIN_GROUPS.contains(&group) {
            Some(true)
        } else {
            None
        }
    }
}

/// Whether an option-list annotation on `object` (Argo CD's `argocd.argoproj.io/sync-options`
/// or `compare-options`: comma-separated, white space trimmed) holds `option`.
pub(crate) fn has_option(object: &serde_json::Value, key: &str, option: &str) -> bool {
    object["metadata"]["annotations"][key]
        .as_str()
        .is_some_and(|list| list.split(',').any(|o| o.trim() == option))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(group: &str, kind: &str, namespace: &str, name: &str) -> ObjectId {
        ObjectId {
            group: group.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[test]
    fn every_legal_name_makes_a_valid_config_map_key_that_round_trips() {
        let valid = |k: &str| {
            k.len() <= 253
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        };
        for original in [
            id("", "ConfigMap", "app", "settings"),
            id(
                "rbac.authorization.k8s.io",
                "ClusterRole",
                "",
                "system:metrics-server",
            ),
            id("rbac.authorization.k8s.io", "Role", "app", "a_b:c@d é"),
            id("", "Secret", "app", "name_with_underscores"),
        ] {
            let key = original.key();
            assert!(valid(&key), "{key}");
            assert_eq!(ObjectId::from_key(&key), Some(original), "{key}");
        }
        assert_eq!(
            id("", "ConfigMap", "app", "settings").key(),
            "_ConfigMap_app_settings",
            "plain names keep the key they always had"
        );
    }
}
