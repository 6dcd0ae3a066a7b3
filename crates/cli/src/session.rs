//! `breakglass session show`: a break's gateway sessions and every statement they ran, read
//! from the API a page at a time (a busy break records millions of statements) and printed as
//! they come. `--follow` goes on printing what is recorded: one session until it ends, or
//! every session of the break, new ones as they start, until the break has ended.

use std::io::Write;
use std::time::Duration;

use anyhow::{Result, anyhow};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::Client;
use crate::commands::{connect, seg};
use crate::output::{self, field};
use crate::{Cli, Exit, exit};

/// `session` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum SessionCmd {
    /// Every gateway session of a break and every statement it ran (admin, auditor).
    Show {
        /// Break id.
        break_id: String,
        /// Statements read per request (1 to 10000); they are printed a page at a time.
        #[arg(long, default_value_t = SESSION_PAGE, value_parser = clap::value_parser!(u16).range(1..=10_000))]
        page_size: u16,
        /// Only this session (`BREAK-sN`).
        #[arg(long)]
        session: Option<String>,
        /// The session's statements from this position on (`#`), not from its first.
        #[arg(long, requires = "session")]
        from_seq: Option<u64>,
        /// Keep printing statements as they are recorded: with `--session`, until that session
        /// ends; without, of every session of the break, new ones as they start, until the
        /// break has ended and its last session with it (`--output json`: one JSON object a
        /// line, `event` saying what it is).
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// The gateway sessions open now, across breaks (admin, auditor): each with its break,
    /// requester, client address, start, and whether it runs on the server asked.
    List,
    /// End one open gateway session now, before its break ends (the break's requester or an
    /// admin): audited with the reason, which the client is sent with who terminated it; a
    /// statement still running is cancelled on the database. The break and its other
    /// sessions go on (`break close` ends them all).
    Terminate {
        /// Break id.
        break_id: String,
        /// The session to end (`BREAK-sN`, as `session show` lists them).
        #[arg(long)]
        session: String,
        /// Why (one line; recorded in the audit log and sent to the client).
        #[arg(long)]
        reason: String,
    },
}

/// Statements of a session read per request by `session show`, unless told.
const SESSION_PAGE: u16 = 1_000;

/// How long a follower waits before asking again when nothing new came (the gateway hands
/// statements to the store about every 100 ms).
const POLL: Duration = Duration::from_secs(1);

/// `session` commands.
pub(crate) async fn run(cli: &Cli, cmd: &SessionCmd) -> Result<()> {
    let (break_id, page_size, session, from_seq, follow) = match cmd {
        SessionCmd::Show {
            break_id,
            page_size,
            session,
            from_seq,
            follow,
        } => (break_id, page_size, session, from_seq, follow),
        SessionCmd::Terminate {
            break_id,
            session,
            reason,
        } => return terminate(cli, break_id, session, reason).await,
        SessionCmd::List => return list(cli).await,
    };
    let client = connect(cli).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let reader = Reader {
        client: &client,
        break_id,
        page_size: *page_size,
        json: cli.output.is_json(),
    };
    let tampered = match session {
        None if *follow => reader.follow_break(&mut out).await?,
        _ => {
            reader
                .show(session.as_deref(), from_seq.unwrap_or(0), *follow, &mut out)
                .await?
        }
    };
    out.flush()?;
    if tampered {
        return Err(anyhow!(Exit {
            code: exit::AUDIT_BROKEN,
            message: "a stored recording does not match the digest in its audit entry".into()
        }));
    }
    Ok(())
}

/// `session list`.
async fn list(cli: &Cli) -> Result<()> {
    let open = connect(cli).await?.get("/api/sessions").await?;
    if cli.output.is_json() {
        output::json(&open);
        return Ok(());
    }
    let sessions = open["sessions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if sessions.is_empty() {
        println!("no gateway session is open");
        return Ok(());
    }
    for s in sessions {
        println!(
            "{}  break {} ({})  for {}  from {}  since {}{}",
            field(&s["session"]),
            field(&s["break"]),
            field(&s["procedure"]),
            field(&s["requester"]),
            field(&s["peer"]),
            field(&s["started_at"]),
            if s["here"] == true {
                ""
            } else {
                "  (on another server)"
            }
        );
    }
    Ok(())
}

/// `session terminate`.
async fn terminate(cli: &Cli, break_id: &str, session: &str, reason: &str) -> Result<()> {
    let t = connect(cli)
        .await?
        .post(
            &format!(
                "/api/breaks/{}/sessions/{}/terminate",
                seg(break_id),
                seg(session)
            ),
            &json!({ "reason": reason }),
        )
        .await?;
    if cli.output.is_json() {
        output::json(&t);
    } else {
        println!(
            "terminated gateway session {} of break {} (by {}: {}); its end is recorded when the connection has closed",
            field(&t["session"]),
            field(&t["break"]),
            field(&t["terminated_by"]),
            field(&t["reason"])
        );
    }
    Ok(())
}

/// Reads one break's recording from the API.
struct Reader<'a> {
    client: &'a Client,
    break_id: &'a str,
    page_size: u16,
    json: bool,
}

/// One page of a session's statements.
struct Page {
    statements: Vec<Value>,
    /// Where the next page starts; `None` after the last statement recorded so far.
    next_seq: Option<u64>,
    /// On the last page: whether the session has ended (no more statements can come).
    ended: bool,
}

impl Reader<'_> {
    /// The break's sessions (`?limit=0`: no statements), `only` that one, or those that
    /// started after audit entry `after`.
    async fn sessions(&self, only: Option<&str>, after: u64) -> Result<Vec<Value>> {
        let mut path = format!(
            "/api/breaks/{}/sessions?limit=0&started_after={after}",
            seg(self.break_id)
        );
        if let Some(only) = only {
            path.push_str(&format!("&session={}", seg(only)));
        }
        let r = match self.client.get(&path).await {
            Ok(r) => r,
            Err(e) if e.status == Some(404) && only.is_some() => {
                // Name the break's sessions (this reads all of them: only on a wrong name).
                let all = self
                    .client
                    .get(&format!(
                        "/api/breaks/{}/sessions?limit=0",
                        seg(self.break_id)
                    ))
                    .await
                    .map_err(|_| e)?;
                let listed: Vec<String> = all["sessions"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|s| field(&s["session"]))
                    .collect();
                return Err(anyhow!(
                    "break {} has no gateway session {} (its sessions: {})",
                    self.break_id,
                    only.unwrap_or_default(),
                    if listed.is_empty() {
                        "none".to_owned()
                    } else {
                        listed.join(", ")
                    }
                ));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(r["sessions"].as_array().cloned().unwrap_or_default())
    }

    /// A page of `session`'s statements from position `from`.
    async fn page(&self, session: &str, from: u64) -> Result<Page> {
        let r = self
            .client
            .get(&format!(
                "/api/breaks/{}/sessions/{}?from_seq={from}&limit={}",
                seg(self.break_id),
                seg(session),
                self.page_size
            ))
            .await?;
        Ok(Page {
            statements: r["statements"].as_array().cloned().unwrap_or_default(),
            // A position that does not go forward is not asked for again.
            next_seq: r["next_seq"].as_u64().filter(|next| *next > from),
            ended: r["ended"] == true,
        })
    }

    /// Every session (or `only` that one) and its statements from `from` on; with `follow`
    /// (one session), its statements as they are recorded until it ends. Returns whether a
    /// stored recording no longer matches its audit entry.
    async fn show(
        &self,
        only: Option<&str>,
        from: u64,
        follow: bool,
        out: &mut impl Write,
    ) -> Result<bool> {
        let sessions = self.sessions(only, 0).await?;
        if self.json {
            // The same document as one read would give, written statement by statement.
            writeln!(
                out,
                "{{\n\"break\": {},\n\"sessions\": {},\n\"statements\": [",
                json!(self.break_id),
                serde_json::to_string_pretty(&sessions)?
            )?;
        } else if sessions.is_empty() {
            writeln!(out, "break {}: no gateway sessions", self.break_id)?;
            return Ok(false);
        }
        let mut tampered = false;
        let mut first = true;
        for s in &sessions {
            let name = s["session"].as_str().unwrap_or_default();
            let (line, intact) = session_line(s);
            tampered |= intact == Some(false);
            if !self.json {
                writeln!(out, "{line}")?;
            }
            let mut next = Some(from);
            let mut first_page = true;
            while let Some(seq) = next {
                let is_first = std::mem::take(&mut first_page);
                let page = self.page(name, seq).await?;
                next = page.next_seq;
                // A live session, followed: its next statements start after the last one
                // read.
                let live = follow && next.is_none() && !page.ended;
                if live {
                    next = Some(after_last(&page.statements, seq));
                }
                if self.json {
                    for x in &page.statements {
                        if !std::mem::take(&mut first) {
                            writeln!(out, ",")?;
                        }
                        write!(out, "{}", serde_json::to_string(x)?)?;
                    }
                } else if !page.statements.is_empty() || is_first {
                    writeln!(out, "{}", table(&page.statements))?;
                }
                if live {
                    out.flush()?;
                    tokio::time::sleep(POLL).await;
                } else if follow && next.is_none() && !self.json {
                    writeln!(out, "session {name} ended")?;
                }
            }
        }
        if self.json {
            writeln!(out, "\n]\n}}")?;
        }
        Ok(tampered)
    }

    /// Every session of the break and its statements, then what is recorded next, new
    /// sessions included, until the break has ended and no session of it is open. Text: a
    /// session's line when it starts, its statements as they come (under its name when
    /// another session's came in between), its end; JSON: one object a line, `event` one of
    /// `session`, `statement`, `session_ended`, `break_ended`.
    async fn follow_break(&self, out: &mut impl Write) -> Result<bool> {
        // Open sessions and where their next statements start.
        let mut open: Vec<(String, u64)> = Vec::new();
        let mut after = 0u64;
        let mut tampered = false;
        let mut last_printed: Option<String> = None;
        loop {
            // The break's state first: once it has ended no session can start, so the
            // sessions listed after it are all there will be.
            let b = self
                .client
                .get(&format!("/api/breaks/{}", seg(self.break_id)))
                .await?;
            let state = field(&b["state"]);
            let over = !matches!(state.as_str(), "requested" | "granted");
            let mut news = false;
            for s in self.sessions(None, after).await? {
                after = after.max(s["started_seq"].as_u64().unwrap_or(0));
                let (line, intact) = session_line(&s);
                tampered |= intact == Some(false);
                if self.json {
                    event(out, json!({"event": "session", "session": s}))?;
                } else {
                    writeln!(out, "{line}")?;
                }
                open.push((field(&s["session"]), 0));
                last_printed = None;
                news = true;
            }
            let mut ended = Vec::new();
            for (name, next) in &mut open {
                loop {
                    let page = self.page(name, *next).await?;
                    if !page.statements.is_empty() {
                        news = true;
                        *next = after_last(&page.statements, *next);
                        if self.json {
                            for x in &page.statements {
                                event(out, json!({"event": "statement", "statement": x}))?;
                            }
                        } else {
                            if last_printed.as_deref() != Some(name.as_str()) {
                                writeln!(out, "session {name}:")?;
                                last_printed = Some(name.clone());
                            }
                            writeln!(out, "{}", table(&page.statements))?;
                        }
                    }
                    if page.next_seq.is_some() {
                        continue;
                    }
                    if page.ended {
                        ended.push(name.clone());
                    }
                    break;
                }
            }
            for name in &ended {
                open.retain(|(n, _)| n != name);
                // Its end as the audit entry has it, with the stored recording checked.
                let s = self.sessions(Some(name), 0).await?;
                let s = s.first().cloned().unwrap_or(Value::Null);
                tampered |= s["recording_intact"] == false;
                if self.json {
                    event(out, json!({"event": "session_ended", "session": s}))?;
                } else {
                    writeln!(out, "session {name} ended: {}", end_text(&s))?;
                    last_printed = None;
                }
                news = true;
            }
            if over && open.is_empty() {
                if self.json {
                    event(
                        out,
                        json!({"event": "break_ended", "break": self.break_id, "state": state}),
                    )?;
                } else {
                    writeln!(out, "break {} {state}: no session open", self.break_id)?;
                }
                return Ok(tampered);
            }
            if !news {
                out.flush()?;
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// Where the statements after `statements` start (`from` when there are none).
fn after_last(statements: &[Value], from: u64) -> u64 {
    statements
        .last()
        .and_then(|x| x["seq"].as_u64())
        .map_or(from, |last| last.saturating_add(1))
}

fn event(out: &mut impl Write, v: Value) -> Result<()> {
    writeln!(out, "{v}")?;
    Ok(())
}

/// A session's line for people, and whether its recording matches its audit entry (`None`
/// while it is open).
fn session_line(s: &Value) -> (String, Option<bool>) {
    let intact = s["recording_intact"].as_bool();
    (
        format!(
            "session {} from {}: {} → {} ({}; {} statements; {})",
            field(&s["session"]),
            field(&s["peer"]),
            field(&s["started_at"]),
            field(&s["ended_at"]),
            field(&s["end"]),
            field(&s["statements"]),
            intact_text(intact)
        ),
        intact,
    )
}

fn intact_text(intact: Option<bool>) -> &'static str {
    match intact {
        Some(true) => "recording matches audit entry",
        Some(false) => "RECORDING DOES NOT MATCH its audit entry",
        None => "still open",
    }
}

/// How a session ended, for people.
fn end_text(s: &Value) -> String {
    format!(
        "{} at {}, {} statements, {}",
        field(&s["end"]),
        field(&s["ended_at"]),
        field(&s["statements"]),
        intact_text(s["recording_intact"].as_bool())
    )
}

/// Statements as `session show`'s table.
fn table(statements: &[Value]) -> String {
    output::table_text(
        &["#", "at", "took", "statement", "outcome", "rows"],
        statements.iter().map(statement_row).collect(),
    )
}

/// A recorded statement (from the API) as a row of `session show`'s table.
fn statement_row(x: &serde_json::Value) -> Vec<String> {
    let outcome = if x["refused"].as_bool() == Some(true) {
        format!("REFUSED ({})", field(&x["error"]))
    } else if !x["error"].is_null() {
        format!("ERROR {}", field(&x["error"]))
    } else {
        field(&x["command"])
    };
    let mut cell = field(&x["statement"]);
    let p = breakglass_audit::evidence::params_text_of(&x["params"]);
    if !p.is_empty() {
        cell.push_str(&format!("\n  {p}"));
    }
    if let Some(d) = x["data"].as_str() {
        cell.push_str(&format!(
            "\n  data: {}",
            breakglass_audit::evidence::shorten(d, 300)
        ));
    }
    vec![
        field(&x["seq"]),
        field(&x["at"]),
        format!(
            "{:.3} ms",
            x["duration_us"].as_f64().unwrap_or(0.0) / 1000.0
        ),
        cell,
        outcome,
        field(&x["rows"]),
    ]
}
