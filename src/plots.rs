//! SVG plots of a run: training curves, the mask per modality and the Pareto weight trajectory.

use crate::report::Report;
use painvrl_core::io::write_atomic;
use painvrl_core::{Error, Result};
use painvrl_graph::EpochLog;
use plotters::prelude::*;
use std::path::Path;

/// One named line of (x, y) points.
pub type Series = (String, Vec<(f64, f64)>);

/// How series are drawn.
#[derive(Clone, Copy)]
enum Style {
    Lines,
    Points,
}

/// What a chart is titled and labelled.
struct Labels<'a> {
    title: &'a str,
    x: &'a str,
    y: &'a str,
}

/// Draws `series` on axes `xs` × `ys` into an SVG file, atomically.
fn chart(
    path: &Path,
    labels: Labels,
    series: &[Series],
    (xs, ys): (std::ops::Range<f64>, std::ops::Range<f64>),
    size: (u32, u32),
    style: Style,
) -> Result<()> {
    let Labels { title, x: x_label, y: y_label } = labels;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let draw = || -> std::result::Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(xs, ys)?;
            chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw()?;
            for (k, (name, points)) in series.iter().enumerate() {
                let color = Palette99::pick(k).to_rgba();
                match style {
                    Style::Lines => chart
                        .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
                        .label(name.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))),
                    Style::Points => chart
                        .draw_series(points.iter().map(|&p| Circle::new(p, 5, color.filled())))?
                        .label(name.as_str())
                        .legend(move |(x, y)| Circle::new((x + 8, y), 5, color.filled())),
                };
            }
            chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
            root.present()?;
            Ok(())
        };
        draw().map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))?;
    }
    write_atomic(path, svg.as_bytes())
}

/// Draws line series into an SVG file, atomically.
pub fn line_plot(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<()> {
    let pts = series.iter().flat_map(|s| s.1.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in pts.filter(|p| p.0.is_finite() && p.1.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    let labels = Labels { title, x: x_label, y: y_label };
    chart(path, labels, series, (x0..x1, (y0 - pad)..(y1 + pad)), (800, 480), Style::Lines)
}

/// Draws point series (one colour each) into an SVG file, atomically.
pub fn scatter_plot(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<()> {
    let all: Vec<(f64, f64)> =
        series.iter().flat_map(|s| s.1.iter().copied()).filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    let bound = |f: fn(&(f64, f64)) -> f64| {
        let lo = all.iter().map(f).fold(f64::INFINITY, f64::min);
        let hi = all.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
        if lo.is_finite() {
            (lo - (hi - lo).max(1e-3) * 0.1)..(hi + (hi - lo).max(1e-3) * 0.1)
        } else {
            0.0..1.0
        }
    };
    let labels = Labels { title, x: x_label, y: y_label };
    chart(path, labels, series, (bound(|p| p.0), bound(|p| p.1)), (800, 560), Style::Points)
}

/// Writes `curves.svg`, and for invariant methods `mask.svg` and `pareto.svg`, into `dir`.
pub fn write_run_plots(dir: &Path, report: &Report, history: &[EpochLog]) -> Result<()> {
    let mut curves: Vec<Series> = Vec::new();
    let mut modules: Vec<&str> = history.iter().map(|h| h.module.as_str()).collect();
    modules.dedup();
    for m in modules {
        let of = || history.iter().filter(move |h| h.module == m);
        curves.push((format!("{m} loss"), of().map(|h| (h.epoch as f64, h.loss)).collect()));
        let val: Vec<(f64, f64)> =
            of().filter_map(|h| h.val.as_ref().and_then(|v| v.get("ndcg@20")).map(|&v| (h.epoch as f64, v))).collect();
        if !val.is_empty() {
            curves.push((format!("{m} val ndcg@20"), val));
        }
    }
    line_plot(&dir.join("curves.svg"), "training curves", "epoch", "value", &curves)?;
    if !report.mask.is_empty() {
        let mut start = 0;
        let mut per_modality = Vec::new();
        for m in &report.modalities {
            let pts = (0..m.dim).map(|d| (d as f64, report.mask[start + d] as f64)).collect();
            per_modality.push((m.name.clone(), pts));
            start += m.dim;
        }
        line_plot(&dir.join("mask.svg"), "invariant mask per modality", "dimension", "mask weight", &per_modality)?;
        let alpha =
            vec![("α on L_ERM".to_string(), report.pareto.iter().enumerate().map(|(e, &a)| (e as f64, a)).collect())];
        line_plot(&dir.join("pareto.svg"), "Pareto weight per mask epoch", "mask epoch", "α", &alpha)?;
    }
    Ok(())
}
