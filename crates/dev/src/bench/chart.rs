//! A small self-contained SVG: two panels (seconds and operator requests against the number of
//! sets, log-scaled N), one line per column.

use std::fmt::Write;

/// One line of a panel: a label and its `(n, value)` points.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// `(sets, value)`, in any order.
    pub points: Vec<(f64, f64)>,
}

const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
const W: f64 = 360.0;
const H: f64 = 240.0;
const PAD: f64 = 44.0;

fn panel(out: &mut String, x0: f64, title: &str, series: &[Series]) {
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
    let (nmin, nmax) =
        all.iter().fold((f64::MAX, f64::MIN), |(a, b), (n, _)| (a.min(*n), b.max(*n)));
    let vmax = all.iter().map(|(_, v)| *v).fold(0.0f64, f64::max).max(1e-9);
    let lx = |n: f64| {
        let (a, b) = (nmin.max(1.0).log10(), nmax.max(1.0).log10());
        let t = if b > a { (n.max(1.0).log10() - a) / (b - a) } else { 0.5 };
        x0 + PAD + t * (W - 2.0 * PAD)
    };
    let ly = |v: f64| H - PAD - v / vmax * (H - 2.0 * PAD);
    let _ = write!(
        out,
        r#"<g font-family="sans-serif" font-size="11"><text x="{}" y="16" font-size="13">{title}</text>"#,
        x0 + PAD
    );
    let _ = write!(
        out,
        r#"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="black"/><line x1="{0}" y1="{3}" x2="{0}" y2="{1}" stroke="black"/>"#,
        x0 + PAD,
        H - PAD,
        x0 + W - PAD,
        PAD
    );
    let _ = write!(out, r#"<text x="{}" y="{}">{vmax:.1}</text>"#, x0 + 2.0, PAD + 4.0);
    let _ = write!(out, r#"<text x="{}" y="{}">0</text>"#, x0 + PAD - 12.0, H - PAD + 4.0);
    let mut ns: Vec<f64> = all.iter().map(|(n, _)| *n).collect();
    ns.sort_by(f64::total_cmp);
    ns.dedup();
    for n in &ns {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{n}</text>"#,
            lx(*n),
            H - PAD + 16.0
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">sets (N)</text>"#,
        x0 + W / 2.0,
        H - 6.0
    );
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut points = s.points.clone();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> =
            points.iter().map(|(n, v)| format!("{:.1},{:.1}", lx(*n), ly(*v))).collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for (n, v) in &points {
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                lx(*n),
                ly(*v)
            );
        }
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" fill="{color}">{}</text>"#,
            x0 + PAD + 6.0,
            PAD + 14.0 + 13.0 * i as f64,
            escape(&s.label)
        );
    }
    out.push_str("</g>");
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The chart: converge seconds on the left, operator requests on the right.
pub fn render(seconds: &[Series], requests: &[Series]) -> String {
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{H}" viewBox="0 0 {} {H}"><rect width="100%" height="100%" fill="white"/>"#,
        2.0 * W,
        2.0 * W
    );
    panel(&mut out, 0.0, "converge: seconds to all Running", seconds);
    panel(&mut out, W, "converge: operator requests", requests);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_is_one_svg_with_a_line_per_series() {
        let s =
            |label: &str| Series { label: label.into(), points: vec![(10.0, 1.0), (100.0, 4.0)] };
        let svg = render(&[s("ours"), s("raw <client>")], &[s("ours")]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("raw &lt;client&gt;"));
    }
}
