//! Loading the accounts a money command touches, locked, and persisting the plan the core
//! decided.
//!
//! # Locks, not SERIALIZABLE
//! Every money command locks the rows it reads (`SELECT … ORDER BY id FOR NO KEY UPDATE`) in
//! a READ COMMITTED transaction, so the balances the core sees cannot change before the
//! write. We chose that over SERIALIZABLE with whole-transaction retry because:
//! - the conflicts are known in advance (the two or three accounts of a command), so locking
//!   exactly those costs one statement, while SERIALIZABLE tracks every read (predicate
//!   locks) and aborts on conflicts it only suspects;
//! - a hot account (every payment credits one merchant) is the common case, not the rare
//!   one: under SERIALIZABLE most concurrent payments to it would fail with 40001 and redo
//!   all their work, and retries under contention can starve; with locks they queue once;
//! - nothing is ever retried behind the caller's back: a storage error reaches the caller as
//!   one, and retrying is the client's idempotent retry.
//!
//! Deadlocks are avoided by order: every command resolves names to ids first (ids never
//! change), creates a merchant it has not seen before any lock, and then locks all its
//! accounts in one statement in ascending id. `FOR NO KEY UPDATE` (not `FOR UPDATE`) because
//! only balances and statuses change: it does not conflict with the `KEY SHARE` locks that
//! foreign keys take when a row referring to the account is inserted (a deposit's
//! transaction names the merchant it does not move), so those never wait on a movement.

use super::{pg_err, query, query_one, query_opt, storage};
use crate::ledger::{self, AccountKind, Leg, Plan};
use crate::store::clock::{now_text, Timestamp};
use crate::store::LedgerError;
use palmline_shared::Currency;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

pub(super) type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// An account as loaded for the ledger core, with the name receipts show.
pub(super) struct Acct {
    pub name: String,
    pub core: ledger::Account,
}

pub(super) fn row_acct(r: &Row) -> Result<Acct, LedgerError> {
    let bad = |what: &str, v: &str| LedgerError::Storage(format!("bad {what} {v:?} in accounts"));
    let (kind, status, currency): (&str, &str, &str) = (r.get(2), r.get(3), r.get(5));
    Ok(Acct {
        name: r.get(1),
        core: ledger::Account {
            id: r.get(0),
            kind: AccountKind::parse(kind).ok_or_else(|| bad("kind", kind))?,
            status: ledger::Status::parse(status).ok_or_else(|| bad("status", status))?,
            balance: r.get(4),
            currency: Currency::from_code(currency).map_err(|_| bad("currency", currency))?,
        },
    })
}

/// The accounts of one command, locked until its transaction ends.
pub(super) struct Locked(Vec<Acct>);

impl Locked {
    /// The locked account `id`; its absence is a bug of the caller (it resolved the id).
    pub fn get(&self, id: i64) -> Result<&Acct, LedgerError> {
        self.0
            .iter()
            .find(|a| a.core.id == id)
            .ok_or_else(|| LedgerError::Storage(format!("account #{id} vanished")))
    }

    /// The shopper `id`, or `unknown_account` when there is no such shopper.
    pub fn shopper(&self, id: i64) -> Result<&Acct, LedgerError> {
        self.0
            .iter()
            .find(|a| a.core.id == id && a.core.kind == AccountKind::Shopper)
            .ok_or_else(|| LedgerError::UnknownAccount(format!("#{id}")))
    }
}

/// Locks the accounts `ids` (those that exist) in ascending id order and loads them.
pub(super) async fn lock(tx: &Tx<'_>, ids: &[i64]) -> Result<Locked, LedgerError> {
    let rows = query(
        tx,
        "SELECT id, name, kind, status, balance, currency FROM accounts
         WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
        &[&ids],
    )
    .await?;
    Ok(Locked(rows.iter().map(row_acct).collect::<Result<_, _>>()?))
}

/// The id of the shopper called `name`, if any.
pub(super) async fn shopper_named(tx: &Tx<'_>, name: &str) -> Result<Option<i64>, LedgerError> {
    let sql = "SELECT id FROM accounts WHERE kind = 'shopper' AND name = $1";
    Ok(query_opt(tx, sql, &[&name]).await?.map(|r| r.get(0)))
}

/// A merchant's account and its till.
#[derive(Debug, Clone, Copy)]
pub(super) struct MerchantIds {
    pub account: i64,
    pub till: i64,
}

/// The ids of a merchant's account and till, both created on first sight of the merchant.
/// Two commands seeing a new merchant at once: the second waits for the first's insert
/// (`ON CONFLICT DO NOTHING`) and then finds its rows.
pub(super) async fn merchant_ids(
    tx: &Tx<'_>,
    merchant: &str,
    cur: Currency,
) -> Result<MerchantIds, LedgerError> {
    if let Some(m) = find_merchant(tx, merchant).await? {
        return Ok(m);
    }
    let now = now_text();
    let created = query_opt(
        tx,
        "INSERT INTO accounts (kind, name, currency, created_at) VALUES ('merchant', $1, $2, $3)
         ON CONFLICT (kind, name) DO NOTHING RETURNING id",
        &[&merchant, &cur.code(), &now],
    )
    .await?;
    if let Some(row) = created {
        let account: i64 = row.get(0);
        let till = query_one(
            tx,
            "INSERT INTO accounts (kind, name, currency, merchant_id, created_at)
             VALUES ('till', $1, $2, $3, $4) RETURNING id",
            &[&format!("till:{merchant}"), &cur.code(), &account, &now],
        )
        .await?
        .get(0);
        return Ok(MerchantIds { account, till });
    }
    find_merchant(tx, merchant)
        .await?
        .ok_or_else(|| LedgerError::Storage(format!("merchant {merchant} has no till")))
}

async fn find_merchant(tx: &Tx<'_>, merchant: &str) -> Result<Option<MerchantIds>, LedgerError> {
    let row = query_opt(
        tx,
        "SELECT m.id, t.id FROM accounts m JOIN accounts t ON t.kind = 'till' AND t.merchant_id = m.id
         WHERE m.kind = 'merchant' AND m.name = $1",
        &[&merchant],
    )
    .await?;
    Ok(row.map(|r| MerchantIds {
        account: r.get(0),
        till: r.get(1),
    }))
}

/// The cashier of a deposit or withdrawal, share-locked until the transaction ends: a
/// concurrent disable waits for the movement (or the movement sees it disabled). Taken
/// before any account lock, and disabling or guessing locks no account, so no cycle forms.
pub(super) async fn cashier(tx: &Tx<'_>, id: i64) -> Result<ledger::Cashier, LedgerError> {
    let row = query_opt(
        tx,
        "SELECT merchant_id, status FROM cashiers WHERE id = $1 FOR SHARE",
        &[&id],
    )
    .await?
    .ok_or(LedgerError::UnknownCashier)?;
    Ok(ledger::Cashier {
        id,
        merchant: row.get(0),
        active: row.get::<_, &str>(1) == "active",
    })
}

/// A payment as a refund finds it: what was paid, by whom, to whom (never changes).
pub(super) struct PaymentRow {
    pub paid: i64,
    pub shopper: i64,
    pub merchant: i64,
}

pub(super) async fn payment(tx: &Tx<'_>, id: i64) -> Result<PaymentRow, LedgerError> {
    let row = query_opt(
        tx,
        "SELECT amount, shopper_id, merchant_id FROM transactions WHERE id = $1 AND kind = 'payment'",
        &[&id],
    )
    .await?
    .ok_or(LedgerError::UnknownPayment)?;
    let merchant: Option<i64> = row.get(2);
    Ok(PaymentRow {
        paid: row.get(0),
        shopper: row.get(1),
        merchant: merchant
            .ok_or_else(|| LedgerError::Storage(format!("payment #{id} has no merchant")))?,
    })
}

/// What was already refunded of a payment. Read with the payment's merchant locked: every
/// refund of it locks that account, so none can slip in between this and the write.
pub(super) async fn refunded(tx: &Tx<'_>, payment_id: i64) -> Result<i64, LedgerError> {
    let sql = "SELECT COALESCE(SUM(amount), 0)::BIGINT FROM transactions
               WHERE kind = 'refund' AND ref_tx_id = $1";
    Ok(query_one(tx, sql, &[&payment_id]).await?.get(0))
}

/// Writes what the core decided in one statement (one round trip, which matters while the
/// accounts stay locked until commit: a hot merchant account is held for that long): the
/// transaction, each leg's balance moved from what the core saw to what it decided
/// (compare-and-set on locked rows, so a miss is a bug, never a lost update), and each leg's
/// entry in leg order. Returns the transaction's id and timestamp.
pub(super) async fn persist(tx: &Tx<'_>, plan: &Plan) -> Result<(i64, Timestamp), LedgerError> {
    let now = Timestamp::now();
    let t = &plan.tx;
    let column = |f: fn(&Leg) -> i64| plan.legs.iter().map(f).collect::<Vec<i64>>();
    let (ids, deltas) = (column(|l| l.account), column(|l| l.delta));
    let (before, after) = (column(|l| l.before), column(|l| l.after));
    let st = tx
        .prepare_cached(
            "WITH t AS (
               INSERT INTO transactions (kind, amount, currency, shopper_id, other_id, merchant_id, kiosk_id, ref_tx_id, description, created_by, created_at, cashier_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id
             ), legs AS (
               SELECT * FROM unnest($13::BIGINT[], $14::BIGINT[], $15::BIGINT[], $16::BIGINT[])
                 WITH ORDINALITY AS l(account, delta, before, after, n)
             ), moved AS (
               UPDATE accounts a SET balance = legs.after FROM legs
               WHERE a.id = legs.account AND a.balance = legs.before RETURNING a.id
             ), written AS (
               INSERT INTO entries (tx_id, account_id, amount, balance_after)
               SELECT t.id, legs.account, legs.delta, legs.after FROM t, legs ORDER BY legs.n
             )
             SELECT (SELECT id FROM t), (SELECT count(*) FROM moved)",
        )
        .await
        .map_err(pg_err)?;
    let row = tx
        .query_one(
            &st,
            &[
                &t.kind.as_str(),
                &t.amount.minor(),
                &t.amount.currency().code(),
                &t.shopper,
                &t.other,
                &t.merchant,
                &t.kiosk_id,
                &t.refers_to,
                &t.description,
                &t.created_by,
                &now.to_text(),
                &t.cashier,
                &ids,
                &deltas,
                &before,
                &after,
            ],
        )
        .await
        .map_err(|e| match e.as_db_error() {
            // The schema's own guard: a shopper can never go below zero.
            Some(db)
                if *db.code() == SqlState::CHECK_VIOLATION && db.table() == Some("accounts") =>
            {
                LedgerError::InsufficientFunds
            }
            _ => pg_err(e),
        })?;
    let (id, moved): (i64, i64) = (row.get(0), row.get(1));
    if moved != plan.legs.len() as i64 {
        return Err(storage(format!(
            "an account of transaction #{id} changed under the ledger"
        )));
    }
    Ok((id, now))
}

/// What the commands of one group commit may lock, before any of them runs: account ids,
/// shoppers and merchants (with their tills) by name, and the parties of refunded payments.
#[derive(Debug, Default)]
pub(super) struct Touched {
    pub ids: Vec<i64>,
    pub shoppers: Vec<String>,
    pub merchants: Vec<String>,
    pub payments: Vec<i64>,
}

/// Locks every existing account in `t` in one statement, in ascending id order, so that a
/// group commit's commands, run one after another, never wait on a lock while holding one
/// that another group (of this or another replica) waits for. Each command then locks its
/// own accounts again, which are already this transaction's and do not wait.
pub(super) async fn lock_group(tx: &Tx<'_>, t: &Touched) -> Result<(), LedgerError> {
    query(
        tx,
        "SELECT id FROM accounts WHERE id IN (
           SELECT unnest($1::BIGINT[])
           UNION SELECT id FROM accounts WHERE kind = 'shopper' AND name = ANY($2)
           UNION SELECT m.id FROM accounts m WHERE m.kind = 'merchant' AND m.name = ANY($3)
           UNION SELECT t.id FROM accounts m JOIN accounts t ON t.kind = 'till' AND t.merchant_id = m.id
                 WHERE m.kind = 'merchant' AND m.name = ANY($3)
           UNION SELECT shopper_id FROM transactions WHERE id = ANY($4) AND kind = 'payment'
           UNION SELECT merchant_id FROM transactions WHERE id = ANY($4) AND kind = 'payment'
         ) ORDER BY id FOR NO KEY UPDATE",
        &[&t.ids, &t.shoppers, &t.merchants, &t.payments],
    )
    .await?;
    Ok(())
}
