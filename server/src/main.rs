//! `palmline-server`: serve, PKI, migrations. A thin CLI over the library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use palmline_server::config::ServerConfig;
use palmline_server::pki::{IssuedCert, Pki};
use std::io::Write;
use std::path::PathBuf;
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
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API over mutual TLS. On a fresh data dir, creates the CA, the server
    /// certificate and an `operator` admin certificate first.
    Serve {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, env = "PALMLINE_LISTEN")]
        listen: Option<String>,
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
    },
    /// Issue an operator (admin) client certificate.
    IssueAdmin {
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Revoke by serial (hex) or name, and rewrite the CRL (a running server reloads it).
    Revoke { serial_or_name: String },
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

fn run(cli: Cli) -> Result<()> {
    let pki = Pki::new(&cli.data_dir);
    match cli.command {
        Command::Pki { command } => match command {
            PkiCommand::Init { name } => {
                pki.init(&name)?;
                println!("created CA in {}", pki.dir().display());
            }
            PkiCommand::IssueServer { names, days } => {
                print_cert(cli.json, &pki.issue_server(&names, days)?)?
            }
            PkiCommand::IssueKiosk {
                kiosk,
                merchant,
                days,
            } => print_cert(cli.json, &pki.issue_kiosk(&kiosk, &merchant, days)?)?,
            PkiCommand::IssueAdmin { name, days } => {
                print_cert(cli.json, &pki.issue_admin(&name, days)?)?
            }
            PkiCommand::Revoke { serial_or_name } => {
                for c in pki.revoke(&serial_or_name)? {
                    if !cli.json {
                        print!("revoked: ");
                    }
                    print_cert(cli.json, &c)?;
                }
            }
            PkiCommand::List => {
                let index = pki.index()?;
                if cli.json {
                    println!("{}", serde_json::to_string_pretty(&index)?);
                } else {
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
                }
            }
        },
        Command::Migrate => {
            let cfg = ServerConfig::load(&cli.data_dir, cli.config.as_deref())?;
            palmline_server::store::sqlite::open_in(&cli.data_dir, cfg.api.currency)?;
            println!(
                "database ready: {}",
                cli.data_dir.join("palmline.db").display()
            );
        }
        Command::LedgerCheck => {
            let cfg = ServerConfig::load(&cli.data_dir, cli.config.as_deref())?;
            let rt = tokio::runtime::Runtime::new()?;
            let report = rt.block_on(async {
                use palmline_server::store::Store;
                let store =
                    palmline_server::store::sqlite::open_in(&cli.data_dir, cfg.api.currency)?;
                store.ledger_check().await.map_err(anyhow::Error::from)
            })?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.ok {
                std::process::exit(2);
            }
        }
        Command::Backup { out } => {
            palmline_server::store::sqlite::backup(&cli.data_dir.join("palmline.db"), &out)?;
            println!("backup written to {}", out.display());
        }
        Command::Templates {
            command: TemplatesCommand::Rekey { new_key },
        } => {
            let cfg = ServerConfig::load(&cli.data_dir, cli.config.as_deref())?;
            let old = palmline_server::palm::TemplateKey::load(&cfg.template_key)?;
            let new = palmline_server::palm::TemplateKey::load(&new_key)?;
            let n = palmline_server::palm::rekey(&cli.data_dir, &old, &new)?;
            println!(
                "re-encrypted the templates of {n} palms from key {} to key {}; now install {} as {}",
                old.id_hex(),
                new.id_hex(),
                new_key.display(),
                cfg.template_key.display()
            );
        }
        Command::Serve { listen } => {
            let mut cfg = ServerConfig::load(&cli.data_dir, cli.config.as_deref())?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            first_run(&pki, &cfg)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(serve(cfg))?;
        }
    }
    Ok(())
}

/// On a fresh data dir: create the CA, the server certificate and an operator certificate,
/// and say so.
fn first_run(pki: &Pki, cfg: &ServerConfig) -> Result<()> {
    let default_paths = palmline_server::tls::TlsPaths::from_pki(pki);
    let uses_own_pki = cfg.tls.ca == default_paths.ca;
    if uses_own_pki && !pki.is_initialised() {
        pki.init("Palmline CA")?;
        eprintln!("created a new CA in {}", pki.dir().display());
    }
    if uses_own_pki && !cfg.tls.cert.exists() {
        let c = pki.issue_server(&[], 365)?;
        eprintln!("issued the server certificate {}", c.cert_path.display());
        if pki.index()?.iter().all(|c| c.name != "operator") {
            let a = pki.issue_admin("operator", 365)?;
            eprintln!(
                "issued an operator certificate {} (use it with palmline-admin)",
                a.cert_path.display()
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
