//! Putting a kiosk together: settings from the config, the camera source, the API client,
//! the worker threads and the window. Used by `palmline-kiosk run`, the demo and the UI
//! tests, so all three run the same assembly.

use crate::api::{ApiClient, Timeouts, TlsFiles};
use crate::app::{App, Settings};
use crate::camera::device::{self, DeviceCamera};
use crate::camera::sim::{SimCamera, SimControl};
use crate::camera::Camera;
use crate::config::{CameraSource, Config};
use crate::extract::PalmExtractor;
use crate::quality::GateConfig;
use crate::ui::{self, Kiosk, Net, UiOptions};
use crate::AppWindow;
use anyhow::{Context, Result};
use slint::ComponentHandle;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub type CameraFactory = Box<dyn FnOnce() -> Box<dyn Camera> + Send>;

/// State-machine settings from the config.
pub fn settings_from(cfg: &Config) -> Result<Settings> {
    Ok(Settings {
        currency: cfg.currency()?,
        merchant_display: cfg.kiosk.merchant_display.clone(),
        enroll_captures: cfg.kiosk.enroll_captures,
        inactivity: Duration::from_secs(cfg.kiosk.inactivity_secs),
        ..Settings::default()
    })
}

pub fn client_from(cfg: &Config) -> Result<ApiClient> {
    ApiClient::new(
        &cfg.server.url,
        &TlsFiles {
            ca: &cfg.server.ca,
            cert: &cfg.server.cert,
            key: &cfg.server.key,
        },
        Timeouts {
            request: cfg.timeout(),
            connect: Duration::from_millis(cfg.server.connect_timeout_ms),
            retries: cfg.server.retries,
            ..Timeouts::default()
        },
    )
}

/// Picks the camera source. Returns the factory and, for the simulated camera, its control.
pub fn camera_from(cfg: &Config) -> Result<(CameraFactory, Option<SimControl>, String)> {
    let c = cfg.camera.clone();
    let use_device = match c.source {
        CameraSource::Device => true,
        CameraSource::Auto => device::any_camera(),
        CameraSource::Simulated | CameraSource::Folder => false,
    };
    if use_device {
        let desc = format!("/dev/video{}", c.device);
        return Ok((
            Box::new(move || {
                Box::new(DeviceCamera::new(c.device, c.width, c.height, c.fps)) as Box<dyn Camera>
            }),
            None,
            desc,
        ));
    }
    if c.source == CameraSource::Folder {
        let dir = c.folder.clone().context("camera.folder")?;
        let cam = SimCamera::from_folder(dir.clone(), c.width, c.height, c.fps)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // SimCamera is Send (plain data), so it can be built here and moved in.
        return Ok((
            Box::new(move || Box::new(cam) as Box<dyn Camera>),
            None,
            format!("images from {}", dir.display()),
        ));
    }
    let control = SimControl::default();
    let ctl = control.clone();
    Ok((
        Box::new(move || {
            Box::new(SimCamera::new(ctl, c.width, c.height, c.fps)) as Box<dyn Camera>
        }),
        Some(control),
        "simulated camera".into(),
    ))
}

/// Everything a kiosk window needs.
pub struct Parts {
    pub settings: Settings,
    pub client: ApiClient,
    pub camera: Option<CameraFactory>,
    pub extractor: Box<dyn PalmExtractor>,
    pub gate: GateConfig,
    pub ui: UiOptions,
}

/// Wires a window: channel, network threads, capture thread, state machine. `wake` is
/// [`ui::event_loop_wake`] under a real event loop, a no-op in tests that pump by hand.
pub fn build(window: AppWindow, parts: Parts, wake: Arc<dyn Fn() + Send + Sync>) -> Rc<Kiosk> {
    let (poster, rx) = ui::channel(wake);
    let net = Net::spawn(parts.client, poster.clone(), 2);
    let preview_pending = Arc::new(AtomicBool::new(false));
    let capture = parts.camera.map(|make| {
        crate::worker::spawn(
            make,
            parts.extractor,
            parts.gate,
            Kiosk::sink(poster.clone(), preview_pending.clone()),
        )
    });
    let app = App::new(
        parts.settings,
        Box::new(|| uuid::Uuid::new_v4().to_string()),
    );
    Kiosk::new(window, app, rx, net, capture, preview_pending, parts.ui)
}

/// Opens the kiosk window and runs until it is closed.
pub fn run_window(parts: Parts, size: Option<(u32, u32)>) -> Result<()> {
    let window = AppWindow::new()
        .context("opening the kiosk window (no display? set SLINT_BACKEND=linuxkms on a device)")?;
    if let Some((w, h)) = size {
        window.window().set_size(slint::PhysicalSize::new(w, h));
    }
    let kiosk = build(window, parts, ui::event_loop_wake());
    let _timer = kiosk.start_timer();
    // systemd (Type=notify): ready now; the watchdog is fed from the UI event loop, so a
    // stuck UI thread stops feeding it and gets the kiosk restarted.
    sd_notify("READY=1");
    let _watchdog = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|usec| {
            let t = slint::Timer::default();
            t.start(
                slint::TimerMode::Repeated,
                Duration::from_micros(usec / 2),
                || sd_notify("WATCHDOG=1"),
            );
            t
        });
    kiosk.window.show().context("showing the kiosk window")?;
    // Returns when the window is closed (desktop demo); on a device it never is.
    slint::run_event_loop().context("running the UI")?;
    Ok(())
}

/// Sends a message to systemd's notification socket, if there is one.
pub fn sd_notify(msg: &str) {
    let Some(addr) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let addr = addr.to_string_lossy().into_owned();
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let result = if let Some(abstract_name) = addr.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
    } else {
        sock.send_to(msg.as_bytes(), &addr)
    };
    if let Err(e) = result {
        tracing::warn!("sd_notify {msg}: {e}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sd_notify_writes_to_the_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        // Only this test touches NOTIFY_SOCKET.
        std::env::set_var("NOTIFY_SOCKET", &path);
        super::sd_notify("READY=1");
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}

#[cfg(test)]
mod camera_choice {
    use crate::config::{CameraConfig, CameraSource, Config, KioskConfig, ServerConfig};

    fn cfg(source: CameraSource, folder: Option<std::path::PathBuf>) -> Config {
        Config {
            server: ServerConfig {
                url: "https://127.0.0.1:1".into(),
                ca: "ca.pem".into(),
                cert: "k.pem".into(),
                key: "k.key".into(),
                timeout_ms: 1000,
                connect_timeout_ms: 1000,
                retries: 0,
            },
            kiosk: KioskConfig::default(),
            camera: CameraConfig {
                source,
                folder,
                ..CameraConfig::default()
            },
            quality: Default::default(),
        }
    }

    #[test]
    fn simulated_and_folder_sources_are_chosen_by_config() {
        let (_, sim, desc) = super::camera_from(&cfg(CameraSource::Simulated, None)).unwrap();
        assert!(sim.is_some());
        assert_eq!(desc, "simulated camera");
        let empty = tempfile::tempdir().unwrap();
        assert!(super::camera_from(&cfg(CameraSource::Folder, Some(empty.path().into()))).is_err());
        // This machine has no camera: auto falls back to the simulated one.
        if !crate::camera::device::any_camera() {
            let (_, sim, _) = super::camera_from(&cfg(CameraSource::Auto, None)).unwrap();
            assert!(sim.is_some());
        }
    }
}
