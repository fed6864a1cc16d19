//! The four charts, each drawn once to SVG (inlined in the HTML report) and
//! once to a PNG (for people who attach pictures), with `plotters`.
//!
//! Text needs a font. We do not ship one: plotters' `ab_glyph` renderer is fed
//! a TrueType file found at run time (`--font`, else DejaVu Sans from Debian's
//! `fonts-dejavu-core`, Liberation Sans or FreeSans). With none, the charts
//! are drawn without any text (titles, ticks, legends) rather than failing:
//! the HTML report around them still names and explains each one.
//!
//! Large runs are thinned before drawing (the response-time chart shows
//! per-bucket mean and max beyond [`MAX_POINTS`] requests) so a million-request
//! run still gives a small SVG.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::LoadtestError;
use crate::record::Record;

/// Size of every chart, in pixels.
pub const WIDTH: u32 = 1000;
/// Size of every chart, in pixels.
pub const HEIGHT: u32 = 600;
/// Requests drawn one by one in the response-time chart; beyond this, buckets.
pub const MAX_POINTS: usize = 5000;

/// File stems of the charts, in report order.
pub const NAMES: [&str; 4] = [
    "response_times",
    "success_failure_pie",
    "latency_histogram",
    "throughput",
];

const OK: RGBColor = RGBColor(38, 139, 210);
const OK_LIGHT: RGBColor = RGBColor(160, 200, 235);
const SUCCESS: RGBColor = RGBColor(46, 160, 67);
const FAILURE: RGBColor = RGBColor(218, 54, 51);
const P50: RGBColor = RGBColor(255, 140, 0);

/// One rendered chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// File stem, e.g. `response_times`.
    pub name: &'static str,
    /// Heading used in the report.
    pub title: &'static str,
    pub svg: String,
    pub png: Vec<u8>,
}

/// Fonts we look for, in order, when `--font` is not given.
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers a font for plotters once per process; returns the file used, or
/// `None` when charts must be drawn without text.
///
/// plotters keeps fonts in a global table and wants `&'static` bytes, so the
/// file is read once and leaked (a few hundred KiB, once).
pub fn font(preferred: Option<&Path>) -> Option<&'static Path> {
    static FONT: OnceLock<Option<PathBuf>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates = preferred
            .map(Path::to_path_buf)
            .into_iter()
            .chain(FONT_CANDIDATES.iter().map(PathBuf::from));
        for path in candidates {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return Some(path);
            }
        }
        None
    })
    .as_deref()
}

/// Draws all four charts.
pub fn render_all(records: &[Record], with_text: bool) -> Result<Vec<Chart>, LoadtestError> {
    let charts: [(&'static str, &'static str, &dyn Draw); 4] = [
        (
            NAMES[0],
            "Response time per upload",
            &ResponseTimes::new(records),
        ),
        (NAMES[1], "Successes and failures", &Pie::new(records)),
        (
            NAMES[2],
            "Latency distribution (successful requests)",
            &LatencyHistogram::new(records),
        ),
        (NAMES[3], "Throughput per second", &Throughput::new(records)),
    ];
    charts
        .into_iter()
        .map(|(name, title, chart)| {
            let fail = |reason: String| LoadtestError::Plot {
                name: name.to_string(),
                reason,
            };
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
                chart.svg(&root, title, with_text).map_err(fail)?;
                root.present().map_err(|e| fail(e.to_string()))?;
            }
            let mut rgb = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
            {
                let root =
                    BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
                chart.bitmap(&root, title, with_text).map_err(fail)?;
                root.present().map_err(|e| fail(e.to_string()))?;
            }
            let png = encode_png(&rgb, WIDTH, HEIGHT).map_err(|e| fail(e.to_string()))?;
            Ok(Chart {
                name,
                title,
                svg,
                png,
            })
        })
        .collect()
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

type DrawResult = Result<(), String>;

/// A chart that can draw itself on any plotters backend. Object-safe
/// wrappers for the two backends we use, since trait objects cannot have
/// generic methods.
trait Draw {
    fn svg(&self, root: &DrawingArea<SVGBackend<'_>, Shift>, title: &str, text: bool)
    -> DrawResult;
    fn bitmap(
        &self,
        root: &DrawingArea<BitMapBackend<'_>, Shift>,
        title: &str,
        text: bool,
    ) -> DrawResult;
}

/// Implements [`Draw`] for a type with a generic `draw` method.
macro_rules! draw_on_both {
    ($t:ty) => {
        impl Draw for $t {
            fn svg(
                &self,
                root: &DrawingArea<SVGBackend<'_>, Shift>,
                title: &str,
                text: bool,
            ) -> DrawResult {
                self.draw(root, title, text).map_err(|e| e.to_string())
            }
            fn bitmap(
                &self,
                root: &DrawingArea<BitMapBackend<'_>, Shift>,
                title: &str,
                text: bool,
            ) -> DrawResult {
                self.draw(root, title, text).map_err(|e| e.to_string())
            }
        }
    };
}

/// A chart with two `f64` axes.
type Chart2d<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

type AreaResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// One axis of a chart.
struct Axis<'a> {
    range: std::ops::Range<f64>,
    desc: &'a str,
    /// Whole-number tick labels (counts, request numbers, seconds).
    integer: bool,
}

impl<'a> Axis<'a> {
    fn new(range: std::ops::Range<f64>, desc: &'a str, integer: bool) -> Self {
        Self {
            range,
            desc,
            integer,
        }
    }
}

/// Common frame: white background, optional title and axis descriptions.
fn cartesian<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    text: bool,
    x: Axis<'_>,
    y: Axis<'_>,
) -> Result<Chart2d<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(root);
    builder.margin(20);
    if text {
        builder
            .caption(title, ("sans-serif", 26))
            .x_label_area_size(45)
            .y_label_area_size(70);
    }
    let mut chart = builder.build_cartesian_2d(x.range, y.range)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc(x.desc)
            .y_desc(y.desc)
            .label_style(("sans-serif", 15));
        if x.integer {
            mesh.x_label_formatter(&integer);
        }
        if y.integer {
            mesh.y_label_formatter(&integer);
        }
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    Ok(chart)
}

/// The series legend in the upper right corner; only with text, since a
/// legend without labels says nothing.
fn legend<'a, DB: DrawingBackend + 'a>(chart: &mut Chart2d<'a, DB>, text: bool) -> AreaResult<DB> {
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 15))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    Ok(())
}

/// Tick labels for counts, request numbers and seconds: whole numbers only
/// (a tick between two integers gets no label rather than a rounded one).
fn integer(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

/// Top of the y axis: headroom so the legend (upper right) rarely hides data.
fn upper(max: f64) -> f64 {
    if max > 0.0 { max * 1.2 } else { 1.0 }
}

/// Response time of each request in schedule order, failures in red.
struct ResponseTimes {
    n: usize,
    /// (request #, ms) of successes, or per-bucket means when thinned.
    ok: Vec<(f64, f64)>,
    /// Per-bucket maxima when thinned.
    ok_max: Vec<(f64, f64)>,
    failed: Vec<(f64, f64)>,
}

impl ResponseTimes {
    fn new(records: &[Record]) -> Self {
        let ms = |r: &Record| r.response_time_us as f64 / 1000.0;
        let n = records.len();
        let failed_all: Vec<(f64, f64)> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.success())
            .map(|(i, r)| (i as f64, ms(r)))
            .collect();
        let step = failed_all.len().div_ceil(MAX_POINTS).max(1);
        let failed = failed_all.into_iter().step_by(step).collect();
        if n <= MAX_POINTS {
            let ok = records
                .iter()
                .enumerate()
                .filter(|(_, r)| r.success())
                .map(|(i, r)| (i as f64, ms(r)))
                .collect();
            return Self {
                n,
                ok,
                ok_max: Vec::new(),
                failed,
            };
        }
        let bucket = n.div_ceil(MAX_POINTS / 2);
        let (mut ok, mut ok_max) = (Vec::new(), Vec::new());
        for (b, chunk) in records.chunks(bucket).enumerate() {
            let x = (b * bucket + chunk.len() / 2) as f64;
            let times: Vec<f64> = chunk.iter().filter(|r| r.success()).map(ms).collect();
            if !times.is_empty() {
                ok.push((x, times.iter().sum::<f64>() / times.len() as f64));
                ok_max.push((x, times.iter().copied().fold(0.0, f64::max)));
            }
        }
        Self {
            n,
            ok,
            ok_max,
            failed,
        }
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        title: &str,
        text: bool,
    ) -> AreaResult<DB> {
        let ymax = self
            .ok
            .iter()
            .chain(&self.ok_max)
            .chain(&self.failed)
            .map(|p| p.1)
            .fold(0.0, f64::max);
        let xmax = (self.n.max(2) - 1) as f64;
        let mut chart = cartesian(
            root,
            title,
            text,
            Axis::new(0.0..xmax, "request #", true),
            Axis::new(0.0..upper(ymax), "response time (ms)", false),
        )?;
        let thinned = !self.ok_max.is_empty();
        if thinned {
            chart
                .draw_series(LineSeries::new(
                    self.ok_max.iter().copied(),
                    OK_LIGHT.stroke_width(1),
                ))?
                .label("max per bucket")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], OK_LIGHT.stroke_width(2)));
            chart
                .draw_series(LineSeries::new(self.ok.iter().copied(), OK.stroke_width(1)))?
                .label("mean per bucket")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], OK.stroke_width(2)));
        } else {
            chart.draw_series(LineSeries::new(
                self.ok.iter().copied(),
                OK_LIGHT.stroke_width(1),
            ))?;
            chart
                .draw_series(self.ok.iter().map(|&p| Circle::new(p, 2, OK.filled())))?
                .label("success")
                .legend(|(x, y)| Circle::new((x + 10, y), 4, OK.filled()));
        }
        chart
            .draw_series(
                self.failed
                    .iter()
                    .map(|&p| Cross::new(p, 4, FAILURE.stroke_width(2))),
            )?
            .label("failure")
            .legend(|(x, y)| Cross::new((x + 10, y), 4, FAILURE.stroke_width(2)));
        legend(&mut chart, text)
    }
}
draw_on_both!(ResponseTimes);

/// Successes versus failures.
struct Pie {
    successes: u64,
    failures: u64,
}

impl Pie {
    fn new(records: &[Record]) -> Self {
        let successes = records.iter().filter(|r| r.success()).count() as u64;
        Self {
            successes,
            failures: records.len() as u64 - successes,
        }
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        title: &str,
        text: bool,
    ) -> AreaResult<DB> {
        root.fill(&WHITE)?;
        let (w, h) = (WIDTH as i32, HEIGHT as i32);
        let center = (
            w / 2 - if text { 120 } else { 0 },
            h / 2 + if text { 20 } else { 0 },
        );
        let radius = f64::from(h) * 0.36;
        let total = (self.successes + self.failures) as f64;
        let slices = [
            (self.successes, SUCCESS, "Success"),
            (self.failures, FAILURE, "Failure"),
        ];
        if total == 0.0 {
            root.draw(&Circle::new(
                center,
                radius as i32,
                RGBColor(200, 200, 200).filled(),
            ))?;
        }
        // Start at 12 o'clock and go clockwise, like most pie charts.
        let mut angle = -std::f64::consts::FRAC_PI_2;
        for (count, color, _) in slices {
            if count == 0 {
                continue;
            }
            let sweep = count as f64 / total * std::f64::consts::TAU;
            let steps = ((sweep / std::f64::consts::TAU) * 360.0).ceil().max(2.0) as usize;
            let mut points = vec![center];
            points.extend((0..=steps).map(|i| {
                let a = angle + sweep * i as f64 / steps as f64;
                (
                    center.0 + (radius * a.cos()).round() as i32,
                    center.1 + (radius * a.sin()).round() as i32,
                )
            }));
            root.draw(&Polygon::new(points, color.filled()))?;
            angle += sweep;
        }
        if text {
            // Centred at the top, like the captions of the other charts.
            let style = TextStyle::from(("sans-serif", 26).into_font())
                .pos(Pos::new(HPos::Center, VPos::Top));
            root.draw(&Text::new(title.to_string(), (w / 2, 20), style))?;
            let legend_x = center.0 + radius as i32 + 60;
            for (i, (count, color, label)) in slices.into_iter().enumerate() {
                let y = h / 2 - 30 + i as i32 * 45;
                root.draw(&Rectangle::new(
                    [(legend_x, y), (legend_x + 24, y + 24)],
                    color.filled(),
                ))?;
                let pct = if total > 0.0 {
                    count as f64 / total * 100.0
                } else {
                    0.0
                };
                root.draw(&Text::new(
                    format!("{label}: {count} ({pct:.2}%)"),
                    (legend_x + 36, y + 2),
                    ("sans-serif", 20).into_font(),
                ))?;
            }
        }
        Ok(())
    }
}
draw_on_both!(Pie);

/// Histogram of successful latencies; the slowest 0.1% are folded into the
/// last bin so one outlier does not squash the rest.
struct LatencyHistogram {
    lo: f64,
    hi: f64,
    counts: Vec<u64>,
    p50: f64,
    p99: f64,
}

impl LatencyHistogram {
    const BINS: usize = 50;

    fn new(records: &[Record]) -> Self {
        let mut ms: Vec<f64> = records
            .iter()
            .filter(|r| r.success())
            .map(|r| r.response_time_us as f64 / 1000.0)
            .collect();
        ms.sort_by(f64::total_cmp);
        let q = |p: f64| {
            ms.get(((ms.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        let (lo, mut hi) = (q(0.0), q(0.999));
        if hi <= lo {
            hi = lo + 1.0;
        }
        let width = (hi - lo) / Self::BINS as f64;
        let mut counts = vec![0u64; Self::BINS];
        for v in &ms {
            let bin = (((v - lo) / width) as usize).min(Self::BINS - 1);
            counts[bin] += 1;
        }
        Self {
            lo,
            hi,
            counts,
            p50: q(0.5),
            p99: q(0.99),
        }
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        title: &str,
        text: bool,
    ) -> AreaResult<DB> {
        let ymax = self.counts.iter().copied().max().unwrap_or(0) as f64;
        let mut chart = cartesian(
            root,
            title,
            text,
            Axis::new(self.lo..self.hi, "response time (ms)", false),
            Axis::new(0.0..upper(ymax), "requests", true),
        )?;
        let width = (self.hi - self.lo) / Self::BINS as f64;
        chart.draw_series(self.counts.iter().enumerate().filter(|(_, c)| **c > 0).map(
            |(i, &c)| {
                let x0 = self.lo + width * i as f64;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.92, c as f64)], OK.filled())
            },
        ))?;
        let top = upper(ymax);
        for (value, color, label) in [(self.p50, P50, "p50"), (self.p99, FAILURE, "p99")] {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    [(value, 0.0), (value, top)],
                    color.stroke_width(2),
                )))?
                .label(format!("{label} {value:.2} ms"))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart, text)
    }
}
draw_on_both!(LatencyHistogram);

/// Completed requests per second of the run, successes and failures stacked.
struct Throughput {
    /// (successes, failures) per second, by completion time.
    per_second: Vec<(u64, u64)>,
}

impl Throughput {
    fn new(records: &[Record]) -> Self {
        let start = records.iter().map(|r| r.start_us).min().unwrap_or(0);
        let seconds = records
            .iter()
            .map(|r| ((r.end_us() - start) / 1_000_000) as usize)
            .max()
            .map_or(0, |s| s + 1);
        let mut per_second = vec![(0u64, 0u64); seconds];
        for r in records {
            let s = &mut per_second[((r.end_us() - start) / 1_000_000) as usize];
            if r.success() {
                s.0 += 1;
            } else {
                s.1 += 1;
            }
        }
        Self { per_second }
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        title: &str,
        text: bool,
    ) -> AreaResult<DB> {
        let ymax = self
            .per_second
            .iter()
            .map(|(s, f)| s + f)
            .max()
            .unwrap_or(0) as f64;
        let xmax = self.per_second.len().max(1) as f64;
        let mut chart = cartesian(
            root,
            title,
            text,
            Axis::new(0.0..xmax, "second of the run", true),
            Axis::new(0.0..upper(ymax), "requests/s", true),
        )?;
        let bar = |i: usize, from: u64, to: u64, color: RGBColor| {
            Rectangle::new(
                [(i as f64 + 0.05, from as f64), (i as f64 + 0.95, to as f64)],
                color.filled(),
            )
        };
        chart
            .draw_series(
                self.per_second
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.0 > 0)
                    .map(|(i, &(s, _))| bar(i, 0, s, SUCCESS)),
            )?
            .label("successes")
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], SUCCESS.filled()));
        chart
            .draw_series(
                self.per_second
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.1 > 0)
                    .map(|(i, &(s, f))| bar(i, s, s + f, FAILURE)),
            )?
            .label("failures")
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], FAILURE.filled()));
        legend(&mut chart, text)
    }
}
draw_on_both!(Throughput);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ErrorKind, ServerTiming};

    fn records(n: u64) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                seq: i,
                file: "x.png".into(),
                error: (i % 5 == 4).then_some(ErrorKind::Status5xx),
                response_time_us: 1000 + (i * 7919) % 5000,
                http_status: Some(200),
                start_us: i * 2000,
                wait_us: 0,
                bytes_sent: 1,
                bytes_received: 1,
                top1: None,
                server: ServerTiming::default(),
            })
            .collect()
    }

    #[test]
    fn draws_without_text_and_with_thinning() {
        // No font is needed when text is off; 12k requests exercise buckets.
        for n in [0, 1, 12_000] {
            let charts = render_all(&records(n), false).unwrap();
            assert_eq!(charts.len(), 4);
            for c in &charts {
                assert!(c.svg.starts_with("<svg"), "{}", c.name);
                assert!(
                    c.svg.len() < 2_000_000,
                    "{} is {} bytes",
                    c.name,
                    c.svg.len()
                );
                assert_eq!(&c.png[1..4], b"PNG");
            }
        }
    }
}
