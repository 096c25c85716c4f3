//! The capture thread: pulls frames from a camera source, feeds the preview, runs the
//! quality gate and template extraction while armed, and reconnects a camera that went away.
//!
//! It never blocks the UI: results go out through a [`CaptureSink`] (the Slint glue posts
//! them to the event loop). It must never send a frame anywhere but the local preview.

use crate::app::Guidance;
use crate::camera::{Camera, CameraError, CameraStatus, Frame};
use crate::extract::{ExtractError, PalmExtractor};
use crate::quality::{GateConfig, QualityGate};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where the capture thread sends what it finds.
pub trait CaptureSink: Send + 'static {
    /// Every frame, for the live preview.
    fn preview(&self, frame: &Frame);
    /// While armed, whenever the advice changes.
    fn guidance(&self, g: Guidance);
    /// A frame passed the gate and a template was extracted. `accepted_at` is when the
    /// gate accepted the frame (the start of the "frame to result" measurement).
    fn captured(&self, template: Vec<u8>, accepted_at: Instant);
    /// Capture cannot proceed (no camera, no extractor).
    fn failed(&self, why: String);
    fn status(&self, status: CameraStatus);
}

enum Ctl {
    Arm,
    Disarm,
    Stop,
}

/// Counters for diagnostics and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct CaptureStats {
    pub frames: u64,
    pub fps: f32,
    pub captures: u64,
    /// Time the extractor took for the last capture.
    pub last_extract: Option<Duration>,
    pub reconnects: u64,
}

pub struct CaptureHandle {
    tx: Sender<Ctl>,
    join: Option<JoinHandle<()>>,
    stats: Arc<Mutex<CaptureStats>>,
}

impl CaptureHandle {
    pub fn arm(&self) {
        let _ = self.tx.send(Ctl::Arm);
    }
    pub fn disarm(&self) {
        let _ = self.tx.send(Ctl::Disarm);
    }
    pub fn stats(&self) -> CaptureStats {
        self.stats.lock().expect("stats").clone()
    }
}

impl Drop for CaptureHandle {
    fn drop(&mut self) {
        let _ = self.tx.send(Ctl::Stop);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// Minimum time between two captures of one enrollment, so they are different frames.
pub const CAPTURE_GAP: Duration = Duration::from_millis(400);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts the capture thread. `make_camera` runs on that thread (nokhwa cameras are not
/// `Send`).
pub fn spawn<S: CaptureSink>(
    make_camera: Box<dyn FnOnce() -> Box<dyn Camera> + Send>,
    extractor: Box<dyn PalmExtractor>,
    gate: GateConfig,
    sink: S,
) -> CaptureHandle {
    let (tx, rx) = mpsc::channel();
    let stats = Arc::new(Mutex::new(CaptureStats::default()));
    let st = stats.clone();
    let join = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || run(make_camera(), extractor, gate, sink, rx, st))
        .expect("spawning the capture thread");
    CaptureHandle {
        tx,
        join: Some(join),
        stats,
    }
}

fn run<S: CaptureSink>(
    mut cam: Box<dyn Camera>,
    mut extractor: Box<dyn PalmExtractor>,
    gate_cfg: GateConfig,
    sink: S,
    rx: Receiver<Ctl>,
    stats: Arc<Mutex<CaptureStats>>,
) {
    let mut gate = QualityGate::new(gate_cfg);
    let mut armed = false;
    let mut open = false;
    let mut backoff = Duration::from_millis(250);
    let mut last_guidance: Option<Guidance> = None;
    let mut not_before = Instant::now();
    let mut window_start = Instant::now();
    let mut window_frames = 0u32;
    let mut told_failure = false;
    sink.status(CameraStatus::Starting);
    loop {
        // Commands first.
        loop {
            match rx.try_recv() {
                Ok(Ctl::Arm) => {
                    armed = true;
                    gate.reset();
                    last_guidance = None;
                    told_failure = false;
                    not_before = Instant::now();
                }
                Ok(Ctl::Disarm) => armed = false,
                Ok(Ctl::Stop) | Err(mpsc::TryRecvError::Disconnected) => {
                    cam.close();
                    return;
                }
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        if !open {
            match cam.open() {
                Ok(()) => {
                    open = true;
                    backoff = Duration::from_millis(250);
                    sink.status(CameraStatus::Running {
                        source: cam.describe(),
                        fps: 0.0,
                    });
                }
                Err(e) => {
                    if armed && !told_failure {
                        sink.failed(format!("No camera: {e}"));
                        told_failure = true;
                    }
                    sink.status(CameraStatus::Reconnecting {
                        error: e.to_string(),
                    });
                    stats.lock().expect("stats").reconnects += 1;
                    // Wait for the next attempt, or for a command (stop must be prompt).
                    match rx.recv_timeout(backoff) {
                        Ok(Ctl::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                        Ok(Ctl::Arm) => {
                            armed = true;
                            told_failure = false;
                        }
                        Ok(Ctl::Disarm) => armed = false,
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        let frame = match cam.next_frame() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("camera: {e}");
                cam.close();
                open = false;
                let error = match e {
                    CameraError::Lost(m) | CameraError::NotFound(m) | CameraError::Other(m) => m,
                };
                sink.status(CameraStatus::Reconnecting { error });
                continue;
            }
        };
        window_frames += 1;
        let elapsed = window_start.elapsed();
        {
            let mut s = stats.lock().expect("stats");
            s.frames += 1;
            if elapsed >= Duration::from_secs(1) {
                s.fps = window_frames as f32 / elapsed.as_secs_f32();
                window_start = Instant::now();
                window_frames = 0;
                sink.status(CameraStatus::Running {
                    source: cam.describe(),
                    fps: s.fps,
                });
            }
        }
        sink.preview(&frame);
        if !armed {
            continue;
        }
        let a = gate.assess(&frame.gray, frame.width, frame.height);
        if last_guidance != Some(a.guidance) {
            last_guidance = Some(a.guidance);
            sink.guidance(a.guidance);
        }
        if !a.accept || Instant::now() < not_before {
            continue;
        }
        let accepted_at = Instant::now();
        let t0 = Instant::now();
        match extractor.extract(&frame) {
            Ok(template) => {
                {
                    let mut s = stats.lock().expect("stats");
                    s.captures += 1;
                    s.last_extract = Some(t0.elapsed());
                }
                sink.captured(template, accepted_at);
                gate.reset();
                last_guidance = None;
                not_before = Instant::now() + CAPTURE_GAP;
            }
            Err(ExtractError::Quality { guidance, why }) => {
                // The live gate passed the frame but the extractor, which looks closer, did
                // not: tell the shopper its reason, not a generic one.
                tracing::debug!("extractor rejected an accepted frame: {why}");
                gate.reset();
                sink.guidance(guidance);
                last_guidance = Some(guidance);
            }
            Err(ExtractError::Unavailable(why)) => {
                sink.failed(why);
                armed = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::sim::{SimCamera, SimControl};
    use crate::extract::NoExtractor;

    #[derive(Debug)]
    enum Out {
        Guidance(Guidance),
        Captured(Vec<u8>),
        Failed(String),
        Status(CameraStatus),
    }

    struct ChanSink(Mutex<Sender<Out>>, Arc<Mutex<u64>>);
    impl CaptureSink for ChanSink {
        fn preview(&self, _f: &Frame) {
            *self.1.lock().unwrap() += 1;
        }
        fn guidance(&self, g: Guidance) {
            let _ = self.0.lock().unwrap().send(Out::Guidance(g));
        }
        fn captured(&self, t: Vec<u8>, _at: Instant) {
            let _ = self.0.lock().unwrap().send(Out::Captured(t));
        }
        fn failed(&self, why: String) {
            let _ = self.0.lock().unwrap().send(Out::Failed(why));
        }
        fn status(&self, s: CameraStatus) {
            let _ = self.0.lock().unwrap().send(Out::Status(s));
        }
    }

    /// "Extracts" the mean brightness of the frame.
    struct MeanExtractor;
    impl PalmExtractor for MeanExtractor {
        fn name(&self) -> String {
            "mean".into()
        }
        fn extract(&mut self, f: &Frame) -> Result<Vec<u8>, ExtractError> {
            let m = f.gray.iter().map(|&v| u64::from(v)).sum::<u64>() / f.gray.len() as u64;
            Ok(vec![m as u8])
        }
    }

    fn sink() -> (ChanSink, Receiver<Out>, Arc<Mutex<u64>>) {
        let (tx, rx) = mpsc::channel();
        let previews = Arc::new(Mutex::new(0));
        (ChanSink(Mutex::new(tx), previews.clone()), rx, previews)
    }

    fn wait_for(rx: &Receiver<Out>, mut pred: impl FnMut(&Out) -> bool) -> Vec<Out> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let o = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("timed out; saw {seen:?}"));
            let done = pred(&o);
            seen.push(o);
            if done {
                return seen;
            }
        }
    }

    #[test]
    fn armed_worker_guides_then_captures_the_presented_palm() {
        let control = SimControl::default();
        let c2 = control.clone();
        let (s, rx, previews) = sink();
        let h = spawn(
            Box::new(move || Box::new(SimCamera::new(c2, 640, 480, 60)) as Box<dyn Camera>),
            Box::new(MeanExtractor),
            GateConfig::default(),
            s,
        );
        h.arm();
        let seen = wait_for(&rx, |o| matches!(o, Out::Guidance(Guidance::NoHand)));
        assert!(!seen.iter().any(|o| matches!(o, Out::Captured(_))));
        control.present(Some("alice"));
        let seen = wait_for(&rx, |o| matches!(o, Out::Captured(t) if t.len() == 1));
        assert!(
            seen.iter()
                .any(|o| matches!(o, Out::Guidance(Guidance::Steady))),
            "{seen:?}"
        );
        assert!(*previews.lock().unwrap() > 3);
        assert_eq!(h.stats().captures, 1);
        // Disarmed: no more captures even with the hand still there.
        h.disarm();
        let frames_then = h.stats().frames;
        wait_for(&rx, |o| {
            matches!(o, Out::Status(CameraStatus::Running { .. }))
        });
        assert!(h.stats().frames > frames_then);
        assert_eq!(h.stats().captures, 1);
    }

    #[test]
    fn missing_extractor_is_reported_once_armed() {
        let control = SimControl::default();
        control.present(Some("bob"));
        let (s, rx, _) = sink();
        let h = spawn(
            Box::new(move || Box::new(SimCamera::new(control, 640, 480, 60)) as Box<dyn Camera>),
            Box::new(NoExtractor),
            GateConfig::default(),
            s,
        );
        h.arm();
        let seen = wait_for(&rx, |o| matches!(o, Out::Failed(_)));
        assert!(matches!(seen.last(), Some(Out::Failed(m)) if m.contains("opencv")));
    }

    /// Works for `good` frames, then loses the device; opening fails `outage` times.
    struct Flaky {
        good: u32,
        outage: u32,
        opens: u32,
        served: u32,
    }
    impl Camera for Flaky {
        fn describe(&self) -> String {
            "flaky".into()
        }
        fn open(&mut self) -> Result<(), CameraError> {
            self.opens += 1;
            if self.opens > 1 && self.opens <= 1 + self.outage {
                return Err(CameraError::NotFound("unplugged".into()));
            }
            self.served = 0;
            Ok(())
        }
        fn next_frame(&mut self) -> Result<Frame, CameraError> {
            if self.opens == 1 && self.served >= self.good {
                return Err(CameraError::Lost("device gone".into()));
            }
            self.served += 1;
            // A camera's frame period.
            std::thread::sleep(Duration::from_millis(5));
            Ok(Frame::from_gray(8, 8, vec![10; 64]))
        }
        fn close(&mut self) {}
    }

    #[test]
    fn an_unplugged_camera_is_reopened() {
        let (s, rx, previews) = sink();
        let h = spawn(
            Box::new(|| {
                Box::new(Flaky {
                    good: 5,
                    outage: 2,
                    opens: 0,
                    served: 0,
                }) as Box<dyn Camera>
            }),
            Box::new(MeanExtractor),
            GateConfig::default(),
            s,
        );
        let mut reconnecting = 0;
        let mut running = 0;
        wait_for(&rx, |o| {
            match o {
                Out::Status(CameraStatus::Reconnecting { .. }) => reconnecting += 1,
                Out::Status(CameraStatus::Running { .. }) => running += 1,
                _ => {}
            }
            running >= 2
        });
        // Lost once, then two failed opens.
        assert_eq!(reconnecting, 3);
        assert_eq!(h.stats().reconnects, 2);
        let before = *previews.lock().unwrap();
        assert!(before >= 5);
        // Frames flow again: the next frame-rate report counts them.
        wait_for(
            &rx,
            |o| matches!(o, Out::Status(CameraStatus::Running { fps, .. }) if *fps > 0.0),
        );
        assert!(*previews.lock().unwrap() > before);
    }
}
