//! Readiness: would this procedure's emergency path work right now? Each procedure gets a
//! verdict — **ready**, **degraded** or **broken** — with every reason.
//!
//! Two layers, both pure rules: [`lint`] judges the procedure file alone (what `breakglass
//! check FILES` reports without a server), and [`assess`] adds the live posture the engine
//! gathers (seal, taint, credential age, drills, channels, custodian attestations, target
//! health, discovery drift, audit sinks).

use std::fmt;
use std::time::Duration;

use crate::procedure::{
    Limits, Parsed, Procedure, ProcedureError, SecondFactor, TargetKind, parse_procedures,
};

/// A verdict, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// The path works as declared.
    Ready,
    /// The path works, but something lowers the confidence or the margin.
    Degraded,
    /// The path would fail today.
    Broken,
}

impl Verdict {
    /// `ready`, `degraded` or `broken`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ready => "ready",
            Verdict::Degraded => "degraded",
            Verdict::Broken => "broken",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason for a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How bad it is (never `Ready`).
    pub verdict: Verdict,
    /// Stable code, e.g. `quorum.no_spare` (the SARIF rule id).
    pub code: &'static str,
    /// What is wrong and what to do, in words.
    pub message: String,
    /// The field of the procedure file the finding is about (a dotted path, as
    /// [`Positions::of`](crate::procedure::Positions::of) takes), when the rule points at one.
    pub field: Option<&'static str>,
}

impl Finding {
    fn at(mut self, field: &'static str) -> Finding {
        self.field = Some(field);
        self
    }
}

/// A procedure's verdict with its reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Procedure id.
    pub procedure: String,
    /// The worst of the findings (`Ready` when there are none).
    pub verdict: Verdict,
    /// Every reason, worst first.
    pub findings: Vec<Finding>,
    /// How many custodians have a second factor (with the live posture only: a file alone
    /// does not say who enrolled TOTP).
    pub second_factor: Option<SecondFactorCount>,
}

/// How many of a procedure's custodians have a second factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondFactorCount {
    /// Custodians of the procedure.
    pub custodians: usize,
    /// With an active TOTP enrolment.
    pub totp: usize,
    /// With a hardware-backed key (an age plugin recipient).
    pub hardware: usize,
    /// With either (each custodian counted once).
    pub with_second_factor: usize,
    /// The second factor the procedure requires, if any.
    pub required: Option<SecondFactor>,
    /// Custodians who can approve under that requirement (all of them when none is required).
    pub can_approve: usize,
    /// Custodians who cannot, by name (they need `breakglass totp enroll`).
    pub missing: Vec<String>,
}

impl SecondFactorCount {
    /// Counts from the procedure and the custodians with an active TOTP enrolment.
    pub fn of(p: &Procedure, totp_active: &[String]) -> SecondFactorCount {
        let has_totp = |name: &str| totp_active.iter().any(|n| n == name);
        let mut count = SecondFactorCount {
            custodians: p.custodians.len(),
            totp: 0,
            hardware: 0,
            with_second_factor: 0,
            required: p.second_factor,
            can_approve: 0,
            missing: Vec::new(),
        };
        for c in &p.custodians {
            let totp = has_totp(&c.name);
            let hardware = c.key.is_hardware();
            count.totp += usize::from(totp);
            count.hardware += usize::from(hardware);
            count.with_second_factor += usize::from(totp || hardware);
            let can = match p.second_factor {
                None => true,
                Some(rule) => totp || !rule.needs_totp(&c.key),
            };
            if can {
                count.can_approve += 1;
            } else {
                count.missing.push(c.name.clone());
            }
        }
        count
    }
}

impl Readiness {
    fn from_findings(procedure: &str, mut findings: Vec<Finding>) -> Readiness {
        findings.sort_by(|a, b| b.verdict.cmp(&a.verdict).then(a.code.cmp(b.code)));
        Readiness {
            procedure: procedure.to_owned(),
            verdict: findings
                .iter()
                .map(|f| f.verdict)
                .max()
                .unwrap_or(Verdict::Ready),
            findings,
            second_factor: None,
        }
    }
}

/// A readiness rule: its stable code, the verdict its findings carry, and words for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable code, e.g. `quorum.no_spare` (the SARIF rule id).
    pub code: &'static str,
    /// The verdict every finding of this rule carries.
    pub verdict: Verdict,
    /// What the rule finds, in one line.
    pub summary: &'static str,
    /// What to do about it.
    pub help: &'static str,
}

/// Every rule (SARIF rules, documentation).
pub const RULES: &[Rule] = &[
    Rule {
        code: "custodians.too_few",
        verdict: Verdict::Degraded,
        summary: "fewer custodians than the configured minimum",
        help: "Add custodians until the procedure has at least the minimum (`--min-custodians`, 3 by default), then re-seal so each holds a share.",
    },
    Rule {
        code: "custodians.too_many",
        verdict: Verdict::Degraded,
        summary: "more custodians than the configured maximum",
        help: "Remove custodians down to the maximum (`--max-custodians`, 12 by default), then re-seal; many shares are hard to keep track of.",
    },
    Rule {
        code: "quorum.no_spare",
        verdict: Verdict::Degraded,
        summary: "the quorum needs every custodian: losing one makes the procedure unusable",
        help: "Add a custodian or lower the quorum so that one unreachable custodian does not block a break, then re-seal.",
    },
    Rule {
        code: "channels.none",
        verdict: Verdict::Degraded,
        summary: "no alert channel is told about a break",
        help: "List at least one configured channel under `alert_channels` so every break is seen.",
    },
    Rule {
        code: "drill.unscheduled",
        verdict: Verdict::Degraded,
        summary: "no drill schedule",
        help: "Add `drill: {every: 90d}` (or shorter) and run `breakglass drill run` on that schedule.",
    },
    Rule {
        code: "drill.interval",
        verdict: Verdict::Degraded,
        summary: "drills further apart than the configured maximum",
        help: "Shorten `drill.every` to the policy's maximum interval (90 days by default) or less.",
    },
    Rule {
        code: "rotation.unset",
        verdict: Verdict::Degraded,
        summary: "no rotation policy for the sealed credential",
        help: "Add `rotation: {max_credential_age: 90d}` so a static secret is rotated and re-sealed in time.",
    },
    Rule {
        code: "dependency.on_outage",
        verdict: Verdict::Broken,
        summary: "the procedure depends on the outage it is meant for",
        help: "Remove the dependency, or give the procedure a path that works without it: a procedure for an outage cannot rely on the failed system.",
    },
    Rule {
        code: "seal.missing",
        verdict: Verdict::Broken,
        summary: "the credential is not sealed",
        help: "Seal the credential with `breakglass seal PROCEDURE`.",
    },
    Rule {
        code: "seal.tainted",
        verdict: Verdict::Degraded,
        summary: "the seal was used or revealed and is not re-sealed",
        help: "Rotate the credential if it was revealed, then re-seal it with `breakglass seal PROCEDURE`.",
    },
    Rule {
        code: "recovery_kit.missing",
        verdict: Verdict::Degraded,
        summary: "no recovery kit was exported for the current seal",
        help: "Check that the server can write to `--recovery-kit-dir`; `breakglass recovery-kit export PROCEDURE` writes one by hand.",
    },
    Rule {
        code: "recovery_kit.stale",
        verdict: Verdict::Degraded,
        summary: "the recovery kit holds an older seal than the current one",
        help: "Check that the server can write to `--recovery-kit-dir`; the kit is rewritten after every seal.",
    },
    Rule {
        code: "credential.old",
        verdict: Verdict::Degraded,
        summary: "the sealed credential is older than the rotation policy allows",
        help: "Rotate the credential on the target and re-seal it.",
    },
    Rule {
        code: "drill.never",
        verdict: Verdict::Degraded,
        summary: "never drilled",
        help: "Run a drill with `breakglass drill run` to prove the path works end to end.",
    },
    Rule {
        code: "drill.failed",
        verdict: Verdict::Broken,
        summary: "the latest drill failed",
        help: "Read the failed drill's report, fix the cause, and drill again.",
    },
    Rule {
        code: "drill.overdue",
        verdict: Verdict::Degraded,
        summary: "the latest drill is older than the schedule allows",
        help: "Run a drill now with `breakglass drill run`.",
    },
    Rule {
        code: "drill.no_credential",
        verdict: Verdict::Degraded,
        summary: "automated drills are scheduled but no drill credential is sealed",
        help: "Seal the drill credential with `breakglass seal PROCEDURE --drill` (see docs/drills.md).",
    },
    Rule {
        code: "drill.untested_change",
        verdict: Verdict::Degraded,
        summary: "the procedure changed since its latest drill",
        help: "Drill again so the changed procedure is proven to work.",
    },
    Rule {
        code: "channel.unknown",
        verdict: Verdict::Broken,
        summary: "an alert channel the procedure names is not configured on the server",
        help: "Configure the channel in the server's channels file, or fix its name in `alert_channels`.",
    },
    Rule {
        code: "channel.failing",
        verdict: Verdict::Degraded,
        summary: "an alert channel failed its latest test",
        help: "Fix the channel's settings, then run `breakglass channel test NAME`.",
    },
    Rule {
        code: "channel.untested",
        verdict: Verdict::Degraded,
        summary: "an alert channel was never tested",
        help: "Run `breakglass channel test NAME`.",
    },
    Rule {
        code: "custodians.lost_quorum",
        verdict: Verdict::Broken,
        summary: "too few custodians hold their key for the quorum",
        help: "Re-seal the credential to custodians who hold their keys.",
    },
    Rule {
        code: "custodians.lost_spare",
        verdict: Verdict::Degraded,
        summary: "a lost custodian key leaves no spare above the quorum",
        help: "Re-seal with a replacement custodian so one more loss does not block a break.",
    },
    Rule {
        code: "attestation.quorum_unproven",
        verdict: Verdict::Degraded,
        summary: "fewer custodians than the quorum proved recently that they hold their key",
        help: "Ask custodians to run `breakglass custodian attest`.",
    },
    Rule {
        code: "attestation.no_spare",
        verdict: Verdict::Degraded,
        summary: "the recent attestations cover the quorum but no spare",
        help: "Ask the remaining custodians to run `breakglass custodian attest`.",
    },
    Rule {
        code: "second_factor.below_quorum",
        verdict: Verdict::Broken,
        summary: "the procedure requires a second factor and fewer custodians than the quorum can give it",
        help: "Custodians without a hardware key run `breakglass totp enroll` and `breakglass totp confirm CODE`.",
    },
    Rule {
        code: "second_factor.no_spare",
        verdict: Verdict::Degraded,
        summary: "the custodians who can give the required second factor cover the quorum but no spare",
        help: "Ask the remaining custodians to run `breakglass totp enroll`.",
    },
    Rule {
        code: "target.unchecked",
        verdict: Verdict::Degraded,
        summary: "the target was never health-checked",
        help: "Run `breakglass target check PROCEDURE`.",
    },
    Rule {
        code: "target.unhealthy",
        verdict: Verdict::Broken,
        summary: "the target's latest health check failed",
        help: "Read `breakglass target show PROCEDURE`, fix the target or its settings, and check again.",
    },
    Rule {
        code: "target.check_stale",
        verdict: Verdict::Degraded,
        summary: "the target's latest health check is old",
        help: "Run `breakglass target check PROCEDURE`.",
    },
    Rule {
        code: "target.drift",
        verdict: Verdict::Degraded,
        summary: "privileged accounts not in the inventory exist on the target",
        help: "Review the unknown accounts from the latest discovery: remove them or add them to the inventory.",
    },
    Rule {
        code: "custody.no_contact",
        verdict: Verdict::Degraded,
        summary: "a holder of an externally kept credential has no contact",
        help: "Give every holder under `custody.holders` a `contact` (phone, email, chat handle) so they can be reached at 2 a.m.",
    },
    Rule {
        code: "custody.no_spare",
        verdict: Verdict::Degraded,
        summary: "every holder must be present: one unreachable holder blocks the safe",
        help: "Add a holder or lower `custody.present` so that one unreachable holder does not block a break.",
    },
    Rule {
        code: "custody.attestation_unscheduled",
        verdict: Verdict::Degraded,
        summary: "no attestation schedule for the externally kept credential",
        help: "Add `custody.attest_every: 30d` (or shorter) so a holder confirms the safe's contents on schedule.",
    },
    Rule {
        code: "custody.never_attested",
        verdict: Verdict::Degraded,
        summary: "no holder ever confirmed that the credential is where the file says",
        help: "A holder checks the safe and runs `breakglass custody attest PROCEDURE --note \"…\"`.",
    },
    Rule {
        code: "custody.attestation_overdue",
        verdict: Verdict::Degraded,
        summary: "the latest confirmation of the safe's contents is older than the schedule",
        help: "A holder checks the safe and runs `breakglass custody attest PROCEDURE --note \"…\"`.",
    },
    Rule {
        code: "custody.tainted",
        verdict: Verdict::Degraded,
        summary: "the externally kept credential was used and its rotation is not recorded",
        help: "Rotate the credential (new password, re-enrolled MFA token), put it back, and run `breakglass custody rotated PROCEDURE --note \"…\"`.",
    },
    Rule {
        code: "custody.rotation_unrecorded",
        verdict: Verdict::Degraded,
        summary: "the rotation policy cannot be checked: no rotation of the externally kept credential is recorded",
        help: "Record the latest rotation with `breakglass custody rotated PROCEDURE --note \"…\"`.",
    },
    Rule {
        code: "audit.sink_lagging",
        verdict: Verdict::Degraded,
        summary: "an audit sink is behind",
        help: "Check the sink's reachability; the outbox keeps the entries until it catches up.",
    },
];

/// The rule with this code.
pub fn rule(code: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.code == code)
}

/// Limits the lint applies, from the server's or the CLI's configuration.
#[derive(Debug, Clone, Copy)]
pub struct LintPolicy {
    /// Fewest custodians a procedure should have.
    pub min_custodians: usize,
    /// Most custodians a procedure should have.
    pub max_custodians: usize,
    /// Longest allowed drill interval.
    pub max_drill_interval: Duration,
}

impl Default for LintPolicy {
    fn default() -> Self {
        LintPolicy {
            min_custodians: 3,
            max_custodians: 12,
            max_drill_interval: Duration::from_secs(90 * 86_400),
        }
    }
}

fn finding(verdict: Verdict, code: &'static str, message: String) -> Finding {
    debug_assert_eq!(
        rule(code).map(|r| r.verdict),
        Some(verdict),
        "{code} is not in RULES with this verdict"
    );
    Finding {
        verdict,
        code,
        message,
        field: None,
    }
}

/// Judges the procedure file alone.
pub fn lint(p: &Procedure, policy: &LintPolicy) -> Readiness {
    Readiness::from_findings(&p.id, lint_findings(p, policy))
}

/// One procedure of a file with its lint verdict.
#[derive(Debug, Clone)]
pub struct Linted {
    /// The parsed procedure, with the positions of its fields.
    pub parsed: Parsed,
    /// Its verdict and findings.
    pub readiness: Readiness,
}

impl Linted {
    /// Where a finding points in the file (1-based line and column): its field, or the
    /// procedure's `id` when the rule names no field or the field is absent.
    pub fn position(&self, finding: &Finding) -> Option<(u64, u64)> {
        let positions = &self.parsed.positions;
        finding
            .field
            .and_then(|f| positions.of(f))
            .or_else(|| positions.of("id"))
    }
}

/// Parses one procedure file (its name as given, and its text) and lints every procedure in
/// it: what `breakglass check FILES` does for each file. An invalid file returns every problem.
pub fn lint_file(
    file: &str,
    text: &str,
    limits: &Limits,
    policy: &LintPolicy,
) -> Result<Vec<Linted>, Vec<ProcedureError>> {
    Ok(parse_procedures(file, text, limits)?
        .into_iter()
        .map(|parsed| Linted {
            readiness: lint(&parsed.procedure, policy),
            parsed,
        })
        .collect())
}

/// `lint_file` over many files, spread over the machine's cores (parsing dominates and each
/// file is independent); the results are in the order of `files`.
pub fn lint_files(
    files: &[(String, String)],
    limits: &Limits,
    policy: &LintPolicy,
) -> Vec<Result<Vec<Linted>, Vec<ProcedureError>>> {
    let threads = std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
        .min(files.len().max(1));
    if threads <= 1 || files.len() < 64 {
        return files
            .iter()
            .map(|(name, text)| lint_file(name, text, limits, policy))
            .collect();
    }
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(name, text)| lint_file(name, text, limits, policy))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(results) => results,
                // A panic in a parser is a bug; surface it where it happened.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

fn lint_findings(p: &Procedure, policy: &LintPolicy) -> Vec<Finding> {
    use Verdict::{Broken, Degraded};
    let mut out = Vec::new();
    if let Some(custody) = &p.external {
        custody_lint(custody, &mut out);
    }
    let n = p.custodians.len();
    if p.external.is_some() {
        // Holders replace custodians; their rules are the custody ones.
    } else if n < policy.min_custodians {
        out.push(
            finding(
                Degraded,
                "custodians.too_few",
                format!(
                    "{n} custodians; the policy asks for at least {}",
                    policy.min_custodians
                ),
            )
            .at("custodians"),
        );
    }
    if n > policy.max_custodians {
        out.push(
            finding(
                Degraded,
                "custodians.too_many",
                format!(
                    "{n} custodians; the policy allows at most {}",
                    policy.max_custodians
                ),
            )
            .at("custodians"),
        );
    }
    if p.external.is_none() && n == usize::from(p.quorum) {
        out.push(finding(
            Degraded,
            "quorum.no_spare",
            format!(
                "{}-of-{n}: if one custodian is unreachable nobody can open it; add a custodian",
                p.quorum
            ),
        )
        .at("quorum"));
    }
    if p.alert_channels.is_empty() {
        out.push(finding(
            Degraded,
            "channels.none",
            "no alert_channels: a break would go unnoticed".into(),
        ));
    }
    match p.drill_every {
        None => out.push(finding(
            Degraded,
            "drill.unscheduled",
            "no drill schedule: nothing proves the path works".into(),
        )),
        Some(every) if every > policy.max_drill_interval => out.push(
            finding(
                Degraded,
                "drill.interval",
                format!(
                    "drilled every {}; the policy asks for at least every {}",
                    crate::time::format_duration(every),
                    crate::time::format_duration(policy.max_drill_interval)
                ),
            )
            .at("drill.every"),
        ),
        Some(_) => {}
    }
    if p.max_credential_age.is_none()
        && matches!(p.target.kind, TargetKind::Secret | TargetKind::External)
    {
        out.push(finding(
            Degraded,
            "rotation.unset",
            "no rotation.max_credential_age for a static secret".into(),
        ));
    }
    let on_outage: Vec<&str> = p
        .dependencies
        .iter()
        .filter(|d| p.protects_against.iter().any(|o| o.eq_ignore_ascii_case(d)))
        .map(String::as_str)
        .collect();
    if !on_outage.is_empty() {
        out.push(finding(
            Broken,
            "dependency.on_outage",
            format!(
                "depends on {} — the outage this procedure is for",
                on_outage.join(", ")
            ),
        ));
    }
    out
}

fn custody_lint(c: &crate::external::ExternalCustody, out: &mut Vec<Finding>) {
    use Verdict::Degraded;
    let silent: Vec<&str> = c
        .holders
        .iter()
        .filter(|h| h.contact.trim().is_empty())
        .map(|h| h.name.as_str())
        .collect();
    if !silent.is_empty() {
        out.push(
            finding(
                Degraded,
                "custody.no_contact",
                format!(
                    "no contact for holder(s) {}: nobody can reach them at 2 a.m.",
                    silent.join(", ")
                ),
            )
            .at("custody.holders"),
        );
    }
    if c.holders.len() == usize::from(c.present) {
        out.push(
            finding(
                Degraded,
                "custody.no_spare",
                format!(
                    "{} of {} holders must be present: if one is unreachable nobody can open {}; add a holder",
                    c.present,
                    c.holders.len(),
                    c.location
                ),
            )
            .at("custody.present"),
        );
    }
    if c.attest_every.is_none() {
        out.push(
            finding(
                Degraded,
                "custody.attestation_unscheduled",
                "no custody.attest_every: nothing says the credential is still in its place".into(),
            )
            .at("custody"),
        );
    }
}

fn drill_findings(p: &Procedure, posture: &Posture, out: &mut Vec<Finding>) {
    use Verdict::{Broken, Degraded};
    match (&posture.last_drill, p.drill_every) {
        (None, Some(_)) => out.push(finding(
            Degraded,
            "drill.never",
            "never drilled: run `breakglass drill run`".into(),
        )),
        (Some((ago, passed, hash)), every) => {
            if !passed {
                out.push(finding(
                    Broken,
                    "drill.failed",
                    format!(
                        "the latest drill, {} ago, failed",
                        crate::time::format_duration(*ago)
                    ),
                ));
            }
            if let Some(every) = every
                && *ago > every
            {
                out.push(finding(
                    Degraded,
                    "drill.overdue",
                    format!(
                        "latest drill {} ago; the schedule is every {}",
                        crate::time::format_duration(*ago),
                        crate::time::format_duration(every)
                    ),
                ));
            }
            if *hash != posture.content_hash {
                out.push(finding(
                    Degraded,
                    "drill.untested_change",
                    "the procedure changed since its latest drill".into(),
                ));
            }
        }
        (None, None) => {}
    }
}

fn channel_findings(posture: &Posture, out: &mut Vec<Finding>) {
    use Verdict::{Broken, Degraded};
    for (name, configured, tested) in &posture.channels {
        if !configured {
            out.push(finding(
                Broken,
                "channel.unknown",
                format!("channel `{name}` is not configured on the server: its alerts go nowhere"),
            ));
        } else {
            match tested {
                Some(true) => {}
                Some(false) => out.push(finding(
                    Degraded,
                    "channel.failing",
                    format!("channel `{name}` failed its latest test"),
                )),
                None => out.push(finding(
                    Degraded,
                    "channel.untested",
                    format!(
                        "channel `{name}` was never tested: run `breakglass channel test {name}`"
                    ),
                )),
            }
        }
    }
    for sink in &posture.sinks_lagging {
        out.push(finding(
            Degraded,
            "audit.sink_lagging",
            format!("audit sink `{sink}` is behind"),
        ));
    }
}

/// The live verdict of an external-custody procedure: the file's rules, drills, channels and
/// sinks as for any procedure, then the custody itself — attestations of the safe's contents
/// on schedule, the taint of a use until a holder records the rotation, the credential's age
/// from the latest recorded rotation. No seal, key or target rule applies: breakglass holds
/// nothing.
fn assess_external(
    p: &Procedure,
    custody: &crate::external::ExternalCustody,
    policy: &LintPolicy,
    posture: &Posture,
) -> Readiness {
    use Verdict::Degraded;
    let mut out = lint_findings(p, policy);
    if let Some(t) = &posture.taint {
        out.push(finding(Degraded, "custody.tainted", t.clone()));
    }
    let schedule = custody.attest_every.unwrap_or(posture.attestation_max_age);
    match posture.custody_attested {
        None => out.push(
            finding(
                Degraded,
                "custody.never_attested",
                format!(
                    "no holder ever confirmed the credential is in {}: `breakglass custody attest {}`",
                    custody.location, p.id
                ),
            )
            .at("custody"),
        ),
        Some(ago) if ago > schedule => out.push(
            finding(
                Degraded,
                "custody.attestation_overdue",
                format!(
                    "a holder last confirmed {} {} ago; the schedule is every {}: `breakglass custody attest {}`",
                    custody.location,
                    crate::time::format_duration(ago),
                    crate::time::format_duration(schedule),
                    p.id
                ),
            )
            .at("custody.attest_every"),
        ),
        Some(_) => {}
    }
    if let Some(max) = p.max_credential_age {
        match posture.custody_rotated {
            Some(age) if age > max => out.push(
                finding(
                    Degraded,
                    "credential.old",
                    format!(
                        "rotated {} ago; the policy allows {}",
                        crate::time::format_duration(age),
                        crate::time::format_duration(max)
                    ),
                )
                .at("rotation.max_credential_age"),
            ),
            Some(_) => {}
            None => out.push(
                finding(
                    Degraded,
                    "custody.rotation_unrecorded",
                    format!(
                        "no rotation recorded, so its age against the {} policy is unknown: `breakglass custody rotated {}`",
                        crate::time::format_duration(max),
                        p.id
                    ),
                )
                .at("rotation.max_credential_age"),
            ),
        }
    }
    drill_findings(p, posture, &mut out);
    channel_findings(posture, &mut out);
    Readiness::from_findings(&p.id, out)
}

/// A custodian's key state, as attestations and declarations left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// Proved they hold the key this long ago.
    Attested(Duration),
    /// Declared lost (or failed an attestation).
    Lost,
    /// Never attested.
    Unknown,
}

/// What the engine knows about a procedure right now.
#[derive(Debug, Clone)]
pub struct Posture {
    /// A seal exists.
    pub sealed: bool,
    /// Why it is tainted, if it is.
    pub taint: Option<String>,
    /// Age of the sealed credential.
    pub credential_age: Option<Duration>,
    /// The latest drill: (how long ago, passed, the procedure's content hash then).
    pub last_drill: Option<(Duration, bool, String)>,
    /// The procedure's current content hash.
    pub content_hash: String,
    /// Each alert channel the procedure names: configured on the server, and its latest test
    /// (`None`: never tested).
    pub channels: Vec<(String, bool, Option<bool>)>,
    /// Each custodian's key state.
    pub custodian_keys: Vec<(String, KeyState)>,
    /// Attestations older than this do not count.
    pub attestation_max_age: Duration,
    /// The latest target health check: (how long ago, passed). `None`: never.
    pub target_check: Option<(Duration, bool)>,
    /// Privileged accounts not in the inventory at the latest discovery.
    pub discovery_unknown: Option<usize>,
    /// Audit sinks currently behind.
    pub sinks_lagging: Vec<String>,
    /// A drill credential is sealed (automated drills can run).
    pub drill_credential: bool,
    /// The automatic recovery kit, when the server exports them (`serve --recovery-kit-dir`):
    /// `None` when it does not.
    pub recovery_kit: Option<KitState>,
    /// Custodians (of any procedure) with an active TOTP enrolment.
    pub totp_active: Vec<String>,
    /// External custody: how long ago a holder last confirmed the safe's contents (`None`:
    /// never).
    pub custody_attested: Option<Duration>,
    /// External custody: how long ago the credential's latest rotation was recorded.
    pub custody_rotated: Option<Duration>,
}

/// The automatic recovery kit of a sealed procedure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KitState {
    /// Exported for the current seal, this long ago.
    Current(Duration),
    /// The latest kit holds an older seal (exported this long ago).
    Stale(Duration),
    /// Never exported.
    Missing,
}

/// A health check older than this is stale.
pub const TARGET_CHECK_MAX_AGE: Duration = Duration::from_secs(86_400);

/// Judges the file and the live posture together.
pub fn assess(p: &Procedure, policy: &LintPolicy, posture: &Posture) -> Readiness {
    use Verdict::{Broken, Degraded};
    if let Some(custody) = &p.external {
        return assess_external(p, custody, policy, posture);
    }
    let mut out = lint_findings(p, policy);
    if !posture.sealed {
        out.push(finding(
            Broken,
            "seal.missing",
            format!("not sealed: run `breakglass seal {}`", p.id),
        ));
    }
    if let Some(t) = &posture.taint {
        out.push(finding(Degraded, "seal.tainted", t.clone()));
    }
    if let (Some(age), Some(max)) = (posture.credential_age, p.max_credential_age)
        && age > max
    {
        out.push(finding(
            Degraded,
            "credential.old",
            format!(
                "sealed {} ago; the policy allows {}",
                crate::time::format_duration(age),
                crate::time::format_duration(max)
            ),
        ));
    }
    drill_findings(p, posture, &mut out);
    if posture.sealed {
        match &posture.recovery_kit {
            Some(KitState::Missing) => out.push(finding(
                Degraded,
                "recovery_kit.missing",
                "no recovery kit was exported for the current seal: offline recovery is not possible yet".into(),
            )),
            Some(KitState::Stale(ago)) => out.push(finding(
                Degraded,
                "recovery_kit.stale",
                format!(
                    "the recovery kit (exported {} ago) holds an older seal than the current one",
                    crate::time::format_duration(*ago)
                ),
            )),
            Some(KitState::Current(_)) | None => {}
        }
    }
    if p.drill_automated && !posture.drill_credential {
        out.push(finding(
            Degraded,
            "drill.no_credential",
            format!(
                "automated drills are scheduled but no drill credential is sealed: run `breakglass seal {} --drill`",
                p.id
            ),
        ));
    }
    channel_findings(posture, &mut out);
    let quorum = usize::from(p.quorum);
    let lost: Vec<&str> = posture
        .custodian_keys
        .iter()
        .filter(|(_, k)| *k == KeyState::Lost)
        .map(|(n, _)| n.as_str())
        .collect();
    let available = p.custodians.len().saturating_sub(lost.len());
    if available < quorum {
        out.push(finding(
            Broken,
            "custodians.lost_quorum",
            format!(
                "{} lost their key ({}); {available} left for a quorum of {quorum}: re-seal to new custodians",
                lost.len(),
                lost.join(", ")
            ),
        ));
    } else if !lost.is_empty() && available == quorum {
        out.push(finding(
            Degraded,
            "custodians.lost_spare",
            format!(
                "{} lost their key; the {available} left are exactly the quorum",
                lost.join(", ")
            ),
        ));
    }
    if available >= quorum {
        let fresh = posture
            .custodian_keys
            .iter()
            .filter(|(_, k)| matches!(k, KeyState::Attested(age) if *age <= posture.attestation_max_age))
            .count();
        if fresh < quorum {
            out.push(finding(
                Degraded,
                "attestation.quorum_unproven",
                format!(
                    "{fresh} custodian(s) proved within {} that they hold their key; the quorum is {quorum}: run `breakglass custodian attest`",
                    crate::time::format_duration(posture.attestation_max_age)
                ),
            ));
        } else if fresh == quorum && p.custodians.len() > quorum {
            out.push(finding(
                Degraded,
                "attestation.no_spare",
                format!("{fresh} recent attestations: the quorum, and no spare"),
            ));
        }
    }
    if p.target.kind != TargetKind::Secret {
        match posture.target_check {
            None => out.push(finding(
                Degraded,
                "target.unchecked",
                format!("never checked: run `breakglass target check {}`", p.id),
            )),
            Some((_, false)) => out.push(finding(
                Broken,
                "target.unhealthy",
                "the latest health check failed: `breakglass target show` has the lines".into(),
            )),
            Some((age, true)) if age > TARGET_CHECK_MAX_AGE => out.push(finding(
                Degraded,
                "target.check_stale",
                format!("last checked {} ago", crate::time::format_duration(age)),
            )),
            Some(_) => {}
        }
        if let Some(n) = posture.discovery_unknown
            && n > 0
        {
            out.push(finding(
                Degraded,
                "target.drift",
                format!("{n} privileged account(s) not in the inventory"),
            ));
        }
    }
    let count = SecondFactorCount::of(p, &posture.totp_active);
    if let Some(rule) = count.required {
        let quorum = usize::from(p.quorum);
        if count.can_approve < quorum {
            out.push(
                finding(
                    Broken,
                    "second_factor.below_quorum",
                    format!(
                        "second_factor: {rule} is required but only {} of {} custodians can give it (quorum {quorum}); without it: {}",
                        count.can_approve,
                        count.custodians,
                        count.missing.join(", ")
                    ),
                )
                .at("second_factor"),
            );
        } else if count.can_approve == quorum && count.custodians > quorum {
            out.push(
                finding(
                    Degraded,
                    "second_factor.no_spare",
                    format!(
                        "second_factor: {rule}: exactly the quorum ({quorum}) can give it; without it: {}",
                        count.missing.join(", ")
                    ),
                )
                .at("second_factor"),
            );
        }
    }
    let mut r = Readiness::from_findings(&p.id, out);
    r.second_factor = Some(count);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [&str; 3] = [
        "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
        "age16x89adflfx7u83grlza8l35h0rymue2ygl9rev5dj0366yyescls7khghf",
        "age1e47uwdetjgvmnc3kgjda9255pku38w0gxrpw4h5vdy4gntm06ywqlhdggx",
    ];

    fn procedure_text(custodians: usize, quorum: u8, extra: &str) -> String {
        let mut text = "id: p\ntarget:\n  kind: secret\ncustodians:\n".to_owned();
        for (i, key) in KEYS.iter().take(custodians).enumerate() {
            text.push_str(&format!("  - name: c{i}\n    key: {key}\n"));
        }
        text.push_str(&format!("quorum: {quorum}\nmax_grant: 15m\n{extra}"));
        text
    }

    fn procedure(custodians: usize, quorum: u8, extra: &str) -> Procedure {
        parse_procedures(
            "p.yaml",
            &procedure_text(custodians, quorum, extra),
            &Limits::default(),
        )
        .expect("valid")
        .remove(0)
        .procedure
    }

    const GOOD: &str =
        "alert_channels: [ops]\ndrill: {every: 30d}\nrotation: {max_credential_age: 90d}\n";

    fn healthy(p: &Procedure) -> Posture {
        Posture {
            sealed: true,
            taint: None,
            credential_age: Some(Duration::from_secs(86_400)),
            last_drill: Some((Duration::from_secs(86_400), true, "h".into())),
            content_hash: "h".into(),
            channels: vec![("ops".into(), true, Some(true))],
            custodian_keys: p
                .custodians
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        KeyState::Attested(Duration::from_secs(3600)),
                    )
                })
                .collect(),
            attestation_max_age: Duration::from_secs(30 * 86_400),
            target_check: None,
            discovery_unknown: None,
            sinks_lagging: vec![],
            drill_credential: true,
            recovery_kit: None,
            totp_active: vec![],
            custody_attested: None,
            custody_rotated: None,
        }
    }

    #[test]
    fn second_factor_counts_and_quorum() {
        // No requirement: counted, never a finding.
        let p = procedure(3, 2, GOOD);
        let mut posture = healthy(&p);
        posture.totp_active = vec!["c1".into(), "someone-else".into()];
        let r = assess(&p, &LintPolicy::default(), &posture);
        assert_eq!(r.verdict, Verdict::Ready, "{:?}", r.findings);
        let c = r.second_factor.expect("counted");
        assert_eq!(
            (c.custodians, c.totp, c.hardware, c.with_second_factor),
            (3, 1, 0, 1)
        );
        assert_eq!(c.can_approve, 3);
        assert!(lint(&p, &LintPolicy::default()).second_factor.is_none());

        // Required: one enrolled of a 2-of-3 quorum is broken, two is no spare, three ready.
        let p = procedure(3, 2, &format!("{GOOD}second_factor: totp\n"));
        let mut posture = healthy(&p);
        posture.totp_active = vec!["c1".into()];
        let r = assess(&p, &LintPolicy::default(), &posture);
        assert_eq!(r.verdict, Verdict::Broken);
        let f = &r.findings[0];
        assert_eq!(f.code, "second_factor.below_quorum");
        assert!(f.message.contains("only 1 of 3"), "{}", f.message);
        assert!(f.message.contains("c0, c2"), "{}", f.message);
        assert_eq!(f.field, Some("second_factor"));
        posture.totp_active.push("c0".into());
        let r = assess(&p, &LintPolicy::default(), &posture);
        assert_eq!(r.verdict, Verdict::Degraded);
        assert_eq!(r.findings[0].code, "second_factor.no_spare");
        posture.totp_active.push("c2".into());
        let r = assess(&p, &LintPolicy::default(), &posture);
        assert_eq!(r.verdict, Verdict::Ready, "{:?}", r.findings);
    }

    #[test]
    fn hardware_keys_are_a_second_factor() {
        const YUBIKEY: &str =
            "age1yubikey1qt3rr7fsuqrk7xgrawau2zykwgdg509y2hdayx4lwzl3hqts8nz9qghv6rw";
        let text = procedure_text(2, 2, &format!("{GOOD}second_factor: hardware_or_totp\n"))
            .replace(
                "quorum: 2",
                &format!("  - name: hw\n    key: {YUBIKEY}\nquorum: 2"),
            );
        let p = parse_procedures("p.yaml", &text, &Limits::default())
            .expect("valid")
            .remove(0)
            .procedure;
        let posture = healthy(&p);
        let r = assess(&p, &LintPolicy::default(), &posture);
        let c = r.second_factor.expect("counted");
        assert_eq!(
            (c.custodians, c.totp, c.hardware, c.with_second_factor),
            (3, 0, 1, 1)
        );
        assert_eq!(c.can_approve, 1);
        assert_eq!(r.findings[0].code, "second_factor.below_quorum");
        // `totp` does not take a hardware key alone.
        let strict = text.replace("hardware_or_totp", "totp");
        let p = parse_procedures("p.yaml", &strict, &Limits::default())
            .expect("valid")
            .remove(0)
            .procedure;
        let c = SecondFactorCount::of(&p, &[]);
        assert_eq!(c.can_approve, 0);
    }

    #[test]
    fn an_unknown_second_factor_names_the_field() {
        let e = parse_procedures(
            "p.yaml",
            &procedure_text(3, 2, "second_factor: sms\n"),
            &Limits::default(),
        )
        .expect_err("refused");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, "second_factor");
        assert_eq!(e[0].line, 13);
        assert!(
            e[0].message.contains("`sms` is not a second factor"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn a_well_kept_procedure_is_ready() {
        let p = procedure(3, 2, GOOD);
        assert_eq!(lint(&p, &LintPolicy::default()).verdict, Verdict::Ready);
        let r = assess(&p, &LintPolicy::default(), &healthy(&p));
        assert_eq!(r.verdict, Verdict::Ready, "{:?}", r.findings);
    }

    #[test]
    fn lint_names_each_problem() {
        let p = procedure(
            2,
            2,
            "drill: {every: 180d}\ndependencies: [okta, vpn]\nprotects_against: [OKTA]\n",
        );
        let r = lint(&p, &LintPolicy::default());
        let codes: Vec<&str> = r.findings.iter().map(|f| f.code).collect();
        assert_eq!(r.verdict, Verdict::Broken);
        assert_eq!(codes[0], "dependency.on_outage", "worst first: {codes:?}");
        for c in [
            "custodians.too_few",
            "quorum.no_spare",
            "channels.none",
            "drill.interval",
            "rotation.unset",
        ] {
            assert!(codes.contains(&c), "{c} missing from {codes:?}");
        }
        assert!(r.findings[0].message.contains("okta"));
    }

    #[test]
    fn lint_files_keeps_the_order_of_its_files() {
        // Enough files to be spread over threads; every third is invalid, the others differ
        // in their custodian count so each result can be matched to its file.
        let files: Vec<(String, String)> = (0..200)
            .map(|i| {
                let text = if i % 3 == 0 {
                    "id: [not a string".to_owned()
                } else {
                    procedure_text(2 + i % 2, 2, GOOD).replace("id: p\n", &format!("id: p{i}\n"))
                };
                (format!("f{i}.yaml"), text)
            })
            .collect();
        let results = lint_files(&files, &Limits::default(), &LintPolicy::default());
        assert_eq!(results.len(), files.len());
        for (i, r) in results.iter().enumerate() {
            match r {
                Ok(linted) => {
                    assert_ne!(i % 3, 0, "file {i} is invalid");
                    assert_eq!(linted[0].readiness.procedure, format!("p{i}"));
                }
                Err(errors) => {
                    assert_eq!(i % 3, 0, "file {i} is valid: {errors:?}");
                    assert!(errors[0].to_string().contains(&format!("f{i}.yaml")));
                }
            }
        }
    }

    #[test]
    fn lint_file_points_each_finding_at_its_field_or_the_id() {
        let mut text =
            "# two procedures\nid: first\ntarget:\n  kind: secret\ncustodians:\n".to_owned();
        for (i, key) in KEYS.iter().take(2).enumerate() {
            text.push_str(&format!("  - name: c{i}\n    key: {key}\n"));
        }
        text.push_str("quorum: 2\nmax_grant: 15m\ndrill: {every: 180d}\n---\n");
        text.push_str(&procedure_text(3, 2, GOOD).replace("id: p", "id: second"));
        let linted =
            lint_file("f.yaml", &text, &Limits::default(), &LintPolicy::default()).expect("valid");
        assert_eq!(linted.len(), 2);
        let at = |code: &str| {
            let f = linted[0]
                .readiness
                .findings
                .iter()
                .find(|f| f.code == code)
                .unwrap_or_else(|| panic!("{code} missing"));
            linted[0].position(f)
        };
        assert_eq!(
            at("custodians.too_few"),
            Some((6, 11)),
            "the first custodian"
        );
        assert_eq!(at("quorum.no_spare"), Some((10, 9)));
        assert_eq!(at("drill.interval"), Some((12, 16)));
        assert_eq!(at("channels.none"), Some((2, 5)), "absent field: the id");
        assert_eq!(linted[1].readiness.verdict, Verdict::Ready);
        assert_eq!(linted[1].parsed.positions.of("id"), Some((14, 5)));

        let errors = lint_file(
            "f.yaml",
            "id: x\n",
            &Limits::default(),
            &LintPolicy::default(),
        )
        .expect_err("invalid");
        assert!(!errors.is_empty());
    }

    #[test]
    fn a_lost_custodian_breaks_two_of_two_and_degrades_two_of_three() {
        let p = procedure(2, 2, GOOD);
        let mut posture = healthy(&p);
        posture.custodian_keys[1].1 = KeyState::Lost;
        let r = assess(&p, &LintPolicy::default(), &posture);
        assert_eq!(r.verdict, Verdict::Broken);
        assert_eq!(r.findings[0].code, "custodians.lost_quorum");

        let p = procedure(3, 2, GOOD);
        let mut posture = healthy(&p);
        posture.custodian_keys[2].1 = KeyState::Lost;
        let r = assess(&p, &LintPolicy::default(), &posture);
        assert_eq!(r.verdict, Verdict::Degraded, "{:?}", r.findings);
        assert!(r.findings.iter().any(|f| f.code == "custodians.lost_spare"));
    }

    #[test]
    fn a_change_since_the_last_drill_degrades() {
        let p = procedure(3, 2, GOOD);
        let mut posture = healthy(&p);
        posture.content_hash = "changed".into();
        let r = assess(&p, &LintPolicy::default(), &posture);
        assert_eq!(r.verdict, Verdict::Degraded);
        assert_eq!(r.findings[0].code, "drill.untested_change");
    }

    #[test]
    fn scheduled_automated_drills_need_a_drill_credential() {
        let p = procedure(
            3,
            2,
            "alert_channels: [ops]\ndrill: {every: 30d, automated: true}\nrotation: {max_credential_age: 90d}\n",
        );
        let mut posture = healthy(&p);
        assert_eq!(
            assess(&p, &LintPolicy::default(), &posture).verdict,
            Verdict::Ready
        );
        posture.drill_credential = false;
        let r = assess(&p, &LintPolicy::default(), &posture);
        assert_eq!(r.verdict, Verdict::Degraded);
        assert_eq!(r.findings[0].code, "drill.no_credential");
        assert!(
            r.findings[0].message.contains("seal p --drill"),
            "{}",
            r.findings[0].message
        );
        // Without `automated`, no drill credential is needed.
        let manual = procedure(3, 2, GOOD);
        let mut posture = healthy(&manual);
        posture.drill_credential = false;
        assert_eq!(
            assess(&manual, &LintPolicy::default(), &posture).verdict,
            Verdict::Ready
        );
    }

    #[test]
    fn posture_rules() {
        let p = procedure(3, 2, GOOD);
        let mut posture = healthy(&p);
        posture.sealed = false;
        posture.channels = vec![("ops".into(), false, None)];
        posture.last_drill = Some((Duration::from_secs(40 * 86_400), false, "h".into()));
        posture.credential_age = Some(Duration::from_secs(100 * 86_400));
        posture.custodian_keys[0].1 = KeyState::Unknown;
        posture.custodian_keys[1].1 = KeyState::Attested(Duration::from_secs(60 * 86_400));
        let r = assess(&p, &LintPolicy::default(), &posture);
        let codes: Vec<&str> = r.findings.iter().map(|f| f.code).collect();
        assert_eq!(r.verdict, Verdict::Broken);
        for c in [
            "seal.missing",
            "channel.unknown",
            "drill.failed",
            "drill.overdue",
            "credential.old",
            "attestation.quorum_unproven",
        ] {
            assert!(codes.contains(&c), "{c} missing from {codes:?}");
        }
        for r in RULES {
            assert!(r.code.contains('.'));
            assert_ne!(r.verdict, Verdict::Ready, "{}", r.code);
            assert!(!r.summary.is_empty() && !r.help.is_empty(), "{}", r.code);
            assert_eq!(rule(r.code), Some(r), "{} is listed twice", r.code);
        }
        assert!(codes.iter().all(|c| rule(c).is_some()));
    }

    #[test]
    fn a_missing_or_stale_recovery_kit_degrades() {
        let p = procedure(3, 2, GOOD);
        let mut posture = healthy(&p);
        posture.recovery_kit = Some(KitState::Missing);
        let r = assess(&p, &LintPolicy::default(), &posture);
        assert!(
            r.findings.iter().any(|f| f.code == "recovery_kit.missing"),
            "{r:?}"
        );
        posture.recovery_kit = Some(KitState::Stale(Duration::from_secs(60)));
        let r = assess(&p, &LintPolicy::default(), &posture);
        assert!(
            r.findings.iter().any(|f| f.code == "recovery_kit.stale"),
            "{r:?}"
        );
        posture.recovery_kit = Some(KitState::Current(Duration::from_secs(60)));
        let r = assess(&p, &LintPolicy::default(), &posture);
        assert!(
            !r.findings
                .iter()
                .any(|f| f.code.starts_with("recovery_kit")),
            "{r:?}"
        );
    }

    const EXTERNAL: &str = "id: aws-root\ntarget:\n  kind: external\ncustody:\n  location: safe B2\n  holders:\n    - {name: erin, contact: erin@x}\n    - {name: frank, contact: ''}\n  present: 2\n  steps: [open the safe, sign in]\n  attest_every: 30d\nalert_channels: [ops]\nrotation: {max_credential_age: 90d}\ndrill: {every: 90d}\n";

    fn external(text: &str) -> Procedure {
        parse_procedures("x.yaml", text, &Limits::default())
            .expect("valid")
            .remove(0)
            .procedure
    }

    #[test]
    fn external_custody_lint_names_holders_and_presence() {
        let p = external(EXTERNAL);
        let r = lint(&p, &LintPolicy::default());
        let codes: Vec<&str> = r.findings.iter().map(|f| f.code).collect();
        // No custodian or quorum rule: holders replace them.
        assert_eq!(codes, ["custody.no_contact", "custody.no_spare"], "{r:?}");
        assert!(r.findings[0].message.contains("frank"));
        assert_eq!(r.findings[0].field, Some("custody.holders"));
        let parsed = lint_file(
            "x.yaml",
            EXTERNAL,
            &Limits::default(),
            &LintPolicy::default(),
        )
        .expect("valid");
        assert_eq!(
            parsed[0].position(&parsed[0].readiness.findings[1]),
            Some((9, 12))
        );

        let spare = EXTERNAL
            .replace("contact: ''", "contact: f@x")
            .replace("present: 2", "present: 1")
            .replace("  attest_every: 30d\n", "");
        let r = lint(&external(&spare), &LintPolicy::default());
        let codes: Vec<&str> = r.findings.iter().map(|f| f.code).collect();
        assert_eq!(codes, ["custody.attestation_unscheduled"]);
        for f in &r.findings {
            assert!(rule(f.code).is_some(), "{} is a rule", f.code);
        }
    }

    #[test]
    fn external_custody_posture_attestation_taint_rotation() {
        let p = external(
            &EXTERNAL
                .replace("contact: ''", "contact: f@x")
                .replace("present: 2", "present: 1"),
        );
        let mut posture = healthy(&p);
        posture.sealed = false;
        posture.custody_attested = Some(Duration::from_secs(86_400));
        posture.custody_rotated = Some(Duration::from_secs(86_400));
        let r = assess(&p, &LintPolicy::default(), &posture);
        assert_eq!(r.verdict, Verdict::Ready, "{:?}", r.findings);
        assert!(r.second_factor.is_none());

        posture.custody_attested = None;
        posture.custody_rotated = None;
        posture.taint = Some("used in break ext_1".into());
        let r = assess(&p, &LintPolicy::default(), &posture);
        let codes: Vec<&str> = r.findings.iter().map(|f| f.code).collect();
        assert_eq!(
            codes,
            [
                "custody.never_attested",
                "custody.rotation_unrecorded",
                "custody.tainted"
            ]
        );
        assert_eq!(r.verdict, Verdict::Degraded);

        posture.taint = None;
        posture.custody_attested = Some(Duration::from_secs(31 * 86_400));
        posture.custody_rotated = Some(Duration::from_secs(91 * 86_400));
        posture.last_drill = Some((Duration::from_secs(86_400), false, "h".into()));
        let r = assess(&p, &LintPolicy::default(), &posture);
        let codes: Vec<&str> = r.findings.iter().map(|f| f.code).collect();
        assert_eq!(
            codes,
            [
                "drill.failed",
                "credential.old",
                "custody.attestation_overdue"
            ]
        );
        assert_eq!(r.verdict, Verdict::Broken);
        assert!(
            r.findings[2].message.contains("every 30d"),
            "{}",
            r.findings[2].message
        );
    }
}

/// What happens to one procedure when some systems, channels and people are down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatIf {
    /// Procedure id.
    pub procedure: String,
    /// Whether a break could still be opened and granted.
    pub can_open: bool,
    /// Why not (empty when it can).
    pub blockers: Vec<String>,
    /// Custodians who could still approve.
    pub custodians: Vec<String>,
    /// Alert channels that would still be told.
    pub channels: Vec<String>,
    /// Things that still work but are weakened (no channel left, no spare custodian).
    pub warnings: Vec<String>,
    /// Time to access of the latest drills, newest first, in milliseconds (filled by the
    /// engine from the drill history; empty here).
    pub latest_drills_ms: Vec<i64>,
}

/// Evaluates a procedure with `down` (dependency, channel, custodian, target connection or
/// host names, compared without case) unavailable. `keys` are the custodians' key states
/// (a lost key counts as down too).
pub fn what_if(p: &Procedure, down: &[String], keys: &[(String, KeyState)]) -> WhatIf {
    let is_down = |name: &str| down.iter().any(|d| d.trim().eq_ignore_ascii_case(name));
    let mut blockers = Vec::new();
    let mut warnings = Vec::new();
    for d in p.dependencies.iter().filter(|d| is_down(d)) {
        blockers.push(format!("depends on `{d}`, which is down"));
    }
    for key in ["connection", "host"] {
        if let Some(v) = p.target.details.get(key)
            && is_down(v)
        {
            blockers.push(format!("its target ({key} `{v}`) is down"));
        }
    }
    let lost = |name: &str| keys.iter().any(|(n, k)| n == name && *k == KeyState::Lost);
    // Who must be reachable: the custodians for their approvals, or an externally held
    // credential's holders, of whom `present` must be there.
    let (everyone, quorum, needs): (Vec<&str>, usize, &str) = match &p.external {
        Some(c) => (
            c.holders.iter().map(|h| h.name.as_str()).collect(),
            usize::from(c.present),
            "holders who must be present",
        ),
        None => (
            p.custodians.iter().map(|c| c.name.as_str()).collect(),
            usize::from(p.quorum),
            "approvals it needs",
        ),
    };
    let custodians: Vec<String> = everyone
        .iter()
        .filter(|c| !is_down(c) && !lost(c))
        .map(|c| (*c).to_owned())
        .collect();
    if custodians.len() < quorum {
        let gone: Vec<String> = everyone
            .iter()
            .filter(|c| !custodians.iter().any(|x| x == *c))
            .map(|c| {
                if lost(c) {
                    format!("{c} (key lost)")
                } else {
                    format!("{c} (down)")
                }
            })
            .collect();
        blockers.push(format!(
            "{} of the {quorum} {needs} are reachable; missing: {}",
            custodians.len(),
            gone.join(", ")
        ));
    } else if custodians.len() == quorum && everyone.len() > quorum {
        warnings.push(format!(
            "exactly the quorum is left ({}): no spare",
            custodians.join(", ")
        ));
    }
    let channels: Vec<String> = p
        .alert_channels
        .iter()
        .filter(|c| !is_down(c))
        .cloned()
        .collect();
    if channels.is_empty() && !p.alert_channels.is_empty() {
        warnings.push("every alert channel is down: nobody would be told of the break".into());
    }
    if !p.escalation.is_empty() && p.escalation.iter().all(|c| is_down(c)) {
        warnings.push("every escalation channel is down".into());
    }
    WhatIf {
        procedure: p.id.clone(),
        can_open: blockers.is_empty(),
        blockers,
        custodians,
        channels,
        warnings,
        latest_drills_ms: Vec::new(),
    }
}

#[cfg(test)]
mod what_if_tests {
    use super::*;
    use crate::procedure::{Limits, parse_procedures};

    #[test]
    fn outages_custodians_and_channels() {
        let keys = [
            "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
            "age16x89adflfx7u83grlza8l35h0rymue2ygl9rev5dj0366yyescls7khghf",
            "age1e47uwdetjgvmnc3kgjda9255pku38w0gxrpw4h5vdy4gntm06ywqlhdggx",
        ];
        let text = format!(
            "id: p\ntarget:\n  kind: secret\n  details: {{host: db-01}}\ncustodians:\n  - name: alice\n    key: {}\n  - name: bob\n    key: {}\n  - name: carol\n    key: {}\nquorum: 2\nmax_grant: 15m\nalert_channels: [slack, pager]\ndependencies: [vpn, okta]\n",
            keys[0], keys[1], keys[2]
        );
        let p = parse_procedures("p.yaml", &text, &Limits::default())
            .expect("valid")
            .remove(0)
            .procedure;
        let down = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();

        let w = what_if(&p, &down("Slack,alice"), &[]);
        assert!(w.can_open, "{w:?}");
        assert_eq!(w.custodians, ["bob", "carol"]);
        assert_eq!(w.channels, ["pager"]);
        assert!(w.warnings[0].contains("no spare"), "{w:?}");

        let w = what_if(&p, &down("okta"), &[]);
        assert!(!w.can_open);
        assert!(w.blockers[0].contains("okta"));

        let w = what_if(
            &p,
            &down("alice,slack,pager"),
            &[("bob".into(), KeyState::Lost)],
        );
        assert!(!w.can_open);
        assert!(w.blockers[0].contains("bob (key lost)"), "{w:?}");
        assert!(
            w.warnings
                .iter()
                .any(|x| x.contains("nobody would be told"))
        );

        let w = what_if(&p, &down("db-01"), &[]);
        assert!(!w.can_open && w.blockers[0].contains("db-01"));
    }

    #[test]
    fn external_custody_counts_holders() {
        let text = "id: aws-root\ntarget:\n  kind: external\ncustody:\n  location: safe\n  holders: [{name: erin}, {name: frank}, {name: grace}]\n  present: 2\n  steps: [open]\n";
        let p = parse_procedures("x.yaml", text, &Limits::default())
            .expect("valid")
            .remove(0)
            .procedure;
        let down = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        let w = what_if(&p, &down("erin"), &[]);
        assert!(w.can_open, "{w:?}");
        assert_eq!(w.custodians, ["frank", "grace"]);
        assert!(w.warnings[0].contains("no spare"), "{w:?}");
        let w = what_if(&p, &down("erin,grace"), &[]);
        assert!(!w.can_open);
        assert_eq!(
            w.blockers[0],
            "1 of the 2 holders who must be present are reachable; missing: erin (down), grace (down)"
        );
    }
}
