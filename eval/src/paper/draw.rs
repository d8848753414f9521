//! Drawing the scaling figures: three panels (throughput or time, speed-up,
//! efficiency) of published, modelled and measured points.

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Role, ScalingSeries, TimeToTrainSeries, Validation};
use crate::figures::{Figure, FONT};

/// (GPUs, value) points of one series.
type Points = Vec<(f64, f64)>;

impl Figure for ScalingSeries {
    fn size(&self) -> (u32, u32) {
        (
            if self.validation.is_some() {
                2000
            } else {
                1500
            },
            460,
        )
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        // Each series relative to its own smallest count, per panel: the
        // published one starts at 2 GPUs, so its reference is 2 GPUs.
        let speedup = |s: &[(usize, f64)]| -> Points {
            // Speed-up p0 at p0 GPUs: perfect scaling below that is assumed.
            let Some(&(_, t0)) = s.first() else {
                return Vec::new();
            };
            s.iter()
                .map(|&(p, t)| (p as f64, t * p as f64 / t0))
                .collect()
        };
        let efficiency = |s: &[(usize, f64)]| -> Points {
            let t0 = s.first().map_or(1.0, |x| x.1);
            s.iter().map(|&(p, t)| (p as f64, t / t0)).collect()
        };
        let panels = scaling_panels(
            [&self.published, &self.model, &self.measured],
            [
                ("Per-GPU throughput", "samples/s per GPU (rank)"),
                ("Speed-up", "speed-up"),
                ("Weak-scaling efficiency", "efficiency"),
            ],
            &speedup,
            &efficiency,
        );
        let model = model_name(self.validation.as_ref());
        draw_panels(
            root,
            &self.title,
            panels,
            &["published", &model, "measured here (CPU ranks)"],
            self.validation.as_ref(),
        )
    }
}

/// Draws the published/model/measured series and their legend on `chart`.
fn draw_series<'a, DB: DrawingBackend + 'a, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    series: &[Vec<(f64, f64)>],
    names: &[&str; 3],
    colours: &[RGBColor; 3],
    legend: SeriesLabelPosition,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (k, s) in series.iter().enumerate() {
        if s.is_empty() {
            continue;
        }
        let c = colours[k];
        if k == 1 {
            chart
                .draw_series(LineSeries::new(s.iter().copied(), c.stroke_width(2)))?
                .label(names[k])
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
        } else {
            chart
                .draw_series(s.iter().map(|&p| Circle::new(p, 5, c.filled())))?
                .label(names[k])
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, c.filled()));
        }
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(legend)
        .draw()
}

impl Figure for TimeToTrainSeries {
    fn size(&self) -> (u32, u32) {
        (
            if self.validation.is_some() {
                2000
            } else {
                1500
            },
            460,
        )
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        // Speed-up against the series' own single-GPU (single-rank) time;
        // a series without one has no speed-up to show.
        let speedup = |s: &[(usize, f64)]| -> Points {
            match s.iter().find(|x| x.0 == 1) {
                Some(&(_, t1)) => s.iter().map(|&(p, t)| (p as f64, t1 / t)).collect(),
                None => Vec::new(),
            }
        };
        let efficiency = |s: &[(usize, f64)]| -> Points {
            speedup(s).into_iter().map(|(p, x)| (p, x / p)).collect()
        };
        let panels = scaling_panels(
            [&self.published, &self.model, &self.measured],
            [
                ("Time to train", "hours"),
                ("Speed-up over one GPU (rank)", "speed-up"),
                ("Strong-scaling efficiency", "efficiency"),
            ],
            &speedup,
            &efficiency,
        );
        draw_panels(
            root,
            &self.title,
            panels,
            &[
                "published",
                &model_name(self.validation.as_ref()),
                "measured here (CPU ranks, laptop scale)",
            ],
            self.validation.as_ref(),
        )
    }
}

/// The legend of the model curve: what it was fitted on.
fn model_name(v: Option<&Validation>) -> String {
    match v {
        Some(v) => format!(
            "model fitted on {} at {} GPUs",
            v.fitted_system,
            v.fitted_on
                .iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "model".into(),
    }
}

/// One panel of a three-panel scaling figure.
struct Panel {
    caption: &'static str,
    ylabel: &'static str,
    log_y: bool,
    /// Published, model, measured.
    series: Vec<Points>,
}

/// A (GPUs, value) series as its points.
type Series<'a> = &'a [(usize, f64)];

/// The three panels of a scaling figure for the published, model and
/// measured `series`: the values themselves (log axis), their speed-up and
/// their efficiency, each with its (caption, y label).
fn scaling_panels(
    series: [Series<'_>; 3],
    captions: [(&'static str, &'static str); 3],
    speedup: &dyn Fn(Series<'_>) -> Points,
    efficiency: &dyn Fn(Series<'_>) -> Points,
) -> [Panel; 3] {
    let values = |s: Series<'_>| -> Points { s.iter().map(|&(p, t)| (p as f64, t)).collect() };
    let panel = |(caption, ylabel), log_y, f: &dyn Fn(Series<'_>) -> Points| Panel {
        caption,
        ylabel,
        log_y,
        series: series.iter().map(|s| f(s)).collect(),
    };
    // Absolute values of CPU ranks at laptop scale and of V100s are no
    // comparison: the runs measured here appear only as ratios to their own
    // smallest run, in the speed-up and efficiency panels.
    let mut absolute = panel(captions[0], true, &values);
    absolute.series[2].clear();
    [
        absolute,
        panel(captions[1], false, speedup),
        panel(captions[2], false, efficiency),
    ]
}

/// Draws three panels side by side under `title`, GPUs on a log x axis,
/// and a fourth with the residuals of the experiment's own model.
fn draw_panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    panels: [Panel; 3],
    names: &[&str; 3],
    validation: Option<&Validation>,
) -> std::result::Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let root = root.titled(title, (FONT, 18)).map_err(e)?;
    let mut areas = root.split_evenly((1, if validation.is_some() { 4 } else { 3 }));
    if let Some(v) = validation {
        let area = areas.pop().expect("four areas");
        draw_residuals(&area, v).map_err(e)?;
    }
    let max_p = panels
        .iter()
        .flat_map(|p| p.series.iter().flatten())
        .map(|x| x.0)
        .fold(2.0f64, f64::max);
    for (i, (area, panel)) in areas.iter().zip(panels).enumerate() {
        // Efficiency falls to the right: its legend goes above the curve.
        let legend = if i == 2 {
            SeriesLabelPosition::UpperRight
        } else {
            SeriesLabelPosition::LowerRight
        };
        let ys = || {
            panel
                .series
                .iter()
                .flatten()
                .map(|p| p.1)
                .filter(|v| *v > 0.0)
        };
        let top = ys().fold(0.0f64, f64::max).max(1e-9);
        let bottom = ys().fold(f64::INFINITY, f64::min).min(top);
        let x_range = (0.8f64..max_p * 1.25).log_scale();
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(panel.caption, (FONT, 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60);
        if panel.log_y {
            // Log axis: a CPU rank and a V100 differ by 100x.
            let chart = builder
                .build_cartesian_2d(x_range, ((bottom / 2.0)..(top * 2.0)).log_scale())
                .map_err(e)?;
            draw_chart(chart, &panel, names, legend).map_err(e)?;
        } else {
            let chart = builder
                .build_cartesian_2d(x_range, 0.0..top * 1.15)
                .map_err(e)?;
            draw_chart(chart, &panel, names, legend).map_err(e)?;
        }
    }
    Ok(())
}

/// The residual panel: (model - published) / published at every published
/// point, grey where the model was fitted on it, red where it predicts it,
/// each labelled with its error.
fn draw_residuals<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    v: &Validation,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let pts: Vec<(f64, f64, Role)> = v
        .checks
        .iter()
        .map(|c| (c.gpus as f64, 100.0 * c.relative_error, c.role))
        .collect();
    let span = pts.iter().map(|p| p.1.abs()).fold(5.0f64, f64::max) * 1.3;
    let max_p = pts.iter().map(|p| p.0).fold(2.0f64, f64::max);
    let fitted_on = v
        .fitted_on
        .iter()
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "Own model vs published (fitted on {} at {fitted_on} GPUs)",
                v.fitted_system
            ),
            (FONT, 15),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0.8f64..max_p * 1.6).log_scale(), -span..span)?;
    let fmt_x = |x: &f64| format!("{x:.0}");
    chart
        .configure_mesh()
        .x_desc("GPUs")
        .y_desc("model error, %")
        .x_label_formatter(&fmt_x)
        .light_line_style(WHITE)
        .label_style((FONT, 12))
        .draw()?;
    chart.draw_series(LineSeries::new(
        [(0.8, 0.0), (max_p * 1.6, 0.0)],
        BLACK.stroke_width(1),
    ))?;
    let grey = RGBColor(120, 120, 120);
    for (role, colour, name) in [
        (Role::Fitted, grey, "fitted on"),
        (Role::Predicted, RED, "predicted (not fitted)"),
    ] {
        let mine: Vec<(f64, f64)> = pts
            .iter()
            .filter(|p| p.2 == role)
            .map(|p| (p.0, p.1))
            .collect();
        if mine.is_empty() {
            continue;
        }
        chart
            .draw_series(
                mine.iter()
                    .map(|&(x, y)| Circle::new((x, y), 6, colour.filled())),
            )?
            .label(name)
            .legend(move |(x, y)| Circle::new((x + 8, y), 5, colour.filled()));
        chart.draw_series(mine.iter().map(|&(x, y)| {
            Text::new(
                format!("{y:+.1} %"),
                (x * 1.08, y + span * 0.04),
                (FONT, 12).into_font().color(&colour),
            )
        }))?;
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerLeft)
        .draw()?;
    // A point the model cannot reach says why, on the figure itself.
    let unreachable = v
        .checks
        .iter()
        .any(|c| c.role == Role::Predicted && c.relative_error.abs() > 0.25);
    if let (true, Some(note)) = (unreachable, &v.note) {
        let (w, _) = area.dim_in_pixel();
        let per_line = (w as usize / 7).max(30);
        for (i, line) in wrap(note, per_line).iter().take(5).enumerate() {
            area.draw(&Text::new(
                line.clone(),
                (75, 42 + 14 * i as i32),
                (FONT, 11).into_font().color(&RED),
            ))?;
        }
    }
    Ok(())
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().expect("one line");
        if !last.is_empty() && last.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

/// The axes, mesh, series and legend of one panel's chart.
fn draw_chart<'a, DB, X, Y>(
    mut chart: ChartContext<'a, DB, Cartesian2d<X, Y>>,
    panel: &Panel,
    names: &[&str; 3],
    legend: SeriesLabelPosition,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let fmt_x = |x: &f64| format!("{x:.0}");
    let fmt_y = |y: &f64| tick_label(*y);
    chart
        .configure_mesh()
        .x_desc("GPUs (ranks)")
        .y_desc(panel.ylabel)
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_y)
        .light_line_style(WHITE)
        .label_style((FONT, 12))
        .draw()?;
    draw_series(
        &mut chart,
        &panel.series,
        names,
        &[BLUE, BLACK, RED],
        legend,
    )
}

/// A y tick label with no more digits than it needs: 20, 2.5, 0.05, 1e-4.
pub(super) fn tick_label(y: f64) -> String {
    if y != 0.0 && y.abs() < 0.01 {
        return format!("{y:.0e}");
    }
    let s = format!("{y:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
