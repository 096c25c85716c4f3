//! `palmline-kiosk`: the kiosk firmware's entry point (`run`) and the demo (`demo`).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use palmline_kiosk::config::Config;
use palmline_kiosk::ui::UiOptions;
use palmline_kiosk::{demo, extract, runtime};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "palmline-kiosk", version, about = "The Palmline kiosk")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the kiosk from its configuration file (the default).
    Run {
        #[arg(
            long,
            env = "PALMLINE_KIOSK_CONFIG",
            default_value = "/etc/palmline/kiosk.toml"
        )]
        config: PathBuf,
        /// Window size in pixels, e.g. 1024x600 (a device uses the whole screen).
        #[arg(long)]
        size: Option<String>,
    },
    /// Start a local server with demo shoppers and open the kiosk (or, without a display,
    /// run a scripted enrollment → top-up → palm payment → wallet view).
    Demo {
        #[arg(long, default_value = "demo-data")]
        data_dir: PathBuf,
        /// Run the scripted demo even when a display is present.
        #[arg(long)]
        headless: bool,
        #[arg(long)]
        size: Option<String>,
    },
    /// Measure preview frame rate, palm-accepted-to-result time and memory in a real window
    /// against a local server (needs a display; use xvfb-run on a headless machine).
    Bench {
        #[arg(long, default_value = "bench-data")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 20)]
        payments: usize,
        #[arg(long, default_value_t = 5)]
        preview_secs: u64,
        /// Frame rate of the simulated camera.
        #[arg(long, default_value_t = 30)]
        camera_fps: u32,
    },
    /// Check a configuration file and print it with defaults filled in.
    CheckConfig {
        #[arg(long, default_value = "/etc/palmline/kiosk.toml")]
        config: PathBuf,
    },
}

fn parse_size(s: &Option<String>) -> Result<Option<(u32, u32)>> {
    s.as_ref()
        .map(|s| {
            let (w, h) = s.split_once('x').context("size is WIDTHxHEIGHT")?;
            Ok((w.parse()?, h.parse()?))
        })
        .transpose()
}

fn has_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
        || std::env::var("SLINT_BACKEND").is_ok_and(|b| b.starts_with("linuxkms"))
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    palmline_kiosk::api::install_crypto_provider();
    let cli = Cli::parse();
    let cmd = cli.command.unwrap_or(Cmd::Run {
        config: PathBuf::from("/etc/palmline/kiosk.toml"),
        size: None,
    });
    if let Err(e) = run(cmd) {
        eprintln!("palmline-kiosk: {e:#}");
        std::process::exit(1);
    }
}

fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::CheckConfig { config } => {
            let cfg = Config::load(&config)?;
            print!("{}", cfg.to_toml());
            Ok(())
        }
        Cmd::Run { config, size } => {
            let cfg = Config::load(&config)?;
            let parts = parts_from(&cfg, vec![])?;
            runtime::run_window(parts, parse_size(&size)?)
        }
        Cmd::Bench {
            data_dir,
            payments,
            preview_secs,
            camera_fps,
        } => bench(&data_dir, payments, preview_secs, camera_fps),
        Cmd::Demo {
            data_dir,
            headless,
            size,
        } => {
            println!("palmline demo: starting a server in {}", data_dir.display());
            let backend = demo::start_backend(&data_dir, &[])?;
            println!(
                "server listening on {} (pid {})",
                backend.server.url,
                backend.server.pid()
            );
            let cfg = backend.config.clone();
            let client = runtime::client_from(&cfg)?;
            let mut extractor = extract::default_extractor();
            println!("palm extractor: {}", extractor.name());
            let mut say = |s: String| println!("{s}");
            demo::seed(&client, cfg.currency()?, extractor.as_mut(), &mut say)?;
            println!(
                "kiosk config written to {}",
                data_dir.join("kiosk.toml").display()
            );
            if has_display() && !headless {
                println!(
                    "opening the kiosk window (cashier {} with PIN {})",
                    demo::DEMO_CASHIER.0,
                    demo::DEMO_CASHIER.1
                );
                let identities = demo::DEMO_SHOPPERS
                    .iter()
                    .map(|(n, _)| n.to_string())
                    .chain(["stranger".to_string()])
                    .collect();
                let parts = parts_from(&cfg, identities)?;
                runtime::run_window(parts, parse_size(&size)?)
            } else {
                println!("no display: scripted run");
                let settings = runtime::settings_from(&cfg)?;
                let newcomer = format!("dana{}", std::process::id() % 10_000);
                let mut s =
                    demo::Scripted::new(settings, client, extract::default_extractor(), &mut say);
                s.run_script(&newcomer)?;
                println!("demo complete");
                Ok(())
            }
        }
    }
}

fn parts_from(cfg: &Config, sim_identities: Vec<String>) -> Result<runtime::Parts> {
    let (camera, sim, camera_desc) = runtime::camera_from(cfg)?;
    let extractor = extract::default_extractor();
    tracing::info!("camera: {camera_desc}");
    Ok(runtime::Parts {
        settings: runtime::settings_from(cfg)?,
        client: runtime::client_from(cfg)?,
        camera: Some(camera),
        ui: UiOptions {
            locale: cfg.kiosk.locale.clone(),
            server_url: cfg.server.url.clone(),
            cert_path: Some(cfg.server.cert.clone()),
            extractor: extractor.name(),
            sim_identities: if sim.is_some() {
                sim_identities
            } else {
                vec![]
            },
            sim,
        },
        extractor,
        gate: cfg.quality,
    })
}

fn bench(
    data_dir: &std::path::Path,
    payments: usize,
    preview_secs: u64,
    camera_fps: u32,
) -> Result<()> {
    let backend = demo::start_backend(data_dir, &[])?;
    let mut cfg = backend.config.clone();
    cfg.camera.fps = camera_fps;
    let client = runtime::client_from(&cfg)?;
    let mut extractor = extract::default_extractor();
    let mut say = |s: String| eprintln!("{s}");
    demo::seed(&client, cfg.currency()?, extractor.as_mut(), &mut say)?;
    let parts = parts_from(&cfg, vec![])?;
    let sim = parts
        .ui
        .sim
        .clone()
        .context("the bench needs the simulated camera")?;
    let window =
        palmline_kiosk::AppWindow::new().context("opening a window (no display? use xvfb-run)")?;
    let kiosk = runtime::build(window, parts, palmline_kiosk::ui::event_loop_wake());
    let _tick = kiosk.start_timer();
    slint::ComponentHandle::show(&kiosk.window)?;
    let rep = palmline_kiosk::bench::run(kiosk, sim, "alice".into(), payments, preview_secs);
    println!(
        "preview: {:.1} fps shown (camera {:.1} fps)",
        rep.preview_fps, rep.camera_fps
    );
    println!(
        "palm payments: {} approved of {payments}; declined: {:?}",
        rep.approved, rep.declined
    );
    if let (Some(p50), Some(p95), Some(max)) = (
        rep.percentile(0.5),
        rep.percentile(0.95),
        rep.percentile(1.0),
    ) {
        println!(
            "accepted frame -> result on screen: p50 {p50:.0} ms, p95 {p95:.0} ms, max {max:.0} ms (n={})",
            rep.frame_to_result_ms.len()
        );
    }
    println!(
        "memory: {:.1} MiB resident, {:.1} MiB peak",
        rep.rss_kib as f64 / 1024.0,
        rep.peak_rss_kib as f64 / 1024.0
    );
    Ok(())
}
