//! Shopper secrets and sessions: argon2id password and PIN hashes, session tokens.
//!
//! Hashing is deliberately slow (~40 ms, 19 MiB), so it always runs on the blocking pool
//! behind a semaphore ([`Hasher`]), never on an async worker and never inside the ledger's
//! writer. Tokens are random; only their
//! SHA-256 is stored, so a database dump cannot be replayed as sessions.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// argon2id parameters. The default follows OWASP's recommendation (19 MiB, t=2, p=1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        HashCost {
            memory_kib: 19 * 1024,
            iterations: 2,
        }
    }
}

fn hasher(cost: HashCost) -> Argon2<'static> {
    let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
        .expect("argon2 parameters are within bounds");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a secret into a PHC string (`$argon2id$v=19$m=...`).
pub fn hash_secret(secret: &str, cost: HashCost) -> String {
    hasher(cost)
        .hash_password(secret.as_bytes())
        .expect("argon2 hashing with a fresh salt cannot fail")
        .to_string()
}

/// Verifies a secret against a stored PHC string. The parameters come from the string, so
/// a change of cost does not lock out existing users.
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    hasher(HashCost::default())
        .verify_password(secret.as_bytes(), phc)
        .is_ok()
}

/// argon2 off the async workers, at most `concurrency` hashes at a time: each takes
/// `memory_kib` of memory, so a login flood queues here instead of exhausting memory and
/// the blocking pool that SQLite reads and writes share.
pub struct Hasher {
    cost: HashCost,
    permits: Arc<Semaphore>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Hasher {
    pub fn new(cost: HashCost, concurrency: usize) -> Hasher {
        Hasher {
            cost,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            running: Arc::default(),
            peak: Arc::default(),
        }
    }

    /// Runs `f` on the blocking pool under a permit. The permit moves into the blocking
    /// task, so a cancelled request still holds it until its hash is done.
    async fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        let (running, peak) = (self.running.clone(), self.peak.clone());
        tokio::task::spawn_blocking(move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let r = f();
            running.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            r
        })
        .await
        .ok()
    }

    pub async fn hash(&self, secret: String) -> String {
        let cost = self.cost;
        self.run(move || hash_secret(&secret, cost))
            .await
            .expect("hashing task panicked")
    }

    pub async fn verify(&self, secret: String, phc: String) -> bool {
        self.run(move || verify_secret(&secret, &phc))
            .await
            .unwrap_or(false)
    }

    /// The most hashes that ever ran at once (for tests and diagnostics).
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    pub fn cost(&self) -> HashCost {
        self.cost
    }
}

/// A fresh session token (32 random bytes, base64url) and the hash to store.
pub fn new_token() -> (String, [u8; 32]) {
    let bytes: [u8; 32] = rand::random();
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Usernames: 3-32 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn valid_username(u: &str) -> bool {
    (3..=32).contains(&u.len())
        && u.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && u.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// A plausible e-mail address (one '@', something either side, a dot in the domain).
pub fn valid_email(e: &str) -> bool {
    e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(e.split_once('@'), Some((l, d)) if !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.') && !d.contains('@'))
}

/// PINs: 4-8 digits.
pub fn valid_pin(p: &str) -> bool {
    (4..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())
}

/// Passwords: 8-128 characters.
pub fn valid_password(p: &str) -> bool {
    (8..=128).contains(&p.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let cost = HashCost {
            memory_kib: 1024,
            iterations: 1,
        };
        let a = hash_secret("correct horse", cost);
        let b = hash_secret("correct horse", cost);
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "salts must differ");
        assert!(verify_secret("correct horse", &a));
        assert!(!verify_secret("correct hors", &a));
        assert!(!verify_secret("x", "not a phc string"));
    }

    #[test]
    fn default_cost_is_owasp() {
        let h = hash_secret("pw", HashCost::default());
        assert!(h.contains("m=19456,t=2,p=1"), "{h}");
    }

    #[test]
    fn validators() {
        assert!(valid_username("alice"));
        assert!(valid_username("bob.smith-2"));
        assert!(!valid_username("Al"));
        assert!(!valid_username("Alice"));
        assert!(!valid_username("_alice"));
        assert!(!valid_username("al ice"));
        assert!(valid_email("a@b.co"));
        assert!(!valid_email("a@b"));
        assert!(!valid_email("@b.co"));
        assert!(!valid_email("a b@c.de"));
        assert!(valid_pin("1234"));
        assert!(!valid_pin("12a4"));
        assert!(!valid_pin("123"));
        assert!(valid_password("12345678"));
        assert!(!valid_password("short"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hasher_bounds_concurrent_hashes() {
        let cost = HashCost {
            memory_kib: 1024,
            iterations: 1,
        };
        let h = Arc::new(Hasher::new(cost, 2));
        let phc = hash_secret("pw", cost);
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let (h, phc) = (h.clone(), phc.clone());
                tokio::spawn(
                    async move { h.verify(if i == 0 { "pw" } else { "no" }.into(), phc).await },
                )
            })
            .collect();
        let mut right = 0;
        for t in tasks {
            right += usize::from(t.await.unwrap());
        }
        assert_eq!(right, 1);
        assert!((1..=2).contains(&h.peak()), "peak {}", h.peak());
    }

    #[test]
    fn tokens_are_unique_and_hashed() {
        let (t1, h1) = new_token();
        let (t2, h2) = new_token();
        assert_ne!(t1, t2);
        assert_ne!(h1, h2);
        assert_eq!(token_hash(&t1), h1);
    }
}
