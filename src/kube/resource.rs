//! The API resources kodama uses and their URL paths.
//!
//! Pure.
//!
//! May import: kube::request (for escaping).

use crate::kube::request::escape_segment;

/// One API resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// API group ("" for core).
    pub group: &'static str,
    pub version: &'static str,
    /// Plural resource name used in URLs and RBAC.
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
}

pub const PODS: Resource = Resource {
    group: "",
    version: "v1",
    plural: "pods",
    kind: "Pod",
    namespaced: true,
};
pub const PERSISTENT_VOLUME_CLAIMS: Resource = Resource {
    group: "",
    version: "v1",
    plural: "persistentvolumeclaims",
    kind: "PersistentVolumeClaim",
    namespaced: true,
};
pub const CONFIG_MAPS: Resource = Resource {
    group: "",
    version: "v1",
    plural: "configmaps",
    kind: "ConfigMap",
    namespaced: true,
};
pub const SECRETS: Resource = Resource {
    group: "",
    version: "v1",
    plural: "secrets",
    kind: "Secret",
    namespaced: true,
};
pub const EVENTS: Resource = Resource {
    group: "",
    version: "v1",
    plural: "events",
    kind: "Event",
    namespaced: true,
};
pub const NAMESPACES: Resource = Resource {
    group: "",
    version: "v1",
    plural: "namespaces",
    kind: "Namespace",
    namespaced: false,
};
pub const SELF_SUBJECT_ACCESS_REVIEWS: Resource = Resource {
    group: "authorization.k8s.io",
    version: "v1",
    plural: "selfsubjectaccessreviews",
    kind: "SelfSubjectAccessReview",
    namespaced: false,
};

impl Resource {
    /// `/api/v1` or `/apis/<group>/<version>`.
    pub fn api_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// `apiVersion` as written in objects (`v1`, `authorization.k8s.io/v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The collection path. For a namespaced resource, `None` means all namespaces; for a
    /// cluster-scoped one the namespace is ignored.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!(
                "{}/namespaces/{}/{}",
                self.api_prefix(),
                escape_segment(ns),
                self.plural
            ),
            None => format!("{}/{}", self.api_prefix(), self.plural),
        }
    }

    /// The path of one object.
    pub fn item_path(&self, namespace: Option<&str>, name: &str) -> String {
        format!(
            "{}/{}",
            self.collection_path(namespace),
            escape_segment(name)
        )
    }

    /// The path of a subresource of one object (`exec`, `log`, `status`, ...).
    pub fn subresource_path(&self, namespace: Option<&str>, name: &str, sub: &str) -> String {
        format!("{}/{sub}", self.item_path(namespace, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_table() {
        let cases = [
            (
                PODS.collection_path(Some("dev")),
                "/api/v1/namespaces/dev/pods",
            ),
            (PODS.collection_path(None), "/api/v1/pods"),
            (
                PODS.item_path(Some("dev"), "web"),
                "/api/v1/namespaces/dev/pods/web",
            ),
            (
                PODS.subresource_path(Some("dev"), "web", "exec"),
                "/api/v1/namespaces/dev/pods/web/exec",
            ),
            (
                NAMESPACES.item_path(Some("ignored"), "dev"),
                "/api/v1/namespaces/dev",
            ),
            (
                SELF_SUBJECT_ACCESS_REVIEWS.collection_path(None),
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            ),
            (
                CONFIG_MAPS.item_path(Some("a b"), "x/y"),
                "/api/v1/namespaces/a%20b/configmaps/x%2Fy",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
        assert_eq!(
            SELF_SUBJECT_ACCESS_REVIEWS.api_version(),
            "authorization.k8s.io/v1"
        );
        assert_eq!(PERSISTENT_VOLUME_CLAIMS.api_version(), "v1");
    }
}
