//! The ledger's store: one async trait, implemented by SQLite (the default) and PostgreSQL.
//!
//! Every mutation is a [`Command`] passed to [`Store::execute`], which applies it as one
//! database transaction (or savepoint inside a group commit) together with its idempotency
//! record, so a retried request can never move money twice. Reads are separate methods.
//! Nothing here hashes passwords or talks HTTP: callers do the slow or outward work first.

pub mod clock;
pub mod model;
pub mod postgres;
pub mod receipt;
pub mod relocate;
pub mod sqlite;

use crate::limits::{Grant, GuessCounts, GuessKey, GuessRules, NoPinGuard};
use async_trait::async_trait;
pub use clock::Timestamp;
pub use model::{
    AccountRow, BalanceMismatch, Cashier, CashierStatus, CashierTotals, DailyReport, DailyTotals,
    HistoryItem, HistoryPage, KioskRow, LedgerCheck, PalmScanRow, Receipt, ScanOutcome, Shopper,
    Wallet,
};
use palmline_shared::Money;
use serde::{Deserialize, Serialize};

/// Who the idempotency key belongs to, and the fingerprint of the request it guards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idem {
    /// The caller: `kiosk:<id>` or `admin:<name>`.
    pub scope: String,
    pub key: String,
    /// SHA-256 over method, path, the authenticated subject and the body.
    pub request_hash: [u8; 32],
}

/// Where a request came from (from the client certificate, never the body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KioskRef {
    pub kiosk_id: String,
    pub merchant: String,
}

impl KioskRef {
    /// The idempotency scope of this kiosk's requests.
    pub fn scope(&self) -> String {
        format!("kiosk:{}", self.kiosk_id)
    }
}

/// Every state change of the ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    RegisterShopper {
        username: String,
        email: String,
        password_hash: String,
        pin_hash: Option<String>,
    },
    /// Cash in, taken by the cashier `cashier_id` (who must be an active cashier of the
    /// kiosk's merchant; recorded on the transaction).
    Deposit {
        at: KioskRef,
        username: String,
        amount: Money,
        cashier_id: i64,
    },
    /// Cash out, paid by the cashier `cashier_id` (as for a deposit).
    Withdrawal {
        at: KioskRef,
        shopper_id: i64,
        amount: Money,
        cashier_id: i64,
    },
    Payment {
        at: KioskRef,
        shopper_id: i64,
        amount: Money,
        description: Option<String>,
    },
    Transfer {
        at: Option<KioskRef>,
        from_shopper_id: i64,
        to_username: String,
        amount: Money,
        note: Option<String>,
    },
    Refund {
        payment_id: i64,
        amount: Money,
        reason: Option<String>,
        operator: String,
    },
    SetFrozen {
        account_id: i64,
        frozen: bool,
    },
    /// The operator lifts a shopper's lock-outs early (every kiosk, every factor) and gives
    /// back today's guesses, after checking who the shopper is. Answers the account.
    LiftLocks {
        account_id: i64,
    },
    CreateSession {
        token_hash: [u8; 32],
        shopper_id: i64,
        kiosk_id: String,
        expires_at: i64,
    },
    /// Counts one guess at a secret BEFORE it is checked (see [`crate::limits`]): refused
    /// while the factor is locked at this kiosk or the day's budget is spent; may lock the
    /// factor at this kiosk. Answers [`Outcome::Guess`].
    ReserveGuess {
        key: GuessKey,
        rules: GuessRules,
    },
    /// The reserved guess was right: clears this factor's failures and lock at this kiosk
    /// (no other factor's, no other kiosk's) and gives the guess back to the day's budget.
    GuessRight {
        key: GuessKey,
    },
    /// A debit (withdrawal, payment, transfer) made without the PIN: refused with
    /// [`LedgerError::PinRequired`] if it would take the shopper past a limit, checked and
    /// recorded in the same savepoint as the debit.
    WithoutPin {
        guard: NoPinGuard,
        debit: Box<Command>,
    },
    TouchKiosk {
        at: KioskRef,
    },
    /// A new cashier of `merchant` (its accounts are created if no kiosk of it was seen
    /// yet). Refused with [`LedgerError::CashierExists`] if the merchant has one of that
    /// name. Answers [`Outcome::Cashier`].
    CreateCashier {
        merchant: String,
        name: String,
        pin_hash: String,
    },
    /// The cashier can no longer sign in, and its open sessions stop working. Answers
    /// [`Outcome::Cashier`]; [`LedgerError::UnknownCashier`] if there is none.
    DisableCashier {
        cashier_id: i64,
    },
    /// The operator lifts a cashier's lock and gives back the day's guesses; with a new PIN
    /// hash, the PIN changes too and the cashier's open sessions end. Answers
    /// [`Outcome::Cashier`]; [`LedgerError::UnknownCashier`] if there is none.
    ResetCashier {
        cashier_id: i64,
        pin_hash: Option<String>,
    },
    /// A shopper's PIN set or changed (argon2id hash; the caller has checked the current
    /// PIN, if any). Answers [`Outcome::Done`]; [`LedgerError::UnknownAccount`] if there is
    /// no such shopper.
    SetShopperPin {
        shopper_id: i64,
        pin_hash: String,
    },
    /// Counts one guess at a cashier's PIN BEFORE it is checked, on the cashier's own
    /// counters (the same rule as [`Command::ReserveGuess`], one lock for every kiosk).
    /// Answers [`Outcome::Guess`].
    ReserveCashierGuess {
        cashier_id: i64,
        kiosk_id: String,
        rules: GuessRules,
    },
    /// The reserved cashier PIN was right: its failures and lock are cleared and the guess
    /// goes back to the day's budget.
    CashierGuessRight {
        cashier_id: i64,
    },
    CreateCashierSession {
        token_hash: [u8; 32],
        cashier_id: i64,
        kiosk_id: String,
        expires_at: i64,
    },
    /// Stores (replacing any earlier) the encrypted enrollment templates of a shopper.
    EnrollPalm {
        shopper_id: i64,
        ciphertexts: Vec<Vec<u8>>,
    },
    /// Deletes a shopper's palm (a shopper's right; also an operator action).
    DeletePalm {
        shopper_id: i64,
    },
    /// Deletes at most `batch` rows of each kind older than the cut-offs: idempotency
    /// records, palm-scan log rows, expired sessions and past days' guess counts. Never a
    /// transaction, an entry or an account. Answers [`Outcome::Purged`].
    Purge {
        cutoffs: Cutoffs,
        batch: u32,
    },
    LogScan {
        kiosk_id: String,
        purpose: String,
        outcome: ScanOutcome,
        score: Option<f64>,
        shopper_id: Option<i64>,
    },
}

impl Command {
    /// The shopper and amount of a debit made by a shopper (withdrawal, payment, transfer).
    pub fn debit(&self) -> Option<(i64, Money)> {
        match self {
            Command::Withdrawal {
                shopper_id, amount, ..
            }
            | Command::Payment {
                shopper_id, amount, ..
            } => Some((*shopper_id, *amount)),
            Command::Transfer {
                from_shopper_id,
                amount,
                ..
            } => Some((*from_shopper_id, *amount)),
            _ => None,
        }
    }
}

/// What a successful command produced, in domain types ([`model`]). Stored with the
/// idempotency key (serde JSON, the shape [`model`] pins), so a retry gets exactly this back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Shopper(Shopper),
    Receipt(Receipt),
    Account(AccountRow),
    Cashier(Cashier),
    Guess(Grant),
    /// An enrollment or deletion of a palm, and the palm's version after it.
    Palm(PalmVersion),
    Purged(Purged),
    Done,
}

impl Outcome {
    /// The palm version an enrollment or deletion produced. `None` for anything else, and
    /// for a replay of a change stored before palms had versions (already in the index).
    pub fn palm_version(&self) -> Option<PalmVersion> {
        match self {
            Outcome::Palm(v) => Some(*v),
            _ => None,
        }
    }
}

/// A turn held in the database while this value lives (dropping it gives the turn back).
pub trait Turn: Send {}

/// The version of one shopper's palm: every enrollment and deletion takes the next number
/// of one store-wide sequence, so a later change always has a larger version.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct PalmVersion(pub u64);

/// A palm as it is after its latest change: read together with that change's version (one
/// snapshot), so a replica applying it never pairs old templates with a newer version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PalmChange {
    pub account: i64,
    pub version: PalmVersion,
    pub state: PalmState,
}

/// A palm's state: its sealed enrollment templates, or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PalmState {
    Enrolled(Vec<Vec<u8>>),
    Deleted,
}

/// Groups `(account, version, ciphertext)` rows, ordered by version then template index, into
/// changes; a row without a ciphertext is a deleted palm.
pub(crate) fn group_palm_changes(
    rows: impl IntoIterator<Item = (i64, u64, Option<Vec<u8>>)>,
) -> Vec<PalmChange> {
    let mut out: Vec<PalmChange> = Vec::new();
    for (account, version, ct) in rows {
        let version = PalmVersion(version);
        let same = out
            .last()
            .is_some_and(|c| (c.account, c.version) == (account, version));
        if !same {
            out.push(PalmChange {
                account,
                version,
                state: PalmState::Deleted,
            });
        }
        if let (Some(ct), Some(last)) = (ct, out.last_mut()) {
            match &mut last.state {
                PalmState::Enrolled(cts) => cts.push(ct),
                PalmState::Deleted => last.state = PalmState::Enrolled(vec![ct]),
            }
        }
    }
    out
}

/// A cashier's guess counts as the rule reads them ([`crate::limits::reserve_guess`]), from
/// the columns of its row: the day's counts only if they are of `today`.
pub(crate) fn cashier_counts(
    failures: u32,
    locked_until: Option<i64>,
    (guess_day, guesses, locks): (Option<&str>, u32, u32),
    today: &str,
) -> GuessCounts {
    let (guesses_today, locks_today) = if guess_day == Some(today) {
        (guesses, locks)
    } else {
        (0, 0)
    };
    GuessCounts {
        failures,
        locked_until,
        guesses_today,
        locks_today,
    }
}

/// The key a cashier's guess is logged under (its `account_id` is the cashier's id).
pub(crate) fn cashier_key(cashier_id: i64, kiosk_id: &str) -> GuessKey {
    GuessKey {
        account_id: cashier_id,
        factor: crate::limits::Factor::Cashier,
        kiosk_id: kiosk_id.to_string(),
    }
}

/// A cashier's status column (the schema allows only these two; anything else is not active).
pub(crate) fn cashier_status(s: &str) -> CashierStatus {
    CashierStatus::parse(s).unwrap_or(CashierStatus::Disabled)
}

/// One row of a day's cash by cashier: the cashier (`None`: recorded before cashiers), its
/// name, the kind of movement, how many and their sum in minor units.
pub(crate) type CashRow = (Option<i64>, Option<String>, String, i64, i64);

/// A day's cash per cashier from `rows` (any order): named cashiers by name, then the cash
/// without a cashier.
pub(crate) fn cashier_totals(
    rows: impl IntoIterator<Item = CashRow>,
    cur: palmline_shared::Currency,
) -> Result<Vec<CashierTotals>, LedgerError> {
    let mut out: Vec<CashierTotals> = Vec::new();
    for (id, name, kind, count, sum) in rows {
        let i = match out.iter().position(|t| t.cashier_id == id) {
            Some(i) => i,
            None => {
                out.push(CashierTotals {
                    cashier_id: id,
                    name: name.unwrap_or_default(),
                    deposits_count: 0,
                    deposits_total: Money::zero(cur),
                    withdrawals_count: 0,
                    withdrawals_total: Money::zero(cur),
                    cash_net: Money::zero(cur),
                });
                out.len() - 1
            }
        };
        let t = &mut out[i];
        let m = Money::from_minor(sum, cur);
        match kind.as_str() {
            "deposit" => (t.deposits_count, t.deposits_total) = (count, m),
            "withdrawal" => (t.withdrawals_count, t.withdrawals_total) = (count, m),
            _ => continue,
        }
        t.cash_net = t
            .deposits_total
            .checked_sub(t.withdrawals_total)
            .map_err(|e| LedgerError::Storage(e.to_string()))?;
    }
    out.sort_by(|a, b| {
        (a.cashier_id.is_none(), &a.name, a.cashier_id).cmp(&(
            b.cashier_id.is_none(),
            &b.name,
            b.cashier_id,
        ))
    });
    Ok(out)
}

/// Cut-offs of a purge, in Unix seconds: rows older than these go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cutoffs {
    /// Idempotency records created before this.
    pub idempotency: i64,
    /// Palm-scan log rows written before this.
    pub scans: i64,
    /// Sessions expired before this, and guess counts of UTC days before this one's.
    pub now: i64,
}

/// Rows a purge deleted, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    pub idempotency: u64,
    pub scans: u64,
    pub sessions: u64,
    pub guess_days: u64,
}

impl Purged {
    pub fn add(&mut self, o: Purged) {
        self.idempotency += o.idempotency;
        self.scans += o.scans;
        self.sessions += o.sessions;
        self.guess_days += o.guess_days;
    }

    /// Whether any kind filled its batch (so there may be more to purge).
    pub fn any_at(&self, batch: u32) -> bool {
        let b = u64::from(batch);
        [self.idempotency, self.scans, self.sessions, self.guess_days]
            .iter()
            .any(|&n| n >= b)
    }
}

/// Errors of the ledger. Domain errors are part of the idempotent result; `Unavailable` and
/// `Storage` are not (a retry after a storage failure runs again).
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum LedgerError {
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error("no such account: {0}")]
    UnknownAccount(String),
    #[error("account is frozen")]
    AccountFrozen,
    #[error("username is taken")]
    UsernameTaken,
    #[error("no such payment")]
    UnknownPayment,
    #[error("refund exceeds what remains of the payment ({0})")]
    RefundExceedsPayment(String),
    #[error("cannot transfer to the same account")]
    SameAccount,
    #[error("idempotency key reused with a different request")]
    IdempotencyMismatch,
    #[error("invalid amount: {0}")]
    InvalidAmount(String),
    #[error("unsupported currency: {0}")]
    UnsupportedCurrency(String),
    #[error("over the limit without PIN: the PIN is required")]
    PinRequired,
    #[error("over the limit without PIN, and the shopper has none: set a PIN first")]
    PinNotSet,
    #[error("no such cashier")]
    UnknownCashier,
    #[error("this merchant already has a cashier of that name")]
    CashierExists,
    #[error("this cashier is disabled")]
    CashierDisabled,
    #[error("this cashier works for another merchant")]
    CashierElsewhere,
    /// The store cannot serve now for a reason outside the program (disk full, file not
    /// writable, database unreachable or busy) that goes away when its cause does: the
    /// request changed nothing and may be retried with the same idempotency key. The API
    /// answers 503 `unavailable` with a Retry-After; `detail` goes only to the log.
    #[error("storage unavailable ({fault}): {detail}")]
    Unavailable { fault: StorageFault, detail: String },
    /// Any other storage failure: a bug or a damaged database (500 `internal`).
    #[error("storage failure: {0}")]
    Storage(String),
}

/// Why a store is unavailable. Told apart for the operator (log, metrics), never for the
/// client, which sees one `unavailable` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StorageFault {
    /// The database cannot be reached: connection refused, broken or timed out, no pooled
    /// connection in time, the server shutting down or starting (PostgreSQL class 08,
    /// 57P01-57P03).
    Unreachable,
    /// The volume is full (SQLITE_FULL; PostgreSQL 53100).
    DiskFull,
    /// The database cannot be written: a read-only file, directory or file system, or a
    /// read-only PostgreSQL (a standby: 25006).
    ReadOnly,
    /// Another writer held the database past the wait (SQLITE_BUSY/LOCKED after the busy
    /// timeout; PostgreSQL 55P03 lock timeout, 53xxx out of resources other than disk).
    Busy,
    /// An I/O error of the disk (SQLITE_IOERR not explained by the above).
    Io,
}

impl StorageFault {
    /// How long a client is told to wait before retrying (`Retry-After`).
    pub fn retry_after(self) -> std::time::Duration {
        let secs = match self {
            StorageFault::Busy => 1,
            StorageFault::Unreachable => 2,
            StorageFault::DiskFull | StorageFault::ReadOnly | StorageFault::Io => 5,
        };
        std::time::Duration::from_secs(secs)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StorageFault::Unreachable => "unreachable",
            StorageFault::DiskFull => "disk_full",
            StorageFault::ReadOnly => "read_only",
            StorageFault::Busy => "busy",
            StorageFault::Io => "io",
        }
    }
}

impl std::fmt::Display for StorageFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl LedgerError {
    /// A [`LedgerError::Unavailable`].
    pub fn unavailable(fault: StorageFault, detail: impl std::fmt::Display) -> LedgerError {
        LedgerError::Unavailable {
            fault,
            detail: detail.to_string(),
        }
    }

    /// The fault, if this is [`LedgerError::Unavailable`].
    pub fn fault(&self) -> Option<StorageFault> {
        match self {
            LedgerError::Unavailable { fault, .. } => Some(*fault),
            _ => None,
        }
    }
}

/// The store's last word on its own health, for `GET /v1/health`: the fault of the latest
/// storage outcome observed, cleared by the next success. No I/O: it is only what the
/// store's own traffic already saw.
#[derive(Debug, Clone, Default)]
pub struct FaultWatch(std::sync::Arc<std::sync::Mutex<Option<StorageFault>>>);

impl FaultWatch {
    /// Records an outcome: a fault sets the state, a success clears it; other errors
    /// (domain answers, bugs) say nothing about the storage's health.
    pub fn observe<T>(&self, r: &Result<T, LedgerError>) {
        let next = match r {
            Ok(_) => None,
            Err(e) => match e.fault() {
                Some(f) => Some(f),
                None if e.is_final() => None,
                None => return,
            },
        };
        *self.0.lock().expect("fault watch poisoned") = next;
    }

    pub fn current(&self) -> Option<StorageFault> {
        *self.0.lock().expect("fault watch poisoned")
    }
}

impl LedgerError {
    /// Whether this error is a final answer to the request (and so is replayed to retries).
    /// `PinRequired` is not: the kiosk asks for the PIN and sends again; nor `PinNotSet`
    /// (the shopper may set one and send again).
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            LedgerError::Storage(_)
                | LedgerError::Unavailable { .. }
                | LedgerError::PinRequired
                | LedgerError::PinNotSet
        )
    }
}

/// The result of a command as stored for idempotent replay.
pub type StoredResult = Result<Outcome, LedgerError>;

/// What password/PIN checks need about a shopper.
#[derive(Debug, Clone)]
pub struct ShopperAuth {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub pin_hash: Option<String>,
    pub frozen: bool,
}

/// A valid session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub shopper_id: i64,
    pub kiosk_id: String,
    pub expires_at: i64,
}

/// What a cashier sign-in needs about a cashier.
#[derive(Debug, Clone)]
pub struct CashierAuth {
    pub cashier: Cashier,
    pub pin_hash: String,
}

/// A valid (unexpired) cashier session, with its cashier as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CashierSessionInfo {
    pub cashier_id: i64,
    pub name: String,
    pub merchant: String,
    pub kiosk_id: String,
    pub active: bool,
    pub expires_at: i64,
}

/// The store of the ledger, implemented by [`sqlite::SqliteStore`] (its work runs off the
/// async runtime) and [`postgres::PgStore`]; `server/tests/store.rs` runs one contract on both.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Registers the store's own instruments (the writer's batches and commits) for
    /// `GET /v1/admin/metrics`. Called once at start-up; a store with none does nothing.
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}

    /// The enrollment turn shared by every server on this store (PostgreSQL), held while the
    /// returned value lives; `None` when one process serves the store (SQLite), whose own
    /// turn ([`crate::palm::PalmService::enrollment_turn`]) is enough.
    async fn enrollment_turn(&self) -> Result<Option<Box<dyn Turn>>, LedgerError> {
        Ok(None)
    }

    /// Where the identification limits keep their counts when several servers share this
    /// store (PostgreSQL: rows); `None` when one process serves it (SQLite), which then
    /// keeps them in its memory ([`crate::throttle::LocalThrottle`]).
    fn shared_throttle(&self) -> Option<std::sync::Arc<dyn crate::throttle::Throttle>> {
        None
    }

    /// The fault that made the store's latest write fail, until a write succeeds again
    /// ([`FaultWatch`]); `None` when the latest write went through. No I/O.
    fn storage_fault(&self) -> Option<StorageFault> {
        None
    }

    /// Applies one command atomically. With `idem`, a repeat of the same request returns
    /// the first result and changes nothing; the same key with another request is
    /// [`LedgerError::IdempotencyMismatch`].
    async fn execute(&self, idem: Option<Idem>, cmd: Command) -> StoredResult;

    /// The stored result for an idempotency key, if the request was already completed:
    /// lets the API answer a retry before redoing slow checks (sessions, PINs).
    async fn replay(&self, idem: &Idem) -> Result<Option<StoredResult>, LedgerError>;

    async fn shopper_auth(&self, username: &str) -> Result<Option<ShopperAuth>, LedgerError>;
    async fn shopper_auth_by_id(&self, id: i64) -> Result<Option<ShopperAuth>, LedgerError>;
    async fn session(
        &self,
        token_hash: [u8; 32],
        now: i64,
    ) -> Result<Option<SessionInfo>, LedgerError>;
    /// The cashier called `name` at `merchant`, if any.
    async fn cashier_auth(
        &self,
        merchant: &str,
        name: &str,
    ) -> Result<Option<CashierAuth>, LedgerError>;
    /// The cashier session of this token hash, if it has not expired by `now`.
    async fn cashier_session(
        &self,
        token_hash: [u8; 32],
        now: i64,
    ) -> Result<Option<CashierSessionInfo>, LedgerError>;
    /// Cashiers (of one merchant, or all), by merchant then name.
    async fn cashiers(&self, merchant: Option<&str>) -> Result<Vec<Cashier>, LedgerError>;
    async fn wallet(&self, shopper_id: i64) -> Result<Wallet, LedgerError>;
    async fn history(
        &self,
        shopper_id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<HistoryPage, LedgerError>;
    /// Totals of one merchant for one UTC day.
    async fn merchant_day(
        &self,
        merchant: &str,
        date: time::Date,
    ) -> Result<DailyTotals, LedgerError>;
    async fn daily_report(&self, date: time::Date) -> Result<DailyReport, LedgerError>;
    async fn accounts(
        &self,
        query: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AccountRow>, LedgerError>;
    async fn kiosks(&self) -> Result<Vec<KioskRow>, LedgerError>;
    async fn palm_scans(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<PalmScanRow>, LedgerError>;
    /// Recomputes every balance from the entries and reports any difference.
    async fn ledger_check(&self) -> Result<LedgerCheck, LedgerError>;
    /// Encrypted palm templates: of the given shoppers (in that order), or of everyone
    /// (`None`, to build the identification index at start-up), grouped by shopper.
    async fn palm_templates(
        &self,
        ids: Option<Vec<i64>>,
    ) -> Result<Vec<(i64, Vec<Vec<u8>>)>, LedgerError>;
    /// Shoppers with an enrolled palm, ascending (to build the index in bounded chunks).
    async fn palm_owners(&self) -> Result<Vec<i64>, LedgerError>;
    /// The latest palm version (0 before the first enrollment): every change up to it is
    /// in what [`Store::palm_templates`] returns now.
    async fn palm_version(&self) -> Result<PalmVersion, LedgerError>;
    /// Palms changed after version `after`, at most `limit` of them, by version ascending,
    /// each as it is now (only its latest change is kept): how a replica's index catches up
    /// with enrollments and deletions made through other replicas ([`crate::follow`]).
    async fn palm_changes(
        &self,
        after: PalmVersion,
        limit: u32,
    ) -> Result<Vec<PalmChange>, LedgerError>;
    /// Sum of all cached balances (the double-entry invariant says zero).
    async fn total_balance(&self) -> Result<i64, LedgerError>;
    fn currency(&self) -> palmline_shared::Currency;
}
