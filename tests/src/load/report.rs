//! What a load run prints: throughput, latency, refusals, where the CPU went (and so how
//! many cores a payment rate needs), and the correctness verdict.

use super::check::Findings;
use super::gauge;
use super::kiosk::Tally;
use super::{Config, StoreKind};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// CPU seconds of the server, of PostgreSQL's processes and of the load process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub server: f64,
    pub postgres: f64,
    pub client: f64,
}

impl Cpu {
    pub fn now(server_pid: u32) -> anyhow::Result<Cpu> {
        Ok(Cpu {
            server: gauge::cpu_of(server_pid)?,
            postgres: gauge::postgres_cpu(),
            client: gauge::cpu_of(std::process::id())?,
        })
    }

    pub fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            server: self.server - before.server,
            postgres: self.postgres - before.postgres,
            client: self.client - before.client,
        }
    }
}

/// What the timed window measured.
pub struct Measured {
    pub tally: Tally,
    pub window: Duration,
    pub cpu: Cpu,
    /// The server's metrics before and after the window.
    pub metrics: [HashMap<String, f64>; 2],
}

/// Latency quantiles: p50, p95, p99, max.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quantiles(pub [Duration; 4]);

impl Quantiles {
    fn of(mut l: Vec<Duration>) -> Quantiles {
        if l.is_empty() {
            return Quantiles::default();
        }
        l.sort();
        let at = |q: usize| l[(l.len() * q / 100).min(l.len() - 1)];
        Quantiles([at(50), at(95), at(99), l[l.len() - 1]])
    }
}

impl std::fmt::Display for Quantiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let [a, b, c, d] = self.0.map(ms);
        write!(f, "p50 {a:.1} / p95 {b:.1} / p99 {c:.1} / max {d:.1} ms")
    }
}

/// The server's own view of the window, from its metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerView {
    pub identifications: f64,
    pub identify_mean_ms: f64,
    pub shortlist_mean: f64,
    /// Identifications that ran the second, turned query.
    pub turned: f64,
    pub route_mean_ms: f64,
    pub rate_limited: f64,
    /// SQLite's writer: commits, mean commands a commit, mean commit time.
    pub commits: f64,
    pub batch_mean: f64,
    pub commit_mean_ms: f64,
}

impl ServerView {
    fn of([before, after]: &[HashMap<String, f64>; 2]) -> ServerView {
        let d = |s: &str| gauge::delta(before, after, s);
        let per = |sum: f64, n: f64| if n > 0.0 { sum / n } else { 0.0 };
        let route = |suffix: &str| {
            let series = format!(
                "palmline_http_request_duration_seconds_{suffix}{{method=\"POST\",route=\"/v1/payments/palm\"}}"
            );
            d(&series)
        };
        let identifications = d("palmline_identify_duration_seconds_count");
        let commits = d("palmline_writer_commit_duration_seconds_count");
        let rate_limited: f64 = after
            .keys()
            .filter(|k| k.starts_with("palmline_rate_limited_total"))
            .map(|k| d(k))
            .fold(0.0, |a, b| a + b);
        ServerView {
            identifications,
            identify_mean_ms: 1e3
                * per(d("palmline_identify_duration_seconds_sum"), identifications),
            shortlist_mean: per(d("palmline_identify_shortlist_size_sum"), identifications),
            turned: d("palmline_identify_turned_shortlist_size_count"),
            route_mean_ms: 1e3 * per(route("sum"), route("count")),
            rate_limited,
            commits,
            batch_mean: per(
                d("palmline_writer_batch_size_sum"),
                d("palmline_writer_batch_size_count"),
            ),
            commit_mean_ms: 1e3 * per(d("palmline_writer_commit_duration_seconds_sum"), commits),
        }
    }
}

/// What a run did and found.
pub struct Report {
    pub store: StoreKind,
    pub kiosks: usize,
    pub palms: usize,
    pub server_cpus: String,
    /// Offered payments a second (open loop), or `None` (closed loop).
    pub rate: Option<f64>,
    pub startup: Duration,
    pub window: Duration,
    pub accepted: usize,
    pub answered: usize,
    pub unanswered: u64,
    pub retries: u64,
    pub step_ups: u64,
    pub refused: BTreeMap<String, u64>,
    pub latency: Quantiles,
    pub accepted_latency: Quantiles,
    pub cpu: Cpu,
    pub server: ServerView,
    /// Payments charged to another shopper than the palm's (receipts and ledger).
    pub wrong_shopper: Vec<String>,
    /// Every other disagreement of the ledger with what was accepted.
    pub ledger_findings: Vec<String>,
    pub ledger_check: (bool, String),
}

impl Report {
    pub fn new(
        cfg: &Config,
        m: Measured,
        startup: Duration,
        findings: Findings,
        ledger_check: (bool, String),
    ) -> Report {
        let t = m.tally;
        let mut wrong_shopper = t.wrong_shopper;
        wrong_shopper.extend(findings.wrong_shopper);
        Report {
            store: cfg.store,
            kiosks: cfg.kiosks,
            palms: cfg.palms,
            server_cpus: cfg.server_cpus.clone().unwrap_or_else(|| "all".into()),
            rate: cfg.rate,
            startup,
            window: m.window,
            accepted: t.paid.len(),
            answered: t.latency.len(),
            unanswered: t.unanswered,
            retries: t.retries,
            step_ups: t.step_ups,
            refused: t.refused,
            latency: Quantiles::of(t.latency),
            accepted_latency: Quantiles::of(t.accepted_latency),
            cpu: m.cpu,
            server: ServerView::of(&m.metrics),
            wrong_shopper,
            ledger_findings: findings.other,
            ledger_check,
        }
    }

    pub fn payments_per_second(&self) -> f64 {
        self.accepted as f64 / self.window.as_secs_f64()
    }

    /// Server (and PostgreSQL) CPU milliseconds per accepted payment.
    pub fn cpu_ms_per_payment(&self) -> (f64, f64) {
        let n = self.accepted.max(1) as f64;
        (1e3 * self.cpu.server / n, 1e3 * self.cpu.postgres / n)
    }

    /// Everything that makes the run fail: wrong shoppers, ledger disagreements, a failed
    /// `ledger-check`, requests never answered.
    pub fn violations(&self) -> Vec<String> {
        let mut v = self.wrong_shopper.clone();
        v.extend(self.ledger_findings.iter().cloned());
        if !self.ledger_check.0 {
            v.push(format!(
                "ledger-check failed: {}",
                self.ledger_check.1.trim()
            ));
        }
        if self.unanswered > 0 {
            v.push(format!("{} payments never answered", self.unanswered));
        }
        v
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.window.as_secs_f64();
        writeln!(
            f,
            "store {:?}, {} kiosks, {} enrolled palms, server on CPUs {}, {:.1} s window (server start-up {:.1} s)",
            self.store, self.kiosks, self.palms, self.server_cpus, secs, self.startup.as_secs_f64()
        )?;
        match self.rate {
            Some(r) => writeln!(
                f,
                "offered: {r:.1} payments/s, open loop (latency from each scheduled start)"
            )?,
            None => writeln!(
                f,
                "offered: closed loop (each kiosk pays again once answered)"
            )?,
        }
        writeln!(
            f,
            "palm payments accepted: {} ({:.1}/s)",
            self.accepted,
            self.payments_per_second()
        )?;
        writeln!(
            f,
            "requests answered:      {} ({} resent, {} never answered)",
            self.answered, self.retries, self.unanswered
        )?;
        writeln!(f, "step-ups (PIN asked):   {}", self.step_ups)?;
        writeln!(
            f,
            "refused:                {}",
            self.refused.values().sum::<u64>()
        )?;
        for (code, n) in &self.refused {
            writeln!(f, "  {code}: {n}")?;
        }
        writeln!(f, "latency, every request:     {}", self.latency)?;
        writeln!(
            f,
            "latency, accepted payments: {} (step-up included)",
            self.accepted_latency
        )?;
        self.fmt_cpu(f, secs)?;
        writeln!(f, "wrong-shopper payments: {}", self.wrong_shopper.len())?;
        writeln!(
            f,
            "ledger against accepted payments: {} disagreements",
            self.ledger_findings.len()
        )?;
        writeln!(
            f,
            "ledger-check: {}",
            if self.ledger_check.0 { "ok" } else { "FAILED" }
        )?;
        let v = self.violations();
        writeln!(f, "violations: {}", v.len())?;
        for line in v.iter().take(20) {
            writeln!(f, "  - {line}")?;
        }
        Ok(())
    }
}

impl Report {
    fn fmt_cpu(&self, f: &mut std::fmt::Formatter<'_>, secs: f64) -> std::fmt::Result {
        let s = &self.server;
        let (server_ms, pg_ms) = self.cpu_ms_per_payment();
        writeln!(
            f,
            "server CPU: {:.1} s = {:.2} cores busy, {server_ms:.2} ms a payment",
            self.cpu.server,
            self.cpu.server / secs
        )?;
        if self.store == StoreKind::Postgres {
            writeln!(
                f,
                "PostgreSQL CPU: {:.1} s = {:.2} cores busy, {pg_ms:.2} ms a payment",
                self.cpu.postgres,
                self.cpu.postgres / secs
            )?;
        }
        writeln!(
            f,
            "load client CPU: {:.1} s = {:.2} cores busy (same machine)",
            self.cpu.client,
            self.cpu.client / secs
        )?;
        let cores = 150.0 * (server_ms + pg_ms) / 1e3;
        writeln!(
            f,
            "CPU for 150 payments/s at this cost: {cores:.2} cores (server + database)"
        )?;
        writeln!(
            f,
            "server metrics: {:.0} identifications, mean {:.2} ms (shortlist {:.1}, {:.0} turned queries); \
             /v1/payments/palm mean {:.1} ms; {:.0} rate-limited",
            s.identifications, s.identify_mean_ms, s.shortlist_mean, s.turned, s.route_mean_ms, s.rate_limited
        )?;
        if s.commits > 0.0 {
            writeln!(
                f,
                "SQLite writer: {:.0} commits ({:.0}/s), {:.1} commands a commit, commit mean {:.2} ms",
                s.commits,
                s.commits / secs,
                s.batch_mean,
                s.commit_mean_ms
            )?;
        }
        Ok(())
    }
}
