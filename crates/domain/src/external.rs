//! External custody: emergency credentials breakglass cannot seal (a cloud root account whose
//! MFA token sits in a safe, a console password on paper). The procedure file says where the
//! credential lives, who holds it, how many holders must be present and the human steps to
//! retrieve and use it; breakglass keeps the inventory, alerts, times the steps as the people
//! doing them confirm each one, records holders' attestations of the safe's contents and the
//! credential's rotation, and gives a readiness verdict. Nothing is ever unsealed: there is
//! nothing to unseal.
//!
//! Pure rules: the file section and its validation, and a run of human steps (a break or a
//! drill) as a small state machine whose transitions return named errors.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::time::{Timestamp, format_duration};

/// Most steps a procedure may list.
pub const MAX_STEPS: usize = 50;
/// Longest step text, location or note, in characters.
pub const MAX_TEXT: usize = 500;

/// The `custody` section of a procedure whose target is `kind: external`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustodySpec {
    /// Where the credential lives, in words, e.g. `safe B2, London office`.
    #[schemars(with = "String")]
    pub location: Spanned<String>,
    /// The people who hold it (a key to the safe, the combination), with their contact.
    pub holders: Vec<HolderSpec>,
    /// How many holders must be present to retrieve it (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<u8>")]
    pub present: Option<Spanned<u8>>,
    /// The human steps to retrieve and use the credential, in order.
    #[schemars(with = "Vec<String>")]
    pub steps: Vec<Spanned<String>>,
    /// How often a holder must confirm the safe's contents, e.g. `30d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub attest_every: Option<Spanned<String>>,
}

/// A holder entry of the `custody` section.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HolderSpec {
    /// The holder's name, unique within the procedure; also their actor name.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// How to reach them at 2 a.m. (email, phone, chat handle).
    #[serde(default)]
    pub contact: String,
}

/// A validated external custody declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalCustody {
    /// Where the credential lives.
    pub location: String,
    /// Its holders, in file order.
    pub holders: Vec<Holder>,
    /// Holders who must be present to retrieve it.
    pub present: u8,
    /// The human steps, in order.
    pub steps: Vec<String>,
    /// How often a holder must attest, if scheduled.
    pub attest_every: Option<Duration>,
}

/// A holder of an externally kept credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Name (also the actor name).
    pub name: String,
    /// Contact (may be empty: readiness flags it).
    pub contact: String,
}

impl ExternalCustody {
    /// The holder with this name.
    pub fn holder(&self, name: &str) -> Option<&Holder> {
        self.holders.iter().find(|h| h.name == name)
    }

    /// `erin <erin@example.com>, frank <no contact>`.
    pub fn holders_named(&self) -> String {
        self.holders
            .iter()
            .map(|h| crate::people::named(&h.name, &h.contact))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A validation problem: (location, dotted field, message).
pub(crate) type Problem = (Option<serde_saphyr::Location>, String, String);

fn text_ok(text: &str) -> bool {
    !text.trim().is_empty()
        && text.chars().count() <= MAX_TEXT
        && !text.chars().any(|c| c.is_control() && c != '\n')
}

/// Validates the `custody` section; `at` is where to point when a field has no position.
pub(crate) fn validate(
    spec: &CustodySpec,
    at: serde_saphyr::Location,
    problems: &mut Vec<Problem>,
) -> ExternalCustody {
    let mut problem = |loc: Option<serde_saphyr::Location>, field: String, msg: String| {
        problems.push((loc, field, msg))
    };
    if !text_ok(&spec.location.value) {
        problem(
            Some(spec.location.referenced),
            "custody.location".into(),
            format!("must say where the credential lives: 1-{MAX_TEXT} characters"),
        );
    }
    let mut holders = Vec::new();
    if spec.holders.is_empty() {
        problem(
            Some(at),
            "custody.holders".into(),
            "list at least one holder: somebody must be able to open the safe".into(),
        );
    }
    for (i, h) in spec.holders.iter().enumerate() {
        let name = h.name.value.trim();
        if name.is_empty()
            || name.len() > 64
            || name.chars().any(|ch| ch.is_whitespace() || ch.is_control())
        {
            problem(
                Some(h.name.referenced),
                format!("custody.holders[{i}].name"),
                "must be 1-64 characters without spaces".into(),
            );
        } else if holders.iter().any(|x: &Holder| x.name == name) {
            problem(
                Some(h.name.referenced),
                format!("custody.holders[{i}].name"),
                format!("holder `{name}` is listed twice"),
            );
        } else {
            holders.push(Holder {
                name: name.to_owned(),
                contact: h.contact.trim().to_owned(),
            });
        }
    }
    let present = match &spec.present {
        None => 1,
        Some(p) if p.value == 0 => {
            problem(
                Some(p.referenced),
                "custody.present".into(),
                "must be at least 1".into(),
            );
            1
        }
        Some(p) if usize::from(p.value) > spec.holders.len() => {
            problem(
                Some(p.referenced),
                "custody.present".into(),
                format!(
                    "{} holders must be present but only {} are listed",
                    p.value,
                    spec.holders.len()
                ),
            );
            p.value
        }
        Some(p) => p.value,
    };
    if spec.steps.is_empty() {
        problem(
            Some(at),
            "custody.steps".into(),
            "list the human steps to retrieve and use the credential, in order".into(),
        );
    } else if spec.steps.len() > MAX_STEPS {
        problem(
            spec.steps.first().map(|s| s.referenced),
            "custody.steps".into(),
            format!("{} steps; at most {MAX_STEPS}", spec.steps.len()),
        );
    }
    let mut steps = Vec::new();
    for (i, s) in spec.steps.iter().enumerate() {
        if text_ok(&s.value) {
            steps.push(s.value.trim().to_owned());
        } else {
            problem(
                Some(s.referenced),
                format!("custody.steps[{i}]"),
                format!("must be 1-{MAX_TEXT} characters of text"),
            );
        }
    }
    let attest_every = spec.attest_every.as_ref().and_then(|a| {
        crate::procedure::parse_duration(&a.value)
            .map_err(|m| problem(Some(a.referenced), "custody.attest_every".into(), m))
            .ok()
    });
    ExternalCustody {
        location: spec.location.value.trim().to_owned(),
        holders,
        present,
        steps,
        attest_every,
    }
}

/// What a holder recorded about an externally kept credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A holder confirmed the safe's contents.
    Attested,
    /// A holder recorded that the credential was rotated (clears the taint of a use).
    Rotated,
}

impl RecordKind {
    /// `attested` or `rotated`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Attested => "attested",
            RecordKind::Rotated => "rotated",
        }
    }

    /// Parses `attested` or `rotated`.
    pub fn parse(text: &str) -> Option<RecordKind> {
        match text {
            "attested" => Some(RecordKind::Attested),
            "rotated" => Some(RecordKind::Rotated),
            _ => None,
        }
    }
}

/// One attestation or rotation of an externally kept credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodyRecord {
    /// Procedure.
    pub procedure: String,
    /// The holder it is about.
    pub holder: String,
    /// Attested or rotated.
    pub kind: RecordKind,
    /// When.
    pub at: Timestamp,
    /// Who recorded it (the holder, or an admin for them).
    pub recorded_by: String,
    /// What they saw or did, in words (no secrets).
    pub note: String,
}

/// Whether a run is an emergency use or a drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// A real use: the credential is tainted when it ends, until a holder records its rotation.
    Break,
    /// A rehearsal, timed step by step; it ends in a drill record.
    Drill,
}

impl RunKind {
    /// `break` or `drill`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Break => "break",
            RunKind::Drill => "drill",
        }
    }

    /// Parses `break` or `drill`.
    pub fn parse(text: &str) -> Option<RunKind> {
        match text {
            "break" => Some(RunKind::Break),
            "drill" => Some(RunKind::Drill),
            _ => None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Steps are still being done.
    Running,
    /// Every step was confirmed.
    Completed,
    /// Stopped before the last step (with a reason in the audit log).
    Aborted,
}

impl RunOutcome {
    /// `running`, `completed` or `aborted`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Completed => "completed",
            RunOutcome::Aborted => "aborted",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<RunOutcome> {
        match text {
            "running" => Some(RunOutcome::Running),
            "completed" => Some(RunOutcome::Completed),
            "aborted" => Some(RunOutcome::Aborted),
            _ => None,
        }
    }
}

/// A confirmed step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDone {
    /// 1-based step number.
    pub step: usize,
    /// Who confirmed it.
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// What they noted (no secrets).
    pub note: String,
}

/// One run of a procedure's human steps: an external break or drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Identifier (`ext_…` for breaks, `drl_…` for drills).
    pub id: String,
    /// Procedure.
    pub procedure: String,
    /// Break or drill.
    pub kind: RunKind,
    /// Who opened it.
    pub opened_by: String,
    /// Why (drills: `drill`).
    pub reason: String,
    /// Ticket (may be empty for drills).
    pub ticket: String,
    /// When it was opened.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// Running, completed or aborted.
    pub outcome: RunOutcome,
    /// The steps as the file listed them when the run opened.
    pub steps: Vec<String>,
    /// Confirmed steps, in order.
    pub done: Vec<StepDone>,
    /// SHA-256 of the procedure file when the run opened.
    pub content_hash: String,
}

/// Why a step cannot be confirmed, or a run not ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The run has ended.
    #[error("{id} is {outcome}: no more steps can be confirmed")]
    Ended {
        /// Run.
        id: String,
        /// `completed` or `aborted`.
        outcome: &'static str,
    },
    /// No such step.
    #[error("step {step} does not exist: {id} has steps 1 to {count}")]
    Unknown {
        /// Run.
        id: String,
        /// The step asked for.
        step: usize,
        /// How many steps the run has.
        count: usize,
    },
    /// Already confirmed.
    #[error("step {step} was already confirmed by {by} at {at}")]
    AlreadyDone {
        /// The step.
        step: usize,
        /// By whom.
        by: String,
        /// When.
        at: Timestamp,
    },
    /// An earlier step is not confirmed yet.
    #[error("step {step} is out of order: confirm step {next} (`{text}`) first")]
    OutOfOrder {
        /// The step asked for.
        step: usize,
        /// The next step to confirm.
        next: usize,
        /// Its text.
        text: String,
    },
    /// A note too long or with control characters.
    #[error("the note must be at most {MAX_TEXT} characters of text")]
    BadNote,
}

/// A step with how long it took and who did it, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedStep {
    /// 1-based number.
    pub step: usize,
    /// Text.
    pub text: String,
    /// Who confirmed it (`None`: not done).
    pub by: Option<String>,
    /// When.
    pub at: Option<Timestamp>,
    /// Since the previous step was confirmed (or the run opened).
    pub took: Option<Duration>,
    /// Their note.
    pub note: String,
}

impl Run {
    /// Opens a run over the procedure's current steps.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        id: String,
        procedure: &crate::Procedure,
        custody: &ExternalCustody,
        kind: RunKind,
        opened_by: &str,
        reason: &str,
        ticket: &str,
        content_hash: &str,
        now: Timestamp,
    ) -> Run {
        Run {
            id,
            procedure: procedure.id.clone(),
            kind,
            opened_by: opened_by.to_owned(),
            reason: reason.to_owned(),
            ticket: ticket.to_owned(),
            started_at: now,
            finished_at: None,
            outcome: RunOutcome::Running,
            steps: custody.steps.clone(),
            done: Vec::new(),
            content_hash: content_hash.to_owned(),
        }
    }

    /// The next step to confirm (1-based), if any is left.
    pub fn next_step(&self) -> Option<usize> {
        (self.done.len() < self.steps.len()).then_some(self.done.len() + 1)
    }

    /// Confirms `step` (1-based), done by `by` at `now`. Steps are confirmed in order, once
    /// each; the last one completes the run.
    pub fn confirm(
        &mut self,
        step: usize,
        by: &str,
        note: &str,
        now: Timestamp,
    ) -> Result<&StepDone, StepError> {
        if self.outcome != RunOutcome::Running {
            return Err(StepError::Ended {
                id: self.id.clone(),
                outcome: self.outcome.as_str(),
            });
        }
        if step == 0 || step > self.steps.len() {
            return Err(StepError::Unknown {
                id: self.id.clone(),
                step,
                count: self.steps.len(),
            });
        }
        if let Some(d) = self.done.iter().find(|d| d.step == step) {
            return Err(StepError::AlreadyDone {
                step,
                by: d.by.clone(),
                at: d.at,
            });
        }
        let next = self.done.len() + 1;
        if step != next {
            return Err(StepError::OutOfOrder {
                step,
                next,
                text: self.steps[next - 1].clone(),
            });
        }
        if note.chars().count() > MAX_TEXT || note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(StepError::BadNote);
        }
        self.done.push(StepDone {
            step,
            by: by.to_owned(),
            at: now,
            note: note.trim().to_owned(),
        });
        if self.done.len() == self.steps.len() {
            self.outcome = RunOutcome::Completed;
            self.finished_at = Some(now);
        }
        Ok(&self.done[self.done.len() - 1])
    }

    /// Stops a running run before its last step.
    pub fn abort(&mut self, now: Timestamp) -> Result<(), StepError> {
        if self.outcome != RunOutcome::Running {
            return Err(StepError::Ended {
                id: self.id.clone(),
                outcome: self.outcome.as_str(),
            });
        }
        self.outcome = RunOutcome::Aborted;
        self.finished_at = Some(now);
        Ok(())
    }

    /// Every step with who did it and how long it took.
    pub fn timed_steps(&self) -> Vec<TimedStep> {
        let mut previous = self.started_at;
        self.steps
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let done = self.done.iter().find(|d| d.step == i + 1);
                let took = done.map(|d| {
                    let ms = u64::try_from(d.at.since(previous)).unwrap_or(0);
                    previous = d.at;
                    Duration::from_millis(ms)
                });
                TimedStep {
                    step: i + 1,
                    text: text.clone(),
                    by: done.map(|d| d.by.clone()),
                    at: done.map(|d| d.at),
                    took,
                    note: done.map(|d| d.note.clone()).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// From opening to the last confirmed step.
    pub fn elapsed(&self) -> Duration {
        let end = self.done.last().map_or(self.started_at, |d| d.at);
        Duration::from_millis(u64::try_from(end.since(self.started_at)).unwrap_or(0))
    }
}

impl fmt::Display for TimedStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.by, self.took) {
            (Some(by), Some(took)) => write!(
                f,
                "{}. {} — {by}, {}",
                self.step,
                self.text,
                format_duration(took)
            ),
            _ => write!(f, "{}. {} — not done", self.step, self.text),
        }
    }
}

/// The latest record of `kind` for `holder` of `procedure`.
pub fn latest<'a>(
    records: &'a [CustodyRecord],
    procedure: &str,
    holder: Option<&str>,
    kind: RecordKind,
) -> Option<&'a CustodyRecord> {
    records
        .iter()
        .filter(|r| {
            r.procedure == procedure && r.kind == kind && holder.is_none_or(|h| r.holder == h)
        })
        .max_by_key(|r| r.at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procedure::{Limits, parse_procedures};

    pub(crate) const FILE: &str = "id: aws-root\ntarget:\n  kind: external\n  details: {account: '123456789012'}\ncustody:\n  location: safe B2, London office\n  holders:\n    - {name: erin, contact: erin@example.com}\n    - {name: frank, contact: '+44 20 7946 0000'}\n  present: 2\n  steps:\n    - Two holders open safe B2\n    - Take the MFA token and the envelope\n    - Sign in to the console as root\n  attest_every: 30d\n";

    fn errors(text: &str) -> Vec<String> {
        parse_procedures("x.yaml", text, &Limits::default())
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn run() -> Run {
        let parsed = parse_procedures("x.yaml", FILE, &Limits::default()).expect("valid");
        let p = &parsed[0].procedure;
        let custody = p.external.as_ref().expect("external");
        Run::open(
            "ext_1".into(),
            p,
            custody,
            RunKind::Break,
            "dave",
            "IdP down",
            "INC-1",
            "h",
            Timestamp(1_000),
        )
    }

    /// The example in `docs/examples/` (and the README) parses and lints as documented.
    #[test]
    fn the_documented_example_is_valid() {
        let text = include_str!("../../../docs/examples/aws-root.yaml");
        let linted = crate::readiness::lint_file(
            "aws-root.yaml",
            text,
            &Limits::default(),
            &crate::readiness::LintPolicy::default(),
        )
        .expect("the example is valid");
        let p = &linted[0].parsed.procedure;
        let c = p.external.as_ref().expect("external");
        assert_eq!((c.holders.len(), c.present, c.steps.len()), (3, 2, 4));
        assert_eq!(
            linted[0].readiness.verdict,
            crate::readiness::Verdict::Ready,
            "{:?}",
            linted[0].readiness.findings
        );
    }

    #[test]
    fn a_valid_external_procedure_parses() {
        let parsed = parse_procedures("x.yaml", FILE, &Limits::default()).expect("valid");
        let p = &parsed[0].procedure;
        let c = p.external.as_ref().expect("external custody");
        assert_eq!(c.location, "safe B2, London office");
        assert_eq!(c.holders.len(), 2);
        assert_eq!(c.present, 2);
        assert_eq!(c.steps.len(), 3);
        assert_eq!(c.attest_every, Some(Duration::from_secs(30 * 86_400)));
        assert!(p.custodians.is_empty());
        assert_eq!(
            c.holders_named(),
            "erin <erin@example.com>, frank <+44 20 7946 0000>"
        );
        assert_eq!(parsed[0].positions.of("custody.present"), Some((10, 12)));
        // The stored YAML parses back to the same procedure.
        let again =
            parse_procedures("stored", &parsed[0].spec_yaml(), &Limits::default()).expect("again");
        assert_eq!(&again[0].procedure, p);
    }

    #[test]
    fn validation_names_file_line_and_field() {
        assert_eq!(
            errors(&FILE.replace("present: 2", "present: 3")),
            ["x.yaml:10:12: custody.present: 3 holders must be present but only 2 are listed"]
        );
        assert_eq!(
            errors(&FILE.replace("{name: frank", "{name: erin")),
            ["x.yaml:9:14: custody.holders[1].name: holder `erin` is listed twice"]
        );
        assert_eq!(
            errors(&FILE.replace("attest_every: 30d", "attest_every: monthly"))[0]
                .split(" (")
                .next(),
            Some("x.yaml:15:17: custody.attest_every: `monthly` is not a duration like 15m or 1h")
        );
        let e = errors(&FILE.replace("    - Take the MFA token and the envelope\n", "    - ''\n"));
        assert_eq!(
            e,
            ["x.yaml:13:7: custody.steps[1]: must be 1-500 characters of text"]
        );
        // The section is required for external targets and refused for sealed ones.
        let e = errors(&FILE[..FILE.find("custody:").expect("section")]);
        assert_eq!(
            e,
            [
                "x.yaml:1:5: custody: a `kind: external` target needs a custody section: where the credential lives, its holders and the steps"
            ]
        );
        let e = errors(&FILE.replace("kind: external", "kind: secret"));
        assert!(
            e.iter()
                .any(|e| e.starts_with("x.yaml:5:1: custody: only `kind: external`"))
                || e.iter()
                    .any(|e| e.contains("custody: only `kind: external`")),
            "{e:?}"
        );
        // Sealing fields do not belong to an external procedure.
        let e = errors(&format!("{FILE}quorum: 2\n"));
        assert_eq!(
            e,
            [
                "x.yaml:16:9: quorum: an external-custody procedure has no sealed shares; say how many holders must be present with custody.present"
            ]
        );
        let e = errors(&FILE.replace("  holders:\n    - {name: erin, contact: erin@example.com}\n    - {name: frank, contact: '+44 20 7946 0000'}\n  present: 2\n", "  holders: []\n"));
        assert!(
            e[0].contains("custody.holders: list at least one holder"),
            "{e:?}"
        );
    }

    #[test]
    fn steps_are_confirmed_in_order_once() {
        let mut r = run();
        assert_eq!(r.next_step(), Some(1));
        assert_eq!(
            r.confirm(2, "erin", "", Timestamp(2_000))
                .unwrap_err()
                .to_string(),
            "step 2 is out of order: confirm step 1 (`Two holders open safe B2`) first"
        );
        assert_eq!(
            r.confirm(4, "erin", "", Timestamp(2_000))
                .unwrap_err()
                .to_string(),
            "step 4 does not exist: ext_1 has steps 1 to 3"
        );
        assert!(matches!(
            r.confirm(0, "erin", "", Timestamp(2_000)),
            Err(StepError::Unknown { .. })
        ));
        r.confirm(1, "erin", "with frank", Timestamp(61_000))
            .expect("step 1");
        assert!(matches!(
            r.confirm(1, "frank", "", Timestamp(62_000)),
            Err(StepError::AlreadyDone { step: 1, .. })
        ));
        assert_eq!(
            r.confirm(2, "frank", "\u{7}", Timestamp(62_000)),
            Err(StepError::BadNote)
        );
        r.confirm(2, "frank", "", Timestamp(121_000))
            .expect("step 2");
        assert_eq!(r.outcome, RunOutcome::Running);
        r.confirm(3, "dave", "", Timestamp(301_000))
            .expect("step 3");
        assert_eq!(r.outcome, RunOutcome::Completed);
        assert_eq!(r.finished_at, Some(Timestamp(301_000)));
        assert!(matches!(
            r.confirm(3, "dave", "", Timestamp(302_000)),
            Err(StepError::Ended { .. })
        ));
        let timed = r.timed_steps();
        let took: Vec<_> = timed.iter().map(|t| t.took.map(|d| d.as_secs())).collect();
        assert_eq!(took, [Some(60), Some(60), Some(180)]);
        assert_eq!(timed[0].by.as_deref(), Some("erin"));
        assert_eq!(timed[0].note, "with frank");
        assert_eq!(r.elapsed(), Duration::from_secs(300));
        assert_eq!(
            timed[2].to_string(),
            "3. Sign in to the console as root — dave, 3m"
        );
    }

    #[test]
    fn an_aborted_run_takes_no_more_steps() {
        let mut r = run();
        r.confirm(1, "erin", "", Timestamp(2_000)).expect("step 1");
        r.abort(Timestamp(3_000)).expect("abort");
        assert_eq!(r.outcome, RunOutcome::Aborted);
        assert!(r.abort(Timestamp(4_000)).is_err());
        assert!(matches!(
            r.confirm(2, "erin", "", Timestamp(5_000)),
            Err(StepError::Ended {
                outcome: "aborted",
                ..
            })
        ));
        assert_eq!(
            r.timed_steps()[1].to_string(),
            "2. Take the MFA token and the envelope — not done"
        );
    }

    #[test]
    fn latest_record_per_holder() {
        let rec = |holder: &str, kind, at| CustodyRecord {
            procedure: "p".into(),
            holder: holder.into(),
            kind,
            at: Timestamp(at),
            recorded_by: holder.into(),
            note: String::new(),
        };
        let records = [
            rec("erin", RecordKind::Attested, 5),
            rec("erin", RecordKind::Attested, 9),
            rec("frank", RecordKind::Rotated, 7),
        ];
        assert_eq!(
            latest(&records, "p", Some("erin"), RecordKind::Attested).map(|r| r.at),
            Some(Timestamp(9))
        );
        assert_eq!(
            latest(&records, "p", None, RecordKind::Rotated).map(|r| r.at),
            Some(Timestamp(7))
        );
        assert!(latest(&records, "q", None, RecordKind::Rotated).is_none());
        assert_eq!(RecordKind::parse("rotated"), Some(RecordKind::Rotated));
        assert_eq!(RunKind::parse("drill"), Some(RunKind::Drill));
        assert_eq!(RunOutcome::parse("aborted"), Some(RunOutcome::Aborted));
    }
}
