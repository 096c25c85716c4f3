//! `palmline-lab`: the palm pipeline's laboratory. A thin CLI over `palmline_shared::palm`
//! and the `synth`/`eval` modules here.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod eval;
mod synth;

#[derive(Parser)]
#[command(name = "palmline-lab", about = "Palm pipeline laboratory: synthetic palms, evaluation")]
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
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Synth(a) => synth::run(a),
        Command::Eval(a) => eval::run(a),
    }
}
