//! `breakglass`: the command-line interface. Most commands talk to a server's HTTP API;
//! `procedure validate`, `procedure schema`, `custodian keygen` and `audit verify --file` work
//! without one. `serve` runs the server; `demo` runs a whole break end to end.
//!
//! Exit codes: 0 success; 1 other failure; 2 usage error; 3 invalid input (procedure files,
//! request fields); 4 not signed in or not allowed; 5 not found; 6 refused by the break
//! lifecycle (wrong state, window closed, already approved…); 7 server unreachable or store
//! unavailable; 8 audit verification failed; 9 a target refused or failed, or its health check
//! found a problem; 10 `check` found a broken procedure (or a degraded one, with --strict), or
//! `whatif` found one that could not be opened; 11 a drill failed. Offline recovery: 8 also when a recovery
//! kit, a recovered share file or a spool does not verify (edited, another kit, broken chain);
//! 6 when fewer shares than the quorum were given.

mod client;
mod commands;
mod custody;
mod demo;
mod drill;
mod output;
mod recover;
mod sarif;
mod session;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::ApiFailure;

/// Emergency access with split custody, time-limited grants and a tamper-evident audit log.
#[derive(Parser, Debug)]
#[command(name = "breakglass", version, about)]
pub(crate) struct Cli {
    /// Server URL.
    #[arg(
        long,
        global = true,
        env = "BREAKGLASS_SERVER",
        default_value = "http://127.0.0.1:8742"
    )]
    pub(crate) server: String,
    /// API or session token (defaults to the admin token in the data dir, if readable).
    #[arg(long, global = true, env = "BREAKGLASS_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Sign in with this private key file (age identity — also passphrase-protected with
    /// `age -p`, the passphrase from BREAKGLASS_IDENTITY_PASSPHRASE or a prompt — or an
    /// unencrypted OpenSSH ed25519 key) instead of a token.
    #[arg(long, global = true, env = "BREAKGLASS_IDENTITY")]
    pub(crate) identity: Option<PathBuf>,
    /// Actor name to sign in as (defaults to whoever enrolled the identity's public key).
    #[arg(long = "as", global = true, env = "BREAKGLASS_ACTOR")]
    pub(crate) actor: Option<String>,
    /// Trust this PEM certificate (or CA) for the server's HTTPS, besides the system's roots.
    #[arg(long, global = true, env = "BREAKGLASS_CA_CERT")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Data directory (SQLite database and admin token).
    #[arg(
        long,
        global = true,
        env = "BREAKGLASS_DATA_DIR",
        default_value = ".breakglass"
    )]
    pub(crate) data_dir: PathBuf,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub(crate) output: output::Format,
    /// The command.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the server.
    Serve(commands::ServeArgs),
    /// Run a whole break end to end on a local demo data dir, then keep the server running.
    Demo(demo::DemoArgs),
    /// Procedures as code.
    #[command(subcommand)]
    Procedure(commands::ProcedureCmd),
    /// Seal (or re-seal) a procedure's credential, read from standard input or a file.
    Seal(commands::SealArgs),
    /// Custodian keys.
    #[command(subcommand)]
    Custodian(commands::CustodianCmd),
    /// Enrolled actors.
    #[command(subcommand)]
    Actor(commands::ActorCmd),
    /// Breaks: open, list, show, reveal, close.
    #[command(subcommand)]
    Break(commands::BreakCmd),
    /// Approve a break with your share (decrypted locally with --identity).
    Approve(commands::ApproveArgs),
    /// Your TOTP second factor: enroll, confirm, reset, status.
    #[command(subcommand)]
    Totp(commands::TotpCmd),
    /// The audit log.
    #[command(subcommand)]
    Audit(commands::AuditCmd),
    /// Alert channels: list, test, delivery attempts.
    #[command(subcommand)]
    Channel(commands::ChannelCmd),
    /// Targets: health check without unsealing, privileged-account discovery, latest reports.
    #[command(subcommand)]
    Target(commands::TargetCmd),
    /// Readiness: lint procedure files (no server), or every procedure's live verdict —
    /// ready, degraded or broken, with each reason (exit 10 when one is broken).
    Check(commands::CheckArgs),
    /// What-if analysis: with these down, can each procedure still be opened, by whom, over
    /// which channels (exit 10 when one cannot).
    #[command(name = "whatif")]
    WhatIf(commands::WhatIfArgs),
    /// Who is on the hook: every custodian with their contacts, the procedures they hold a
    /// share of (and whether each could reach its quorum without them), their keys'
    /// attestations and their latest drill; `people show NAME` for one (admin, auditor).
    People(commands::PeopleArgs),
    /// Acknowledge a break alert with the token from its link.
    Ack(commands::AckArgs),
    /// Drills: run one (automated or live, with injected failures), list them, show a report.
    #[command(subcommand)]
    Drill(drill::DrillCmd),
    /// External custody (`kind: external` procedures, credentials breakglass cannot seal):
    /// open a break, confirm its human steps, attest the safe's contents, record a rotation.
    #[command(subcommand)]
    Custody(custody::CustodyCmd),
    /// Gateway sessions: every statement a break's responder ran through the gateway.
    #[command(subcommand)]
    Session(session::SessionCmd),
    /// A break's signed evidence pack (one HTML page), or `evidence verify FILE` offline.
    Evidence(commands::EvidenceArgs),
    /// Recovery kits: `recovery-kit export PROCEDURE` writes the signed kit an offline
    /// recovery needs.
    #[command(subcommand, name = "recovery-kit")]
    RecoveryKit(recover::RecoveryKitCmd),
    /// Offline recovery with a kit, without a server: `recover share` (each custodian),
    /// `recover open` (the recoverer; writes a signed audit spool for `audit import`).
    #[command(subcommand)]
    Recover(recover::RecoverCmd),
}

/// Exit codes (documented in the module header and the README).
pub(crate) mod exit {
    /// Other failure.
    pub(crate) const FAILURE: u8 = 1;
    /// Usage error (clap's own code for bad arguments).
    pub(crate) const USAGE: u8 = 2;
    /// Invalid input.
    pub(crate) const INVALID: u8 = 3;
    /// Not signed in or not allowed.
    pub(crate) const AUTH: u8 = 4;
    /// Not found.
    pub(crate) const NOT_FOUND: u8 = 5;
    /// Refused by the lifecycle.
    pub(crate) const REFUSED: u8 = 6;
    /// Server unreachable or store unavailable.
    pub(crate) const UNAVAILABLE: u8 = 7;
    /// Audit verification failed.
    pub(crate) const AUDIT_BROKEN: u8 = 8;
    /// A target refused or failed, or its health check found a problem.
    pub(crate) const TARGET: u8 = 9;
    /// `check`: a procedure is broken (or degraded, with --strict).
    pub(crate) const NOT_READY: u8 = 10;
    /// `drill run`: the drill failed.
    pub(crate) const DRILL_FAILED: u8 = 11;
}

/// An error that knows its exit code.
#[derive(Debug)]
pub(crate) struct Exit {
    /// Exit code.
    pub(crate) code: u8,
    /// Message for stderr.
    pub(crate) message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(x) = e.downcast_ref::<Exit>() {
        return x.code;
    }
    if let Some(f) = e.downcast_ref::<ApiFailure>() {
        if f.code == "unreachable" || f.code == "store_unavailable" {
            return exit::UNAVAILABLE;
        }
        return match f.status {
            None => exit::FAILURE,
            Some(400 | 422) => exit::INVALID,
            Some(401 | 403) => exit::AUTH,
            Some(404) => exit::NOT_FOUND,
            Some(409) => exit::REFUSED,
            Some(502) => exit::TARGET,
            Some(503) => exit::UNAVAILABLE,
            Some(_) => exit::FAILURE,
        };
    }
    exit::FAILURE
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BREAKGLASS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}
