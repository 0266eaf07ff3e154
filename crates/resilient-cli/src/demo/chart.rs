//! The chart: success rate and p99 latency over time, protected vs unprotected, with the
//! outage and the breaker's open periods shaded, as SVG (plotters' SVG backend: no font
//! or image libraries).

use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;

use super::stats::Point;

/// What the chart shows.
pub struct ChartData<'a> {
    /// The run's length.
    pub duration: Duration,
    /// Success rate and p99 of the unprotected group over time.
    pub unprotected: &'a [Point],
    /// The same for the protected group.
    pub protected: &'a [Point],
    /// The outage (start, end).
    pub outage: (Duration, Duration),
    /// The breaker's open periods.
    pub open: &'a [(Duration, Duration)],
    /// The script's disturbances (start, end, label), named above the top panel.
    pub phases: Vec<(Duration, Duration, &'static str)>,
    /// A caption line (seed, duration).
    pub caption: String,
}

/// Reads one value of a point.
type Value = fn(&Point) -> f64;

const UNPROTECTED: RGBColor = RGBColor(230, 120, 20);
const PROTECTED: RGBColor = RGBColor(30, 100, 200);
const OUTAGE: RGBColor = RGBColor(150, 150, 150);
const OPEN: RGBColor = RGBColor(220, 40, 40);

/// Writes the chart to `path` (SVG, 1000 x 700).
pub fn write_svg(path: &Path, data: &ChartData<'_>) -> Result<(), String> {
    draw(path, data).map_err(|e| format!("cannot draw the chart: {e}"))
}

fn draw(path: &Path, data: &ChartData<'_>) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&data.caption, ("sans-serif", 22))?;
    let (top, bottom) = root.split_vertically(330);
    let end = data.duration.as_secs_f64();
    let max_p99 = data
        .unprotected
        .iter()
        .chain(data.protected)
        .map(|p| p.p99_ms)
        .fold(10.0_f64, f64::max)
        * 1.1;

    let success: Value = |p| p.success_pct;
    let p99: Value = |p| p.p99_ms;
    let panels = [
        (&top, "success rate (%)", 105.0, success),
        (&bottom, "p99 latency (ms)", max_p99, p99),
    ];
    for (panel, (area, title, y_max, value)) in panels.into_iter().enumerate() {
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..end, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let shade = |(from, to): (Duration, Duration), color: RGBColor, alpha: f64| {
            Rectangle::new(
                [(from.as_secs_f64(), 0.0), (to.as_secs_f64(), y_max)],
                color.mix(alpha).filled(),
            )
        };
        chart
            .draw_series(std::iter::once(shade(data.outage, OUTAGE, 0.25)))?
            .label("outage")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], OUTAGE.mix(0.4).filled())
            });
        chart
            .draw_series(data.open.iter().map(|&span| shade(span, OPEN, 0.18)))?
            .label("breaker open")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], OPEN.mix(0.3).filled()));
        if panel == 0 {
            chart.draw_series(data.phases.iter().map(|&(from, _, label)| {
                let x = from.as_secs_f64().min(end);
                Text::new(label.to_owned(), (x, 104.0), ("sans-serif", 12).into_font())
            }))?;
        }
        for (points, color, name) in [
            (data.unprotected, UNPROTECTED, "unprotected"),
            (data.protected, PROTECTED, "protected"),
        ] {
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|p| (p.t_s, value(p))),
                    color.stroke_width(2),
                ))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_both_series_and_the_shading() {
        let dir = std::env::temp_dir().join(format!("resilient-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chart.svg");
        let pts = |base: f64| -> Vec<Point> {
            (0..10)
                .map(|i| Point {
                    t_s: i as f64 + 0.5,
                    success_pct: base - i as f64,
                    p99_ms: 10.0 * i as f64,
                })
                .collect()
        };
        let s = Duration::from_secs;
        let data = ChartData {
            duration: s(10),
            unprotected: &pts(80.0),
            protected: &pts(99.0),
            outage: (s(6), s(8)),
            open: &[(s(6), s(7))],
            phases: vec![(s(6), s(8), "OUTAGE")],
            caption: "test".into(),
        };
        write_svg(&path, &data).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        for label in [
            "unprotected",
            "protected",
            "outage",
            "breaker open",
            "p99 latency",
        ] {
            assert!(svg.contains(label), "{label} missing");
        }
        assert!(
            svg.matches("<polyline").count() >= 4,
            "two series in two panels"
        );
    }
}
