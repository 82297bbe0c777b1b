//! Charts as inline SVG, drawn with plotters' SVG backend. A [`Chart`] is
//! plain data (series, fitted trends with their bands, event markers);
//! [`svg`] turns it into an `<svg>` string and does no I/O. Text is emitted
//! as SVG `<text>` elements laid out by plotters' estimate, so no font file
//! is read on the host and the browser draws the text with its own fonts.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::stats::median;

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    fn color(self) -> RGBColor {
        RGBColor(self.0, self.1, self.2)
    }
}

pub const MODULE: Rgb = Rgb(0xd6, 0x27, 0x28);
pub const BASELINE: Rgb = Rgb(0x1f, 0x77, 0xb4);
pub const GREEN: Rgb = Rgb(0x2c, 0xa0, 0x2c);
pub const ORANGE: Rgb = Rgb(0xff, 0x7f, 0x0e);
pub const CYAN: Rgb = Rgb(0x17, 0xbe, 0xcf);
pub const GREY: Rgb = Rgb(0x7f, 0x7f, 0x7f);
pub const PURPLE: Rgb = Rgb(0x94, 0x67, 0xbd);
pub const BROWN: Rgb = Rgb(0x8c, 0x56, 0x4b);
pub const DARK_RED: Rgb = Rgb(0x8c, 0x00, 0x00);

/// One series of (x, y) points, drawn as a line.
#[derive(Debug, Clone)]
pub struct Line {
    pub label: String,
    pub color: Rgb,
    pub points: Vec<(f64, f64)>,
}

/// A fitted straight line `y = intercept + slope·x` over `[x0, x1]`, with
/// the band between the lines of the interval's two slopes.
#[derive(Debug, Clone, PartialEq)]
pub struct FitBand {
    pub label: String,
    pub color: Rgb,
    pub x0: f64,
    pub x1: f64,
    /// (slope, intercept) of the estimate and of the interval's lower and upper slopes.
    pub mid: (f64, f64),
    pub lower: (f64, f64),
    pub upper: (f64, f64),
}

impl FitBand {
    /// The trend of `points` with the given slope and interval. The line's
    /// intercept is the Theil–Sen one, the median of `y − slope·x`; the
    /// interval's slopes pivot about the line at the median `x`, so the
    /// band shows the slope's uncertainty, which is what the verdict is
    /// about, and always contains the line. None when there are no finite
    /// points or slopes.
    pub fn fit(label: &str, color: Rgb, points: &[(f64, f64)], slope: f64, lower: f64, upper: f64) -> Option<FitBand> {
        let pts: Vec<(f64, f64)> = points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
        if pts.is_empty() || ![slope, lower, upper].iter().all(|s| s.is_finite()) {
            return None;
        }
        let intercept = median(&pts.iter().map(|(x, y)| y - slope * x).collect::<Vec<_>>());
        let xm = median(&pts.iter().map(|p| p.0).collect::<Vec<_>>());
        let ym = intercept + slope * xm;
        let x0 = pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let x1 = pts.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        Some(FitBand {
            label: label.to_string(),
            color,
            x0,
            x1,
            mid: (slope, intercept),
            lower: (lower, ym - lower * xm),
            upper: (upper, ym - upper * xm),
        })
    }

    fn at(line: (f64, f64), x: f64) -> f64 {
        line.1 + line.0 * x
    }

    /// The band as a closed polygon: the upper envelope of the two bound
    /// lines left to right, then the lower envelope back. The bound lines
    /// cross at the pivot, so the envelope is sampled.
    pub fn band(&self) -> Vec<(f64, f64)> {
        const STEPS: usize = 48;
        let xs: Vec<f64> = (0..=STEPS).map(|i| self.x0 + (self.x1 - self.x0) * i as f64 / STEPS as f64).collect();
        let hi = |x: f64| FitBand::at(self.lower, x).max(FitBand::at(self.upper, x));
        let lo = |x: f64| FitBand::at(self.lower, x).min(FitBand::at(self.upper, x));
        let mut poly: Vec<(f64, f64)> = xs.iter().map(|&x| (x, hi(x))).collect();
        poly.extend(xs.iter().rev().map(|&x| (x, lo(x))));
        poly
    }

    pub fn line(&self) -> [(f64, f64); 2] {
        [(self.x0, FitBand::at(self.mid, self.x0)), (self.x1, FitBand::at(self.mid, self.x1))]
    }
}

/// A vertical line at an event's time.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub x: f64,
    pub label: String,
    pub color: Rgb,
}

/// How y values (bytes) are shown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum YUnit {
    /// KiB, MiB or GiB, whichever suits the largest value.
    Bytes,
    /// The numbers as they are, with a unit name.
    Plain(&'static str),
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_desc: String,
    /// What is plotted, before the unit: `active bytes` → `active bytes (MiB)`.
    pub y_desc: String,
    pub y_unit: YUnit,
    /// Start the y axis at zero (levels), or fit it to the data (growth).
    pub y_from_zero: bool,
    pub lines: Vec<Line>,
    pub trends: Vec<FitBand>,
    pub markers: Vec<Marker>,
    pub width: u32,
    pub height: u32,
}

impl Chart {
    pub fn new(title: &str, x_desc: &str, y_desc: &str) -> Chart {
        Chart {
            title: title.into(),
            x_desc: x_desc.into(),
            y_desc: y_desc.into(),
            y_unit: YUnit::Bytes,
            y_from_zero: false,
            lines: Vec::new(),
            trends: Vec::new(),
            markers: Vec::new(),
            width: 800,
            height: 380,
        }
    }

    /// True when no series has a point: nothing worth drawing.
    pub fn is_empty(&self) -> bool {
        self.lines.iter().all(|l| l.points.is_empty())
    }
}

/// At most `max` points, evenly strided, the last always kept: a long run
/// sampled every second would otherwise put tens of thousands of points
/// into the page for a few hundred pixels.
pub fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let stride = points.len().div_ceil(max - 1);
    let mut v: Vec<(f64, f64)> = points.iter().step_by(stride).copied().collect();
    if v.last() != points.last() {
        v.push(*points.last().expect("non-empty"));
    }
    v
}

const MAX_POINTS: usize = 2000;

fn bytes_unit(max_abs: f64) -> (f64, &'static str) {
    if max_abs >= 4.0 * 1073741824.0 {
        (1073741824.0, "GiB")
    } else if max_abs >= 4.0 * 1048576.0 {
        (1048576.0, "MiB")
    } else {
        (1024.0, "KiB")
    }
}

/// Renders the chart as one `<svg>` element.
pub fn svg(chart: &Chart) -> Result<String, String> {
    let finite = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let lines: Vec<Line> = chart
        .lines
        .iter()
        .map(|l| Line { points: thin(&l.points.iter().copied().filter(finite).collect::<Vec<_>>(), MAX_POINTS), ..l.clone() })
        .collect();
    let bands: Vec<(FitBand, Vec<(f64, f64)>)> = chart.trends.iter().map(|t| (t.clone(), t.band())).filter(|(_, b)| b.iter().all(finite)).collect();

    // Ranges: every point, band and marker must be inside.
    let mut xs: Vec<f64> = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)).collect();
    xs.extend(chart.markers.iter().map(|m| m.x).filter(|x| x.is_finite()));
    let mut ys: Vec<f64> = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).collect();
    ys.extend(bands.iter().flat_map(|(_, b)| b.iter().map(|p| p.1)));
    if chart.y_from_zero {
        ys.push(0.0);
    }
    let (scale, unit) = match chart.y_unit {
        YUnit::Bytes => bytes_unit(ys.iter().fold(0.0f64, |m, y| m.max(y.abs()))),
        YUnit::Plain(u) => (1.0, u),
    };
    let span = |v: &[f64]| -> (f64, f64) {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() || !hi.is_finite() {
            (0.0, 1.0)
        } else if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
            (lo - 0.5 * lo.abs().max(1.0), hi + 0.5 * hi.abs().max(1.0))
        } else {
            (lo, hi)
        }
    };
    let (x0, x1) = span(&xs);
    let (mut y0, mut y1) = span(&ys.iter().map(|y| y / scale).collect::<Vec<_>>());
    let pad = (y1 - y0) * 0.06;
    y1 += pad * 2.0; // room for the marker labels
    if !(chart.y_from_zero && y0 >= 0.0 && y0 < pad) {
        y0 -= pad;
    }
    if chart.y_from_zero && y0 > 0.0 {
        y0 = 0.0;
    }

    // The legend goes below the chart, never over the data: its rows are
    // laid out first and the SVG made tall enough for them.
    let entries = legend_entries(lines.iter().map(|l| (l.label.as_str(), l.color, Swatch::Line)).chain(bands.iter().map(|(t, _)| (t.label.as_str(), t.color, Swatch::Band))));
    let legend = Legend::layout(entries, chart.width);
    let mut out = String::new();
    let area = {
        let root = SVGBackend::with_string(&mut out, (chart.width, chart.height + legend.height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, _) = root.split_vertically(chart.height);
        let area = draw(&top, chart, &lines, &bands, (x0, x1), (y0, y1), scale, unit).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
        area
    };
    // The data area, marked for a browser check, and the legend as plain
    // SVG elements of the same document.
    let mut extra = format!(
        "<rect class=\"plot-area\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"none\"/>\n",
        area.0.start,
        area.1.start,
        area.0.end - area.0.start,
        area.1.end - area.1.start
    );
    extra.push_str(&legend.svg(chart.height));
    let end = out.rfind("</svg>").ok_or("plotters wrote no </svg>")?;
    out.insert_str(end, &extra);
    Ok(out)
}

/// What a legend entry's swatch shows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Swatch {
    /// A series: its line.
    Line,
    /// A fitted trend: its band with the dashed line.
    Band,
}

#[derive(Debug, Clone)]
struct Entry {
    label: String,
    color: Rgb,
    swatch: Swatch,
    /// Top-left of the entry in the legend, and its width.
    x: u32,
    row: u32,
}

/// The legend below a chart: entries left to right, wrapped into rows.
#[derive(Debug, Clone)]
struct Legend {
    entries: Vec<Entry>,
    /// Its height, margins included (0 without entries).
    height: u32,
    width: u32,
}

const LEGEND_FONT: u32 = 12;
const LEGEND_ROW: u32 = 18;
const LEGEND_PAD: u32 = 8;
const SWATCH: u32 = 20;

fn legend_entries<'a>(it: impl Iterator<Item = (&'a str, Rgb, Swatch)>) -> Vec<Entry> {
    it.map(|(label, color, swatch)| Entry { label: label.to_string(), color, swatch, x: 0, row: 0 }).collect()
}

/// A generous estimate of a label's width in pixels at the legend's font:
/// wide fonts (DejaVu Sans, Verdana) run near 0.62 em a character.
fn text_width(s: &str) -> u32 {
    (s.chars().count() as f64 * LEGEND_FONT as f64 * 0.64).ceil() as u32
}

impl Legend {
    fn layout(mut entries: Vec<Entry>, width: u32) -> Legend {
        let left = 72; // under the data area (the y label area is 72 wide)
        let right = width.saturating_sub(12);
        let (mut x, mut row) = (left, 0);
        let mut max_right = left;
        for e in entries.iter_mut() {
            let w = SWATCH + 6 + text_width(&e.label);
            if x > left && x + w > right {
                row += 1;
                x = left;
            }
            e.x = x;
            e.row = row;
            max_right = max_right.max(x + w);
            x += w + 22;
        }
        let height = if entries.is_empty() { 0 } else { (row + 1) * LEGEND_ROW + 2 * LEGEND_PAD };
        Legend { entries, height, width: max_right - left + 2 * LEGEND_PAD }
    }

    /// The legend's SVG, its box starting at `top`.
    fn svg(&self, top: u32) -> String {
        use std::fmt::Write;
        if self.entries.is_empty() {
            return String::new();
        }
        let left = 72 - LEGEND_PAD;
        let mut s = String::from("<g class=\"legend\">\n");
        let _ = writeln!(
            s,
            "<rect class=\"legend-box\" x=\"{left}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#FFFFFF\" stroke=\"#BBBBBB\"/>",
            top + 2,
            self.width,
            self.height - 4
        );
        for e in &self.entries {
            let cy = top + LEGEND_PAD + e.row * LEGEND_ROW + LEGEND_ROW / 2;
            let c = format!("#{:02X}{:02X}{:02X}", e.color.0, e.color.1, e.color.2);
            match e.swatch {
                Swatch::Line => {
                    let _ = writeln!(s, "<line x1=\"{}\" y1=\"{cy}\" x2=\"{}\" y2=\"{cy}\" stroke=\"{c}\" stroke-width=\"2\"/>", e.x, e.x + SWATCH);
                }
                Swatch::Band => {
                    let _ = writeln!(s, "<rect x=\"{}\" y=\"{}\" width=\"{SWATCH}\" height=\"10\" fill=\"{c}\" fill-opacity=\"0.3\"/>", e.x, cy - 5);
                    let _ = writeln!(s, "<line x1=\"{}\" y1=\"{cy}\" x2=\"{}\" y2=\"{cy}\" stroke=\"{c}\" stroke-width=\"1\" stroke-dasharray=\"6 4\"/>", e.x, e.x + SWATCH);
                }
            }
            let _ = writeln!(
                s,
                "<text class=\"legend-label\" x=\"{}\" y=\"{cy}\" dominant-baseline=\"central\" font-family=\"sans-serif\" font-size=\"{LEGEND_FONT}\" fill=\"#222222\">{}</text>",
                e.x + SWATCH + 6,
                escape(&e.label)
            );
        }
        s.push_str("</g>\n");
        s
    }
}

/// Text as SVG character data or an attribute value.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The data area's pixels: x and y ranges.
type PixelArea = (std::ops::Range<i32>, std::ops::Range<i32>);

type DrawResult = Result<PixelArea, DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>>;

#[allow(clippy::too_many_arguments)]
fn draw(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    chart: &Chart,
    lines: &[Line],
    bands: &[(FitBand, Vec<(f64, f64)>)],
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    scale: f64,
    unit: &str,
) -> DrawResult {
    let mut c = ChartBuilder::on(root)
        .caption(&chart.title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(72)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let y_desc = format!("{} ({unit})", chart.y_desc);
    let (xd, yd) = (tick_decimals(x0, x1), tick_decimals(y0, y1));
    c.configure_mesh()
        .x_labels(TICKS)
        .y_labels(TICKS)
        .x_desc(chart.x_desc.as_str())
        .y_desc(y_desc.as_str())
        .x_label_formatter(&|x| fmt_tick(*x, xd))
        .y_label_formatter(&|y| fmt_tick(*y, yd))
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .label_style(("sans-serif", 12))
        .draw()?;

    for (t, band) in bands {
        let color = t.color.color();
        let poly: Vec<(f64, f64)> = band.iter().map(|&(x, y)| (x, y / scale)).collect();
        c.draw_series(std::iter::once(Polygon::new(poly, color.mix(0.18).filled())))?;
    }
    for l in lines {
        let color = l.color.color();
        let style = color.stroke_width(2);
        c.draw_series(LineSeries::new(l.points.iter().map(|&(x, y)| (x, y / scale)), style))?;
    }
    for (t, _) in bands {
        let color = t.color.color();
        let style = color.mix(0.9).stroke_width(1);
        let [a, b] = t.line();
        c.draw_series(DashedLineSeries::new([(a.0, a.1 / scale), (b.0, b.1 / scale)], 6, 4, style))?;
    }
    for (i, m) in chart.markers.iter().enumerate() {
        if !m.x.is_finite() {
            continue;
        }
        let color = m.color.color();
        c.draw_series(std::iter::once(PathElement::new(vec![(m.x, y0), (m.x, y1)], color.stroke_width(1))))?;
        // Labels of nearby events would overlap: each goes one row lower.
        // Near the right edge a label goes to the left of its line.
        let row = (i % 4) as i32;
        let font = ("sans-serif", 11).into_font().color(&color);
        let (dx, font) = if m.x > x0 + 0.7 * (x1 - x0) { (-3, font.pos(Pos::new(HPos::Right, VPos::Top))) } else { (3, font) };
        let label = EmptyElement::at((m.x, y1)) + Text::new(m.label.clone(), (dx, 3 + 13 * row), font);
        c.draw_series(std::iter::once(label))?;
    }
    Ok(c.plotting_area().get_pixel_range())
}

/// Labelled ticks per axis, at most (plotters places them at 1, 2 or 5 ×
/// a power of ten).
const TICKS: usize = 11;

/// The ticks plotters labels on an axis over `lo..hi`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    RangedCoordf64::from(lo..hi).key_points(TICKS)
}

/// Decimals for an axis's labels: the fewest that tell every two adjacent
/// ticks apart, so the precision follows the range (a 0.25 MiB range at
/// 15 MiB needs two, a 400 MiB one none).
fn tick_decimals(lo: f64, hi: f64) -> usize {
    let t = ticks(lo, hi);
    (0..=9).find(|&d| t.windows(2).all(|w| fmt_tick(w[0], d) != fmt_tick(w[1], d))).unwrap_or(9)
}

/// An axis number with `decimals` digits after the point (never `-0`).
fn fmt_tick(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    match s.strip_prefix('-') {
        Some(rest) if rest.bytes().all(|b| b == b'0' || b == b'.') => rest.to_string(),
        _ => s,
    }
}

/// How plotters' SVG backend writes a text element's content, for tests
/// that look for a label.
#[cfg(test)]
pub(crate) fn svg_text(s: &str) -> String {
    format!(">\n{s}\n</text>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn growing(n: usize) -> Vec<(f64, f64)> {
        (0..n).map(|i| (i as f64, 50e6 + 1e6 * i as f64 + ((i * 7919) % 13) as f64 * 1e4)).collect()
    }

    fn polyline_points(svg: &str) -> Vec<usize> {
        svg.split("<polyline").skip(1).map(|p| p.split("points=\"").nth(1).unwrap_or("").split('"').next().unwrap_or("").split_whitespace().count()).collect()
    }

    #[test]
    fn a_chart_is_one_svg_with_every_point_of_its_series() {
        let mut c = Chart::new("dentry", "run time (s)", "active bytes");
        c.lines.push(Line { label: "module".into(), color: MODULE, points: growing(40) });
        let s = svg(&c).unwrap();
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"), "{}", &s[..80]);
        assert!(polyline_points(&s).contains(&40), "{:?}", polyline_points(&s));
        assert!(s.contains(&svg_text("dentry")) && s.contains("active bytes (MiB)"), "{s}");
        assert!(!s.contains("NaN") && !s.contains("inf"));
    }

    #[test]
    fn the_band_is_a_filled_polygon_around_the_fitted_line() {
        let pts = growing(30);
        let t = FitBand::fit("module: Theil–Sen, 98 % band", MODULE, &pts, 1e6, 0.98e6, 1.02e6).unwrap();
        // The fitted line passes through the data's middle, and the band
        // contains it everywhere.
        assert!((t.mid.1 - 50.06e6).abs() < 0.1e6, "{t:?}");
        let band = t.band();
        let n = band.len() / 2;
        for (i, &(x, hi)) in band[..n].iter().enumerate() {
            let lo = band[band.len() - 1 - i].1;
            let mid = t.mid.1 + t.mid.0 * x;
            assert!(lo <= mid + 1.0 && mid <= hi + 1.0, "x {x}: {lo} {mid} {hi}");
        }
        let mut c = Chart::new("Slab", "run time (s)", "bytes");
        c.lines.push(Line { label: "module".into(), color: MODULE, points: pts });
        c.trends.push(t);
        let s = svg(&c).unwrap();
        // plotters draws a filled polygon with the colour at the band's opacity.
        let poly = s.split("<polygon").nth(1).expect("a band polygon");
        assert!(poly.contains("fill=\"#D62728\"") && poly.contains("opacity=\"0.18"), "{poly}");
        assert!(s.contains("Theil–Sen, 98 % band"));
    }

    #[test]
    fn markers_are_vertical_lines_with_labels_and_widen_the_axis() {
        let mut c = Chart::new("memory", "run time (s)", "bytes");
        c.lines.push(Line { label: "MemAvailable".into(), color: GREEN, points: growing(10).into_iter().map(|(x, y)| (x + 5.0, y)).collect() });
        c.markers.push(Marker { x: 1.5, label: "module loaded".into(), color: PURPLE });
        c.markers.push(Marker { x: 5.0, label: "workload <started> & \"so\"".into(), color: GREEN });
        let s = svg(&c).unwrap();
        assert!(s.contains(&svg_text("module loaded")), "{s}");
        // Text from a run is escaped in the SVG.
        assert!(s.contains("workload &lt;started&gt; &amp; &quot;so&quot;"), "{s}");
        assert!(s.matches("stroke=\"#9467BD\"").count() >= 1, "{s}");
    }

    #[test]
    fn degenerate_data_still_draws() {
        let mut c = Chart::new("flat", "t", "bytes");
        c.lines.push(Line { label: "one point".into(), color: GREY, points: vec![(3.0, 100.0), (f64::NAN, 1.0)] });
        let s = svg(&c).unwrap();
        assert!(s.contains("<svg") && !s.contains("NaN"));
        assert!(FitBand::fit("x", GREY, &[], 1.0, 0.0, 2.0).is_none());
        assert!(FitBand::fit("x", GREY, &[(0.0, 1.0)], f64::NAN, 0.0, 2.0).is_none());
    }

    #[test]
    fn tick_labels_follow_the_range() {
        // A 0.25 MiB range at 15.5 MiB: one decimal would repeat labels
        // (15.5, 15.5, 15.5, 15.6); every adjacent pair differs.
        let (lo, hi) = (15.4, 15.65);
        let d = tick_decimals(lo, hi);
        let labels: Vec<String> = ticks(lo, hi).iter().map(|&v| fmt_tick(v, d)).collect();
        assert!(labels.len() >= 4, "{labels:?}");
        assert!(labels.windows(2).all(|w| w[0] != w[1]), "{labels:?}");
        assert_eq!(d, 2, "{labels:?}");
        // No more digits than the step needs.
        assert_eq!(tick_decimals(0.0, 400.0), 0);
        assert_eq!(tick_decimals(0.0, 1.0), 1);
        assert_eq!(fmt_tick(-0.0001, 2), "0.00");
        // The drawn chart has the same distinct labels.
        let mut c = Chart::new("Slab", "run time (s)", "bytes");
        c.lines.push(Line { label: "Slab".into(), color: MODULE, points: (0..20).map(|i| (i as f64, (15.42 + 0.01 * i as f64) * 1048576.0)).collect() });
        let s = svg(&c).unwrap();
        let y_labels: Vec<&str> = s.split("</text>").filter_map(|t| t.rsplit(">\n").next()).map(str::trim).filter(|t| t.starts_with("15.")).collect();
        assert!(y_labels.len() >= 4 && y_labels.windows(2).all(|w| w[0] != w[1]), "{y_labels:?}");
    }

    /// A rect's x, y, width and height by its class.
    fn rect(svg: &str, class: &str) -> [f64; 4] {
        let r = svg.split(&format!("<rect class=\"{class}\"")).nth(1).unwrap_or_else(|| panic!("no {class} in {svg}"));
        let attr = |k: &str| r.split(&format!(" {k}=\"")).nth(1).unwrap().split('"').next().unwrap().parse::<f64>().unwrap();
        [attr("x"), attr("y"), attr("width"), attr("height")]
    }

    #[test]
    fn the_legend_is_below_the_data_and_wraps_within_the_width() {
        let mut c = Chart::new("Slab", "run time (s)", "bytes");
        for i in 0..8 {
            c.lines.push(Line { label: format!("series <{i}> with a long label & more words"), color: MODULE, points: growing(20) });
        }
        let t = FitBand::fit("module fit", MODULE, &growing(20), 1e6, 0.9e6, 1.1e6).unwrap();
        c.trends.push(t);
        let s = svg(&c).unwrap();
        let [ax, ay, aw, ah] = rect(&s, "plot-area");
        let [lx, ly, lw, lh] = rect(&s, "legend-box");
        assert!(ly >= ay + ah, "the legend box starts at {ly}, inside the data area ending at {}", ay + ah);
        assert!(ly >= c.height as f64, "below the chart's own height");
        assert!(aw > 500.0 && ax > 0.0, "{ax} {aw}");
        assert!(lx >= 0.0 && lx + lw <= c.width as f64, "the legend is {lx}..{} of {}", lx + lw, c.width);
        // Nine entries of ~45 characters do not fit one row: several rows,
        // and the SVG is tall enough for them.
        assert!(lh > 3.0 * LEGEND_ROW as f64, "{lh}");
        let height: f64 = s.split("height=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
        assert!(height >= ly + lh, "the SVG ({height}) cuts the legend off at {}", ly + lh);
        assert!(s.contains(&format!("viewBox=\"0 0 {} {height}\"", c.width)), "scales by its viewBox");
        assert_eq!(s.matches("class=\"legend-label\"").count(), 9);
        assert!(s.contains("series &lt;3&gt; with a long label &amp; more words"), "labels are escaped");
    }

    #[test]
    fn thinning_keeps_the_ends_and_bounds_the_count() {
        let pts: Vec<(f64, f64)> = (0..10_001).map(|i| (i as f64, 0.0)).collect();
        let t = thin(&pts, 2000);
        assert!(t.len() <= 2001 && t.len() > 1000, "{}", t.len());
        assert_eq!(t.first(), pts.first());
        assert_eq!(t.last(), pts.last());
        assert_eq!(thin(&pts[..5], 2000).len(), 5);
    }
}
