//! A batch's statements: two pipelined flights per batch (three when a key replays), each
//! a fixed number of statements whatever the batch's size. Every statement is sent before
//! the previous one's answer arrives (tokio-postgres pipelines requests made concurrently on
//! one connection; `try_join!(biased; …)` polls them, and so sends them, in order), so a
//! flight costs one wait for the server, not one per statement.

use super::decide::{Books, Decision, Loaded, NoPin, Spent};
use super::{Kind, Movement};
use crate::ledger::Plan;
use crate::store::clock::{now_text, today, Timestamp};
use crate::store::postgres::accounts::row_acct;
use crate::store::postgres::commands::stored_answer;
use crate::store::postgres::{pg_err, storage};
use crate::store::receipt::receipt;
use crate::store::{Idem, LedgerError, Outcome, StoredResult};
use deadpool_postgres::Object;
use palmline_shared::Currency;
use std::collections::{HashMap, HashSet};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// A key as the database names it: (scope, key).
type Key = (String, String);

/// Opens the batch's transaction, locks and decides: the writes to make and each
/// movement's answer in order (`None`: for the per-command path), to be given only once
/// [`close`] has committed them. `Err` means nothing will be committed.
pub(super) async fn decide(
    c: &Object,
    cur: Currency,
    work: &[(Option<Idem>, Movement)],
) -> Result<(Writes, Vec<Option<StoredResult>>), LedgerError> {
    let opened = open(c, work).await?;
    let earlier = replays(c, work, &opened.claimed).await?;
    let mut books = Books::new(opened.accounts, opened.spent);
    let decisions: Vec<Decision> = work
        .iter()
        .map(
            |(idem, m)| match idem.as_ref().and_then(|k| earlier.get(&key(k))) {
                Some(answer) => Decision::Replay(answer_to(idem.as_ref(), answer)),
                None => books.decide(cur, m.clone()),
            },
        )
        .collect();
    let mut w = Writes::new(Timestamp::now(), opened.ids);
    let answers = decisions
        .into_iter()
        .zip(work)
        .map(|(d, (idem, _))| w.take(d, idem.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    w.balances = books.changed();
    Ok((w, answers))
}

fn key(idem: &Idem) -> Key {
    (idem.scope.clone(), idem.key.clone())
}

/// What the first flight found: the keys this batch claimed, the locked accounts, what
/// the guarded shoppers and sessions spent without the PIN, and a transaction id reserved
/// for each movement (unused ones are gaps, as after a rollback).
struct Opened {
    claimed: HashSet<Key>,
    accounts: Vec<Loaded>,
    spent: Spent,
    ids: Vec<i64>,
}

/// `BEGIN`, claim the keys (sorted, so two batches claiming the same keys take turns
/// instead of deadlocking), lock the accounts (after the keys, as the per-command path
/// does), sum the no-PIN debits (after the locks: a shopper's debits are only written by
/// whoever holds the shopper's row), reserve the ids: one flight.
async fn open(c: &Object, work: &[(Option<Idem>, Movement)]) -> Result<Opened, LedgerError> {
    let claim = c.prepare_cached(CLAIM).await.map_err(pg_err)?;
    let lock = c.prepare_cached(LOCK).await.map_err(pg_err)?;
    let sums = c.prepare_cached(SPENT).await.map_err(pg_err)?;
    let reserve = c.prepare_cached(RESERVE).await.map_err(pg_err)?;
    let keys = Columns::keys(work);
    let (ids, shoppers, merchants) = touched(work);
    let (guarded, sessions) = guarded(work);
    let day = today();
    let now = now_text();
    let n = i32::try_from(work.len()).map_err(storage)?;
    let claiming = async {
        if keys.scope.is_empty() {
            return Ok(Vec::new());
        }
        c.query(&claim, &[&keys.scope, &keys.key, &keys.hash, &now])
            .await
    };
    let lock_params: [&(dyn ToSql + Sync); 3] = [&ids, &shoppers, &merchants];
    let summing = async {
        if guarded.is_empty() {
            return Ok(Vec::new());
        }
        c.query(&sums, &[&guarded, &day, &sessions]).await
    };
    let reserve_params: [&(dyn ToSql + Sync); 1] = [&n];
    let (_, claimed, locked, spent, reserved) = tokio::try_join!(
        biased;
        c.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
        claiming,
        c.query(&lock, &lock_params),
        summing,
        c.query(&reserve, &reserve_params),
    )
    .map_err(pg_err)?;
    Ok(Opened {
        claimed: claimed.iter().map(|r| (r.get(0), r.get(1))).collect(),
        accounts: locked.iter().map(loaded).collect::<Result<_, _>>()?,
        spent: spent_of(&spent)?,
        ids: reserved.iter().map(|r| r.get(0)).collect(),
    })
}

/// The shoppers and sessions of the movements made without the PIN.
fn guarded(work: &[(Option<Idem>, Movement)]) -> (Vec<i64>, Vec<Vec<u8>>) {
    let (mut shoppers, mut sessions) = (Vec::new(), Vec::new());
    for (_, m) in work {
        let Some(g) = &m.guard else { continue };
        shoppers.push(m.kind.debited());
        sessions.extend(g.session_hash.map(|h| h.to_vec()));
    }
    shoppers.sort_unstable();
    shoppers.dedup();
    sessions.sort_unstable();
    sessions.dedup();
    (shoppers, sessions)
}

/// [`SPENT`]'s rows: (shopper, NULL, sum) for the day, (NULL, session, sum) per session.
fn spent_of(rows: &[Row]) -> Result<Spent, LedgerError> {
    let mut spent = Spent::default();
    for r in rows {
        let (shopper, session, sum): (Option<i64>, Option<Vec<u8>>, i64) =
            (r.get(0), r.get(1), r.get(2));
        match (shopper, session) {
            (Some(id), None) => {
                spent.today.insert(id, sum);
            }
            (None, Some(h)) => {
                let h: [u8; 32] = h
                    .try_into()
                    .map_err(|_| storage("a session hash of the wrong size"))?;
                spent.sessions.insert(h, sum);
            }
            _ => return Err(storage("a no-PIN sum of neither a shopper nor a session")),
        }
    }
    Ok(spent)
}

fn loaded(r: &Row) -> Result<Loaded, LedgerError> {
    Ok(Loaded {
        acct: row_acct(r)?,
        merchant: r.get(6),
    })
}

/// The ids, recipient names and merchant names the batch's movements name.
fn touched(work: &[(Option<Idem>, Movement)]) -> (Vec<i64>, Vec<&str>, Vec<&str>) {
    let (mut ids, mut shoppers, mut merchants) = (Vec::new(), Vec::new(), Vec::new());
    for (_, m) in work {
        match &m.kind {
            Kind::Payment { at, shopper, .. } => {
                ids.push(*shopper);
                merchants.push(at.merchant.as_str());
            }
            Kind::Transfer { from, to, .. } => {
                ids.push(*from);
                shoppers.push(to.as_str());
            }
        }
    }
    for v in [&mut shoppers, &mut merchants] {
        v.sort_unstable();
        v.dedup();
    }
    ids.sort_unstable();
    ids.dedup();
    (ids, shoppers, merchants)
}

/// The stored (request hash, result) of every key of the batch that was answered before
/// it (another transaction held it; the claim waited for its commit). Usually none, and
/// then no statement.
async fn replays(
    c: &Object,
    work: &[(Option<Idem>, Movement)],
    claimed: &HashSet<Key>,
) -> Result<HashMap<Key, Option<(Vec<u8>, String)>>, LedgerError> {
    let (mut scopes, mut keys) = (Vec::new(), Vec::new());
    for idem in work.iter().filter_map(|(k, _)| k.as_ref()) {
        if !claimed.contains(&key(idem)) {
            scopes.push(idem.scope.as_str());
            keys.push(idem.key.as_str());
        }
    }
    let mut out: HashMap<Key, Option<(Vec<u8>, String)>> = scopes
        .iter()
        .zip(&keys)
        .map(|(s, k)| ((s.to_string(), k.to_string()), None))
        .collect();
    if out.is_empty() {
        return Ok(out);
    }
    let st = c.prepare_cached(REPLAYS).await.map_err(pg_err)?;
    for r in c.query(&st, &[&scopes, &keys]).await.map_err(pg_err)? {
        out.insert((r.get(0), r.get(1)), Some((r.get(2), r.get(3))));
    }
    Ok(out)
}

/// A replayed key's answer, as the per-command path gives it.
fn answer_to(idem: Option<&Idem>, stored: &Option<(Vec<u8>, String)>) -> StoredResult {
    match (idem, stored) {
        (Some(idem), Some((hash, result))) => stored_answer(idem, hash, result)?,
        _ => Err(storage("the idempotency record vanished; retry")),
    }
}

/// Idempotency keys as columns.
#[derive(Default)]
struct Columns {
    scope: Vec<String>,
    key: Vec<String>,
    hash: Vec<Vec<u8>>,
}

impl Columns {
    fn keys(work: &[(Option<Idem>, Movement)]) -> Columns {
        let mut c = Columns::default();
        for idem in work.iter().filter_map(|(k, _)| k.as_ref()) {
            c.scope.push(idem.scope.clone());
            c.key.push(idem.key.clone());
            c.hash.push(idem.request_hash.to_vec());
        }
        c
    }
}

/// Everything a batch writes, as columns for [`PERSIST`].
pub(super) struct Writes {
    now: Timestamp,
    ids: std::vec::IntoIter<i64>,
    txs: TxColumns,
    /// Entries: transaction, account, delta, balance after; in leg order.
    entries: [Vec<i64>; 4],
    /// (account, balance loaded, balance after the batch), each account once.
    balances: Vec<(i64, i64, i64)>,
    /// Answers stored with their keys: scope, key, JSON of the result.
    kept: [Vec<String>; 3],
    /// Keys released (no final answer): scope, key.
    freed: [Vec<String>; 2],
    /// Debits made without the PIN: transaction, shopper, amount; and their sessions.
    no_pin: [Vec<i64>; 3],
    no_pin_sessions: Vec<Option<Vec<u8>>>,
}

#[derive(Default)]
struct TxColumns {
    id: Vec<i64>,
    kind: Vec<&'static str>,
    amount: Vec<i64>,
    currency: Vec<String>,
    shopper: Vec<i64>,
    other: Vec<i64>,
    merchant: Vec<Option<i64>>,
    kiosk: Vec<Option<String>>,
    refers_to: Vec<Option<i64>>,
    description: Vec<Option<String>>,
    created_by: Vec<Option<String>>,
    cashier: Vec<Option<i64>>,
}

impl Writes {
    fn new(now: Timestamp, ids: Vec<i64>) -> Writes {
        let mut ids = ids;
        ids.sort_unstable();
        Writes {
            now,
            ids: ids.into_iter(),
            txs: TxColumns::default(),
            entries: Default::default(),
            balances: Vec::new(),
            kept: Default::default(),
            freed: Default::default(),
            no_pin: Default::default(),
            no_pin_sessions: Vec::new(),
        }
    }

    /// Takes one decision's writes; returns its answer (`None`: elsewhere).
    fn take(
        &mut self,
        d: Decision,
        idem: Option<&Idem>,
    ) -> Result<Option<StoredResult>, LedgerError> {
        let answer = match d {
            Decision::Replay(answer) => return Ok(Some(answer)),
            Decision::Elsewhere => {
                self.free(idem);
                return Ok(None);
            }
            Decision::Refused(e) if !e.is_final() => {
                self.free(idem);
                return Ok(Some(Err(e)));
            }
            Decision::Refused(e) => Err(e),
            Decision::Moved(plan, parties, no_pin) => {
                let id = self
                    .ids
                    .next()
                    .ok_or_else(|| storage("no transaction id left"))?;
                self.push(id, &plan);
                if let Some(n) = no_pin {
                    self.record_no_pin(id, &plan, n);
                }
                Ok(Outcome::Receipt(receipt(id, self.now, &plan, parties)))
            }
        };
        if let Some(idem) = idem {
            let json = serde_json::to_string(&answer).map_err(storage)?;
            for (col, v) in self.kept.iter_mut().zip([&idem.scope, &idem.key, &json]) {
                col.push(v.clone());
            }
        }
        Ok(Some(answer))
    }

    fn free(&mut self, idem: Option<&Idem>) {
        if let Some(idem) = idem {
            self.freed[0].push(idem.scope.clone());
            self.freed[1].push(idem.key.clone());
        }
    }

    fn push(&mut self, id: i64, plan: &Plan) {
        let (t, c) = (&plan.tx, &mut self.txs);
        c.id.push(id);
        c.kind.push(t.kind.as_str());
        c.amount.push(t.amount.minor());
        c.currency.push(t.amount.currency().code().to_string());
        c.shopper.push(t.shopper);
        c.other.push(t.other);
        c.merchant.push(t.merchant);
        c.kiosk.push(t.kiosk_id.clone());
        c.refers_to.push(t.refers_to);
        c.description.push(t.description.clone());
        c.created_by.push(t.created_by.clone());
        c.cashier.push(t.cashier);
        for leg in &plan.legs {
            for (col, v) in self
                .entries
                .iter_mut()
                .zip([id, leg.account, leg.delta, leg.after])
            {
                col.push(v);
            }
        }
    }

    fn record_no_pin(&mut self, id: i64, plan: &Plan, n: NoPin) {
        let row = [id, plan.tx.shopper, plan.tx.amount.minor()];
        for (col, v) in self.no_pin.iter_mut().zip(row) {
            col.push(v);
        }
        self.no_pin_sessions.push(n.session.map(|h| h.to_vec()));
    }

    fn nothing(&self) -> bool {
        self.txs.id.is_empty() && self.kept[0].is_empty() && self.freed[0].is_empty()
    }
}

/// Writes the batch in one statement and commits, pipelined: one flight. A batch that
/// writes nothing only commits (its claims, if any, were all replays).
pub(super) async fn close(c: &Object, w: &Writes) -> Result<(), LedgerError> {
    if w.nothing() {
        return c.batch_execute("COMMIT").await.map_err(pg_err);
    }
    let st = c.prepare_cached(PERSIST).await.map_err(pg_err)?;
    let (t, e) = (&w.txs, &w.entries);
    let col = |f: fn(&(i64, i64, i64)) -> i64| w.balances.iter().map(f).collect::<Vec<i64>>();
    let (ids, before, after) = (col(|b| b.0), col(|b| b.1), col(|b| b.2));
    let now = w.now.to_text();
    let params: [&(dyn ToSql + Sync); 29] = [
        &t.id,
        &t.kind,
        &t.amount,
        &t.currency,
        &t.shopper,
        &t.other,
        &t.merchant,
        &t.kiosk,
        &t.refers_to,
        &t.description,
        &t.created_by,
        &now,
        &t.cashier,
        &e[0],
        &e[1],
        &e[2],
        &e[3],
        &ids,
        &before,
        &after,
        &w.kept[0],
        &w.kept[1],
        &w.kept[2],
        &w.freed[0],
        &w.freed[1],
        &w.no_pin[0],
        &w.no_pin[1],
        &w.no_pin_sessions,
        &w.no_pin[2],
    ];
    tokio::try_join!(
        biased;
        c.query_one(&st, &params),
        c.batch_execute("COMMIT"),
    )
    .map_err(pg_err)?;
    Ok(())
}

const CLAIM: &str = "INSERT INTO idempotency (scope, key, request_hash, result, created_at)
     SELECT k.scope, k.key, k.hash, '', $4
     FROM unnest($1::TEXT[], $2::TEXT[], $3::BYTEA[]) AS k(scope, key, hash)
     ORDER BY k.scope, k.key
     ON CONFLICT (scope, key) DO NOTHING RETURNING scope, key";

/// The accounts by id, shoppers by name, merchants by name with their tills.
const LOCK: &str = "SELECT id, name, kind, status, balance, currency, merchant_id FROM accounts
     WHERE id IN (
       SELECT unnest($1::BIGINT[])
       UNION SELECT id FROM accounts WHERE kind = 'shopper' AND name = ANY($2::TEXT[])
       UNION SELECT id FROM accounts WHERE kind = 'merchant' AND name = ANY($3::TEXT[])
       UNION SELECT t.id FROM accounts m JOIN accounts t ON t.kind = 'till' AND t.merchant_id = m.id
             WHERE m.kind = 'merchant' AND m.name = ANY($3::TEXT[])
     ) ORDER BY id FOR NO KEY UPDATE";

/// What the guarded shoppers ($1) spent without the PIN since the day began ($2), and the
/// guarded sessions ($3) in all.
const SPENT: &str = "SELECT account_id, NULL::BYTEA, SUM(amount)::BIGINT FROM no_pin_debits
       WHERE account_id = ANY($1::BIGINT[]) AND created_at >= $2 GROUP BY account_id
     UNION ALL
     SELECT NULL::BIGINT, session_hash, SUM(amount)::BIGINT FROM no_pin_debits
       WHERE session_hash = ANY($3::BYTEA[]) GROUP BY session_hash";

const RESERVE: &str =
    "SELECT nextval(pg_get_serial_sequence('transactions', 'id')) FROM generate_series(1, $1::INT)";

const REPLAYS: &str = "SELECT i.scope, i.key, i.request_hash, i.result
     FROM idempotency i JOIN unnest($1::TEXT[], $2::TEXT[]) AS k(scope, key)
       ON i.scope = k.scope AND i.key = k.key";

/// Transactions, entries in leg order, balances by compare-and-set on the locked rows (a
/// miss is a bug), debits made without the PIN, answers with their keys, released keys. A count that is not what was
/// sent fails the statement (a text that is no number, cast to one), so the `COMMIT`
/// pipelined behind it finds the transaction aborted and rolls it back.
const PERSIST: &str = "WITH t AS (
       INSERT INTO transactions (id, kind, amount, currency, shopper_id, other_id, merchant_id, kiosk_id, ref_tx_id, description, created_by, created_at, cashier_id)
       SELECT v.id, v.kind, v.amount, v.currency, v.shopper, v.other, v.merchant, v.kiosk, v.ref, v.description, v.created_by, $12, v.cashier
       FROM unnest($1::BIGINT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[], $7::BIGINT[],
                   $8::TEXT[], $9::BIGINT[], $10::TEXT[], $11::TEXT[], $13::BIGINT[])
         AS v(id, kind, amount, currency, shopper, other, merchant, kiosk, ref, description, created_by, cashier)
       RETURNING 1
     ), e AS (
       INSERT INTO entries (tx_id, account_id, amount, balance_after)
       SELECT l.tx, l.account, l.delta, l.after
       FROM unnest($14::BIGINT[], $15::BIGINT[], $16::BIGINT[], $17::BIGINT[]) WITH ORDINALITY AS l(tx, account, delta, after, n)
       ORDER BY l.n
       RETURNING 1
     ), moved AS (
       UPDATE accounts a SET balance = b.after
       FROM unnest($18::BIGINT[], $19::BIGINT[], $20::BIGINT[]) AS b(id, before, after)
       WHERE a.id = b.id AND a.balance = b.before RETURNING 1
     ), p AS (
       INSERT INTO no_pin_debits (tx_id, account_id, session_hash, amount, created_at)
       SELECT n.tx, n.account, n.session, n.amount, $12
       FROM unnest($26::BIGINT[], $27::BIGINT[], $28::BYTEA[], $29::BIGINT[]) AS n(tx, account, session, amount)
       RETURNING 1
     ), kept AS (
       UPDATE idempotency i SET result = k.result
       FROM unnest($21::TEXT[], $22::TEXT[], $23::TEXT[]) AS k(scope, key, result)
       WHERE i.scope = k.scope AND i.key = k.key RETURNING 1
     ), freed AS (
       DELETE FROM idempotency i USING unnest($24::TEXT[], $25::TEXT[]) AS f(scope, key)
       WHERE i.scope = f.scope AND i.key = f.key RETURNING 1
     ), counts AS (
       SELECT (SELECT count(*) FROM t) AS t, (SELECT count(*) FROM e) AS e,
              (SELECT count(*) FROM moved) AS moved, (SELECT count(*) FROM kept) AS kept,
              (SELECT count(*) FROM p) AS p
     )
     SELECT CASE WHEN t = cardinality($1::BIGINT[]) AND e = cardinality($14::BIGINT[])
                  AND moved = cardinality($18::BIGINT[]) AND kept = cardinality($21::TEXT[])
                  AND p = cardinality($26::BIGINT[])
            THEN 0
            ELSE ('a batch wrote ' || t || ' transactions, ' || e || ' entries, ' || moved
                  || ' balances, ' || kept || ' answers, ' || p
                  || ' no-PIN debits; not what the ledger decided')::INT
            END
     FROM counts";
