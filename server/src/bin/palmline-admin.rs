//! `palmline-admin`: the remote operator CLI. Talks to the server over mutual TLS with an
//! admin certificate; tables for people, `--json` for scripts.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use palmline_server::client::mtls_client;
use palmline_shared::api::*;
use palmline_shared::{Currency, Money};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "palmline-admin",
    version,
    about = "Palmline operator CLI (mutual TLS)"
)]
struct Cli {
    /// Server base URL.
    #[arg(
        long,
        env = "PALMLINE_SERVER",
        default_value = "https://localhost:8443"
    )]
    server: String,
    /// Data dir to find the CA and the admin certificate in (pki/ca.pem, pki/admins/NAME.*).
    #[arg(long, env = "PALMLINE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Admin certificate name under DATA/pki/admins/.
    #[arg(long, env = "PALMLINE_ADMIN", default_value = "operator")]
    name: String,
    /// Explicit paths (override --data-dir/--name).
    #[arg(long, env = "PALMLINE_ADMIN_CERT")]
    cert: Option<PathBuf>,
    #[arg(long, env = "PALMLINE_ADMIN_KEY")]
    key: Option<PathBuf>,
    #[arg(long, env = "PALMLINE_CA")]
    ca: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Idempotency key for a mutating command (default: a fresh random key). Reuse it to
    /// retry a command safely.
    #[arg(long, global = true)]
    idempotency_key: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Who the server thinks we are.
    Health,
    /// List or search accounts (by name or e-mail).
    Accounts {
        #[arg(long)]
        q: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Freeze an account (no money moves in or out; no logins).
    Freeze {
        id: i64,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Unfreeze an account.
    Unfreeze { id: i64 },
    /// Lift a shopper's lock-outs early (every kiosk, password and PIN) and give back
    /// today's guesses: only after checking who the shopper is.
    Unlock {
        id: i64,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete a shopper's enrolled palm (the shopper may enroll again at a kiosk).
    DeletePalm { id: i64 },
    /// Refund (part of) a payment to the shopper.
    Refund {
        #[arg(long)]
        payment: i64,
        /// Amount like 12.34 in the server's currency.
        #[arg(long)]
        amount: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Kiosks seen by the server.
    Kiosks,
    /// Enrolled palms the server left out of its identification index because their
    /// templates do not open or decode: their shoppers have to enroll again.
    SkippedPalms,
    /// The palm-scan log, newest first.
    Scans {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        before: Option<i64>,
    },
    /// Daily totals per merchant (UTC day; default today).
    Daily {
        #[arg(long)]
        date: Option<String>,
    },
    /// Recompute every balance from the entries.
    LedgerCheck,
    /// Run the retention purge now (old idempotency records and palm scans, expired
    /// sessions, past guess counts; never money records).
    Purge,
    /// Cashiers: the people who take and pay out cash at a merchant's kiosks.
    #[command(subcommand)]
    Cashier(CashierCmd),
}

#[derive(Subcommand)]
enum CashierCmd {
    /// Create a cashier. The PIN (4-12 digits) is asked twice without echo on a terminal,
    /// or read from the first line of stdin with --pin-stdin; it is never an argument.
    Add {
        /// The merchant name the kiosks' certificates carry.
        #[arg(long)]
        merchant: String,
        #[arg(long)]
        name: String,
        /// Read the PIN from the first line of stdin (for scripts).
        #[arg(long)]
        pin_stdin: bool,
    },
    /// List cashiers (of one merchant, or all).
    List {
        #[arg(long)]
        merchant: Option<String>,
    },
    /// Disable a cashier: no more sign-ins, open sessions stop working.
    Disable { id: i64 },
    /// Lift a cashier's lock early (after checking who is asking).
    Unlock { id: i64 },
    /// Give a cashier a new PIN (asked as for `add`); lifts the lock, ends open sessions.
    SetPin {
        id: i64,
        /// Read the PIN from the first line of stdin (for scripts).
        #[arg(long)]
        pin_stdin: bool,
    },
}

/// Reads the PIN: one line of stdin with `--pin-stdin`, else twice from the terminal with
/// echo off (`stty`), never from the command line (which `ps` and shell history show).
fn read_pin(pin_stdin: bool) -> Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let line = || -> Result<String> {
        let mut s = String::new();
        std::io::stdin().lock().read_line(&mut s)?;
        Ok(s.trim_end_matches(['\r', '\n']).to_string())
    };
    if pin_stdin {
        return line();
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask the PIN on: pass --pin-stdin and write it to stdin");
    }
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
    };
    let ask = |prompt: &str| -> Result<String> {
        eprint!("{prompt}");
        std::io::stderr().flush()?;
        let echo_off = stty("-echo").is_ok_and(|s| s.success());
        let pin = line();
        if echo_off {
            let _ = stty("echo");
        }
        eprintln!();
        pin
    };
    let pin = ask("Cashier PIN (4-12 digits): ")?;
    if ask("Again: ")? != pin {
        bail!("the two PINs differ");
    }
    Ok(pin)
}

struct Api {
    client: reqwest::Client,
    base: String,
    idem: String,
}

impl Api {
    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T> {
        let text = self.send(method, path, body).await?;
        serde_json::from_str(&text).with_context(|| format!("unexpected answer: {text}"))
    }

    /// Sends a request (with the idempotency key when mutating); the body of a success.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<String> {
        // One request id per command, in the server's log and in our error message.
        let rid = format!("a{:032x}", rand::random::<u128>());
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .header(REQUEST_ID_HEADER, &rid);
        if method == reqwest::Method::POST || method == reqwest::Method::DELETE {
            req = req.header(IDEMPOTENCY_HEADER, &self.idem);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {} (is the certificate valid?)", self.base))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            match serde_json::from_str::<ErrorBody>(&text) {
                Ok(e) => bail!(
                    "{} ({}): {} [request id {rid}]",
                    e.error.code,
                    status.as_u16(),
                    e.error.message
                ),
                Err(_) => bail!("HTTP {status}: {text} [request id {rid}]"),
            }
        }
        Ok(text)
    }
}

async fn cashier(api: &Api, json: bool, cmd: CashierCmd) -> Result<()> {
    use reqwest::Method;
    let show = |c: &Cashier| {
        println!(
            "cashier {} ({}) of {}: {}",
            c.id,
            c.name,
            c.merchant,
            format!("{:?}", c.status).to_lowercase()
        )
    };
    match cmd {
        CashierCmd::Add {
            merchant,
            name,
            pin_stdin,
        } => {
            let pin = read_pin(pin_stdin)?;
            let body = serde_json::to_value(NewCashier {
                merchant,
                name,
                pin,
            })?;
            let c: Cashier = api
                .call(Method::POST, "/v1/admin/cashiers", Some(body))
                .await?;
            print(json, &c, show)
        }
        CashierCmd::List { merchant } => {
            let path = match merchant {
                Some(m) => format!(
                    "/v1/admin/cashiers?merchant={}",
                    percent_encoding::utf8_percent_encode(&m, percent_encoding::NON_ALPHANUMERIC)
                ),
                None => "/v1/admin/cashiers".to_string(),
            };
            let rows: Vec<Cashier> = api.call(Method::GET, &path, None).await?;
            print(json, &rows, |rows| {
                table(
                    &["id", "merchant", "name", "status", "created"],
                    rows.iter()
                        .map(|c| {
                            vec![
                                c.id.to_string(),
                                c.merchant.clone(),
                                c.name.clone(),
                                format!("{:?}", c.status).to_lowercase(),
                                c.created_at.clone(),
                            ]
                        })
                        .collect(),
                )
            })
        }
        CashierCmd::Disable { id } => {
            let c: Cashier = api
                .call(
                    Method::POST,
                    &format!("/v1/admin/cashiers/{id}/disable"),
                    Some(serde_json::json!({})),
                )
                .await?;
            print(json, &c, show)
        }
        CashierCmd::Unlock { id } => {
            let path = format!("/v1/admin/cashiers/{id}/unlock");
            let c: Cashier = api
                .call(Method::POST, &path, Some(serde_json::json!({})))
                .await?;
            print(json, &c, show)
        }
        CashierCmd::SetPin { id, pin_stdin } => {
            let body = serde_json::to_value(CashierPinChange {
                pin: read_pin(pin_stdin)?,
            })?;
            let path = format!("/v1/admin/cashiers/{id}/pin");
            let c: Cashier = api.call(Method::POST, &path, Some(body)).await?;
            print(json, &c, show)
        }
    }
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r);
    }
}

fn print<T: serde::Serialize>(json: bool, value: &T, human: impl FnOnce(&T)) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        human(value);
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("palmline-admin: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let pki = cli.data_dir.join("pki");
    let ca = cli.ca.clone().unwrap_or_else(|| pki.join("ca.pem"));
    let cert = cli
        .cert
        .clone()
        .unwrap_or_else(|| pki.join("admins").join(format!("{}.pem", cli.name)));
    let key = cli
        .key
        .clone()
        .unwrap_or_else(|| pki.join("admins").join(format!("{}.key", cli.name)));
    let api = Api {
        client: mtls_client(&ca, &cert, &key)?,
        base: cli.server.trim_end_matches('/').to_string(),
        idem: cli
            .idempotency_key
            .clone()
            .unwrap_or_else(|| format!("admin-{:032x}", rand::random::<u128>())),
    };
    use reqwest::Method;
    let json = cli.json;
    match cli.command {
        Cmd::Health => {
            let h: Health = api.call(Method::GET, "/v1/health", None).await?;
            print(json, &h, |h| {
                println!(
                    "{} {} as {} ({}, PIN from {})",
                    h.status, h.version, h.role, h.currency, h.pin_threshold
                )
            })?;
        }
        Cmd::Accounts { q, limit } => {
            let mut path = format!("/v1/admin/accounts?limit={limit}");
            if let Some(q) = q {
                path.push_str(&format!(
                    "&q={}",
                    percent_encoding::utf8_percent_encode(&q, percent_encoding::NON_ALPHANUMERIC)
                ));
            }
            let rows: Vec<AccountRow> = api.call(Method::GET, &path, None).await?;
            print(json, &rows, |rows| {
                table(
                    &[
                        "id", "kind", "name", "email", "status", "balance", "created",
                    ],
                    rows.iter()
                        .map(|r| {
                            vec![
                                r.id.to_string(),
                                r.kind.clone(),
                                r.name.clone(),
                                r.email.clone().unwrap_or_default(),
                                format!("{:?}", r.status).to_lowercase(),
                                r.balance.to_string(),
                                r.created_at.clone(),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        Cmd::Freeze { id, reason } => {
            let row: AccountRow = api
                .call(
                    Method::POST,
                    &format!("/v1/admin/accounts/{id}/freeze"),
                    Some(serde_json::to_value(FreezeRequest { reason })?),
                )
                .await?;
            print(json, &row, |r| {
                println!("account {} ({}) is now frozen", r.id, r.name)
            })?;
        }
        Cmd::Unfreeze { id } => {
            let row: AccountRow = api
                .call(
                    Method::POST,
                    &format!("/v1/admin/accounts/{id}/unfreeze"),
                    Some(serde_json::json!({})),
                )
                .await?;
            print(json, &row, |r| {
                println!("account {} ({}) is now active", r.id, r.name)
            })?;
        }
        Cmd::Unlock { id, reason } => {
            let row: AccountRow = api
                .call(
                    Method::POST,
                    &format!("/v1/admin/accounts/{id}/unlock"),
                    Some(serde_json::to_value(FreezeRequest { reason })?),
                )
                .await?;
            print(json, &row, |r| {
                println!("account {} ({}): lock-outs lifted", r.id, r.name)
            })?;
        }
        Cmd::DeletePalm { id } => {
            api.send(
                Method::DELETE,
                &format!("/v1/admin/accounts/{id}/palm"),
                None,
            )
            .await?;
            if json {
                println!("{}", serde_json::json!({"deleted": id}));
            } else {
                println!("palm of account {id} deleted");
            }
        }
        Cmd::Refund {
            payment,
            amount,
            reason,
        } => {
            let h: Health = api.call(Method::GET, "/v1/health", None).await?;
            let currency = Currency::from_code(&h.currency)?;
            let amount = Money::parse_positive(&amount, currency)
                .with_context(|| format!("amount {amount:?}"))?;
            let r: Receipt = api
                .call(
                    Method::POST,
                    "/v1/admin/refunds",
                    Some(serde_json::to_value(RefundRequest {
                        payment_id: payment,
                        amount,
                        reason,
                    })?),
                )
                .await?;
            print(json, &r, |r| {
                println!(
                    "refund #{} of {} to {} (balance now {}); retry with --idempotency-key {}",
                    r.transaction_id,
                    r.amount,
                    r.shopper,
                    r.balance_after
                        .map_or("not shown".into(), |b| b.to_string()),
                    api.idem
                )
            })?;
        }
        Cmd::SkippedPalms => {
            let rows: Vec<SkippedPalm> = api
                .call(Method::GET, "/v1/admin/palms/skipped", None)
                .await?;
            print(json, &rows, |rows| {
                table(
                    &["account", "username"],
                    rows.iter()
                        .map(|p| {
                            let name = p.username.clone().unwrap_or_else(|| "(gone)".into());
                            vec![p.account_id.to_string(), name]
                        })
                        .collect(),
                )
            })?;
        }
        Cmd::Kiosks => {
            let rows: Vec<KioskRow> = api.call(Method::GET, "/v1/admin/kiosks", None).await?;
            print(json, &rows, |rows| {
                table(
                    &["kiosk", "merchant", "first seen", "last seen", "requests"],
                    rows.iter()
                        .map(|k| {
                            vec![
                                k.kiosk_id.clone(),
                                k.merchant.clone(),
                                k.first_seen.clone(),
                                k.last_seen.clone(),
                                k.requests.to_string(),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        Cmd::Scans { limit, before } => {
            let mut path = format!("/v1/admin/palm-scans?limit={limit}");
            if let Some(b) = before {
                path.push_str(&format!("&before={b}"));
            }
            let rows: Vec<PalmScanRow> = api.call(Method::GET, &path, None).await?;
            print(json, &rows, |rows| {
                table(
                    &[
                        "id", "at", "kiosk", "purpose", "outcome", "score", "account",
                    ],
                    rows.iter()
                        .map(|s| {
                            vec![
                                s.id.to_string(),
                                s.at.clone(),
                                s.kiosk_id.clone(),
                                s.purpose.clone(),
                                s.outcome.as_str().to_string(),
                                s.score.map(|v| format!("{v:.1}")).unwrap_or_default(),
                                s.account.clone().unwrap_or_default(),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        Cmd::Daily { date } => {
            let path = match date {
                Some(d) => format!("/v1/admin/reports/daily?date={d}"),
                None => "/v1/admin/reports/daily".to_string(),
            };
            let r: DailyReport = api.call(Method::GET, &path, None).await?;
            print(json, &r, |r| {
                println!("day {}", r.date);
                table(
                    &[
                        "merchant",
                        "payments",
                        "sales",
                        "refunds",
                        "deposits",
                        "withdrawals",
                        "cash net",
                    ],
                    r.merchants
                        .iter()
                        .map(|m| {
                            vec![
                                m.merchant.clone(),
                                m.payments_count.to_string(),
                                m.payments_total.to_string(),
                                m.refunds_total.to_string(),
                                m.deposits_total.to_string(),
                                m.withdrawals_total.to_string(),
                                m.cash_net.to_string(),
                            ]
                        })
                        .collect(),
                );
                let cash: Vec<Vec<String>> = r
                    .merchants
                    .iter()
                    .flat_map(|m| m.cashiers.iter().map(move |c| (m, c)))
                    .map(|(m, c)| {
                        vec![
                            m.merchant.clone(),
                            if c.cashier_id.is_some() {
                                c.name.clone()
                            } else {
                                "(no cashier)".into()
                            },
                            format!("{} ({})", c.deposits_total, c.deposits_count),
                            format!("{} ({})", c.withdrawals_total, c.withdrawals_count),
                            c.cash_net.to_string(),
                        ]
                    })
                    .collect();
                if !cash.is_empty() {
                    println!();
                    table(
                        &["merchant", "cashier", "deposits", "withdrawals", "cash net"],
                        cash,
                    );
                }
            })?;
        }
        Cmd::Cashier(c) => cashier(&api, json, c).await?,
        Cmd::Purge => {
            let r: PurgeReport = api.call(Method::POST, "/v1/admin/purge", None).await?;
            print(json, &r, |r| {
                println!(
                    "purged {} idempotency records, {} palm scans, {} expired sessions, {} guess-count days",
                    r.idempotency, r.scans, r.sessions, r.guess_days
                )
            })?;
        }
        Cmd::LedgerCheck => {
            let r: LedgerCheck = api
                .call(Method::GET, "/v1/admin/ledger-check", None)
                .await?;
            print(json, &r, |r| {
                println!(
                    "{}: {} accounts, {} transactions, sum of balances {} (must be 0); {} unbalanced, {} mismatched, {} negative",
                    if r.ok { "OK" } else { "PROBLEM" },
                    r.accounts_checked,
                    r.transactions_checked,
                    r.total_balance_minor,
                    r.unbalanced_transactions.len(),
                    r.mismatches.len(),
                    r.negative_shoppers.len()
                )
            })?;
            if !r.ok {
                std::process::exit(2);
            }
        }
    }
    Ok(())
}
