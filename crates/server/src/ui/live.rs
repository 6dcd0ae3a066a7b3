//! The live views: Server-Sent Events that carry re-rendered fragments of a break's (or a
//! drill's) status and timeline whenever they change, for htmx's SSE extension to swap in.
//! Each stream reads the store every [`POLL`]; it sends only when a fragment changed, and
//! keeps the connection alive with comments in between.

use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use breakglass_engine::TimelineStep;
use futures_util::stream::{self, Stream};

use super::auth::Viewer;
use super::pages::{
    BreakStatus, DrillView, SessionQuery, StatementView, break_status, drill_view, recording_state,
};
use super::{UiError, millis, when};
use crate::AppState;

/// How often a live stream looks for changes.
const POLL: Duration = Duration::from_millis(250);

/// A timeline step, for people.
pub(crate) struct TimelineRow {
    pub(crate) seq: u64,
    pub(crate) at: String,
    /// Since the request.
    pub(crate) offset: String,
    pub(crate) step: &'static str,
    pub(crate) detail: String,
    /// `ok`, `bad` or empty: how the step reads.
    pub(crate) class: &'static str,
}

/// Timeline rows of steps, offsets from `start_ms`.
pub(crate) fn rows(steps: &[TimelineStep], start_ms: i64) -> Vec<TimelineRow> {
    steps
        .iter()
        .map(|s| TimelineRow {
            seq: s.seq,
            at: when(s.at),
            offset: format!("+{}", millis(s.at.0.saturating_sub(start_ms).max(0))),
            step: s.step,
            detail: s.detail.clone(),
            class: match s.step {
                "unsealed and granted"
                | "rotated and re-sealed"
                | "sessions ended"
                | "acknowledged" => "ok",
                "grant failed" | "rotation failed" | "grant end failed" | "share rejected"
                | "lapsed" | "escalated" => "bad",
                _ => "",
            },
        })
        .collect()
}

#[derive(Template)]
#[template(path = "timeline.html")]
pub(crate) struct TimelineFragment<'a> {
    pub(crate) timeline: &'a [TimelineRow],
}

#[derive(Template)]
#[template(path = "break_status.html")]
pub(crate) struct StatusFragment<'a> {
    pub(crate) status: &'a BreakStatus,
}

#[derive(Template)]
#[template(path = "drill_result.html")]
pub(crate) struct DrillFragment<'a> {
    pub(crate) drill: &'a DrillView,
}

/// Renders to one SSE event, or `None` when the fragment cannot render (logged).
fn event(name: &str, t: &impl Template) -> Option<Event> {
    match t.render() {
        Ok(html) => Some(Event::default().event(name).data(html)),
        Err(e) => {
            tracing::error!(error = %e, "rendering a live fragment failed");
            None
        }
    }
}

/// The state of one stream: the fragments last sent.
struct Seen {
    fragments: Vec<String>,
    first: bool,
    done: bool,
}

impl Seen {
    /// The events whose fragment changed since the last poll.
    fn changed(&mut self, events: Vec<(String, Option<Event>)>) -> Vec<Event> {
        let mut out = Vec::new();
        if self.fragments.len() != events.len() {
            self.fragments = vec![String::new(); events.len()];
        }
        for (i, (key, ev)) in events.into_iter().enumerate() {
            if self.fragments[i] != key {
                self.fragments[i] = key;
                if let Some(ev) = ev {
                    out.push(ev);
                }
            }
        }
        self.first = false;
        out
    }
}

/// Renders `(fragment key, event)` pairs for a break.
async fn break_events_now(
    s: &AppState,
    viewer: &Viewer,
    id: &str,
) -> Result<Vec<(String, Option<Event>)>, UiError> {
    let (b, steps) = s.engine.break_timeline(&viewer.actor, id).await?;
    let status = break_status(&b, s.engine.now());
    let rows = rows(&steps, status.requested_ms);
    // The status key leaves out the remaining time, which the page counts down itself.
    let status_key = format!(
        "{}|{}|{:?}|{:?}",
        status.state, status.approvals, status.deadline_ms, status.ended
    );
    let timeline_key = rows
        .iter()
        .map(|r| r.seq.to_string())
        .collect::<Vec<_>>()
        .join(",");
    Ok(vec![
        (
            status_key,
            event("status", &StatusFragment { status: &status }),
        ),
        (
            timeline_key,
            event("timeline", &TimelineFragment { timeline: &rows }),
        ),
    ])
}

/// What a stream follows.
#[derive(Clone, Copy)]
enum Follow {
    Break,
    Drill,
    OpenBreaks,
}

fn sse(
    s: AppState,
    viewer: Viewer,
    id: String,
    follow: Follow,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let seen = Seen {
        fragments: Vec::new(),
        first: true,
        done: false,
    };
    let stream = stream::unfold(
        (s, viewer, id, seen, Vec::<Event>::new()),
        move |(s, viewer, id, mut seen, mut queue)| async move {
            loop {
                if let Some(ev) = queue.pop() {
                    return Some((Ok(ev), (s, viewer, id, seen, queue)));
                }
                if seen.done {
                    return None;
                }
                if !seen.first {
                    tokio::time::sleep(POLL).await;
                }
                let now = match follow {
                    Follow::Drill => drill_events_now(&s, &viewer, &id).await,
                    Follow::Break => break_events_now(&s, &viewer, &id).await,
                    Follow::OpenBreaks => open_breaks_now(&s, &viewer).await,
                };
                match now {
                    Ok(events) => {
                        queue = seen.changed(events);
                        // Popped from the end: reverse so they go out in order.
                        queue.reverse();
                    }
                    Err(e) => {
                        // The break or drill is gone, or the session ended: say so and stop.
                        seen.done = true;
                        let ev = Event::default().event("error").data(e.1);
                        return Some((Ok(ev), (s, viewer, id, seen, queue)));
                    }
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// `GET /breaks/{id}/events`: the break's status and timeline as they change.
pub(crate) async fn break_events(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    // Refuse at once (with the page's error) what the viewer may not read.
    if let Err(e) = s.engine.break_(&viewer.actor, &id).await {
        return UiError::from(e).into_response();
    }
    sse(s, viewer, id, Follow::Break).into_response()
}

/// Renders `(fragment key, event)` pairs for a drill: its break's status and timeline, and
/// the result once it finished.
async fn drill_events_now(
    s: &AppState,
    viewer: &Viewer,
    id: &str,
) -> Result<Vec<(String, Option<Event>)>, UiError> {
    let d = s.engine.drill(&viewer.actor, id).await?;
    let view = drill_view(&d);
    let mut out = vec![(
        format!("{}|{}", view.outcome, view.checks.len()),
        event("result", &DrillFragment { drill: &view }),
    )];
    if let Some(b) = &d.break_id {
        out.extend(break_events_now(s, viewer, b).await?);
    }
    Ok(out)
}

/// `GET /drills/{id}/events`: the drill's break as it runs, then its result.
pub(crate) async fn drill_events(
    State(s): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = s.engine.drill(&viewer.actor, &id).await {
        return UiError::from(e).into_response();
    }
    sse(s, viewer, id, Follow::Drill).into_response()
}

/// A break not yet ended, on the dashboard.
pub(crate) struct OpenBreakRow {
    pub(crate) id: String,
    pub(crate) procedure: String,
    pub(crate) state: &'static str,
    pub(crate) requester: String,
    pub(crate) reason: String,
    pub(crate) drill: bool,
    pub(crate) requested_ms: i64,
    pub(crate) approvals: String,
}

/// Breaks looked at for the dashboard's banner (the newest; ended ones are left out).
const OPEN_BREAKS_SCAN: i64 = 200;

/// The breaks not yet ended, newest first.
pub(crate) async fn open_breaks(
    s: &AppState,
    viewer: &Viewer,
) -> Result<Vec<OpenBreakRow>, UiError> {
    Ok(s.engine
        .breaks(&viewer.actor, None, OPEN_BREAKS_SCAN)
        .await?
        .iter()
        .filter(|b| !matches!(b, breakglass_domain::Break::Ended(_)))
        .map(|b| {
            let info = b.info();
            OpenBreakRow {
                id: info.id.0.clone(),
                procedure: info.procedure.clone(),
                state: b.state(),
                requester: info.requester.clone(),
                reason: info.reason.clone(),
                drill: info.drill.is_some(),
                requested_ms: info.requested_at.0,
                approvals: format!("{} of {}", info.approvals.len(), info.quorum),
            }
        })
        .collect())
}

#[derive(Template)]
#[template(path = "open_breaks.html")]
pub(crate) struct OpenBreaksFragment<'a> {
    pub(crate) open_breaks: &'a [OpenBreakRow],
}

async fn open_breaks_now(
    s: &AppState,
    viewer: &Viewer,
) -> Result<Vec<(String, Option<Event>)>, UiError> {
    let rows = open_breaks(s, viewer).await?;
    let key = rows
        .iter()
        .map(|r| format!("{}:{}:{}", r.id, r.state, r.approvals))
        .collect::<Vec<_>>()
        .join(",");
    let mut events = vec![(
        key,
        event("breaks", &OpenBreaksFragment { open_breaks: &rows }),
    )];
    if viewer.can_audit() {
        let sessions = open_sessions(s, viewer).await?;
        let key = sessions
            .iter()
            .map(|x| x.session.as_str())
            .collect::<Vec<_>>()
            .join(",");
        events.push((
            key,
            event(
                "sessions",
                &OpenSessionsFragment {
                    open_sessions: &sessions,
                },
            ),
        ));
    }
    Ok(events)
}

/// An open gateway session on the dashboard.
pub(crate) struct OpenSessionRow {
    pub(crate) break_id: String,
    pub(crate) procedure: String,
    pub(crate) session: String,
    pub(crate) requester: String,
    pub(crate) peer: String,
    pub(crate) since: String,
}

/// The gateway sessions open now, for a viewer who may read the audit log (none otherwise).
pub(crate) async fn open_sessions(
    s: &AppState,
    viewer: &Viewer,
) -> Result<Vec<OpenSessionRow>, UiError> {
    if !viewer.can_audit() {
        return Ok(Vec::new());
    }
    Ok(s.engine
        .open_gateway_sessions_shared(&viewer.actor, POLL)
        .await?
        .iter()
        .map(|o| OpenSessionRow {
            since: super::when(o.started_at),
            break_id: o.break_id.clone(),
            procedure: o.procedure.clone(),
            session: o.session_id.clone(),
            requester: o.requester.clone(),
            peer: o.peer.clone(),
        })
        .collect())
}

#[derive(Template)]
#[template(path = "open_sessions.html")]
pub(crate) struct OpenSessionsFragment<'a> {
    pub(crate) open_sessions: &'a [OpenSessionRow],
}

/// `GET /events`: the dashboard's open breaks as they open, change and end, and for admins
/// and auditors the open gateway sessions.
pub(crate) async fn dashboard_events(State(s): State<AppState>, viewer: Viewer) -> Response {
    sse(s, viewer, String::new(), Follow::OpenBreaks).into_response()
}

/// Statements a live session page is sent per read.
const LIVE_PAGE: usize = 500;

/// How often a live session page's stream looks for new statements (the gateway hands them
/// to the store about every 100 ms).
const SESSION_POLL: Duration = Duration::from_millis(500);

#[derive(Template)]
#[template(path = "statement_rows.html")]
pub(crate) struct RowsFragment<'a> {
    pub(crate) statements: &'a [StatementView],
}

#[derive(Template)]
#[template(path = "session_state.html")]
pub(crate) struct SessionStateFragment {
    pub(crate) recording: &'static str,
    pub(crate) recorded: String,
    /// Always `None`: the stream sends the state once the session has ended.
    pub(crate) live_from: Option<u64>,
}

/// Where a live session stream is.
struct Tail {
    s: AppState,
    viewer: Viewer,
    id: String,
    session: String,
    /// The next statement to send.
    from: u64,
    /// Events to send before reading again.
    queue: std::collections::VecDeque<Event>,
    done: bool,
}

impl Tail {
    /// Reads what is new: rows, or the session's end (its recording checked against its
    /// audit entry) and `ended`; nothing while it is open and quiet.
    async fn poll(&mut self) -> Result<(), UiError> {
        let page = self
            .s
            .engine
            .session_statements(
                &self.viewer.actor,
                &self.id,
                &self.session,
                self.from,
                LIVE_PAGE,
            )
            .await?;
        if let Some(last) = page.statements.last() {
            // Sent for as long as the session runs: the page keeps only its newest rows
            // (`data-keep`, trimmed by app.js), so a busy session does not fill the browser.
            self.from = last.seq.saturating_add(1);
            let rows: Vec<StatementView> = page.statements.iter().map(StatementView::of).collect();
            self.queue
                .extend(event("rows", &RowsFragment { statements: &rows }));
            return Ok(());
        }
        if self
            .s
            .engine
            .gateway_session_has_ended(&self.viewer.actor, &self.id, &self.session)
            .await?
        {
            let known = self
                .s
                .engine
                .recorded_sessions(&self.viewer.actor, &self.id, Some(&self.session))
                .await?;
            if let Some(x) = known.first() {
                let state = SessionStateFragment {
                    recording: recording_state(x),
                    recorded: x
                        .ended
                        .as_ref()
                        .map(|e| e.recorded.to_string())
                        .unwrap_or_default(),
                    live_from: None,
                };
                self.queue.extend(event("state", &state));
            }
            self.end();
        }
        Ok(())
    }

    fn end(&mut self) {
        self.queue
            .push_back(Event::default().event("ended").data("ended"));
        self.done = true;
    }
}

/// `/breaks/{id}/sessions/{session}/events?from=N`: an open session's statements from `N` on
/// as they are recorded (`rows`, to append), then its end (`state`, `ended`) (admins and
/// auditors).
pub(crate) async fn session_events(
    State(s): State<AppState>,
    viewer: Viewer,
    Path((id, session)): Path<(String, String)>,
    Query(q): Query<SessionQuery>,
) -> Response {
    // Refuse at once what the viewer may not read, and a session the break does not have.
    match s
        .engine
        .recorded_sessions(&viewer.actor, &id, Some(&session))
        .await
    {
        Ok(known) if known.is_empty() => {
            return UiError(
                axum::http::StatusCode::NOT_FOUND,
                format!("break {id} has no gateway session {session}"),
            )
            .into_response();
        }
        Ok(_) => {}
        Err(e) => return UiError::from(e).into_response(),
    }
    let tail = Tail {
        s,
        viewer,
        id,
        session,
        from: q.from.unwrap_or(0),
        queue: std::collections::VecDeque::new(),
        done: false,
    };
    let stream = stream::unfold((tail, true), |(mut t, first)| async move {
        let mut first = first;
        loop {
            if let Some(ev) = t.queue.pop_front() {
                return Some((Ok::<_, Infallible>(ev), (t, first)));
            }
            if t.done {
                return None;
            }
            if !std::mem::take(&mut first) {
                tokio::time::sleep(SESSION_POLL).await;
            }
            if let Err(e) = t.poll().await {
                t.done = true;
                t.queue.push_back(Event::default().event("error").data(e.1));
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
