//! Authentication: static bearer token, tokenFile (re-read about once a minute and after a 401), HTTP
//! basic, client certificates, impersonation headers, and exec credential plugins
//! (`client.authentication.k8s.io/v1` and `v1beta1`) with their credential cached until 60 s before it
//! expires. Legacy `auth-provider` entries are refused with the plugin to use instead.
//!
//! Tokens, passwords and keys are `Secret`s and never logged. The only I/O is reading the token file
//! and running the exec plugin.
//!
//! May import: error, secret, kube::kubeconfig, kube::tls.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::kube::kubeconfig::{ExecConfig, Impersonation, User};
use crate::kube::tls::ClientCert;
use crate::secret::Secret;

/// How long a token read from `tokenFile` is trusted before the file is read again (client-go: one
/// minute minus a 10 s leeway).
pub const TOKEN_FILE_PERIOD: Duration = Duration::from_secs(50);
/// An exec credential is refreshed this long before its expirationTimestamp (clock-skew margin).
pub const EXEC_EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// The resolved authentication settings for one user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthConfig {
    /// The kubeconfig user name (for messages).
    pub user_name: String,
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    pub basic: Option<(String, Secret)>,
    pub client_cert: Option<ClientCert>,
    pub impersonate: Impersonation,
    pub exec: Option<ExecConfig>,
}

fn read_pem_file(path: &std::path::Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::with_hint(
            format!("cannot read {what} {}: {e}", path.display()),
            "fix the path in the kubeconfig (relative paths are relative to the kubeconfig file)",
        )
    })
}

impl AuthConfig {
    /// Builds the settings from a kubeconfig user, reading certificate and key files now. Refuses
    /// legacy auth providers and contradictory combinations.
    pub fn from_user(user_name: &str, u: &User) -> Result<AuthConfig> {
        if let Some(p) = &u.auth_provider {
            if u.exec.is_none() {
                return Err(auth_provider_error(user_name, &p.name));
            }
        }
        let basic = match (&u.username, &u.password) {
            (Some(n), p) => Some((n.clone(), p.clone().unwrap_or_default())),
            (None, Some(_)) => {
                return Err(Error::with_hint(
                    format!("user {user_name:?} has a password but no username"),
                    "add username to the kubeconfig user",
                ))
            }
            (None, None) => None,
        };
        if basic.is_some() && (u.token.is_some() || u.token_file.is_some()) {
            return Err(Error::with_hint(
                format!("user {user_name:?} sets both a token and a username/password"),
                "keep only one authentication method in the kubeconfig user",
            ));
        }
        let chain = match (&u.client_certificate_data, &u.client_certificate) {
            (Some(d), _) => Some((d.clone(), "client-certificate-data".to_string())),
            (None, Some(p)) => Some((
                read_pem_file(p, "client certificate")?,
                p.display().to_string(),
            )),
            (None, None) => None,
        };
        let key = match (&u.client_key_data, &u.client_key) {
            (Some(d), _) => Some(d.clone()),
            (None, Some(p)) => {
                let b = read_pem_file(p, "client key")?;
                Some(Secret::new(String::from_utf8(b).map_err(|_| {
                    Error::msg(format!("client key {} is not PEM text", p.display()))
                })?))
            }
            (None, None) => None,
        };
        let client_cert = match (chain, key) {
            (Some((chain_pem, source)), Some(key_pem)) => Some(ClientCert {
                chain_pem,
                key_pem,
                source: format!("user {user_name:?} ({source})"),
            }),
            (None, None) => None,
            _ => {
                return Err(Error::with_hint(
                    format!("user {user_name:?} has a client certificate or key, but not both"),
                    "set client-certificate(-data) and client-key(-data) together",
                ))
            }
        };
        let imp = &u.impersonate;
        if imp.user.is_none()
            && (imp.uid.is_some() || !imp.groups.is_empty() || !imp.extra.is_empty())
        {
            return Err(Error::with_hint(
                format!("user {user_name:?} sets as-uid/as-groups/as-user-extra without as"),
                "set `as` to the user to impersonate",
            ));
        }
        Ok(AuthConfig {
            user_name: user_name.to_string(),
            token: u.token.clone(),
            token_file: u.token_file.clone(),
            basic,
            client_cert,
            impersonate: u.impersonate.clone(),
            exec: u.exec.clone(),
        })
    }
}

/// The error for a legacy `auth-provider` user.
pub fn auth_provider_error(user_name: &str, name: &str) -> Error {
    let instead = match name {
        "gcp" => "the gke-gcloud-auth-plugin exec plugin (`gcloud components install gke-gcloud-auth-plugin`, then `gcloud container clusters get-credentials`)",
        "azure" => "kubelogin (`az aks install-cli`, then `kubelogin convert-kubeconfig -l azurecli`)",
        "oidc" => "an exec plugin such as kubelogin / `kubectl oidc-login` (https://github.com/int128/kubelogin)",
        _ => "an exec credential plugin (users[].user.exec)",
    };
    Error::with_hint(
        format!(
            "user {user_name:?} uses the legacy auth-provider {name:?}, which kodama does not support"
        ),
        format!("switch the kubeconfig user to {instead}"),
    )
}

/// What to present on a request: an `Authorization` value and/or a client certificate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Credentials {
    pub authorization: Option<Secret>,
    pub client_cert: Option<ClientCert>,
}

/// A credential returned by an exec plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecCredential {
    pub token: Option<Secret>,
    pub client_cert: Option<ClientCert>,
    pub expires: Option<SystemTime>,
}

impl ExecCredential {
    /// True while the credential may still be used at `now` (60 s before expiry).
    pub fn fresh_at(&self, now: SystemTime) -> bool {
        match self.expires {
            None => true,
            Some(exp) => now + EXEC_EXPIRY_MARGIN < exp,
        }
    }
}

struct FileToken {
    value: Option<Secret>,
    read_at: Option<Instant>,
}

/// Produces credentials for requests; shared by every clone of a client.
pub struct Authenticator {
    cfg: AuthConfig,
    /// `spec.cluster` for exec plugins with provideClusterInfo.
    exec_cluster: Option<serde_json::Value>,
    file_token: Mutex<FileToken>,
    exec_cred: Mutex<Option<ExecCredential>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("user", &self.cfg.user_name)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Wraps the settings. Nothing is read or run until the first request.
    pub fn new(cfg: AuthConfig, exec_cluster: Option<serde_json::Value>) -> Authenticator {
        Authenticator {
            cfg,
            exec_cluster,
            file_token: Mutex::new(FileToken {
                value: None,
                read_at: None,
            }),
            exec_cred: Mutex::new(None),
        }
    }

    /// The settings.
    pub fn config(&self) -> &AuthConfig {
        &self.cfg
    }

    fn uses_exec(&self) -> bool {
        // client-go consults the exec plugin only when no token, basic or certificate is configured.
        self.cfg.exec.is_some()
            && self.cfg.token.is_none()
            && self.cfg.token_file.is_none()
            && self.cfg.basic.is_none()
            && self.cfg.client_cert.is_none()
    }

    /// True when a 401 may be cured by re-reading or re-running something.
    pub fn can_refresh(&self) -> bool {
        self.cfg.token_file.is_some() || self.uses_exec()
    }

    /// Forgets cached credentials after a 401 so the next call re-reads the token file or re-runs the
    /// exec plugin.
    pub fn invalidate(&self) {
        if let Ok(mut t) = self.file_token.lock() {
            t.read_at = None;
        }
        if let Ok(mut c) = self.exec_cred.lock() {
            *c = None;
        }
    }

    /// The credentials for the next request (may read the token file or run the exec plugin).
    pub fn credentials(&self) -> Result<Credentials> {
        let mut out = Credentials {
            authorization: None,
            client_cert: self.cfg.client_cert.clone(),
        };
        if let Some(path) = &self.cfg.token_file {
            let tok = self.file_token(path)?;
            out.authorization = Some(Secret::new(format!("Bearer {}", tok.expose())));
        } else if let Some(t) = &self.cfg.token {
            out.authorization = Some(Secret::new(format!("Bearer {}", t.expose().trim())));
        } else if let Some((user, pass)) = &self.cfg.basic {
            let raw = format!("{user}:{}", pass.expose());
            out.authorization = Some(Secret::new(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
            )));
        } else if self.uses_exec() {
            let cred = self.exec_credential()?;
            if let Some(t) = cred.token {
                out.authorization = Some(Secret::new(format!("Bearer {}", t.expose())));
            }
            if cred.client_cert.is_some() {
                out.client_cert = cred.client_cert;
            }
        }
        Ok(out)
    }

    /// The impersonation headers (never secret, but returned with the others as `Secret` for one
    /// header list).
    pub fn impersonation_headers(&self) -> Vec<(String, String)> {
        impersonation_headers(&self.cfg.impersonate)
    }

    fn file_token(&self, path: &PathBuf) -> Result<Secret> {
        let mut st = self
            .file_token
            .lock()
            .map_err(|_| Error::msg("token cache lock poisoned"))?;
        let stale = st.read_at.is_none_or(|t| t.elapsed() >= TOKEN_FILE_PERIOD);
        if stale || st.value.is_none() {
            match std::fs::read_to_string(path) {
                Ok(s) if !s.trim().is_empty() => {
                    st.value = Some(Secret::new(s.trim().to_string()));
                    st.read_at = Some(Instant::now());
                }
                Ok(_) if st.value.is_none() => {
                    return Err(Error::with_hint(
                        format!("token file {} is empty", path.display()),
                        "check tokenFile in the kubeconfig user",
                    ))
                }
                Err(e) if st.value.is_none() => {
                    return Err(Error::with_hint(
                        format!("cannot read token file {}: {e}", path.display()),
                        "check tokenFile in the kubeconfig user",
                    ))
                }
                // A failed re-read keeps the last good token.
                _ => st.read_at = Some(Instant::now()),
            }
        }
        st.value
            .clone()
            .ok_or_else(|| Error::msg(format!("no token in {}", path.display())))
    }

    fn exec_credential(&self) -> Result<ExecCredential> {
        let exec = self
            .cfg
            .exec
            .as_ref()
            .ok_or_else(|| Error::msg("no exec plugin configured"))?;
        let mut st = self
            .exec_cred
            .lock()
            .map_err(|_| Error::msg("exec credential lock poisoned"))?;
        if let Some(c) = st.as_ref() {
            if c.fresh_at(SystemTime::now()) {
                return Ok(c.clone());
            }
        }
        let cluster = if exec.provide_cluster_info {
            self.exec_cluster.as_ref()
        } else {
            None
        };
        let cred = run_exec_plugin(exec, cluster, &self.cfg.user_name)?;
        *st = Some(cred.clone());
        Ok(cred)
    }
}

/// `Impersonate-*` headers for the settings.
pub fn impersonation_headers(i: &Impersonation) -> Vec<(String, String)> {
    let mut h = Vec::new();
    let Some(user) = &i.user else {
        return h;
    };
    h.push(("Impersonate-User".to_string(), user.clone()));
    if let Some(uid) = &i.uid {
        h.push(("Impersonate-Uid".to_string(), uid.clone()));
    }
    for g in &i.groups {
        h.push(("Impersonate-Group".to_string(), g.clone()));
    }
    for (k, vs) in &i.extra {
        for v in vs {
            h.push((
                format!("Impersonate-Extra-{}", escape_extra_key(k)),
                v.clone(),
            ));
        }
    }
    h
}

/// Header names cannot hold every character of an extra key; client-go percent-encodes the rest.
fn escape_extra_key(k: &str) -> String {
    let mut out = String::new();
    for b in k.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&'*+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `KUBERNETES_EXEC_INFO` value.
pub fn exec_info(
    api_version: &str,
    interactive: bool,
    cluster: Option<&serde_json::Value>,
) -> String {
    let mut spec = serde_json::json!({ "interactive": interactive });
    if let Some(c) = cluster {
        spec["cluster"] = c.clone();
    }
    serde_json::json!({
        "kind": "ExecCredential",
        "apiVersion": api_version,
        "spec": spec,
    })
    .to_string()
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c != '\n' { '?' } else { c })
        .collect()
}

static STDIN_IN_USE: AtomicBool = AtomicBool::new(false);

/// Tells exec credential plugins that our stdin is busy (an interactive session or a tar upload reads
/// it): `IfAvailable` plugins then run without stdin and `Always` plugins fail instead of fighting the
/// session for input. Call with `false` when stdin is free again.
pub fn mark_stdin_in_use(in_use: bool) {
    STDIN_IN_USE.store(in_use, Ordering::SeqCst);
}

fn run_exec_plugin(
    exec: &ExecConfig,
    cluster: Option<&serde_json::Value>,
    user_name: &str,
) -> Result<ExecCredential> {
    let stdin_tty = std::io::stdin().is_terminal() && !STDIN_IN_USE.load(Ordering::SeqCst);
    let interactive = match exec.interactive_mode.as_str() {
        "Never" => false,
        "Always" => {
            if !stdin_tty {
                return Err(Error::with_hint(
                    format!(
                        "exec credential plugin {:?} needs an interactive terminal (interactiveMode: Always), but stdin is not one or is in use",
                        exec.command
                    ),
                    "run kodama from a terminal, or log in with the plugin first",
                ));
            }
            true
        }
        _ => stdin_tty,
    };
    let mut cmd = Command::new(&exec.command);
    cmd.args(&exec.args);
    for (k, v) in &exec.env {
        cmd.env(k, v.expose());
    }
    cmd.env(
        "KUBERNETES_EXEC_INFO",
        exec_info(&exec.api_version, interactive, cluster),
    );
    cmd.stdin(if interactive {
        Stdio::inherit()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped());
    cmd.stderr(Stdio::inherit());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let hint = match &exec.install_hint {
                Some(h) => sanitize(h),
                None => format!(
                    "install it, or fix users[{user_name:?}].user.exec.command in the kubeconfig"
                ),
            };
            return Err(Error::with_hint(
                format!("exec credential plugin {:?} was not found", exec.command),
                hint,
            ));
        }
        Err(e) => {
            return Err(Error::msg(format!(
                "cannot run exec credential plugin {:?}: {e}",
                exec.command
            )))
        }
    };
    let mut out = Vec::new();
    if let Some(mut so) = child.stdout.take() {
        so.read_to_end(&mut out)
            .map_err(|e| Error::msg(format!("reading from exec plugin {:?}: {e}", exec.command)))?;
    }
    let status = child
        .wait()
        .map_err(|e| Error::msg(format!("waiting for exec plugin {:?}: {e}", exec.command)))?;
    if !status.success() {
        let code = status
            .code()
            .map(|c| format!("exit code {c}"))
            .unwrap_or_else(|| "a signal".to_string());
        return Err(Error::with_hint(
            format!(
                "exec credential plugin {:?} failed with {code}",
                exec.command
            ),
            "its own message is above; run it by hand to check your login",
        ));
    }
    parse_exec_credential(&out, &exec.api_version, &exec.command)
}

#[derive(Deserialize)]
struct RawExecCredential {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    status: Option<RawExecStatus>,
}

#[derive(Deserialize)]
struct RawExecStatus {
    token: Option<Secret>,
    #[serde(rename = "clientCertificateData")]
    client_certificate_data: Option<String>,
    #[serde(rename = "clientKeyData")]
    client_key_data: Option<Secret>,
    #[serde(rename = "expirationTimestamp")]
    expiration_timestamp: Option<String>,
}

/// Parses and checks an `ExecCredential` printed by a plugin.
pub fn parse_exec_credential(
    out: &[u8],
    api_version: &str,
    command: &str,
) -> Result<ExecCredential> {
    let fail = |what: String| {
        Error::with_hint(
            format!("exec credential plugin {command:?} printed {what}"),
            "the plugin must print an ExecCredential JSON object on stdout",
        )
    };
    let raw: RawExecCredential = serde_json::from_slice(out)
        .map_err(|e| fail(format!("something that is not an ExecCredential ({e})")))?;
    if raw.kind.as_deref() != Some("ExecCredential") {
        return Err(fail(format!(
            "kind {:?}, not ExecCredential",
            raw.kind.unwrap_or_default()
        )));
    }
    let got = raw.api_version.unwrap_or_default();
    if got != api_version {
        return Err(fail(format!(
            "apiVersion {got:?}, but the kubeconfig asks for {api_version:?}"
        )));
    }
    let st = raw.status.ok_or_else(|| fail("no status".into()))?;
    let expires = match st.expiration_timestamp.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(ts) => Some(
            parse_rfc3339(ts)
                .ok_or_else(|| fail(format!("an invalid expirationTimestamp {ts:?}")))?,
        ),
    };
    let token = st.token.filter(|t| !t.is_empty());
    let client_cert = match (st.client_certificate_data, st.client_key_data) {
        (Some(c), Some(k)) if !c.is_empty() && !k.is_empty() => Some(ClientCert {
            chain_pem: c.into_bytes(),
            key_pem: k,
            source: format!("exec plugin {command:?}"),
        }),
        (None, None) => None,
        (Some(c), Some(k)) if c.is_empty() && k.is_empty() => None,
        _ => {
            return Err(fail(
                "only one of clientCertificateData and clientKeyData".into(),
            ))
        }
    };
    if token.is_none() && client_cert.is_none() {
        return Err(fail("neither a token nor a client certificate".into()));
    }
    Ok(ExecCredential {
        token,
        client_cert,
        expires,
    })
}

/// Parses an RFC 3339 timestamp (`2026-11-30T05:00:00Z`, fractional seconds and offsets allowed).
/// The crate's one RFC 3339 parser: `config::time::parse_rfc3339` delegates here (`kube` sits below
/// `config`, so the parser lives on this side).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    // Digits only: `parse` alone would take a sign ("2026-+1-30").
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &s[start..i];
        if frac.is_empty() {
            return None;
        }
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        nanos = digits.parse().ok()?;
    }
    let offset: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        b'+' | b'-' if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let sign = if b[i] == b'+' { 1 } else { -1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + h * 3600 + mi * 60 + sec - offset;
    if secs < 0 {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_secs(secs as u64) + Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_table() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2026-11-30T05:00:00Z", Some(1_796_014_800)),
            ("2026-11-30T06:00:00+01:00", Some(1_796_014_800)),
            ("2026-11-30T04:30:00-00:30", Some(1_796_014_800)),
            ("2000-02-29T12:00:00.5Z", Some(951_825_600)),
            ("2026-13-01T00:00:00Z", None),
            ("2026-11-30 05:00:00", None),
            ("yesterday", None),
            ("2026-+1-30T05:00:00Z", None),
            ("2026-11-30T05:00:00+1:000", None),
        ];
        for &(s, want) in cases {
            let got = parse_rfc3339(s)
                .map(|t| t.duration_since(UNIX_EPOCH).expect("after epoch").as_secs());
            assert_eq!(got, want, "{s}");
        }
    }

    const V1: &str = "client.authentication.k8s.io/v1";

    #[test]
    fn exec_credential_parsing_table() {
        let ok_token = br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"token":"t0k","expirationTimestamp":"2030-01-01T00:00:00Z"}}"#;
        let c = parse_exec_credential(ok_token, V1, "p").expect("ok");
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("t0k"));
        assert!(c.expires.is_some());

        let ok_cert = br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"clientCertificateData":"CERT","clientKeyData":"KEY"}}"#;
        let c = parse_exec_credential(ok_cert, V1, "p").expect("ok");
        assert_eq!(
            c.client_cert.as_ref().map(|c| c.chain_pem.clone()),
            Some(b"CERT".to_vec())
        );
        assert_eq!(c.expires, None);

        let bad: &[(&[u8], &str)] = &[
            (b"not json", "not an ExecCredential"),
            (br#"{"kind":"Foo","apiVersion":"client.authentication.k8s.io/v1","status":{"token":"x"}}"#, "kind \"Foo\""),
            (br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","status":{"token":"x"}}"#, "apiVersion"),
            (br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1"}"#, "no status"),
            (br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{}}"#, "neither a token"),
            (br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"clientKeyData":"k"}}"#, "only one of"),
            (br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"token":"x","expirationTimestamp":"soon"}}"#, "invalid expirationTimestamp"),
        ];
        for (text, want) in bad {
            let e = parse_exec_credential(text, V1, "my-plugin").expect_err(want);
            let s = e.to_string();
            assert!(s.contains(want) && s.contains("my-plugin"), "{s}");
            assert!(!s.contains("\"x\""), "token never in errors: {s}");
        }
    }

    #[test]
    fn exec_credential_expiry_has_a_margin() {
        let now = SystemTime::now();
        let c = |secs: u64| ExecCredential {
            token: None,
            client_cert: None,
            expires: Some(now + Duration::from_secs(secs)),
        };
        assert!(c(3600).fresh_at(now));
        assert!(!c(59).fresh_at(now), "inside the 60 s margin → refresh");
        assert!(ExecCredential {
            token: None,
            client_cert: None,
            expires: None
        }
        .fresh_at(now));
    }

    #[test]
    fn exec_info_payloads() {
        assert_eq!(
            exec_info(V1, false, None),
            r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#
        );
        let with = exec_info(V1, true, Some(&serde_json::json!({"server": "https://k"})));
        assert!(
            with.contains(r#""cluster":{"server":"https://k"}"#),
            "{with}"
        );
    }

    #[test]
    fn impersonation_header_table() {
        let mut i = Impersonation {
            user: Some("alice".into()),
            uid: Some("42".into()),
            groups: vec!["dev".into(), "ops".into()],
            ..Default::default()
        };
        i.extra
            .insert("scopes.example/x y".into(), vec!["a".into(), "b".into()]);
        let h = impersonation_headers(&i);
        let want: Vec<(String, String)> = [
            ("Impersonate-User", "alice"),
            ("Impersonate-Uid", "42"),
            ("Impersonate-Group", "dev"),
            ("Impersonate-Group", "ops"),
            ("Impersonate-Extra-scopes.example%2Fx%20y", "a"),
            ("Impersonate-Extra-scopes.example%2Fx%20y", "b"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(h, want);
        assert!(impersonation_headers(&Impersonation::default()).is_empty());
    }

    fn user() -> User {
        User::default()
    }

    #[test]
    fn auth_config_validation() {
        let mut u = user();
        u.auth_provider = Some(crate::kube::kubeconfig::AuthProvider { name: "gcp".into() });
        let e = AuthConfig::from_user("me", &u).expect_err("legacy");
        assert!(e.to_string().contains("auth-provider \"gcp\""));
        assert!(e.render().contains("gke-gcloud-auth-plugin"));

        let mut u = user();
        u.token = Some(Secret::new("t"));
        u.username = Some("bob".into());
        assert!(AuthConfig::from_user("me", &u).is_err(), "token + basic");

        let mut u = user();
        u.client_certificate_data = Some(b"c".to_vec());
        assert!(AuthConfig::from_user("me", &u)
            .expect_err("no key")
            .to_string()
            .contains("not both"));

        let mut u = user();
        u.client_certificate = Some(PathBuf::from("/nonexistent/c.crt"));
        u.client_key_data = Some(Secret::new("k"));
        assert!(AuthConfig::from_user("me", &u)
            .expect_err("missing file")
            .to_string()
            .contains("/nonexistent/c.crt"));
    }

    #[test]
    fn static_credentials_and_basic() {
        let mut u = user();
        u.username = Some("bob".into());
        u.password = Some(Secret::new("pw"));
        let a = Authenticator::new(AuthConfig::from_user("me", &u).expect("ok"), None);
        let c = a.credentials().expect("creds");
        // base64("bob:pw")
        assert_eq!(
            c.authorization.as_ref().map(Secret::expose),
            Some("Basic Ym9iOnB3")
        );
        assert!(!a.can_refresh());
        assert!(!format!("{c:?}").contains("Ym9i"));
    }

    #[test]
    fn token_file_is_reread_after_invalidate_and_wins_over_token() {
        let dir = std::env::temp_dir().join(format!("kodama-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("token");
        std::fs::write(&f, "first\n").expect("write");
        let mut u = user();
        u.token = Some(Secret::new("static"));
        u.token_file = Some(f.clone());
        let a = Authenticator::new(AuthConfig::from_user("me", &u).expect("ok"), None);
        let get = || {
            a.credentials()
                .expect("c")
                .authorization
                .expect("auth")
                .expose()
                .to_string()
        };
        assert_eq!(get(), "Bearer first");
        std::fs::write(&f, "second").expect("write");
        assert_eq!(get(), "Bearer first", "cached within the period");
        a.invalidate();
        assert_eq!(get(), "Bearer second");
        // A failed re-read keeps the last good token.
        std::fs::remove_file(&f).expect("rm");
        a.invalidate();
        assert_eq!(get(), "Bearer second");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn always_interactive_plugin_refuses_when_stdin_is_busy() {
        mark_stdin_in_use(true);
        let mut u = user();
        u.exec = Some(ExecConfig {
            api_version: V1.into(),
            command: "kodama-never-run".into(),
            interactive_mode: "Always".into(),
            ..Default::default()
        });
        let a = Authenticator::new(AuthConfig::from_user("me", &u).expect("ok"), None);
        let e = a.credentials().expect_err("busy stdin");
        mark_stdin_in_use(false);
        assert!(
            e.to_string().contains("needs an interactive terminal"),
            "{e}"
        );
    }

    #[test]
    fn missing_exec_plugin_names_command_and_install_hint() {
        let mut u = user();
        u.exec = Some(ExecConfig {
            api_version: V1.into(),
            command: "kodama-no-such-plugin".into(),
            interactive_mode: "Never".into(),
            install_hint: Some("brew install kodama-plugin\u{1b}[31m".into()),
            ..Default::default()
        });
        let a = Authenticator::new(AuthConfig::from_user("me", &u).expect("ok"), None);
        let e = a.credentials().expect_err("missing");
        assert!(
            e.to_string()
                .contains("\"kodama-no-such-plugin\" was not found"),
            "{e}"
        );
        let r = e.render();
        assert!(
            r.contains("brew install kodama-plugin?[31m"),
            "sanitized hint: {r}"
        );
    }
}
