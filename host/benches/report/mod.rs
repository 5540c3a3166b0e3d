//! The suite's output: the table of figures (Markdown) and the curves (PNG).

use std::fmt::Write as _;
use std::path::Path;

use super::Row;

/// The table of `rows`, in Markdown.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::from("| figure | median | baseline (same run) | ratio | target |\n|---|---:|---|---:|---|\n");
    for row in rows {
        let baseline = row.baseline.as_ref().map_or(String::new(), |(name, value)| {
            format!("{name}: {}", number(*value, row.unit))
        });
        let ratio = row.ratio().map_or(String::new(), |ratio| format!("{ratio:.2}×"));
        writeln!(
            out,
            "| {} | {} | {baseline} | {ratio} | {} |",
            row.figure,
            number(row.value, row.unit),
            row.target
        )
        .unwrap();
    }
    out
}

fn number(value: f64, unit: &str) -> String {
    if value >= 100.0 {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.2} {unit}")
    }
}

/// The font the plot's labels are drawn with (Debian's `fonts-dejavu-core`).
const PLOT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// One chart: points (x, y) on a logarithmic x axis, each with a label drawn above it.
pub struct Curve {
    pub caption: &'static str,
    pub x_label: &'static str,
    pub y_label: &'static str,
    pub points: Vec<(f64, f64, String)>,
}

/// Draws `curves` side by side, 600 pixels wide each; returns whether it did.
pub fn plot(path: &Path, curves: &[Curve]) -> bool {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    // Labels need a font file; without one there is no readable plot to make.
    let Ok(font) = std::fs::read(PLOT_FONT) else {
        eprintln!("no plot: {PLOT_FONT} is missing (the figures are in results.json)");
        return false;
    };
    if plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(font.into_boxed_slice())).is_err() {
        eprintln!("no plot: {PLOT_FONT} is not a font plotters can read");
        return false;
    }
    let root = BitMapBackend::new(path, (600 * curves.len() as u32, 500)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    for (area, curve) in root.split_evenly((1, curves.len())).iter().zip(curves) {
        let points = &curve.points;
        let max_y = points.iter().map(|point| point.1).fold(0.0, f64::max) * 1.15;
        let (x_min, x_max) = (points[0].0 * 0.8, points[points.len() - 1].0 * 1.25);
        let mut chart = ChartBuilder::on(area)
            .caption(curve.caption, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((x_min..x_max).log_scale(), 0.0..max_y)
            .unwrap();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(6)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .x_desc(curve.x_label)
            .y_desc(curve.y_label)
            .draw()
            .unwrap();
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|point| (point.0, point.1)),
                BLUE.stroke_width(2),
            ))
            .unwrap();
        chart
            .draw_series(
                points
                    .iter()
                    .map(|point| Circle::new((point.0, point.1), 4, BLUE.filled())),
            )
            .unwrap();
        // The first label runs right from its point, the last one left (so that it stays
        // inside the chart), the others are centred.
        let last = points.len() - 1;
        chart
            .draw_series(points.iter().enumerate().map(|(i, point)| {
                let align = match i {
                    0 => HPos::Left,
                    i if i == last => HPos::Right,
                    _ => HPos::Center,
                };
                let style = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(align, VPos::Bottom));
                Text::new(point.2.clone(), (point.0, point.1 + max_y * 0.03), style)
            }))
            .unwrap();
    }
    root.present().unwrap();
    true
}
