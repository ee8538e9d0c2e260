//! TLS for talking to the API server: one rustls `ClientConfig` (ring provider, TLS 1.2+) shared by the
//! HTTP client and the WebSocket dialer.
//!
//! Trust: only the kubeconfig's CA when one is given, the system roots otherwise. Like Go, a CA bundle
//! that holds the server's own leaf certificate is accepted (pinning fallback). `insecure-skip-tls-verify`
//! skips chain and name checks but still verifies the handshake signatures. X.509 v1 server
//! certificates (which webpki rejects) get an explanation. `tls-server-name` is handled by the caller
//! passing [`server_name`] to the connection, which sets both SNI and the verified name.
//!
//! May import: error, secret.

use std::sync::{Arc, Once};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// Server-side trust settings from the kubeconfig cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsSettings {
    /// PEM bundle of trusted CAs (from `certificate-authority-data` or the file it names).
    pub ca_pem: Option<Vec<u8>>,
    /// Where the CA came from, for error messages (a path or "certificate-authority-data").
    pub ca_source: String,
    /// `insecure-skip-tls-verify`.
    pub insecure: bool,
}

/// A client certificate chain and its key, both PEM.
#[derive(Clone, PartialEq)]
pub struct ClientCert {
    pub chain_pem: Vec<u8>,
    pub key_pem: Secret,
    /// Where they came from, for error messages.
    pub source: String,
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCert")
            .field("source", &self.source)
            .field("key_pem", &self.key_pem)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

static INSECURE_WARNING: Once = Once::new();

fn tls_err(message: impl Into<String>, hint: Option<&str>) -> Error {
    Error::Transport {
        message: message.into(),
        hint: hint.map(String::from),
    }
}

/// Parses every certificate in a PEM bundle.
pub fn parse_certs(pem: &[u8], source: &str) -> Result<Vec<CertificateDer<'static>>> {
    let mut out = Vec::new();
    for c in CertificateDer::pem_slice_iter(pem) {
        let c = c.map_err(|e| tls_err(format!("{source}: bad PEM certificate: {e}"), None))?;
        out.push(c);
    }
    if out.is_empty() {
        return Err(tls_err(
            format!("{source}: no PEM certificate found"),
            Some("the file must contain -----BEGIN CERTIFICATE----- blocks"),
        ));
    }
    Ok(out)
}

/// Parses a PEM private key (RSA PKCS#1, PKCS#8 or EC SEC1).
pub fn parse_key(pem: &Secret, source: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.expose().as_bytes()).map_err(|_| {
        tls_err(
            format!("{source}: no usable private key (expected an RSA, PKCS#8 or EC PEM key)"),
            None,
        )
    })
}

/// Builds the shared client config. `client` is the client certificate from the kubeconfig or an exec
/// plugin. ALPN offers only `http/1.1` (HTTP and WebSocket both need it).
pub fn client_config(s: &TlsSettings, client: Option<&ClientCert>) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    if s.insecure && s.ca_pem.is_some() {
        return Err(tls_err(
            "the cluster sets both a certificate authority and insecure-skip-tls-verify",
            Some("remove one of them from the kubeconfig (kubectl refuses this combination too)"),
        ));
    }
    let verifier: Arc<dyn ServerCertVerifier> = if s.insecure {
        INSECURE_WARNING.call_once(|| {
            eprintln!(
                "Warning: insecure-skip-tls-verify is set: the API server's certificate is not checked"
            );
        });
        Arc::new(InsecureVerifier {
            algs: provider.signature_verification_algorithms,
        })
    } else {
        let (roots, anchors) = match &s.ca_pem {
            Some(pem) => {
                let certs = parse_certs(pem, &s.ca_source)?;
                let mut store = RootCertStore::empty();
                let (added, _) = store.add_parsable_certificates(certs.iter().cloned());
                if added == 0 {
                    let v1 = certs.iter().any(|c| x509_version(c) == Some(1));
                    return Err(tls_err(
                        format!("{}: none of the CA certificates could be used", s.ca_source),
                        Some(if v1 {
                            "the CA certificate is X.509 v1, which rustls does not accept; re-issue it as v3"
                        } else {
                            "check that certificate-authority(-data) holds PEM CA certificates"
                        }),
                    ));
                }
                (store, certs.into_iter().map(|c| c.to_vec()).collect())
            }
            None => (system_roots()?, Vec::new()),
        };
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| tls_err(format!("cannot set up certificate verification: {e}"), None))?;
        Arc::new(KubeVerifier { inner, anchors })
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls_err(format!("TLS setup failed: {e}"), None))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match client {
        None => builder.with_no_client_auth(),
        Some(c) => {
            let chain = parse_certs(&c.chain_pem, &c.source)?;
            if let Some(leaf) = chain.first() {
                if x509_version(leaf) == Some(1) {
                    return Err(tls_err(
                        format!(
                            "{}: the client certificate is X.509 v1, which rustls cannot use",
                            c.source
                        ),
                        Some("re-issue the certificate as X.509 v3"),
                    ));
                }
            }
            let key = parse_key(&c.key_pem, &c.source)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                tls_err(
                    format!("{}: client certificate and key cannot be used: {e}", c.source),
                    Some(
                        "check that the key belongs to the certificate (P-521 keys are not supported)",
                    ),
                )
            })?
        }
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn system_roots() -> Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        return Err(tls_err(
            "the kubeconfig names no certificate authority and no system CA certificates were found",
            Some("add certificate-authority-data to the cluster, or install the system CA bundle (SSL_CERT_FILE)"),
        ));
    }
    Ok(store)
}

/// The name to verify the server against (and send as SNI): `tls-server-name` when set, else the URL
/// host. IP literals (IPv6 with or without brackets) become IP names, verified against IP SANs.
pub fn server_name(host: &str, tls_server_name: Option<&str>) -> Result<ServerName<'static>> {
    let name = tls_server_name.unwrap_or(host);
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    ServerName::try_from(bare.to_string())
        .map_err(|_| tls_err(format!("{name:?} is not a valid TLS server name"), None))
}

/// The X.509 version (1, 2 or 3) read from the DER, or None when it cannot be parsed.
pub fn x509_version(der: &[u8]) -> Option<u8> {
    fn header(b: &[u8]) -> Option<(u8, usize, usize)> {
        let tag = *b.first()?;
        let l0 = *b.get(1)? as usize;
        if l0 < 0x80 {
            return Some((tag, 2, l0));
        }
        let n = l0 & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        Some((tag, 2 + n, len))
    }
    let (t, h, _) = header(der)?;
    if t != 0x30 {
        return None;
    }
    let tbs = der.get(h..)?;
    let (t, h2, _) = header(tbs)?;
    if t != 0x30 {
        return None;
    }
    let first = tbs.get(h2..)?;
    if first.first() != Some(&0xA0) {
        return Some(1);
    }
    // [0] { INTEGER v }
    let (_, h3, _) = header(first)?;
    let int = first.get(h3..)?;
    let (t, h4, l) = header(int)?;
    if t != 0x02 || l != 1 {
        return None;
    }
    Some(int.get(h4)? + 1)
}

/// Chain verification with the kubeconfig CA, plus Go's leaf-in-bundle acceptance and a clear message
/// for X.509 v1 certificates.
#[derive(Debug)]
struct KubeVerifier {
    inner: Arc<WebPkiServerVerifier>,
    /// DER of every certificate in the configured CA bundle.
    anchors: Vec<Vec<u8>>,
}

impl ServerCertVerifier for KubeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(v) => Ok(v),
            Err(e) => {
                if self
                    .anchors
                    .iter()
                    .any(|a| a.as_slice() == end_entity.as_ref())
                {
                    // Go trusts any certificate in RootCAs, including the server's own leaf.
                    return Ok(ServerCertVerified::assertion());
                }
                if x509_version(end_entity) == Some(1) {
                    return Err(rustls::Error::General(
                        "the API server's certificate is X.509 v1, which rustls does not accept; \
                         re-issue it as v3 (with subjectAltName), or as a last resort set \
                         insecure-skip-tls-verify"
                            .into(),
                    ));
                }
                Err(e)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure-skip-tls-verify`: any certificate, but the handshake signatures are still checked so the
/// peer must hold the certificate's key.
#[derive(Debug)]
struct InsecureVerifier {
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for InsecureVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_for_hosts_ips_and_overrides() {
        assert!(matches!(
            server_name("10.0.0.1", None),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]", None),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("::1", None),
            Ok(ServerName::IpAddress(_))
        ));
        match server_name("10.0.0.1", Some("kubernetes")) {
            Ok(ServerName::DnsName(d)) => assert_eq!(d.as_ref(), "kubernetes"),
            other => panic!("{other:?}"),
        }
        assert!(server_name("bad name!", None).is_err());
    }

    #[test]
    fn ca_and_insecure_together_are_refused() {
        let s = TlsSettings {
            ca_pem: Some(b"x".to_vec()),
            ca_source: "ca".into(),
            insecure: true,
        };
        let e = client_config(&s, None).expect_err("refused");
        assert!(e.to_string().contains("insecure-skip-tls-verify"));
    }

    #[test]
    fn garbage_ca_is_a_clear_error() {
        let s = TlsSettings {
            ca_pem: Some(b"not pem".to_vec()),
            ca_source: "/k/ca.crt".into(),
            insecure: false,
        };
        let e = client_config(&s, None).expect_err("bad");
        assert!(
            e.to_string()
                .contains("/k/ca.crt: no PEM certificate found"),
            "{e}"
        );
    }

    #[test]
    fn x509_version_is_read_from_der() {
        // Minimal hand-built shapes: SEQ { SEQ { [0]{INTEGER 2} ... } } is v3, SEQ { SEQ { INTEGER } } v1.
        let v3 = [0x30, 0x08, 0x30, 0x06, 0xA0, 0x03, 0x02, 0x01, 0x02, 0x00];
        let v1 = [0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x07];
        assert_eq!(x509_version(&v3), Some(3));
        assert_eq!(x509_version(&v1), Some(1));
        assert_eq!(x509_version(&[0x01]), None);
    }
}
