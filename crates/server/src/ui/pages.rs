//! The pages: dashboard, procedure, break, drill, audit, inventory; and the forms that change
//! state (open a break, run a drill, run discovery, close a break), each through the same
//! engine use case as the JSON API.

use std::collections::HashMap;
use std::time::Duration;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use breakglass_domain::{Action, Break, DrillMode, Injection, Procedure, Timestamp};
use breakglass_engine::ports::{AttestationRecord, DrillRecord};
use breakglass_engine::{AuditAbout, ChainVerdict, DrillRequest, ProcedureStatus, SealState};
use serde::Deserialize;

use super::auth::Viewer;
use super::graph;
use super::live::{self, TimelineRow};
use super::{LastVerify, UiError, ago, millis, render, when};
use crate::AppState;

/// Rows shown in history tables.
const HISTORY: i64 = 20;
/// Audit entries per page.
const AUDIT_PAGE: i64 = 100;

#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub(crate) status: u16,
    pub(crate) title: &'static str,
    pub(crate) message: String,
}

/// One finding, for people.
pub(crate) struct FindingRow {
    pub(crate) verdict: &'static str,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// A custodian and what is known of their key.
pub(crate) struct CustodianCell {
    pub(crate) name: String,
    /// `attested`, `stale`, `never` or `lost`.
    pub(crate) state: &'static str,
    /// In words: when attested, or why lost.
    pub(crate) detail: String,
}

/// The latest finished drill of a procedure.
pub(crate) struct DrillCell {
    pub(crate) id: String,
    pub(crate) outcome: String,
    pub(crate) time_to_access: String,
    pub(crate) when: String,
}

/// A break not yet ended.
pub(crate) struct BreakCell {
    pub(crate) id: String,
    pub(crate) state: &'static str,
    pub(crate) drill: bool,
}

/// A dashboard row.
pub(crate) struct ProcedureRow {
    pub(crate) id: String,
    pub(crate) description: String,
    pub(crate) verdict: &'static str,
    pub(crate) findings: Vec<FindingRow>,
    pub(crate) quorum: String,
    pub(crate) custodians: Vec<CustodianCell>,
    pub(crate) last_drill: Option<DrillCell>,
    pub(crate) tainted: Option<String>,
    pub(crate) sealed: bool,
    pub(crate) open_breaks: Vec<BreakCell>,
    /// How many custodians have a second factor, in words.
    pub(crate) second_factor: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
pub(crate) struct DashboardPage {
    pub(crate) viewer: Viewer,
    pub(crate) open_breaks: Vec<live::OpenBreakRow>,
    /// The gateway sessions open now (admins and auditors; kept up to date by `/events`).
    pub(crate) open_sessions: Vec<live::OpenSessionRow>,
    pub(crate) rows: Vec<ProcedureRow>,
    pub(crate) total: usize,
    pub(crate) counts: [usize; 3],
    pub(crate) filter_verdict: String,
    pub(crate) filter_q: String,
}

#[derive(Deserialize)]
pub(crate) struct DashboardQuery {
    #[serde(default)]
    verdict: Option<String>,
    #[serde(default)]
    q: Option<String>,
}

fn custodian_cells(
    p: &Procedure,
    attestations: &[AttestationRecord],
    now: Timestamp,
    max_age: Duration,
) -> Vec<CustodianCell> {
    p.custodians
        .iter()
        .map(|c| {
            let fp = c.key.fingerprint();
            let rec = attestations
                .iter()
                .find(|a| a.custodian == c.name && a.key_fingerprint == fp);
            let (state, detail) = match rec {
                Some(AttestationRecord {
                    lost_at: Some(at),
                    lost_reason,
                    ..
                }) => (
                    "lost",
                    format!(
                        "key declared lost {}{}",
                        ago(now, *at),
                        lost_reason
                            .as_deref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ),
                ),
                Some(AttestationRecord {
                    attested_at: Some(at),
                    ..
                }) => {
                    let fresh =
                        now.since(*at) <= i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
                    (
                        if fresh { "attested" } else { "stale" },
                        format!("key attested {}", ago(now, *at)),
                    )
                }
                _ => ("never", "key never attested".to_owned()),
            };
            CustodianCell {
                name: c.name.clone(),
                state,
                detail,
            }
        })
        .collect()
}

fn drill_cell(d: &DrillRecord, now: Timestamp) -> DrillCell {
    DrillCell {
        id: d.id.clone(),
        outcome: d.outcome.clone(),
        time_to_access: d
            .time_to_access_ms
            .map(millis)
            .unwrap_or_else(|| "—".into()),
        when: ago(now, d.finished_at.unwrap_or(d.started_at)),
    }
}

fn break_cell(b: &Break) -> BreakCell {
    BreakCell {
        id: b.info().id.0.clone(),
        state: b.state(),
        drill: b.info().drill.is_some(),
    }
}

fn procedure_row(
    s: &ProcedureStatus,
    readiness: Option<&breakglass_domain::readiness::Readiness>,
    attestations: &[AttestationRecord],
    latest: Option<&DrillRecord>,
    now: Timestamp,
    max_age: Duration,
) -> ProcedureRow {
    let p = &s.stored.procedure;
    ProcedureRow {
        id: p.id.clone(),
        description: p.description.clone(),
        verdict: readiness.map_or("unknown", |r| r.verdict.as_str()),
        findings: readiness
            .map(|r| {
                r.findings
                    .iter()
                    .map(|f| FindingRow {
                        verdict: f.verdict.as_str(),
                        code: f.code,
                        message: f.message.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        quorum: match &p.external {
            Some(c) => format!(
                "held outside breakglass at {}: {} of {} holders present — {}",
                c.location,
                c.present,
                c.holders.len(),
                c.holders_named()
            ),
            None => format!("{} of {}", p.quorum, p.custodians.len()),
        },
        custodians: custodian_cells(p, attestations, now, max_age),
        last_drill: latest.map(|d| drill_cell(d, now)),
        tainted: s.stored.taint.as_ref().map(|t| t.reason.clone()),
        // An externally held credential has nothing to seal: never flagged "not sealed".
        sealed: matches!(s.seal, SealState::Sealed { .. }) || p.external.is_some(),
        open_breaks: s.open_breaks.iter().map(break_cell).collect(),
        second_factor: readiness
            .and_then(|r| r.second_factor.as_ref())
            .map(second_factor_words),
    }
}

/// "2 of 3 custodians (TOTP 1, hardware key 1); required: totp, 2 can approve".
fn second_factor_words(c: &breakglass_domain::SecondFactorCount) -> String {
    let mut text = format!(
        "{} of {} custodians (TOTP {}, hardware key {})",
        c.with_second_factor, c.custodians, c.totp, c.hardware
    );
    if let Some(rule) = c.required {
        text.push_str(&format!(
            "; required: {rule}, {} can approve",
            c.can_approve
        ));
        if !c.missing.is_empty() {
            text.push_str(&format!(" (not yet: {})", c.missing.join(", ")));
        }
    }
    text
}

pub(crate) async fn dashboard(
    State(s): State<AppState>,
    viewer: Viewer,
    Query(q): Query<DashboardQuery>,
) -> Result<Response, UiError> {
    let e = &s.engine;
    let procedures = e.procedures(&viewer.actor).await?;
    let readiness = e.readiness(&viewer.actor).await?;
    let attestations = e.attestations(&viewer.actor).await?;
    let latest = e.latest_drills_all().await?;
    let now = e.now();
    let max_age = e.config().attestation_max_age;
    let by_id: HashMap<&str, _> = readiness
        .iter()
        .map(|r| (r.procedure.as_str(), r))
        .collect();
    let mut rows: Vec<ProcedureRow> = procedures
        .iter()
        .map(|p| {
            let id = p.stored.procedure.id.as_str();
            procedure_row(
                p,
                by_id.get(id).copied(),
                &attestations,
                latest.iter().find(|d| d.procedure == id),
                now,
                max_age,
            )
        })
        .collect();
    // Worst first, then by name: one glance tells what is broken.
    let rank = |v: &str| match v {
        "broken" => 0,
        "degraded" => 1,
        "ready" => 2,
        _ => 3,
    };
    rows.sort_by(|a, b| rank(a.verdict).cmp(&rank(b.verdict)).then(a.id.cmp(&b.id)));
    let total = rows.len();
    let counts = [
        rows.iter().filter(|r| r.verdict == "broken").count(),
        rows.iter().filter(|r| r.verdict == "degraded").count(),
        rows.iter().filter(|r| r.verdict == "ready").count(),
    ];
    let filter_verdict = q.verdict.unwrap_or_default();
    let filter_q = q.q.unwrap_or_default();
    let needle = filter_q.trim().to_lowercase();
    rows.retain(|r| {
        (filter_verdict.is_empty() || r.verdict == filter_verdict)
            && (needle.is_empty()
                || r.id.to_lowercase().contains(&needle)
                || r.description.to_lowercase().contains(&needle)
                || r.custodians
                    .iter()
                    .any(|c| c.name.to_lowercase().contains(&needle)))
    });
    let open_sessions = live::open_sessions(&s, &viewer).await?;
    Ok(render(
        StatusCode::OK,
        &DashboardPage {
            open_sessions,
            open_breaks: live::open_breaks(&s, &viewer).await?,
            viewer,
            rows,
            total,
            counts,
            filter_verdict,
            filter_q,
        },
    ))
}

/// A break in a history table.
pub(crate) struct BreakRow {
    pub(crate) id: String,
    pub(crate) state: &'static str,
    pub(crate) requester: String,
    pub(crate) reason: String,
    pub(crate) ticket: String,
    pub(crate) requested: String,
    pub(crate) time_to_access: String,
    pub(crate) drill: bool,
}

fn break_row(b: &Break) -> BreakRow {
    let info = b.info();
    let granted = match b {
        Break::Granted(g) => Some(g.granted_at),
        Break::Ended(e) => e.granted_at,
        Break::Requested(_) => None,
    };
    BreakRow {
        id: info.id.0.clone(),
        state: b.state(),
        requester: info.requester.clone(),
        reason: info.reason.clone(),
        ticket: info.ticket.clone(),
        requested: when(info.requested_at),
        time_to_access: granted
            .map(|g| millis(g.since(info.requested_at)))
            .unwrap_or_else(|| "—".into()),
        drill: info.drill.is_some(),
    }
}

/// A drill in a history table.
pub(crate) struct DrillRow {
    pub(crate) id: String,
    pub(crate) mode: String,
    pub(crate) injections: String,
    pub(crate) outcome: String,
    pub(crate) started: String,
    pub(crate) time_to_access: String,
    pub(crate) requested_by: String,
}

fn drill_row(d: &DrillRecord) -> DrillRow {
    DrillRow {
        id: d.id.clone(),
        mode: d.mode.clone(),
        injections: if d.injections.is_empty() {
            "—".into()
        } else {
            d.injections.join(", ")
        },
        outcome: d.outcome.clone(),
        started: when(d.started_at),
        time_to_access: d
            .time_to_access_ms
            .map(millis)
            .unwrap_or_else(|| "—".into()),
        requested_by: d.requested_by.clone(),
    }
}

/// An audit entry in a table.
pub(crate) struct EntryRow {
    pub(crate) seq: u64,
    pub(crate) at: String,
    pub(crate) actor: String,
    pub(crate) kind: String,
    pub(crate) procedure: String,
    pub(crate) break_id: String,
    pub(crate) payload: String,
}

fn entry_row(e: &breakglass_audit::Entry) -> EntryRow {
    EntryRow {
        seq: e.seq,
        at: when(Timestamp(e.time_ms)),
        actor: e.actor.clone(),
        kind: e.kind.clone(),
        procedure: e.procedure.clone().unwrap_or_default(),
        break_id: e.break_id.clone().unwrap_or_default(),
        payload: e.payload.to_string(),
    }
}

/// One line of a procedure's settings.
pub(crate) struct Setting {
    pub(crate) name: &'static str,
    pub(crate) value: String,
}

/// A step of the path and what it depends on.
pub(crate) struct Dependency {
    pub(crate) step: &'static str,
    pub(crate) depends_on: Vec<String>,
    /// A dependency that is one of the outages the procedure is for.
    pub(crate) conflicts: Vec<String>,
}

#[derive(Template)]
#[template(path = "procedure.html")]
pub(crate) struct ProcedurePage {
    pub(crate) viewer: Viewer,
    pub(crate) row: ProcedureRow,
    pub(crate) graph_svg: String,
    pub(crate) trend_svg: String,
    pub(crate) settings: Vec<Setting>,
    pub(crate) dependencies: Vec<Dependency>,
    pub(crate) declared: Vec<String>,
    pub(crate) protects_against: Vec<String>,
    pub(crate) breaks: Vec<BreakRow>,
    pub(crate) drills: Vec<DrillRow>,
    pub(crate) audit: Option<Vec<EntryRow>>,
    pub(crate) may_open: bool,
    pub(crate) may_drill: bool,
    pub(crate) max_grant_min: u64,
    pub(crate) message: Option<String>,
}

fn settings(p: &Procedure) -> Vec<Setting> {
    let mut out = vec![Setting {
        name: "target",
        value: format!(
            "{} {}",
            p.target.kind.as_str(),
            p.target
                .details
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }];
    match &p.external {
        Some(c) => {
            out.push(Setting {
                name: "custody",
                value: format!("external: {}", c.location),
            });
            out.push(Setting {
                name: "holders",
                value: format!(
                    "{} ({} of {} must be present)",
                    c.holders_named(),
                    c.present,
                    c.holders.len()
                ),
            });
            out.push(Setting {
                name: "steps",
                value: c
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(i, t)| format!("{}. {t}", i + 1))
                    .collect::<Vec<_>>()
                    .join(" "),
            });
            out.push(Setting {
                name: "open",
                value: format!(
                    "breakglass custody open {} --reason … --ticket …, then breakglass custody step RUN N as each step is done",
                    p.id
                ),
            });
            out.push(Setting {
                name: "holders attest every",
                value: c.attest_every.map_or_else(
                    || "no schedule".into(),
                    |d| humantime::format_duration(d).to_string(),
                ),
            });
        }
        None => {
            out.push(Setting {
                name: "quorum",
                value: format!("{} of {}", p.quorum, p.custodians.len()),
            });
            out.push(Setting {
                name: "longest grant",
                value: humantime::format_duration(p.max_grant).to_string(),
            });
        }
    }
    out.extend([Setting {
        name: "alert channels",
        value: list_or_none(&p.alert_channels),
    }]);
    if let Some(d) = p.ack_within {
        out.push(Setting {
            name: "acknowledge within",
            value: format!(
                "{} (then escalate to {})",
                humantime::format_duration(d),
                list_or_none(&p.escalation)
            ),
        });
    }
    if let Some(d) = p.max_credential_age {
        out.push(Setting {
            name: "rotate at least every",
            value: humantime::format_duration(d).to_string(),
        });
    }
    let drill = match (&p.drill_cron, p.drill_every) {
        (Some(c), _) => format!("cron {}", c.as_str()),
        (None, Some(d)) => format!("every {}", humantime::format_duration(d)),
        (None, None) => "no schedule".into(),
    };
    out.push(Setting {
        name: "drills",
        value: format!(
            "{drill}{}",
            if p.drill_automated { ", automated" } else { "" }
        ),
    });
    out
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// What each step of the path depends on, from the model; a dependency that is one of the
/// outages the procedure is for is flagged.
fn dependencies(p: &Procedure) -> Vec<Dependency> {
    let against = |deps: &[String]| -> Vec<String> {
        deps.iter()
            .filter(|d| p.protects_against.iter().any(|o| o == *d))
            .cloned()
            .collect()
    };
    let mut steps = vec![
        (
            "request",
            vec![
                "breakglass server".to_owned(),
                "requester's key or API token".to_owned(),
            ],
        ),
        (
            "alerts",
            p.alert_channels
                .iter()
                .chain(&p.escalation)
                .map(|c| format!("channel {c}"))
                .collect(),
        ),
        (
            "approvals",
            p.custodians
                .iter()
                .map(|c| format!("{}'s {} key", c.name, c.key.kind()))
                .collect(),
        ),
        (
            "grant",
            vec![format!(
                "{} target{}",
                p.target.kind.as_str(),
                p.target
                    .details
                    .get("host")
                    .map(|h| format!(" at {h}"))
                    .unwrap_or_default()
            )],
        ),
        ("expiry", vec![format!("{} target", p.target.kind.as_str())]),
        (
            "rotation",
            vec![format!("{} target", p.target.kind.as_str())],
        ),
    ];
    if !p.dependencies.is_empty() {
        steps.push(("declared", p.dependencies.clone()));
    }
    steps
        .into_iter()
        .map(|(step, depends_on)| {
            let mut conflicts = against(&depends_on);
            if step == "declared" {
                conflicts = against(&p.dependencies);
            }
            Dependency {
                step,
                depends_on,
                conflicts,
            }
        })
        .collect()
}

#[derive(Deserialize)]
pub(crate) struct MessageQuery {
    #[serde(default)]
    msg: Option<String>,
}

pub(crate) async fn procedure(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<MessageQuery>,
) -> Result<Response, UiError> {
    let e = &s.engine;
    let status = e.procedure(&viewer.actor, &id).await?;
    let readiness = e.readiness(&viewer.actor).await?;
    let attestations = e.attestations(&viewer.actor).await?;
    let drills = e.drills(&viewer.actor, Some(&id), HISTORY).await?;
    let breaks = e.breaks(&viewer.actor, Some(&id), HISTORY).await?;
    let now = e.now();
    let latest = drills.iter().find(|d| d.outcome != "running");
    let row = procedure_row(
        &status,
        readiness.iter().find(|r| r.procedure == id),
        &attestations,
        latest,
        now,
        e.config().attestation_max_age,
    );
    let p = &status.stored.procedure;
    let audit = if viewer.may(Action::ReadAudit) {
        Some(
            e.audit_about(&viewer.actor, AuditAbout::Procedure(&id), None, 50)
                .await?
                .iter()
                .map(entry_row)
                .collect(),
        )
    } else {
        None
    };
    let trend: Vec<graph::TrendPoint> = drills
        .iter()
        .rev()
        .filter(|d| d.outcome != "running")
        .map(|d| graph::TrendPoint {
            label: when(d.started_at),
            ms: d.time_to_access_ms,
            passed: d.outcome == "passed",
        })
        .collect();
    let budget_ms = p
        .drill_max_time_to_access
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let page = ProcedurePage {
        // An external-custody break is human steps confirmed with `breakglass custody`; the
        // form opens sealed breaks only.
        may_open: viewer.may(Action::OpenBreak) && p.external.is_none(),
        may_drill: viewer.may(Action::RunDrill),
        graph_svg: graph::workflow(p, &row.custodians),
        trend_svg: graph::trend(&trend, budget_ms),
        settings: settings(p),
        dependencies: dependencies(p),
        declared: p.dependencies.clone(),
        protects_against: p.protects_against.clone(),
        breaks: breaks.iter().map(break_row).collect(),
        drills: drills.iter().map(drill_row).collect(),
        audit,
        max_grant_min: (p.max_grant.as_secs() / 60).max(1),
        message: q.msg,
        row,
        viewer,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub(crate) struct OpenBreakForm {
    csrf: String,
    reason: String,
    #[serde(default)]
    ticket: String,
    /// Minutes; empty for the procedure's longest grant.
    #[serde(default)]
    minutes: String,
}

pub(crate) async fn open_break(
    State(s): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<OpenBreakForm>,
) -> Result<Response, UiError> {
    viewer.check_form(&s, &headers, &f.csrf)?;
    let duration = match f.minutes.trim() {
        "" => None,
        m => Some(Duration::from_secs(
            m.parse::<u64>()
                .map_err(|_| {
                    UiError(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("minutes: `{m}` is not a whole number of minutes"),
                    )
                })?
                .saturating_mul(60),
        )),
    };
    let requested = s
        .engine
        .open_break(&viewer.actor, &id, &f.reason, &f.ticket, duration)
        .await?;
    Ok(Redirect::to(&format!("/breaks/{}", requested.info.id.0)).into_response())
}

#[derive(Deserialize)]
pub(crate) struct DrillForm {
    csrf: String,
    #[serde(default)]
    mode: String,
    /// Injections, comma-separated (`channel-down:slack, target-slow`).
    #[serde(default)]
    inject: String,
}

pub(crate) async fn run_drill(
    State(s): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<DrillForm>,
) -> Result<Response, UiError> {
    viewer.check_form(&s, &headers, &f.csrf)?;
    let invalid = |m: String| UiError(StatusCode::UNPROCESSABLE_ENTITY, m);
    let mode = match f.mode.trim() {
        "" => DrillMode::Automated,
        m => DrillMode::parse(m).map_err(|e| invalid(format!("mode: {e}")))?,
    };
    let injections = f
        .inject
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|i| Injection::parse(i).map_err(|e| invalid(format!("inject: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let request = DrillRequest {
        mode,
        injections,
        ..DrillRequest::automated()
    };
    let drill = s.engine.start_drill(&viewer.actor, &id, request).await?;
    Ok(Redirect::to(&format!("/drills/{}", drill.id)).into_response())
}

#[derive(Deserialize)]
pub(crate) struct CsrfOnly {
    csrf: String,
}

pub(crate) async fn discover(
    State(s): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, UiError> {
    viewer.check_form(&s, &headers, &f.csrf)?;
    let d = s.engine.discover(&viewer.actor, &id).await?;
    let unknown = d.unknown().count();
    Ok(Redirect::to(&format!(
        "/inventory?msg={}",
        if unknown == 0 {
            format!("discovery+of+{id}:+no+drift")
        } else {
            format!("discovery+of+{id}:+{unknown}+undeclared+privileged+account(s)")
        }
    ))
    .into_response())
}

pub(crate) async fn close_break(
    State(s): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, UiError> {
    viewer.check_form(&s, &headers, &f.csrf)?;
    s.engine.close(&viewer.actor, &id).await?;
    Ok(Redirect::to(&format!("/breaks/{id}")).into_response())
}

/// What the live views show of a break: its state, the countdown, the time to access.
pub(crate) struct BreakStatus {
    pub(crate) id: String,
    pub(crate) procedure: String,
    pub(crate) state: &'static str,
    pub(crate) requester: String,
    pub(crate) reason: String,
    pub(crate) ticket: String,
    pub(crate) drill: Option<String>,
    pub(crate) approvals: String,
    pub(crate) requested_ms: i64,
    pub(crate) requested: String,
    /// Fixed once granted.
    pub(crate) time_to_access: Option<String>,
    /// Deadline of a live grant (the countdown).
    pub(crate) deadline_ms: Option<i64>,
    pub(crate) deadline: String,
    pub(crate) remaining: String,
    pub(crate) ended: Option<String>,
}

pub(crate) fn break_status(b: &Break, now: Timestamp) -> BreakStatus {
    let info = b.info();
    let (granted, deadline, ended) = match b {
        Break::Requested(_) => (None, None, None),
        Break::Granted(g) => (Some(g.granted_at), Some(g.deadline), None),
        Break::Ended(e) => (e.granted_at, None, Some(e.ended_at)),
    };
    BreakStatus {
        id: info.id.0.clone(),
        procedure: info.procedure.clone(),
        state: b.state(),
        requester: info.requester.clone(),
        reason: info.reason.clone(),
        ticket: info.ticket.clone(),
        drill: info.drill.clone(),
        approvals: format!(
            "{} of {}{}",
            info.approvals.len(),
            info.quorum,
            if info.approvals.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    info.approvals
                        .iter()
                        .map(|a| a.custodian.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
        requested_ms: info.requested_at.0,
        requested: when(info.requested_at),
        time_to_access: granted.map(|g| millis(g.since(info.requested_at))),
        deadline_ms: deadline.map(|d| d.0),
        deadline: deadline.map(when).unwrap_or_default(),
        remaining: deadline
            .map(|d| millis(d.since(now).max(0)))
            .unwrap_or_default(),
        ended: ended.map(when),
    }
}

#[derive(Template)]
#[template(path = "break.html")]
pub(crate) struct BreakPage {
    pub(crate) viewer: Viewer,
    pub(crate) status: BreakStatus,
    pub(crate) timeline: Vec<TimelineRow>,
    pub(crate) may_close: bool,
    pub(crate) is_custodian: bool,
    /// Gateway sessions with their statements (admins and auditors; empty otherwise).
    pub(crate) sessions: Vec<SessionView>,
}

/// A gateway session on the break page.
pub(crate) struct SessionView {
    pub(crate) id: String,
    pub(crate) peer: String,
    pub(crate) started: String,
    pub(crate) end: String,
    /// `intact`, `edited` or `open`.
    pub(crate) recording: &'static str,
    pub(crate) statements: Vec<StatementView>,
    /// What follows the first `SHOWN` statements (`1,234 more statements`), empty when
    /// nothing does.
    pub(crate) more: String,
    /// Where the session's next page starts (its own page), when there is one.
    pub(crate) next: Option<u64>,
}

/// Statements shown per session on the page.
const SHOWN: usize = 500;

/// One recorded statement.
pub(crate) struct StatementView {
    pub(crate) seq: u64,
    pub(crate) at: String,
    pub(crate) took: String,
    pub(crate) text: String,
    /// Its bound parameters (`$1 = '…'`), empty when none.
    pub(crate) params: String,
    /// A COPY's data (its first 2,000 characters), empty when none.
    pub(crate) data: String,
    pub(crate) outcome: String,
    pub(crate) failed: bool,
    pub(crate) rows: String,
}

impl StatementView {
    pub(crate) fn of(st: &breakglass_engine::ports::StatementRecord) -> StatementView {
        StatementView {
            seq: st.seq,
            at: when(st.started_at),
            took: format!("{:.3} ms", st.duration_us as f64 / 1000.0),
            text: st.statement.clone(),
            params: st.params_text(),
            data: st
                .data
                .as_deref()
                .map(|d| breakglass_audit::evidence::shorten(d, 2000))
                .unwrap_or_default(),
            outcome: match (&st.error, st.refused) {
                (Some(e), true) => format!("refused: {e}"),
                (Some(e), false) => format!("error {e}"),
                (None, _) => st.command.clone().unwrap_or_default(),
            },
            failed: st.error.is_some(),
            rows: st.rows.map(|r| r.to_string()).unwrap_or_default(),
        }
    }
}

/// `intact`, `edited` or `open`: whether an ended session's stored recording matches the
/// digest in its audit entry.
pub(crate) fn recording_state(x: &breakglass_engine::RecordedSession) -> &'static str {
    match &x.ended {
        Some(e) if e.intact => "intact",
        Some(_) => "edited",
        None => "open",
    }
}

/// The break's gateway sessions, for those who may read the audit log.
async fn sessions_of(s: &AppState, viewer: &Viewer, id: &str) -> Vec<SessionView> {
    if !viewer.may(Action::ReadAudit) {
        return Vec::new();
    }
    let Ok(sessions) = s.engine.recorded_sessions(&viewer.actor, id, None).await else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(sessions.len());
    for x in sessions {
        // The first page of each session only: a busy break holds millions of statements.
        let Ok(page) = s
            .engine
            .session_statements(&viewer.actor, id, &x.session_id, 0, SHOWN)
            .await
        else {
            return Vec::new();
        };
        let more = match (page.next_seq, &x.ended) {
            (None, _) => String::new(),
            (Some(_), Some(e)) => format!(
                "{} more statements",
                e.recorded.saturating_sub(page.statements.len() as u64)
            ),
            (Some(_), None) => "more statements".into(),
        };
        out.push(SessionView {
            more,
            next: page.next_seq,
            statements: page.statements.iter().map(StatementView::of).collect(),
            recording: recording_state(&x),
            end: x
                .ended
                .as_ref()
                .map(|e| format!("{} at {}", e.end, when(e.at)))
                .unwrap_or_else(|| "open".into()),
            id: x.session_id,
            peer: x.peer,
            started: when(x.started_at),
        });
    }
    out
}

pub(crate) async fn break_page(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let (b, steps) = s.engine.break_timeline(&viewer.actor, &id).await?;
    let status = break_status(&b, s.engine.now());
    let page = BreakPage {
        may_close: viewer.may(Action::CloseBreak) && status.ended.is_none(),
        is_custodian: s
            .engine
            .procedure(&viewer.actor, &status.procedure)
            .await
            .map(|p| p.stored.procedure.custodian(&viewer.actor.name).is_some())
            .unwrap_or(false),
        timeline: live::rows(&steps, status.requested_ms),
        sessions: sessions_of(&s, &viewer, &id).await,
        status,
        viewer,
    };
    Ok(render(StatusCode::OK, &page))
}

/// A drill check, for people.
pub(crate) struct CheckRow {
    pub(crate) name: String,
    pub(crate) ok: bool,
    pub(crate) reason: String,
}

/// What the drill page shows of a drill.
pub(crate) struct DrillView {
    pub(crate) id: String,
    pub(crate) procedure: String,
    pub(crate) mode: String,
    pub(crate) injections: String,
    pub(crate) outcome: String,
    pub(crate) requested_by: String,
    pub(crate) started: String,
    pub(crate) finished: String,
    pub(crate) time_to_access: String,
    pub(crate) break_id: Option<String>,
    pub(crate) checks: Vec<CheckRow>,
    pub(crate) chart_svg: String,
    pub(crate) running: bool,
}

pub(crate) fn drill_view(d: &DrillRecord) -> DrillView {
    let checks = d
        .report
        .get("checks")
        .and_then(|c| c.as_array())
        .map(|cs| {
            cs.iter()
                .map(|c| CheckRow {
                    name: c["check"].as_str().unwrap_or("").to_owned(),
                    ok: c["ok"] == true,
                    reason: c["reason"].as_str().unwrap_or("").to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    DrillView {
        id: d.id.clone(),
        procedure: d.procedure.clone(),
        mode: d.mode.clone(),
        injections: if d.injections.is_empty() {
            "none".into()
        } else {
            d.injections.join(", ")
        },
        outcome: d.outcome.clone(),
        requested_by: d.requested_by.clone(),
        started: when(d.started_at),
        finished: d.finished_at.map(when).unwrap_or_else(|| "—".into()),
        time_to_access: d
            .time_to_access_ms
            .map(millis)
            .unwrap_or_else(|| "—".into()),
        break_id: d.break_id.clone(),
        checks,
        chart_svg: if d.outcome == "running" {
            String::new()
        } else {
            crate::drill_report::chart(&crate::views::drill(d))
        },
        running: d.outcome == "running",
    }
}

#[derive(Template)]
#[template(path = "drill.html")]
pub(crate) struct DrillPage {
    pub(crate) viewer: Viewer,
    pub(crate) drill: DrillView,
    pub(crate) timeline: Vec<TimelineRow>,
}

pub(crate) async fn drill_page(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let d = s.engine.drill(&viewer.actor, &id).await?;
    let timeline = match &d.break_id {
        Some(b) => {
            let (brk, steps) = s.engine.break_timeline(&viewer.actor, b).await?;
            live::rows(&steps, brk.info().requested_at.0)
        }
        None => Vec::new(),
    };
    Ok(render(
        StatusCode::OK,
        &DrillPage {
            drill: drill_view(&d),
            timeline,
            viewer,
        },
    ))
}

#[derive(Template)]
#[template(path = "audit.html")]
pub(crate) struct AuditPage {
    pub(crate) viewer: Viewer,
    pub(crate) verify: Option<LastVerify>,
    pub(crate) verify_when: String,
    pub(crate) entries: Vec<EntryRow>,
    pub(crate) head: u64,
    pub(crate) procedure: String,
    pub(crate) older: Option<u64>,
    pub(crate) newer: bool,
}

/// A page of one gateway session's statements.
#[derive(Template)]
#[template(path = "session.html")]
pub(crate) struct SessionPage {
    pub(crate) viewer: Viewer,
    pub(crate) break_id: String,
    pub(crate) session: String,
    /// `intact`, `edited` or `open`, as on the break page.
    pub(crate) recording: &'static str,
    /// How many statements the session recorded, when it has ended.
    pub(crate) recorded: String,
    pub(crate) statements: Vec<StatementView>,
    /// The first statement's position, when this is not the first page.
    pub(crate) from: Option<u64>,
    pub(crate) next: Option<u64>,
    /// Where the live stream of an open session's next statements starts, on its last page.
    pub(crate) live_from: Option<u64>,
    /// The session is open and the viewer may terminate it (an admin, or the break's
    /// requester).
    pub(crate) may_terminate: bool,
    pub(crate) reason_max: usize,
    /// Rows a live page keeps: the oldest go as new ones come.
    pub(crate) keep: usize,
}

#[derive(Deserialize)]
pub(crate) struct SessionQuery {
    #[serde(default)]
    pub(crate) from: Option<u64>,
    /// Rows a live page keeps (1 to [`LIVE_ROWS`], default [`LIVE_ROWS`]).
    #[serde(default)]
    pub(crate) keep: Option<usize>,
}

/// Rows a live session page keeps unless told fewer: it follows a session for as long as it
/// runs, and a busy one records thousands of statements a second; older rows are on the
/// session's pages.
pub(crate) const LIVE_ROWS: usize = 5_000;

/// `/breaks/{id}/sessions/{session}`: the session's statements `SHOWN` at a time, from
/// `?from=` on (admins and auditors).
pub(crate) async fn session_page(
    State(s): State<AppState>,
    viewer: Viewer,
    Path((id, session)): Path<(String, String)>,
    Query(q): Query<SessionQuery>,
) -> Result<Response, UiError> {
    let from = q.from.unwrap_or(0);
    let keep = match q.keep {
        None => LIVE_ROWS,
        Some(n @ 1..=LIVE_ROWS) => n,
        Some(_) => {
            return Err(UiError(
                StatusCode::BAD_REQUEST,
                format!("keep: the rows a live page keeps, from 1 to {LIVE_ROWS}"),
            ));
        }
    };
    let page = s
        .engine
        .session_statements(&viewer.actor, &id, &session, from, SHOWN)
        .await?;
    let known = s
        .engine
        .recorded_sessions(&viewer.actor, &id, Some(&session))
        .await?
        .into_iter()
        .find(|x| x.session_id == session);
    let Some(known) = known else {
        return Err(UiError(
            StatusCode::NOT_FOUND,
            format!("break {id} has no gateway session {session}"),
        ));
    };
    let live_from = (known.ended.is_none() && page.next_seq.is_none()).then(|| {
        page.statements
            .last()
            .map_or(from, |st| st.seq.saturating_add(1))
    });
    let page = SessionPage {
        keep,
        live_from,
        may_terminate: known.ended.is_none() && viewer.may(Action::CloseBreak),
        reason_max: breakglass_engine::TERMINATION_REASON_MAX,
        recording: recording_state(&known),
        recorded: known
            .ended
            .as_ref()
            .map(|e| e.recorded.to_string())
            .unwrap_or_default(),
        statements: page.statements.iter().map(StatementView::of).collect(),
        from: (from > 0).then_some(from),
        next: page.next_seq,
        break_id: id,
        session,
        viewer,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub(crate) struct TerminateForm {
    csrf: String,
    reason: String,
}

/// Terminates one open gateway session (the break's requester or an admin), then shows its
/// page, where its end appears once the connection has closed.
pub(crate) async fn terminate_session(
    State(s): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path((id, session)): Path<(String, String)>,
    Form(f): Form<TerminateForm>,
) -> Result<Response, UiError> {
    viewer.check_form(&s, &headers, &f.csrf)?;
    match s
        .engine
        .terminate_gateway_session(&viewer.actor, &id, &session, &f.reason)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/breaks/{id}/sessions/{session}")).into_response()),
        // The session runs on another server of several (sessions are in the shared store):
        // asked of that one with the viewer's own session, like the API forwards.
        Err(breakglass_engine::EngineError::Elsewhere { url, .. }) => {
            let (status, answer) = crate::api::forward(
                &s,
                &url,
                &id,
                &format!("sessions/{session}/terminate"),
                "gateway sessions are",
                Some(&viewer.bearer()),
                serde_json::json!({ "reason": f.reason }),
            )
            .await
            .map_err(|e| {
                let (status, message) = e.parts();
                UiError(status, message)
            })?;
            if status.is_success() {
                Ok(Redirect::to(&format!("/breaks/{id}/sessions/{session}")).into_response())
            } else {
                Err(UiError(
                    status,
                    answer["error"]["message"]
                        .as_str()
                        .unwrap_or("the server running the session refused")
                        .to_owned(),
                ))
            }
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    procedure: Option<String>,
    #[serde(default)]
    verify: Option<String>,
}

pub(crate) async fn audit(
    State(s): State<AppState>,
    viewer: Viewer,
    Query(q): Query<AuditQuery>,
) -> Result<Response, UiError> {
    let e = &s.engine;
    let head = e.audit_head(&viewer.actor).await?.map_or(0, |h| h.seq);
    // Verifying reads the log and changes nothing, so it is a link, not a form. It runs on
    // request, or when no verification ran since this process started.
    let stale =
        s.ui.last_verify
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none();
    if q.verify.is_some() || stale {
        let at = e.now();
        let result = match e.verify_audit(&viewer.actor).await? {
            ChainVerdict::Intact(r) => LastVerify {
                at,
                intact: true,
                summary: format!(
                    "{} entries, {} signed checkpoint(s), {} key(s): chain, keys and signatures verify",
                    r.entries,
                    r.checkpoints,
                    r.keys.len()
                ),
            },
            ChainVerdict::Broken(f) => LastVerify {
                at,
                intact: false,
                summary: f.to_string(),
            },
        };
        *s.ui.last_verify.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
        if q.verify.is_some() {
            return Ok(Redirect::to("/audit").into_response());
        }
    }
    let verify =
        s.ui.last_verify
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
    let procedure = q.procedure.unwrap_or_default();
    let about = if procedure.is_empty() {
        AuditAbout::All
    } else {
        AuditAbout::Procedure(&procedure)
    };
    let entries = e
        .audit_about(&viewer.actor, about, q.before, AUDIT_PAGE)
        .await?;
    let older = match entries.last() {
        Some(last) if entries.len() as i64 == AUDIT_PAGE && last.seq > 1 => Some(last.seq),
        _ => None,
    };
    let page = AuditPage {
        verify_when: verify
            .as_ref()
            .map(|v| format!("{} ({})", when(v.at), ago(e.now(), v.at)))
            .unwrap_or_default(),
        verify,
        entries: entries.iter().map(entry_row).collect(),
        head,
        older,
        newer: q.before.is_some(),
        procedure,
        viewer,
    };
    Ok(render(StatusCode::OK, &page))
}

/// One procedure's target in the inventory.
pub(crate) struct InventoryRow {
    pub(crate) procedure: String,
    pub(crate) target: String,
    pub(crate) check: Option<ReportCell>,
    pub(crate) discover: Option<ReportCell>,
    /// Privileged accounts found by the latest discovery.
    pub(crate) accounts: Vec<AccountRow>,
    pub(crate) drift: usize,
    pub(crate) can_discover: bool,
}

/// A target report's outcome.
pub(crate) struct ReportCell {
    pub(crate) ok: bool,
    pub(crate) when: String,
    pub(crate) error: String,
}

/// A privileged account on a target.
pub(crate) struct AccountRow {
    pub(crate) name: String,
    pub(crate) privileges: String,
    pub(crate) expires: String,
    pub(crate) known: bool,
    pub(crate) flags: String,
}

#[derive(Template)]
#[template(path = "inventory.html")]
pub(crate) struct InventoryPage {
    pub(crate) viewer: Viewer,
    pub(crate) rows: Vec<InventoryRow>,
    pub(crate) may_discover: bool,
    pub(crate) message: Option<String>,
}

fn text_list(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", "),
        serde_json::Value::Null => "—".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A person on the people pages, in words.
pub(crate) struct PersonRow {
    pub(crate) name: String,
    pub(crate) contact: String,
    pub(crate) spof: bool,
    pub(crate) critical: String,
    pub(crate) holdings: Vec<HoldingRow>,
    pub(crate) keys: Vec<KeyRow>,
    pub(crate) contacts: Vec<(String, String)>,
    pub(crate) last_drill: Option<PersonDrill>,
    pub(crate) warnings: Vec<(String, String)>,
}

/// One share a person holds.
pub(crate) struct HoldingRow {
    pub(crate) procedure: String,
    pub(crate) sealed: String,
    pub(crate) quorum: String,
    pub(crate) reachable: bool,
    pub(crate) others: usize,
}

/// One key a person holds.
pub(crate) struct KeyRow {
    pub(crate) fingerprint: String,
    pub(crate) kind: String,
    pub(crate) procedures: String,
    pub(crate) attested: String,
    pub(crate) overdue: bool,
    pub(crate) lost: Option<String>,
}

/// A person's latest drill.
pub(crate) struct PersonDrill {
    pub(crate) id: String,
    pub(crate) procedure: String,
    pub(crate) outcome: String,
    pub(crate) mode: String,
    pub(crate) when: String,
}

fn person_row(p: &breakglass_domain::Person, now: Timestamp) -> PersonRow {
    PersonRow {
        name: p.name.clone(),
        contact: p.contact(),
        spof: p.single_point_of_failure(),
        critical: p.critical().join(", "),
        holdings: p
            .holdings
            .iter()
            .map(|h| HoldingRow {
                procedure: h.procedure.clone(),
                sealed: match (&h.location, &h.seal_id) {
                    (Some(location), _) => format!("external: {location}"),
                    (None, Some(seal)) => seal.clone(),
                    (None, None) => "not sealed".into(),
                },
                quorum: format!("{} of {}", h.quorum, h.custodians),
                reachable: h.reachable_without,
                others: h.others_available,
            })
            .collect(),
        keys: p
            .keys
            .iter()
            .map(|k| KeyRow {
                fingerprint: k.fingerprint.clone(),
                kind: k.kind.clone(),
                procedures: k.procedures.join(", "),
                attested: k
                    .attested_at
                    .map_or_else(|| "never".into(), |t| ago(now, t)),
                overdue: k.overdue,
                lost: k.lost_at.map(|t| {
                    format!(
                        "{} ({})",
                        ago(now, t),
                        k.lost_reason.as_deref().unwrap_or("no reason given")
                    )
                }),
            })
            .collect(),
        contacts: p
            .contacts
            .iter()
            .map(|c| {
                (
                    if c.contact.is_empty() {
                        "none".into()
                    } else {
                        c.contact.clone()
                    },
                    c.procedures.join(", "),
                )
            })
            .collect(),
        last_drill: p.last_drill.as_ref().map(|d| PersonDrill {
            id: d.drill.clone(),
            procedure: d.procedure.clone(),
            outcome: d.outcome.clone(),
            mode: d.mode.clone(),
            when: ago(now, d.at),
        }),
        warnings: p
            .warnings
            .iter()
            .map(|w| (w.code.to_owned(), w.message.clone()))
            .collect(),
    }
}

#[derive(Template)]
#[template(path = "people.html")]
pub(crate) struct PeoplePage {
    pub(crate) viewer: Viewer,
    pub(crate) people: Vec<PersonRow>,
}

#[derive(Template)]
#[template(path = "person.html")]
pub(crate) struct PersonPage {
    pub(crate) viewer: Viewer,
    pub(crate) p: PersonRow,
}

/// Who is on the hook: every person, what they hold, who is a single point of failure.
pub(crate) async fn people(State(s): State<AppState>, viewer: Viewer) -> Result<Response, UiError> {
    let all = s.engine.people(&viewer.actor).await?;
    let now = s.engine.now();
    let people = all.iter().map(|p| person_row(p, now)).collect();
    Ok(render(StatusCode::OK, &PeoplePage { viewer, people }))
}

/// One person.
pub(crate) async fn person(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    let p = s.engine.person(&viewer.actor, &name).await?;
    let p = person_row(&p, s.engine.now());
    Ok(render(StatusCode::OK, &PersonPage { viewer, p }))
}

pub(crate) async fn inventory(
    State(s): State<AppState>,
    viewer: Viewer,
    Query(q): Query<MessageQuery>,
) -> Result<Response, UiError> {
    let e = &s.engine;
    let procedures = e.procedures(&viewer.actor).await?;
    let reports = e.target_reports(&viewer.actor, None).await?;
    let now = e.now();
    let may_discover = viewer.may(Action::CheckTarget);
    let rows = procedures
        .iter()
        .map(|st| {
            let p = &st.stored.procedure;
            let cell = |kind: &str| {
                reports
                    .iter()
                    .find(|r| r.procedure == p.id && r.kind == kind)
                    .map(|r| ReportCell {
                        ok: r.ok,
                        when: ago(now, r.at),
                        error: r.detail["error"].as_str().unwrap_or("").to_owned(),
                    })
            };
            let accounts: Vec<AccountRow> = reports
                .iter()
                .find(|r| r.procedure == p.id && r.kind == "discover")
                .and_then(|r| r.detail["accounts"].as_array())
                .map(|a| {
                    a.iter()
                        .map(|acc| AccountRow {
                            name: acc["name"].as_str().unwrap_or("").to_owned(),
                            privileges: text_list(&acc["privileges"]),
                            expires: text_list(&acc["expires"]),
                            known: acc["known"] == true,
                            flags: text_list(&acc["flags"]),
                        })
                        .collect()
                })
                .unwrap_or_default();
            InventoryRow {
                procedure: p.id.clone(),
                target: p.target.kind.as_str().to_owned(),
                check: cell("check"),
                discover: cell("discover"),
                drift: accounts.iter().filter(|a| !a.known).count(),
                accounts,
                can_discover: may_discover
                    && !matches!(p.target.kind, breakglass_domain::TargetKind::Secret),
            }
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &InventoryPage {
            viewer,
            rows,
            may_discover,
            message: q.msg,
        },
    ))
}
