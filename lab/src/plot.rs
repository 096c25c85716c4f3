//! DET curve (FNMR against FMR, both on log axes) of one or more matchers on one chart.

use anyhow::{anyhow, Result};
use palmline_shared::palm::metrics::det_points;
use plotters::prelude::*;
use std::path::Path;

const FLOOR: f64 = 1e-4;

/// Overlaid histograms of one quantity (e.g. a quality check's value) for two groups of
/// frames, with a vertical line at the threshold in use.
pub fn histogram(
    path: &Path,
    title: &str,
    groups: &[(&str, &[f64])],
    threshold: f64,
) -> Result<()> {
    let all = groups.iter().flat_map(|g| g.1.iter().copied());
    let (lo, hi) = all.fold((threshold, threshold), |(l, h), v| (l.min(v), h.max(v)));
    let (lo, hi) = (
        lo - 0.02 * (hi - lo).max(1e-6),
        hi + 0.02 * (hi - lo).max(1e-6),
    );
    const BINS: usize = 40;
    let width = (hi - lo) / BINS as f64;
    let counts: Vec<Vec<f64>> = groups
        .iter()
        .map(|(_, v)| {
            let mut c = vec![0.0; BINS];
            for &x in v.iter() {
                c[(((x - lo) / width) as usize).min(BINS - 1)] += 1.0 / v.len().max(1) as f64;
            }
            c
        })
        .collect();
    let top = counts.iter().flatten().copied().fold(0.0, f64::max) * 1.1;
    let root = BitMapBackend::new(path, (800, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(lo..hi, 0.0..top.max(1e-3))
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .y_desc("share of the group's frames")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    let colors = [
        RGBColor(20, 140, 40),
        RGBColor(200, 30, 30),
        RGBColor(30, 60, 200),
    ];
    for (k, ((name, v), c)) in groups.iter().zip(&counts).enumerate() {
        let color = colors[k % colors.len()];
        let pts: Vec<(f64, f64)> = c
            .iter()
            .enumerate()
            .flat_map(|(b, &y)| [(lo + b as f64 * width, y), (lo + (b + 1) as f64 * width, y)])
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(format!("{name} ({} frames)", v.len()))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .draw_series(LineSeries::new(
            vec![(threshold, 0.0), (threshold, top)],
            BLACK.stroke_width(1),
        ))
        .map_err(|e| anyhow!("{e}"))?
        .label(format!("threshold {threshold}"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

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
        RGBColor(230, 130, 0),
        RGBColor(140, 40, 170),
        RGBColor(0, 150, 160),
        RGBColor(120, 80, 30),
        RGBColor(230, 80, 160),
        RGBColor(100, 100, 100),
        RGBColor(160, 170, 0),
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
