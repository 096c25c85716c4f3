//! The kiosk's TOML configuration: server URL and certificate paths, what the screen says
//! (merchant name, currency, locale) and the camera to use. No cashier secret lives here:
//! cashiers sign in against the server.
//!
//! Invalid values are refused at load time with a message naming the field, so that a
//! misconfigured kiosk fails at start rather than at the first payment.

use anyhow::{bail, Context, Result};
use palmline_shared::money::Currency;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    #[serde(default)]
    pub kiosk: KioskConfig,
    #[serde(default)]
    pub camera: CameraConfig,
    /// Capture quality gate thresholds, for tuning to a camera and its lighting.
    #[serde(default)]
    pub quality: crate::quality::GateConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `https://host:port`.
    pub url: String,
    /// The server's CA (pinned: system roots are never trusted).
    pub ca: PathBuf,
    /// This kiosk's certificate chain (PEM).
    pub cert: PathBuf,
    /// This kiosk's private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// Per-attempt timeout of a request.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Extra attempts after a network failure (same idempotency key).
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_timeout_ms() -> u64 {
    5000
}
fn default_connect_timeout_ms() -> u64 {
    3000
}
fn default_retries() -> u32 {
    2
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KioskConfig {
    /// Shown on screens and receipts when the server does not name the merchant.
    pub merchant_display: String,
    /// ISO 4217 code amounts are keyed in.
    pub currency: String,
    /// `en` (1,234.50) or a comma locale like `de`, `fr`, `nl` (1.234,50).
    pub locale: String,
    /// No longer used: cashiers sign in with their own name and PIN, kept by the server
    /// (`palmline-admin cashier add`). Present only to refuse old files with a clear reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cashier_pin: Option<String>,
    /// Palm captures per enrollment, 3 to 5.
    pub enroll_captures: usize,
    /// Seconds of no touch before going back to idle.
    pub inactivity_secs: u64,
}

impl Default for KioskConfig {
    fn default() -> Self {
        KioskConfig {
            merchant_display: "Palmline Shop".into(),
            currency: "EUR".into(),
            locale: "en".into(),
            cashier_pin: None,
            enroll_captures: 3,
            inactivity_secs: 60,
        }
    }
}

/// Which camera source to use.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CameraSource {
    /// A real camera if one is found, else the simulated one.
    Auto,
    /// A V4L2/USB camera through nokhwa.
    Device,
    /// Synthetic palms.
    Simulated,
    /// Images from `folder`, in name order.
    Folder,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CameraConfig {
    pub source: CameraSource,
    /// Camera index (0 = /dev/video0).
    pub device: u32,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// For `source = "folder"`.
    pub folder: Option<PathBuf>,
}

impl Default for CameraConfig {
    fn default() -> Self {
        CameraConfig {
            source: CameraSource::Auto,
            device: 0,
            width: 640,
            height: 480,
            fps: 30,
            folder: None,
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let mut cfg: Config =
            toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?;
        // Relative certificate paths are relative to the config file.
        if let Some(dir) = path.parent() {
            for p in [
                &mut cfg.server.ca,
                &mut cfg.server.cert,
                &mut cfg.server.key,
            ] {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if !self.server.url.starts_with("https://") {
            bail!(
                "server.url must start with https:// (got {:?})",
                self.server.url
            );
        }
        self.currency()?;
        if !(3..=5).contains(&self.kiosk.enroll_captures) {
            bail!("kiosk.enroll_captures must be 3 to 5");
        }
        if self.kiosk.cashier_pin.is_some() {
            bail!(
                "kiosk.cashier_pin is gone: remove it; cashiers sign in with their own name and PIN, \
                 created on the server with `palmline-admin cashier add`"
            );
        }
        if self.camera.source == CameraSource::Folder && self.camera.folder.is_none() {
            bail!("camera.folder is required when camera.source = \"folder\"");
        }
        let q = &self.quality;
        let covers_ordered = (0.0..=1.0).contains(&q.no_hand_cover)
            && q.no_hand_cover <= q.min_cover
            && q.min_cover < q.max_cover
            && q.max_cover <= 1.0;
        if !covers_ordered {
            bail!("quality: need 0 <= no_hand_cover <= min_cover < max_cover <= 1");
        }
        if q.steady_frames == 0 {
            bail!("quality.steady_frames must be at least 1");
        }
        if !(0.0..1.0).contains(&q.min_sharpness) {
            bail!("quality.min_sharpness must be in 0..1 (a blur measure, not a gray level)");
        }
        if self.server.timeout_ms == 0 {
            bail!("server.timeout_ms must be positive");
        }
        Ok(())
    }

    pub fn currency(&self) -> Result<Currency> {
        Currency::from_code(&self.kiosk.currency)
            .with_context(|| format!("kiosk.currency {:?}", self.kiosk.currency))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.server.timeout_ms)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

/// Formats money for the screen in the configured locale: `€12.34` / `12,34 €`.
pub fn format_money(m: palmline_shared::money::Money, locale: &str) -> String {
    let amount = m.amount_string();
    let (neg, digits) = match amount.strip_prefix('-') {
        Some(rest) => ("-", rest.to_string()),
        None => ("", amount),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i.to_string(), Some(f.to_string())),
        None => (digits, None),
    };
    let comma = matches!(
        locale.split(['-', '_']).next().unwrap_or("en"),
        "de" | "fr" | "nl" | "es" | "it" | "pt" | "da" | "nb" | "sv" | "fi" | "pl" | "cs"
    );
    let (group, dec) = if comma { ('.', ',') } else { (',', '.') };
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(group);
        }
        grouped.push(c);
    }
    let number = match frac {
        Some(f) => format!("{grouped}{dec}{f}"),
        None => grouped,
    };
    let symbol = match m.currency().code() {
        "EUR" => "€",
        "USD" => "$",
        "GBP" => "£",
        "JPY" => "¥",
        _ => "",
    };
    match (symbol, comma) {
        ("", _) => format!("{neg}{number} {}", m.currency().code()),
        (s, true) => format!("{neg}{number} {s}"),
        (s, false) => format!("{neg}{s}{number}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palmline_shared::money::Money;

    const SAMPLE: &str = r#"
[server]
url = "https://127.0.0.1:8443"
ca = "pki/ca.pem"
cert = "/etc/palmline/kiosk.pem"
key = "/etc/palmline/kiosk.key"

[kiosk]
merchant_display = "Corner Shop"
currency = "EUR"
locale = "de"

[camera]
source = "simulated"

[quality]
min_sharpness = 0.45
"#;

    #[test]
    fn loads_and_resolves_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kiosk.toml");
        std::fs::write(&p, SAMPLE).unwrap();
        let cfg = Config::load(&p).unwrap();
        assert_eq!(cfg.server.ca, dir.path().join("pki/ca.pem"));
        assert_eq!(cfg.server.cert, PathBuf::from("/etc/palmline/kiosk.pem"));
        assert_eq!(cfg.server.retries, 2);
        assert_eq!(cfg.camera.source, CameraSource::Simulated);
        assert_eq!(cfg.camera.width, 640);
        assert_eq!(cfg.kiosk.enroll_captures, 3);
        assert_eq!(cfg.quality.min_sharpness, 0.45);
        assert_eq!(
            cfg.quality.steady_frames, 3,
            "unset fields keep their defaults"
        );
        // Round trip.
        let again: Config = toml::from_str(&cfg.to_toml()).unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn refuses_bad_values() {
        for (from, to) in [
            ("https://127", "http://127"),
            ("currency = \"EUR\"", "currency = \"XXX\""),
            ("source = \"simulated\"", "source = \"folder\""),
            ("locale = \"de\"", "locale = \"de\"\ncashier_pin = \"1234\""),
            ("locale = \"de\"", "locale = \"de\"\nenroll_captures = 7"),
            ("locale = \"de\"", "locale = \"de\"\nnonsense = 1"),
            ("min_sharpness = 0.45", "min_cover = 0.9"),
            ("min_sharpness = 0.45", "steady_frames = 0"),
            ("min_sharpness = 0.45", "min_sharpness = 3.5"),
        ] {
            let text = SAMPLE.replace(from, to);
            let parsed = toml::from_str::<Config>(&text)
                .map_err(anyhow::Error::from)
                .and_then(|c| c.validate());
            assert!(parsed.is_err(), "accepted: {to}");
        }
    }

    #[test]
    fn money_formats_by_locale() {
        let m = Money::from_minor(123456, Currency::EUR);
        assert_eq!(format_money(m, "en"), "€1,234.56");
        assert_eq!(format_money(m, "de-DE"), "1.234,56 €");
        let neg = Money::from_minor(-5, Currency::USD);
        assert_eq!(format_money(neg, "en"), "-$0.05");
        let chf = Money::from_minor(100000, Currency::from_code("CHF").unwrap());
        assert_eq!(format_money(chf, "en"), "1,000.00 CHF");
        let jpy = Money::from_minor(1500, Currency::from_code("JPY").unwrap());
        assert_eq!(format_money(jpy, "en"), "¥1,500");
    }
}
