//! Server configuration: a TOML file (optional) plus `PALMLINE_*` environment overrides.
//! With no file on a fresh machine everything lives under `./data/`.
//!
//! ```toml
//! listen = "0.0.0.0:8443"
//! database = "postgres://palmline@db.example:5432/palmline"  # default: SQLite in DATA/palmline.db
//! currency = "EUR"
//! pin_threshold = "50.00"
//! session_ttl_secs = 300
//! cashier_session_secs = 900     # a cashier's sign-in (the kiosk drops it sooner when idle)
//! lockout_after = 5              # wrong guesses in a row at one kiosk before it locks
//! lockout_secs = 900             # first lock; doubles with each lock of the day
//! lockout_max_secs = 86400       # longest lock
//! max_guesses_per_day = 10       # wrong guesses per secret per account per UTC day
//! no_pin_session_limit = "100.00"
//! no_pin_daily_limit = "200.00"
//! identify_per_kiosk_per_minute = 30
//! identify_per_merchant_per_minute = 300
//! argon2_concurrency = 2         # default: the number of cores
//! matcher_threads = 2            # default: the number of cores
//! idempotency_retention_days = 30  # then a retried request runs as a new one
//! scan_retention_days = 365      # the palm-scan log
//! log_format = "json"            # or "text" (the default); --log-format wins
//! max_connections = 1024         # open at once; one more is closed before its handshake
//! handshake_timeout_secs = 10    # TLS handshake, client certificate included
//! header_timeout_secs = 10       # request line and headers (slow clients: slowloris)
//! request_timeout_secs = 30      # a whole request, body and handler included (then 408)
//! [tls]            # optional; defaults are the PKI files under DATA/pki/
//! ca = "/etc/palmline/ca.pem"
//! crl = "/etc/palmline/crl.pem"
//! cert = "/etc/palmline/server.pem"
//! key = "/etc/palmline/server.key"
//! ```
//! Under systemd, a `server.key` credential (`LoadCredential=`) is used as the TLS key.

use crate::api::ApiConfig;
use crate::pki::Pki;
use crate::retention::Retention;
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
    /// `postgres://…` (or `postgresql://…`) for PostgreSQL; unset or `"sqlite"` for SQLite.
    pub database: Option<String>,
    pub currency: Option<String>,
    pub pin_threshold: Option<String>,
    pub session_ttl_secs: Option<u64>,
    pub cashier_session_secs: Option<u64>,
    pub lockout_after: Option<u32>,
    pub lockout_secs: Option<u64>,
    pub lockout_max_secs: Option<u64>,
    pub max_guesses_per_day: Option<u32>,
    pub no_pin_session_limit: Option<String>,
    pub no_pin_daily_limit: Option<String>,
    pub identify_per_kiosk_per_minute: Option<u32>,
    pub identify_per_merchant_per_minute: Option<u32>,
    pub argon2_concurrency: Option<usize>,
    pub matcher_threads: Option<usize>,
    pub idempotency_retention_days: Option<u64>,
    pub scan_retention_days: Option<u64>,
    /// `"text"` (the default) or `"json"`: one JSON object per log line.
    pub log_format: Option<String>,
    pub max_connections: Option<usize>,
    pub handshake_timeout_secs: Option<u64>,
    pub header_timeout_secs: Option<u64>,
    pub request_timeout_secs: Option<u64>,
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
    /// Where the ledger lives.
    pub database: Database,
    pub listen: String,
    pub tls: TlsPaths,
    pub api: ApiConfig,
    pub template_key: PathBuf,
    pub palm: crate::palm::PalmPolicy,
    /// How long idempotency records and the palm-scan log are kept.
    pub retention: Retention,
    /// How `serve` writes its log lines.
    pub log_format: LogFormat,
    /// Connection, handshake, header and request limits.
    pub conn: crate::conn::ConnLimits,
}

/// How `serve` writes its log lines (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (tracing-subscriber's default format).
    #[default]
    Text,
    /// One JSON object per line, with the fields of the enclosing spans (the request id).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("log_format must be \"text\" or \"json\"".into()),
        }
    }
}

/// Where the ledger lives: SQLite in the data dir (the default) or a PostgreSQL database.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Database {
    /// `DATA/palmline.db`.
    #[default]
    Sqlite,
    /// A `postgres://` or `postgresql://` URL (tokio-postgres syntax).
    Postgres(String),
}

impl Database {
    /// `"sqlite"`, or a PostgreSQL URL; anything else is refused naming what is accepted.
    /// Errors never repeat the value (it may hold a password).
    pub fn parse(s: &str) -> Result<Database> {
        let s = s.trim();
        if s == "sqlite" {
            return Ok(Database::Sqlite);
        }
        let Some((scheme, _)) = s.split_once("://") else {
            bail!("database must be a postgres://… URL or \"sqlite\" (the default: DATA/palmline.db); the value given is neither");
        };
        if scheme != "postgres" && scheme != "postgresql" {
            bail!("database URL scheme {scheme:?} is not supported: use postgres:// or postgresql://, or \"sqlite\" (the default)");
        }
        s.parse::<tokio_postgres::Config>()
            .map_err(|e| anyhow::anyhow!("database URL is not a valid postgres:// URL: {e}"))?;
        Ok(Database::Postgres(s.to_string()))
    }
}

/// For logs and errors: a PostgreSQL URL with its password hidden.
impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite => f.write_str("sqlite"),
            Database::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// `scheme://user:secret@host/…` → `scheme://user:***@host/…`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
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
        ServerConfig::from_file(data_dir, file, config.and_then(Path::parent))
    }

    /// A configuration from TOML text (paths in it relative to `base`), then environment
    /// overrides: what [`ServerConfig::load`] does after reading the file (the fuzz target
    /// `config_toml` feeds it arbitrary text).
    pub fn from_toml(data_dir: &Path, text: &str, base: &Path) -> Result<ServerConfig> {
        let file: FileConfig = toml::from_str(text).context("parsing config")?;
        ServerConfig::from_file(data_dir, file, Some(base))
    }

    fn from_file(data_dir: &Path, file: FileConfig, base: Option<&Path>) -> Result<ServerConfig> {
        let currency_code = env("PALMLINE_CURRENCY")
            .or(file.currency.clone())
            .unwrap_or_else(|| "EUR".into());
        let currency = Currency::from_code(&currency_code)?;
        let mut api = ApiConfig::defaults(currency);
        if let Some(t) = env("PALMLINE_PIN_THRESHOLD").or(file.pin_threshold.clone()) {
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
        if let Some(s) = file.cashier_session_secs {
            if !(10..=43_200).contains(&s) {
                bail!("cashier_session_secs must be 10-43200");
            }
            api.cashier_session_ttl = Duration::from_secs(s);
        }
        apply_limits(&mut api, &file)?;
        let database = match env("PALMLINE_DATABASE").or(file.database.clone()) {
            Some(d) => Database::parse(&d)?,
            None => Database::Sqlite,
        };
        let retention = retention(&file)?;
        let conn = conn_limits(&file)?;
        let log_format = match env("PALMLINE_LOG_FORMAT").or(file.log_format.clone()) {
            Some(f) => f.parse().map_err(anyhow::Error::msg)?,
            None => LogFormat::Text,
        };
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
            let base = base.unwrap_or(Path::new("."));
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
            database,
            listen,
            tls,
            api,
            template_key,
            palm,
            retention,
            log_format,
            conn,
        })
    }
}

/// Retention in days, each at least 1 and at most 100 years.
fn retention(f: &FileConfig) -> Result<Retention> {
    let d = Retention::default();
    let days = |name: &str, v: Option<u64>, default: std::time::Duration| -> Result<u64> {
        let v = positive(name, v, default.as_secs() / 86_400)?;
        if v > 36_500 {
            bail!("{name} must be at most 36500 days");
        }
        Ok(v)
    };
    Ok(Retention::from_days(
        days(
            "idempotency_retention_days",
            f.idempotency_retention_days,
            d.idempotency,
        )?,
        days("scan_retention_days", f.scan_retention_days, d.scans)?,
    ))
}

/// Connection limits: each at least 1 (0 would refuse everything or time out at once).
fn conn_limits(f: &FileConfig) -> Result<crate::conn::ConnLimits> {
    let d = crate::conn::ConnLimits::default();
    let secs = |name: &str, v: Option<u64>, default: Duration| -> Result<Duration> {
        let v = positive(name, v, default.as_secs())?;
        if v > 3_600 {
            bail!("{name} must be at most 3600");
        }
        Ok(Duration::from_secs(v))
    };
    Ok(crate::conn::ConnLimits {
        max_connections: positive("max_connections", f.max_connections, d.max_connections)?,
        handshake_timeout: secs(
            "handshake_timeout_secs",
            f.handshake_timeout_secs,
            d.handshake_timeout,
        )?,
        header_timeout: secs(
            "header_timeout_secs",
            f.header_timeout_secs,
            d.header_timeout,
        )?,
        request_timeout: secs(
            "request_timeout_secs",
            f.request_timeout_secs,
            d.request_timeout,
        )?,
    })
}

/// A setting that must be at least 1 (0 would switch a protection off or stop the server).
fn positive<T: PartialOrd + From<u8> + Copy>(name: &str, v: Option<T>, default: T) -> Result<T> {
    match v {
        Some(v) if v < T::from(1) => bail!("{name} must be at least 1"),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

fn money_limit(name: &str, v: Option<&str>, default: Money) -> Result<Money> {
    match v {
        Some(t) => Money::parse_positive(t, default.currency())
            .with_context(|| format!("{name} {t:?} (must be a positive amount)")),
        None => Ok(default),
    }
}

/// The guess budgets, the no-PIN limits, the identification rates and the resource bounds,
/// each refused at start-up if it would switch a protection off.
fn apply_limits(api: &mut ApiConfig, f: &FileConfig) -> Result<()> {
    let g = &mut api.guesses;
    g.lock_after = positive("lockout_after", f.lockout_after, g.lock_after)?;
    g.lock_secs = positive("lockout_secs", f.lockout_secs, g.lock_secs as u64)? as i64;
    g.max_lock_secs = positive(
        "lockout_max_secs",
        f.lockout_max_secs,
        g.max_lock_secs as u64,
    )? as i64;
    g.max_per_day = positive("max_guesses_per_day", f.max_guesses_per_day, g.max_per_day)?;
    if g.lock_after > g.max_per_day {
        bail!(
            "lockout_after ({}) must not exceed max_guesses_per_day ({})",
            g.lock_after,
            g.max_per_day
        );
    }
    if g.max_lock_secs < g.lock_secs || g.max_lock_secs > 7 * 86_400 {
        bail!("lockout_max_secs must be between lockout_secs and 604800 (a week)");
    }
    let n = &mut api.no_pin;
    n.per_session = money_limit(
        "no_pin_session_limit",
        f.no_pin_session_limit.as_deref(),
        n.per_session,
    )?;
    n.per_day = money_limit(
        "no_pin_daily_limit",
        f.no_pin_daily_limit.as_deref(),
        n.per_day,
    )?;
    if n.per_session.minor() > n.per_day.minor() {
        bail!("no_pin_session_limit must not exceed no_pin_daily_limit");
    }
    let r = &mut api.identify;
    r.per_kiosk = positive(
        "identify_per_kiosk_per_minute",
        f.identify_per_kiosk_per_minute,
        r.per_kiosk,
    )?;
    r.per_merchant = positive(
        "identify_per_merchant_per_minute",
        f.identify_per_merchant_per_minute,
        r.per_merchant,
    )?;
    if r.per_kiosk > r.per_merchant {
        bail!("identify_per_kiosk_per_minute must not exceed identify_per_merchant_per_minute");
    }
    api.hash_concurrency = positive(
        "argon2_concurrency",
        f.argon2_concurrency,
        api.hash_concurrency,
    )?;
    api.matcher_threads = positive("matcher_threads", f.matcher_threads, api.matcher_threads)?;
    Ok(())
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
        assert_eq!(c.log_format, LogFormat::Text, "the default");
    }

    #[test]
    fn refuses_mistakes() {
        assert!(load("lisen = \"x\"").is_err(), "unknown keys are typos");
        assert!(load("currency = \"XXX\"").is_err());
        assert!(load("pin_threshold = \"1.234\"").is_err());
        assert!(load("session_ttl_secs = 1").is_err());
        assert!(load("cashier_session_secs = 0").is_err());
        assert_eq!(
            load("cashier_session_secs = 120")
                .unwrap()
                .api
                .cashier_session_ttl,
            Duration::from_secs(120)
        );
        assert!(load("listen = ").is_err());
        assert!(load("log_format = \"JSON\"").is_err());
        let c = load("max_connections = 64\nheader_timeout_secs = 5")
            .unwrap()
            .conn;
        assert_eq!(
            (c.max_connections, c.header_timeout),
            (64, Duration::from_secs(5))
        );
        assert_eq!(c.request_timeout, Duration::from_secs(30), "the default");
        assert_eq!(
            load("log_format = \"json\"").unwrap().log_format,
            LogFormat::Json
        );
        assert!(load("palm_accept_score = 0").is_err(), "accepts every palm");
        assert!(load("palm_accept_score = 10\npalm_grey_score = 12").is_err());
        for zero in [
            "lockout_secs = 0",
            "lockout_after = 0",
            "max_guesses_per_day = 0",
            "lockout_max_secs = 0",
            "identify_per_kiosk_per_minute = 0",
            "identify_per_merchant_per_minute = 0",
            "argon2_concurrency = 0",
            "matcher_threads = 0",
            "no_pin_session_limit = \"0\"",
            "no_pin_daily_limit = \"0.00\"",
            "palm_grey_score = 0",
            "idempotency_retention_days = 0",
            "scan_retention_days = 0",
            "scan_retention_days = 40000",
            "max_connections = 0",
            "handshake_timeout_secs = 0",
            "header_timeout_secs = 0",
            "request_timeout_secs = 0",
            "request_timeout_secs = 7200",
        ] {
            let e = load(zero).expect_err(zero).to_string();
            assert!(!e.is_empty(), "{zero}");
        }
        let e = load("lockout_secs = 0").unwrap_err().to_string();
        assert!(
            e.contains("lockout_secs"),
            "the error names the setting: {e}"
        );
        assert!(
            load("lockout_after = 11").is_err(),
            "a kiosk lock past the daily cap"
        );
        assert!(
            load("no_pin_session_limit = \"300\"").is_err(),
            "session over day"
        );
        assert!(load("identify_per_kiosk_per_minute = 1000").is_err());
    }

    #[test]
    fn selects_the_database_by_url_scheme_and_hides_passwords() {
        assert_eq!(load("").unwrap().database, Database::Sqlite, "the default");
        assert_eq!(
            load("database = \"sqlite\"").unwrap().database,
            Database::Sqlite
        );
        let url = "postgres://palm:s3cret@db.example:5432/ledger";
        let c = load(&format!("database = \"{url}\"")).unwrap();
        assert_eq!(c.database, Database::Postgres(url.into()));
        assert_eq!(
            c.database.to_string(),
            "postgres://palm:***@db.example:5432/ledger"
        );
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "Debug hides the password"
        );
        let c = load("database = \"postgresql://palm@localhost/ledger\"").unwrap();
        assert!(matches!(c.database, Database::Postgres(_)));
        for bad in [
            "mysql://u:pw@h/db",
            "./palmline.db",
            "sqlite:///x.db",
            "postgres://h:notaport/db",
        ] {
            let e = Database::parse(bad).expect_err(bad).to_string();
            assert!(e.contains("postgres"), "{bad}: {e}");
            assert!(
                !e.contains("pw@"),
                "{bad}: the error does not repeat the value: {e}"
            );
        }
    }

    #[test]
    fn reads_the_limits() {
        let c = load("lockout_after = 3\nlockout_secs = 60\nmax_guesses_per_day = 6\nno_pin_session_limit = \"20\"\nno_pin_daily_limit = \"40.00\"\nidentify_per_kiosk_per_minute = 7\nargon2_concurrency = 1\n").unwrap();
        let g = c.api.guesses;
        assert_eq!((g.lock_after, g.lock_secs, g.max_per_day), (3, 60, 6));
        assert_eq!(c.api.no_pin.per_session.minor(), 2_000);
        assert_eq!(c.api.no_pin.per_day.minor(), 4_000);
        assert_eq!(c.api.identify.per_kiosk, 7);
        assert_eq!(c.api.hash_concurrency, 1);
        let d = load("").unwrap();
        assert_eq!(d.api.guesses.max_per_day, 10, "documented default");
        assert_eq!(d.retention, crate::retention::Retention::from_days(30, 365));
        let r = load("idempotency_retention_days = 2\nscan_retention_days = 90\n").unwrap();
        assert_eq!(r.retention, crate::retention::Retention::from_days(2, 90));
        assert_eq!(d.api.no_pin.per_session.minor(), 10_000);
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
