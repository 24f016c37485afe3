//! Small charts drawn on the server as SVG: no script, no library, readable by a screen
//! reader through their title and a table-like description. Pure functions, unit-tested.

use std::fmt::Write;

use crate::catalog::TransferRecord;
use crate::format;

/// One bar: its label (shown on hover and read out) and its value.
pub struct Bar {
    pub label: String,
    pub value: f64,
}

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 120.0;

/// A bar chart of `bars` (oldest first) titled `title`, with the largest value written as
/// `max_text` on its axis. Empty when there is nothing to draw.
pub fn bar_chart(title: &str, bars: &[Bar], max_text: &str) -> String {
    if bars.is_empty() {
        return String::new();
    }
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    let step = WIDTH / bars.len() as f64;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
        w = WIDTH,
        h = HEIGHT + 16.0,
        t = escape(title)
    );
    for (i, b) in bars.iter().enumerate() {
        let height = if max > 0.0 {
            (b.value / max * HEIGHT).max(1.0)
        } else {
            1.0
        };
        let _ = write!(
            out,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{height:.1}" fill="#1f6feb"><title>{l}</title></rect>"##,
            x = i as f64 * step + step * 0.1,
            y = HEIGHT - height,
            bw = step * 0.8,
            l = escape(&b.label)
        );
    }
    let _ = write!(
        out,
        r##"<line x1="0" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}" stroke="#57606a"/><text x="0" y="{ty}" font-size="12" fill="#57606a">max {m}</text></svg>"##,
        ty = HEIGHT + 14.0,
        m = escape(max_text)
    );
    out
}

/// A protection window as a timeline: from `start` to `end` (seconds), base backups as ticks.
/// Empty when the window is empty. (Gaps are listed as problems: the archive knows them by
/// segment, not by time.)
pub fn timeline(start: i64, end: i64, ticks: &[(i64, String)]) -> String {
    if end <= start {
        return String::new();
    }
    let x = |t: i64| ((t - start) as f64 / (end - start) as f64 * WIDTH).clamp(0.0, WIDTH);
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg class="chart" viewBox="0 0 {WIDTH} 40" role="img" aria-label="Restorable window" xmlns="http://www.w3.org/2000/svg"><title>Restorable window</title><rect x="0" y="10" width="{WIDTH}" height="16" fill="#1a7f37"/>"##
    );
    for (t, label) in ticks {
        let _ = write!(
            out,
            r##"<line x1="{p:.1}" y1="4" x2="{p:.1}" y2="32" stroke="#1b1f24" stroke-width="2"><title>{l}</title></line>"##,
            p = x(*t),
            l = escape(label)
        );
    }
    out.push_str("</svg>");
    out
}

/// Stored size of each backup in `captures` (oldest first).
pub fn size_chart(captures: &[&TransferRecord]) -> String {
    let bars: Vec<Bar> = captures
        .iter()
        .map(|t| {
            let n = t.object_size.unwrap_or(0);
            Bar {
                label: format!("{}: {}", t.id, format::bytes(n)),
                value: n as f64,
            }
        })
        .collect();
    let max = captures
        .iter()
        .filter_map(|t| t.object_size)
        .max()
        .unwrap_or(0);
    bar_chart("Backup size, oldest to newest", &bars, &format::bytes(max))
}

/// How long each capture in `captures` took (oldest first).
pub fn duration_chart(captures: &[&TransferRecord]) -> String {
    let secs = |t: &TransferRecord| {
        t.started_at
            .zip(t.finished_at)
            .map(|(s, f)| (f.as_millisecond() - s.as_millisecond()).max(0) as f64 / 1000.0)
            .unwrap_or(0.0)
    };
    let bars: Vec<Bar> = captures
        .iter()
        .map(|t| Bar {
            label: format!("{}: {:.1} s", t.id, secs(t)),
            value: secs(t),
        })
        .collect();
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    bar_chart(
        "Capture duration, oldest to newest",
        &bars,
        &format!("{max:.1} s"),
    )
}

/// Text as SVG/HTML text: `&`, `<`, `>` and quotes escaped.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_escape_their_labels() {
        let bars = [
            Bar {
                label: "b001 <1KB>".into(),
                value: 50.0,
            },
            Bar {
                label: "b002".into(),
                value: 100.0,
            },
        ];
        let svg = bar_chart("Backup size", &bars, "100B");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains(r#"height="60.0""#), "{svg}");
        assert!(svg.contains(r#"height="120.0""#), "{svg}");
        assert!(svg.contains("b001 &lt;1KB&gt;"));
        assert!(!svg.contains("<1KB>"));
        assert_eq!(bar_chart("x", &[], ""), "");
    }

    #[test]
    fn a_timeline_marks_base_backups() {
        let svg = timeline(0, 100, &[(50, "base 1".into())]);
        assert!(svg.contains(r#"x1="300.0""#), "{svg}");
        assert!(svg.contains("<title>base 1</title>"));
        assert_eq!(timeline(5, 5, &[]), "");
    }
}
