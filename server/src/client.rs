//! An HTTPS client with a Palmline client certificate and the Palmline CA pinned (no system
//! roots): what the operator CLI, the tests and the benchmarks talk to the server with.

use crate::tls::{install_crypto_provider, read_certs, read_key};
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A rustls client configuration trusting only `ca` and presenting `cert` + `key`.
pub fn rustls_client_config(ca: &Path, cert: &Path, key: &Path) -> Result<rustls::ClientConfig> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(ca)? {
        roots.add(c).context("adding the CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
        .context("loading the client certificate")
}

pub fn mtls_client(ca: &Path, cert: &Path, key: &Path) -> Result<reqwest::Client> {
    let tls = rustls_client_config(ca, cert, key)?;
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()?)
}
