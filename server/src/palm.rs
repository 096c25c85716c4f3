//! Palms on the server: templates encrypted at rest, the in-memory identification index, and
//! the decision policy (accept / step-up / reject, per-kiosk slow-down).
//!
//! Templates are stored as XChaCha20-Poly1305 ciphertext with the (account, capture index)
//! as associated data, so a row cannot be moved to another account. The key lives in a file
//! (`DATA/template.key`, 0600) or a systemd credential — never in the database. Decrypted
//! templates exist only for the duration of one identification.

use crate::identify::{CandidateIndex, PalmId};
use crate::store::{LedgerError, PalmChange, PalmState, PalmVersion, Store};
use anyhow::{bail, Context, Result};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use palmline_shared::palm::matcher::Prepared;
use palmline_shared::palm::{DecisionPolicy, Matcher, Template};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio::sync::Semaphore;

const CT_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;

/// The template encryption key.
#[derive(Clone)]
pub struct TemplateKey {
    cipher: XChaCha20Poly1305,
    id: [u8; 4],
}

impl std::fmt::Debug for TemplateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TemplateKey({})", hex::encode(self.id))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext was sealed with another key ({0})")]
    WrongKey(String),
    #[error("ciphertext failed authentication")]
    Tampered,
}

impl TemplateKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<TemplateKey> {
        if bytes.len() != 32 {
            bail!("a template key is 32 bytes, got {}", bytes.len());
        }
        let digest = Sha256::digest([b"palmline template key id".as_slice(), bytes].concat());
        Ok(TemplateKey {
            cipher: XChaCha20Poly1305::new_from_slice(bytes).expect("32-byte key"),
            id: digest[..4].try_into().expect("4 bytes"),
        })
    }

    /// Reads the key file (32 raw bytes or 64 hex characters), creating it (0600) if absent.
    pub fn load_or_create(path: &Path) -> Result<(TemplateKey, bool)> {
        match std::fs::read(path) {
            Ok(bytes) => Ok((
                Self::parse_file(&bytes).with_context(|| path.display().to_string())?,
                false,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                crate::pki::write_private(path, hex::encode(key).as_bytes())?;
                Ok((TemplateKey::from_bytes(&key)?, true))
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn load(path: &Path) -> Result<TemplateKey> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse_file(&bytes).with_context(|| path.display().to_string())
    }

    fn parse_file(bytes: &[u8]) -> Result<TemplateKey> {
        let text = std::str::from_utf8(bytes).map(str::trim);
        match text {
            Ok(t) if t.len() == 64 => TemplateKey::from_bytes(&hex::decode(t)?),
            _ => TemplateKey::from_bytes(bytes),
        }
    }

    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    fn aad(account: i64, idx: usize) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&account.to_be_bytes());
        a[8..].copy_from_slice(&(idx as u64).to_be_bytes());
        a
    }

    /// `version | key id | nonce | ciphertext+tag`.
    pub fn seal(&self, account: i64, idx: usize, plaintext: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::try_from(&nonce_bytes[..]).expect("24-byte nonce");
        let aad = Self::aad(account, idx);
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
        out.push(CT_VERSION);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, account: i64, idx: usize, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < HEADER_LEN + 16 || sealed[0] != CT_VERSION {
            return Err(SealError::Malformed);
        }
        if sealed[1..5] != self.id {
            return Err(SealError::WrongKey(hex::encode(&sealed[1..5])));
        }
        let nonce = XNonce::try_from(&sealed[5..HEADER_LEN]).map_err(|_| SealError::Malformed)?;
        let aad = Self::aad(account, idx);
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed[HEADER_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Tampered)
    }
}

/// Why enrollment captures were refused, naming the capture to retake (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureProblem {
    /// A (near) copy of an earlier capture: real captures always differ a little.
    Copy { capture: usize, of: usize },
    /// Matches none of the other captures: not the same palm, or a bad capture.
    NoMatch { capture: usize },
    /// The captures agree only weakly with each other.
    Weak { capture: usize },
}

impl CaptureProblem {
    pub fn capture(&self) -> usize {
        match *self {
            CaptureProblem::Copy { capture, .. }
            | CaptureProblem::NoMatch { capture }
            | CaptureProblem::Weak { capture } => capture,
        }
    }

    /// For the shopper (1-based numbers).
    pub fn message(&self) -> String {
        let n = self.capture() + 1;
        match *self {
            CaptureProblem::Copy { of, .. } => {
                format!(
                    "capture {n} is a copy of capture {}: retake capture {n}",
                    of + 1
                )
            }
            CaptureProblem::NoMatch { .. } => {
                format!("capture {n} does not match the others: retake capture {n}")
            }
            CaptureProblem::Weak { .. } => {
                format!("the captures agree too weakly: retake capture {n}")
            }
        }
    }
}

/// Two captures of a palm never have most keypoints at the same place with the same
/// descriptor: that is one template sent twice (or a replay), not two captures.
fn near_copy(a: &Template, b: &Template) -> bool {
    let (ka, kb) = (a.keypoints(), b.keypoints());
    if ka.is_empty() || kb.is_empty() {
        return false;
    }
    let (da, db) = (a.descriptors(), b.descriptors());
    let same = ka
        .iter()
        .zip(da)
        .filter(|(k, d)| {
            kb.iter().zip(db).any(|(q, e)| {
                (k.x - q.x).abs() <= 0.5
                    && (k.y - q.y).abs() <= 0.5
                    && d.iter()
                        .zip(e.iter())
                        .map(|(x, y)| (x ^ y).count_ones())
                        .sum::<u32>()
                        <= 8
            })
        })
        .count();
    2 * same > ka.len().min(kb.len())
}

/// Identification policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PalmPolicy {
    /// Accept when the best score reaches this and beats the runner-up by `margin`.
    pub accept: u32,
    /// Between `grey` and an acceptable match: ask for the PIN (step-up).
    pub grey: u32,
    /// Smallest lead of the best palm over the runner-up for an outright accept.
    pub margin: u32,
    /// Candidates verified with the matcher (at most: see [`PalmPolicy::clear`]).
    pub shortlist: usize,
    /// Failed identifications a kiosk may make before it is slowed down.
    pub free_failures: u32,
}

/// The calibration run the defaults come from (`palmline-lab calibrate` on real palms, 3
/// enrollment captures, for 10,000 enrolled palms at FPIR 1e-3, strangers sent to step-up
/// at most half the time). A test keeps [`PalmPolicy::default`] equal to it.
pub const CALIBRATED_POLICY: &str = include_str!("../../assets/palm-policy.toml");

impl Default for PalmPolicy {
    fn default() -> Self {
        PalmPolicy {
            // 1:N needs a stricter threshold than 1:1 (FPIR ≈ N × FMR at the tail).
            accept: 23,
            grey: 13,
            margin: 4,
            shortlist: 32,
            free_failures: 5,
        }
    }
}

impl PalmPolicy {
    /// A score at which verification stops: `accept + margin`. The index hands over its
    /// candidates best first; once one of them scores this much, a palm not yet verified
    /// could only turn the accept into a step-up by itself scoring `accept` or more, the
    /// event the accept threshold already bounds (FMR 1e-7 per comparison), so verifying
    /// it buys nothing. A genuine palm is usually the index's first candidate: a clear
    /// payment verifies one palm instead of the whole shortlist (docs/IDENTIFY.md).
    pub fn clear(&self) -> u32 {
        self.accept.saturating_add(self.margin)
    }
}

/// Candidates read and verified before the rest of a shortlist is read: a clear genuine
/// palm is usually the index's first (recall@1 84–95 % on the real sets). One, not four:
/// PostgreSQL then sends 3 templates a payment instead of 12 (palm payments 120 → 135/s,
/// database CPU 4.3 → 2.6 ms a payment; BENCHMARKS.md).
const FIRST_READ: usize = 1;

/// The outcome of one identification.
#[derive(Debug, Clone, PartialEq)]
pub struct Identification {
    pub best: Option<(PalmId, u32)>,
    pub runner_up: u32,
    pub decision: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    StepUp,
    Reject,
}

pub struct PalmService {
    pub key: TemplateKey,
    pub policy: PalmPolicy,
    matcher: Matcher,
    /// Shared with the matcher pool's jobs: index queries run there, not on async workers.
    index: Arc<RwLock<Box<dyn CandidateIndex>>>,
    /// Matcher jobs running at once on the blocking pool (never on an async worker).
    cpu: Arc<Semaphore>,
    /// The latest change of each palm the index has applied (taken after `index`).
    versions: Mutex<Versions>,
    /// The palm version the index holds every change up to (raised by [`Self::follow_up`]).
    through: Mutex<PalmVersion>,
    /// One enrollment at a time from its duplicate check to its index insert, so that two
    /// enrollments of one palm cannot both find the other absent.
    enrolling: tokio::sync::Mutex<()>,
    /// Enrolled palms left out of the index because their templates do not open or decode
    /// (until the palm is enrolled again or deleted): `GET /v1/admin/palms/skipped`.
    skipped: Mutex<BTreeSet<PalmId>>,
    /// Identification time and shortlist size, for `GET /v1/admin/metrics`.
    pub metrics: crate::metrics::IdentifyMetrics,
}

/// What the index has seen: everything up to `floor` (loaded at start-up), and the latest
/// version of each palm changed since.
#[derive(Debug, Default)]
struct Versions {
    floor: PalmVersion,
    latest: HashMap<PalmId, PalmVersion>,
}

impl Versions {
    /// Whether a change of `palm` at `v` is newer than everything seen of it; if so it is
    /// recorded as the latest.
    fn admit(&mut self, palm: PalmId, v: PalmVersion) -> bool {
        let latest = self.latest.entry(palm).or_insert(self.floor);
        if v <= *latest {
            return false;
        }
        *latest = v;
        true
    }
}

/// What start-up found: palms indexed, and palms whose templates do not open or decode
/// (left out and reported; their shoppers have to enroll again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub enrolled: usize,
    pub skipped: usize,
    /// The palm version the index holds every change up to (where following starts).
    pub through: PalmVersion,
}

/// Palm changes read per query while catching up.
const CATCH_UP_PAGE: u32 = 256;

impl PalmService {
    pub fn new(key: TemplateKey, policy: PalmPolicy, index: Box<dyn CandidateIndex>) -> Arc<Self> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        PalmService::with_threads(key, policy, index, threads)
    }

    /// As [`PalmService::new`], with at most `threads` matcher jobs at once.
    pub fn with_threads(
        key: TemplateKey,
        policy: PalmPolicy,
        index: Box<dyn CandidateIndex>,
        threads: usize,
    ) -> Arc<Self> {
        Arc::new(PalmService {
            key,
            policy,
            matcher: Matcher::default(),
            index: Arc::new(RwLock::new(index)),
            cpu: Arc::new(Semaphore::new(threads.max(1))),
            versions: Mutex::new(Versions::default()),
            through: Mutex::new(PalmVersion::default()),
            enrolling: tokio::sync::Mutex::new(()),
            skipped: Mutex::new(BTreeSet::new()),
            metrics: Default::default(),
        })
    }

    /// Runs CPU-bound matcher work on the blocking pool under a permit of the matcher's
    /// bound; the permit travels with the job, so a cancelled request still holds it.
    async fn on_cpu<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, LedgerError> {
        let permit = self
            .cpu
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| LedgerError::Storage(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let r = job();
            drop(permit);
            r
        })
        .await
        .map_err(|e| LedgerError::Storage(format!("matcher job failed: {e}")))
    }

    /// Builds the index from every enrolled palm in the store, reading and decrypting them
    /// a chunk at a time so that start-up memory stays bounded whatever the gallery size.
    /// A palm whose templates do not open (wrong key, damaged row) or decode is skipped
    /// with a warning instead of stopping the server.
    pub async fn load(&self, store: &dyn Store) -> Result<LoadReport> {
        let floor = store.palm_version().await?;
        self.versions.lock().expect("versions lock poisoned").floor = floor;
        *self.through.lock().expect("through lock poisoned") = floor;
        let owners = store.palm_owners().await?;
        let mut report = LoadReport {
            through: floor,
            ..LoadReport::default()
        };
        for chunk in owners.chunks(1024) {
            let sealed = store.palm_templates(Some(chunk.to_vec())).await?;
            let mut index = self.index.write().expect("index lock poisoned");
            for (account, cts) in sealed {
                match self.open_all(account, &cts) {
                    Ok(templates) => {
                        index.insert(account, &templates);
                        report.enrolled += 1;
                    }
                    Err(e) => {
                        tracing::warn!(account, error = %e, "palm left out of the index: its templates do not open or decode (the shopper has to enroll again)");
                        report.skipped += 1;
                        self.mark_skipped(account, true);
                    }
                }
            }
        }
        Ok(report)
    }

    /// The enrolled palms left out of the index (templates that do not open or decode),
    /// by account id: their shoppers have to enroll again.
    pub fn skipped(&self) -> Vec<PalmId> {
        let skipped = self.skipped.lock().expect("skipped lock poisoned");
        skipped.iter().copied().collect()
    }

    fn mark_skipped(&self, account: PalmId, skipped: bool) {
        let mut set = self.skipped.lock().expect("skipped lock poisoned");
        let changed = if skipped {
            set.insert(account)
        } else {
            set.remove(&account)
        };
        if changed {
            self.metrics.skipped.set(set.len() as i64);
        }
    }

    pub fn open_all(&self, account: i64, sealed: &[Vec<u8>]) -> Result<Vec<Template>> {
        open_all(&self.key, account, sealed)
    }

    pub fn seal_all(&self, account: i64, templates: &[Template]) -> Vec<Vec<u8>> {
        templates
            .iter()
            .enumerate()
            .map(|(i, t)| self.key.seal(account, i, &t.encode()))
            .collect()
    }

    /// Puts an enrollment of version `v` into the index, unless the index has seen this or
    /// a later change of that palm (a replayed enrollment after a deletion). Returns whether
    /// it was applied.
    pub fn index_insert(&self, account: PalmId, v: PalmVersion, templates: &[Template]) -> bool {
        self.index_change(account, v, |index| index.insert(account, templates))
    }

    /// Takes a palm deleted at version `v` out of the index, unless the index has seen a
    /// later change of it (a replayed deletion after a new enrollment). Returns whether it
    /// was applied.
    pub fn index_remove(&self, account: PalmId, v: PalmVersion) -> bool {
        self.index_change(account, v, |index| index.remove(account))
    }

    /// Applies `change` under the index's write lock if version `v` is the newest seen of
    /// `account`; returns whether it was applied.
    fn index_change(
        &self,
        account: PalmId,
        v: PalmVersion,
        change: impl FnOnce(&mut Box<dyn CandidateIndex>),
    ) -> bool {
        let mut index = self.index.write().expect("index lock poisoned");
        let newer = self
            .versions
            .lock()
            .expect("versions lock poisoned")
            .admit(account, v);
        if newer {
            change(&mut index);
            self.mark_skipped(account, false);
        }
        newer
    }

    /// Applies every palm change committed since the index was last complete (through any
    /// replica); returns the version it is complete up to now.
    pub async fn follow_up(&self, store: &dyn Store) -> Result<PalmVersion, LedgerError> {
        let after = *self.through.lock().expect("through lock poisoned");
        let now = self.catch_up(store, after).await?;
        let mut through = self.through.lock().expect("through lock poisoned");
        *through = (*through).max(now);
        Ok(*through)
    }

    /// Applies every palm change committed after `after` (through any replica) to the index,
    /// a page at a time; returns the version it is now complete up to. Changes the index
    /// already has (its own, or replays) are skipped by their version.
    pub async fn catch_up(
        &self,
        store: &dyn Store,
        mut after: PalmVersion,
    ) -> Result<PalmVersion, LedgerError> {
        loop {
            let changes = store.palm_changes(after, CATCH_UP_PAGE).await?;
            let more = changes.len() == CATCH_UP_PAGE as usize;
            for change in changes {
                after = after.max(change.version);
                self.apply(change);
            }
            if !more {
                return Ok(after);
            }
        }
    }

    /// Puts one palm's change into the index if it is newer than what the index has of it.
    /// Templates that do not open take the palm out (as at start-up, it is reported).
    fn apply(&self, change: PalmChange) {
        let PalmChange {
            account,
            version,
            state,
        } = change;
        if !self.is_newer(account, version) {
            return;
        }
        let (opened, unreadable) = match state {
            PalmState::Deleted => (None, false),
            PalmState::Enrolled(sealed) => match self.open_all(account, &sealed) {
                Ok(templates) => (Some(templates), false),
                Err(e) => {
                    tracing::warn!(account, error = %e, "followed palm left out of the index: its templates do not open or decode");
                    (None, true)
                }
            },
        };
        let applied = match opened {
            Some(templates) => self.index_insert(account, version, &templates),
            None => self.index_remove(account, version),
        };
        if applied && unreadable {
            self.mark_skipped(account, true);
        }
    }

    /// Whether the index has seen nothing of `account` as recent as `v` (a cheap look before
    /// decrypting; [`Versions::admit`] decides under the index lock).
    fn is_newer(&self, account: PalmId, v: PalmVersion) -> bool {
        let versions = self.versions.lock().expect("versions lock poisoned");
        v > *versions.latest.get(&account).unwrap_or(&versions.floor)
    }

    /// Waits for the enrollment turn: hold it from the duplicate check until the new palm
    /// is in the index.
    pub async fn enrollment_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.enrolling.lock().await
    }

    /// Sets the index's gauges (palms held, version complete up to) for a scrape.
    pub fn observe_index(&self) {
        let through = *self.through.lock().expect("through lock poisoned");
        let m = &self.metrics;
        m.indexed
            .set(i64::try_from(self.enrolled()).unwrap_or(i64::MAX));
        m.version.set(i64::try_from(through.0).unwrap_or(i64::MAX));
    }

    pub fn enrolled(&self) -> usize {
        self.index.read().expect("index lock poisoned").len()
    }

    /// Whether the enrollment captures look like one palm as real captures of one palm do:
    /// no two are (near) copies of each other, every one matches another at least at the
    /// 1:1 grey level, and some pair reaches the 1:1 accept level ([`DecisionPolicy::DEFAULT`]). The error names the capture to
    /// retake (0-based).
    pub fn consistent(&self, templates: &[Template]) -> Result<(), CaptureProblem> {
        let prepared: Vec<Prepared> = templates.iter().map(Prepared::new).collect();
        for i in 0..templates.len() {
            for j in 0..i {
                if near_copy(&templates[j], &templates[i]) {
                    return Err(CaptureProblem::Copy { capture: i, of: j });
                }
            }
        }
        let mut best = vec![0u32; prepared.len()];
        for i in 0..prepared.len() {
            for j in 0..i {
                let score = self
                    .matcher
                    .compare_prepared(&prepared[i], &prepared[j])
                    .score;
                best[i] = best[i].max(score);
                best[j] = best[j].max(score);
            }
        }
        let (worst, &low) = best
            .iter()
            .enumerate()
            .min_by_key(|&(_, s)| *s)
            .unwrap_or((0, &0));
        // Two captures compared is 1:1 verification: its policy, not the stricter 1:N one.
        let one_to_one = DecisionPolicy::DEFAULT;
        if low < one_to_one.grey {
            return Err(CaptureProblem::NoMatch { capture: worst });
        }
        if best.iter().all(|&s| s < one_to_one.accept) {
            return Err(CaptureProblem::Weak { capture: worst });
        }
        Ok(())
    }

    /// [`PalmService::consistent`] on the bounded matcher pool, off the async workers.
    pub async fn consistent_off_thread(
        self: &Arc<Self>,
        templates: Vec<Template>,
    ) -> Result<Result<(), CaptureProblem>, LedgerError> {
        let me = self.clone();
        self.on_cpu(move || me.consistent(&templates)).await
    }

    /// Finds the best enrolled palm for `probe`: candidates from the index, then the
    /// matcher on each candidate's decrypted templates (read from the store), on the
    /// bounded matcher pool.
    pub async fn identify(
        &self,
        store: &dyn Store,
        probe: &Template,
        exclude: Option<PalmId>,
    ) -> Result<Identification, LedgerError> {
        let started = Instant::now();
        let found = self.identify_inner(store, probe, exclude).await;
        self.metrics
            .seconds
            .observe(started.elapsed().as_secs_f64());
        found
    }

    async fn identify_inner(
        &self,
        store: &dyn Store,
        probe: &Template,
        exclude: Option<PalmId>,
    ) -> Result<Identification, LedgerError> {
        let first = self.shortlist(Stage::First, probe, exclude, &[]).await?;
        self.metrics.shortlist.observe(first.len() as f64);
        if first.is_empty() {
            self.metrics.verified.observe(0.0);
            return Ok(self.verdict(None, 0));
        }
        let mut scores = self.score(store, probe, first.clone()).await?;
        if self.best_of(&mut scores).decision == Verdict::Reject {
            // Second stage: the probe's ROI may be turned relative to its enrollment (the
            // kiosk read the hand's direction wrong), which the first query does not look for.
            // Only when nobody reached the grey level: a palm at grey or above is the probe's
            // own far more often than a turned probe's best impostor reaches grey among the
            // first shortlist, and the turned query would not raise that palm's score.
            let second = self
                .shortlist(Stage::Turned, probe, exclude, &first)
                .await?;
            self.metrics.turned.observe(second.len() as f64);
            if !second.is_empty() {
                scores.extend(self.score(store, probe, second).await?);
            }
        }
        self.metrics.verified.observe(scores.len() as f64);
        Ok(self.best_of(&mut scores))
    }

    /// Up to `shortlist` candidates of the index's `stage` query, without `exclude` and
    /// `seen`. On the matcher pool: at 100,000 palms a query takes tens of milliseconds,
    /// which must not hold an async worker.
    async fn shortlist(
        &self,
        stage: Stage,
        probe: &Template,
        exclude: Option<PalmId>,
        seen: &[PalmId],
    ) -> Result<Vec<PalmId>, LedgerError> {
        let (index, probe, seen) = (self.index.clone(), probe.clone(), seen.to_vec());
        let n = self.policy.shortlist;
        self.on_cpu(move || {
            let index = index.read().expect("index lock poisoned");
            let k = n + 1 + seen.len();
            let found = match stage {
                Stage::First => index.candidates(&probe, k),
                Stage::Turned => index.candidates_turned(&probe, k),
            };
            found
                .into_iter()
                .filter(|c| Some(*c) != exclude && !seen.contains(c))
                .take(n)
                .collect()
        })
        .await
    }

    /// The matcher's score of `probe` against the candidates, in the index's order, on the
    /// matcher pool: the first [`FIRST_READ`] read from the store, then the rest, stopping
    /// at the first palm that scores [`PalmPolicy::clear`].
    async fn score(
        &self,
        store: &dyn Store,
        probe: &Template,
        candidates: Vec<PalmId>,
    ) -> Result<Vec<(PalmId, u32)>, LedgerError> {
        let clear = self.policy.clear();
        let probe = Arc::new(Prepared::new(probe));
        let mut scores = Vec::with_capacity(candidates.len());
        let (head, tail) = candidates.split_at(candidates.len().min(FIRST_READ));
        for part in [head, tail] {
            if part.is_empty() || scores.iter().any(|s: &(PalmId, u32)| s.1 >= clear) {
                break;
            }
            let sealed = store.palm_templates(Some(part.to_vec())).await?;
            let (key, matcher, probe) = (self.key.clone(), self.matcher.clone(), probe.clone());
            scores.extend(
                self.on_cpu(move || score_all(&key, &matcher, &probe, sealed, clear))
                    .await?,
            );
        }
        Ok(scores)
    }

    /// The verdict on the best of `scores` (sorted best first, ties by palm id).
    fn best_of(&self, scores: &mut [(PalmId, u32)]) -> Identification {
        scores.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let runner_up = scores.get(1).map_or(0, |s| s.1);
        self.verdict(scores.first().copied(), runner_up)
    }

    fn verdict(&self, best: Option<(PalmId, u32)>, runner_up: u32) -> Identification {
        let p = self.policy;
        let decision = match best {
            Some((_, s)) if s >= p.accept && s >= runner_up + p.margin => Verdict::Accept,
            Some((_, s)) if s >= p.grey => Verdict::StepUp,
            _ => Verdict::Reject,
        };
        Identification {
            best,
            runner_up,
            decision,
        }
    }
}

/// Which of the index's queries a shortlist comes from.
#[derive(Debug, Clone, Copy)]
enum Stage {
    First,
    Turned,
}

fn open_all(key: &TemplateKey, account: i64, sealed: &[Vec<u8>]) -> Result<Vec<Template>> {
    sealed
        .iter()
        .enumerate()
        .map(|(i, ct)| {
            let plain = key.open(account, i, ct)?;
            Ok(Template::decode(&plain)?)
        })
        .collect()
}

/// The matcher's score of `probe` against each candidate's templates, in order, up to and
/// including the first that reaches `clear` (CPU-bound: runs on the matcher pool). A
/// candidate whose templates do not open is left out and reported.
fn score_all(
    key: &TemplateKey,
    matcher: &Matcher,
    probe: &Prepared,
    sealed: Vec<(PalmId, Vec<Vec<u8>>)>,
    clear: u32,
) -> Vec<(PalmId, u32)> {
    let mut scores = Vec::with_capacity(sealed.len());
    for (account, cts) in sealed {
        match open_all(key, account, &cts) {
            Ok(ts) => {
                let gallery: Vec<Prepared> = ts.iter().map(Prepared::new).collect();
                let score = matcher.compare_many(probe, &gallery).score;
                scores.push((account, score));
                if score >= clear {
                    break;
                }
            }
            Err(e) => tracing::error!(account, error = %e, "cannot open palm templates"),
        }
    }
    scores
}

/// Re-encrypts every stored template from `old` to `new` in one transaction (a page at a
/// time, see [`crate::store::sqlite::rekey_templates`]). Returns the number of palms. Run
/// with the server stopped. A template that does not open with `old` aborts the whole
/// rotation and changes nothing.
pub fn rekey(data_dir: &Path, old: &TemplateKey, new: &TemplateKey) -> Result<usize> {
    let db = data_dir.join("palmline.db");
    if !db.exists() {
        anyhow::bail!("no database at {}", db.display());
    }
    crate::store::sqlite::rekey_templates(&db, crate::store::sqlite::REKEY_PAGE, reseal(old, new))
}

/// One template from `old` to `new`: what both stores' rotation does with each row.
fn reseal<'a>(
    old: &'a TemplateKey,
    new: &'a TemplateKey,
) -> impl FnMut(i64, usize, &[u8]) -> Result<Vec<u8>> + 'a {
    move |account, i, ct| {
        let plain = old.open(account, i, ct).with_context(|| {
            format!("template {account}/{i} does not open with the current key")
        })?;
        Ok(new.seal(account, i, &plain))
    }
}

/// As [`rekey`], for a PostgreSQL database (every server stopped): see
/// [`crate::store::postgres::rekey::rekey_templates`].
pub async fn rekey_postgres(url: &str, old: &TemplateKey, new: &TemplateKey) -> Result<usize> {
    let pool = crate::store::postgres::pool(url, 1)?;
    let page = crate::store::sqlite::REKEY_PAGE;
    crate::store::postgres::rekey::rekey_templates(&pool, page, reseal(old, new)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_calibrated_policy() {
        let file: toml::Table = toml::from_str(CALIBRATED_POLICY).unwrap();
        let p = PalmPolicy::default();
        let get = |k: &str| file[k].as_integer().unwrap() as u32;
        assert_eq!(
            (p.accept, p.grey, p.margin),
            (get("accept"), get("grey"), get("margin"))
        );
        assert!(p.grey <= p.accept);
    }

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let key = TemplateKey::from_bytes(&[7u8; 32]).unwrap();
        let other = TemplateKey::from_bytes(&[8u8; 32]).unwrap();
        let ct = key.seal(42, 1, b"template bytes");
        assert!(!ct.windows(8).any(|w| w == b"template"), "plaintext leaked");
        assert_eq!(key.open(42, 1, &ct).unwrap(), b"template bytes");
        assert_eq!(
            key.open(43, 1, &ct),
            Err(SealError::Tampered),
            "bound to the account"
        );
        assert_eq!(
            key.open(42, 2, &ct),
            Err(SealError::Tampered),
            "bound to the index"
        );
        assert!(matches!(
            other.open(42, 1, &ct),
            Err(SealError::WrongKey(_))
        ));
        let mut bad = ct.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(42, 1, &bad), Err(SealError::Tampered));
        assert_eq!(key.open(42, 1, &ct[..10]), Err(SealError::Malformed));
        assert_ne!(key.seal(42, 1, b"x"), key.seal(42, 1, b"x"), "fresh nonces");
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("template.key");
        let (k1, created) = TemplateKey::load_or_create(&path).unwrap();
        assert!(created);
        let (k2, created) = TemplateKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(k1.id_hex(), k2.id_hex());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&path, b"short").unwrap();
        assert!(TemplateKey::load(&path).is_err());
    }

    #[test]
    fn index_changes_apply_once_and_never_out_of_order() {
        let mut v = Versions {
            floor: PalmVersion(10),
            ..Versions::default()
        };
        assert!(!v.admit(1, PalmVersion(7)), "loaded at start-up already");
        assert!(v.admit(1, PalmVersion(11)));
        assert!(!v.admit(1, PalmVersion(11)), "a replay changes nothing");
        assert!(v.admit(1, PalmVersion(13)));
        assert!(!v.admit(1, PalmVersion(12)), "older than what was applied");
        assert!(v.admit(2, PalmVersion(12)), "palms are independent");
    }
}
