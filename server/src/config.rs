//! Server configuration: a TOML file (optional) plus `PALMLINE_*` environment overrides.
//! With no file on a fresh machine everything lives under `./data/`.
//!
//! ```toml
//! listen = "0.0.0.0:8443"
//! currency = "EUR"
//! pin_threshold = "50.00"
//! session_ttl_secs = 300
//! lockout_after = 5
//! lockout_secs = 900
//! [tls]            # optional; defaults are the PKI files under DATA/pki/
//! ca = "/etc/palmline/ca.pem"
//! crl = "/etc/palmline/crl.pem"
//! cert = "/etc/palmline/server.pem"
//! key = "/etc/palmline/server.key"
//! ```
//! Under systemd, a `server.key` credential (`LoadCredential=`) is used as the TLS key.

use crate::api::ApiConfig;
use crate::pki::Pki;
use crate::tls::TlsPaths;
use anyhow::{bail, Context, Result};
use palmline_shared::{Currency, Money};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub currency: Option<String>,
    pub pin_threshold: Option<String>,
    pub session_ttl_secs: Option<u64>,
    pub lockout_after: Option<u32>,
    pub lockout_secs: Option<u64>,
    pub tls: Option<FileTls>,
    /// Template encryption key file (32 bytes, raw or hex). Default: DATA/template.key.
    pub template_key: Option<PathBuf>,
    /// Identification policy written by `palmline-lab calibrate` (relative to this file).
    pub palm_policy: Option<PathBuf>,
    /// Identification policy overrides (win over `palm_policy`).
    pub palm_accept_score: Option<u32>,
    pub palm_grey_score: Option<u32>,
    pub palm_margin: Option<u32>,
}

/// A policy file of `palmline-lab calibrate`: the three numbers, and how they were found
/// (kept for the operator, not read).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub accept: u32,
    pub grey: u32,
    pub margin: u32,
    pub calibration: Option<toml::Table>,
}

impl PolicyFile {
    pub fn load(path: &Path) -> Result<PolicyFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading palm policy {}", path.display()))?;
        let p: PolicyFile = toml::from_str(&text)
            .with_context(|| format!("parsing palm policy {}", path.display()))?;
        Ok(p)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    pub ca: Option<PathBuf>,
    pub crl: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Everything `serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: String,
    pub tls: TlsPaths,
    pub api: ApiConfig,
    pub template_key: PathBuf,
    pub palm: crate::palm::PalmPolicy,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl ServerConfig {
    /// Loads `config` (if given), then applies environment overrides.
    pub fn load(data_dir: &Path, config: Option<&Path>) -> Result<ServerConfig> {
        let file: FileConfig = match config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing config {}", p.display()))?
            }
            None => FileConfig::default(),
        };
        let currency_code = env("PALMLINE_CURRENCY")
            .or(file.currency)
            .unwrap_or_else(|| "EUR".into());
        let currency = Currency::from_code(&currency_code)?;
        let mut api = ApiConfig::defaults(currency);
        if let Some(t) = env("PALMLINE_PIN_THRESHOLD").or(file.pin_threshold) {
            api.pin_threshold = Money::parse_positive(&t, currency)
                .with_context(|| format!("pin_threshold {t:?}"))?;
        }
        if let Some(s) = env("PALMLINE_SESSION_TTL_SECS")
            .map(|v| v.parse::<u64>())
            .transpose()?
            .or(file.session_ttl_secs)
        {
            if !(10..=86_400).contains(&s) {
                bail!("session_ttl_secs must be 10-86400");
            }
            api.session_ttl = Duration::from_secs(s);
        }
        if let Some(n) = file.lockout_after {
            api.lockout_after = n.max(1);
        }
        if let Some(s) = file.lockout_secs {
            api.lockout = Duration::from_secs(s);
        }
        let listen = env("PALMLINE_LISTEN")
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8443".into());
        let mut tls = TlsPaths::from_pki(&Pki::new(data_dir));
        if let Some(t) = file.tls {
            tls.ca = t.ca.unwrap_or(tls.ca);
            tls.crl = t.crl.unwrap_or(tls.crl);
            tls.cert = t.cert.unwrap_or(tls.cert);
            tls.key = t.key.unwrap_or(tls.key);
        }
        if let Some(dir) = env("CREDENTIALS_DIRECTORY") {
            let cred = Path::new(&dir).join("server.key");
            if cred.exists() {
                tls.key = cred;
            }
        }
        let mut template_key = file
            .template_key
            .unwrap_or_else(|| data_dir.join("template.key"));
        if let Some(dir) = env("CREDENTIALS_DIRECTORY") {
            let cred = Path::new(&dir).join("template.key");
            if cred.exists() {
                template_key = cred;
            }
        }
        let mut palm = crate::palm::PalmPolicy::default();
        if let Some(rel) = &file.palm_policy {
            let base = config.and_then(Path::parent).unwrap_or(Path::new("."));
            let p = PolicyFile::load(&base.join(rel))?;
            (palm.accept, palm.grey, palm.margin) = (p.accept, p.grey, p.margin);
        }
        palm.accept = file.palm_accept_score.unwrap_or(palm.accept);
        palm.grey = file.palm_grey_score.unwrap_or(palm.grey);
        palm.margin = file.palm_margin.unwrap_or(palm.margin);
        if palm.accept < 2 || palm.grey < 1 || palm.grey > palm.accept {
            bail!(
                "palm policy: need 1 ≤ grey ≤ accept and accept ≥ 2 (got accept {}, grey {})",
                palm.accept,
                palm.grey
            );
        }
        Ok(ServerConfig {
            data_dir: data_dir.to_path_buf(),
            listen,
            tls,
            api,
            template_key,
            palm,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str) -> Result<ServerConfig> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.toml");
        std::fs::write(&p, toml).unwrap();
        ServerConfig::load(dir.path(), Some(&p))
    }

    #[test]
    fn reads_the_file_and_defaults_to_the_data_dir() {
        let c = load(
            "listen = \"0.0.0.0:9443\"\ncurrency = \"JPY\"\npin_threshold = \"5000\"\nsession_ttl_secs = 60\npalm_accept_score = 30\n[tls]\ncert = \"/etc/x.pem\"\n",
        )
        .unwrap();
        assert_eq!(c.listen, "0.0.0.0:9443");
        assert_eq!(c.api.currency.code(), "JPY");
        assert_eq!(c.api.pin_threshold.minor(), 5000);
        assert_eq!(c.api.session_ttl, Duration::from_secs(60));
        assert_eq!(c.palm.accept, 30);
        assert_eq!(c.tls.cert, PathBuf::from("/etc/x.pem"));
        assert!(c.tls.ca.ends_with("pki/ca.pem"));
        assert!(c.template_key.ends_with("template.key"));
    }

    #[test]
    fn refuses_mistakes() {
        assert!(load("lisen = \"x\"").is_err(), "unknown keys are typos");
        assert!(load("currency = \"XXX\"").is_err());
        assert!(load("pin_threshold = \"1.234\"").is_err());
        assert!(load("session_ttl_secs = 1").is_err());
        assert!(load("listen = ").is_err());
        assert!(load("palm_accept_score = 0").is_err(), "accepts every palm");
        assert!(load("palm_accept_score = 10\npalm_grey_score = 12").is_err());
    }

    #[test]
    fn reads_a_calibrated_policy_file_and_lets_explicit_settings_win() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("palm-policy.toml"),
            "accept = 31\ngrey = 14\nmargin = 5\n[calibration]\ngallery_size = 10000\n",
        )
        .unwrap();
        let p = dir.path().join("server.toml");
        std::fs::write(&p, "palm_policy = \"palm-policy.toml\"\n").unwrap();
        let c = ServerConfig::load(dir.path(), Some(&p)).unwrap();
        assert_eq!((c.palm.accept, c.palm.grey, c.palm.margin), (31, 14, 5));
        std::fs::write(&p, "palm_policy = \"palm-policy.toml\"\npalm_margin = 2\n").unwrap();
        let c = ServerConfig::load(dir.path(), Some(&p)).unwrap();
        assert_eq!((c.palm.accept, c.palm.margin), (31, 2));
        std::fs::write(dir.path().join("palm-policy.toml"), "accept = 31\n").unwrap();
        assert!(
            ServerConfig::load(dir.path(), Some(&p)).is_err(),
            "incomplete policy"
        );
    }
}
