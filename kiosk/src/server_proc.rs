//! Starting a local `palmline-server` for the demo and the end-to-end tests: finds the
//! binary next to our own, prepares a PKI with a kiosk certificate, runs `serve` on a free
//! port and waits for its "listening on" line. The child is killed when dropped.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Finds `palmline-server`: `$PALMLINE_SERVER_BIN`, next to the current executable, or one
/// directory up (test binaries live in `target/<profile>/deps`).
pub fn find_server_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("PALMLINE_SERVER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating our own executable")?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join("palmline-server");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    bail!(
        "palmline-server not found next to {} (build it: cargo build --bins)",
        exe.display()
    )
}

/// Paths of a kiosk's TLS material inside a server data dir.
#[derive(Debug, Clone)]
pub struct KioskCert {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn run(bin: &Path, data_dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(bin)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .with_context(|| format!("running {} {}", bin.display(), args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "palmline-server {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Creates the CA and server certificate if missing, and a kiosk certificate for
/// `kiosk`/`merchant` if missing.
pub fn prepare_pki(bin: &Path, data_dir: &Path, kiosk: &str, merchant: &str) -> Result<KioskCert> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let pki = data_dir.join("pki");
    if !pki.join("ca.pem").exists() {
        run(bin, data_dir, &["pki", "init"])?;
    }
    if !pki.join("server.pem").exists() {
        run(bin, data_dir, &["pki", "issue-server"])?;
    }
    let cert = pki.join("kiosks").join(format!("{kiosk}.pem"));
    let key = pki.join("kiosks").join(format!("{kiosk}.key"));
    if !cert.exists() || !key.exists() {
        run(
            bin,
            data_dir,
            &[
                "pki",
                "issue-kiosk",
                "--kiosk",
                kiosk,
                "--merchant",
                merchant,
            ],
        )?;
    }
    Ok(KioskCert {
        ca: pki.join("ca.pem"),
        cert,
        key,
    })
}

/// Creates the cashier `(name, pin)` of `merchant` on the server at `url` with
/// `palmline-admin` (next to `server_bin`, admin certificate `operator` issued in
/// `data_dir` if missing), the PIN written to its stdin. An existing cashier of that name
/// is kept.
pub fn add_cashier(
    server_bin: &Path,
    data_dir: &Path,
    url: &str,
    merchant: &str,
    (name, pin): (&str, &str),
) -> Result<()> {
    use std::io::Write as _;
    let admins = data_dir.join("pki").join("admins");
    if !admins.join("operator.pem").exists() {
        run(
            server_bin,
            data_dir,
            &["pki", "issue-admin", "--name", "operator"],
        )?;
    }
    let admin = server_bin.with_file_name("palmline-admin");
    let mut child = Command::new(&admin)
        .arg("--server")
        .arg(url)
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "cashier",
            "add",
            "--merchant",
            merchant,
            "--name",
            name,
            "--pin-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", admin.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "{pin}")?;
    }
    let out = child.wait_with_output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !err.contains("cashier_exists") {
        bail!("palmline-admin cashier add failed: {}", err.trim());
    }
    Ok(())
}

/// A running server child process.
pub struct ServerProcess {
    child: Child,
    pub url: String,
}

impl ServerProcess {
    /// Runs `serve --listen 127.0.0.1:0` and waits (up to 60 s) for its address.
    pub fn start(bin: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Result<ServerProcess> {
        let mut cmd = Command::new(bin);
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        // If the kiosk dies without cleaning up (killed, display gone), the server goes too.
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel::<Result<String, String>>();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(Ok(url.trim().to_string()));
                }
            }
            let _ = tx.send(Err("the server exited".into()));
        });
        // Keep the server's log (stderr) available when something goes wrong.
        std::thread::spawn(move || {
            let mut tail = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                tracing::debug!(target: "palmline-server", "{line}");
                tail.push(line);
                if tail.len() > 20 {
                    tail.remove(0);
                }
            }
            let _ = tx2.send(Err(format!("the server exited: {}", tail.join(" | "))));
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(url)) => Ok(ServerProcess { child, url }),
            Ok(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{e}")
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the server did not say where it listens within 60 s")
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
