//! Helpers for the end-to-end tests: find the built binaries, start the real server process
//! with a fresh PKI, and wait for it to say it is listening (no sleeps).

use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Directory of the workspace's built binaries (`target/debug` next to the test binary).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// Path of a workspace binary; fails with a hint when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: run the tests with `cargo test --workspace` (scripts/test does), which builds it",
        p.display()
    );
    p
}

/// Runs a CLI command to completion and returns its stdout; fails on a non-zero exit.
pub fn run(cmd: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd).args(args).output()?;
    if !out.status.success() {
        bail!(
            "{} {:?} failed: {}",
            cmd.display(),
            args,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// A running `palmline-server serve` process. Killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    lines: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Creates a PKI in `data_dir` (CA, server, kiosk `kiosk-1` of "Demo Shop", admin
    /// `operator`) and starts the server on a free port.
    pub fn start(data_dir: &Path) -> Result<ServerProcess> {
        let server = bin("palmline-server");
        let d = data_dir.to_str().context("utf-8 path")?;
        run(&server, &["--data-dir", d, "pki", "init"])?;
        run(&server, &["--data-dir", d, "pki", "issue-server"])?;
        run(
            &server,
            &[
                "--data-dir",
                d,
                "pki",
                "issue-kiosk",
                "--kiosk",
                "kiosk-1",
                "--merchant",
                "Demo Shop",
            ],
        )?;
        run(
            &server,
            &["--data-dir", d, "pki", "issue-admin", "--name", "operator"],
        )?;
        let mut child = Command::new(&server)
            .args(["--data-dir", d, "serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut proc = ServerProcess {
            child,
            url: String::new(),
            data_dir: data_dir.to_path_buf(),
            lines: rx,
        };
        let line = proc.wait_for_line("listening on ", Duration::from_secs(60))?;
        let addr = line
            .split("https://")
            .nth(1)
            .ok_or_else(|| anyhow!("odd line {line:?}"))?;
        let port = addr.rsplit(':').next().unwrap_or_default();
        proc.url = format!("https://localhost:{port}");
        Ok(proc)
    }

    /// Waits for a stdout line containing `needle`.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => continue,
                Err(_) => bail!("server never printed {needle:?}"),
            }
        }
    }

    pub fn pki(&self) -> PathBuf {
        self.data_dir.join("pki")
    }

    /// An mTLS client for the kiosk certificate `kiosk-1`.
    pub fn kiosk_client(&self) -> Result<reqwest::Client> {
        let p = self.pki();
        palmline_server::client::mtls_client(
            &p.join("ca.pem"),
            &p.join("kiosks/kiosk-1.pem"),
            &p.join("kiosks/kiosk-1.key"),
        )
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
pub mod bank;
pub mod load;
