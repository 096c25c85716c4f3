//! The servers under test: real `palmline-server serve` processes on fixed loopback ports,
//! each with its own data dir (same PKI and template key), SIGKILLed and restarted on the
//! same dir and port. Readiness is `GET /v1/health` answering 200, polled with a deadline.

use anyhow::{bail, Context, Result};
use reqwest::Client;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a (re)started server may take to answer its health check.
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// One `serve` process (or none, while it is down).
pub struct Replica {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

pub struct Cluster {
    server_bin: PathBuf,
    /// A command the server runs under (e.g. `taskset -c 0`); empty: none.
    pub wrapper: Vec<String>,
    /// Extra environment of every `serve` process (e.g. `PALMLINE_CONFIG`).
    pub env: Vec<(String, String)>,
    /// `postgres://…` for every replica, or `None` for SQLite in each data dir.
    database: Option<String>,
    pub replicas: Vec<Replica>,
    /// An operator client (certificate `bank`), for health checks and refunds.
    pub admin: Client,
    root: PathBuf,
}

/// The kiosk ids and their merchants: `kiosk-0` … of `Shop 0` … (four kiosks a shop).
pub fn kiosk_names(kiosks: usize) -> Vec<(String, String)> {
    (0..kiosks)
        .map(|i| (format!("kiosk-{i}"), format!("Shop {}", i / 4)))
        .collect()
}

fn run(bin: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(bin).args(args).output()?;
    if !out.status.success() {
        bail!(
            "{} {args:?}: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A CA, the server certificate, an operator `bank` and every kiosk, made by the CLI; the
/// CA key is then moved out of the data dir, as an operator would.
fn make_pki(bin: &Path, dir: &Path, kiosks: &[(String, String)]) -> Result<()> {
    let d = dir.to_str().context("utf-8 path")?;
    run(bin, &["--data-dir", d, "pki", "init"])?;
    run(bin, &["--data-dir", d, "pki", "issue-server"])?;
    run(
        bin,
        &["--data-dir", d, "pki", "issue-admin", "--name", "bank"],
    )?;
    for (id, merchant) in kiosks {
        let args = ["--data-dir", d, "pki", "issue-kiosk", "--kiosk", id];
        run(bin, &[&args[..], &["--merchant", merchant]].concat())?;
    }
    let offline = dir
        .parent()
        .context("a data dir in the run's dir")?
        .join("ca.key");
    std::fs::rename(dir.join("pki/ca.key"), offline)?;
    Ok(())
}

/// A free loopback port (the listener is closed again; the server binds it next).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// An mTLS client with short timeouts: a request to a killed server fails fast and is retried.
pub fn client(pki: &Path, cert: &str) -> Result<Client> {
    let (c, k) = (
        pki.join(format!("{cert}.pem")),
        pki.join(format!("{cert}.key")),
    );
    let tls = palmline_server::client::rustls_client_config(&pki.join("ca.pem"), &c, &k)?;
    Ok(Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(4)
        .build()?)
}

impl Cluster {
    /// Makes the PKI in `root/r0`, starts replica 0 (which creates the template key), then
    /// gives each further replica a copy of that data dir and starts it.
    pub async fn start(
        server_bin: &Path,
        root: &Path,
        kiosks: &[(String, String)],
        database: Option<String>,
        replicas: usize,
    ) -> Result<Cluster> {
        let mut cluster = Cluster::prepare(server_bin, root, kiosks, database)?;
        cluster.launch(replicas).await?;
        Ok(cluster)
    }

    /// Makes the PKI in `root/r0` and starts nothing: the caller may put more into the data
    /// dir (a store, a template key) or set [`Cluster::wrapper`] first, then [`Cluster::launch`].
    pub fn prepare(
        server_bin: &Path,
        root: &Path,
        kiosks: &[(String, String)],
        database: Option<String>,
    ) -> Result<Cluster> {
        make_pki(server_bin, &root.join("r0"), kiosks)?;
        let admin = client(&root.join("r0/pki"), "admins/bank")?;
        Ok(Cluster {
            server_bin: server_bin.to_path_buf(),
            wrapper: Vec::new(),
            env: Vec::new(),
            database,
            replicas: Vec::new(),
            admin,
            root: root.to_path_buf(),
        })
    }

    /// The data dir replica 0 starts on.
    pub fn first_dir(&self) -> PathBuf {
        self.root.join("r0")
    }

    /// Starts `replicas` replicas: replica 0 on `root/r0`, each further one on a copy of it.
    pub async fn launch(&mut self, replicas: usize) -> Result<()> {
        let first = self.first_dir();
        for i in 0..replicas {
            let dir = self.root.join(format!("r{i}"));
            if i > 0 {
                copy_dir(&first, &dir)?;
            }
            self.replicas.push(Replica {
                dir,
                port: free_port()?,
                child: None,
            });
            self.restart(i).await?;
        }
        Ok(())
    }

    /// The process id of replica `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.replicas[i].child.as_ref().map(Child::id)
    }

    pub fn base(&self, i: usize) -> String {
        format!("https://localhost:{}", self.replicas[i].port)
    }

    pub fn bases(&self) -> Vec<String> {
        (0..self.replicas.len()).map(|i| self.base(i)).collect()
    }

    pub fn pki(&self) -> PathBuf {
        self.replicas[0].dir.join("pki")
    }

    fn spawn(&self, i: usize) -> Result<Child> {
        let r = &self.replicas[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(r.dir.join("server.log"))?;
        let mut cmd = match self.wrapper.split_first() {
            Some((wrapper, args)) => {
                let mut c = Command::new(wrapper);
                c.args(args).arg(&self.server_bin);
                c
            }
            None => Command::new(&self.server_bin),
        };
        cmd.arg("--data-dir").arg(&r.dir);
        if let Some(db) = &self.database {
            cmd.args(["--database", db]);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{}", r.port)])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        Ok(cmd.spawn()?)
    }

    /// Starts replica `i` on its dir and port and waits until it answers its health check.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        let child = self.spawn(i)?;
        self.replicas[i].child = Some(child);
        self.wait_ready(i).await
    }

    async fn wait_ready(&mut self, i: usize) -> Result<()> {
        let url = format!("{}/v1/health", self.base(i));
        let started = Instant::now();
        loop {
            if let Ok(r) = self.admin.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(status) = self.replicas[i]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "replica {i} exited ({status}); see {}",
                    self.replicas[i].dir.join("server.log").display()
                );
            }
            if started.elapsed() > READY_DEADLINE {
                bail!("replica {i} not healthy within {READY_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL: no shutdown, no flush beyond what was committed.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.replicas[i].child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// SIGTERM to every replica (a graceful stop), SIGKILL after 15 s.
    pub async fn stop(&mut self) -> Result<()> {
        for r in &mut self.replicas {
            let Some(mut c) = r.child.take() else {
                continue;
            };
            Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()?;
            let started = Instant::now();
            while c.try_wait()?.is_none() {
                if started.elapsed() > Duration::from_secs(15) {
                    c.kill()?;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// `palmline-server ledger-check` on replica 0's store (the server stopped).
    pub fn ledger_check(&self) -> Result<(bool, String)> {
        let mut cmd = Command::new(&self.server_bin);
        cmd.arg("--data-dir").arg(&self.replicas[0].dir);
        if let Some(db) = &self.database {
            cmd.args(["--database", db]);
        }
        let out = cmd.arg("ledger-check").output()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        Ok((out.status.success(), text))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.replicas.len() {
            let _ = self.kill(i);
        }
    }
}
