//! Starting the server: store, API, TLS listener, and the CRL reloader (SIGHUP or a change
//! of the CRL file), so that a revoked kiosk is refused without a restart.

use crate::api::{router, AppState};
use crate::config::{Database, ServerConfig};
use crate::palm::{PalmService, TemplateKey};
use crate::store::postgres::{PgStore, SERVE_POOL_SIZE};
use crate::store::sqlite::open_in;
use crate::store::{PalmVersion, Store};
use crate::tls::server_config;
use anyhow::{Context, Result};
use axum_server::tls_rustls::RustlsConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The palm version a replica's index is complete up to.
pub type Followed = tokio::sync::watch::Receiver<PalmVersion>;

pub struct Running {
    pub addr: SocketAddr,
    pub handle: axum_server::Handle<SocketAddr>,
    pub state: Arc<AppState>,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Receives a message each time the CRL was reloaded (the number of reloads so far).
    pub crl_reloads: tokio::sync::watch::Receiver<u64>,
    /// What start-up found in the store (palms indexed and skipped).
    pub loaded: crate::palm::LoadReport,
    /// With PostgreSQL: the palm version this replica's index is complete up to, following
    /// changes made through every replica ([`crate::follow`]). `None` with SQLite.
    pub followed: Option<Followed>,
    /// The follower and its listener, stopped with the server.
    following: Vec<tokio::task::AbortHandle>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish (up to `grace`), and waits.
    pub async fn shutdown(self, grace: Duration) -> Result<()> {
        self.handle.graceful_shutdown(Some(grace));
        self.server.await??;
        self.following.iter().for_each(|t| t.abort());
        Ok(())
    }
}

/// Starts the server with its own store.
pub async fn start(cfg: ServerConfig) -> Result<Running> {
    let store = open_store(&cfg).await?;
    start_with_store(cfg, store).await
}

/// The configured store, opened and migrated: SQLite in the data dir, or PostgreSQL.
pub async fn open_store(cfg: &ServerConfig) -> Result<Arc<dyn Store>> {
    let cur = cfg.api.currency;
    tracing::info!(database = %cfg.database, "opening the ledger store");
    Ok(match &cfg.database {
        Database::Sqlite => Arc::new(open_in(&cfg.data_dir, cur)?),
        Database::Postgres(url) => Arc::new(
            PgStore::open(url, cur, SERVE_POOL_SIZE)
                .await
                .with_context(|| format!("opening the PostgreSQL ledger {}", cfg.database))?,
        ),
    })
}

pub async fn start_with_store(cfg: ServerConfig, store: Arc<dyn Store>) -> Result<Running> {
    warn_if_ca_key_present(&cfg.tls);
    let tls = RustlsConfig::from_config(server_config(&cfg.tls)?);
    let (key, created) = TemplateKey::load_or_create(&cfg.template_key)?;
    if created {
        tracing::warn!(
            path = %cfg.template_key.display(),
            "created the template encryption key (back it up: enrolled palms cannot be read without it)"
        );
    }
    let palm = PalmService::with_threads(
        key,
        cfg.palm,
        crate::identify::default_index(),
        cfg.api.matcher_threads,
    );
    let started = std::time::Instant::now();
    let loaded = palm
        .load(&*store)
        .await
        .context("building the identification index")?;
    tracing::info!(
        enrolled = loaded.enrolled,
        skipped = loaded.skipped,
        ms = started.elapsed().as_millis() as u64,
        "identification index built"
    );
    if loaded.skipped > 0 {
        tracing::warn!(
            skipped = loaded.skipped,
            "palms left out of the index because their templates do not open (see the warnings above)"
        );
    }
    let (followed, following) = match follow_palms(&cfg.database, &palm, &store, loaded.through) {
        Some((rx, tasks)) => (Some(rx), tasks),
        None => (None, Vec::new()),
    };
    let mut api = cfg.api.clone();
    api.retention = cfg.retention;
    let state = AppState::new(store, api, palm);
    state.set_revoked(crate::tls::revoked_serials(&cfg.tls.crl)?);
    let app = router(state.clone()).layer(tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        cfg.conn.request_timeout,
    ));
    let addr: SocketAddr = cfg
        .listen
        .parse()
        .with_context(|| format!("listen address {:?}", cfg.listen))?;
    let handle = axum_server::Handle::new();
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls.clone())
        .handshake_timeout(cfg.conn.handshake_timeout)
        .acceptor(crate::conn::CountingAcceptor::new(cfg.conn.max_connections));
    let mut bound = axum_server::bind(addr)
        .acceptor(acceptor)
        .handle(handle.clone());
    bound
        .http_builder()
        .http1()
        .header_read_timeout(cfg.conn.header_timeout);
    let server = tokio::spawn(bound.serve(app.into_make_service()));
    let addr = handle
        .listening()
        .await
        .context("the server did not start listening")?;
    tokio::spawn(crate::retention::periodic(
        state.store.clone(),
        cfg.retention,
    ));
    let (tx, rx) = tokio::sync::watch::channel(0u64);
    tokio::spawn(crl_reloader(cfg.tls.clone(), tls, state.clone(), tx));
    Ok(Running {
        addr,
        handle,
        state,
        server,
        crl_reloads: rx,
        loaded,
        followed,
        following,
    })
}

/// With PostgreSQL, other replicas change palms too: follow them (LISTEN plus catch-up).
fn follow_palms(
    database: &Database,
    palm: &Arc<PalmService>,
    store: &Arc<dyn Store>,
    from: PalmVersion,
) -> Option<(Followed, Vec<tokio::task::AbortHandle>)> {
    let Database::Postgres(url) = database else {
        return None;
    };
    let (wakes, listener) = crate::store::postgres::notify::listen(url.clone());
    let (followed, follower) = crate::follow::spawn(palm.clone(), store.clone(), from, wakes);
    let tasks = vec![listener.abort_handle(), follower.abort_handle()];
    Some((followed, tasks))
}

/// The server never reads the CA key; one lying next to the CA certificate could let
/// whoever takes over the serving machine issue certificates. Say so (looking only at the
/// file's metadata, never opening it).
fn warn_if_ca_key_present(tls: &crate::tls::TlsPaths) {
    let key = tls.ca.with_file_name("ca.key");
    if std::fs::metadata(&key).is_ok() {
        tracing::warn!(
            path = %key.display(),
            "a CA key lies next to the CA certificate; serve never needs it: move it offline (docs/SECURITY.md)"
        );
    }
}

fn mtime(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

async fn crl_reloader(
    paths: crate::tls::TlsPaths,
    tls: RustlsConfig,
    state: Arc<AppState>,
    reloads: tokio::sync::watch::Sender<u64>,
) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut last = mtime(&paths.crl);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let now = mtime(&paths.crl);
        if !forced && now == last {
            continue;
        }
        last = now;
        match server_config(&paths).and_then(|c| Ok((c, crate::tls::revoked_serials(&paths.crl)?)))
        {
            Ok((c, revoked)) => {
                tls.reload_from_config(c);
                state.set_revoked(revoked);
                let n = *reloads.borrow() + 1;
                let _ = reloads.send(n);
                tracing::info!(reloads = n, "CRL and certificates reloaded");
                println!("crl reloaded");
            }
            Err(e) => tracing::error!(error = %e, "CRL reload failed; keeping the previous one"),
        }
    }
}
