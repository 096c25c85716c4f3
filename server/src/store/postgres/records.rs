//! The commands that move no money: shoppers, freezes, sessions, kiosks, palms, the scan
//! log, guess counters and the retention purge. Each runs inside the caller's transaction.

use super::accounts::{self, Tx};
use super::{execute, query_one, query_opt, reads, storage};
use crate::limits::{self, Grant, GuessCounts, GuessKey, GuessRules};
use crate::store::clock::{now_text, today, ts_of, unix_now};
use crate::store::{Command, Cutoffs, LedgerError, Outcome, PalmVersion, Purged, ScanOutcome};
use palmline_shared::Currency;

/// Any fixed number: every palm change takes it, so palm versions commit in their order.
const PALM_LOCK: i64 = 0x7061_6c6e;

/// Applies a command that is not a money movement.
pub(super) async fn apply(
    tx: &Tx<'_>,
    cur: Currency,
    cmd: Command,
) -> Result<Outcome, LedgerError> {
    match cmd {
        Command::RegisterShopper {
            username,
            email,
            password_hash,
            pin_hash,
        } => {
            let new = NewShopper(&username, &email, &password_hash, pin_hash.as_deref());
            register_shopper(tx, cur, new).await
        }
        Command::SetFrozen { account_id, frozen } => set_frozen(tx, cur, account_id, frozen).await,
        Command::LiftLocks { account_id } => lift_locks(tx, cur, account_id).await,
        Command::CreateSession {
            token_hash,
            shopper_id,
            kiosk_id,
            expires_at,
        } => create_session(tx, &token_hash, shopper_id, &kiosk_id, expires_at).await,
        Command::ReserveGuess { key, rules } => {
            reserve_guess(tx, &key, rules).await.map(Outcome::Guess)
        }
        Command::GuessRight { key } => guess_right(tx, &key).await.map(|()| Outcome::Done),
        Command::TouchKiosk { at } => {
            let merchant = accounts::merchant_ids(tx, &at.merchant, cur).await?.account;
            execute(
                tx,
                "INSERT INTO kiosks (kiosk_id, merchant_id, first_seen, last_seen, requests) VALUES ($1, $2, $3, $3, 1)
                 ON CONFLICT (kiosk_id) DO UPDATE SET last_seen = excluded.last_seen,
                   merchant_id = excluded.merchant_id, requests = kiosks.requests + 1",
                &[&at.kiosk_id, &merchant, &now_text()],
            )
            .await?;
            Ok(Outcome::Done)
        }
        Command::CreateCashier {
            merchant,
            name,
            pin_hash,
        } => create_cashier(tx, cur, &merchant, &name, &pin_hash).await,
        Command::ResetCashier {
            cashier_id,
            pin_hash,
        } => reset_cashier(tx, cashier_id, pin_hash).await,
        Command::SetShopperPin {
            shopper_id,
            pin_hash,
        } => {
            let sql = "UPDATE accounts SET pin_hash = $2 WHERE id = $1 AND kind = 'shopper'";
            if execute(tx, sql, &[&shopper_id, &pin_hash]).await? == 0 {
                return Err(LedgerError::UnknownAccount(format!("#{shopper_id}")));
            }
            Ok(Outcome::Done)
        }
        Command::DisableCashier { cashier_id } => {
            let sql = "UPDATE cashiers SET status = 'disabled' WHERE id = $1";
            if execute(tx, sql, &[&cashier_id]).await? == 0 {
                return Err(LedgerError::UnknownCashier);
            }
            Ok(Outcome::Cashier(
                reads::cashier_by_id(tx, cashier_id).await?,
            ))
        }
        Command::ReserveCashierGuess {
            cashier_id,
            kiosk_id,
            rules,
        } => reserve_cashier_guess(tx, cashier_id, &kiosk_id, rules)
            .await
            .map(Outcome::Guess),
        Command::CashierGuessRight { cashier_id } => {
            let day = today();
            let c = locked_cashier_counts(tx, cashier_id, &day).await?;
            let after = GuessCounts {
                failures: 0,
                locked_until: None,
                guesses_today: c.guesses_today.saturating_sub(1),
                locks_today: c.locks_today,
            };
            put_cashier_counts(tx, cashier_id, &day, after).await?;
            Ok(Outcome::Done)
        }
        Command::CreateCashierSession {
            token_hash,
            cashier_id,
            kiosk_id,
            expires_at,
        } => {
            execute(
                tx,
                "INSERT INTO cashier_sessions (token_hash, cashier_id, kiosk_id, expires_at, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&&token_hash[..], &cashier_id, &kiosk_id, &expires_at, &now_text()],
            )
            .await?;
            Ok(Outcome::Done)
        }
        Command::EnrollPalm {
            shopper_id,
            ciphertexts,
        } => change_palm(tx, shopper_id, Some(&ciphertexts)).await,
        Command::DeletePalm { shopper_id } => change_palm(tx, shopper_id, None).await,
        Command::Purge { cutoffs, batch } => Ok(Outcome::Purged(purge(tx, cutoffs, batch).await?)),
        Command::LogScan {
            kiosk_id,
            purpose,
            outcome,
            score,
            shopper_id,
        } => log_scan(tx, &kiosk_id, &purpose, outcome, score, shopper_id).await,
        _ => Err(storage("a money command reached the record keeping")),
    }
}

/// Username, email, password hash and PIN hash of a new shopper.
struct NewShopper<'a>(&'a str, &'a str, &'a str, Option<&'a str>);

async fn register_shopper(
    tx: &Tx<'_>,
    cur: Currency,
    NewShopper(username, email, password_hash, pin_hash): NewShopper<'_>,
) -> Result<Outcome, LedgerError> {
    let id: i64 = query_opt(
        tx,
        "INSERT INTO accounts (kind, name, email, password_hash, pin_hash, currency, created_at)
         VALUES ('shopper', $1, $2, $3, $4, $5, $6) ON CONFLICT (kind, name) DO NOTHING RETURNING id",
        &[&username, &email, &password_hash, &pin_hash, &cur.code(), &now_text()],
    )
    .await?
    .ok_or(LedgerError::UsernameTaken)?
    .get(0);
    Ok(Outcome::Shopper(reads::shopper_view(tx, id).await?))
}

async fn set_frozen(
    tx: &Tx<'_>,
    cur: Currency,
    account_id: i64,
    frozen: bool,
) -> Result<Outcome, LedgerError> {
    let status = if frozen { "frozen" } else { "active" };
    let n = execute(
        tx,
        "UPDATE accounts SET status = $1 WHERE id = $2 AND kind IN ('shopper', 'merchant')",
        &[&status, &account_id],
    )
    .await?;
    if n == 0 {
        return Err(LedgerError::UnknownAccount(format!("#{account_id}")));
    }
    Ok(Outcome::Account(
        reads::account_row(tx, account_id, cur).await?,
    ))
}

async fn lift_locks(tx: &Tx<'_>, cur: Currency, account_id: i64) -> Result<Outcome, LedgerError> {
    let n = execute(
        tx,
        "SELECT 1 FROM accounts WHERE id = $1 AND kind = 'shopper' FOR UPDATE",
        &[&account_id],
    )
    .await?;
    if n == 0 {
        return Err(LedgerError::UnknownAccount(format!("#{account_id}")));
    }
    execute(
        tx,
        "DELETE FROM auth_kiosk WHERE account_id = $1",
        &[&account_id],
    )
    .await?;
    execute(
        tx,
        "DELETE FROM auth_day WHERE account_id = $1 AND day = $2",
        &[&account_id, &today()],
    )
    .await?;
    Ok(Outcome::Account(
        reads::account_row(tx, account_id, cur).await?,
    ))
}

async fn reset_cashier(
    tx: &Tx<'_>,
    id: i64,
    pin_hash: Option<String>,
) -> Result<Outcome, LedgerError> {
    let sql = "UPDATE cashiers SET failures = 0, locked_until = NULL, guesses = 0, locks = 0,
                 pin_hash = COALESCE($2, pin_hash) WHERE id = $1";
    if execute(tx, sql, &[&id, &pin_hash]).await? == 0 {
        return Err(LedgerError::UnknownCashier);
    }
    if pin_hash.is_some() {
        let sql = "DELETE FROM cashier_sessions WHERE cashier_id = $1";
        execute(tx, sql, &[&id]).await?;
    }
    Ok(Outcome::Cashier(reads::cashier_by_id(tx, id).await?))
}

async fn create_session(
    tx: &Tx<'_>,
    token_hash: &[u8; 32],
    shopper_id: i64,
    kiosk_id: &str,
    expires_at: i64,
) -> Result<Outcome, LedgerError> {
    let long_expired = unix_now() - 3600;
    execute(
        tx,
        "DELETE FROM sessions WHERE expires_at < $1",
        &[&long_expired],
    )
    .await?;
    execute(
        tx,
        "INSERT INTO sessions (token_hash, account_id, kiosk_id, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
        &[&&token_hash[..], &shopper_id, &kiosk_id, &expires_at, &now_text()],
    )
    .await?;
    Ok(Outcome::Done)
}

/// Enrolls (`Some`, replacing any earlier templates) or deletes (`None`) a shopper's palm,
/// and gives it the next palm version. The advisory lock, held to commit, makes palm changes
/// commit one after another in version order: a replica that read version `v` has every
/// change up to `v`.
async fn change_palm(
    tx: &Tx<'_>,
    shopper_id: i64,
    enroll: Option<&[Vec<u8>]>,
) -> Result<Outcome, LedgerError> {
    execute(tx, "SELECT pg_advisory_xact_lock($1)", &[&PALM_LOCK]).await?;
    let status: String = query_opt(
        tx,
        "SELECT status FROM accounts WHERE id = $1 AND kind = 'shopper'",
        &[&shopper_id],
    )
    .await?
    .ok_or_else(|| LedgerError::UnknownAccount(format!("#{shopper_id}")))?
    .get(0);
    if enroll.is_some() && status == "frozen" {
        return Err(LedgerError::AccountFrozen);
    }
    let sql = "DELETE FROM palm_templates WHERE account_id = $1";
    execute(tx, sql, &[&shopper_id]).await?;
    let now = now_text();
    for (i, ct) in enroll.unwrap_or_default().iter().enumerate() {
        let idx = i32::try_from(i).map_err(storage)?;
        execute(
            tx,
            "INSERT INTO palm_templates (account_id, idx, ciphertext, created_at) VALUES ($1, $2, $3, $4)",
            &[&shopper_id, &idx, ct, &now],
        )
        .await?;
    }
    let v: i64 = query_one(
        tx,
        "INSERT INTO palm_versions (account_id, version)
           SELECT $1, COALESCE(MAX(version), 0) + 1 FROM palm_versions
         ON CONFLICT (account_id) DO UPDATE SET version = excluded.version RETURNING version",
        &[&shopper_id],
    )
    .await?
    .get(0);
    // Delivered to every listening replica when (and only if) this transaction commits.
    let sql = "SELECT pg_notify($1, $2)";
    execute(tx, sql, &[&super::notify::PALM_CHANNEL, &v.to_string()]).await?;
    Ok(Outcome::Palm(PalmVersion(
        u64::try_from(v).map_err(storage)?,
    )))
}

async fn log_scan(
    tx: &Tx<'_>,
    kiosk_id: &str,
    purpose: &str,
    outcome: ScanOutcome,
    score: Option<f64>,
    shopper_id: Option<i64>,
) -> Result<Outcome, LedgerError> {
    execute(
        tx,
        "INSERT INTO palm_scans (kiosk_id, at, purpose, outcome, score, account_id) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&kiosk_id, &now_text(), &purpose, &outcome.as_str(), &score, &shopper_id],
    )
    .await?;
    Ok(Outcome::Done)
}

/// One batch of each kind of purge (see [`Command::Purge`]). The ledger's own tables are
/// never touched.
async fn purge(tx: &Tx<'_>, cut: Cutoffs, batch: u32) -> Result<Purged, LedgerError> {
    let batch = i64::from(batch);
    let today = ts_of(cut.now)?[..10].to_string();
    Ok(Purged {
        idempotency: execute(
            tx,
            "DELETE FROM idempotency WHERE (scope, key) IN
               (SELECT scope, key FROM idempotency WHERE created_at < $1 LIMIT $2)",
            &[&ts_of(cut.idempotency)?, &batch],
        )
        .await?,
        scans: execute(
            tx,
            "DELETE FROM palm_scans WHERE id IN (SELECT id FROM palm_scans WHERE at < $1 LIMIT $2)",
            &[&ts_of(cut.scans)?, &batch],
        )
        .await?,
        sessions: execute(
            tx,
            "DELETE FROM sessions WHERE token_hash IN
               (SELECT token_hash FROM sessions WHERE expires_at < $1 LIMIT $2)",
            &[&cut.now, &batch],
        )
        .await?
            + execute(
                tx,
                "DELETE FROM cashier_sessions WHERE token_hash IN
                   (SELECT token_hash FROM cashier_sessions WHERE expires_at < $1 LIMIT $2)",
                &[&cut.now, &batch],
            )
            .await?,
        guess_days: execute(
            tx,
            "DELETE FROM auth_day WHERE (account_id, secret, day) IN
               (SELECT account_id, secret, day FROM auth_day WHERE day < $1 LIMIT $2)",
            &[&today, &batch],
        )
        .await?,
    })
}

// ------------------------------------------------------------------ guesses

/// Counts a guess before it is checked ([`limits::reserve_guess`] decides) with the
/// factor's counters locked, so no two concurrent guesses, at any replica, can both take
/// the last free slot.
async fn reserve_guess(tx: &Tx<'_>, k: &GuessKey, rules: GuessRules) -> Result<Grant, LedgerError> {
    let day = today();
    let counts = locked_counts(tx, k, &day).await?;
    let (grant, after) = limits::reserve_guess(k, rules, unix_now(), counts);
    if let Some(a) = after {
        put_counts(tx, k, &day, a).await?;
    }
    Ok(grant)
}

/// The reserved guess was right: this factor at this kiosk starts over, and the guess goes
/// back to the day's budget.
async fn guess_right(tx: &Tx<'_>, k: &GuessKey) -> Result<(), LedgerError> {
    let day = today();
    let c = locked_counts(tx, k, &day).await?;
    let after = GuessCounts {
        failures: 0,
        locked_until: None,
        guesses_today: c.guesses_today.saturating_sub(1),
        locks_today: c.locks_today,
    };
    put_counts(tx, k, &day, after).await
}

/// The counters of `k` at its kiosk and for its secret today, created at zero if absent and
/// locked either way (the upsert's no-op update takes the row lock), always the kiosk's row
/// first and then the day's, so guesses never deadlock.
async fn locked_counts(tx: &Tx<'_>, k: &GuessKey, day: &str) -> Result<GuessCounts, LedgerError> {
    let id = k.account_id;
    let kiosk = query_one(
        tx,
        "INSERT INTO auth_kiosk (account_id, factor, kiosk_id) VALUES ($1, $2, $3)
         ON CONFLICT (account_id, factor, kiosk_id) DO UPDATE SET failures = auth_kiosk.failures
         RETURNING failures, locked_until",
        &[&id, &k.factor.as_str(), &k.kiosk_id],
    )
    .await?;
    let today = query_one(
        tx,
        "INSERT INTO auth_day (account_id, secret, day) VALUES ($1, $2, $3)
         ON CONFLICT (account_id, secret, day) DO UPDATE SET guesses = auth_day.guesses
         RETURNING guesses, locks",
        &[&id, &k.factor.secret(), &day],
    )
    .await?;
    let count = |row: &tokio_postgres::Row, i| u32::try_from(row.get::<_, i32>(i)).map_err(storage);
    Ok(GuessCounts {
        failures: count(&kiosk, 0)?,
        locked_until: kiosk.get(1),
        guesses_today: count(&today, 0)?,
        locks_today: count(&today, 1)?,
    })
}

/// Writes the counters of `k` (their rows exist and are locked by [`locked_counts`]).
async fn put_counts(
    tx: &Tx<'_>,
    k: &GuessKey,
    day: &str,
    c: GuessCounts,
) -> Result<(), LedgerError> {
    let int = |n: u32| i32::try_from(n).map_err(storage);
    execute(
        tx,
        "UPDATE auth_kiosk SET failures = $4, locked_until = $5
         WHERE account_id = $1 AND factor = $2 AND kiosk_id = $3",
        &[
            &k.account_id,
            &k.factor.as_str(),
            &k.kiosk_id,
            &int(c.failures)?,
            &c.locked_until,
        ],
    )
    .await?;
    execute(
        tx,
        "UPDATE auth_day SET guesses = $4, locks = $5 WHERE account_id = $1 AND secret = $2 AND day = $3",
        &[&k.account_id, &k.factor.secret(), &day, &int(c.guesses_today)?, &int(c.locks_today)?],
    )
    .await?;
    Ok(())
}

// ------------------------------------------------------------------ cashiers

async fn create_cashier(
    tx: &Tx<'_>,
    cur: Currency,
    merchant: &str,
    name: &str,
    pin_hash: &str,
) -> Result<Outcome, LedgerError> {
    let merchant_id = accounts::merchant_ids(tx, merchant, cur).await?.account;
    let id: i64 = query_opt(
        tx,
        "INSERT INTO cashiers (merchant_id, name, pin_hash, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (merchant_id, name) DO NOTHING RETURNING id",
        &[&merchant_id, &name, &pin_hash, &now_text()],
    )
    .await?
    .ok_or(LedgerError::CashierExists)?
    .get(0);
    Ok(Outcome::Cashier(reads::cashier_by_id(tx, id).await?))
}

/// Counts a guess at a cashier's PIN before it is checked ([`limits::reserve_guess`]) with
/// the cashier's row locked, so concurrent guesses at any replica take turns.
async fn reserve_cashier_guess(
    tx: &Tx<'_>,
    id: i64,
    kiosk_id: &str,
    rules: GuessRules,
) -> Result<Grant, LedgerError> {
    let day = today();
    let counts = locked_cashier_counts(tx, id, &day).await?;
    let key = crate::store::cashier_key(id, kiosk_id);
    let (grant, after) = limits::reserve_guess(&key, rules, unix_now(), counts);
    if let Some(a) = after {
        put_cashier_counts(tx, id, &day, a).await?;
    }
    Ok(grant)
}

/// A cashier's guess counts, its row locked until the transaction ends.
async fn locked_cashier_counts(
    tx: &Tx<'_>,
    id: i64,
    day: &str,
) -> Result<GuessCounts, LedgerError> {
    let r = query_opt(
        tx,
        "SELECT failures, locked_until, guess_day, guesses, locks FROM cashiers
         WHERE id = $1 FOR NO KEY UPDATE",
        &[&id],
    )
    .await?
    .ok_or(LedgerError::UnknownCashier)?;
    let count = |i: usize| u32::try_from(r.get::<_, i32>(i)).map_err(storage);
    Ok(crate::store::cashier_counts(
        count(0)?,
        r.get(1),
        (r.get(2), count(3)?, count(4)?),
        day,
    ))
}

async fn put_cashier_counts(
    tx: &Tx<'_>,
    id: i64,
    day: &str,
    c: GuessCounts,
) -> Result<(), LedgerError> {
    let int = |n: u32| i32::try_from(n).map_err(storage);
    execute(
        tx,
        "UPDATE cashiers SET failures = $2, locked_until = $3, guess_day = $4, guesses = $5, locks = $6
         WHERE id = $1",
        &[
            &id,
            &int(c.failures)?,
            &c.locked_until,
            &day,
            &int(c.guesses_today)?,
            &int(c.locks_today)?,
        ],
    )
    .await?;
    Ok(())
}
