//! Inline SVG drawn from the model: a procedure's workflow graph and its time-to-access trend.
//!
//! Written by hand rather than with a graph-layout crate: the workflow is a fixed chain with
//! one fan-out (the custodians), so its layout is a few lines of arithmetic, and inline SVG
//! needs no script and no asset. Every text is escaped.

use std::fmt::Write as _;

use breakglass_domain::Procedure;

use super::pages::CustodianCell;

/// Width of the drawings' coordinate space; they scale to the page.
const W: i64 = 640;

fn esc(s: &str) -> String {
    crate::drill_report::escape(s)
}

/// Cuts a label to `max` characters, with an ellipsis.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A box with a title and a second line, centred on `cx`.
/// `at` is the centre x, the top y and the width.
fn node(out: &mut String, id: &str, class: &str, at: (i64, i64, i64), title: &str, sub: &str) {
    let (cx, y, w) = at;
    let x = cx - w / 2;
    let chars = usize::try_from(w / 7).unwrap_or(8);
    let _ = write!(
        out,
        "<g class=\"node {class}\" id=\"node-{}\"><rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"46\" rx=\"8\"/>\
         <text x=\"{cx}\" y=\"{}\" class=\"t\">{}</text><text x=\"{cx}\" y=\"{}\" class=\"s\">{}</text></g>",
        esc(id),
        y + 19,
        esc(&cut(title, chars)),
        y + 36,
        esc(&cut(sub, chars))
    );
}

fn edge(out: &mut String, x1: i64, y1: i64, x2: i64, y2: i64) {
    let _ = write!(
        out,
        "<line class=\"edge\" x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" marker-end=\"url(#arrow)\"/>"
    );
}

/// The workflow of a procedure, top to bottom: trigger → alerts → custodians (the quorum) →
/// grant → expiry → rotation → review. Custodian boxes carry their key's attestation state.
pub(crate) fn workflow(p: &Procedure, custodians: &[CustodianCell]) -> String {
    let cx = W / 2;
    let step = 74;
    let main_w = 300;
    let mut out = String::with_capacity(4096);
    let mut y = 10;
    let mut body = String::new();

    node(
        &mut body,
        "trigger",
        "step",
        (cx, y, main_w),
        "trigger: break requested",
        "reason + ticket, by a requester",
    );
    edge(&mut body, cx, y + 46, cx, y + step);
    y += step;

    let channels = if p.alert_channels.is_empty() {
        "no channel declared".to_owned()
    } else {
        p.alert_channels.join(", ")
    };
    let escalation = match (p.ack_within, p.escalation.is_empty()) {
        (Some(d), false) => format!(
            "ack within {}, else {}",
            humantime::format_duration(d),
            p.escalation.join(", ")
        ),
        (Some(d), true) => format!("ack within {}", humantime::format_duration(d)),
        (None, _) => "no acknowledgement deadline".to_owned(),
    };
    node(
        &mut body,
        "alerts",
        if p.alert_channels.is_empty() {
            "step warn"
        } else {
            "step"
        },
        (cx, y, main_w),
        &format!("alerts: {channels}"),
        &escalation,
    );
    let alerts_bottom = y + 46;
    y += step + 10;

    // The custodians, side by side.
    let n = i64::try_from(custodians.len().max(1)).unwrap_or(1);
    let slot = (W - 20) / n;
    let cw = (slot - 10).clamp(60, 150);
    let _ = write!(
        body,
        "<text class=\"quorum\" x=\"{cx}\" y=\"{}\">quorum {} of {}</text>",
        y - 6,
        p.quorum,
        custodians.len()
    );
    for (i, c) in custodians.iter().enumerate() {
        let x = 10 + slot * i64::try_from(i).unwrap_or(0) + slot / 2;
        edge(&mut body, cx, alerts_bottom, x, y);
        node(
            &mut body,
            &format!("custodian-{}", c.name),
            &format!("custodian {}", c.state),
            (x, y, cw),
            &c.name,
            c.state,
        );
    }
    let custodians_bottom = y + 46;
    y += step + 10;
    for (i, _) in custodians.iter().enumerate() {
        let x = 10 + slot * i64::try_from(i).unwrap_or(0) + slot / 2;
        edge(&mut body, x, custodians_bottom, cx, y);
    }

    node(
        &mut body,
        "grant",
        "step",
        (cx, y, main_w),
        &format!("grant on {} target", p.target.kind.as_str()),
        &format!(
            "unsealed on quorum, at most {}",
            humantime::format_duration(p.max_grant)
        ),
    );
    edge(&mut body, cx, y + 46, cx, y + step);
    y += step;
    node(
        &mut body,
        "expiry",
        "step",
        (cx, y, main_w),
        "expiry",
        "enforced by the target; live sessions ended",
    );
    edge(&mut body, cx, y + 46, cx, y + step);
    y += step;
    let rotation = match p.max_credential_age {
        Some(d) => format!(
            "after every use; at most {} old",
            humantime::format_duration(d)
        ),
        None => "after every use".to_owned(),
    };
    node(
        &mut body,
        "rotation",
        "step",
        (cx, y, main_w),
        "rotation + re-seal",
        &rotation,
    );
    edge(&mut body, cx, y + 46, cx, y + step);
    y += step;
    node(
        &mut body,
        "review",
        "step",
        (cx, y, main_w),
        "review",
        "audit log, drill report",
    );
    y += 56;

    let _ = write!(
        out,
        "<svg id=\"workflow\" class=\"graph\" viewBox=\"0 0 {W} {y}\" role=\"img\" aria-label=\"workflow of {}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\"/></marker></defs>{body}</svg>",
        esc(&p.id)
    );
    out
}

/// One drill on the trend chart.
pub(crate) struct TrendPoint {
    /// When it ran.
    pub(crate) label: String,
    /// Its time to access, if it got that far.
    pub(crate) ms: Option<i64>,
    /// Whether it passed.
    pub(crate) passed: bool,
}

/// Time to access across drills, oldest first, with the budget as a dashed line. Empty when
/// no drill measured one.
pub(crate) fn trend(points: &[TrendPoint], budget_ms: Option<i64>) -> String {
    let measured: Vec<i64> = points.iter().filter_map(|p| p.ms).collect();
    if measured.is_empty() {
        return String::new();
    }
    let (h, left, right, top, bottom) = (200_i64, 56_i64, 16_i64, 14_i64, 28_i64);
    let max = measured
        .iter()
        .copied()
        .chain(budget_ms)
        .max()
        .unwrap_or(1)
        .max(1);
    let axis = nice_ceiling(max);
    let plot_w = W - left - right;
    let plot_h = h - top - bottom;
    let n = i64::try_from(points.len()).unwrap_or(1);
    let x_of = |i: usize| {
        let i = i64::try_from(i).unwrap_or(0);
        if n <= 1 {
            left + plot_w / 2
        } else {
            left + plot_w * i / (n - 1)
        }
    };
    let y_of = |ms: i64| top + plot_h - plot_h * ms / axis;
    let mut out = String::with_capacity(2048);
    let _ = write!(
        out,
        "<svg id=\"trend\" class=\"chart\" viewBox=\"0 0 {W} {h}\" role=\"img\" aria-label=\"time to access across drills\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for k in 0..=4 {
        let v = axis * k / 4;
        let y = y_of(v);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/><text class=\"axis\" x=\"{}\" y=\"{}\">{}</text>",
            W - right,
            left - 6,
            y + 4,
            esc(&super::millis(v))
        );
    }
    if let Some(b) = budget_ms {
        let y = y_of(b);
        let _ = write!(
            out,
            "<line class=\"budget\" x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/><text class=\"axis budget-label\" x=\"{}\" y=\"{}\">budget {}</text>",
            W - right,
            W - right,
            y - 4,
            esc(&super::millis(b))
        );
    }
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.ms.map(|ms| format!("{},{}", x_of(i), y_of(ms))))
        .collect();
    let _ = write!(
        out,
        "<polyline class=\"line\" points=\"{}\"/>",
        path.join(" ")
    );
    for (i, p) in points.iter().enumerate() {
        if let Some(ms) = p.ms {
            let _ = write!(
                out,
                "<circle class=\"point {}\" cx=\"{}\" cy=\"{}\" r=\"5\"><title>{}: {} ({})</title></circle>",
                if p.passed { "pass" } else { "fail" },
                x_of(i),
                y_of(ms),
                esc(&p.label),
                esc(&super::millis(ms)),
                if p.passed { "passed" } else { "failed" }
            );
        }
    }
    let _ = write!(
        out,
        "<text class=\"axis start\" x=\"{left}\" y=\"{}\">oldest</text><text class=\"axis\" x=\"{}\" y=\"{}\">latest</text></svg>",
        h - 8,
        W - right,
        h - 8
    );
    out
}

/// The smallest of 1, 2, 5 × 10^k at or above `v`.
fn nice_ceiling(v: i64) -> i64 {
    let mut base = 1_i64;
    loop {
        for m in [1, 2, 5] {
            if base.saturating_mul(m) >= v {
                return base.saturating_mul(m);
            }
        }
        base = base.saturating_mul(10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_cut() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }

    #[test]
    fn trend_draws_one_point_per_measured_drill() {
        let pts = [
            TrendPoint {
                label: "a".into(),
                ms: Some(120),
                passed: true,
            },
            TrendPoint {
                label: "b".into(),
                ms: None,
                passed: false,
            },
            TrendPoint {
                label: "c<".into(),
                ms: Some(900),
                passed: false,
            },
        ];
        let svg = trend(&pts, Some(1000));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("class=\"point fail\""));
        assert!(svg.contains("c&lt;"));
        assert!(svg.contains("budget 1.0 s"));
        assert_eq!(trend(&pts[1..2], None), "");
    }

    #[test]
    fn axis_ceilings() {
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(130), 200);
        assert_eq!(nice_ceiling(2001), 5000);
    }
}
