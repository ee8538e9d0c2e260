//! Certificates for the simulated cluster, minted with rcgen at start-up: a CA, a serving
//! certificate (IP SAN 127.0.0.1, DNS localhost) and client certificates (CN = user, O = group).
//!
//! May import: std, rcgen, rustls.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::io;

/// A PEM certificate with its PEM private key.
#[derive(Clone)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertKey { <redacted> }")
    }
}

/// The cluster's PKI.
pub struct Pki {
    pub ca_pem: String,
    ca_params: CertificateParams,
    ca_key: KeyPair,
    pub serving: CertKey,
}

fn err(e: rcgen::Error) -> io::Error {
    io::Error::other(format!("generating simulated-cluster certificates: {e}"))
}

fn validity(p: &mut CertificateParams) {
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2099, 1, 1);
}

impl Pki {
    /// Mint a fresh CA and serving certificate.
    pub fn generate() -> io::Result<Pki> {
        let ca_key = KeyPair::generate().map_err(err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kodama-sim-ca");
        ca_params.distinguished_name = dn;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut ca_params);
        let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
        let ca_pem = ca_cert.pem();

        let mut pki = Pki {
            ca_pem,
            ca_params,
            ca_key,
            serving: CertKey {
                cert_pem: String::new(),
                key_pem: String::new(),
            },
        };
        let key = KeyPair::generate().map_err(err)?;
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kube-apiserver");
        p.distinguished_name = dn;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut p);
        let cert = p.signed_by(&key, &pki.issuer()).map_err(err)?;
        pki.serving = CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(pki)
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.ca_params, &self.ca_key)
    }

    /// A client certificate for `user` in `group` (CN = user, O = group), signed by the CA.
    pub fn client_cert(&self, user: &str, group: &str) -> io::Result<CertKey> {
        let key = KeyPair::generate().map_err(err)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, user);
        dn.push(DnType::OrganizationName, group);
        p.distinguished_name = dn;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut p);
        let cert = p.signed_by(&key, &self.issuer()).map_err(err)?;
        Ok(CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Parse all certificates of a PEM bundle.
pub fn pem_certs(pem: &str) -> io::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad PEM certificate: {e:?}"),
            )
        })
}

/// Parse a PEM private key.
pub fn pem_key(pem: &str) -> io::Result<rustls::pki_types::PrivateKeyDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad PEM key: {e:?}")))
}

/// Extract (CN, [O]) from a DER certificate's subject. A minimal DER walk: the subject is the
/// 6th element of TBSCertificate (5th when the version is absent).
pub fn subject_cn_o(der: &[u8]) -> Option<(String, Vec<String>)> {
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *b.first()?;
        let l0 = *b.get(1)? as usize;
        let (len, hdr) = if l0 < 0x80 {
            (l0, 2)
        } else {
            let n = l0 & 0x7f;
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | *b.get(2 + i)? as usize;
            }
            (len, 2 + n)
        };
        let content = b.get(hdr..hdr + len)?;
        Some((tag, content, &b[hdr + len..]))
    }
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let mut fields = Vec::new();
    while !rest.is_empty() {
        let (tag, content, r) = tlv(rest)?;
        fields.push((tag, content));
        rest = r;
    }
    let offset = if fields.first()?.0 == 0xa0 { 1 } else { 0 };
    let subject = fields.get(offset + 4)?.1;
    let (mut cn, mut orgs) = (String::new(), Vec::new());
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (_, set, r) = tlv(rdns)?;
        rdns = r;
        let (_, atv, _) = tlv(set)?;
        let (_, oid, r2) = tlv(atv)?;
        let (_, val, _) = tlv(r2)?;
        let v = String::from_utf8_lossy(val).into_owned();
        match oid {
            [0x55, 0x04, 0x03] => cn = v,
            [0x55, 0x04, 0x0a] => orgs.push(v),
            _ => {}
        }
    }
    Some((cn, orgs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_cert_subject_is_readable() {
        let pki = Pki::generate().expect("pki");
        let ck = pki.client_cert("alice", "devs").expect("cert");
        let der = pem_certs(&ck.cert_pem).expect("parse");
        assert_eq!(
            subject_cn_o(&der[0]),
            Some(("alice".to_string(), vec!["devs".to_string()]))
        );
        assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(format!("{ck:?}").contains("redacted"));
    }
}
