//! Figures through plotters, as PNG (for people) and SVG (for papers).
//!
//! Text is drawn with DejaVu Sans embedded in the binary, so figures look the
//! same on a headless cluster node with no fonts installed.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use sciflow_train::EpochStats;

use crate::{Error, Result};

pub(crate) const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known good; a failure here is a build defect.
        if plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_err() {
            panic!("the embedded font does not parse");
        }
    });
}

/// What the training-summary figure shows.
pub struct Summary<'a> {
    /// Title over the whole figure.
    pub title: &'a str,
    /// Training history (loss panel), if known.
    pub history: Option<&'a [EpochStats]>,
    /// `confusion[true][predicted]`.
    pub confusion: &'a [Vec<usize>],
    /// Class names.
    pub class_names: &'a [String],
    /// The split the confusion matrix was measured on.
    pub split: &'a str,
    /// Reliability diagrams, one per class.
    pub calibration: &'a [crate::metrics::ClassCalibration],
}

/// A figure that can draw itself on any plotters backend.
pub(crate) trait Figure {
    /// Pixel size.
    fn size(&self) -> (u32, u32);
    /// Draws onto `root`.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// Writes `fig` as `<stem>.png` and `<stem>.svg` in `dir`, each under a
/// temporary name and renamed into place.
pub(crate) fn render(dir: &Path, stem: &str, fig: &impl Figure) -> Result<()> {
    render_with(dir, stem, fig, &[])
}

/// `<stem>.png` of `fig` with `meta` as `tEXt` chunks.
fn write_png(dir: &Path, stem: &str, fig: &impl Figure, meta: &[(String, String)]) -> Result<()> {
    register_font();
    let (w, h) = fig.size();
    let png_path = dir.join(format!("{stem}.png"));
    let fig_err = |p: &Path| {
        let p = p.to_path_buf();
        move |e: String| Error::Figure(p, e)
    };
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        fig.draw(&root).map_err(fig_err(&png_path))?;
        root.present()
            .map_err(|e| Error::Figure(png_path.clone(), e.to_string()))?;
    }
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        for (k, v) in meta {
            enc.add_text_chunk(k.clone(), v.clone())
                .map_err(|e| Error::Figure(png_path.clone(), e.to_string()))?;
        }
        let mut writer = enc
            .write_header()
            .map_err(|e| Error::Figure(png_path.clone(), e.to_string()))?;
        writer
            .write_image_data(&buf)
            .map_err(|e| Error::Figure(png_path.clone(), e.to_string()))?;
    }
    sciflow_ingest::files::write_atomic(&png_path, &bytes)?;
    Ok(())
}

/// Writes `fig` as `<stem>.png` only: for pictures made of pixels (image
/// stamps), which as SVG would be one element per pixel.
pub(crate) fn render_bitmap(dir: &Path, stem: &str, fig: &impl Figure) -> Result<()> {
    write_png(dir, stem, fig, &[])
}

/// Like [`render`], and each file carries `meta` (key, value) pairs: PNG
/// `tEXt` chunks, and an SVG `<metadata>` element holding them as JSON.
pub(crate) fn render_with(
    dir: &Path,
    stem: &str,
    fig: &impl Figure,
    meta: &[(String, String)],
) -> Result<()> {
    write_png(dir, stem, fig, meta)?;
    let (w, h) = fig.size();
    let fig_err = |p: &Path| {
        let p = p.to_path_buf();
        move |e: String| Error::Figure(p, e)
    };
    let svg_path = dir.join(format!("{stem}.svg"));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        fig.draw(&root).map_err(fig_err(&svg_path))?;
        root.present()
            .map_err(|e| Error::Figure(svg_path.clone(), e.to_string()))?;
    }
    if !meta.is_empty() {
        let map: serde_json::Map<String, serde_json::Value> = meta
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        // JSON inside XML: only `<` and `&` need escaping in character data.
        let json = serde_json::to_string(&map)
            .expect("strings serialise")
            .replace('&', "&amp;")
            .replace('<', "&lt;");
        if let Some(end) = svg
            .find("<svg")
            .and_then(|i| svg[i..].find('>').map(|j| i + j + 1))
        {
            svg.insert_str(
                end,
                &format!("\n<metadata id=\"provenance\">{json}</metadata>"),
            );
        }
    }
    sciflow_ingest::files::write_atomic(&svg_path, svg.as_bytes())?;
    Ok(())
}

impl Figure for Summary<'_> {
    fn size(&self) -> (u32, u32) {
        (1500, 480)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        draw_summary(root, self)
    }
}

/// Writes the summary as `<stem>.png` and `<stem>.svg` in `dir`.
pub fn write_summary(dir: &Path, stem: &str, summary: &Summary<'_>) -> Result<()> {
    render(dir, stem, summary)
}

fn draw_summary<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    s: &Summary<'_>,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let root = root.titled(s.title, (FONT, 24)).map_err(e)?;
    let (w, _) = root.dim_in_pixel();
    let (left, rest) = root.split_horizontally(w * 42 / 100);
    let (middle, right) = rest.split_horizontally(w * 28 / 100);
    if let Some(history) = s.history.filter(|h| !h.is_empty()) {
        draw_history(&left, history)?;
    }
    draw_confusion(&middle, s.confusion, s.class_names, s.split)?;
    draw_reliability(&right, s.calibration, s.split)
}

/// Observed frequency against mean predicted probability per bin, per class;
/// the diagonal is perfect calibration.
fn draw_reliability<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    calibration: &[crate::metrics::ClassCalibration],
    split: &str,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let mut chart = ChartBuilder::on(area)
        .caption(format!("Reliability ({split} split)"), (FONT, 18))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..1.0, 0.0..1.0)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("predicted probability")
        .y_desc("observed frequency")
        .label_style((FONT, 14))
        .draw()
        .map_err(e)?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.4)))
        .map_err(e)?;
    for (i, c) in calibration.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = c
            .bins
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| (b.mean_predicted, b.observed))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
            .map_err(e)?
            .label(format!("{} (ECE {:.3})", c.name, c.ece))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    Ok(())
}

fn draw_history<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    history: &[EpochStats],
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let epochs = history.len() as f64;
    let ymax = history
        .iter()
        .flat_map(|h| [Some(h.train_loss), h.val_loss])
        .flatten()
        .fold(0.0f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("Loss and accuracy per epoch", (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .right_y_label_area_size(60)
        .build_cartesian_2d(0.5f64..epochs + 0.5, 0f64..ymax.max(1e-3))
        .map_err(e)?
        .set_secondary_coord(0.5f64..epochs + 0.5, 0f64..1.0);
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("cross-entropy loss")
        .x_labels(history.len().min(10))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style((FONT, 13))
        .draw()
        .map_err(e)?;
    chart
        .configure_secondary_axes()
        .y_desc("accuracy")
        .label_style((FONT, 13))
        .draw()
        .map_err(e)?;
    let pts = |f: &dyn Fn(&EpochStats) -> Option<f64>| {
        history
            .iter()
            .filter_map(|h| f(h).map(|v| (h.epoch as f64 + 1.0, v)))
            .collect::<Vec<_>>()
    };
    // (legend, colour, points, on the accuracy axis)
    let series = [
        ("train loss", BLUE, pts(&|h| Some(h.train_loss)), false),
        ("val loss", RED, pts(&|h| h.val_loss), false),
        ("train accuracy", BLUE, pts(&|h| h.train_accuracy), true),
        ("val accuracy", RED, pts(&|h| h.val_accuracy), true),
    ];
    for (name, colour, points, secondary) in series {
        if points.is_empty() {
            continue;
        }
        let style = if secondary {
            ShapeStyle::from(colour.mix(0.5)).stroke_width(2)
        } else {
            ShapeStyle::from(colour).stroke_width(2)
        };
        let line = LineSeries::new(points, style);
        let anno = if secondary {
            chart.draw_secondary_series(line).map_err(e)?
        } else {
            chart.draw_series(line).map_err(e)?
        };
        anno.label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    Ok(())
}

fn draw_confusion<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    confusion: &[Vec<usize>],
    names: &[String],
    split: &str,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let k = confusion.len() as i32;
    let max = confusion
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let label = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            names.get(*i as usize).cloned().unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    };
    let flipped = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => names
            .get((k - 1 - *i) as usize)
            .cloned()
            .unwrap_or_default(),
        SegmentValue::Last => String::new(),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(format!("Confusion matrix ({split} split)"), (FONT, 18))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(90)
        .build_cartesian_2d((0..k - 1).into_segmented(), (0..k - 1).into_segmented())
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("predicted")
        .y_desc("true")
        .x_labels(k as usize)
        .y_labels(k as usize)
        .x_label_formatter(&label)
        .y_label_formatter(&flipped)
        .label_style((FONT, 14))
        .draw()
        .map_err(e)?;
    // Row 0 (the first class) at the top, as a table reads.
    let row = |t: usize| k - 1 - t as i32;
    chart
        .draw_series(confusion.iter().enumerate().flat_map(|(t, counts)| {
            counts.iter().enumerate().map(move |(p, &c)| {
                let shade = (c as f64 / max * 0.85 + 0.05).min(1.0);
                let colour = RGBColor(
                    (255.0 * (1.0 - shade)) as u8,
                    (255.0 * (1.0 - 0.6 * shade)) as u8,
                    255,
                );
                let (x, y) = (p as i32, row(t));
                Rectangle::new(
                    [
                        (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                    ],
                    colour.filled(),
                )
            })
        }))
        .map_err(e)?;
    let style = TextStyle::from((FONT, 22).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    chart
        .draw_series(confusion.iter().enumerate().flat_map(|(t, counts)| {
            let style = style.clone();
            counts.iter().enumerate().map(move |(p, &c)| {
                Text::new(
                    c.to_string(),
                    (
                        SegmentValue::CenterOf(p as i32),
                        SegmentValue::CenterOf(row(t)),
                    ),
                    style.clone(),
                )
            })
        }))
        .map_err(e)?;
    Ok(())
}

/// Named (x, y) points of one line of a chart.
pub type Line<'a> = (&'a str, Vec<(f64, f64)>);

/// A small line chart as SVG text, for inlining in an HTML page: `lines`
/// over a shared x axis (e.g. a training stage's loss per epoch, training
/// and validation), each with a marker at every point and a legend.
pub fn line_chart_svg(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    lines: &[Line<'_>],
) -> Result<String> {
    register_font();
    let pts = || {
        lines
            .iter()
            .flat_map(|l| l.1.iter())
            .filter(|p| p.0.is_finite() && p.1.is_finite())
    };
    let (x0, x1) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.0), b.max(p.0))
    });
    let (y0, y1) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.1), b.max(p.1))
    });
    if !(x0.is_finite() && y0.is_finite()) {
        return Ok(String::new());
    }
    let pad = |a: f64, b: f64| {
        if b > a {
            (b - a) * 0.08
        } else {
            a.abs().max(1.0) * 0.1
        }
    };
    let (xp, yp) = (pad(x0, x1), pad(y0, y1));
    let colours = [BLUE, RED, RGBColor(0, 140, 70), RGBColor(150, 80, 0), BLACK];
    let mut svg = String::new();
    let err = |e: String| Error::Figure(std::path::PathBuf::from(title), e);
    {
        let root = SVGBackend::with_string(&mut svg, (460, 280)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 15))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(56)
            .build_cartesian_2d((x0 - xp)..(x1 + xp), (y0 - yp)..(y1 + yp))
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc(xlabel)
            .y_desc(ylabel)
            .light_line_style(WHITE)
            .label_style((FONT, 11))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (k, (name, points)) in lines.iter().enumerate() {
            let c = colours[k % colours.len()];
            chart
                .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(|e| err(e.to_string()))?;
        }
        // The legend goes where the curves end up not being: below them
        // when they finish high (accuracy), above when they finish low (loss).
        let ends_high = lines
            .iter()
            .filter_map(|l| l.1.last())
            .all(|p| p.1 > (y0 + y1) / 2.0);
        chart
            .configure_series_labels()
            .label_font((FONT, 11))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(if ends_high {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperRight
            })
            .draw()
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(svg)
}
