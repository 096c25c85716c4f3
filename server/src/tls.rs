//! TLS for the server: rustls (ring) with client-certificate verification against the
//! Palmline CA and its CRL. A connection without a valid, unrevoked, unexpired client
//! certificate fails in the handshake, before any handler runs.

use crate::pki::Pki;
use anyhow::{anyhow, Context, Result};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// Installs ring as the process's one rustls crypto provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("no certificate in {}", path.display()));
    }
    Ok(certs)
}

pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("parsing {}", path.display()))?
        .ok_or_else(|| anyhow!("no private key in {}", path.display()))
}

pub fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(rustls_pemfile::crls(&mut pem.as_slice()).collect::<Result<Vec<_>, _>>()?)
}

/// Serial numbers (raw DER integer bytes) of every certificate the CRL file revokes. The
/// handshake already refuses them; the API also checks every request against this set, so
/// that a connection opened before a revocation cannot go on being used after it.
pub fn revoked_serials(path: &Path) -> Result<HashSet<Vec<u8>>> {
    let mut out = HashSet::new();
    for crl in read_crls(path)? {
        let (_, list) = x509_parser::parse_x509_crl(crl.as_ref())
            .map_err(|e| anyhow!("parsing the CRL {}: {e}", path.display()))?;
        out.extend(
            list.iter_revoked_certificates()
                .map(|r| r.raw_serial().to_vec()),
        );
    }
    Ok(out)
}

/// Paths of the TLS material (defaults: the PKI layout under the data dir).
#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub ca: std::path::PathBuf,
    pub crl: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl TlsPaths {
    pub fn from_pki(pki: &Pki) -> TlsPaths {
        TlsPaths {
            ca: pki.ca_cert_path(),
            crl: pki.crl_path(),
            cert: pki.server_cert_path(),
            key: pki.server_key_path(),
        }
    }
}

/// Builds the server's rustls configuration: our certificate, and client certificates
/// required, verified against the CA and the current CRL (end-entity revocation).
pub fn server_config(paths: &TlsPaths) -> Result<Arc<ServerConfig>> {
    install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in read_certs(&paths.ca)? {
        roots.add(ca).context("adding the CA certificate")?;
    }
    let crls = read_crls(&paths.crl)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .build()
        .context("building the client certificate verifier")?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(&paths.cert)?, read_key(&paths.key)?)
        .context("loading the server certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
