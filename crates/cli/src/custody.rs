//! `breakglass custody …`: procedures whose credential breakglass cannot seal (`kind:
//! external`). Open a break (a run of the file's human steps), confirm each step as you do it,
//! stop a run, attest the safe's contents, record a rotation, and read the custody status.
//! A drill of such a procedure is `breakglass drill run PROCEDURE`; its steps are confirmed
//! here too.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::Cli;
use crate::commands::{connect, seg};
use crate::output::{self, field};

/// `custody` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum CustodyCmd {
    /// Where the credential lives, its holders with their latest attestation, the steps, the
    /// latest rotation, the taint of a use, and runs still going.
    Status {
        /// Procedure id.
        procedure: String,
    },
    /// Open a break: alerts the procedure's channels naming the holders; then confirm each
    /// step with `custody step` (admin, requester).
    Open {
        /// Procedure id.
        procedure: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// The incident ticket.
        #[arg(long)]
        ticket: String,
    },
    /// Confirm that you did step N (1-based, in order) of a break or drill: a holder, the
    /// run's opener or an admin. The last step ends the run.
    Step {
        /// Run id (`ext_…` for breaks, `drl_…` for drills).
        run: String,
        /// Step number.
        step: usize,
        /// What you noted (never the credential itself).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Stop a run before its last step (its opener or an admin).
    Abort {
        /// Run id.
        run: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// One run: each step with who confirmed it, when, and how long it took.
    Show {
        /// Run id.
        run: String,
    },
    /// Runs (breaks and drills), newest first.
    List {
        /// Only this procedure's runs.
        procedure: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// As a holder, confirm that the credential is in its place (custodian or admin role; an
    /// admin may record for a holder with --holder).
    Attest {
        /// Procedure id.
        procedure: String,
        /// The holder (default: you).
        #[arg(long)]
        holder: Option<String>,
        /// What you saw, e.g. "token and envelope present, seal 4411 intact".
        #[arg(long)]
        note: String,
    },
    /// As a holder, record that the credential was rotated and put back; clears the taint of
    /// a use.
    Rotated {
        /// Procedure id.
        procedure: String,
        /// The holder (default: you).
        #[arg(long)]
        holder: Option<String>,
        /// What was done, e.g. "new root password in envelope 4412; MFA re-enrolled".
        #[arg(long)]
        note: String,
    },
}

pub(crate) async fn run(cli: &Cli, cmd: &CustodyCmd) -> Result<()> {
    let client = connect(cli).await?;
    let json_out = cli.output.is_json();
    match cmd {
        CustodyCmd::Status { procedure } => {
            let s = client
                .get(&format!("/api/procedures/{}/custody", seg(procedure)))
                .await?;
            if json_out {
                output::json(&s);
                return Ok(());
            }
            println!(
                "{}: held outside breakglass at {}",
                field(&s["procedure"]),
                field(&s["location"])
            );
            println!(
                "{} of {} holders must be present; attest every {} s",
                field(&s["present"]),
                s["holders"].as_array().map_or(0, Vec::len),
                field(&s["attest_every_s"])
            );
            output::table(
                &["HOLDER", "CONTACT", "ATTESTED"],
                s["holders"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| {
                        vec![
                            field(&h["name"]),
                            if field(&h["contact"]).is_empty() {
                                "NO CONTACT".into()
                            } else {
                                field(&h["contact"])
                            },
                            format!(
                                "{}{}",
                                if h["attested_at"].is_null() {
                                    "never".into()
                                } else {
                                    field(&h["attested_at"])
                                },
                                if h["attestation_overdue"] == true {
                                    " (OVERDUE)"
                                } else {
                                    ""
                                }
                            ),
                        ]
                    })
                    .collect(),
            );
            for (i, step) in s["steps"].as_array().into_iter().flatten().enumerate() {
                println!("  {}. {}", i + 1, field(step));
            }
            println!(
                "last attested: {}{}",
                field(&s["last_attested_at"]),
                if s["attestation_overdue"] == true {
                    " (OVERDUE)"
                } else {
                    ""
                }
            );
            println!("last rotated: {}", field(&s["last_rotated_at"]));
            if s["tainted"] == true {
                println!("TAINTED: {}", field(&s["taint"]));
            }
            for r in s["open_runs"].as_array().into_iter().flatten() {
                println!(
                    "running: {} {} opened by {} — next step {}",
                    field(&r["kind"]),
                    field(&r["id"]),
                    field(&r["opened_by"]),
                    field(&r["next_step"])
                );
            }
        }
        CustodyCmd::Open {
            procedure,
            reason,
            ticket,
        } => {
            let r = client
                .post(
                    &format!("/api/procedures/{}/custody/breaks", seg(procedure)),
                    &json!({"reason": reason, "ticket": ticket}),
                )
                .await?;
            if json_out {
                output::json(&r);
            } else {
                println!(
                    "break {} opened on {}: the holders are alerted",
                    field(&r["id"]),
                    field(&r["procedure"])
                );
                print_run(&r);
            }
        }
        CustodyCmd::Step { run, step, note } => {
            let r = client
                .post(
                    &format!("/api/custody/runs/{}/steps/{step}", seg(run)),
                    &json!({"note": note}),
                )
                .await?;
            if json_out {
                output::json(&r);
            } else {
                print_run(&r);
            }
        }
        CustodyCmd::Abort { run, reason } => {
            let r = client
                .post(
                    &format!("/api/custody/runs/{}/abort", seg(run)),
                    &json!({"reason": reason}),
                )
                .await?;
            if json_out {
                output::json(&r);
            } else {
                print_run(&r);
            }
        }
        CustodyCmd::Show { run } => {
            let r = client
                .get(&format!("/api/custody/runs/{}", seg(run)))
                .await?;
            if json_out {
                output::json(&r);
            } else {
                print_run(&r);
            }
        }
        CustodyCmd::List { procedure, limit } => {
            let mut path = format!("/api/custody/runs?limit={limit}");
            if let Some(p) = procedure {
                path.push_str(&format!("&procedure={}", seg(p)));
            }
            let r = client.get(&path).await?;
            output::listing(
                cli.output,
                &r,
                "runs",
                &[
                    "RUN",
                    "PROCEDURE",
                    "KIND",
                    "OUTCOME",
                    "STEPS",
                    "OPENED BY",
                    "STARTED",
                ],
                |x| {
                    vec![
                        field(&x["id"]),
                        field(&x["procedure"]),
                        field(&x["kind"]),
                        field(&x["outcome"]),
                        format!(
                            "{}/{}",
                            done_count(x),
                            x["steps"].as_array().map_or(0, Vec::len)
                        ),
                        field(&x["opened_by"]),
                        field(&x["started_at"]),
                    ]
                },
            );
        }
        CustodyCmd::Attest {
            procedure,
            holder,
            note,
        }
        | CustodyCmd::Rotated {
            procedure,
            holder,
            note,
        } => {
            let what = if matches!(cmd, CustodyCmd::Attest { .. }) {
                "attest"
            } else {
                "rotated"
            };
            let r = client
                .post(
                    &format!("/api/procedures/{}/custody/{what}", seg(procedure)),
                    &json!({"holder": holder, "note": note}),
                )
                .await?;
            if json_out {
                output::json(&r);
            } else {
                println!(
                    "{} {} by {} for {} at {}: {}",
                    field(&r["procedure"]),
                    field(&r["kind"]),
                    field(&r["recorded_by"]),
                    field(&r["holder"]),
                    field(&r["at"]),
                    field(&r["note"])
                );
            }
        }
    }
    Ok(())
}

fn done_count(run: &Value) -> usize {
    run["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["done"] == true)
        .count()
}

fn print_run(r: &Value) {
    println!(
        "{} {} of {} ({}): {} — opened by {} at {} ({})",
        field(&r["kind"]),
        field(&r["id"]),
        field(&r["procedure"]),
        field(&r["ticket"]),
        field(&r["outcome"]).to_uppercase(),
        field(&r["opened_by"]),
        field(&r["started_at"]),
        field(&r["reason"])
    );
    for s in r["steps"].as_array().into_iter().flatten() {
        if s["done"] == true {
            println!(
                "  [x] {}. {} — {}, {} ms{}",
                field(&s["step"]),
                field(&s["text"]),
                field(&s["by"]),
                field(&s["took_ms"]),
                if field(&s["note"]).is_empty() {
                    String::new()
                } else {
                    format!(" ({})", field(&s["note"]))
                }
            );
        } else {
            println!("  [ ] {}. {}", field(&s["step"]), field(&s["text"]));
        }
    }
    if let Some(next) = r["next_step"].as_u64()
        && r["outcome"] == "running"
    {
        println!(
            "next: breakglass custody step {} {next} --note \"…\"",
            field(&r["id"])
        );
    }
}
