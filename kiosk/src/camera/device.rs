//! A real USB/V4L2 camera through nokhwa: format negotiation (640×480 MJPEG preferred,
//! then YUYV, then whatever the camera offers), MJPEG/YUYV decoding, and clean errors that
//! the capture worker turns into reconnect attempts when the camera is unplugged.

use super::{Camera, CameraError, Frame};
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};

pub struct DeviceCamera {
    index: u32,
    width: u32,
    height: u32,
    fps: u32,
    cam: Option<nokhwa::Camera>,
    negotiated: Option<CameraFormat>,
}

impl DeviceCamera {
    pub fn new(index: u32, width: u32, height: u32, fps: u32) -> DeviceCamera {
        DeviceCamera {
            index,
            width,
            height,
            fps,
            cam: None,
            negotiated: None,
        }
    }

    /// The formats tried, best first.
    fn requests(&self) -> Vec<RequestedFormatType> {
        let res = Resolution::new(self.width, self.height);
        vec![
            RequestedFormatType::Exact(CameraFormat::new(res, FrameFormat::MJPEG, self.fps)),
            RequestedFormatType::Closest(CameraFormat::new(res, FrameFormat::MJPEG, self.fps)),
            RequestedFormatType::Closest(CameraFormat::new(res, FrameFormat::YUYV, self.fps)),
            RequestedFormatType::HighestFrameRate(self.fps),
            RequestedFormatType::AbsoluteHighestFrameRate,
        ]
    }
}

/// Whether any camera is visible (for `camera.source = "auto"`).
pub fn any_camera() -> bool {
    nokhwa::query(ApiBackend::Auto)
        .map(|list| !list.is_empty())
        .unwrap_or(false)
}

impl Camera for DeviceCamera {
    fn describe(&self) -> String {
        match &self.negotiated {
            Some(f) => format!("/dev/video{} {}", self.index, f),
            None => format!("/dev/video{}", self.index),
        }
    }

    fn open(&mut self) -> Result<(), CameraError> {
        self.close();
        let mut last = String::from("no format accepted");
        for req in self.requests() {
            let format = RequestedFormat::new::<RgbFormat>(req);
            match nokhwa::Camera::new(CameraIndex::Index(self.index), format) {
                Ok(mut cam) => match cam.open_stream() {
                    Ok(()) => {
                        self.negotiated = Some(cam.camera_format());
                        tracing::info!("camera opened: {}", cam.camera_format());
                        self.cam = Some(cam);
                        return Ok(());
                    }
                    Err(e) => last = e.to_string(),
                },
                Err(e) => {
                    last = e.to_string();
                    // A missing device fails the same way for every format.
                    if !std::path::Path::new(&format!("/dev/video{}", self.index)).exists() {
                        return Err(CameraError::NotFound(format!(
                            "/dev/video{}: {last}",
                            self.index
                        )));
                    }
                }
            }
        }
        Err(CameraError::Other(last))
    }

    fn next_frame(&mut self) -> Result<Frame, CameraError> {
        let cam = self
            .cam
            .as_mut()
            .ok_or_else(|| CameraError::Lost("not open".into()))?;
        let buffer = cam.frame().map_err(|e| CameraError::Lost(e.to_string()))?;
        let image = buffer
            .decode_image::<RgbFormat>()
            .map_err(|e| CameraError::Other(format!("decoding frame: {e}")))?;
        let (w, h) = image.dimensions();
        Ok(Frame::from_rgb(w, h, image.into_raw()))
    }

    fn close(&mut self) {
        if let Some(mut cam) = self.cam.take() {
            let _ = cam.stop_stream();
        }
    }
}

impl Drop for DeviceCamera {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_camera_fails_cleanly() {
        // No /dev/video99 on any machine this runs on.
        let mut cam = DeviceCamera::new(99, 640, 480, 30);
        match cam.open() {
            Err(CameraError::NotFound(m)) => assert!(m.contains("/dev/video99"), "{m}"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert!(matches!(cam.next_frame(), Err(CameraError::Lost(_))));
        assert_eq!(cam.describe(), "/dev/video99");
    }
}
