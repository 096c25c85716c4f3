//! DET curve (FNMR against FMR, both on log axes) of one or more matchers on one chart.

use anyhow::{anyhow, Result};
use palmline_shared::palm::metrics::det_points;
use plotters::prelude::*;
use std::path::Path;

const FLOOR: f64 = 1e-4;

/// `series`: (name, genuine scores, impostor scores).
pub fn det_plot(path: &Path, series: &[(&str, &[f64], &[f64])]) -> Result<()> {
    let min_fmr = series
        .iter()
        .map(|(_, _, i)| 1.0 / (i.len().max(1) as f64))
        .fold(1.0, f64::min)
        .max(1e-7);
    let root = BitMapBackend::new(path, (800, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "DET: palm verification (lower-left is better)",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((min_fmr..1.0).log_scale(), (FLOOR..1.0).log_scale())
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("false match rate (FMR)")
        .y_desc(format!(
            "false non-match rate (FNMR, floored at {FLOOR:.0e})"
        ))
        .x_label_formatter(&|v| format!("{v:.0e}"))
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    let colors = [
        RGBColor(200, 30, 30),
        RGBColor(30, 60, 200),
        RGBColor(20, 140, 40),
    ];
    for (k, (name, g, i)) in series.iter().enumerate() {
        let pts: Vec<(f64, f64)> = det_points(g, i)
            .into_iter()
            .filter(|p| p.fmr > 0.0)
            .map(|p| (p.fmr.max(min_fmr), p.fnmr.max(FLOOR)))
            .collect();
        // Thin out: keep a point when it moves visibly on the log axes.
        let mut thin: Vec<(f64, f64)> = Vec::new();
        for p in pts {
            match thin.last() {
                Some(l)
                    if (l.0.ln() - p.0.ln()).abs() < 0.01 && (l.1.ln() - p.1.ln()).abs() < 0.01 => {
                }
                _ => thin.push(p),
            }
        }
        let c = colors[k % colors.len()];
        chart
            .draw_series(LineSeries::new(thin, c.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(name.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
