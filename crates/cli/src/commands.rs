//! The commands: argument types and what each does.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use breakglass_custody::{ExposeSecret, Identity};
use breakglass_domain::{Limits, ProcedureSpec, parse_duration, parse_procedures};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::Client;
use crate::output::{self, Format, field};
use crate::{Cli, Command, Exit, exit};

/// `serve` arguments.
#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BREAKGLASS_LISTEN", default_value = "127.0.0.1:8742")]
    pub(crate) listen: SocketAddr,
    /// Use PostgreSQL (`postgres://…`) instead of SQLite in the data dir.
    #[arg(long, env = "BREAKGLASS_DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,
    /// Longest grant any procedure may allow.
    #[arg(long, default_value = "4h", value_parser = parse_duration_arg)]
    pub(crate) grant_ceiling: std::time::Duration,
    /// An audit sink, `NAME=URL` (repeatable): file://, nats://, syslog+tcp://, postgres://.
    #[arg(long = "sink", env = "BREAKGLASS_SINKS", value_delimiter = ',')]
    pub(crate) sinks: Vec<String>,
    /// Alert channels file (YAML; docs/alerts.md).
    #[arg(long, env = "BREAKGLASS_CHANNELS")]
    pub(crate) channels: Option<PathBuf>,
    /// Targets file: operator connections for database and HTTP targets (docs/targets.md).
    #[arg(long, env = "BREAKGLASS_TARGETS")]
    pub(crate) targets: Option<PathBuf>,
    /// This server's external URL, for links in alerts (e.g. https://breakglass.example.com).
    #[arg(long, env = "BREAKGLASS_PUBLIC_URL")]
    pub(crate) public_url: Option<String>,
    /// Channel told about the server itself, e.g. an audit sink lagging (repeatable).
    #[arg(long = "system-channel")]
    pub(crate) system_channels: Vec<String>,
    /// Alert when an audit sink's oldest undelivered record is older than this.
    #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
    pub(crate) sink_lag_alert_after: std::time::Duration,
    /// Sign a checkpoint after this many new audit entries…
    #[arg(long, default_value_t = 1000)]
    pub(crate) checkpoint_every: u64,
    /// …or after this long with new entries.
    #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
    pub(crate) checkpoint_interval: std::time::Duration,
    /// An identity provider the organisation runs (repeatable, e.g. `okta`): a drill with
    /// `--inject idp-down` fails if any step of a procedure's path depends on one.
    #[arg(long = "identity-provider", value_delimiter = ',')]
    pub(crate) identity_providers: Vec<String>,
    /// Ask custodians to attest their key (through the alert channels) this often.
    #[arg(long, default_value = "30d", value_parser = parse_duration_arg)]
    pub(crate) attestation_interval: std::time::Duration,
    /// How often the scheduler looks for due automated drills and attestation requests.
    #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
    pub(crate) schedule_interval: std::time::Duration,
    /// Serve HTTPS with this PEM certificate chain (with `--tls-key`).
    #[arg(long, env = "BREAKGLASS_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, env = "BREAKGLASS_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate made in DATA_DIR/tls/ (for localhost,
    /// 127.0.0.1 and each `--tls-name`); clients trust it with `--ca-cert DATA_DIR/tls/cert.pem`.
    #[arg(long, conflicts_with = "tls_cert")]
    pub(crate) tls_self_signed: bool,
    /// Another name for the self-signed certificate (repeatable).
    #[arg(long = "tls-name")]
    pub(crate) tls_names: Vec<String>,
    /// Sign-in requests (challenges, answers, UI sign-in) per minute per client address; 0: no limit.
    #[arg(long, default_value_t = breakglass_server::limits::RateLimits::default().sign_in_per_minute)]
    pub(crate) sign_in_rate: u32,
    /// Approvals per minute per client address; 0: no limit.
    #[arg(long, default_value_t = breakglass_server::limits::RateLimits::default().approvals_per_minute)]
    pub(crate) approval_rate: u32,
    /// Acknowledgements per minute per client address; 0: no limit.
    #[arg(long, default_value_t = breakglass_server::limits::RateLimits::default().acks_per_minute)]
    pub(crate) ack_rate: u32,
    /// Run the PostgreSQL gateway for `access: proxy` procedures on this address (e.g.
    /// 0.0.0.0:6432). It speaks TLS with the server's certificate when HTTPS is configured.
    #[arg(long, env = "BREAKGLASS_GATEWAY")]
    pub(crate) gateway: Option<SocketAddr>,
    /// The host name requesters use to reach the gateway (in the connection string they
    /// receive); default: the listen address, or localhost when it is unspecified.
    #[arg(long, requires = "gateway")]
    pub(crate) gateway_host: Option<String>,
    /// Let gateway clients connect without TLS even when TLS is configured (a loopback or
    /// otherwise private network only).
    #[arg(long, requires = "gateway")]
    pub(crate) gateway_plaintext: bool,
    /// `HOST:PORT` where the other servers sharing this store reach this server's gateway:
    /// a client that reaches a server not holding its break's login (servers behind one
    /// address) is relayed here. Default: the gateway's own address when it listens on one,
    /// else the host of `--advertise-url` with the gateway's port.
    #[arg(long, requires = "gateway", value_name = "HOST:PORT")]
    pub(crate) gateway_peer_address: Option<String>,
    /// Gateway relay threads, each running its share of the connections on its own
    /// single-threaded runtime; 0: one per available core.
    #[arg(long, default_value_t = 0, requires = "gateway")]
    pub(crate) gateway_threads: usize,
    /// Refused gateway logins (wrong token, unknown break…) per minute per client address;
    /// past it the address is refused without its token being read (nor audited) until the
    /// allowance refills; 0: no limit.
    #[arg(long, default_value_t = breakglass_gateway::FAILED_LOGINS_PER_MINUTE, requires = "gateway")]
    pub(crate) gateway_failed_logins: u32,
    /// This server's URL as the other servers of a deployment reach it (several servers on one
    /// PostgreSQL): a break's shares are then sent to the one server holding the others.
    /// `auto`: the listen address.
    #[arg(long, env = "BREAKGLASS_ADVERTISE_URL")]
    pub(crate) advertise_url: Option<String>,
    /// Write each procedure's recovery kit to DIR/PROCEDURE.kit after every seal (atomically);
    /// readiness then reports a kit missing or older than the seal.
    #[arg(long, env = "BREAKGLASS_RECOVERY_KIT_DIR")]
    pub(crate) recovery_kit_dir: Option<PathBuf>,
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    parse_duration(s)
}

/// `procedure` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum ProcedureCmd {
    /// Validate procedure files locally (no server needed).
    Validate {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Longest grant allowed.
        #[arg(long, default_value = "4h", value_parser = parse_duration_arg)]
        grant_ceiling: std::time::Duration,
    },
    /// Apply procedure files (idempotent; all or nothing).
    Apply {
        /// Files to apply.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List procedures.
    List,
    /// Show one procedure.
    Show {
        /// Procedure id.
        id: String,
    },
    /// Print the JSON Schema of procedure files (for editors).
    Schema,
}

/// `seal` arguments.
#[derive(Args, Debug)]
pub(crate) struct SealArgs {
    /// Procedure id.
    pub(crate) procedure: String,
    /// Read the secret from this file instead of standard input.
    #[arg(long)]
    pub(crate) file: Option<PathBuf>,
    /// Keep a trailing newline (by default one trailing newline is removed).
    #[arg(long)]
    pub(crate) keep_newline: bool,
    /// Seal the procedure's drill credential instead (for PostgreSQL a URL
    /// `postgresql://DRILL_ROLE:PASSWORD@HOST:PORT/DB` of a role of its own that may create
    /// roles and grant the procedure's role), to the server's drill identities.
    #[arg(long)]
    pub(crate) drill: bool,
}

/// `custodian` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum CustodianCmd {
    /// Make an age identity for a custodian who has no key (the file is created 0600).
    Keygen {
        /// Where to write the identity.
        #[arg(long)]
        out: PathBuf,
    },
    /// Prove you still hold your custodian key: the server encrypts a challenge to it, this
    /// command decrypts it locally with --identity and answers. No share is touched.
    Attest {
        /// Custodian name.
        name: String,
    },
    /// Declare a custodian's keys lost (admin): readiness counts them out of the quorum.
    Lost {
        /// Custodian name.
        name: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// What is known of each custodian key: latest attestation, lost declarations.
    Attestations,
}

/// `people` arguments.
#[derive(Args, Debug)]
pub(crate) struct PeopleArgs {
    /// `show NAME` for one person.
    #[command(subcommand)]
    pub(crate) show: Option<PeopleCmd>,
}

/// `people` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum PeopleCmd {
    /// One person: contacts, every share they hold, keys, latest drill, warnings.
    Show {
        /// Custodian (actor) name.
        name: String,
    },
}

/// `whatif` arguments.
#[derive(Args, Debug)]
pub(crate) struct WhatIfArgs {
    /// What is down: dependencies, channels, custodians, target connections or hosts
    /// (comma-separated, e.g. `okta,slack,alice`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub(crate) down: Vec<String>,
}

/// `check` arguments.
#[derive(Args, Debug)]
pub(crate) struct CheckArgs {
    /// Procedure files to lint without a server. Without files, the server's live verdicts.
    pub(crate) files: Vec<PathBuf>,
    /// Degraded counts as a failure too (exit 10).
    #[arg(long)]
    pub(crate) strict: bool,
    /// Longest grant any procedure may allow (files only).
    #[arg(long, default_value = "4h", value_parser = parse_duration_arg)]
    pub(crate) grant_ceiling: std::time::Duration,
    /// Fewest custodians a procedure should have (files only).
    #[arg(long, default_value_t = 3)]
    pub(crate) min_custodians: usize,
    /// Most custodians a procedure should have (files only).
    #[arg(long, default_value_t = 12)]
    pub(crate) max_custodians: usize,
}

/// `actor` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum ActorCmd {
    /// Enrol or update an actor.
    Add {
        /// Name.
        name: String,
        /// Role (repeatable): admin, requester, custodian, auditor.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Public key (age1… or "ssh-ed25519 AAAA…").
        #[arg(long, conflicts_with = "key_file")]
        key: Option<String>,
        /// File holding the public key.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Contact.
        #[arg(long, default_value = "")]
        contact: String,
        /// Issue an API token (printed once).
        #[arg(long)]
        api_token: bool,
    },
    /// List actors.
    List,
}

/// `break` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum BreakCmd {
    /// Open a break.
    Open {
        /// Procedure id.
        procedure: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Incident ticket.
        #[arg(long)]
        ticket: String,
        /// Grant length (defaults to the procedure's max_grant).
        #[arg(long)]
        duration: Option<String>,
    },
    /// List breaks.
    List {
        /// Only this procedure's.
        #[arg(long)]
        procedure: Option<String>,
    },
    /// Show a break.
    Show {
        /// Break id.
        id: String,
    },
    /// The single reveal of a granted secret (decrypted locally with --identity).
    Reveal {
        /// Break id.
        id: String,
        /// Write the secret to this file (0600) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Close a break early.
    Close {
        /// Break id.
        id: String,
    },
    /// A fresh gateway token for a granted `access: proxy` break (earlier tokens stop
    /// working); prints the connection string, decrypted locally with --identity.
    Token {
        /// Break id.
        id: String,
    },
}

/// `evidence` arguments: a break's signed evidence pack, or `verify FILE`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct EvidenceArgs {
    /// Check a pack offline.
    #[command(subcommand)]
    pub(crate) verify: Option<EvidenceCmd>,
    /// The break whose pack to write (admin or auditor).
    pub(crate) break_id: Option<String>,
    /// Where to write it (default: `evidence-BREAK_ID.html`).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Gateway statements the pack holds at most (the server's default: 100,000; at most
    /// 500,000): each session whole, in order, while it fits; the others are listed with
    /// their count and digest, for `session show`.
    #[arg(long, value_name = "N")]
    pub(crate) max_statements: Option<u64>,
}

/// `evidence verify`.
#[derive(Subcommand, Debug)]
pub(crate) enum EvidenceCmd {
    /// Verify a pack offline with the audit public key alone (exit 8 when it does not verify).
    Verify {
        /// The pack (HTML).
        file: PathBuf,
        /// The audit public key (`ed25519:…`, from `audit pubkey`, kept apart from the pack);
        /// without it the pack's own key is used, which shows integrity but not who made it.
        #[arg(long)]
        pubkey: Option<String>,
    },
}

/// `evidence`.
pub(crate) async fn evidence_cmd(cli: &Cli, a: &EvidenceArgs) -> Result<()> {
    if let Some(EvidenceCmd::Verify { file, pubkey }) = &a.verify {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let page = String::from_utf8(bytes).map_err(|e| {
            anyhow!(Exit {
                code: exit::AUDIT_BROKEN,
                message: format!(
                    "{}: not UTF-8 at byte {}: the pack was edited",
                    file.display(),
                    e.utf8_error().valid_up_to()
                )
            })
        })?;
        let pinned = match pubkey {
            Some(k) => Some(k.parse::<breakglass_audit::AuditPublicKey>().map_err(|e| {
                anyhow!(Exit {
                    code: exit::INVALID,
                    message: format!("--pubkey: {e}")
                })
            })?),
            None => None,
        };
        return match breakglass_audit::evidence::verify(&page, pinned.as_ref()) {
            Ok(r) => {
                if cli.output.is_json() {
                    output::json(&json!({
                        "ok": true, "break": r.break_id, "entries": r.entries,
                        "break_entries": r.break_entries, "checkpoint_seq": r.checkpoint_seq,
                        "key_id": r.key_id, "pinned": r.pinned, "format": r.format,
                        "statements": r.statements, "sessions_bound": r.sessions_bound,
                        "sessions_open": r.sessions_open,
                        "sessions_not_included": r.sessions_not_included,
                    }));
                } else {
                    println!(
                        "evidence of break {} verifies: signature by key {}{}, {} audit entries ({} about the break) up to checkpoint {}",
                        r.break_id,
                        r.key_id,
                        if r.pinned {
                            " (pinned)"
                        } else {
                            " (the pack's own key: pin it with --pubkey)"
                        },
                        r.entries,
                        r.break_entries,
                        r.checkpoint_seq
                    );
                    if r.format == breakglass_audit::evidence::FORMAT_V1 {
                        println!(
                            "its {} gateway statements are of the first format ({}): not checked against the audit chain",
                            r.statements, r.format
                        );
                    } else {
                        println!("{}", pack_recording(&r, ""));
                    }
                }
                Ok(())
            }
            Err(e) => Err(anyhow!(Exit {
                code: exit::AUDIT_BROKEN,
                message: format!("{}: {e}", file.display())
            })),
        };
    }
    let Some(id) = &a.break_id else {
        return Err(anyhow!(Exit {
            code: exit::USAGE,
            message: "give a break id, or `evidence verify FILE`".into()
        }));
    };
    let query = a
        .max_statements
        .map(|n| format!("?max_statements={n}"))
        .unwrap_or_default();
    let r = connect(cli)
        .await?
        .get(&format!("/api/breaks/{}/evidence{query}", seg(id)))
        .await?;
    let path = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("evidence-{id}.html")));
    let page = r["page"].as_str().unwrap_or_default();
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    println!("evidence of break {id} written to {}", path.display());
    // Checked as `evidence verify` would (with the pack's own key): says at once what the pack
    // holds, and whether a stored recording no longer matches the audit chain.
    match breakglass_audit::evidence::verify(page, None) {
        Ok(r) => {
            let hint = if r.sessions_not_included > 0 {
                format!(
                    ": raise it with --max-statements, or read them with breakglass session show {id} --session …"
                )
            } else {
                String::new()
            };
            println!(
                "it verifies: {} audit entries up to checkpoint {}; {}",
                r.entries,
                r.checkpoint_seq,
                pack_recording(&r, &hint)
            );
            Ok(())
        }
        Err(e) => Err(anyhow!(Exit {
            code: exit::AUDIT_BROKEN,
            message: format!("{} was written but does not verify: {e}", path.display())
        })),
    }
}

/// What a verified pack holds of the gateway recording, for people; `hint` follows the
/// budget.
fn pack_recording(r: &breakglass_audit::evidence::EvidenceReport, hint: &str) -> String {
    format!(
        "gateway sessions: {} bound to the audit chain, {} open (not bound), {} not included (over the pack's budget{hint}); {} statements",
        r.sessions_bound, r.sessions_open, r.sessions_not_included, r.statements
    )
}

/// `approve` arguments.
#[derive(Args, Debug)]
pub(crate) struct ApproveArgs {
    /// Break id.
    pub(crate) break_id: String,
    /// Your current TOTP code, when you enrolled TOTP or the procedure requires a second
    /// factor. Without it, asked for on a terminal when the server needs one.
    #[arg(
        long,
        value_name = "CODE",
        env = "BREAKGLASS_TOTP",
        hide_env_values = true
    )]
    pub(crate) totp: Option<String>,
}

/// `totp` subcommands (sign in with --identity: your own custodian key).
#[derive(Subcommand, Debug)]
pub(crate) enum TotpCmd {
    /// Start your TOTP enrolment: prints the secret and its otpauth:// URI once, for your
    /// authenticator app. Approvals need codes only after `totp confirm`.
    Enroll,
    /// Confirm your enrolment with the app's current code.
    Confirm {
        /// The 6-digit code (asked for on a terminal when omitted).
        code: Option<String>,
    },
    /// Remove a TOTP enrolment: yours, or a named custodian's (admin).
    Reset {
        /// Custodian (default: you).
        custodian: Option<String>,
    },
    /// TOTP enrolments (without secrets): all of them (admin, auditor) or yours.
    Status,
}

/// `channel` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum ChannelCmd {
    /// List alert channels with their backlog and latest test.
    List,
    /// Send a test alert, wait for the receipt, print the latency (the result is kept).
    Test {
        /// Channel name.
        name: String,
    },
    /// Recent delivery attempts of a channel.
    Attempts {
        /// Channel name.
        name: String,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

/// `target` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum TargetCmd {
    /// Check a procedure's target without unsealing (exit 9 when a check fails).
    Check {
        /// Procedure id.
        procedure: String,
    },
    /// List privileged accounts on the target; flags those not in the inventory or without
    /// expiry (exit 9 when one is not in the inventory).
    Discover {
        /// Procedure id.
        procedure: String,
    },
    /// The latest stored check and discovery.
    Show {
        /// Procedure id.
        procedure: String,
    },
    /// What a break created on its target, and whether the target confirmed its end.
    Grant {
        /// Break id.
        break_id: String,
    },
}

/// `ack` arguments.
#[derive(Args, Debug)]
pub(crate) struct AckArgs {
    /// The token from the alert's acknowledgement link (the part after /ack/).
    pub(crate) token: String,
    /// Who acknowledges.
    #[arg(long, default_value = "")]
    pub(crate) by: String,
}

/// `audit` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum AuditCmd {
    /// Verify the chain and checkpoint signatures (on the server, or an export with --file,
    /// offline); with --against SINK also compare with what the sink holds.
    Verify {
        /// A JSON Lines export to verify without a server.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Trusted audit public key (`ed25519:…`, from `audit pubkey`, kept apart from the
        /// server) to check signatures against, instead of the key the log or server presents.
        #[arg(long)]
        pubkey: Option<String>,
        /// Compare with this sink's copy.
        #[arg(long)]
        against: Option<String>,
    },
    /// Print the current audit public key.
    Pubkey,
    /// Rotate the audit signing key (admin).
    RotateKey,
    /// Sign a checkpoint of the current head now.
    Checkpoint,
    /// Audit sinks and their delivery lag.
    Sinks,
    /// Prepare an insert-only PostgreSQL sink (run once, as a database administrator).
    SetupPostgresSink {
        /// Administrator connection URL.
        #[arg(long, env = "BREAKGLASS_SINK_ADMIN_URL", hide_env_values = true)]
        admin_url: String,
        /// Schema to create.
        #[arg(long, default_value = "breakglass_audit")]
        schema: String,
        /// Role the server's sink connects as (gets INSERT and SELECT only).
        #[arg(long, default_value = "breakglass_sink")]
        role: String,
    },
    /// Import the spool an offline recovery wrote (admin): verified locally first (exit 8),
    /// then appended to the chain marked offline; the procedure is tainted and alerted.
    Import {
        /// The spool file from `recover open`.
        spool: PathBuf,
    },
    /// Export the log as JSON Lines.
    Export {
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List entries.
    List {
        /// First sequence number.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

/// Runs one command.
pub(crate) async fn run(cli: Cli) -> Result<()> {
    if cli.output == Format::Sarif && !matches!(cli.command, Command::Check(_)) {
        return Err(anyhow!(Exit {
            code: exit::USAGE,
            message: "--output sarif is for `breakglass check` only".into(),
        }));
    }
    match &cli.command {
        Command::Serve(a) => serve(&cli, a).await,
        Command::Demo(a) => crate::demo::run(&cli, a).await,
        Command::Procedure(p) => procedure(&cli, p).await,
        Command::Seal(a) => seal(&cli, a).await,
        Command::Custodian(CustodianCmd::Keygen { out }) => keygen(&cli, out),
        Command::Custodian(c) => custodian(&cli, c).await,
        Command::Check(a) => check(&cli, a).await,
        Command::WhatIf(a) => what_if(&cli, a).await,
        Command::People(a) => people(&cli, a).await,
        Command::Actor(a) => actor(&cli, a).await,
        Command::Break(b) => break_cmd(&cli, b).await,
        Command::Approve(a) => approve(&cli, a).await,
        Command::Totp(t) => totp(&cli, t).await,
        Command::Audit(a) => audit(&cli, a).await,
        Command::Channel(c) => channel(&cli, c).await,
        Command::Target(t) => target(&cli, t).await,
        Command::Drill(d) => crate::drill::run(&cli, d).await,
        Command::Custody(c) => crate::custody::run(&cli, c).await,
        Command::Session(s) => crate::session::run(&cli, s).await,
        Command::Evidence(e) => evidence_cmd(&cli, e).await,
        Command::RecoveryKit(k) => crate::recover::recovery_kit(&cli, k).await,
        Command::Recover(r) => crate::recover::recover(&cli, r).await,
        Command::Ack(a) => ack(&cli, a).await,
    }
}

/// Where the other servers reach this server's gateway: `--gateway-peer-address`, else the
/// gateway's own address when it listens on one, else `--advertise-url`'s host with the
/// gateway's port.
fn gateway_peer_address(
    given: Option<&str>,
    advertised: &str,
    local: std::net::SocketAddr,
) -> Result<String> {
    if let Some(given) = given {
        let (host, port) = given
            .rsplit_once(':')
            .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            .with_context(|| format!("--gateway-peer-address `{given}`: expected HOST:PORT"))?;
        return Ok(format!("{host}:{port}"));
    }
    if !local.ip().is_unspecified() {
        return Ok(local.to_string());
    }
    let url = url::Url::parse(advertised)
        .with_context(|| format!("--advertise-url `{advertised}` is not a URL"))?;
    let host = url.host_str().with_context(|| {
        format!("--advertise-url `{advertised}` names no host: set --gateway-peer-address")
    })?;
    Ok(format!("{host}:{}", local.port()))
}

async fn serve(cli: &Cli, a: &ServeArgs) -> Result<()> {
    let mut config =
        breakglass_server::ServerConfig::new(&cli.data_dir).with_grant_ceiling(a.grant_ceiling);
    config.database_url = a.database_url.clone();
    config.sinks = a.sinks.clone();
    config.channels_file = a.channels.clone();
    config.targets_file = a.targets.clone();
    config.engine.system_channels = a.system_channels.clone();
    config.engine.sink_lag_alert_after = a.sink_lag_alert_after;
    config.public_url = a.public_url.clone();
    config.checkpoint_every_entries = a.checkpoint_every;
    config.checkpoint_interval = a.checkpoint_interval;
    config.engine.identity_providers = a.identity_providers.clone();
    config.engine.attestation_interval = a.attestation_interval;
    config.schedule_interval = a.schedule_interval;
    config.recovery_kit_dir = a.recovery_kit_dir.clone();
    config.rate_limits = breakglass_server::limits::RateLimits {
        sign_in_per_minute: a.sign_in_rate,
        approvals_per_minute: a.approval_rate,
        acks_per_minute: a.ack_rate,
    };
    let tls = match (&a.tls_cert, &a.tls_key, a.tls_self_signed) {
        (Some(cert), Some(key), _) => Some(breakglass_server::tls::load(cert, key)?),
        (_, _, true) => {
            let (cert, key) = breakglass_server::tls::self_signed(&cli.data_dir, &a.tls_names)?;
            eprintln!(
                "self-signed certificate: {} (clients: --ca-cert {})",
                cert.display(),
                cert.display()
            );
            Some(breakglass_server::tls::load(&cert, &key)?)
        }
        _ => None,
    };
    // The gateway's listener is bound first: its port goes into the connection strings.
    let gateway = match a.gateway {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the gateway on {addr}"))?;
            let local = listener.local_addr()?;
            let host = a.gateway_host.clone().unwrap_or_else(|| {
                if local.ip().is_unspecified() {
                    "localhost".into()
                } else {
                    local.ip().to_string()
                }
            });
            config.engine.gateway = Some(breakglass_engine::GatewayEndpoint {
                host,
                port: local.port(),
                tls: tls.is_some() && !a.gateway_plaintext,
                peer: None,
            });
            Some(listener)
        }
        None => None,
    };
    // `--advertise-url auto`: this server's own listen address (tests, one host).
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    config.engine.advertise_url = match a.advertise_url.as_deref() {
        Some("auto") => Some(format!(
            "{}://{}",
            if tls.is_some() { "https" } else { "http" },
            listener.local_addr()?
        )),
        other => other.map(str::to_owned),
    };
    if let (Some(ep), Some(advertised), Some(listener)) = (
        config.engine.gateway.as_mut(),
        config.engine.advertise_url.as_deref(),
        gateway.as_ref(),
    ) {
        ep.peer = Some(gateway_peer_address(
            a.gateway_peer_address.as_deref(),
            advertised,
            listener.local_addr()?,
        )?);
    }
    let built = breakglass_server::build(config).await?;
    if let Some(listener) = gateway {
        let settings = breakglass_gateway::Settings {
            tls: tls.as_ref().map(|t| {
                let mut c = (**t).clone();
                c.alpn_protocols = vec![b"postgresql".to_vec()];
                std::sync::Arc::new(c)
            }),
            allow_plaintext: tls.is_none() || a.gateway_plaintext,
            threads: a.gateway_threads,
            failed_logins_per_minute: a.gateway_failed_logins,
            // Servers of one deployment share the data dir's self-signed certificate.
            peer_tls: Some(
                breakglass_gateway::peer_tls(
                    std::fs::read(
                        cli.data_dir
                            .join(breakglass_server::tls::TLS_DIR)
                            .join(breakglass_server::tls::CERT_FILE),
                    )
                    .ok()
                    .as_deref(),
                )
                .map_err(anyhow::Error::msg)?,
            ),
            ..breakglass_gateway::Settings::default()
        };
        eprintln!(
            "breakglass gateway (PostgreSQL) on {}{}",
            listener.local_addr()?,
            if settings.tls.is_some() {
                " (TLS)"
            } else {
                " (no TLS)"
            }
        );
        let gw = breakglass_gateway::Gateway::new(built.state.engine.clone(), settings);
        tokio::spawn(gw.serve(listener, std::future::pending()));
    }
    if built.bootstrap_token.is_some() {
        eprintln!(
            "first start: admin API token written to {} (mode 0600)",
            built.admin_token_file.display()
        );
    }
    eprintln!("breakglass instance {}", built.state.engine.instance());
    eprintln!(
        "breakglass serving on {}://{} ({} store)",
        if tls.is_some() { "https" } else { "http" },
        listener.local_addr()?,
        built.state.engine.backend()
    );
    match tls {
        Some(tls) => {
            breakglass_server::serve_tls(listener, tls, built.state, shutdown_signal()).await?
        }
        None => breakglass_server::serve(listener, built.state, shutdown_signal()).await?,
    }
    eprintln!("breakglass stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Percent-encodes one URL path segment or query value (ids come from the command line).
pub(crate) fn seg(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Environment variable holding the passphrase of an age-encrypted identity file (scripts).
pub(crate) const IDENTITY_PASSPHRASE_ENV: &str = "BREAKGLASS_IDENTITY_PASSPHRASE";

/// Reads a private key file; a passphrase-protected age identity (`age -p`) is opened with
/// the passphrase from `BREAKGLASS_IDENTITY_PASSPHRASE` or, on a terminal, a prompt.
pub(crate) fn read_identity(path: &Path) -> Result<Identity> {
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path).with_context(|| format!("reading identity {}", path.display()))?,
    );
    let invalid = |e: breakglass_custody::KeyError| {
        anyhow!(Exit {
            code: if e == breakglass_custody::KeyError::WrongPassphrase {
                exit::AUTH
            } else {
                exit::INVALID
            },
            message: format!("{}: {e}", path.display())
        })
    };
    if Identity::is_encrypted(&bytes) {
        let passphrase = match std::env::var(IDENTITY_PASSPHRASE_ENV) {
            Ok(p) => breakglass_custody::SecretString::from(p),
            Err(_) if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
                breakglass_custody::SecretString::from(
                    rpassword::prompt_password(format!("Passphrase for {}: ", path.display()))
                        .context("reading the passphrase")?,
                )
            }
            Err(_) => {
                return Err(anyhow!(Exit {
                    code: exit::INVALID,
                    message: format!(
                        "{} is passphrase-protected: set {IDENTITY_PASSPHRASE_ENV} or run on a terminal",
                        path.display()
                    ),
                }));
            }
        };
        return Identity::parse_encrypted(&bytes, &passphrase).map_err(invalid);
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        anyhow!(Exit {
            code: exit::INVALID,
            message: format!("{}: not a key file (not text)", path.display()),
        })
    })?;
    Identity::parse(text).map_err(invalid)
}

/// A client signed in as the CLI options say: token, else identity, else the data dir's admin token.
pub(crate) async fn connect(cli: &Cli) -> Result<Client> {
    let mut client = unsigned_client(cli, cli.token.clone())?;
    if client.has_token() {
        return Ok(client);
    }
    if let Some(path) = &cli.identity {
        let identity = read_identity(path)?;
        client.login(cli.actor.as_deref(), &identity).await?;
        return Ok(client);
    }
    let admin = cli.data_dir.join(breakglass_server::ADMIN_TOKEN_FILE);
    if let Ok(token) = std::fs::read_to_string(&admin) {
        client.set_token(token.trim().to_owned());
    }
    Ok(client)
}

/// A client for `--server` that trusts its certificate (`--ca-cert`, or the self-signed one
/// in the data dir), with `token` or none.
pub(crate) fn unsigned_client(cli: &Cli, token: Option<String>) -> Result<Client> {
    let mut client = Client::new(&cli.server, token);
    // Trust the server's certificate: `--ca-cert`, or the self-signed one in the data dir.
    let data_dir_cert = cli
        .data_dir
        .join(breakglass_server::tls::TLS_DIR)
        .join(breakglass_server::tls::CERT_FILE);
    match &cli.ca_cert {
        Some(path) => client.trust(path)?,
        None if cli.server.starts_with("https://") && data_dir_cert.exists() => {
            client.trust(&data_dir_cert)?;
        }
        None => {}
    }
    Ok(client)
}

fn read_files(files: &[PathBuf]) -> Result<Vec<(String, String)>> {
    let read = |f: &PathBuf| {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        Ok((f.display().to_string(), text))
    };
    let threads = std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1);
    if threads <= 1 || files.len() < 64 {
        return files.iter().map(read).collect();
    }
    // Many files (`check` over a whole repository): read them on every core, in order.
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(read).collect::<Vec<_>>()))
            .collect();
        let mut out = Vec::with_capacity(files.len());
        for h in handles {
            match h.join() {
                Ok(results) => out.extend(results),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out.into_iter().collect()
    })
}

async fn procedure(cli: &Cli, cmd: &ProcedureCmd) -> Result<()> {
    match cmd {
        ProcedureCmd::Validate {
            files,
            grant_ceiling,
        } => {
            let limits = Limits {
                grant_ceiling: *grant_ceiling,
            };
            let mut errors = Vec::new();
            let mut ok = Vec::new();
            for (name, text) in read_files(files)? {
                match parse_procedures(&name, &text, &limits) {
                    Ok(parsed) => ok.push((
                        name,
                        parsed
                            .into_iter()
                            .map(|p| p.procedure.id)
                            .collect::<Vec<_>>(),
                    )),
                    Err(e) => errors.extend(e),
                }
            }
            if cli.output.is_json() {
                output::json(&json!({
                    "valid": errors.is_empty(),
                    "files": ok.iter().map(|(f, ids)| json!({"file": f, "procedures": ids})).collect::<Vec<_>>(),
                    "errors": errors.iter().map(|e| json!({"file": e.file, "line": e.line, "column": e.column, "field": e.field, "message": e.message})).collect::<Vec<_>>(),
                }));
            } else {
                for (f, ids) in &ok {
                    println!("ok: {f}: {}", ids.join(", "));
                }
                for e in &errors {
                    eprintln!("{e}");
                }
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(anyhow!(Exit {
                    code: exit::INVALID,
                    message: format!("{} problem(s) found", errors.len())
                }))
            }
        }
        ProcedureCmd::Apply { files } => {
            let files = read_files(files)?;
            let body = json!({"files": files.iter().map(|(n, c)| json!({"name": n, "content": c})).collect::<Vec<_>>()});
            let r = connect(cli)
                .await?
                .post("/api/procedures/apply", &body)
                .await?;
            if cli.output.is_json() {
                output::json(&r);
            } else {
                for x in r["results"].as_array().into_iter().flatten() {
                    println!(
                        "{}: {} (version {})",
                        field(&x["id"]),
                        field(&x["change"]),
                        field(&x["version"])
                    );
                }
            }
            Ok(())
        }
        ProcedureCmd::List => {
            let r = connect(cli).await?.get("/api/procedures").await?;
            output::listing(
                cli.output,
                &r,
                "procedures",
                &["ID", "TARGET", "QUORUM", "SEALED", "TAINTED", "OPEN BREAKS"],
                |p| {
                    let external = p["custody"]["kind"] == "external";
                    vec![
                        field(&p["id"]),
                        field(&p["target"]["kind"]),
                        if external {
                            format!(
                                "external at {}: {} of {} holders present",
                                field(&p["custody"]["location"]),
                                field(&p["custody"]["present"]),
                                p["custody"]["holders"].as_array().map_or(0, Vec::len)
                            )
                        } else {
                            format!(
                                "{} of {}",
                                field(&p["quorum"]),
                                p["custodians"].as_array().map_or(0, Vec::len)
                            )
                        },
                        if external {
                            "held outside".into()
                        } else {
                            field(&p["sealed"])
                        },
                        if p["tainted"].as_bool() == Some(true) {
                            format!("yes: {}", field(&p["taint"]["reason"]))
                        } else {
                            "no".into()
                        },
                        p["open_breaks"].as_array().map_or(0, Vec::len).to_string(),
                    ]
                },
            );
            Ok(())
        }
        ProcedureCmd::Show { id } => {
            let p = connect(cli)
                .await?
                .get(&format!("/api/procedures/{}", seg(id)))
                .await?;
            if cli.output.is_json() {
                output::json(&p);
                return Ok(());
            }
            println!(
                "procedure {} (version {}, from {}, sha256 {})",
                field(&p["id"]),
                field(&p["version"]),
                field(&p["source"]),
                field(&p["content_hash"])
            );
            println!(
                "sealed: {}   tainted: {}",
                field(&p["seal_id"]),
                if p["tainted"].as_bool() == Some(true) {
                    field(&p["taint"]["reason"])
                } else {
                    "no".into()
                }
            );
            println!(
                "open breaks: {}",
                p["open_breaks"].as_array().map_or(0, Vec::len)
            );
            if p["custody"]["kind"] == "external" {
                let holders: Vec<String> = p["custody"]["holders"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| {
                        breakglass_domain::named(
                            &field(&h["name"]),
                            h["contact"].as_str().unwrap_or(""),
                        )
                    })
                    .collect();
                println!(
                    "custody: external at {}; {} of {} must be present: {}",
                    field(&p["custody"]["location"]),
                    field(&p["custody"]["present"]),
                    holders.len(),
                    holders.join(", ")
                );
            }
            println!("---");
            print!("{}", p["spec_yaml"].as_str().unwrap_or_default());
            Ok(())
        }
        ProcedureCmd::Schema => {
            let schema = schemars::schema_for!(ProcedureSpec);
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(())
        }
    }
}

async fn seal(cli: &Cli, a: &SealArgs) -> Result<()> {
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    match &a.file {
        Some(f) => {
            let mut file =
                std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?;
            file.read_to_end(&mut bytes)
                .with_context(|| format!("reading {}", f.display()))?;
        }
        None => {
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading the secret from standard input")?;
        }
    }
    if !a.keep_newline {
        let len = bytes.len();
        if bytes.ends_with(b"\r\n") {
            bytes.truncate(len - 2);
        } else if bytes.ends_with(b"\n") {
            bytes.truncate(len - 1);
        }
    }
    if bytes.is_empty() {
        return Err(anyhow!(Exit {
            code: exit::INVALID,
            message: "the secret is empty".into()
        }));
    }
    let body = json!({"secret_b64": B64.encode(bytes.as_slice()), "drill": a.drill});
    let r = connect(cli)
        .await?
        .post(
            &format!("/api/procedures/{}/seal", seg(&a.procedure)),
            &body,
        )
        .await?;
    if cli.output.is_json() {
        output::json(&r);
    } else {
        println!(
            "sealed {}{} as {}: {} of {} {} ({})",
            a.procedure,
            if a.drill { "'s drill credential" } else { "" },
            field(&r["seal_id"]),
            field(&r["threshold"]),
            r["custodians"].as_array().map_or(0, Vec::len),
            if a.drill {
                "drill identities"
            } else {
                "custodians"
            },
            r["custodians"]
                .as_array()
                .into_iter()
                .flatten()
                .map(field)
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(t) = r["cleared_taint"].as_str() {
            println!("cleared taint: {t}");
        }
    }
    Ok(())
}

fn keygen(cli: &Cli, out: &Path) -> Result<()> {
    if out.exists() {
        return Err(anyhow!(Exit {
            code: exit::INVALID,
            message: format!("{} exists; refusing to overwrite a key", out.display())
        }));
    }
    let (identity, public) = breakglass_custody::keygen();
    breakglass_server::write_private_file(out, identity.expose_secret().as_bytes())?;
    if cli.output.is_json() {
        output::json(
            &json!({"identity_file": out.display().to_string(), "public_key": public.canonical()}),
        );
    } else {
        println!("{}", public.canonical());
        eprintln!(
            "identity written to {} (mode 0600); give the public key above to your admin",
            out.display()
        );
    }
    Ok(())
}

async fn actor(cli: &Cli, cmd: &ActorCmd) -> Result<()> {
    match cmd {
        ActorCmd::Add {
            name,
            roles,
            key,
            key_file,
            contact,
            api_token,
        } => {
            let key = match (key, key_file) {
                (Some(k), _) => Some(k.clone()),
                (None, Some(f)) => Some(
                    std::fs::read_to_string(f)
                        .with_context(|| format!("reading {}", f.display()))?
                        .trim()
                        .to_owned(),
                ),
                (None, None) => None,
            };
            let r = connect(cli)
                .await?
                .post("/api/actors", &json!({"name": name, "roles": roles, "key": key, "contact": contact, "token": api_token}))
                .await?;
            if cli.output.is_json() {
                output::json(&r);
            } else {
                println!("enrolled {name}");
                if let Some(t) = r["token"].as_str() {
                    println!("API token (shown once): {t}");
                }
            }
            Ok(())
        }
        ActorCmd::List => {
            let r = connect(cli).await?.get("/api/actors").await?;
            output::listing(
                cli.output,
                &r,
                "actors",
                &["NAME", "ROLES", "KEY", "TOKEN", "CONTACT"],
                |a| {
                    vec![
                        field(&a["name"]),
                        a["roles"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(field)
                            .collect::<Vec<_>>()
                            .join(","),
                        field(&a["key_fingerprint"]),
                        field(&a["has_token"]),
                        field(&a["contact"]),
                    ]
                },
            );
            Ok(())
        }
    }
}

/// One line describing a break.
pub(crate) fn break_line(b: &Value) -> String {
    let mut s = format!(
        "{} {} [{}] by {}: {} ({}), approvals {}/{}",
        field(&b["id"]),
        field(&b["procedure"]),
        field(&b["state"]),
        field(&b["requester"]),
        field(&b["reason"]),
        field(&b["ticket"]),
        b["approvals"].as_array().map_or(0, Vec::len),
        field(&b["quorum"]),
    );
    if let Some(d) = b["deadline"].as_str() {
        s.push_str(&format!(", deadline {d}"));
    }
    if let Some(t) = b["time_to_access_ms"].as_i64() {
        s.push_str(&format!(", time to access {t} ms"));
    }
    s
}

async fn break_cmd(cli: &Cli, cmd: &BreakCmd) -> Result<()> {
    match cmd {
        BreakCmd::Open {
            procedure,
            reason,
            ticket,
            duration,
        } => {
            let b = connect(cli)
                .await?
                .post("/api/breaks", &json!({"procedure": procedure, "reason": reason, "ticket": ticket, "duration": duration}))
                .await?;
            if cli.output.is_json() {
                output::json(&b);
            } else {
                println!("{}", break_line(&b));
                println!(
                    "custodians approve with: breakglass approve {} --identity THEIR_KEY_FILE",
                    field(&b["id"])
                );
            }
            Ok(())
        }
        BreakCmd::List { procedure } => {
            let path = match procedure {
                Some(p) => format!("/api/breaks?procedure={}", seg(p)),
                None => "/api/breaks".into(),
            };
            let r = connect(cli).await?.get(&path).await?;
            output::listing(
                cli.output,
                &r,
                "breaks",
                &[
                    "ID",
                    "PROCEDURE",
                    "STATE",
                    "REQUESTER",
                    "TICKET",
                    "APPROVALS",
                    "REQUESTED",
                    "DEADLINE",
                ],
                |b| {
                    vec![
                        field(&b["id"]),
                        field(&b["procedure"]),
                        field(&b["state"]),
                        field(&b["requester"]),
                        field(&b["ticket"]),
                        format!(
                            "{}/{}",
                            b["approvals"].as_array().map_or(0, Vec::len),
                            field(&b["quorum"])
                        ),
                        field(&b["requested_at"]),
                        field(&b["deadline"]),
                    ]
                },
            );
            Ok(())
        }
        BreakCmd::Show { id } => {
            let b = connect(cli)
                .await?
                .get(&format!("/api/breaks/{}", seg(id)))
                .await?;
            if cli.output.is_json() {
                output::json(&b);
            } else {
                println!("{}", break_line(&b));
            }
            Ok(())
        }
        BreakCmd::Reveal { id, out } => {
            let identity_path = cli.identity.as_ref().ok_or_else(|| {
                anyhow!(Exit {
                    code: exit::INVALID,
                    message:
                        "reveal needs --identity: the secret is encrypted to the requester's key"
                            .into()
                })
            })?;
            let identity = read_identity(identity_path)?;
            // Open the destination before asking for the single reveal, so a bad path cannot
            // use up the grant.
            let mut file = match out {
                Some(path) => Some((path, breakglass_server::create_private_file(path)?)),
                None => None,
            };
            let r = connect(cli)
                .await?
                .post(&format!("/api/breaks/{}/reveal", seg(id)), &json!({}))
                .await?;
            let secret = breakglass_custody::decrypt_with(
                &identity,
                r["age_file"].as_str().unwrap_or_default().as_bytes(),
            )?;
            use std::io::Write;
            match &mut file {
                Some((path, f)) => {
                    f.write_all(&secret)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "secret written to {} (mode 0600); grant ends {}",
                        path.display(),
                        field(&r["deadline"])
                    );
                }
                None => {
                    let mut stdout = std::io::stdout();
                    stdout.write_all(&secret)?;
                    stdout.write_all(b"\n")?;
                    eprintln!("grant ends {}", field(&r["deadline"]));
                }
            }
            Ok(())
        }
        BreakCmd::Token { id } => {
            let identity_path = cli.identity.as_ref().ok_or_else(|| {
                anyhow!(Exit {
                    code: exit::INVALID,
                    message: "token needs --identity: it is encrypted to the requester's key"
                        .into()
                })
            })?;
            let identity = read_identity(identity_path)?;
            let r = connect(cli)
                .await?
                .post(&format!("/api/breaks/{}/token", seg(id)), &json!({}))
                .await?;
            let url = breakglass_custody::decrypt_with(
                &identity,
                r["age_file"].as_str().unwrap_or_default().as_bytes(),
            )?;
            use std::io::Write;
            let mut stdout = std::io::stdout();
            stdout.write_all(&url)?;
            stdout.write_all(b"\n")?;
            eprintln!("grant ends {}", field(&r["deadline"]));
            Ok(())
        }
        BreakCmd::Close { id } => {
            let b = connect(cli)
                .await?
                .post(&format!("/api/breaks/{}/close", seg(id)), &json!({}))
                .await?;
            if cli.output.is_json() {
                output::json(&b);
            } else {
                println!("{}", break_line(&b));
            }
            Ok(())
        }
    }
}

async fn approve(cli: &Cli, a: &ApproveArgs) -> Result<()> {
    let identity_path = cli.identity.as_ref().ok_or_else(|| {
        anyhow!(Exit {
            code: exit::INVALID,
            message: "approve needs --identity: your share is decrypted locally with your key"
                .into()
        })
    })?;
    let identity = read_identity(identity_path)?;
    let mut client = unsigned_client(cli, None)?;
    client.login(cli.actor.as_deref(), &identity).await?;
    let r = approve_with_totp(&client, &identity, &a.break_id, a.totp.as_deref()).await?;
    if cli.output.is_json() {
        output::json(&r);
    } else {
        println!(
            "approved: {}/{} approvals",
            field(&r["approvals"]),
            field(&r["quorum"])
        );
        println!("{}", break_line(&r["break"]));
    }
    Ok(())
}

/// Fetches the caller's encrypted share, decrypts it locally, submits it.
pub(crate) async fn approve_with(
    client: &Client,
    identity: &Identity,
    break_id: &str,
) -> Result<Value> {
    approve_with_totp(client, identity, break_id, None).await
}

/// `approve_with` with a TOTP code. Without one, when the server answers that a code is
/// needed and standard input is a terminal, asks for it and submits again.
pub(crate) async fn approve_with_totp(
    client: &Client,
    identity: &Identity,
    break_id: &str,
    totp: Option<&str>,
) -> Result<Value> {
    let share = client
        .get(&format!("/api/breaks/{}/share", seg(break_id)))
        .await?;
    let plain = breakglass_custody::decrypt_share(
        share["age_file"].as_str().unwrap_or_default().as_bytes(),
        identity,
    )?;
    let encoded = plain.encode();
    let path = format!("/api/breaks/{}/approvals", seg(break_id));
    let mut body = json!({"share": encoded.as_str()});
    if let Some(code) = totp {
        body["totp"] = json!(code);
    }
    match client.post(&path, &body).await {
        Err(f)
            if totp.is_none()
                && f.code == "totp_required"
                && std::io::IsTerminal::is_terminal(&std::io::stdin()) =>
        {
            eprintln!("{}", f.message);
            let code = zeroize::Zeroizing::new(
                rpassword::prompt_password("TOTP code: ").context("reading the TOTP code")?,
            );
            body["totp"] = json!(code.trim());
            Ok(client.post(&path, &body).await?)
        }
        other => Ok(other?),
    }
}

/// `totp`: a custodian's own TOTP enrolment, signed in with their key (--identity), or an
/// admin's reset of someone else's.
async fn totp(cli: &Cli, cmd: &TotpCmd) -> Result<()> {
    let client = connect(cli).await?;
    match cmd {
        TotpCmd::Enroll => {
            let r = client.post("/api/totp/enroll", &json!({})).await?;
            if cli.output.is_json() {
                output::json(&r);
            } else {
                println!(
                    "TOTP enrolment started for {}. Add it to your authenticator app (shown once):",
                    field(&r["custodian"])
                );
                println!("  secret: {}", field(&r["secret"]));
                println!("  URI:    {}", field(&r["otpauth_uri"]));
                println!(
                    "  (SHA-1, {} digits, every {} s.) Then run: breakglass totp confirm CODE --identity YOUR_KEY",
                    field(&r["digits"]),
                    field(&r["period"])
                );
            }
            Ok(())
        }
        TotpCmd::Confirm { code } => {
            let code = match code {
                Some(c) => zeroize::Zeroizing::new(c.clone()),
                None if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
                    zeroize::Zeroizing::new(
                        rpassword::prompt_password("TOTP code: ")
                            .context("reading the TOTP code")?,
                    )
                }
                None => {
                    return Err(anyhow!(Exit {
                        code: exit::USAGE,
                        message: "give the code: breakglass totp confirm CODE".into(),
                    }));
                }
            };
            let r = client
                .post("/api/totp/confirm", &json!({"code": code.trim()}))
                .await?;
            if cli.output.is_json() {
                output::json(&r);
            } else {
                println!(
                    "TOTP active for {}: approvals now need --totp CODE",
                    field(&r["custodian"])
                );
            }
            Ok(())
        }
        TotpCmd::Reset { custodian } => {
            let body = match custodian {
                Some(c) => json!({"custodian": c}),
                None => json!({}),
            };
            let r = client.post("/api/totp/reset", &body).await?;
            if cli.output.is_json() {
                output::json(&r);
            } else {
                println!("removed {}'s TOTP enrolment", field(&r["custodian"]));
            }
            Ok(())
        }
        TotpCmd::Status => {
            let r = client.get("/api/totp").await?;
            output::listing(
                cli.output,
                &r,
                "enrollments",
                &["CUSTODIAN", "STATE", "SINCE", "LOCKED UNTIL"],
                |t| {
                    vec![
                        field(&t["custodian"]),
                        if t["active"] == true {
                            "active".into()
                        } else {
                            "pending confirmation".into()
                        },
                        if t["confirmed_at"].is_null() {
                            field(&t["created_at"])
                        } else {
                            field(&t["confirmed_at"])
                        },
                        if t["locked_until"].is_null() {
                            String::new()
                        } else {
                            field(&t["locked_until"])
                        },
                    ]
                },
            );
            Ok(())
        }
    }
}

async fn audit(cli: &Cli, cmd: &AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Import { spool } => crate::recover::import(cli, spool).await,
        AuditCmd::Verify {
            file: Some(f),
            pubkey,
            against: None,
        } => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let trusted = pubkey
                .as_deref()
                .map(|k| k.parse::<breakglass_audit::AuditPublicKey>())
                .transpose()
                .map_err(|e| {
                    anyhow!(Exit {
                        code: exit::INVALID,
                        message: format!("--pubkey: {e}")
                    })
                })?;
            let mut records = Vec::new();
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let r = breakglass_audit::SinkRecord::from_line(line).map_err(|e| {
                    anyhow!(Exit {
                        code: exit::AUDIT_BROKEN,
                        message: format!("{}:{}: {e}", f.display(), n + 1)
                    })
                })?;
                records.push(r);
            }
            match breakglass_audit::verify_records(&records, trusted.as_ref()) {
                Ok(r) => {
                    let head = r
                        .head
                        .map(|h| json!({"seq": h.seq, "hash": h.hash.to_hex()}));
                    if cli.output.is_json() {
                        output::json(
                            &json!({"intact": true, "entries": r.entries, "checkpoints": r.checkpoints, "keys": r.keys, "head": head}),
                        );
                    } else {
                        println!(
                            "audit chain intact: {} entries, {} signed checkpoints, head {}",
                            r.entries,
                            r.checkpoints,
                            head.map(|h| format!("#{} {}", h["seq"], field(&h["hash"])))
                                .unwrap_or("-".into())
                        );
                        if trusted.is_none() {
                            eprintln!(
                                "note: no --pubkey given; signatures were checked against the keys the file itself announces"
                            );
                        }
                    }
                    Ok(())
                }
                Err(e) => Err(anyhow!(Exit {
                    code: exit::AUDIT_BROKEN,
                    message: format!("audit log broken: {e}")
                })),
            }
        }
        AuditCmd::Verify {
            file: Some(_),
            against: Some(_),
            ..
        } => Err(anyhow!(Exit {
            code: exit::INVALID,
            message:
                "--against compares the server's log with a sink; it cannot be combined with --file"
                    .into()
        })),
        AuditCmd::Verify {
            file: None,
            against,
            pubkey,
        } => {
            let mut query = Vec::new();
            if let Some(s) = against {
                query.push(format!("against={}", seg(s)));
            }
            if let Some(k) = pubkey {
                query.push(format!("pubkey={}", seg(k)));
            }
            let path = if query.is_empty() {
                "/api/audit/verify".to_owned()
            } else {
                format!("/api/audit/verify?{}", query.join("&"))
            };
            let r = connect(cli).await?.get(&path).await?;
            if cli.output.is_json() {
                output::json(&r);
            }
            if r["intact"].as_bool() == Some(true) {
                if cli.output == Format::Text {
                    println!(
                        "audit chain intact: {} entries, {} signed checkpoints, head #{} {}",
                        field(&r["entries"]),
                        field(&r["checkpoints"]),
                        field(&r["head"]["seq"]),
                        field(&r["head"]["hash"])
                    );
                    if let Some(s) = against {
                        println!("sink {s} holds the same history");
                    }
                }
                Ok(())
            } else {
                let findings: Vec<String> = r["findings"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|f| format!("  {}: {}", field(&f["kind"]), field(&f["message"])))
                    .collect();
                Err(anyhow!(Exit {
                    code: exit::AUDIT_BROKEN,
                    message: format!("audit verification failed:\n{}", findings.join("\n"))
                }))
            }
        }
        AuditCmd::Pubkey => {
            let r = unsigned_client(cli, None)?.get("/api/audit/pubkey").await?;
            if cli.output.is_json() {
                output::json(&r);
            } else {
                println!("{}", field(&r["public_key"]));
                eprintln!("key id {}", field(&r["key_id"]));
            }
            Ok(())
        }
        AuditCmd::RotateKey => {
            let r = connect(cli)
                .await?
                .post("/api/audit/rotate-key", &json!({}))
                .await?;
            if cli.output.is_json() {
                output::json(&r);
            } else {
                println!(
                    "rotated audit key {} → {}",
                    field(&r["old_key_id"]),
                    field(&r["new_key_id"])
                );
                println!("{}", field(&r["public_key"]));
            }
            Ok(())
        }
        AuditCmd::Checkpoint => {
            let r = connect(cli)
                .await?
                .post("/api/audit/checkpoint", &json!({}))
                .await?;
            if cli.output.is_json() {
                output::json(&r);
            } else {
                match r["checkpoint_seq"].as_u64() {
                    Some(seq) => println!("signed checkpoint at #{seq}"),
                    None => println!("the newest checkpoint already covers the head"),
                }
            }
            Ok(())
        }
        AuditCmd::Sinks => {
            let r = connect(cli).await?.get("/api/audit/sinks").await?;
            output::listing(
                cli.output,
                &r,
                "sinks",
                &["SINK", "PENDING", "OLDEST PENDING MS"],
                |s| {
                    vec![
                        field(&s["name"]),
                        field(&s["pending"]),
                        field(&s["oldest_pending_ms"]),
                    ]
                },
            );
            Ok(())
        }
        AuditCmd::SetupPostgresSink {
            admin_url,
            schema,
            role,
        } => {
            breakglass_sinks::postgres::setup(admin_url, schema, role)
                .await
                .map_err(|e| {
                    anyhow!(Exit {
                        code: exit::FAILURE,
                        message: e
                    })
                })?;
            println!(
                "insert-only sink ready: schema {schema}, role {role} (INSERT and SELECT only; UPDATE, DELETE and TRUNCATE refused by trigger)"
            );
            Ok(())
        }
        AuditCmd::Export { out } => {
            let text = connect(cli).await?.get_text("/api/audit/export").await?;
            match out {
                Some(p) => {
                    std::fs::write(p, &text).with_context(|| format!("writing {}", p.display()))?;
                    eprintln!(
                        "wrote {} records (entries, then signed checkpoints) to {}",
                        text.lines().count(),
                        p.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        AuditCmd::List { from, limit } => {
            let r = connect(cli)
                .await?
                .get(&format!("/api/audit?from={from}&limit={limit}"))
                .await?;
            output::listing(
                cli.output,
                &r,
                "entries",
                &["SEQ", "TIME", "ACTOR", "KIND", "PROCEDURE", "BREAK"],
                |e| {
                    vec![
                        field(&e["seq"]),
                        field(&e["time"]),
                        field(&e["actor"]),
                        field(&e["kind"]),
                        field(&e["procedure"]),
                        field(&e["break"]),
                    ]
                },
            );
            Ok(())
        }
    }
}

async fn ack(cli: &Cli, a: &AckArgs) -> Result<()> {
    // The token may be pasted as the whole link.
    let token = a.token.rsplit('/').next().unwrap_or(&a.token);
    let r = unsigned_client(cli, None)?
        .post("/api/ack", &json!({"token": token, "by": a.by}))
        .await?;
    if cli.output.is_json() {
        output::json(&r);
    } else {
        println!(
            "acknowledged break {} on {} ({} s after it was requested)",
            field(&r["break"]),
            field(&r["procedure"]),
            r["time_to_ack_ms"].as_i64().unwrap_or_default() / 1000
        );
    }
    Ok(())
}

async fn channel(cli: &Cli, cmd: &ChannelCmd) -> Result<()> {
    match cmd {
        ChannelCmd::List => {
            let r = connect(cli).await?.get("/api/channels").await?;
            output::listing(
                cli.output,
                &r,
                "channels",
                &["NAME", "KIND", "PENDING", "LAST TEST"],
                |c| {
                    let t = &c["last_test"];
                    vec![
                        field(&c["name"]),
                        field(&c["kind"]),
                        field(&c["pending"]),
                        if t.is_null() {
                            "never".into()
                        } else {
                            format!(
                                "{} {} ({} ms)",
                                if t["ok"].as_bool() == Some(true) {
                                    "ok"
                                } else {
                                    "FAILED"
                                },
                                field(&t["at"]),
                                field(&t["latency_ms"])
                            )
                        },
                    ]
                },
            );
            Ok(())
        }
        ChannelCmd::Test { name } => {
            let r = connect(cli)
                .await?
                .post(&format!("/api/channels/{}/test", seg(name)), &json!({}))
                .await?;
            if cli.output.is_json() {
                output::json(&r);
            }
            if r["ok"].as_bool() == Some(true) {
                if cli.output == Format::Text {
                    println!(
                        "channel {name}: delivered in {} ms ({})",
                        field(&r["latency_ms"]),
                        field(&r["status"])
                    );
                }
                Ok(())
            } else {
                Err(anyhow!(Exit {
                    code: exit::UNAVAILABLE,
                    message: format!(
                        "channel {name}: test alert not delivered: {}",
                        field(&r["error"])
                    )
                }))
            }
        }
        ChannelCmd::Attempts { name, limit } => {
            let r = connect(cli)
                .await?
                .get(&format!(
                    "/api/channels/{}/attempts?limit={limit}",
                    seg(name)
                ))
                .await?;
            output::listing(
                cli.output,
                &r,
                "attempts",
                &["AT", "ALERT", "RESULT", "STATUS", "MS", "ERROR"],
                |a| {
                    vec![
                        field(&a["at"]),
                        field(&a["outbox_id"]),
                        if a["ok"].as_bool() == Some(true) {
                            "ok".into()
                        } else {
                            "failed".into()
                        },
                        field(&a["status"]),
                        field(&a["latency_ms"]),
                        field(&a["error"]),
                    ]
                },
            );
            Ok(())
        }
    }
}

async fn target(cli: &Cli, cmd: &TargetCmd) -> Result<()> {
    let client = connect(cli).await?;
    let (r, failed) = match cmd {
        TargetCmd::Check { procedure } => {
            let r = client
                .post(
                    &format!("/api/procedures/{}/check", seg(procedure)),
                    &json!({}),
                )
                .await?;
            if cli.output == Format::Text {
                for c in r["checks"].as_array().into_iter().flatten() {
                    let mark = if c["ok"].as_bool() == Some(true) {
                        "ok  "
                    } else {
                        "FAIL"
                    };
                    println!("{mark} {}: {}", field(&c["name"]), field(&c["detail"]));
                }
            }
            let failed = r["ok"].as_bool() != Some(true);
            (
                r,
                failed.then(|| format!("target of {procedure}: a check failed")),
            )
        }
        TargetCmd::Discover { procedure } => {
            let r = client
                .post(
                    &format!("/api/procedures/{}/discover", seg(procedure)),
                    &json!({}),
                )
                .await?;
            if cli.output == Format::Text {
                output::table(
                    &["ACCOUNT", "PRIVILEGES", "EXPIRES", "FLAGS"],
                    r["accounts"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            let list = |v: &Value| {
                                v.as_array()
                                    .into_iter()
                                    .flatten()
                                    .map(field)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            };
                            vec![
                                field(&a["name"]),
                                list(&a["privileges"]),
                                if a["expires"].is_null() {
                                    "never".into()
                                } else {
                                    field(&a["expires"])
                                },
                                list(&a["flags"]),
                            ]
                        })
                        .collect(),
                );
            }
            let unknown = r["unknown"].as_u64().unwrap_or(0);
            (
                r,
                (unknown > 0).then(|| {
                    format!(
                        "target of {procedure}: {unknown} privileged account(s) not in the inventory"
                    )
                }),
            )
        }
        TargetCmd::Show { procedure } => {
            let r = client
                .get(&format!("/api/procedures/{}/target", seg(procedure)))
                .await?;
            if cli.output == Format::Text {
                for rep in r["reports"].as_array().into_iter().flatten() {
                    println!(
                        "{} at {}: {}",
                        field(&rep["kind"]),
                        field(&rep["at"]),
                        if rep["ok"].as_bool() == Some(true) {
                            "ok"
                        } else {
                            "PROBLEMS"
                        }
                    );
                }
            }
            (r, None)
        }
        TargetCmd::Grant { break_id } => {
            let r = client
                .get(&format!("/api/breaks/{}/grant", seg(break_id)))
                .await?;
            if cli.output == Format::Text {
                println!(
                    "{} grant of {} ({})",
                    field(&r["kind"]),
                    field(&r["break"]),
                    field(&r["procedure"])
                );
                println!("  created   {}", field(&r["created_at"]));
                println!("  deadline  {}", field(&r["deadline"]));
                println!("  handle    {}", r["handle"]);
                match r["ended_at"].as_str() {
                    Some(at) => println!("  ended     {at} ({})", field(&r["end_cause"])),
                    None if !r["last_error"].is_null() => println!(
                        "  NOT ENDED after {} attempt(s): {}",
                        field(&r["end_attempts"]),
                        field(&r["last_error"])
                    ),
                    None => println!("  active"),
                }
            }
            (r, None)
        }
    };
    if cli.output.is_json() {
        output::json(&r);
    }
    match failed {
        Some(message) => Err(anyhow!(Exit {
            code: exit::TARGET,
            message,
        })),
        None => Ok(()),
    }
}

async fn custodian(cli: &Cli, cmd: &CustodianCmd) -> Result<()> {
    let client = connect(cli).await?;
    match cmd {
        CustodianCmd::Keygen { .. } => Ok(()),
        CustodianCmd::Attest { name } => {
            let identity_path = cli.identity.as_ref().ok_or_else(|| {
                anyhow!(Exit {
                    code: exit::INVALID,
                    message: "attest needs --identity: the challenge is encrypted to your key"
                        .into()
                })
            })?;
            let identity = read_identity(identity_path)?;
            let r = client
                .post(&format!("/api/custodians/{}/attest", seg(name)), &json!({}))
                .await?;
            let mut attested = Vec::new();
            for c in r["challenges"].as_array().into_iter().flatten() {
                // A custodian may hold different keys for different procedures: answer the
                // challenges this identity can open.
                let Ok(plain) = breakglass_custody::decrypt_with(
                    &identity,
                    c["age_file"].as_str().unwrap_or_default().as_bytes(),
                ) else {
                    continue;
                };
                let answer = String::from_utf8_lossy(&plain).into_owned();
                let a = client
                    .post(
                        &format!(
                            "/api/attestations/{}",
                            seg(c["id"].as_str().unwrap_or_default())
                        ),
                        &json!({"response": answer}),
                    )
                    .await?;
                attested.push(json!({"key": a["key"], "attested_at": a["attested_at"], "procedures": c["procedures"]}));
            }
            if attested.is_empty() {
                return Err(anyhow!(Exit {
                    code: exit::AUTH,
                    message: format!("this identity holds none of {name}'s custodian keys"),
                }));
            }
            if cli.output.is_json() {
                output::json(&json!({"custodian": name, "attested": attested}));
            } else {
                for a in &attested {
                    let procedures: Vec<String> = a["procedures"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(field)
                        .collect();
                    println!(
                        "attested {name}'s key {} ({})",
                        field(&a["key"]),
                        procedures.join(", ")
                    );
                }
            }
            Ok(())
        }
        CustodianCmd::Lost { name, reason } => {
            let r = client
                .post(
                    &format!("/api/custodians/{}/lost", seg(name)),
                    &json!({"reason": reason}),
                )
                .await?;
            if cli.output.is_json() {
                output::json(&r);
            } else {
                println!("declared {name}'s key(s) lost; `breakglass check` shows what it breaks");
            }
            Ok(())
        }
        CustodianCmd::Attestations => {
            let r = client.get("/api/attestations").await?;
            output::listing(
                cli.output,
                &r,
                "attestations",
                &["CUSTODIAN", "KEY", "ATTESTED", "LOST"],
                |a| {
                    vec![
                        field(&a["custodian"]),
                        field(&a["key"]),
                        if a["attested_at"].is_null() {
                            "never".into()
                        } else {
                            field(&a["attested_at"])
                        },
                        if a["lost_at"].is_null() {
                            String::new()
                        } else {
                            format!("{} ({})", field(&a["lost_at"]), field(&a["lost_reason"]))
                        },
                    ]
                },
            );
            Ok(())
        }
    }
}

async fn check(cli: &Cli, a: &CheckArgs) -> Result<()> {
    let verdicts: Vec<Value> = if a.files.is_empty() {
        let r = connect(cli).await?.get("/api/readiness").await?;
        r["procedures"].as_array().cloned().unwrap_or_default()
    } else {
        let limits = Limits {
            grant_ceiling: a.grant_ceiling,
        };
        let policy = breakglass_domain::LintPolicy {
            min_custodians: a.min_custodians,
            max_custodians: a.max_custodians,
            ..breakglass_domain::LintPolicy::default()
        };
        let mut errors = Vec::new();
        let mut out = Vec::new();
        let files = read_files(&a.files)?;
        let results = breakglass_domain::readiness::lint_files(&files, &limits, &policy);
        for ((name, _), result) in files.iter().zip(results) {
            match result {
                Ok(linted) => {
                    for l in linted {
                        let r = &l.readiness;
                        let findings = r.findings.iter().map(|f| {
                            let mut v = json!({"verdict": f.verdict.as_str(), "code": f.code, "message": f.message});
                            if let Some((line, column)) = l.position(f) {
                                v["line"] = json!(line);
                                v["column"] = json!(column);
                            }
                            v
                        });
                        out.push(json!({
                            "procedure": r.procedure,
                            "file": name,
                            "verdict": r.verdict.as_str(),
                            "findings": findings.collect::<Vec<_>>(),
                        }));
                    }
                }
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            for e in &errors {
                eprintln!("{e}");
            }
            return Err(anyhow!(Exit {
                code: exit::INVALID,
                message: format!("{} problem(s) found", errors.len())
            }));
        }
        out
    };
    if cli.output == Format::Sarif {
        output::json(&crate::sarif::log(&verdicts));
    } else if cli.output.is_json() {
        output::json(&json!({"procedures": verdicts}));
    } else {
        for v in &verdicts {
            println!(
                "{}: {}",
                field(&v["procedure"]),
                field(&v["verdict"]).to_uppercase()
            );
            for f in v["findings"].as_array().into_iter().flatten() {
                println!(
                    "  {:<8} {:<28} {}",
                    field(&f["verdict"]),
                    field(&f["code"]),
                    field(&f["message"])
                );
            }
            // Shown once a second factor is in play (enrolled, hardware keys or required).
            let sf = &v["second_factor"];
            if sf["with_second_factor"].as_u64().unwrap_or(0) > 0 || !sf["required"].is_null() {
                let mut line = format!(
                    "  second factor: {} of {} custodians (TOTP {}, hardware key {})",
                    field(&sf["with_second_factor"]),
                    field(&sf["custodians"]),
                    field(&sf["totp"]),
                    field(&sf["hardware"])
                );
                if !sf["required"].is_null() {
                    line.push_str(&format!(
                        "; required: {}, {} can approve",
                        field(&sf["required"]),
                        field(&sf["can_approve"])
                    ));
                }
                println!("{line}");
            }
        }
    }
    let count = |verdict: &str| verdicts.iter().filter(|v| v["verdict"] == verdict).count();
    let (broken, degraded) = (count("broken"), count("degraded"));
    if broken > 0 || (a.strict && degraded > 0) {
        return Err(anyhow!(Exit {
            code: exit::NOT_READY,
            message: format!(
                "{broken} broken, {degraded} degraded of {} procedure(s)",
                verdicts.len()
            ),
        }));
    }
    Ok(())
}

async fn people(cli: &Cli, a: &PeopleArgs) -> Result<()> {
    let client = connect(cli).await?;
    match &a.show {
        None => {
            let r = client.get("/api/people").await?;
            output::listing(
                cli.output,
                &r,
                "people",
                &[
                    "NAME",
                    "CONTACT",
                    "HOLDS",
                    "CRITICAL FOR",
                    "KEYS",
                    "LAST DRILL",
                ],
                |p| {
                    let holds = p["holdings"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|h| {
                            if h["custody"] == "external" {
                                format!(
                                    "{} (external: {}, {}/{} present)",
                                    field(&h["procedure"]),
                                    field(&h["location"]),
                                    field(&h["quorum"]),
                                    field(&h["custodians"])
                                )
                            } else {
                                format!(
                                    "{} ({}/{})",
                                    field(&h["procedure"]),
                                    field(&h["quorum"]),
                                    field(&h["custodians"])
                                )
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    let critical = list_of(&p["critical_for"]);
                    vec![
                        field(&p["name"]),
                        field(&p["contact"]),
                        holds,
                        if critical.is_empty() {
                            "-".into()
                        } else {
                            format!("{critical} (SINGLE POINT OF FAILURE)")
                        },
                        key_states_of(&p["keys"]),
                        last_drill_of(&p["last_drill"]),
                    ]
                },
            );
            if !cli.output.is_json() {
                for p in r["people"].as_array().into_iter().flatten() {
                    for w in p["warnings"].as_array().into_iter().flatten() {
                        println!("! {}: {}", field(&p["name"]), field(&w["message"]));
                    }
                }
            }
        }
        Some(PeopleCmd::Show { name }) => {
            let p = client.get(&format!("/api/people/{}", seg(name))).await?;
            if cli.output.is_json() {
                output::json(&p);
                return Ok(());
            }
            println!("{} <{}>", field(&p["name"]), field(&p["contact"]));
            if p["single_point_of_failure"] == true {
                println!(
                    "SINGLE POINT OF FAILURE for {}",
                    list_of(&p["critical_for"])
                );
            }
            let contacts = p["contacts"].as_array().cloned().unwrap_or_default();
            if contacts.len() > 1 {
                println!("contacts:");
                for c in &contacts {
                    println!(
                        "  {} (in {})",
                        if field(&c["contact"]).is_empty() {
                            "none".into()
                        } else {
                            field(&c["contact"])
                        },
                        list_of(&c["procedures"])
                    );
                }
            }
            println!("holds:");
            output::table(
                &["PROCEDURE", "SEAL", "QUORUM", "WITHOUT THEM"],
                p["holdings"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| {
                        vec![
                            field(&h["procedure"]),
                            if h["custody"] == "external" {
                                format!("external: {}", field(&h["location"]))
                            } else if h["seal_id"].is_null() {
                                "not sealed".into()
                            } else {
                                field(&h["seal_id"])
                            },
                            format!("{} of {}", field(&h["quorum"]), field(&h["custodians"])),
                            if h["reachable_without"] == true {
                                format!(
                                    "reachable ({} others available)",
                                    field(&h["others_available"])
                                )
                            } else {
                                format!(
                                    "QUORUM LOST ({} others available)",
                                    field(&h["others_available"])
                                )
                            },
                        ]
                    })
                    .collect(),
            );
            println!("keys:");
            output::table(
                &["FINGERPRINT", "KIND", "PROCEDURES", "ATTESTED", "LOST"],
                p["keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|k| {
                        vec![
                            field(&k["fingerprint"]),
                            field(&k["kind"]),
                            list_of(&k["procedures"]),
                            format!(
                                "{}{}",
                                if k["attested_at"].is_null() {
                                    "never".into()
                                } else {
                                    field(&k["attested_at"])
                                },
                                if k["attestation_overdue"] == true {
                                    " (OVERDUE)"
                                } else {
                                    ""
                                }
                            ),
                            if k["lost_at"].is_null() {
                                String::new()
                            } else {
                                format!("{} ({})", field(&k["lost_at"]), field(&k["lost_reason"]))
                            },
                        ]
                    })
                    .collect(),
            );
            println!("last drill: {}", last_drill_of(&p["last_drill"]));
            for w in p["warnings"].as_array().into_iter().flatten() {
                println!("! {}", field(&w["message"]));
            }
        }
    }
    Ok(())
}

/// A JSON array of strings, comma-separated.
fn list_of(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .map(field)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A person's keys in a word each: `ok`, `overdue`, `lost`.
fn key_states_of(keys: &Value) -> String {
    keys.as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            if !k["lost_at"].is_null() {
                "lost"
            } else if k["attestation_overdue"] == true {
                "attestation overdue"
            } else {
                "attested"
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A person's latest drill in words.
fn last_drill_of(d: &Value) -> String {
    if d.is_null() {
        "none on record".into()
    } else {
        format!(
            "{} {} ({}, {})",
            field(&d["procedure"]),
            field(&d["at"]),
            field(&d["mode"]),
            field(&d["outcome"])
        )
    }
}

async fn what_if(cli: &Cli, a: &WhatIfArgs) -> Result<()> {
    let down = a.down.join(",");
    let r = connect(cli)
        .await?
        .get(&format!("/api/whatif?down={}", seg(&down)))
        .await?;
    let all = r["procedures"].as_array().cloned().unwrap_or_default();
    if cli.output.is_json() {
        output::json(&r);
    } else {
        println!("with {} down:", a.down.join(", "));
        for w in &all {
            let list = |v: &Value| {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(field)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if w["can_open"].as_bool() == Some(true) {
                println!(
                    "{}: can open — custodians {}; channels {}",
                    field(&w["procedure"]),
                    list(&w["custodians"]),
                    if w["channels"].as_array().is_some_and(|c| !c.is_empty()) {
                        list(&w["channels"])
                    } else {
                        "none".into()
                    }
                );
            } else {
                println!("{}: CANNOT OPEN", field(&w["procedure"]));
                for b in w["blockers"].as_array().into_iter().flatten() {
                    println!("  - {}", field(b));
                }
            }
            for x in w["warnings"].as_array().into_iter().flatten() {
                println!("  ! {}", field(x));
            }
            println!("  latest drill: none on record");
        }
    }
    let blocked = all.iter().filter(|w| w["can_open"] != true).count();
    if blocked > 0 {
        return Err(anyhow!(Exit {
            code: exit::NOT_READY,
            message: format!(
                "{blocked} of {} procedure(s) could not be opened",
                all.len()
            ),
        }));
    }
    Ok(())
}
