//! The Palmline PKI: one private CA that issues the server's certificate, kiosk client
//! certificates (bound to a kiosk id and a merchant) and admin client certificates, and
//! keeps a CRL.
//!
//! Layout under `DATA/pki/`: `ca.pem`, `ca.key`, `crl.pem`, `index.json`, `server.pem`,
//! `server.key`, `kiosks/ID.pem|key`, `admins/NAME.pem|key`. Private keys are written 0600
//! and never logged. A role lives in the certificate's SAN URIs
//! (`urn:palmline:kiosk:ID`, `urn:palmline:merchant:NAME`, `urn:palmline:admin:NAME`), so the
//! server takes the kiosk and the merchant from the handshake, never from a request body.

use anyhow::{anyhow, bail, Context, Result};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

const URI_KIOSK: &str = "urn:palmline:kiosk:";
const URI_MERCHANT: &str = "urn:palmline:merchant:";
const URI_ADMIN: &str = "urn:palmline:admin:";
/// Characters kept as they are in SAN URIs; everything else is percent-encoded.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertKind {
    Server,
    Kiosk,
    Admin,
}

/// One issued certificate, as recorded in `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCert {
    pub serial: String,
    pub kind: CertKind,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant: Option<String>,
    pub not_after: String,
    pub cert_path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// The role a verified client certificate grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Kiosk { kiosk_id: String, merchant: String },
    Admin { name: String },
}

pub struct Pki {
    dir: PathBuf,
}

/// A certificate issued in place of earlier ones, and the earlier ones it revoked.
#[derive(Debug, Clone)]
pub struct Replaced {
    pub issued: IssuedCert,
    pub revoked: Vec<IssuedCert>,
}

/// What `pki revoke` revokes: a serial number (hex, optionally `serial:HEX`), or every
/// live certificate of one kiosk id (`kiosk:ID`) or of one admin name (`admin:NAME`). A
/// bare name is never taken for a role, so one word cannot revoke a kiosk and an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    Serial(String),
    Kiosk(String),
    Admin(String),
}

impl RevokeTarget {
    pub fn matches(&self, c: &IssuedCert) -> bool {
        match self {
            RevokeTarget::Serial(s) => c.serial == *s,
            RevokeTarget::Kiosk(id) => c.kind == CertKind::Kiosk && c.name == *id,
            RevokeTarget::Admin(n) => c.kind == CertKind::Admin && c.name == *n,
        }
    }
}

impl std::str::FromStr for RevokeTarget {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<RevokeTarget> {
        let named = |rest: &str, make: fn(String) -> RevokeTarget| {
            if valid_id(rest) {
                Ok(make(rest.to_string()))
            } else {
                bail!("kiosk ids and admin names are 1-64 of A-Z a-z 0-9 . _ -")
            }
        };
        if let Some(rest) = s.strip_prefix("kiosk:") {
            return named(rest, RevokeTarget::Kiosk);
        }
        if let Some(rest) = s.strip_prefix("admin:") {
            return named(rest, RevokeTarget::Admin);
        }
        let hex = s.strip_prefix("serial:").unwrap_or(s);
        let is_hex = hex.len().is_multiple_of(2) && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if hex.is_empty() || hex.len() > 40 || !is_hex {
            bail!("say which certificate: a serial number (hex), kiosk:ID or admin:NAME");
        }
        Ok(RevokeTarget::Serial(hex.to_ascii_lowercase()))
    }
}

impl std::fmt::Display for RevokeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RevokeTarget::Serial(s) => write!(f, "serial:{s}"),
            RevokeTarget::Kiosk(id) => write!(f, "kiosk:{id}"),
            RevokeTarget::Admin(n) => write!(f, "admin:{n}"),
        }
    }
}

/// Kiosk ids and admin names: 1-64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Merchant names: 1-64 printable characters, no control characters.
pub fn valid_merchant(s: &str) -> bool {
    (1..=64).contains(&s.chars().count()) && !s.chars().any(char::is_control) && s.trim() == s
}

fn ts(t: OffsetDateTime) -> String {
    crate::store::sqlite::format_ts(t)
}

/// Writes a file readable by its owner only (for private keys).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    Ok(())
}

fn write_public(path: &Path, contents: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte, fixed length
    SerialNumber::from_slice(&bytes)
}

impl Pki {
    pub fn new(data_dir: &Path) -> Pki {
        Pki {
            dir: data_dir.join("pki"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// The CA's private key: needed to issue and revoke (offline operator steps), never
    /// by `serve`.
    pub fn ca_key_path(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn crl_path(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }
    pub fn server_cert_path(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key_path(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }
    pub fn kiosk_paths(&self, kiosk: &str) -> (PathBuf, PathBuf) {
        let d = self.dir.join("kiosks");
        (
            d.join(format!("{kiosk}.pem")),
            d.join(format!("{kiosk}.key")),
        )
    }
    pub fn admin_paths(&self, name: &str) -> (PathBuf, PathBuf) {
        let d = self.dir.join("admins");
        (d.join(format!("{name}.pem")), d.join(format!("{name}.key")))
    }

    /// Whether a CA exists here (its certificate; the key may have been moved offline).
    pub fn is_initialised(&self) -> bool {
        self.ca_cert_path().exists() || self.ca_key_path().exists()
    }

    /// Creates the CA and an empty CRL. Refuses to overwrite an existing CA.
    pub fn init(&self, common_name: &str) -> Result<()> {
        if self.is_initialised() {
            bail!("a CA already exists in {}", self.dir.display());
        }
        std::fs::create_dir_all(&self.dir)?;
        let key = KeyPair::generate()?;
        let params = ca_params(common_name);
        let cert = params.self_signed(&key)?;
        write_private(&self.ca_key_path(), key.serialize_pem().as_bytes())?;
        write_public(&self.ca_cert_path(), cert.pem().as_bytes())?;
        self.save_index(&[])?;
        self.write_crl(&[])?;
        Ok(())
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        let path = self.ca_key_path();
        let key_pem = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading the CA key {} (run `pki init` first; issuing and revoking are offline steps, run where the CA key is kept)",
                path.display()
            )
        })?;
        let key = KeyPair::from_pem(&key_pem)?;
        let cert_pem = std::fs::read_to_string(self.ca_cert_path())?;
        Ok(Issuer::from_ca_cert_pem(&cert_pem, key)?)
    }

    pub fn index(&self) -> Result<Vec<IssuedCert>> {
        match std::fs::read_to_string(self.index_path()) {
            Ok(s) => Ok(serde_json::from_str(&s).context("parsing pki/index.json")?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    fn save_index(&self, index: &[IssuedCert]) -> Result<()> {
        write_public(
            &self.index_path(),
            serde_json::to_vec_pretty(index)?.as_slice(),
        )
    }

    /// Issues the server's TLS certificate for the given DNS names and IP addresses.
    pub fn issue_server(&self, names: &[String], days: i64) -> Result<IssuedCert> {
        let mut all: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        for n in names {
            if !all.contains(n) {
                all.push(n.clone());
            }
        }
        let mut params = CertificateParams::new(all)?;
        params.distinguished_name = dn("palmline server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (cert, _key) = self.issue(
            params,
            (CertKind::Server, "server", None),
            validity(days)?,
            &self.server_cert_path(),
            &self.server_key_path(),
        )?;
        Ok(cert)
    }

    /// Issues a kiosk client certificate bound to one kiosk id and one merchant. Refuses
    /// an id that was issued before: [`Pki::replace_kiosk`] revokes the old certificate.
    pub fn issue_kiosk(&self, kiosk: &str, merchant: &str, days: i64) -> Result<IssuedCert> {
        self.issue_kiosk_with_validity(kiosk, merchant, validity(days)?)
    }

    pub fn issue_kiosk_with_validity(
        &self,
        kiosk: &str,
        merchant: &str,
        window: (OffsetDateTime, OffsetDateTime),
    ) -> Result<IssuedCert> {
        self.refuse_existing(CertKind::Kiosk, kiosk)?;
        self.sign_kiosk(kiosk, merchant, window)
    }

    /// Issues a new certificate for a kiosk id and revokes every earlier live one of that
    /// id (the CRL is rewritten), e.g. for a replaced or stolen kiosk.
    pub fn replace_kiosk(&self, kiosk: &str, merchant: &str, days: i64) -> Result<Replaced> {
        let issued = self.sign_kiosk(kiosk, merchant, validity(days)?)?;
        let old = RevokeTarget::Kiosk(kiosk.to_string());
        let revoked = self.revoke_where(|c| old.matches(c) && c.serial != issued.serial)?;
        Ok(Replaced { issued, revoked })
    }

    fn sign_kiosk(
        &self,
        kiosk: &str,
        merchant: &str,
        window: (OffsetDateTime, OffsetDateTime),
    ) -> Result<IssuedCert> {
        if !valid_id(kiosk) {
            bail!("kiosk id must be 1-64 of A-Z a-z 0-9 . _ -");
        }
        if !valid_merchant(merchant) {
            bail!("merchant name must be 1-64 printable characters without surrounding spaces");
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&format!("kiosk {kiosk}"));
        params.subject_alt_names = vec![
            uri(&format!("{URI_KIOSK}{}", enc(kiosk)))?,
            uri(&format!("{URI_MERCHANT}{}", enc(merchant)))?,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (c, k) = self.kiosk_paths(kiosk);
        let who = (CertKind::Kiosk, kiosk, Some(merchant));
        Ok(self.issue(params, who, window, &c, &k)?.0)
    }

    /// Issues an operator (admin) client certificate. Refuses a name that was issued
    /// before: [`Pki::replace_admin`] revokes the old certificate.
    pub fn issue_admin(&self, name: &str, days: i64) -> Result<IssuedCert> {
        self.refuse_existing(CertKind::Admin, name)?;
        self.sign_admin(name, days)
    }

    /// Issues a new admin certificate and revokes the earlier live ones of that name.
    pub fn replace_admin(&self, name: &str, days: i64) -> Result<Replaced> {
        let issued = self.sign_admin(name, days)?;
        let old = RevokeTarget::Admin(name.to_string());
        let revoked = self.revoke_where(|c| old.matches(c) && c.serial != issued.serial)?;
        Ok(Replaced { issued, revoked })
    }

    fn sign_admin(&self, name: &str, days: i64) -> Result<IssuedCert> {
        if !valid_id(name) {
            bail!("admin name must be 1-64 of A-Z a-z 0-9 . _ -");
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&format!("admin {name}"));
        params.subject_alt_names = vec![uri(&format!("{URI_ADMIN}{}", enc(name)))?];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (c, k) = self.admin_paths(name);
        let who = (CertKind::Admin, name, None);
        Ok(self.issue(params, who, validity(days)?, &c, &k)?.0)
    }

    /// An id or name is issued once: a second certificate would leave the first one valid.
    fn refuse_existing(&self, kind: CertKind, name: &str) -> Result<()> {
        let index = self.index()?;
        if let Some(c) = index.iter().find(|c| c.kind == kind && c.name == name) {
            let what = format!("{kind:?}").to_lowercase();
            bail!(
                "{what} {name:?} already has a certificate (serial {}); pass --replace to revoke it and issue a new one",
                c.serial
            );
        }
        Ok(())
    }

    fn issue(
        &self,
        mut params: CertificateParams,
        (kind, name, merchant): (CertKind, &str, Option<&str>),
        (not_before, not_after): (OffsetDateTime, OffsetDateTime),
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<(IssuedCert, KeyPair)> {
        let issuer = self.issuer()?;
        let key = KeyPair::generate()?;
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        params.not_before = not_before;
        params.not_after = not_after;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let cert = params.signed_by(&key, &issuer)?;
        write_private(key_path, key.serialize_pem().as_bytes())?;
        write_public(cert_path, cert.pem().as_bytes())?;
        let issued = IssuedCert {
            serial: hex::encode(serial.to_bytes()),
            kind,
            name: name.to_string(),
            merchant: merchant.map(str::to_string),
            not_after: ts(not_after),
            cert_path: cert_path.to_path_buf(),
            revoked_at: None,
        };
        let mut index = self.index()?;
        index.push(issued.clone());
        self.save_index(&index)?;
        Ok((issued, key))
    }

    /// Revokes every live certificate `target` names, and rewrites the CRL. A running
    /// server picks the new CRL up without a restart. Nothing live matches: an error.
    pub fn revoke(&self, target: &RevokeTarget) -> Result<Vec<IssuedCert>> {
        let revoked = self.revoke_where(|c| target.matches(c))?;
        if revoked.is_empty() {
            match target {
                RevokeTarget::Serial(_) => bail!(
                    "no live certificate {target} (to revoke by name, say kiosk:ID or admin:NAME)"
                ),
                _ => bail!("no live certificate for {target}"),
            }
        }
        Ok(revoked)
    }

    /// Marks every live certificate `hit` selects as revoked and rewrites the CRL (only
    /// when something changed). Needs the CA key: an offline operator step.
    fn revoke_where(&self, hit: impl Fn(&IssuedCert) -> bool) -> Result<Vec<IssuedCert>> {
        let mut index = self.index()?;
        let now = ts(OffsetDateTime::now_utc());
        let mut revoked = Vec::new();
        for c in index.iter_mut().filter(|c| c.revoked_at.is_none()) {
            if hit(c) {
                c.revoked_at = Some(now.clone());
                revoked.push(c.clone());
            }
        }
        if !revoked.is_empty() {
            self.save_index(&index)?;
            self.write_crl(&index)?;
        }
        Ok(revoked)
    }

    fn write_crl(&self, index: &[IssuedCert]) -> Result<()> {
        let issuer = self.issuer()?;
        let now = OffsetDateTime::now_utc();
        let revoked_certs = index
            .iter()
            .filter(|c| c.revoked_at.is_some())
            .map(|c| -> Result<RevokedCertParams> {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&hex::decode(&c.serial)?),
                    revocation_time: now,
                    reason_code: Some(RevocationReason::CessationOfOperation),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let crl_number = (now.unix_timestamp_nanos() / 1000) as u64;
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(365),
            crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&issuer)?;
        write_public(&self.crl_path(), crl.pem()?.as_bytes())
    }
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(3650);
    params.serial_number = Some(random_serial());
    params
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, "Palmline");
    d.push(DnType::CommonName, cn);
    d
}

fn uri(s: &str) -> Result<SanType> {
    Ok(SanType::URI(s.to_string().try_into()?))
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, KEEP).to_string()
}

fn validity(days: i64) -> Result<(OffsetDateTime, OffsetDateTime)> {
    if !(1..=3650).contains(&days) {
        bail!("validity must be 1-3650 days");
    }
    let now = OffsetDateTime::now_utc();
    Ok((now - Duration::minutes(5), now + Duration::days(days)))
}

/// Reads the role from a verified client certificate (DER). `None` when the certificate
/// carries no Palmline role (e.g. a server certificate).
pub fn role_of(cert_der: &[u8]) -> Result<Option<Role>> {
    identity_of(cert_der).map(|(_, role)| role)
}

/// The serial number (raw DER integer bytes, as in a CRL) and the role of a certificate.
pub fn identity_of(cert_der: &[u8]) -> Result<(Vec<u8>, Option<Role>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| anyhow!("unparsable client certificate: {e}"))?;
    let serial = cert.raw_serial().to_vec();
    let mut kiosk = None;
    let mut merchant = None;
    let mut admin = None;
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| anyhow!("{e}"))?
    {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(u) = name {
                let dec = |rest: &str| percent_decode_str(rest).decode_utf8_lossy().into_owned();
                if let Some(rest) = u.strip_prefix(URI_KIOSK) {
                    kiosk = Some(dec(rest));
                } else if let Some(rest) = u.strip_prefix(URI_MERCHANT) {
                    merchant = Some(dec(rest));
                } else if let Some(rest) = u.strip_prefix(URI_ADMIN) {
                    admin = Some(dec(rest));
                }
            }
        }
    }
    let role = match (kiosk, merchant, admin) {
        (Some(kiosk_id), Some(merchant), None) => Some(Role::Kiosk { kiosk_id, merchant }),
        (None, None, Some(name)) => Some(Role::Admin { name }),
        _ => None,
    };
    Ok((serial, role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_read_roles() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        pki.init("test CA").unwrap();
        assert!(pki.init("again").is_err(), "must not overwrite a CA");
        let k = pki.issue_kiosk("till-1", "Café Ürban & Co", 30).unwrap();
        let a = pki.issue_admin("ops", 30).unwrap();
        pki.issue_server(&[], 30).unwrap();
        let der = |p: &Path| crate::tls::read_certs(p).unwrap()[0].to_vec();
        assert_eq!(
            role_of(&der(&k.cert_path)).unwrap(),
            Some(Role::Kiosk {
                kiosk_id: "till-1".into(),
                merchant: "Café Ürban & Co".into()
            })
        );
        assert_eq!(
            role_of(&der(&a.cert_path)).unwrap(),
            Some(Role::Admin { name: "ops".into() })
        );
        assert_eq!(role_of(&der(&pki.server_cert_path())).unwrap(), None);
        // Keys are private to their owner.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(pki.kiosk_paths("till-1").1)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(pki.index().unwrap().len(), 3);
    }

    fn target(s: &str) -> RevokeTarget {
        s.parse().unwrap()
    }

    #[test]
    fn revoke_by_role_and_serial_never_by_a_bare_name() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        pki.init("test CA").unwrap();
        let k1 = pki.issue_kiosk("k1", "M", 30).unwrap();
        pki.issue_kiosk("twin", "M", 30).unwrap();
        pki.issue_admin("twin", 30).unwrap();
        assert!(
            "twin".parse::<RevokeTarget>().is_err(),
            "a bare name is no target"
        );
        assert!("kiosk:../x".parse::<RevokeTarget>().is_err());
        assert_eq!(target("ABCD"), RevokeTarget::Serial("abcd".into()));
        let gone = pki.revoke(&target("kiosk:twin")).unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].kind, CertKind::Kiosk);
        let live: Vec<_> = pki.index().unwrap();
        let admin = live.iter().find(|c| c.kind == CertKind::Admin).unwrap();
        assert!(
            admin.revoked_at.is_none(),
            "the admin of that name stays valid"
        );
        let by_serial = pki.revoke(&target(&k1.serial.to_uppercase())).unwrap();
        assert_eq!(by_serial[0].name, "k1");
        assert!(pki.revoke(&target("kiosk:k1")).is_err(), "already revoked");
        assert!(pki.revoke(&target("admin:nobody")).is_err());
        assert_eq!(pki.revoke(&target("admin:twin")).unwrap().len(), 1);
        let crl = std::fs::read_to_string(pki.crl_path()).unwrap();
        assert!(crl.contains("BEGIN X509 CRL"));
        let revoked = crate::tls::revoked_serials(&pki.crl_path()).unwrap();
        assert_eq!(revoked.len(), 3);
    }

    #[test]
    fn an_issued_id_is_reissued_only_by_replacing_it() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        pki.init("test CA").unwrap();
        let old = pki.issue_kiosk("till", "M", 30).unwrap();
        let err = pki.issue_kiosk("till", "M", 30).unwrap_err().to_string();
        assert!(err.contains("--replace"), "{err}");
        assert_eq!(pki.index().unwrap().len(), 1, "a refusal issues nothing");
        let r = pki.replace_kiosk("till", "M", 30).unwrap();
        assert_eq!(r.revoked.len(), 1);
        assert_eq!(r.revoked[0].serial, old.serial);
        assert_ne!(r.issued.serial, old.serial);
        let revoked = crate::tls::revoked_serials(&pki.crl_path()).unwrap();
        assert!(revoked.contains(&hex::decode(&old.serial).unwrap()));
        assert!(!revoked.contains(&hex::decode(&r.issued.serial).unwrap()));
        let der = crate::tls::read_certs(&r.issued.cert_path).unwrap()[0].to_vec();
        assert_eq!(
            identity_of(&der).unwrap().0,
            hex::decode(&r.issued.serial).unwrap()
        );
        assert!(pki.issue_admin("ops", 30).is_ok());
        assert!(pki.issue_admin("ops", 30).is_err());
        assert_eq!(pki.replace_admin("ops", 30).unwrap().revoked.len(), 1);
    }

    #[test]
    fn init_refuses_a_ca_whose_key_was_moved_offline() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        pki.init("test CA").unwrap();
        std::fs::remove_file(pki.ca_key_path()).unwrap();
        assert!(
            pki.init("again").is_err(),
            "would replace the CA everyone trusts"
        );
        let err = pki.issue_kiosk("k", "M", 30).unwrap_err();
        assert!(format!("{err:#}").contains("offline"), "{err:#}");
    }

    #[test]
    fn refuses_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        pki.init("test CA").unwrap();
        assert!(pki.issue_kiosk("../etc", "M", 30).is_err());
        assert!(pki.issue_kiosk("k", " M", 30).is_err());
        assert!(pki.issue_admin("a/b", 30).is_err());
        assert!(pki.issue_kiosk("k", "M", 0).is_err());
    }
}
