//! Applying a [`Command`]: one READ COMMITTED transaction per command, with its idempotency
//! record; the money commands load and lock their accounts ([`super::accounts`]), ask the
//! ledger core, and persist the plan it returns.
//!
//! # The in-flight guard is a row
//! An idempotent command first inserts its key into `idempotency` (`ON CONFLICT DO
//! NOTHING`) with an empty result, and fills the result in before the same transaction
//! commits. A second request with the key, from this process or another replica, blocks on
//! that uncommitted row until the first commits (then finds the stored answer and replays
//! it) or rolls back (then claims the key itself): two requests can never both run, and no
//! process-local state is needed. A committed row always holds a result.

use super::accounts::{self, Locked, MerchantIds, Tx};
use super::{execute, pg_err, query_one, query_opt, records, storage};
use crate::ledger::{self, Amount, Plan};
use crate::limits::NoPinGuard;
use crate::store::clock::{now_text, today};
use crate::store::receipt::{receipt, Parties};
use crate::store::{Command, Idem, KioskRef, LedgerError, Outcome, StoredResult};
use deadpool_postgres::{GenericClient, Object};
use palmline_shared::{Currency, Money};
use tokio_postgres::IsolationLevel;

/// Runs one command in its own transaction: committed if it succeeds, rolled back if not
/// (with `idem`, a final domain error is committed as the key's answer instead).
pub(super) async fn execute_command(
    client: &mut Object,
    cur: Currency,
    idem: Option<Idem>,
    cmd: Command,
) -> StoredResult {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(pg_err)?;
    let Some(idem) = idem else {
        let result = apply(&tx, cur, cmd).await;
        return match result {
            Ok(o) => tx.commit().await.map_err(pg_err).map(|()| o),
            Err(e) => {
                tx.rollback().await.map_err(pg_err)?;
                Err(e)
            }
        };
    };
    idempotent(tx, cur, &idem, cmd).await
}

async fn idempotent(mut tx: Tx<'_>, cur: Currency, idem: &Idem, cmd: Command) -> StoredResult {
    if !claim(&tx, idem).await? {
        // Another request with this key committed first (we waited for it): its answer.
        let done = lookup_idem(&tx, idem).await?;
        tx.rollback().await.map_err(pg_err)?;
        return done.ok_or_else(|| storage("the idempotency record vanished; retry"))?;
    }
    // The command in a savepoint: a domain error rolls back its own changes but is still
    // recorded as the answer to this key.
    let sp = tx.transaction().await.map_err(pg_err)?;
    let result = apply(&sp, cur, cmd).await;
    match &result {
        Ok(_) => sp.commit().await.map_err(pg_err)?,
        Err(_) => sp.rollback().await.map_err(pg_err)?,
    }
    if let Err(e) = &result {
        if !e.is_final() {
            tx.rollback().await.map_err(pg_err)?;
            return Err(e.clone());
        }
    }
    let stored = serde_json::to_string(&result).map_err(storage)?;
    execute(
        &tx,
        "UPDATE idempotency SET result = $3 WHERE scope = $1 AND key = $2",
        &[&idem.scope, &idem.key, &stored],
    )
    .await?;
    tx.commit().await.map_err(pg_err)?;
    result
}

/// Whether `cmd` moves money (and so goes through the group commit, [`super::group`]).
pub(super) fn is_money(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Deposit { .. }
            | Command::Withdrawal { .. }
            | Command::Payment { .. }
            | Command::Transfer { .. }
            | Command::Refund { .. }
            | Command::WithoutPin { .. }
    )
}

/// Adds what money command `cmd` may lock to `t` (see [`accounts::lock_group`]): the same
/// accounts its own lock takes, named as the command names them.
pub(super) fn touched(cmd: &Command, t: &mut accounts::Touched) {
    match cmd {
        Command::Deposit { at, username, .. } => {
            t.shoppers.push(username.clone());
            t.merchants.push(at.merchant.clone());
        }
        Command::Withdrawal { at, shopper_id, .. } | Command::Payment { at, shopper_id, .. } => {
            t.ids.push(*shopper_id);
            t.merchants.push(at.merchant.clone());
        }
        Command::Transfer {
            from_shopper_id,
            to_username,
            ..
        } => {
            t.ids.push(*from_shopper_id);
            t.shoppers.push(to_username.clone());
        }
        Command::Refund { payment_id, .. } => t.payments.push(*payment_id),
        Command::WithoutPin { debit, .. } => touched(debit, t),
        _ => {}
    }
}

/// One command of a group commit, inside the group's transaction `tx`: as
/// [`execute_command`], with the command in a savepoint of its own, so a refused one rolls
/// back alone. `Err` means the group's transaction cannot go on (a statement outside the
/// savepoint failed); `Ok` holds this command's answer, to be given once the group commits.
pub(super) async fn in_group(
    tx: &mut Tx<'_>,
    cur: Currency,
    idem: Option<&Idem>,
    cmd: Command,
) -> Result<StoredResult, LedgerError> {
    if let Some(idem) = idem {
        if !claim(tx, idem).await? {
            // Claimed before (committed, or earlier in this group): its answer.
            return match lookup_idem(tx, idem).await {
                Ok(done) => {
                    Ok(done.ok_or_else(|| storage("the idempotency record vanished; retry"))?)
                }
                Err(e @ LedgerError::Storage(_)) => Err(e),
                Err(e) => Ok(Err(e)),
            };
        }
    }
    let sp = tx.transaction().await.map_err(pg_err)?;
    let result = apply(&sp, cur, cmd).await;
    match &result {
        Ok(_) => sp.commit().await.map_err(pg_err)?,
        Err(_) => sp.rollback().await.map_err(pg_err)?,
    }
    let Some(idem) = idem else { return Ok(result) };
    if let Err(e) = &result {
        if !e.is_final() {
            // Not an answer to keep: the key is free again, as if never claimed.
            let sql = "DELETE FROM idempotency WHERE scope = $1 AND key = $2";
            execute(tx, sql, &[&idem.scope, &idem.key]).await?;
            return Ok(result);
        }
    }
    let stored = serde_json::to_string(&result).map_err(storage)?;
    execute(
        tx,
        "UPDATE idempotency SET result = $3 WHERE scope = $1 AND key = $2",
        &[&idem.scope, &idem.key, &stored],
    )
    .await?;
    Ok(result)
}

/// Claims `idem` for this transaction: false if a committed record already has the key
/// (after waiting for a transaction that holds it uncommitted).
async fn claim(tx: &Tx<'_>, idem: &Idem) -> Result<bool, LedgerError> {
    let n = execute(
        tx,
        "INSERT INTO idempotency (scope, key, request_hash, result, created_at)
         VALUES ($1, $2, $3, '', $4) ON CONFLICT (scope, key) DO NOTHING",
        &[&idem.scope, &idem.key, &&idem.request_hash[..], &now_text()],
    )
    .await?;
    Ok(n == 1)
}

/// The stored answer for `idem`, if its request completed; the key with another request is
/// [`LedgerError::IdempotencyMismatch`].
pub(super) async fn lookup_idem(
    c: &impl GenericClient,
    idem: &Idem,
) -> Result<Option<StoredResult>, LedgerError> {
    let row = query_opt(
        c,
        "SELECT request_hash, result FROM idempotency WHERE scope = $1 AND key = $2",
        &[&idem.scope, &idem.key],
    )
    .await?;
    let Some(row) = row else { return Ok(None) };
    stored_answer(idem, row.get(0), row.get(1)).map(Some)
}

/// The answer an idempotency record (`request_hash`, `result`) holds for `idem`: the key
/// with another request is [`LedgerError::IdempotencyMismatch`].
pub(super) fn stored_answer(
    idem: &Idem,
    request_hash: &[u8],
    result: &str,
) -> Result<StoredResult, LedgerError> {
    if request_hash != idem.request_hash {
        return Err(LedgerError::IdempotencyMismatch);
    }
    if result.is_empty() {
        return Err(storage("an idempotency record without its result"));
    }
    serde_json::from_str(result).map_err(storage)
}

/// Applies one command inside the caller's transaction: money commands go through the
/// ledger core ([`crate::ledger`]); the rest are record keeping ([`records`]).
async fn apply(tx: &Tx<'_>, cur: Currency, cmd: Command) -> Result<Outcome, LedgerError> {
    match cmd {
        c @ (Command::Deposit { .. }
        | Command::Withdrawal { .. }
        | Command::Payment { .. }
        | Command::Transfer { .. }
        | Command::Refund { .. }) => money(tx, cur, c, None).await,
        Command::WithoutPin { guard, debit } => {
            if debit.debit().is_none() {
                return Err(storage("only a debit can be made without the PIN"));
            }
            money(tx, cur, *debit, Some(&guard)).await
        }
        other => records::apply(tx, cur, other).await,
    }
}

/// A money command: the core decides with the accounts locked; the plan is persisted; a
/// debit made without the PIN (`guard`) is checked against the limits once the shopper is
/// locked and recorded with the movement.
async fn money(
    tx: &Tx<'_>,
    cur: Currency,
    cmd: Command,
    guard: Option<&NoPinGuard>,
) -> Result<Outcome, LedgerError> {
    let (plan, parties) = match cmd {
        Command::Deposit {
            at,
            username,
            amount,
            cashier_id,
        } => deposit(tx, cur, at, (&username, cashier_id), amount).await?,
        Command::Withdrawal {
            at,
            shopper_id,
            amount,
            cashier_id,
        } => {
            let kind = Debit::Withdrawal(cashier_id);
            at_kiosk(tx, cur, kind, at, shopper_id, amount, guard).await?
        }
        Command::Payment {
            at,
            shopper_id,
            amount,
            description,
        } => {
            let kind = Debit::Payment(description);
            at_kiosk(tx, cur, kind, at, shopper_id, amount, guard).await?
        }
        Command::Transfer {
            at,
            from_shopper_id,
            to_username,
            amount,
            note,
        } => {
            let to = Recipient(to_username, note);
            transfer(tx, cur, at, from_shopper_id, to, amount, guard).await?
        }
        Command::Refund {
            payment_id,
            amount,
            reason,
            operator,
        } => refund(tx, cur, payment_id, amount, reason, operator).await?,
        _ => return Err(storage("not a money command")),
    };
    let (id, now) = accounts::persist(tx, &plan).await?;
    if let Some(g) = guard {
        record_no_pin(tx, g, &plan, id, &now.to_text()).await?;
    }
    Ok(Outcome::Receipt(receipt(id, now, &plan, parties)))
}

type Decided = (Plan, Parties);

fn kiosk_parties(locked: &Locked, shopper: i64, m: MerchantIds, kiosk: String) -> Parties {
    let name = |id| locked.get(id).map(|a| a.name.clone()).unwrap_or_default();
    Parties {
        shopper: name(shopper),
        merchant: Some(name(m.account)),
        counterparty: None,
        kiosk_id: Some(kiosk),
    }
}

async fn deposit(
    tx: &Tx<'_>,
    cur: Currency,
    at: KioskRef,
    (username, cashier): (&str, i64),
    amount: Money,
) -> Result<Decided, LedgerError> {
    let amount = ledger::check_amount(amount, cur)?;
    let cashier = accounts::cashier(tx, cashier).await?;
    let shopper = accounts::shopper_named(tx, username)
        .await?
        .ok_or_else(|| LedgerError::UnknownAccount(username.to_string()))?;
    let m = accounts::merchant_ids(tx, &at.merchant, cur).await?;
    let locked = accounts::lock(tx, &[shopper, m.account, m.till]).await?;
    let s = &locked.shopper(shopper)?.core;
    let merchant = ledger::Merchant {
        account: &locked.get(m.account)?.core,
        till: &locked.get(m.till)?.core,
    };
    let plan = ledger::deposit(amount, s, merchant, &at.kiosk_id, &cashier)?;
    Ok((plan, kiosk_parties(&locked, shopper, m, at.kiosk_id)))
}

/// The debits at a kiosk, which differ only in the rule they call.
enum Debit {
    /// Paid out by this cashier.
    Withdrawal(i64),
    Payment(Option<String>),
}

async fn at_kiosk(
    tx: &Tx<'_>,
    cur: Currency,
    kind: Debit,
    at: KioskRef,
    shopper: i64,
    amount: Money,
    guard: Option<&NoPinGuard>,
) -> Result<Decided, LedgerError> {
    let amount = ledger::check_amount(amount, cur)?;
    let cashier = match kind {
        Debit::Withdrawal(id) => Some(accounts::cashier(tx, id).await?),
        Debit::Payment(_) => None,
    };
    let m = accounts::merchant_ids(tx, &at.merchant, cur).await?;
    let locked = accounts::lock(tx, &[shopper, m.account, m.till]).await?;
    let s = &locked.shopper(shopper)?.core;
    within_no_pin_limits(tx, guard, shopper, amount).await?;
    let merchant = ledger::Merchant {
        account: &locked.get(m.account)?.core,
        till: &locked.get(m.till)?.core,
    };
    let plan = match (kind, cashier) {
        (Debit::Withdrawal(_), Some(c)) => {
            ledger::withdrawal(amount, s, merchant, &at.kiosk_id, &c)?
        }
        (Debit::Withdrawal(_), None) => return Err(storage("a withdrawal without its cashier")),
        (Debit::Payment(d), _) => ledger::payment(amount, s, merchant, &at.kiosk_id, d)?,
    };
    Ok((plan, kiosk_parties(&locked, shopper, m, at.kiosk_id)))
}

/// A transfer's recipient (by name) and note.
struct Recipient(String, Option<String>);

async fn transfer(
    tx: &Tx<'_>,
    cur: Currency,
    at: Option<KioskRef>,
    from: i64,
    Recipient(to_name, note): Recipient,
    amount: Money,
    guard: Option<&NoPinGuard>,
) -> Result<Decided, LedgerError> {
    let amount = ledger::check_amount(amount, cur)?;
    let to = accounts::shopper_named(tx, &to_name).await?;
    let locked = accounts::lock(
        tx,
        &[Some(from), to].into_iter().flatten().collect::<Vec<_>>(),
    )
    .await?;
    let payer = locked.shopper(from)?;
    let to = to.ok_or_else(|| LedgerError::UnknownAccount(to_name.clone()))?;
    let recipient = locked.shopper(to)?;
    within_no_pin_limits(tx, guard, from, amount).await?;
    let kiosk = at.map(|k| k.kiosk_id);
    let plan = ledger::transfer(amount, &payer.core, &recipient.core, kiosk.clone(), note)?;
    let parties = Parties {
        shopper: payer.name.clone(),
        merchant: None,
        counterparty: Some(recipient.name.clone()),
        kiosk_id: kiosk,
    };
    Ok((plan, parties))
}

async fn refund(
    tx: &Tx<'_>,
    cur: Currency,
    payment_id: i64,
    amount: Money,
    reason: Option<String>,
    operator: String,
) -> Result<Decided, LedgerError> {
    let amount = ledger::check_amount(amount, cur)?;
    let p = accounts::payment(tx, payment_id).await?;
    let locked = accounts::lock(tx, &[p.shopper, p.merchant]).await?;
    let state = ledger::PaymentState {
        id: payment_id,
        paid: Money::from_minor(p.paid, cur),
        shopper: p.shopper,
        merchant: p.merchant,
        refunded: accounts::refunded(tx, payment_id).await?,
    };
    let (shopper, merchant) = (locked.shopper(p.shopper)?, locked.get(p.merchant)?);
    let plan = ledger::refund(
        amount,
        &state,
        &shopper.core,
        &merchant.core,
        reason,
        operator,
    )?;
    let parties = Parties {
        shopper: shopper.name.clone(),
        merchant: Some(merchant.name.clone()),
        counterparty: None,
        kiosk_id: None,
    };
    Ok((plan, parties))
}

/// Without the PIN (`guard`), the debit must stay within the limits; called with the
/// shopper locked, so two debits cannot both fit in the same remaining allowance.
async fn within_no_pin_limits(
    tx: &Tx<'_>,
    guard: Option<&NoPinGuard>,
    shopper: i64,
    amount: Amount,
) -> Result<(), LedgerError> {
    let Some(g) = guard else { return Ok(()) };
    let today_sum: i64 = query_one(
        tx,
        "SELECT COALESCE(SUM(amount), 0)::BIGINT FROM no_pin_debits
         WHERE account_id = $1 AND created_at >= $2",
        &[&shopper, &today()],
    )
    .await?
    .get(0);
    let session = match &g.session_hash {
        None => None,
        Some(h) => {
            let sql = "SELECT COALESCE(SUM(amount), 0)::BIGINT FROM no_pin_debits WHERE session_hash = $1";
            Some(query_one(tx, sql, &[&&h[..]]).await?.get(0))
        }
    };
    let spent = ledger::NoPinSpent {
        today: today_sum,
        session,
    };
    ledger::within_no_pin_limits(amount, spent, &g.limits, g.pin_set)
}

async fn record_no_pin(
    tx: &Tx<'_>,
    g: &NoPinGuard,
    plan: &Plan,
    tx_id: i64,
    at: &str,
) -> Result<(), LedgerError> {
    let session = g.session_hash.as_ref().map(|h| &h[..]);
    execute(
        tx,
        "INSERT INTO no_pin_debits (tx_id, account_id, session_hash, amount, created_at)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &tx_id,
            &plan.tx.shopper,
            &session,
            &plan.tx.amount.minor(),
            &at,
        ],
    )
    .await?;
    Ok(())
}
