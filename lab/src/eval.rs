use anyhow::Result;

#[derive(clap::Args)]
pub struct EvalArgs {}

pub fn run(_a: EvalArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
