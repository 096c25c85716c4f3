//! The read queries: each one statement (one snapshot) outside any write transaction,
//! except `ledger_check`, which reads everything from one REPEATABLE READ snapshot so that
//! movements committed while it runs cannot look like mismatches.

use super::{col, pg_err, query, query_one, query_opt, storage, text_col};
use crate::ledger::{AccountKind, TxKind};
use crate::store::clock::day_bounds;
use crate::store::receipt::status_of;
use crate::store::{
    cashier_status, group_palm_changes, AccountRow, BalanceMismatch, Cashier, CashierAuth,
    CashierSessionInfo, DailyReport, DailyTotals, HistoryItem, HistoryPage, KioskRow, LedgerCheck,
    LedgerError, PalmChange, PalmScanRow, PalmVersion, ScanOutcome, SessionInfo, Shopper,
    ShopperAuth, Wallet,
};
use deadpool_postgres::{GenericClient, Object};
use palmline_shared::{Currency, Money};
use tokio_postgres::types::ToSql;
use tokio_postgres::IsolationLevel;

/// `filter` is a fixed condition over `accounts` with one parameter.
pub(super) async fn shopper_auth(
    c: &impl GenericClient,
    filter: &str,
    p: &(dyn ToSql + Sync),
) -> Result<Option<ShopperAuth>, LedgerError> {
    let sql = format!(
        "SELECT id, name, password_hash, pin_hash, status FROM accounts WHERE kind = 'shopper' AND {filter}"
    );
    Ok(query_opt(c, &sql, &[p]).await?.map(|r| ShopperAuth {
        id: r.get(0),
        username: r.get(1),
        password_hash: r.get(2),
        pin_hash: r.get(3),
        frozen: r.get::<_, &str>(4) == "frozen",
    }))
}

pub(super) async fn session(
    c: &impl GenericClient,
    token_hash: &[u8; 32],
    now: i64,
) -> Result<Option<SessionInfo>, LedgerError> {
    let row = query_opt(
        c,
        "SELECT account_id, kiosk_id, expires_at FROM sessions WHERE token_hash = $1 AND expires_at > $2",
        &[&&token_hash[..], &now],
    )
    .await?;
    Ok(row.map(|r| SessionInfo {
        shopper_id: r.get(0),
        kiosk_id: r.get(1),
        expires_at: r.get(2),
    }))
}

pub(super) async fn shopper_view(c: &impl GenericClient, id: i64) -> Result<Shopper, LedgerError> {
    let row = query_opt(
        c,
        "SELECT id, name, email, status, pin_hash IS NOT NULL, created_at,
                EXISTS (SELECT 1 FROM palm_templates p WHERE p.account_id = accounts.id)
         FROM accounts WHERE id = $1 AND kind = 'shopper'",
        &[&id],
    )
    .await?
    .ok_or_else(|| LedgerError::UnknownAccount(format!("#{id}")))?;
    Ok(Shopper {
        id: row.get(0),
        username: row.get(1),
        email: row.get::<_, Option<String>>(2).unwrap_or_default(),
        status: status_of(row.get(3)),
        has_pin: row.get(4),
        palm_enrolled: row.get(6),
        created_at: col(&row, 5)?,
    })
}

pub(super) async fn wallet(
    c: &impl GenericClient,
    shopper_id: i64,
    cur: Currency,
) -> Result<Wallet, LedgerError> {
    let shopper = shopper_view(c, shopper_id).await?;
    let sql = "SELECT balance FROM accounts WHERE id = $1";
    let balance = query_one(c, sql, &[&shopper_id]).await?.get(0);
    Ok(Wallet {
        shopper,
        balance: Money::from_minor(balance, cur),
    })
}

pub(super) async fn history(
    c: &impl GenericClient,
    shopper_id: i64,
    before: Option<i64>,
    limit: u32,
    cur: Currency,
) -> Result<HistoryPage, LedgerError> {
    let limit = limit.clamp(1, 200) as usize;
    let rows = query(
        c,
        "SELECT e.id, t.id, t.kind, e.amount, e.balance_after, t.description, t.created_at,
                CASE WHEN t.shopper_id = e.account_id THEN o.name ELSE s.name END
         FROM entries e
         JOIN transactions t ON t.id = e.tx_id
         JOIN accounts o ON o.id = t.other_id
         JOIN accounts s ON s.id = t.shopper_id
         WHERE e.account_id = $1 AND e.id < $2
         ORDER BY e.id DESC LIMIT $3",
        &[
            &shopper_id,
            &before.unwrap_or(i64::MAX),
            &(limit as i64 + 1),
        ],
    )
    .await?;
    let more = rows.len() > limit;
    let mut items = Vec::with_capacity(limit);
    let mut last_entry = None;
    for r in rows.iter().take(limit) {
        last_entry = Some(r.get::<_, i64>(0));
        items.push(HistoryItem {
            transaction_id: r.get(1),
            kind: text_col(r, 2, TxKind::parse)?,
            amount: Money::from_minor(r.get(3), cur),
            balance_after: Money::from_minor(r.get(4), cur),
            description: r.get(5),
            created_at: col(r, 6)?,
            counterparty: r.get(7),
        });
    }
    Ok(HistoryPage {
        items,
        next_before: if more { last_entry } else { None },
    })
}

pub(super) async fn merchant_day(
    c: &impl GenericClient,
    merchant: &str,
    date: time::Date,
    cur: Currency,
) -> Result<DailyTotals, LedgerError> {
    let sql = "SELECT id FROM accounts WHERE kind = 'merchant' AND name = $1";
    let id: Option<i64> = query_opt(c, sql, &[&merchant]).await?.map(|r| r.get(0));
    // A merchant whose kiosk has not been seen yet has sold nothing.
    merchant_day_totals(c, id.unwrap_or(-1), merchant, date, cur).await
}

pub(super) async fn daily_report(
    c: &impl GenericClient,
    date: time::Date,
    cur: Currency,
) -> Result<DailyReport, LedgerError> {
    let sql = "SELECT id, name FROM accounts WHERE kind = 'merchant' ORDER BY name";
    let mut merchants = Vec::new();
    for r in query(c, sql, &[]).await? {
        merchants.push(merchant_day_totals(c, r.get(0), r.get(1), date, cur).await?);
    }
    Ok(DailyReport { date, merchants })
}

async fn merchant_day_totals(
    c: &impl GenericClient,
    merchant_id: i64,
    merchant: &str,
    date: time::Date,
    cur: Currency,
) -> Result<DailyTotals, LedgerError> {
    let (from, to) = day_bounds(date)?;
    let zero = Money::zero(cur);
    let mut t = DailyTotals {
        merchant: merchant.to_string(),
        date,
        payments_count: 0,
        payments_total: zero,
        refunds_total: zero,
        deposits_total: zero,
        withdrawals_total: zero,
        cash_net: zero,
        cashiers: Vec::new(),
    };
    let rows = query(
        c,
        "SELECT kind, COUNT(*), SUM(amount)::BIGINT FROM transactions
         WHERE merchant_id = $1 AND created_at >= $2 AND created_at < $3 GROUP BY kind",
        &[&merchant_id, &from, &to],
    )
    .await?;
    for r in rows {
        let (count, m): (i64, Money) = (r.get(1), Money::from_minor(r.get(2), cur));
        match r.get::<_, &str>(0) {
            "payment" => (t.payments_count, t.payments_total) = (count, m),
            "refund" => t.refunds_total = m,
            "deposit" => t.deposits_total = m,
            "withdrawal" => t.withdrawals_total = m,
            _ => {}
        }
    }
    t.cash_net = t
        .deposits_total
        .checked_sub(t.withdrawals_total)
        .map_err(storage)?;
    let rows = query(
        c,
        "SELECT t.cashier_id, c.name, t.kind, COUNT(*), SUM(t.amount)::BIGINT
         FROM transactions t LEFT JOIN cashiers c ON c.id = t.cashier_id
         WHERE t.merchant_id = $1 AND t.created_at >= $2 AND t.created_at < $3
           AND t.kind IN ('deposit', 'withdrawal')
         GROUP BY t.cashier_id, c.name, t.kind",
        &[&merchant_id, &from, &to],
    )
    .await?;
    let rows = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)));
    t.cashiers = crate::store::cashier_totals(rows, cur)?;
    Ok(t)
}

const CASHIER_ROWS: &str = "SELECT c.id, a.name, c.name, c.status, c.created_at, c.pin_hash
     FROM cashiers c JOIN accounts a ON a.id = c.merchant_id";

fn cashier_of(r: &tokio_postgres::Row) -> Result<(Cashier, String), LedgerError> {
    let cashier = Cashier {
        id: r.get(0),
        merchant: r.get(1),
        name: r.get(2),
        status: cashier_status(r.get(3)),
        created_at: col(r, 4)?,
    };
    Ok((cashier, r.get(5)))
}

pub(super) async fn cashier_by_id(c: &impl GenericClient, id: i64) -> Result<Cashier, LedgerError> {
    let sql = format!("{CASHIER_ROWS} WHERE c.id = $1");
    let row = query_opt(c, &sql, &[&id])
        .await?
        .ok_or(LedgerError::UnknownCashier)?;
    Ok(cashier_of(&row)?.0)
}

pub(super) async fn cashier_auth(
    c: &impl GenericClient,
    merchant: &str,
    name: &str,
) -> Result<Option<CashierAuth>, LedgerError> {
    let sql = format!("{CASHIER_ROWS} WHERE a.kind = 'merchant' AND a.name = $1 AND c.name = $2");
    let Some(r) = query_opt(c, &sql, &[&merchant, &name]).await? else {
        return Ok(None);
    };
    let (cashier, pin_hash) = cashier_of(&r)?;
    Ok(Some(CashierAuth { cashier, pin_hash }))
}

pub(super) async fn cashiers(
    c: &impl GenericClient,
    merchant: Option<&str>,
) -> Result<Vec<Cashier>, LedgerError> {
    let order = "ORDER BY a.name COLLATE \"C\", c.name COLLATE \"C\", c.id";
    let rows = match merchant {
        Some(m) => {
            query(
                c,
                &format!("{CASHIER_ROWS} WHERE a.name = $1 {order}"),
                &[&m],
            )
            .await?
        }
        None => query(c, &format!("{CASHIER_ROWS} {order}"), &[]).await?,
    };
    rows.iter().map(|r| Ok(cashier_of(r)?.0)).collect()
}

pub(super) async fn cashier_session(
    c: &impl GenericClient,
    token_hash: &[u8; 32],
    now: i64,
) -> Result<Option<CashierSessionInfo>, LedgerError> {
    let row = query_opt(
        c,
        "SELECT s.cashier_id, c.name, a.name, s.kiosk_id, c.status, s.expires_at
         FROM cashier_sessions s JOIN cashiers c ON c.id = s.cashier_id
         JOIN accounts a ON a.id = c.merchant_id
         WHERE s.token_hash = $1 AND s.expires_at > $2",
        &[&&token_hash[..], &now],
    )
    .await?;
    Ok(row.map(|r| CashierSessionInfo {
        cashier_id: r.get(0),
        name: r.get(1),
        merchant: r.get(2),
        kiosk_id: r.get(3),
        active: r.get::<_, &str>(4) == "active",
        expires_at: r.get(5),
    }))
}

const ACCOUNT_ROWS: &str = "SELECT id, kind, name, email, status, balance, created_at,
    EXISTS (SELECT 1 FROM palm_templates p WHERE p.account_id = accounts.id) FROM accounts";

fn account_of(r: &tokio_postgres::Row, cur: Currency) -> Result<AccountRow, LedgerError> {
    Ok(AccountRow {
        id: r.get(0),
        kind: text_col(r, 1, AccountKind::parse)?,
        name: r.get(2),
        email: r.get(3),
        status: status_of(r.get(4)),
        balance: Money::from_minor(r.get(5), cur),
        palm_enrolled: r.get(7),
        created_at: col(r, 6)?,
    })
}

pub(super) async fn account_row(
    c: &impl GenericClient,
    id: i64,
    cur: Currency,
) -> Result<AccountRow, LedgerError> {
    let sql = format!("{ACCOUNT_ROWS} WHERE id = $1");
    let row = query_opt(c, &sql, &[&id]).await?;
    let row = row.ok_or_else(|| LedgerError::UnknownAccount(format!("#{id}")))?;
    account_of(&row, cur)
}

pub(super) async fn accounts(
    c: &impl GenericClient,
    search: Option<&str>,
    limit: u32,
    cur: Currency,
) -> Result<Vec<AccountRow>, LedgerError> {
    let limit = i64::from(limit.clamp(1, 1000));
    let rows = match search {
        Some(q) => {
            let escaped = q
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let sql = format!(
                "{ACCOUNT_ROWS} WHERE kind <> 'till' AND (name LIKE $1 ESCAPE '\\' OR email LIKE $1 ESCAPE '\\')
                 ORDER BY id LIMIT $2"
            );
            query(c, &sql, &[&format!("%{escaped}%"), &limit]).await?
        }
        None => {
            let sql = format!("{ACCOUNT_ROWS} WHERE kind <> 'till' ORDER BY id LIMIT $1");
            query(c, &sql, &[&limit]).await?
        }
    };
    rows.iter().map(|r| account_of(r, cur)).collect()
}

pub(super) async fn kiosks(c: &impl GenericClient) -> Result<Vec<KioskRow>, LedgerError> {
    let rows = query(
        c,
        "SELECT k.kiosk_id, a.name, k.first_seen, k.last_seen, k.requests
         FROM kiosks k JOIN accounts a ON a.id = k.merchant_id ORDER BY k.kiosk_id",
        &[],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(KioskRow {
                kiosk_id: r.get(0),
                merchant: r.get(1),
                first_seen: col(r, 2)?,
                last_seen: col(r, 3)?,
                requests: r.get(4),
            })
        })
        .collect()
}

pub(super) async fn palm_scans(
    c: &impl GenericClient,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<PalmScanRow>, LedgerError> {
    let limit = i64::from(limit.clamp(1, 1000));
    let rows = query(
        c,
        "SELECT p.id, p.kiosk_id, p.at, p.purpose, p.outcome, p.score, a.name
         FROM palm_scans p LEFT JOIN accounts a ON a.id = p.account_id
         WHERE p.id < $1 ORDER BY p.id DESC LIMIT $2",
        &[&before.unwrap_or(i64::MAX), &limit],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PalmScanRow {
                id: r.get(0),
                kiosk_id: r.get(1),
                at: col(r, 2)?,
                purpose: r.get(3),
                outcome: text_col(r, 4, ScanOutcome::parse)?,
                score: r.get(5),
                account: r.get(6),
            })
        })
        .collect()
}

/// Recomputes every balance from the entries, from one snapshot.
pub(super) async fn ledger_check(client: &mut Object) -> Result<LedgerCheck, LedgerError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_err)?;
    let check = ledger_check_in(&tx).await?;
    tx.commit().await.map_err(pg_err)?;
    Ok(check)
}

/// Recomputes every balance from the entries on `c`, in whatever transaction it is in
/// (`migrate-store` checks its copy before committing it).
pub(crate) async fn ledger_check_in(c: &impl GenericClient) -> Result<LedgerCheck, LedgerError> {
    let one = |sql: &'static str| {
        let tx = c;
        async move { Ok::<i64, LedgerError>(query_one(tx, sql, &[]).await?.get(0)) }
    };
    let accounts_checked = one("SELECT COUNT(*) FROM accounts").await?;
    let transactions_checked = one("SELECT COUNT(*) FROM transactions").await?;
    let total_balance_minor = one("SELECT COALESCE(SUM(balance), 0)::BIGINT FROM accounts").await?;
    let ids = |sql: &'static str| {
        let tx = c;
        async move {
            let rows = query(tx, sql, &[]).await?;
            Ok::<Vec<i64>, LedgerError>(rows.iter().map(|r| r.get(0)).collect())
        }
    };
    let mut unbalanced =
        ids("SELECT tx_id FROM entries GROUP BY tx_id HAVING SUM(amount) <> 0 ORDER BY tx_id")
            .await?;
    // A transaction without entries moved nothing yet claims an amount: also wrong.
    unbalanced.extend(
        ids("SELECT t.id FROM transactions t WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.tx_id = t.id) ORDER BY t.id")
            .await?,
    );
    let negative_shoppers =
        ids("SELECT id FROM accounts WHERE kind = 'shopper' AND balance < 0 ORDER BY id").await?;
    let mismatches = query(
        c,
        "SELECT id, balance, s FROM (
           SELECT a.id, a.balance,
                  COALESCE((SELECT SUM(e.amount) FROM entries e WHERE e.account_id = a.id), 0)::BIGINT AS s
           FROM accounts a) x
         WHERE balance <> s ORDER BY id",
        &[],
    )
    .await?
    .iter()
    .map(|r| BalanceMismatch {
        account_id: r.get(0),
        cached_minor: r.get(1),
        from_entries_minor: r.get(2),
    })
    .collect::<Vec<_>>();
    Ok(LedgerCheck::new(
        accounts_checked,
        transactions_checked,
        total_balance_minor,
        unbalanced,
        mismatches,
        negative_shoppers,
    ))
}

pub(super) async fn palm_templates(
    c: &impl GenericClient,
    ids: Option<Vec<i64>>,
) -> Result<Vec<(i64, Vec<Vec<u8>>)>, LedgerError> {
    let rows = match &ids {
        None => {
            let sql = "SELECT account_id, ciphertext FROM palm_templates ORDER BY account_id, idx";
            query(c, sql, &[]).await?
        }
        Some(ids) => {
            // In the order asked for (ids may repeat, as SQLite's per-id loop allows).
            query(
                c,
                "SELECT p.account_id, p.ciphertext FROM unnest($1::BIGINT[]) WITH ORDINALITY AS w(id, n)
                 JOIN palm_templates p ON p.account_id = w.id ORDER BY w.n, p.idx",
                &[ids],
            )
            .await?
        }
    };
    let mut out: Vec<(i64, Vec<Vec<u8>>)> = Vec::new();
    for r in rows {
        let (id, ct): (i64, Vec<u8>) = (r.get(0), r.get(1));
        match out.last_mut() {
            Some((last, v)) if *last == id => v.push(ct),
            _ => out.push((id, vec![ct])),
        }
    }
    Ok(out)
}

pub(super) async fn palm_owners(c: &impl GenericClient) -> Result<Vec<i64>, LedgerError> {
    let sql = "SELECT DISTINCT account_id FROM palm_templates ORDER BY account_id";
    Ok(query(c, sql, &[]).await?.iter().map(|r| r.get(0)).collect())
}

pub(super) async fn palm_version(c: &impl GenericClient) -> Result<PalmVersion, LedgerError> {
    let sql = "SELECT COALESCE(MAX(version), 0)::BIGINT FROM palm_versions";
    let v: i64 = query_one(c, sql, &[]).await?.get(0);
    Ok(PalmVersion(u64::try_from(v).map_err(storage)?))
}

/// One statement, so each palm's templates are read in the snapshot of its version.
pub(super) async fn palm_changes(
    c: &impl GenericClient,
    after: PalmVersion,
    limit: u32,
) -> Result<Vec<PalmChange>, LedgerError> {
    let after = i64::try_from(after.0).map_err(storage)?;
    let rows = query(
        c,
        "WITH changed AS (SELECT account_id, version FROM palm_versions
                           WHERE version > $1 ORDER BY version LIMIT $2)
         SELECT c.account_id, c.version, t.ciphertext FROM changed c
           LEFT JOIN palm_templates t ON t.account_id = c.account_id
          ORDER BY c.version, t.idx",
        &[&after, &i64::from(limit)],
    )
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let v: i64 = r.get(1);
        out.push((r.get(0), u64::try_from(v).map_err(storage)?, r.get(2)));
    }
    Ok(group_palm_changes(out))
}

pub(super) async fn total_balance(c: &impl GenericClient) -> Result<i64, LedgerError> {
    let sql = "SELECT COALESCE(SUM(balance), 0)::BIGINT FROM accounts";
    Ok(query_one(c, sql, &[]).await?.get(0))
}
