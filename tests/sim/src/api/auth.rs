//! Authentication (bearer tokens, client certificates) and a small RBAC-like authoriser: the admin
//! and certificate users may do anything, the restricted user only inside its namespace. Denials are
//! formatted exactly like the real API server's RBAC Forbidden Status.
//!
//! May import: std, serde_json, api::util, api::certs.

use super::util::{random_token, ApiError};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;

/// The bearer-token administrator (group system:masters).
pub const ADMIN_USER: &str = "sim-admin";
/// The client-certificate user (CN), full access.
pub const CERT_USER: &str = "sim-cert-user";
/// The certificate user's group (O).
pub const CERT_GROUP: &str = "sim:developers";
/// The namespace-scoped bearer-token user.
pub const RESTRICTED_USER: &str = "sim-restricted";

/// Where a user may act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Namespace(String),
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
    pub scope: Scope,
}

/// What a request wants to do (RBAC attributes).
#[derive(Debug, Clone, Default)]
pub struct Attrs {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// For non-resource requests (discovery): the path.
    pub path: Option<String>,
}

struct Inner {
    /// token → user name
    tokens: HashMap<String, String>,
    users: HashMap<String, UserInfo>,
}

/// Users and their credentials. Tokens can be expired or rotated (fault injection).
pub struct Auth {
    inner: Mutex<Inner>,
}

impl Auth {
    /// The three built-in users; returns the auth store.
    pub fn new(restricted_namespace: &str) -> Auth {
        let mut users = HashMap::new();
        let mut tokens = HashMap::new();
        users.insert(
            ADMIN_USER.to_string(),
            UserInfo {
                name: ADMIN_USER.into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
                scope: Scope::All,
            },
        );
        users.insert(
            RESTRICTED_USER.to_string(),
            UserInfo {
                name: RESTRICTED_USER.into(),
                groups: vec!["system:authenticated".into()],
                scope: Scope::Namespace(restricted_namespace.into()),
            },
        );
        tokens.insert(random_token(), ADMIN_USER.to_string());
        tokens.insert(random_token(), RESTRICTED_USER.to_string());
        Auth {
            inner: Mutex::new(Inner { tokens, users }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current token of a token user.
    pub fn token_of(&self, user: &str) -> Option<String> {
        self.lock()
            .tokens
            .iter()
            .find(|(_, u)| u.as_str() == user)
            .map(|(t, _)| t.clone())
    }

    /// Invalidate every token of `user` (requests with it get 401).
    pub fn expire(&self, user: &str) {
        self.lock().tokens.retain(|_, u| u != user);
    }

    /// Replace `user`'s token with a fresh one (the old one gets 401); returns the new token.
    pub fn rotate(&self, user: &str) -> String {
        let t = random_token();
        let mut g = self.lock();
        g.tokens.retain(|_, u| u != user);
        g.tokens.insert(t.clone(), user.to_string());
        t
    }

    /// Authenticate from the client certificate's subject or the Authorization header.
    pub fn authenticate(
        &self,
        cert_subject: Option<(String, Vec<String>)>,
        authz: Option<&str>,
    ) -> Option<UserInfo> {
        let g = self.lock();
        if let Some((cn, orgs)) = cert_subject {
            if !cn.is_empty() {
                let mut groups = orgs;
                groups.push("system:authenticated".into());
                return Some(g.users.get(&cn).cloned().unwrap_or(UserInfo {
                    name: cn,
                    groups,
                    scope: Scope::All,
                }));
            }
        }
        let h = authz?;
        let (scheme, tok) = h.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let name = g.tokens.get(tok.trim())?;
        g.users.get(name).cloned()
    }
}

/// May `user` do `a`? Non-resource (discovery) requests are open to every authenticated user, as
/// with the default `system:discovery` binding.
pub fn allowed(user: &UserInfo, a: &Attrs) -> bool {
    if a.path.is_some() {
        return true;
    }
    match &user.scope {
        Scope::All => true,
        Scope::Namespace(ns) => {
            // SelfSubjectAccessReviews are allowed to everyone (system:basic-user).
            if a.group == "authorization.k8s.io" && a.resource.starts_with("selfsubject") {
                return true;
            }
            !a.namespace.is_empty() && &a.namespace == ns && a.resource != "namespaces"
                || (a.resource == "namespaces" && a.name == *ns && a.verb == "get")
        }
    }
}

/// The RBAC-style 403 for a denied request.
pub fn forbidden(user: &UserInfo, a: &Attrs) -> ApiError {
    let msg = match &a.path {
        Some(p) => format!("User {:?} cannot {} path {:?}", user.name, a.verb, p),
        None => {
            let mut res = a.resource.clone();
            if !a.subresource.is_empty() {
                res = format!("{res}/{}", a.subresource);
            }
            if a.namespace.is_empty() {
                format!(
                    "User {:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
                    user.name, a.verb, res, a.group
                )
            } else {
                format!(
                    "User {:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
                    user.name, a.verb, res, a.group, a.namespace
                )
            }
        }
    };
    let qualified = if a.group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let (message, mut details) = if a.path.is_some() {
        (format!("forbidden: {msg}"), json!({}))
    } else if a.name.is_empty() {
        (
            format!("{qualified} is forbidden: {msg}"),
            json!({"kind": a.resource}),
        )
    } else {
        (
            format!("{qualified} {:?} is forbidden: {msg}", a.name),
            json!({"name": a.name, "kind": a.resource}),
        )
    };
    if !a.group.is_empty() {
        details["group"] = json!(a.group);
    }
    ApiError::new(403, "Forbidden", message, Some(details))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(verb: &str, res: &str, ns: &str, name: &str) -> Attrs {
        Attrs {
            verb: verb.into(),
            resource: res.into(),
            namespace: ns.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn forbidden_messages_match_rbac() {
        let u = UserInfo {
            name: "x".into(),
            groups: vec![],
            scope: Scope::Namespace("y".into()),
        };
        let e = forbidden(&u, &attrs("list", "pods", "z", ""));
        assert_eq!(e.code, 403);
        assert_eq!(
            e.status["message"],
            r#"pods is forbidden: User "x" cannot list resource "pods" in API group "" in the namespace "z""#
        );
        let e = forbidden(&u, &attrs("list", "namespaces", "", ""));
        assert_eq!(
            e.status["message"],
            r#"namespaces is forbidden: User "x" cannot list resource "namespaces" in API group "" at the cluster scope"#
        );
        let mut a = attrs("get", "pods", "z", "web");
        a.subresource = "exec".into();
        assert_eq!(
            forbidden(&u, &a).status["message"],
            r#"pods "web" is forbidden: User "x" cannot get resource "pods/exec" in API group "" in the namespace "z""#
        );
    }

    #[test]
    fn scopes_and_tokens() {
        let auth = Auth::new("team");
        let tok = auth.token_of(RESTRICTED_USER).expect("token");
        let u = auth
            .authenticate(None, Some(&format!("Bearer {tok}")))
            .expect("user");
        assert!(allowed(&u, &attrs("create", "pods", "team", "")));
        assert!(!allowed(&u, &attrs("create", "pods", "default", "")));
        assert!(!allowed(&u, &attrs("list", "pods", "", "")));
        let new = auth.rotate(RESTRICTED_USER);
        assert!(auth
            .authenticate(None, Some(&format!("Bearer {tok}")))
            .is_none());
        assert!(auth
            .authenticate(None, Some(&format!("Bearer {new}")))
            .is_some());
        auth.expire(RESTRICTED_USER);
        assert!(auth
            .authenticate(None, Some(&format!("Bearer {new}")))
            .is_none());
        assert!(auth.authenticate(None, None).is_none());
        let c = auth
            .authenticate(Some(("bob".into(), vec!["g".into()])), None)
            .expect("cert user");
        assert_eq!(c.name, "bob");
        assert!(c.groups.contains(&"g".to_string()));
    }
}
