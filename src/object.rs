//! Object identity: which Kubernetes object a manifest, a live object or an inventory entry
//! is ([`ObjectId`]), and whether its kind is namespaced ([`Scope`]). Pure.

use std::fmt;

/// Identity of a Kubernetes object, independent of API version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ObjectId {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectId {
    /// The inventory key `<group>_<kind>_<namespace>_<name>`.
    pub(crate) fn key(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.group, self.kind, self.namespace, self.name
        )
    }

    /// Parses an inventory key.
    pub(crate) fn from_key(key: &str) -> Option<Self> {
        let mut parts = key.splitn(4, '_');
        Some(Self {
            group: parts.next()?.to_owned(),
            kind: parts.next()?.to_owned(),
            namespace: parts.next()?.to_owned(),
            name: parts.next()?.to_owned(),
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
