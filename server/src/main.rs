//! `palmline-server`: serve, PKI, migrations. A thin CLI over the library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use palmline_server::config::{Database, LogFormat, ServerConfig};
use palmline_server::pki::{IssuedCert, Pki, Replaced, RevokeTarget};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "palmline-server", version, about = "The Palmline server")]
struct Cli {
    /// Where the database, pki/ and keys live.
    #[arg(
        long,
        global = true,
        default_value = "./data",
        env = "PALMLINE_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// TOML configuration file (environment variables PALMLINE_* override it).
    #[arg(long, global = true, env = "PALMLINE_CONFIG")]
    config: Option<PathBuf>,
    /// The ledger's database: `postgres://user@host:port/db` for PostgreSQL, or `sqlite`
    /// (the default: DATA/palmline.db). Wins over PALMLINE_DATABASE and `database` in TOML.
    #[arg(long, global = true)]
    database: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API over mutual TLS. Never reads the CA key: issue the certificates first
    /// (`pki bootstrap`), then move `pki/ca.key` offline.
    Serve {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, env = "PALMLINE_LISTEN")]
        listen: Option<String>,
        /// `text` or `json` (one object per line, with the request id); wins over
        /// PALMLINE_LOG_FORMAT and `log_format` in TOML. Default: text.
        #[arg(long)]
        log_format: Option<LogFormat>,
    },
    /// Manage the certificate authority.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Recompute every balance from the entries (offline, on the local database).
    LedgerCheck,
    /// Move a shop's ledger to another store (server stopped): every account, transaction,
    /// entry, kiosk, sealed palm template, scan log, idempotency record and guess counter
    /// (open sessions are dropped) into an EMPTY destination in one transaction, committed
    /// only once `ledger-check` passes on both sides and every balance, total, row count and
    /// table digest matches. Exit 2 on a mismatch (nothing committed).
    MigrateStore {
        /// `sqlite` (DATA/palmline.db), `sqlite:PATH` or `postgres://…`.
        #[arg(long)]
        from: String,
        /// The same forms; a PostgreSQL database must exist (its schema is created).
        #[arg(long)]
        to: String,
    },
    /// Delete idempotency records and palm-scan log rows older than their retention
    /// (`idempotency_retention_days`, `scan_retention_days`), expired sessions and past
    /// days' guess counts; never a transaction or an entry. Safe while the server runs,
    /// which also does this every hour.
    Purge,
    /// Write a consistent copy of the database (safe while the server runs). Templates stay
    /// encrypted in it; back the template key up separately.
    Backup {
        #[arg(long)]
        out: PathBuf,
    },
    /// Enrolled palm templates (offline; stop the server first).
    Templates {
        #[command(subcommand)]
        command: TemplatesCommand,
    },
}

#[derive(Subcommand)]
enum TemplatesCommand {
    /// Re-encrypt every template under a new key (32 bytes, raw or hex) in one
    /// transaction. Then install the new key file in place of the old one.
    Rekey {
        #[arg(long)]
        new_key: PathBuf,
    },
}

#[derive(Subcommand)]
enum PkiCommand {
    /// First set-up of a data dir: the CA, the server certificate and an `operator`
    /// admin certificate (what exists already is kept).
    Bootstrap {
        /// Extra DNS names or IP addresses of the server.
        #[arg(long = "name")]
        names: Vec<String>,
    },
    /// Create the CA.
    Init {
        #[arg(long, default_value = "Palmline CA")]
        name: String,
    },
    /// Issue the server's TLS certificate (localhost and 127.0.0.1 are always included).
    IssueServer {
        /// Extra DNS names or IP addresses.
        #[arg(long = "name")]
        names: Vec<String>,
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Issue a kiosk client certificate bound to a kiosk id and a merchant.
    IssueKiosk {
        #[arg(long)]
        kiosk: String,
        #[arg(long)]
        merchant: String,
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Revoke the id's earlier certificate and issue a new one (without it, an id
        /// that was issued before is refused).
        #[arg(long)]
        replace: bool,
    },
    /// Issue an operator (admin) client certificate.
    IssueAdmin {
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Revoke the name's earlier certificate and issue a new one.
        #[arg(long)]
        replace: bool,
    },
    /// Revoke SERIAL (hex), `kiosk:ID` or `admin:NAME`, and rewrite the CRL (a running
    /// server reloads it). Needs the CA key.
    Revoke { target: RevokeTarget },
    /// List issued certificates.
    List,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("palmline-server: {e:#}");
        std::process::exit(1);
    }
}

fn print_cert(json: bool, c: &IssuedCert) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(c)?);
    } else {
        println!(
            "{:?} {} serial {} valid until {} -> {}{}",
            c.kind,
            c.name,
            c.serial,
            c.not_after,
            c.cert_path.display(),
            c.merchant
                .as_ref()
                .map(|m| format!(" (merchant {m})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn print_replaced(json: bool, r: &Replaced) -> Result<()> {
    for c in &r.revoked {
        if !json {
            print!("revoked: ");
        }
        print_cert(json, c)?;
    }
    print_cert(json, &r.issued)
}

fn run_pki(pki: &Pki, json: bool, command: PkiCommand) -> Result<()> {
    match command {
        PkiCommand::Bootstrap { names } => bootstrap(pki, &names)?,
        PkiCommand::Init { name } => {
            pki.init(&name)?;
            println!("created CA in {}", pki.dir().display());
        }
        PkiCommand::IssueServer { names, days } => {
            print_cert(json, &pki.issue_server(&names, days)?)?
        }
        PkiCommand::IssueKiosk {
            kiosk,
            merchant,
            days,
            replace,
        } if replace => print_replaced(json, &pki.replace_kiosk(&kiosk, &merchant, days)?)?,
        PkiCommand::IssueKiosk {
            kiosk,
            merchant,
            days,
            ..
        } => print_cert(json, &pki.issue_kiosk(&kiosk, &merchant, days)?)?,
        PkiCommand::IssueAdmin {
            name,
            days,
            replace,
        } if replace => print_replaced(json, &pki.replace_admin(&name, days)?)?,
        PkiCommand::IssueAdmin { name, days, .. } => {
            print_cert(json, &pki.issue_admin(&name, days)?)?
        }
        PkiCommand::Revoke { target } => {
            for c in pki.revoke(&target)? {
                if !json {
                    print!("revoked: ");
                }
                print_cert(json, &c)?;
            }
        }
        PkiCommand::List => list_certs(pki, json)?,
    }
    Ok(())
}

fn list_certs(pki: &Pki, json: bool) -> Result<()> {
    let index = pki.index()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&index)?);
        return Ok(());
    }
    println!(
        "{:<34} {:<7} {:<20} {:<20} {:<28} status",
        "serial", "kind", "name", "merchant", "valid until"
    );
    for c in index {
        println!(
            "{:<34} {:<7} {:<20} {:<20} {:<28} {}",
            c.serial,
            format!("{:?}", c.kind).to_lowercase(),
            c.name,
            c.merchant.unwrap_or_default(),
            c.not_after,
            c.revoked_at
                .map(|t| format!("revoked {t}"))
                .unwrap_or_else(|| "valid".into())
        );
    }
    Ok(())
}

/// The configuration, with `--database` (when given) over the file and the environment.
fn load_config(
    data_dir: &Path,
    config: Option<&Path>,
    database: Option<&str>,
) -> Result<ServerConfig> {
    let mut cfg = ServerConfig::load(data_dir, config)?;
    if let Some(d) = database {
        cfg.database = Database::parse(d).context("--database")?;
    }
    Ok(cfg)
}

/// Refuses a command that only exists for the SQLite file.
fn sqlite_only(cfg: &ServerConfig, what: &str, instead: &str) -> Result<()> {
    if cfg.database != Database::Sqlite {
        anyhow::bail!("{what} works on the SQLite file only; for PostgreSQL, {instead}");
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let pki = Pki::new(&cli.data_dir);
    let load = || {
        load_config(
            &cli.data_dir,
            cli.config.as_deref(),
            cli.database.as_deref(),
        )
    };
    match cli.command {
        Command::Pki { command } => run_pki(&pki, cli.json, command)?,
        Command::Migrate => {
            let cfg = load()?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(palmline_server::serve::open_store(&cfg))?;
            match cfg.database {
                Database::Sqlite => println!(
                    "database ready: {}",
                    cli.data_dir.join("palmline.db").display()
                ),
                db => println!("database ready: {db}"),
            }
        }
        Command::LedgerCheck => {
            let cfg = load()?;
            let rt = tokio::runtime::Runtime::new()?;
            let report = rt.block_on(async {
                let store = palmline_server::serve::open_store(&cfg).await?;
                store.ledger_check().await.map_err(anyhow::Error::from)
            })?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.ok {
                std::process::exit(2);
            }
        }
        Command::MigrateStore { from, to } => migrate_store(&cli.data_dir, cli.json, &from, &to)?,
        Command::Purge => {
            let cfg = load()?;
            let now = palmline_server::store::clock::unix_now();
            let rt = tokio::runtime::Runtime::new()?;
            let p = rt.block_on(async {
                let store = palmline_server::serve::open_store(&cfg).await?;
                palmline_server::retention::purge(&*store, cfg.retention, now)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            if cli.json {
                println!("{}", serde_json::to_string(&p)?);
            } else {
                println!(
                    "purged {} idempotency records, {} palm scans, {} expired sessions, {} guess-count days",
                    p.idempotency, p.scans, p.sessions, p.guess_days
                );
            }
        }
        Command::Backup { out } => {
            let cfg = load()?;
            sqlite_only(&cfg, "backup", "use pg_dump or the database's own backups")?;
            palmline_server::store::sqlite::backup(&cli.data_dir.join("palmline.db"), &out)?;
            println!("backup written to {}", out.display());
        }
        Command::Templates {
            command: TemplatesCommand::Rekey { new_key },
        } => {
            let cfg = load()?;
            let old = palmline_server::palm::TemplateKey::load(&cfg.template_key)?;
            let new = palmline_server::palm::TemplateKey::load(&new_key)?;
            let n = match &cfg.database {
                Database::Sqlite => palmline_server::palm::rekey(&cli.data_dir, &old, &new)?,
                Database::Postgres(url) => tokio::runtime::Runtime::new()?
                    .block_on(palmline_server::palm::rekey_postgres(url, &old, &new))?,
            };
            println!(
                "re-encrypted the templates of {n} palms from key {} to key {}; now install {} as {}",
                old.id_hex(),
                new.id_hex(),
                new_key.display(),
                cfg.template_key.display()
            );
        }
        Command::Serve { listen, log_format } => {
            let mut cfg = load()?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            palmline_server::logs::init(log_format.unwrap_or(cfg.log_format));
            require_certificates(&cfg)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(serve(cfg))?;
        }
    }
    Ok(())
}

/// `migrate-store`: the move, then both sides' summaries; exit 2 when they differ.
fn migrate_store(data_dir: &Path, json: bool, from: &str, to: &str) -> Result<()> {
    use palmline_server::store::relocate::{move_ledger, Endpoint, MoveError};
    let from = Endpoint::parse(from, data_dir).context("--from")?;
    let to = Endpoint::parse(to, data_dir).context("--to")?;
    let rt = tokio::runtime::Runtime::new()?;
    match rt.block_on(move_ledger(&from, &to)) {
        Ok(report) => {
            print_move(json, &report)?;
            if !json {
                println!("moved and committed: {from} -> {to}");
            }
            Ok(())
        }
        Err(MoveError::Mismatch(report)) => {
            print_move(json, &report)?;
            eprintln!("palmline-server: {}", MoveError::Mismatch(report));
            std::process::exit(2);
        }
        Err(e) => Err(e.into()),
    }
}

fn print_move(json: bool, r: &palmline_server::store::relocate::Report) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let (a, b) = (&r.source, &r.destination);
    let row = |what: &str, x: String, y: String| println!("{what:<24} {x:<40} {y}");
    row("", "source".into(), "destination".into());
    row("store", a.store.clone(), b.store.clone());
    let verdict = |ok: bool| if ok { "ok" } else { "FAILED" }.to_string();
    row("ledger-check", verdict(a.check.ok), verdict(b.check.ok));
    row(
        "accounts",
        a.check.accounts_checked.to_string(),
        b.check.accounts_checked.to_string(),
    );
    row(
        "transactions",
        a.check.transactions_checked.to_string(),
        b.check.transactions_checked.to_string(),
    );
    row(
        "total balance (minor)",
        a.check.total_balance_minor.to_string(),
        b.check.total_balance_minor.to_string(),
    );
    print_move_tables(r);
    Ok(())
}

/// Each table's rows on both sides, the accounts whose balance differs, the dropped sessions.
fn print_move_tables(r: &palmline_server::store::relocate::Report) {
    for (x, y) in r.source.tables.iter().zip(&r.destination.tables) {
        let same = if x == y { "same rows" } else { "DIFFERENT" };
        let (x_rows, y_rows) = (format!("{} rows", x.rows), format!("{} rows", y.rows));
        println!("{:<24} {x_rows:<40} {y_rows}, {same}", x.table);
    }
    let shown = |b: Option<i64>| b.map_or("absent".to_string(), |b| b.to_string());
    for d in &r.balance_differences {
        println!(
            "balance of account {} differs: {} vs {}",
            d.account_id,
            shown(d.source),
            shown(d.destination)
        );
    }
    if r.balance_differences.is_empty() {
        let n = r.source.check.accounts_checked;
        println!("every balance matches ({n} accounts)");
    }
    println!("open sessions dropped: {}", r.sessions_dropped);
}

/// The first set-up: the CA, the server certificate and an `operator` certificate, each
/// only if missing. Then the CA key should leave the serving machine (docs/SECURITY.md).
fn bootstrap(pki: &Pki, names: &[String]) -> Result<()> {
    if !pki.is_initialised() {
        pki.init("Palmline CA")?;
        println!("created a new CA in {}", pki.dir().display());
    }
    if !pki.server_cert_path().exists() {
        let c = pki.issue_server(names, 365)?;
        println!("issued the server certificate {}", c.cert_path.display());
    }
    if pki.index()?.iter().all(|c| c.name != "operator") {
        let a = pki.issue_admin("operator", 365)?;
        println!(
            "issued an operator certificate {} (use it with palmline-admin)",
            a.cert_path.display()
        );
    }
    println!(
        "now move {} off this machine: `serve` never needs it; issuing and revoking do",
        pki.ca_key_path().display()
    );
    Ok(())
}

/// `serve` never creates or reads the CA: say what to run when the certificates are missing.
fn require_certificates(cfg: &ServerConfig) -> Result<()> {
    for p in [&cfg.tls.ca, &cfg.tls.cert, &cfg.tls.crl] {
        if !p.exists() {
            anyhow::bail!(
                "{} is missing: issue the certificates first (`palmline-server pki bootstrap`, an offline step), then serve",
                p.display()
            );
        }
    }
    Ok(())
}

async fn serve(cfg: ServerConfig) -> Result<()> {
    let running = palmline_server::serve::start(cfg)
        .await
        .context("starting the server")?;
    println!("listening on https://{}", running.addr);
    std::io::stdout().flush()?;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let mut usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut usec) {
        let period = Duration::from_micros(usec);
        let store = running.state.store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period / 2);
            loop {
                tick.tick().await;
                // Only tell systemd we are alive when the store answers.
                if store.total_balance().await.is_ok() {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                }
            }
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    eprintln!("shutting down");
    running.shutdown(Duration::from_secs(10)).await
}
