//! Small hand-written SVG charts for the report: lines per iteration and a Pareto scatter.
//!
//! No plotting dependency: the charts are plain SVG text, deterministic for given data, readable
//! in any browser and in Markdown viewers that show images.

use std::fmt::Write as _;

/// One named line of a line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points `(x, y)`; non-finite values are skipped.
    pub points: Vec<(f64, f64)>,
}

/// One point of a scatter chart.
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterPoint {
    /// Horizontal value.
    pub x: f64,
    /// Vertical value.
    pub y: f64,
    /// Short label drawn beside the point (e.g. the iteration number).
    pub label: String,
    /// Drawn emphasised (e.g. on the Pareto front).
    pub highlight: bool,
}

const W: f64 = 640.0;
const H: f64 = 360.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A value range padded so that a flat series still gets a visible band.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-12 {
        let pad = if lo.abs() > 1e-12 {
            lo.abs() * 0.1
        } else {
            1.0
        };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// Formats a tick value compactly (engineering style for very small or large values).
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_string()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

struct Frame {
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x.0) / (self.x.1 - self.x.0) * (W - LEFT - RIGHT)
    }
    fn py(&self, y: f64) -> f64 {
        H - BOTTOM - (y - self.y.0) / (self.y.1 - self.y.0) * (H - TOP - BOTTOM)
    }
}

fn open(svg: &mut String, title: &str, x_label: &str, y_label: &str, f: &Frame) {
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        W / 2.0,
        esc(title)
    );
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    let _ = writeln!(
        svg,
        "<rect x=\"{x0}\" y=\"{y0}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>",
        x1 - x0,
        y1 - y0
    );
    for i in 0..=4 {
        let t = f64::from(i) / 4.0;
        let yv = f.y.0 + t * (f.y.1 - f.y.0);
        let yp = f.py(yv);
        let xv = f.x.0 + t * (f.x.1 - f.x.0);
        let xp = f.px(xv);
        let _ = writeln!(
            svg,
            "<line x1=\"{x0}\" y1=\"{yp:.1}\" x2=\"{x1}\" y2=\"{yp:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <text x=\"{xp:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x0 - 4.0,
            yp + 4.0,
            fmt_num(yv),
            y1 + 14.0,
            fmt_num(xv)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text x=\"14\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">{}</text>",
        (x0 + x1) / 2.0,
        H - 10.0,
        esc(x_label),
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        esc(y_label)
    );
}

/// A line chart of one or more series sharing one y axis (markers at every point).
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let all = || series.iter().flat_map(|s| s.points.iter().filter(finite));
    let frame = Frame {
        x: range(all().map(|p| p.0)),
        y: range(all().map(|p| p.1)),
    };
    let mut svg = String::new();
    open(&mut svg, title, x_label, y_label, &frame);
    for ((k, s), &colour) in series.iter().enumerate().zip(COLOURS.iter().cycle()) {
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(finite)
            .map(|&(x, y)| format!("{:.1},{:.1}", frame.px(x), frame.py(y)))
            .collect();
        if pts.len() > 1 {
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                pts.join(" ")
            );
        }
        for &(x, y) in s.points.iter().filter(finite) {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>{}: {}</title></circle>",
                frame.px(x),
                frame.py(y),
                esc(&s.name),
                fmt_num(y)
            );
        }
        let ly = TOP + 10.0 + 16.0 * k as f64;
        let _ = writeln!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"4\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            W - RIGHT + 10.0,
            ly - 4.0,
            W - RIGHT + 26.0,
            ly,
            esc(&s.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A scatter chart; highlighted points are drawn filled and joined in x order (a Pareto front).
pub fn scatter_chart(title: &str, x_label: &str, y_label: &str, points: &[ScatterPoint]) -> String {
    let ok: Vec<&ScatterPoint> = points
        .iter()
        .filter(|p| p.x.is_finite() && p.y.is_finite())
        .collect();
    let frame = Frame {
        x: range(ok.iter().map(|p| p.x)),
        y: range(ok.iter().map(|p| p.y)),
    };
    let mut svg = String::new();
    open(&mut svg, title, x_label, y_label, &frame);
    let mut front: Vec<&&ScatterPoint> = ok.iter().filter(|p| p.highlight).collect();
    front.sort_by(|a, b| a.x.total_cmp(&b.x));
    if front.len() > 1 {
        let pts: Vec<String> = front
            .iter()
            .map(|p| format!("{:.1},{:.1}", frame.px(p.x), frame.py(p.y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"#d62728\" stroke-dasharray=\"4 3\" points=\"{}\"/>",
            pts.join(" ")
        );
    }
    for p in &ok {
        let (fill, stroke) = if p.highlight {
            ("#d62728", "#d62728")
        } else {
            ("white", "#1f77b4")
        };
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.5\"><title>{}: ({}, {})</title></circle>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\">{}</text>",
            frame.px(p.x),
            frame.py(p.y),
            esc(&p.label),
            fmt_num(p.x),
            fmt_num(p.y),
            frame.px(p.x) + 5.0,
            frame.py(p.y) - 5.0,
            esc(&p.label)
        );
    }
    let _ = writeln!(
        svg,
        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#d62728\"/><text x=\"{:.1}\" y=\"{:.1}\">Pareto front</text>\
         <circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"white\" stroke=\"#1f77b4\"/><text x=\"{:.1}\" y=\"{:.1}\">dominated</text>",
        W - RIGHT + 16.0,
        TOP + 6.0,
        W - RIGHT + 26.0,
        TOP + 10.0,
        W - RIGHT + 16.0,
        TOP + 22.0,
        W - RIGHT + 26.0,
        TOP + 26.0
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_chart_is_svg_with_every_point_and_escaped_labels() {
        let s = line_chart(
            "A <b>",
            "iteration",
            "value",
            &[
                Series {
                    name: "CM".into(),
                    points: vec![(1.0, 0.5), (2.0, 0.7), (3.0, f64::NAN)],
                },
                Series {
                    name: "A2".into(),
                    points: vec![(1.0, 0.2)],
                },
            ],
        );
        assert!(s.starts_with("<svg"));
        assert!(s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<circle").count(), 3);
        assert!(s.contains("A &lt;b&gt;"));
        assert!(!s.contains("NaN"));
    }

    #[test]
    fn scatter_marks_front_points() {
        let pts = vec![
            ScatterPoint {
                x: 1.0,
                y: 1.0,
                label: "#1".into(),
                highlight: true,
            },
            ScatterPoint {
                x: 2.0,
                y: 0.5,
                label: "#2".into(),
                highlight: false,
            },
            ScatterPoint {
                x: 3.0,
                y: 2.0,
                label: "#3".into(),
                highlight: true,
            },
        ];
        let s = scatter_chart("front", "x", "y", &pts);
        assert_eq!(s.matches("fill=\"#d62728\" stroke=\"#d62728\"").count(), 2);
        assert!(s.contains("<polyline"));
    }

    #[test]
    fn flat_or_empty_data_does_not_divide_by_zero() {
        let s = line_chart(
            "flat",
            "x",
            "y",
            &[Series {
                name: "c".into(),
                points: vec![(1.0, 3.0)],
            }],
        );
        assert!(!s.contains("NaN") && !s.contains("inf"));
        let e = scatter_chart("empty", "x", "y", &[]);
        assert!(!e.contains("NaN"));
    }

    #[test]
    fn numbers_format_compactly() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(12345.6), "12346");
        assert_eq!(fmt_num(0.5), "0.500");
        assert_eq!(fmt_num(1.5e-6), "1.50e-6");
    }
}
