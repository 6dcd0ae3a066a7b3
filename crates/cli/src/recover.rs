//! Offline recovery: `recovery-kit export` (from the server), `recover share` and `recover
//! open` (no server, no network: the kit and the CLI only), and `audit import` of the spool
//! `recover open` wrote, once the server is back.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use breakglass_custody::{CustodianKey, Identity};
use breakglass_domain::{TargetKind, Timestamp, parse_duration};
use breakglass_engine::Clock as _;
use breakglass_engine::ports::{GrantRequest, Target as _};
use breakglass_recovery::{Kit, SpoolWriter, make_share_file, open_shares, verify_spool};
use clap::Subcommand;
use serde_json::json;

use crate::commands::{connect, read_identity, seg};
use crate::output;
use crate::{Cli, Exit, exit};

/// `recovery-kit` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum RecoveryKitCmd {
    /// Write the procedure's recovery kit for its current seal (admin): one signed file with
    /// everything an offline recovery needs but the custodians' private keys.
    Export {
        /// Procedure id.
        procedure: String,
        /// Where to write it (default: PROCEDURE.kit).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `recover` subcommands: offline, without a server.
#[derive(Subcommand, Debug)]
pub(crate) enum RecoverCmd {
    /// Custodian: open your share from the kit with --identity, check it against the kit's
    /// commitment, and encrypt it to the person recovering (exit 8 when the kit does not verify).
    Share {
        /// The recovery kit.
        #[arg(long)]
        kit: PathBuf,
        /// The recoverer's public key (`age1…` or `ssh-ed25519 …`), or a file holding it.
        #[arg(long)]
        to: String,
        /// Where to write the share file (default: share-CUSTODIAN-KITID.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The audit public key (`ed25519:…`, kept apart from the kit) the kit must be signed by.
        #[arg(long)]
        pubkey: Option<String>,
    },
    /// Recoverer: check a quorum of share files against the kit, open the secret (or, for an
    /// SSH CA, issue a short certificate) and write the signed audit spool first.
    Open {
        /// The recovery kit.
        #[arg(long)]
        kit: PathBuf,
        /// Share files from `recover share`.
        #[arg(required = true)]
        shares: Vec<PathBuf>,
        /// Why (recorded in the spool).
        #[arg(long)]
        reason: String,
        /// Ticket (recorded in the spool).
        #[arg(long)]
        ticket: String,
        /// Your name, as the spool records it (default: the signing key's fingerprint).
        #[arg(long)]
        recoverer: Option<String>,
        /// The ssh-ed25519 private key that signs the spool (default: --identity, when it is one).
        #[arg(long)]
        signing_key: Option<PathBuf>,
        /// Where to write the spool (default: recovery-PROCEDURE-TIME.spool); never overwritten.
        #[arg(long)]
        spool: Option<PathBuf>,
        /// Write the secret (or the certificate) to this file, mode 0600; never overwritten.
        #[arg(long, conflicts_with = "stdout")]
        out: Option<PathBuf>,
        /// Print the secret on standard output instead of writing a file.
        #[arg(long)]
        stdout: bool,
        /// SSH CA procedures: the ssh-ed25519 public key (or a file holding it) to certify.
        #[arg(long)]
        cert_for: Option<String>,
        /// SSH CA procedures: how long the certificate is valid (at most the procedure's max_grant).
        #[arg(long, default_value = "1h")]
        duration: String,
        /// The audit public key (`ed25519:…`) the kit must be signed by.
        #[arg(long)]
        pubkey: Option<String>,
    },
}

fn broken(message: String) -> anyhow::Error {
    anyhow!(Exit {
        code: exit::AUDIT_BROKEN,
        message
    })
}

fn invalid(message: String) -> anyhow::Error {
    anyhow!(Exit {
        code: exit::INVALID,
        message
    })
}

fn pinned(pubkey: Option<&str>) -> Result<Option<breakglass_audit::AuditPublicKey>> {
    pubkey
        .map(|k| k.parse::<breakglass_audit::AuditPublicKey>())
        .transpose()
        .map_err(|e| invalid(format!("--pubkey: {e}")))
}

fn load_kit(path: &Path, pubkey: Option<&str>) -> Result<Kit> {
    let pinned = pinned(pubkey)?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        broken(format!(
            "{}: not UTF-8 at byte {}: the kit was edited",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    Kit::parse(&text, pinned.as_ref()).map_err(|e| broken(format!("{}: {e}", path.display())))
}

/// A public key given inline or as a file.
fn public_key(arg: &str, what: &str) -> Result<CustodianKey> {
    let text = if arg.starts_with("age1") || arg.starts_with("ssh-") {
        arg.to_owned()
    } else {
        std::fs::read_to_string(arg).with_context(|| format!("reading {what} {arg}"))?
    };
    CustodianKey::parse(&text).map_err(|e| invalid(format!("{what}: {e}")))
}

fn now() -> Timestamp {
    breakglass_engine::SystemClock.now()
}

/// `recovery-kit export`.
pub(crate) async fn recovery_kit(cli: &Cli, cmd: &RecoveryKitCmd) -> Result<()> {
    let RecoveryKitCmd::Export { procedure, out } = cmd;
    let r = connect(cli)
        .await?
        .get(&format!("/api/procedures/{}/recovery-kit", seg(procedure)))
        .await?;
    let path = out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{procedure}.kit")));
    breakglass_server::write_private_file(&path, r["kit"].as_str().unwrap_or_default().as_bytes())?;
    if cli.output.is_json() {
        output::json(&json!({
            "procedure": r["procedure"], "seal_id": r["seal_id"], "kit_id": r["kit_id"],
            "file": path.display().to_string(),
        }));
    } else {
        println!(
            "recovery kit of {procedure} (seal {}) written to {}; kit id {}",
            output::field(&r["seal_id"]),
            path.display(),
            output::field(&r["kit_id"])
        );
    }
    Ok(())
}

/// `recover share` / `recover open`.
pub(crate) async fn recover(cli: &Cli, cmd: &RecoverCmd) -> Result<()> {
    let Some(identity_path) = &cli.identity else {
        return Err(anyhow!(Exit {
            code: exit::USAGE,
            message: "give your private key with --identity".into()
        }));
    };
    match cmd {
        RecoverCmd::Share {
            kit,
            to,
            out,
            pubkey,
        } => {
            let kit = load_kit(kit, pubkey.as_deref())?;
            let identity = read_identity(identity_path)?;
            let recipient = public_key(to, "--to")?;
            let text = make_share_file(&kit, &identity, &recipient).map_err(|e| match e {
                breakglass_recovery::RecoverError::NotACustodian { .. } => invalid(e.to_string()),
                other => broken(other.to_string()),
            })?;
            let custodian = kit
                .custodians
                .iter()
                .find(|c| c.key == identity.public())
                .map(|c| c.name.clone())
                .unwrap_or_default();
            let path = out.clone().unwrap_or_else(|| {
                PathBuf::from(format!("share-{custodian}-{}.json", &kit.kit_id[..12]))
            });
            breakglass_server::write_private_file(&path, text.as_bytes())?;
            if cli.output.is_json() {
                output::json(&json!({
                    "kit_id": kit.kit_id, "procedure": kit.procedure.id, "custodian": custodian,
                    "to": recipient.fingerprint(), "file": path.display().to_string(),
                }));
            } else {
                println!(
                    "share of {custodian} for {} (kit {}) written to {}, encrypted to {}",
                    kit.procedure.id,
                    &kit.kit_id[..16],
                    path.display(),
                    recipient.fingerprint()
                );
            }
            Ok(())
        }
        RecoverCmd::Open {
            kit,
            shares,
            reason,
            ticket,
            recoverer,
            signing_key,
            spool,
            out,
            stdout,
            cert_for,
            duration,
            pubkey,
        } => {
            open(
                cli,
                OpenArgs {
                    kit,
                    shares,
                    reason,
                    ticket,
                    recoverer: recoverer.as_deref(),
                    signing_key: signing_key.as_deref(),
                    spool: spool.as_deref(),
                    out: out.as_deref(),
                    stdout: *stdout,
                    cert_for: cert_for.as_deref(),
                    duration,
                    pubkey: pubkey.as_deref(),
                },
                identity_path,
            )
            .await
        }
    }
}

struct OpenArgs<'a> {
    kit: &'a Path,
    shares: &'a [PathBuf],
    reason: &'a str,
    ticket: &'a str,
    recoverer: Option<&'a str>,
    signing_key: Option<&'a Path>,
    spool: Option<&'a Path>,
    out: Option<&'a Path>,
    stdout: bool,
    cert_for: Option<&'a str>,
    duration: &'a str,
    pubkey: Option<&'a str>,
}

async fn open(cli: &Cli, a: OpenArgs<'_>, identity_path: &Path) -> Result<()> {
    if a.reason.trim().is_empty() || a.ticket.trim().is_empty() {
        return Err(invalid("--reason and --ticket must not be empty".into()));
    }
    let kit = load_kit(a.kit, a.pubkey)?;
    let identity = read_identity(identity_path)?;
    let signer: Identity = match a.signing_key {
        Some(p) => read_identity(p)?,
        None => read_identity(identity_path)?,
    };
    if signer.kind() != breakglass_custody::KeyKind::SshEd25519 {
        return Err(invalid(
            "the spool is signed with an ssh-ed25519 key and age keys cannot sign: give one with --signing-key"
                .into(),
        ));
    }
    let ssh = kit.procedure.target.kind == TargetKind::Ssh;
    let subject = match (ssh, a.cert_for) {
        (true, Some(k)) => Some(public_key(k, "--cert-for")?),
        (true, None) => {
            return Err(invalid(format!(
                "procedure {} is an SSH CA: give the public key to certify with --cert-for",
                kit.procedure.id
            )));
        }
        (false, Some(_)) => {
            return Err(invalid(format!(
                "--cert-for is for SSH CA procedures; {} is a {} procedure",
                kit.procedure.id,
                kit.procedure.target.kind.as_str()
            )));
        }
        (false, None) => None,
    };
    if a.out.is_none() && !a.stdout {
        return Err(invalid(
            "say where the result goes: --out FILE (mode 0600) or --stdout".into(),
        ));
    }
    if let Some(out) = a.out
        && out.exists()
    {
        return Err(invalid(format!(
            "{} exists; refusing to overwrite it",
            out.display()
        )));
    }
    let validity = parse_duration(a.duration).map_err(|e| invalid(format!("--duration: {e}")))?;
    if ssh && validity > kit.procedure.max_grant {
        return Err(invalid(format!(
            "--duration {} is longer than the procedure's max_grant",
            a.duration
        )));
    }

    let mut files = Vec::with_capacity(a.shares.len());
    for f in a.shares {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        files.push((f.display().to_string(), text));
    }
    let (secret, contributions) = open_shares(&kit, &files, &identity).map_err(|e| match e {
        breakglass_recovery::RecoverError::BelowQuorum { .. } => anyhow!(Exit {
            code: exit::REFUSED,
            message: e.to_string()
        }),
        other => broken(other.to_string()),
    })?;

    let started = now();
    let recoverer_name = a
        .recoverer
        .map(str::to_owned)
        .unwrap_or_else(|| signer.public().fingerprint());
    let offline_id = format!("offline-{}", &kit.kit_id[..12]);
    // The certificate (SSH CA) is issued with the target adapter's own code, offline: the CA
    // key is used in memory and never written.
    let (result, grant_line) = match &subject {
        Some(subject) => {
            let deadline =
                Timestamp(started.0 + i64::try_from(validity.as_millis()).unwrap_or(i64::MAX / 2));
            let request = GrantRequest {
                procedure: &kit.procedure,
                break_id: &offline_id,
                requester: &recoverer_name,
                requester_key: subject,
                now: started,
                deadline,
            };
            let issued = breakglass_targets::SshCaTarget::new()
                .grant(&request, &secret)
                .await
                .map_err(|e| anyhow!("issuing the certificate: {e}"))?;
            (
                issued.access,
                json!({"kind": "ssh", "access": "ssh_certificate", "deadline": deadline.to_string(), "grant": issued.handle}),
            )
        }
        None => (
            secret,
            json!({"kind": kit.procedure.target.kind.as_str(), "access": "secret"}),
        ),
    };

    // The spool is written (and synced) before the secret leaves this process.
    let mut spool = SpoolWriter::open(
        &signer,
        &kit.kit_id,
        &kit.procedure.id,
        &kit.seal_id,
        &recoverer_name,
        &identity.public(),
        a.reason,
        a.ticket,
        started.0,
    )
    .map_err(|e| invalid(e.to_string()))?;
    for c in &contributions {
        spool
            .push(
                "share.accepted",
                json!({"custodian": c.custodian, "index": c.index, "key": c.key_fingerprint}),
                now().0,
            )
            .map_err(|e| anyhow!("{e}"))?;
    }
    let mut granted = grant_line;
    granted["approvers"] = json!(
        contributions
            .iter()
            .map(|c| c.custodian.clone())
            .collect::<Vec<_>>()
    );
    spool
        .push("break.granted", granted, now().0)
        .map_err(|e| anyhow!("{e}"))?;
    if subject.is_none() {
        let to = match a.out {
            Some(p) => format!("file {}", p.display()),
            None => "standard output".into(),
        };
        spool
            .push("grant.revealed", json!({"to": to}), now().0)
            .map_err(|e| anyhow!("{e}"))?;
    }
    let text = spool.close("opened", now().0).map_err(|e| anyhow!("{e}"))?;
    let spool_path = a.spool.map(Path::to_path_buf).unwrap_or_else(|| {
        PathBuf::from(format!(
            "recovery-{}-{}.spool",
            kit.procedure.id,
            started.0 / 1000
        ))
    });
    {
        let mut f = breakglass_server::create_private_file(&spool_path)
            .with_context(|| format!("creating the spool {}", spool_path.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing the spool {}", spool_path.display()))?;
    }

    match a.out {
        Some(path) => {
            let mut f = breakglass_server::create_private_file(path)?;
            f.write_all(result.expose_secret())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(result.expose_secret())?;
            out.flush()?;
        }
    }
    drop(result);
    let names: Vec<&str> = contributions.iter().map(|c| c.custodian.as_str()).collect();
    let what = if subject.is_some() {
        "certificate issued"
    } else {
        "secret opened"
    };
    if cli.output.is_json() && !a.stdout {
        output::json(&json!({
            "procedure": kit.procedure.id, "kit_id": kit.kit_id, "seal_id": kit.seal_id,
            "custodians": names, "spool": spool_path.display().to_string(),
            "out": a.out.map(|p| p.display().to_string()), "result": what,
        }));
    } else {
        eprintln!(
            "{what} for {} with the shares of {}; audit spool written to {} — import it with `breakglass audit import` when the server is back",
            kit.procedure.id,
            names.join(", "),
            spool_path.display()
        );
    }
    Ok(())
}

/// `audit import SPOOL`: verified here first (exit 8 when it does not verify), then sent.
pub(crate) async fn import(cli: &Cli, file: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let spool = verify_spool(&text).map_err(|e| broken(format!("{}: {e}", file.display())))?;
    let r = connect(cli)
        .await?
        .post("/api/audit/import", &json!({"spool": text}))
        .await?;
    if cli.output.is_json() {
        output::json(&r);
    } else {
        println!(
            "imported {} offline entries of {} (kit {}, signed by {}{}); {} is now tainted",
            spool.entries.len(),
            output::field(&r["procedure"]),
            &spool.kit_id[..16],
            output::field(&r["signer_key"]),
            r["signer_actor"]
                .as_str()
                .map(|a| format!(", actor {a}"))
                .unwrap_or_else(|| ", not an enrolled actor".into()),
            output::field(&r["procedure"]),
        );
    }
    Ok(())
}
