//! `palmline-lab`: the palm pipeline's laboratory. A thin CLI over `palmline_shared::palm`
//! and the `synth`/`eval` modules here.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench_identify;
mod calibrate;
mod eval;
mod gate_study;
mod plot;
mod suite;
mod synth;

#[derive(Parser)]
#[command(
    name = "palmline-lab",
    about = "Palm pipeline laboratory: synthetic palms, evaluation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate synthetic hands: DIR/{identity:05}_{sample:02}.png
    Synth(synth::SynthArgs),
    /// Evaluate ours and/or the seed's matcher on a folder of ID_SAMPLE.ext images.
    Eval(eval::EvalArgs),
    /// Every data set under .data/ plus a generated set, ours vs seed, one table.
    EvalSuite(suite::SuiteArgs),
    /// Identification policy (accept / grey / margin) from eval score CSVs of real sets.
    Calibrate(calibrate::CalibrateArgs),
    /// Quality gate calibration: each check's value for frames that matched and that did not.
    GateStudy(gate_study::GateStudyArgs),
    /// Show what extraction sees: the quality report and the normalised ROI of each image.
    Roi(RoiArgs),
    /// 1:N identification benchmark: candidate index + matcher vs exhaustive search.
    BenchIdentify(bench_identify::BenchIdentifyArgs),
}

#[derive(clap::Args)]
struct RoiArgs {
    /// Images to inspect.
    images: Vec<std::path::PathBuf>,
    /// Write each ROI as OUT/<stem>.png (same names: OUT is a data set of ROI crops).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Write only the keypoint area (the inner square, inside the palm), as ROI data sets
    /// publish crops; without it the ROI keeps its margin, which can show the hand's outline.
    #[arg(long)]
    inner: bool,
}

fn roi(a: RoiArgs) -> Result<()> {
    use palmline_shared::palm::extract::{ExtractConfig, Extractor};
    let mut ex = Extractor::new(ExtractConfig::default())?;
    let (inner, margin) = (ex.config().roi_inner as u32, ex.config().roi_margin as u32);
    let side = inner + 2 * margin;
    for p in &a.images {
        let g = image::open(p)?.to_luma8();
        let (w, h) = g.dimensions();
        match ex.extract_with_report(g.as_raw(), w, h) {
            Ok((t, r)) => println!(
                "{}: {} keypoints, {} bytes, {r:?}",
                p.display(),
                t.len(),
                t.encoded_len()
            ),
            Err(e) => println!("{}: rejected: {e} ({})", p.display(), e.code()),
        }
        if let (Some(out), Ok(roi)) = (&a.out, ex.roi_image(g.as_raw(), w, h)) {
            std::fs::create_dir_all(out)?;
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("roi");
            let mut img = image::GrayImage::from_raw(side, side, roi)
                .ok_or_else(|| anyhow::anyhow!("ROI of unexpected size"))?;
            if a.inner {
                img = image::imageops::crop_imm(&img, margin, margin, inner, inner).to_image();
            }
            img.save(out.join(format!("{stem}.png")))?;
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Synth(a) => synth::run(a),
        Command::Eval(a) => eval::run(a),
        Command::EvalSuite(a) => suite::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::GateStudy(a) => gate_study::run(a),
        Command::Roi(a) => roi(a),
        Command::BenchIdentify(a) => bench_identify::run(a),
    }
}
