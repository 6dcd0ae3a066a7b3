//! Renderers of a drill report: Markdown, and one self-contained HTML page with an inline SVG
//! timeline.
//!
//! The input is a drill's JSON view. Every field is treated as untrusted: any of them may be
//! missing, null, of the wrong type or hostile. Text is escaped for the output format (HTML
//! entities, Markdown table cells), numbers are parsed leniently (numbers or numeric strings)
//! and clamped for the chart, so no input can panic a renderer or break out of its markup.

use std::fmt::Write as _;

use serde_json::Value;

/// Markdown report of a drill view: title, summary, "Checks" table and "Timeline" table.
pub fn markdown(view: &Value) -> String {
    let r = Report::from_view(view);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Drill {} — {}",
        md(r.id.as_deref().unwrap_or("(unknown)")),
        md(r.procedure.as_deref().unwrap_or("(unknown procedure)"))
    );
    out.push('\n');
    let _ = writeln!(out, "- Outcome: **{}**", md(&r.outcome.label()));
    for (label, value) in r.summary_rows() {
        let _ = writeln!(out, "- {label}: {}", md(&value));
    }

    out.push_str("\n## Checks\n\n");
    if r.checks.is_empty() {
        out.push_str("_No checks recorded._\n");
    } else {
        out.push_str("| Check | Result | Reason |\n| --- | --- | --- |\n");
        for c in &r.checks {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                md(c.name.as_deref().unwrap_or("—")),
                if c.ok { "✅ pass" } else { "❌ fail" },
                md(c.reason.as_deref().unwrap_or("—"))
            );
        }
    }

    out.push_str("\n## Timeline\n\n");
    if r.steps.is_empty() {
        out.push_str("_No steps recorded._\n");
    } else {
        out.push_str("| Offset | Step | Detail |\n| ---: | --- | --- |\n");
        for s in &r.steps {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                s.offset_ms.map_or_else(|| "—".to_owned(), fmt_offset),
                md(s.name.as_deref().unwrap_or("—")),
                md(s.detail.as_deref().unwrap_or("—"))
            );
        }
    }
    out
}

/// One self-contained HTML5 document of a drill view: summary, an inline SVG timeline chart
/// (`<svg id="timeline">`, one `class="marker"` dot per step with a known offset, an "access"
/// line at the time to access), the checks table (rows of class `pass` or `fail`) and the
/// timeline table. No scripts, no external assets.
pub fn html(view: &Value) -> String {
    let r = Report::from_view(view);
    let id = r.id.as_deref().unwrap_or("(unknown)");
    let procedure = r.procedure.as_deref().unwrap_or("(unknown procedure)");
    let mut out = String::with_capacity(8 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str(
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" \
         content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
    );
    let _ = writeln!(
        out,
        "<title>Drill {} — {}</title>",
        escape(id),
        escape(procedure)
    );
    out.push_str(STYLE);
    out.push_str("</head>\n<body>\n<main>\n");
    let _ = writeln!(
        out,
        "<h1>Drill report: {}</h1>\n<p class=\"id\">{}</p>",
        escape(procedure),
        escape(id)
    );

    // Summary.
    let _ = writeln!(
        out,
        "<section class=\"summary\">\n<p><span class=\"badge {}\">{}</span></p>\n<dl>",
        r.outcome.class(),
        escape(&r.outcome.label())
    );
    for (label, value) in r.summary_rows() {
        let _ = writeln!(out, "<dt>{label}</dt><dd>{}</dd>", escape(&value));
    }
    out.push_str("</dl>\n</section>\n");

    // Timeline chart.
    out.push_str("<section>\n<h2>Timeline</h2>\n<div class=\"scroll\">\n");
    timeline_svg(&mut out, &r);
    out.push_str("</div>\n</section>\n");

    // Checks.
    out.push_str("<section>\n<h2>Checks</h2>\n");
    if r.checks.is_empty() {
        out.push_str("<p class=\"empty\">No checks recorded.</p>\n");
    } else {
        out.push_str(
            "<div class=\"scroll\"><table class=\"checks\">\n\
             <thead><tr><th>Check</th><th>Result</th><th>Reason</th></tr></thead>\n<tbody>\n",
        );
        for c in &r.checks {
            let (class, result) = if c.ok {
                ("pass", "✅ pass")
            } else {
                ("fail", "❌ fail")
            };
            let _ = writeln!(
                out,
                "<tr class=\"{class}\"><td>{}</td><td class=\"result\">{result}</td><td>{}</td></tr>",
                escape(c.name.as_deref().unwrap_or("—")),
                escape(c.reason.as_deref().unwrap_or("—"))
            );
        }
        out.push_str("</tbody>\n</table></div>\n");
    }

    out.push_str("</section>\n");

    // Steps.
    out.push_str("<section>\n<h2>Steps</h2>\n");
    if r.steps.is_empty() {
        out.push_str("<p class=\"empty\">No steps recorded.</p>\n");
    } else {
        out.push_str(
            "<div class=\"scroll\"><table class=\"steps\">\n\
             <thead><tr><th class=\"num\">Offset</th><th>Step</th><th>Detail</th></tr></thead>\n\
             <tbody>\n",
        );
        for s in &r.steps {
            let _ = writeln!(
                out,
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                escape(&s.offset_ms.map_or_else(|| "—".to_owned(), fmt_offset)),
                escape(s.name.as_deref().unwrap_or("—")),
                escape(s.detail.as_deref().unwrap_or("—"))
            );
        }
        out.push_str("</tbody>\n</table></div>\n");
    }
    out.push_str("</section>\n</main>\n</body>\n</html>\n");
    out
}

/// The inline SVG timeline chart of a drill view alone (`<svg id="timeline">`), for pages
/// that embed it (the web UI's drill page). Every text in it is escaped.
pub fn chart(view: &Value) -> String {
    let mut out = String::with_capacity(4 * 1024);
    timeline_svg(&mut out, &Report::from_view(view));
    out
}

/// HTML-escapes text for element content and quoted attribute values: `&` `<` `>` `"` `'`.
/// Control characters other than tab, newline and carriage return become spaces.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for inline Markdown, table cells included: `|` and Markdown punctuation are
/// backslash-escaped, `& < >` become entities (so no raw HTML gets through), line breaks become
/// `<br>` (one table row stays one line) and other control characters become spaces.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' | '|' | '`' | '*' | '_' | '[' | ']' | '~' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("<br>");
            }
            '\n' | '\u{2028}' | '\u{2029}' => out.push_str("<br>"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The drill view, read defensively.
struct Report {
    id: Option<String>,
    procedure: Option<String>,
    mode: Option<String>,
    injections: Vec<String>,
    requested_by: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
    outcome: Outcome,
    break_id: Option<String>,
    time_to_access_ms: Option<i64>,
    content_hash: Option<String>,
    steps: Vec<Step>,
    checks: Vec<Check>,
    /// Custodians with their contact, as `name <contact>`, and whether their share was
    /// accepted.
    people: Vec<(String, bool)>,
}

struct Step {
    name: Option<String>,
    offset_ms: Option<i64>,
    detail: Option<String>,
}

struct Check {
    name: Option<String>,
    /// Only a JSON `true` passes; anything else (false, missing, "yes") fails.
    ok: bool,
    reason: Option<String>,
}

enum Outcome {
    Passed,
    Failed,
    Running,
    Other(String),
    Unknown,
}

impl Outcome {
    fn parse(s: Option<String>) -> Outcome {
        match s {
            None => Outcome::Unknown,
            Some(s) => match s.trim().to_ascii_lowercase().as_str() {
                "passed" => Outcome::Passed,
                "failed" => Outcome::Failed,
                "running" => Outcome::Running,
                _ => Outcome::Other(s),
            },
        }
    }

    fn label(&self) -> String {
        match self {
            Outcome::Passed => "PASSED".to_owned(),
            Outcome::Failed => "FAILED".to_owned(),
            Outcome::Running => "RUNNING".to_owned(),
            Outcome::Other(s) => s.to_uppercase(),
            Outcome::Unknown => "UNKNOWN".to_owned(),
        }
    }

    fn class(&self) -> &'static str {
        match self {
            Outcome::Passed => "pass",
            Outcome::Failed => "fail",
            Outcome::Running => "running",
            Outcome::Other(_) | Outcome::Unknown => "unknown",
        }
    }
}

impl Report {
    fn from_view(view: &Value) -> Report {
        let f = |key: &str| view.get(key);
        let injections = match f("injections") {
            Some(Value::Array(items)) => items.iter().filter_map(|v| text(Some(v))).collect(),
            other => text(other).into_iter().collect(),
        };
        let steps = match f("steps") {
            Some(Value::Array(items)) => items
                .iter()
                .filter(|v| v.is_object())
                .map(|v| Step {
                    name: text(v.get("step")),
                    offset_ms: millis(v.get("offset_ms")),
                    detail: text(v.get("detail")),
                })
                .collect(),
            _ => Vec::new(),
        };
        let checks = match f("checks") {
            Some(Value::Array(items)) => items
                .iter()
                .filter(|v| v.is_object())
                .map(|v| Check {
                    name: text(v.get("check")),
                    ok: v.get("ok") == Some(&Value::Bool(true)),
                    reason: text(v.get("reason")),
                })
                .collect(),
            _ => Vec::new(),
        };
        let people = match f("people") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| {
                    let name = text(v.get("name"))?;
                    let contact = text(v.get("contact")).unwrap_or_default();
                    Some((
                        breakglass_domain::named(&name, &contact),
                        v.get("approved") == Some(&Value::Bool(true)),
                    ))
                })
                .collect(),
            _ => Vec::new(),
        };
        Report {
            people,
            id: text(f("id")),
            procedure: text(f("procedure")),
            mode: text(f("mode")),
            injections,
            requested_by: text(f("requested_by")),
            started_at: text(f("started_at")),
            finished_at: text(f("finished_at")),
            outcome: Outcome::parse(text(f("outcome"))),
            break_id: text(f("break")),
            time_to_access_ms: millis(f("time_to_access_ms")),
            content_hash: text(f("content_hash")),
            steps,
            checks,
        }
    }

    /// The summary lines after the outcome, as (label, unescaped value).
    fn summary_rows(&self) -> Vec<(&'static str, String)> {
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".to_owned());
        let finished = match (&self.finished_at, &self.outcome) {
            (Some(t), _) => t.clone(),
            (None, Outcome::Running) => "— (still running)".to_owned(),
            (None, _) => "—".to_owned(),
        };
        let tta = match self.time_to_access_ms {
            Some(ms) => format!("{ms} ms ({:.3} s)", ms as f64 / 1000.0),
            None => "— (not reached)".to_owned(),
        };
        let mut rows = vec![
            ("Mode", or_dash(&self.mode)),
            (
                "Injections",
                if self.injections.is_empty() {
                    "none".to_owned()
                } else {
                    self.injections.join(", ")
                },
            ),
            ("Requested by", or_dash(&self.requested_by)),
            ("Started", or_dash(&self.started_at)),
            ("Finished", finished),
            ("Time to access", tta),
            ("Break", or_dash(&self.break_id)),
            ("Content hash", or_dash(&self.content_hash)),
        ];
        if !self.people.is_empty() {
            let of = |approved: bool| {
                let names: Vec<&str> = self
                    .people
                    .iter()
                    .filter(|(_, a)| *a == approved)
                    .map(|(n, _)| n.as_str())
                    .collect();
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            };
            rows.push(("Approved", of(true)));
            rows.push(("Did not approve", of(false)));
        }
        rows
    }
}

/// A text field: strings as they are, numbers and booleans printed; null, objects, arrays and
/// blank strings are absent.
fn text(v: Option<&Value>) -> Option<String> {
    let s = match v? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!s.trim().is_empty()).then_some(s)
}

/// A millisecond field: a JSON number or a numeric string, finite, rounded and saturated to
/// the `i64` range.
fn millis(v: Option<&Value>) -> Option<i64> {
    let f = match v? {
        Value::Number(n) => match n.as_i64() {
            Some(i) => return Some(i),
            None => n.as_f64()?,
        },
        Value::String(s) => {
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                return Some(i);
            }
            s.parse::<f64>().ok()?
        }
        _ => return None,
    };
    // `as` saturates at the bounds of i64.
    f.is_finite().then(|| f.round() as i64)
}

fn fmt_offset(ms: i64) -> String {
    if ms >= 0 {
        format!("+{ms} ms")
    } else {
        format!("{ms} ms")
    }
}

/// Cuts text to `max` characters (adding "…") and flattens whitespace, for one SVG line.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                ' '
            } else {
                c
            }
        })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() <= max {
        flat.to_owned()
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// A "nice" tick spacing (1, 2 or 5 times a power of ten, at least 1 ms) for about 5 ticks.
fn tick_step(max: f64) -> f64 {
    let raw = max / 5.0;
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    (nice * mag).max(1.0)
}

/// A tick label: milliseconds on short axes, seconds on long ones.
fn tick_label(t: f64, axis_max: f64) -> String {
    if axis_max < 10_000.0 {
        format!("{t:.0} ms")
    } else if t / 1000.0 < 100_000.0 {
        format!("{:.0} s", t / 1000.0)
    } else {
        format!("{:.2e} s", t / 1000.0)
    }
}

const SVG_W: f64 = 640.0;
const LABEL_X: f64 = 160.0;
const PLOT_X0: f64 = 172.0;
const PLOT_X1: f64 = 612.0;
const TOP: f64 = 28.0;
const ROW_H: f64 = 22.0;

/// The timeline chart: one row per step with a dot at its offset, an axis from 0 to the last
/// (largest) offset, and a vertical "access" line at the time to access.
fn timeline_svg(out: &mut String, r: &Report) {
    let rows = r.steps.len().max(1);
    let rows_h = rows as f64 * ROW_H;
    let axis_y = TOP + rows_h + 6.0;
    let height = axis_y + 36.0;

    // Axis end: the largest offset (the last step's in a well-formed drill), and the time to
    // access so its marker stays on the chart; at least 1 ms. Negatives clamp to 0.
    let max_ms = r
        .steps
        .iter()
        .filter_map(|s| s.offset_ms)
        .chain(r.time_to_access_ms)
        .map(|v| v.max(0) as f64)
        .fold(1.0_f64, f64::max);
    let x_of = |ms: i64| -> f64 {
        let v = (ms.max(0) as f64).min(max_ms);
        PLOT_X0 + v / max_ms * (PLOT_X1 - PLOT_X0)
    };

    let _ = writeln!(
        out,
        "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {SVG_W:.0} {height:.0}\" \
         role=\"img\" aria-labelledby=\"timeline-title\">\n\
         <title id=\"timeline-title\">Timeline of the drill's steps, in milliseconds from the start</title>"
    );

    // Grid lines and tick labels.
    let step = tick_step(max_ms);
    let mut i = 0u32;
    while i <= 20 {
        let t = step * f64::from(i);
        if t > max_ms * (1.0 + 1e-9) {
            break;
        }
        let x = PLOT_X0 + t / max_ms * (PLOT_X1 - PLOT_X0);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{TOP:.1}\" x2=\"{x:.1}\" y2=\"{axis_y:.1}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            axis_y + 16.0,
            escape(&tick_label(t, max_ms))
        );
        i += 1;
    }
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{PLOT_X0:.1}\" y1=\"{axis_y:.1}\" x2=\"{PLOT_X1:.1}\" y2=\"{axis_y:.1}\"/>\
         <text class=\"tick\" x=\"{PLOT_X1:.1}\" y=\"{:.1}\" text-anchor=\"end\">time since start</text>",
        axis_y + 31.0
    );

    // The access line, under the step markers.
    if let Some(tta) = r.time_to_access_ms {
        let x = x_of(tta);
        let anchor = if x > PLOT_X1 - 30.0 {
            "end"
        } else if x < PLOT_X0 + 30.0 {
            "start"
        } else {
            "middle"
        };
        let _ = writeln!(
            out,
            "<g class=\"access\"><line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{axis_y:.1}\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">access {}</text></g>",
            TOP - 10.0,
            TOP - 14.0,
            escape(&fmt_offset(tta))
        );
    }

    // One row per step.
    if r.steps.is_empty() {
        let _ = writeln!(
            out,
            "<text class=\"empty\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">No steps recorded yet</text>",
            (PLOT_X0 + PLOT_X1) / 2.0,
            TOP + ROW_H * 0.65
        );
    }
    for (n, s) in r.steps.iter().enumerate() {
        let y = TOP + (n as f64 + 0.5) * ROW_H;
        let name = s.name.clone().unwrap_or_else(|| format!("step {}", n + 1));
        let _ = writeln!(
            out,
            "<text class=\"label\" x=\"{LABEL_X:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <line class=\"row\" x1=\"{PLOT_X0:.1}\" y1=\"{y:.1}\" x2=\"{PLOT_X1:.1}\" y2=\"{y:.1}\"/>",
            y + 4.0,
            escape(&one_line(&name, 26))
        );
        let Some(ms) = s.offset_ms else {
            let _ = writeln!(
                out,
                "<text class=\"off\" x=\"{PLOT_X0:.1}\" y=\"{:.1}\">time unknown</text>",
                y + 4.0
            );
            continue;
        };
        let x = x_of(ms);
        let (tx, anchor) = if x > (PLOT_X0 + PLOT_X1) / 2.0 {
            (x - 8.0, "end")
        } else {
            (x + 8.0, "start")
        };
        let offset = fmt_offset(ms);
        let _ = writeln!(
            out,
            "<line class=\"bar\" x1=\"{PLOT_X0:.1}\" y1=\"{y:.1}\" x2=\"{x:.1}\" y2=\"{y:.1}\"/>\
             <circle class=\"marker\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5\"><title>{} {}</title></circle>\
             <text class=\"off\" x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            escape(&one_line(&name, 200)),
            escape(&offset),
            y + 4.0,
            escape(&offset)
        );
    }

    out.push_str("</svg>\n");
}

const STYLE: &str = "<style>
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;color:#1f2328;background:#fff}
main{max-width:860px;margin:0 auto;padding:16px}
h1{font-size:1.4rem;margin:.2em 0;overflow-wrap:anywhere}
h2{font-size:1.15rem;margin:1.4em 0 .5em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
.id{margin:0 0 .8em;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;color:#57606a;overflow-wrap:anywhere}
.badge{display:inline-block;padding:2px 12px;border-radius:999px;font-weight:700;letter-spacing:.05em;color:#fff;background:#57606a}
.badge.pass{background:#1a7f37}.badge.fail{background:#cf222e}.badge.running{background:#9a6700}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 14px;margin:0}
dt{font-weight:600;color:#57606a}
dd{margin:0;overflow-wrap:anywhere;white-space:pre-wrap}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.95rem}
th,td{text-align:left;vertical-align:top;padding:6px 8px;border-bottom:1px solid #d0d7de}
td{overflow-wrap:anywhere;white-space:pre-wrap}
.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.result{white-space:nowrap;font-weight:600}
tr.pass .result{color:#1a7f37}
tr.fail{background:#ffebe9}
tr.fail .result{color:#cf222e}
.empty{color:#57606a;font-style:italic}
svg{display:block;width:100%;min-width:520px;height:auto}
svg text{font-size:11px;font-family:system-ui,sans-serif;fill:#1f2328}
svg .tick,svg .off,svg .empty{fill:#57606a}
svg .off{paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}
svg .grid{stroke:#eaeef2;stroke-width:1}
svg .axis{stroke:#57606a;stroke-width:1}
svg .row{stroke:#f3f4f6;stroke-width:1}
svg .bar{stroke:#9ec5fe;stroke-width:3;stroke-linecap:round}
svg .marker{fill:#0969da;stroke:#fff;stroke-width:1.5}
svg .access line{stroke:#8250df;stroke-width:2;stroke-dasharray:4 3}
svg .access text{fill:#8250df;font-weight:700}
</style>
";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn passed() -> Value {
        json!({
            "id": "drl_1f2e3d4c5b6a7980",
            "procedure": "prod-db",
            "mode": "automated",
            "injections": ["channel-down:slack", "custodian-lost:alice"],
            "requested_by": "admin",
            "started_at": "2026-11-29T05:00:00.000Z",
            "finished_at": "2026-11-29T05:00:04.210Z",
            "outcome": "passed",
            "break": "brk_0011223344556677",
            "time_to_access_ms": 412,
            "content_hash": "ab12",
            "steps": [
                {"step": "requested", "at": "2026-11-29T05:00:00.010Z", "at_ms": 1_796_000_000_010_i64,
                 "offset_ms": 10, "detail": "automated drill drl_1f2e3d4c5b6a7980"},
                {"step": "alert delivered", "offset_ms": 35, "detail": "ops-webhook: break.requested (3 ms)"},
                {"step": "share accepted", "offset_ms": 120, "detail": "bob (1/2)"},
                {"step": "granted", "offset_ms": 412, "detail": "quorum reached"}
            ],
            "checks": [
                {"check": "alerted", "ok": true, "reason": "delivered to ops-webhook in 25 ms"},
                {"check": "escalated", "ok": true, "reason": "escalated to email in 1 s"},
                {"check": "granted", "ok": true, "reason": "granted in 412 ms"}
            ]
        })
    }

    fn failed() -> Value {
        let mut v = passed();
        v["outcome"] = json!("failed");
        v["time_to_access_ms"] = Value::Null;
        v["checks"][1] = json!({
            "check": "escalated", "ok": false,
            "reason": "slack was down and nothing escalated within 3 s"
        });
        v
    }

    fn in_order(haystack: &str, needles: &[&str]) -> bool {
        let mut from = 0;
        for n in needles {
            match haystack[from..].find(n) {
                Some(i) => from += i + n.len(),
                None => return false,
            }
        }
        true
    }

    fn svg(html: &str) -> &str {
        let start = html.find("<svg id=\"timeline\"").expect("svg");
        let end = html[start..].find("</svg>").expect("end of svg") + start;
        &html[start..end]
    }

    /// Unescaped pipes in a Markdown line.
    fn pipes(line: &str) -> usize {
        let mut n = 0;
        let mut escaped = false;
        for c in line.chars() {
            match c {
                '\\' if !escaped => escaped = true,
                '|' if !escaped => n += 1,
                _ => escaped = false,
            }
        }
        n
    }

    #[test]
    fn passed_report_renders_checks_and_steps_in_order() {
        let v = passed();
        let m = markdown(&v);
        assert!(
            m.starts_with("# Drill drl\\_1f2e3d4c5b6a7980 — prod-db\n"),
            "{m}"
        );
        assert!(m.contains("- Outcome: **PASSED**"));
        assert!(m.contains("- Mode: automated"));
        assert!(m.contains("- Injections: channel-down:slack, custodian-lost:alice"));
        assert!(m.contains("- Time to access: 412 ms (0.412 s)"));
        assert!(m.contains("| alerted | ✅ pass | delivered to ops-webhook in 25 ms |"));
        assert!(in_order(
            &m,
            &["## Checks", "alerted", "escalated", "granted"]
        ));
        assert!(in_order(
            &m,
            &[
                "## Timeline",
                "| +10 ms | requested |",
                "| +35 ms | alert delivered |",
                "| +120 ms | share accepted |",
                "| +412 ms | granted |"
            ]
        ));

        let h = html(&v);
        assert!(h.starts_with("<!DOCTYPE html>"));
        assert!(h.contains("<title>Drill drl_1f2e3d4c5b6a7980 — prod-db</title>"));
        assert!(h.contains("name=\"viewport\""));
        assert!(h.contains("<span class=\"badge pass\">PASSED</span>"));
        assert!(!h.contains("<script"), "no JavaScript");
        assert!(
            !h.contains("src=") && !h.contains("href="),
            "no external assets"
        );
        assert_eq!(h.matches("<tr class=\"pass\">").count(), 3);
        assert_eq!(h.matches("<tr class=\"fail\">").count(), 0);
        assert!(in_order(&h, &["alerted", "escalated", "granted in 412 ms"]));
        let s = svg(&h);
        assert_eq!(
            s.matches("class=\"marker\"").count(),
            4,
            "one marker per step"
        );
        assert!(in_order(
            s,
            &["requested", "alert delivered", "share accepted", "granted"]
        ));
        assert!(s.contains(">access +412 ms</text>"));
        // The last step sits at the right end of the axis, as does the access line.
        assert!(s.contains(&format!("cx=\"{PLOT_X1:.1}\"")));
        assert!(s.contains("0 ms</text>"));
        assert!(!s.contains("NaN") && !s.contains("inf"));
    }

    #[test]
    fn failed_report_shows_failed_and_the_failing_reason() {
        let v = failed();
        let m = markdown(&v);
        assert!(m.contains("- Outcome: **FAILED**"));
        assert!(
            m.contains("| escalated | ❌ fail | slack was down and nothing escalated within 3 s |")
        );
        assert!(m.contains("- Time to access: — (not reached)"));

        let h = html(&v);
        assert!(h.contains("<span class=\"badge fail\">FAILED</span>"));
        assert_eq!(h.matches("<tr class=\"fail\">").count(), 1);
        assert_eq!(h.matches("<tr class=\"pass\">").count(), 2);
        assert!(h.contains(
            "<tr class=\"fail\"><td>escalated</td><td class=\"result\">❌ fail</td>\
             <td>slack was down and nothing escalated within 3 s</td></tr>"
        ));
        assert!(!svg(&h).contains("class=\"access\""), "no access marker");
    }

    #[test]
    fn hostile_text_is_escaped_in_both_formats() {
        let evil = "<script>alert(\"x\")</script>";
        let mut v = passed();
        v["id"] = json!("drl_<b>'1'</b>");
        v["procedure"] = json!(evil);
        v["mode"] = json!("live\n| injected | row |");
        v["injections"] = json!([evil, "a|b"]);
        v["steps"][0]["step"] = json!(evil);
        v["steps"][1]["detail"] = json!("pipe | and\nnew line\r\n| x | y | z |");
        v["checks"][0]["check"] = json!("a|b");
        v["checks"][0]["reason"] = json!("say \"hi\" & 'bye' <img src=x onerror=alert(1)>\n| x |");
        v["outcome"] = json!("<script>");

        let h = html(&v);
        assert!(!h.contains("<script"), "{h}");
        assert!(!h.contains("<img"));
        assert!(!h.contains("<b>"));
        assert!(h.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
        assert!(h.contains("say &quot;hi&quot; &amp; &#39;bye&#39; &lt;img"));
        assert!(h.contains("<title>Drill drl_&lt;b&gt;&#39;1&#39;&lt;/b&gt; — &lt;script&gt;"));
        // Inside the SVG too (step label and tooltip).
        let s = svg(&h);
        assert!(s.contains("&lt;script&gt;"));
        assert!(!s.contains("<script"));
        assert!(h.contains("class=\"badge unknown\">&lt;SCRIPT&gt;</span>"));

        let m = markdown(&v);
        assert!(!m.contains("<script"), "{m}");
        assert!(!m.contains("<img"));
        assert!(m.contains("&lt;script&gt;"));
        // Every table line is one row with exactly four unescaped pipes.
        for line in m.lines().filter(|l| l.starts_with('|')) {
            assert_eq!(pipes(line), 4, "{line}");
        }
        assert!(m.contains(
            "| +35 ms | alert delivered | pipe \\| and<br>new line<br>\\| x \\| y \\| z \\| |"
        ));
        assert!(m.contains("| a\\|b | ✅ pass |"));
        // The summary stays one line per item.
        assert!(m.contains("- Mode: live<br>\\| injected \\| row \\|\n"));
        assert!(!m.lines().any(|l| l.starts_with("| injected")));
    }

    #[test]
    fn running_drill_without_steps_renders() {
        let v = json!({
            "id": "drl_0000000000000001",
            "procedure": "prod-db",
            "mode": "live",
            "injections": [],
            "outcome": "running",
            "started_at": "2026-11-29T05:00:00.000Z",
            "finished_at": null,
            "time_to_access_ms": null,
            "break": null,
            "steps": [],
            "checks": []
        });
        let m = markdown(&v);
        assert!(m.contains("- Outcome: **RUNNING**"));
        assert!(m.contains("- Injections: none"));
        assert!(m.contains("- Finished: — (still running)"));
        assert!(m.contains("_No steps recorded._"));
        assert!(m.contains("_No checks recorded._"));

        let h = html(&v);
        assert!(h.contains("<span class=\"badge running\">RUNNING</span>"));
        let s = svg(&h);
        assert_eq!(s.matches("class=\"marker\"").count(), 0);
        assert!(s.contains("No steps recorded yet"));
        assert!(h.ends_with("</html>\n"));
    }

    #[test]
    fn missing_and_malformed_fields_render() {
        for v in [
            json!({}),
            Value::Null,
            json!([]),
            json!("drill"),
            json!(42),
            json!({"steps": null, "checks": {}, "injections": 7, "outcome": 3}),
            json!({"steps": [null, 1, "x", [], {}], "checks": [null, {}, {"ok": "true"}]}),
        ] {
            let m = markdown(&v);
            assert!(m.starts_with("# Drill "), "{m}");
            let h = html(&v);
            assert!(h.contains("<svg id=\"timeline\""));
            assert!(h.contains("</html>"));
            assert!(!h.contains("NaN") && !h.contains("inf"));
        }
        let h = html(&json!({}));
        assert!(h.contains("<title>Drill (unknown) — (unknown procedure)</title>"));
        assert!(h.contains("badge unknown\">UNKNOWN<"));
        // A check whose `ok` is not `true` fails.
        let h = html(&json!({"checks": [{"check": "c", "ok": "true"}, {"check": "d"}]}));
        assert_eq!(h.matches("<tr class=\"fail\">").count(), 2);
    }

    #[test]
    fn untrusted_numbers_are_clamped() {
        let v = json!({
            "outcome": "passed",
            "time_to_access_ms": u64::MAX,
            "steps": [
                {"step": "neg", "offset_ms": -500},
                {"step": "string", "offset_ms": "35"},
                {"step": "junk", "offset_ms": "abc"},
                {"step": "float", "offset_ms": 1e300},
                {"step": "big", "offset_ms": i64::MAX},
                {"step": "none"},
                {"step": "obj", "offset_ms": {"a": 1}}
            ]
        });
        let m = markdown(&v);
        assert!(m.contains("| -500 ms | neg |"));
        assert!(m.contains("| +35 ms | string |"));
        assert!(m.contains("| — | junk |"));
        assert!(m.contains(&format!("| +{} ms | float |", i64::MAX)));
        assert!(m.contains(&format!("- Time to access: {} ms", i64::MAX)));
        let h = html(&v);
        let s = svg(&h);
        // Steps with a usable offset get a marker; the rest say so.
        assert_eq!(s.matches("class=\"marker\"").count(), 4);
        assert_eq!(s.matches(">time unknown<").count(), 3);
        assert!(!s.contains("NaN") && !s.contains("inf"));
        // Negative offsets sit at 0, nothing goes past the end of the axis.
        assert!(s.contains(&format!("cx=\"{PLOT_X0:.1}\"")));
        for cx in s.split("cx=\"").skip(1) {
            let x: f64 = cx[..cx.find('"').expect("quote")].parse().expect("number");
            assert!((PLOT_X0..=PLOT_X1).contains(&x), "{x}");
        }
        // Tiny numbers: zero-length axis.
        let h = html(&json!({"time_to_access_ms": 0, "steps": [{"step": "a", "offset_ms": 0}]}));
        assert!(!h.contains("NaN") && !h.contains("inf"));
    }

    #[test]
    fn escape_covers_the_five_characters() {
        assert_eq!(escape("&<>\"'x"), "&amp;&lt;&gt;&quot;&#39;x");
        assert_eq!(escape("a\u{0}b"), "a b");
        assert_eq!(md("a|b\r\nc\nd"), "a\\|b<br>c<br>d");
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(one_line("é\nü", 10), "é ü");
    }
}
