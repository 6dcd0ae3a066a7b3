//! `breakglass drill run|list|show`: starts a drill on the server, follows its timeline as it
//! fills in, and writes its report as JSON, Markdown and HTML.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::commands::{connect, seg};
use crate::output::{self, field};
use crate::{Cli, Exit, exit};

/// `drill` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum DrillCmd {
    /// Run a drill now and follow it: a real break on the real target, timed step by step
    /// (exit 11 when it fails).
    Run(RunArgs),
    /// Drill history, newest first.
    List {
        /// Only this procedure's drills.
        procedure: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// One drill's report.
    Show {
        /// Drill id.
        id: String,
        /// `text` (the timeline and checks), `md` or `html`; `--output json` prints the JSON.
        #[arg(long, default_value = "text")]
        format: String,
    },
}

/// `drill run` arguments.
#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// Procedure id.
    procedure: String,
    /// A live drill: a real break flagged DRILL that real custodians approve with their own
    /// keys (you are the requester). Without it, an automated drill with the drill credential.
    #[arg(long)]
    live: bool,
    /// Inject a failure (repeatable): idp-down, channel-down:NAME, custodian-lost:NAME,
    /// target-slow[:DELAY], target-down.
    #[arg(long = "inject", value_name = "FAILURE")]
    inject: Vec<String>,
    /// Grant length (automated default 2s; live default the procedure's max_grant).
    #[arg(long)]
    grant: Option<String>,
    /// Acknowledgement window of the drill's alerts (automated default 1s).
    #[arg(long)]
    ack_within: Option<String>,
    /// Time-to-access budget (default: the procedure's drill.max_time_to_access, else 5m).
    #[arg(long)]
    max_time_to_access: Option<String>,
    /// Longest wait for each machine step (alert receipts, grant end, rotation).
    #[arg(long)]
    step_timeout: Option<String>,
    /// Write the report as DRILL.json, DRILL.md and DRILL.html into this directory.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Start the drill and return at once with its id.
    #[arg(long)]
    no_wait: bool,
}

pub(crate) async fn run(cli: &Cli, cmd: &DrillCmd) -> Result<()> {
    match cmd {
        DrillCmd::Run(a) => run_drill(cli, a).await,
        DrillCmd::List { procedure, limit } => {
            let client = connect(cli).await?;
            let mut path = format!("/api/drills?limit={limit}");
            if let Some(p) = procedure {
                path.push_str(&format!("&procedure={}", seg(p)));
            }
            let r = client.get(&path).await?;
            output::listing(
                cli.output,
                &r,
                "drills",
                &[
                    "DRILL",
                    "PROCEDURE",
                    "MODE",
                    "OUTCOME",
                    "TIME TO ACCESS",
                    "STARTED",
                    "INJECTED",
                ],
                |d| {
                    vec![
                        field(&d["id"]),
                        field(&d["procedure"]),
                        field(&d["mode"]),
                        field(&d["outcome"]),
                        d["time_to_access_ms"]
                            .as_i64()
                            .map(|ms| format!("{ms} ms"))
                            .unwrap_or_else(|| "-".into()),
                        field(&d["started_at"]),
                        strings(&d["injections"]).join(", "),
                    ]
                },
            );
            Ok(())
        }
        DrillCmd::Show { id, format } => {
            let client = connect(cli).await?;
            let path = format!("/api/drills/{}", seg(id));
            if cli.output.is_json() {
                output::json(&client.get(&path).await?);
                return Ok(());
            }
            match format.as_str() {
                "md" | "markdown" | "html" => {
                    let text = client
                        .get_text(&format!("{path}/report?format={format}"))
                        .await?;
                    print!("{text}");
                }
                "text" => print_report(&client.get(&path).await?),
                other => {
                    return Err(anyhow!(Exit {
                        code: exit::INVALID,
                        message: format!("--format: `{other}` is not text, md or html"),
                    }));
                }
            }
            Ok(())
        }
    }
}

async fn run_drill(cli: &Cli, a: &RunArgs) -> Result<()> {
    let client = connect(cli).await?;
    let body = json!({
        "mode": if a.live { "live" } else { "automated" },
        "inject": a.inject,
        "grant": a.grant,
        "ack_within": a.ack_within,
        "max_time_to_access": a.max_time_to_access,
        "step_timeout": a.step_timeout,
    });
    let started = client
        .post(
            &format!("/api/procedures/{}/drills", seg(&a.procedure)),
            &body,
        )
        .await?;
    let id = started["id"].as_str().unwrap_or_default().to_owned();
    let json_out = cli.output.is_json();
    if a.no_wait {
        if json_out {
            output::json(&started);
        } else {
            println!("drill {id} started on {}", a.procedure);
        }
        return Ok(());
    }
    if !json_out && started["mode"] == "external" {
        println!(
            "drill {id}: external-custody drill of {}: the holders are alerted; each step is timed as its person confirms it with `breakglass custody step {id} N`",
            a.procedure
        );
    } else if !json_out {
        println!(
            "drill {id}: {} drill of {}{}",
            if a.live { "live" } else { "automated" },
            a.procedure,
            if a.inject.is_empty() {
                String::new()
            } else {
                format!(", injecting {}", a.inject.join(", "))
            }
        );
        if a.live {
            println!(
                "  a real break flagged DRILL is open: custodians approve it with `breakglass approve`"
            );
        }
    }
    // Wait for the end; the timeline is read back from the audit log when the drill finishes.
    let path = format!("/api/drills/{}", seg(&id));
    let view = loop {
        let view = client.get(&path).await?;
        if view["outcome"] != "running" {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if let Some(dir) = &a.report {
        write_reports(&client, &id, &view, dir).await?;
    }
    if json_out {
        output::json(&view);
    } else {
        for s in view["steps"].as_array().into_iter().flatten() {
            println!("{}", step_line(s));
        }
        print_checks(&view);
        if let Some(dir) = &a.report {
            println!("report: {}", dir.join(format!("{id}.html")).display());
        }
    }
    if view["outcome"] == "passed" {
        Ok(())
    } else {
        let failed: Vec<String> = view["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["ok"] == false)
            .map(|c| format!("{}: {}", field(&c["check"]), field(&c["reason"])))
            .collect();
        Err(anyhow!(Exit {
            code: exit::DRILL_FAILED,
            message: format!("drill {id} failed: {}", failed.join("; ")),
        }))
    }
}

async fn write_reports(
    client: &crate::client::Client,
    id: &str,
    view: &Value,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = format!("/api/drills/{}/report", seg(id));
    let md = client.get_text(&format!("{path}?format=md")).await?;
    let html = client.get_text(&format!("{path}?format=html")).await?;
    for (ext, text) in [
        (
            "json",
            serde_json::to_string_pretty(view).unwrap_or_default(),
        ),
        ("md", md),
        ("html", html),
    ] {
        let file = dir.join(format!("{id}.{ext}"));
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(())
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().map(field).collect()
}

fn step_line(s: &Value) -> String {
    format!(
        "  +{:>7} ms  {:<22} {}",
        s["offset_ms"].as_i64().unwrap_or(0),
        field(&s["step"]),
        field(&s["detail"])
    )
}

fn print_checks(view: &Value) {
    println!(
        "{} in {}",
        field(&view["outcome"]).to_uppercase(),
        view["time_to_access_ms"]
            .as_i64()
            .map(|ms| format!("time to access {ms} ms"))
            .unwrap_or_else(|| "no access".into())
    );
    for c in view["checks"].as_array().into_iter().flatten() {
        println!(
            "  [{}] {}: {}",
            if c["ok"] == true { "pass" } else { "FAIL" },
            field(&c["check"]),
            field(&c["reason"])
        );
    }
}

fn print_report(view: &Value) {
    println!(
        "drill {} of {} ({}; injected: {})",
        field(&view["id"]),
        field(&view["procedure"]),
        field(&view["mode"]),
        {
            let i = strings(&view["injections"]);
            if i.is_empty() {
                "none".into()
            } else {
                i.join(", ")
            }
        }
    );
    println!(
        "started {} finished {} break {}",
        field(&view["started_at"]),
        field(&view["finished_at"]),
        field(&view["break"])
    );
    for s in view["steps"].as_array().into_iter().flatten() {
        println!("{}", step_line(s));
    }
    print_checks(view);
}
