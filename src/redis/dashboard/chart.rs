//! Line charts as inline SVG, drawn on the server: the pages need no script and load
//! nothing from elsewhere.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::text::{ago, esc};

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 150.0;
/// Room for the labels: left, top, right, bottom.
const PAD: (f64, f64, f64, f64) = (40.0, 22.0, 8.0, 20.0);

/// One line: its name, its colour, and its points (when, value).
pub(super) struct Series<'a> {
    pub(super) name: &'a str,
    pub(super) color: &'a str,
    pub(super) points: Vec<(SystemTime, f64)>,
}

/// A chart of `series` over the same time span, values from zero up, with `unit` in the
/// caption. An empty chart says why.
pub(super) fn lines(title: &str, unit: &str, series: &[Series<'_>], now: SystemTime) -> String {
    let mut out = String::new();
    let caption = if unit.is_empty() {
        esc(title)
    } else {
        format!("{} <small>({})</small>", esc(title), esc(unit))
    };
    let _ = write!(
        out,
        r#"<figure class="chart"><figcaption>{caption}</figcaption>"#
    );
    let times = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (Some(first), Some(last)) = (times.clone().min(), times.max()) else {
        out.push_str(r#"<p class="empty">No history yet: running workers sample the queue every 10 s.</p></figure>"#);
        return out;
    };
    let span = last
        .duration_since(first)
        .unwrap_or_default()
        .as_secs_f64()
        .max(1.0);
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let top = nice(top);
    let (left, up, right, down) = PAD;
    let (w, h) = (WIDTH - left - right, HEIGHT - up - down);
    let x =
        |t: SystemTime| left + w * t.duration_since(first).unwrap_or_default().as_secs_f64() / span;
    let y = |v: f64| up + h - h * (v.max(0.0) / top).min(1.0);
    let _ = write!(
        out,
        r#"<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{}">"#,
        esc(title)
    );
    // Grid: the top value, half of it, zero.
    for frac in [0.0, 0.5, 1.0] {
        let gy = y(top * frac);
        let _ = write!(
            out,
            r##"<line x1="{left}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#555">{}</text>"##,
            left + w,
            left - 4.0,
            gy + 3.0,
            esc(&label(top * frac))
        );
    }
    let _ = write!(
        out,
        r##"<text x="{left}" y="{:.1}" font-size="10" fill="#555">{}</text><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#555">{}</text>"##,
        HEIGHT - 4.0,
        esc(&format!(
            "{} ago",
            ago(now.duration_since(first).unwrap_or_default())
        )),
        left + w,
        HEIGHT - 4.0,
        esc(&format!(
            "{} ago",
            ago(now.duration_since(last).unwrap_or_default())
        )),
    );
    for (i, s) in series.iter().enumerate() {
        let mut points = String::new();
        for &(t, v) in &s.points {
            if v.is_finite() {
                let _ = write!(points, "{:.1},{:.1} ", x(t), y(v));
            }
        }
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.8" points="{}"/>"#,
            s.color,
            points.trim_end()
        );
        let _ = write!(
            out,
            r##"<rect x="{:.1}" y="6" width="10" height="10" fill="{}"/><text x="{:.1}" y="15" font-size="11" fill="#222">{}</text>"##,
            left + 110.0 * i as f64,
            s.color,
            left + 14.0 + 110.0 * i as f64,
            esc(s.name),
        );
    }
    out.push_str("</svg></figure>");
    out
}

/// The least of 1, 2, 5 times a power of ten that is at least `v` (at least 1).
fn nice(v: f64) -> f64 {
    if v.is_nan() || v <= 1.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * p)
}

fn label(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Per-minute rates from cumulative counts: a counter that went down (its hash expired and
/// began again) gives zero, not a negative rate.
pub(super) fn per_minute(points: &[(SystemTime, u64)]) -> Vec<(SystemTime, f64)> {
    points
        .windows(2)
        .map(|w| {
            let secs = w[1]
                .0
                .duration_since(w[0].0)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64()
                .max(0.001);
            (w[1].0, w[1].1.saturating_sub(w[0].1) as f64 * 60.0 / secs)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_tops() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(f64::NAN), 1.0);
        assert_eq!(nice(3.0), 5.0);
        assert_eq!(nice(10.0), 10.0);
        assert_eq!(nice(11.0), 20.0);
        assert_eq!(nice(4_900.0), 5_000.0);
    }

    #[test]
    fn rates_never_go_negative() {
        let t0 = SystemTime::UNIX_EPOCH;
        let t = |s| t0 + Duration::from_secs(s);
        let rates = per_minute(&[(t(0), 10), (t(10), 20), (t(20), 5)]);
        assert_eq!(rates, [(t(10), 60.0), (t(20), 0.0)]);
    }

    #[test]
    fn a_chart_escapes_and_draws_each_series() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let s = Series {
            name: "<queued>",
            color: "#1f6feb",
            points: vec![(t0, 1.0), (t0 + Duration::from_secs(10), 4.0)],
        };
        let svg = lines("Depth & more", "", &[s], t0 + Duration::from_secs(10));
        assert!(svg.contains("Depth &amp; more"));
        assert!(svg.contains("&lt;queued&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        let empty = lines("Depth", "", &[], t0);
        assert!(empty.contains("No history yet"));
    }
}
