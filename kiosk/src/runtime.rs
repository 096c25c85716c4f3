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
        cashier_pin: cfg.kiosk.cashier_pin.clone(),
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
            GateConfig::default(),
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
    kiosk.window.run().context("running the UI")?;
    Ok(())
}
