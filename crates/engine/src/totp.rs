//! The TOTP second factor: a custodian enrols (the server makes the secret, shown once),
//! confirms with a first code, and from then on every approval carries a fresh code, as does
//! every approval of a procedure whose file requires `second_factor`. A code is accepted once
//! (the last accepted step is stored with the approval, in its transaction); wrong codes are
//! counted, and too many in a short window lock the custodian's TOTP for a while. Every change
//! and every refusal is audited; neither the secret nor a code ever enters an entry.

use std::time::Duration;

use breakglass_custody::{
    SecretString, TotpError, TotpSecret, check_totp, open_totp_secret, seal_totp_secret,
};
use breakglass_domain::{Action, Actor, Procedure, Timestamp};
use serde_json::json;

use crate::events::Record;
use crate::ports::{TotpRecord, Tx};
use crate::{Engine, EngineError};

/// Wrong codes allowed within [`FAILURE_WINDOW`] before the custodian's TOTP is locked.
pub const TOTP_MAX_FAILURES: i64 = 5;
/// The window in which wrong codes are counted.
pub const TOTP_FAILURE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// How long TOTP stays locked after too many wrong codes.
pub const TOTP_LOCKOUT: Duration = Duration::from_secs(15 * 60);

/// Why an approval's (or a confirmation's) second factor was refused. Never carries the code.
#[derive(Debug, thiserror::Error)]
pub enum SecondFactorError {
    /// No code was given, and one is needed.
    #[error(
        "a TOTP code is required to approve as `{custodian}` ({why}); give it with --totp CODE"
    )]
    Missing {
        /// Custodian.
        custodian: String,
        /// Why one is needed.
        why: String,
    },
    /// The procedure requires a TOTP code and the custodian has no active enrolment, or a code
    /// was given without one.
    #[error("`{custodian}` has no active TOTP enrolment: {why}")]
    NotEnrolled {
        /// Custodian.
        custodian: String,
        /// What to do.
        why: String,
    },
    /// The code is wrong, malformed or already used.
    #[error("TOTP code refused: {reason}{lock}")]
    Refused {
        /// Why.
        reason: TotpError,
        /// Set when this refusal locked TOTP (said in the message).
        lock: String,
    },
    /// Too many wrong codes recently.
    #[error(
        "TOTP is locked for `{custodian}` after {TOTP_MAX_FAILURES} wrong codes within 5 minutes; try again after {until} (in {seconds} s) or ask an admin to reset the enrolment (`breakglass totp reset {custodian}`)"
    )]
    Locked {
        /// Custodian.
        custodian: String,
        /// Until when.
        until: Timestamp,
        /// Seconds left.
        seconds: i64,
    },
}

impl SecondFactorError {
    /// A stable code for the API and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            SecondFactorError::Missing { .. } => "totp_required",
            SecondFactorError::NotEnrolled { .. } => "totp_not_enrolled",
            SecondFactorError::Refused { reason, .. } => match reason {
                TotpError::Malformed => "totp_malformed",
                TotpError::Wrong => "totp_wrong",
                TotpError::Reused => "totp_reused",
                TotpError::Corrupt | TotpError::Uri(_) => "totp_unavailable",
            },
            SecondFactorError::Locked { .. } => "totp_locked",
        }
    }
}

/// What a custodian's approval offers as its second factor.
#[derive(Debug, Clone, Copy)]
pub enum SecondFactorProof<'a> {
    /// A TOTP code.
    Code(&'a str),
    /// Nothing.
    None,
    /// An automated drill approving with a drill identity: no person, so no second factor;
    /// the drill report says it was not exercised.
    DrillExempt,
}

/// A TOTP enrolment just started: the secret, shown once to the custodian.
#[derive(Debug)]
pub struct TotpEnrollment {
    /// Custodian.
    pub custodian: String,
    /// The secret in base32, for typing into an authenticator app.
    pub secret_base32: SecretString,
    /// The `otpauth://` URI (QR code content).
    pub uri: SecretString,
}

/// A custodian's TOTP state, without the secret.
#[derive(Debug, Clone)]
pub struct TotpStatus {
    /// Custodian.
    pub custodian: String,
    /// Confirmed (approvals need a code).
    pub active: bool,
    /// When the enrolment started.
    pub created_at: Timestamp,
    /// When it was confirmed.
    pub confirmed_at: Option<Timestamp>,
    /// Wrong codes in the current window.
    pub failures: i64,
    /// Locked until then.
    pub locked_until: Option<Timestamp>,
}

impl From<&TotpRecord> for TotpStatus {
    fn from(r: &TotpRecord) -> TotpStatus {
        TotpStatus {
            custodian: r.custodian.clone(),
            active: r.active,
            created_at: r.created_at,
            confirmed_at: r.confirmed_at,
            failures: r.failures,
            locked_until: r.locked_until,
        }
    }
}

/// The outcome of the second-factor gate of an approval.
pub(crate) enum Gate {
    /// Nothing to check (no enrolment, no requirement; or an automated drill).
    Skip(&'static str),
    /// A hardware key satisfies the procedure's requirement.
    Hardware,
    /// The code is right: this step must be stored with the approval.
    Passed(u64),
    /// Refused: `record` (failure count) is stored with the refusal's audit entry.
    Refused(SecondFactorError, Option<TotpRecord>),
}

impl Engine {
    /// Starts (or restarts) the caller's TOTP enrolment: a new random secret, returned once.
    /// Approvals need codes only once it is confirmed (`totp_confirm`).
    pub async fn totp_enroll(&self, by: &Actor) -> Result<TotpEnrollment, EngineError> {
        by.may(Action::Approve)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        if tx.totp(&by.name).await?.is_some_and(|r| r.active) {
            return Err(EngineError::Conflict(format!(
                "`{}` already has an active TOTP enrolment; remove it first with `breakglass totp reset`",
                by.name
            )));
        }
        let secret = TotpSecret::generate();
        let uri = secret
            .expose_otpauth_uri(&by.name)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        tx.put_totp(&TotpRecord {
            custodian: by.name.clone(),
            sealed_secret: seal_totp_secret(&self.inner.totp_key, &by.name, &secret),
            active: false,
            created_at: now,
            confirmed_at: None,
            last_step: None,
            failures: 0,
            failure_window_start: None,
            locked_until: None,
        })
        .await?;
        let mut record = Record::default();
        record.event(
            now,
            &by.name,
            "totp.enrollment_started",
            json!({"custodian": by.name}),
        );
        self.commit(tx, record).await?;
        Ok(TotpEnrollment {
            custodian: by.name.clone(),
            secret_base32: secret.expose_base32(),
            uri,
        })
    }

    /// Confirms the caller's pending enrolment with a first valid code; from then on their
    /// approvals need a code. The confirming code's step counts as used.
    pub async fn totp_confirm(&self, by: &Actor, code: &str) -> Result<TotpStatus, EngineError> {
        by.may(Action::Approve)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let Some(mut rec) = tx.totp(&by.name).await? else {
            return Err(SecondFactorError::NotEnrolled {
                custodian: by.name.clone(),
                why: "start with `breakglass totp enroll`".into(),
            }
            .into());
        };
        if rec.active {
            return Err(EngineError::Conflict(format!(
                "`{}`'s TOTP enrolment is already confirmed",
                by.name
            )));
        }
        let step = match self.verify_code(&mut rec, code, now) {
            Ok(step) => step,
            Err(e) => {
                tx.put_totp(&rec).await?;
                let mut record = Record::default();
                record.event(
                    now,
                    &by.name,
                    "totp.rejected",
                    json!({"custodian": by.name, "during": "confirm", "reason": e.code(), "failures": rec.failures}),
                );
                self.commit(tx, record).await?;
                return Err(e.into());
            }
        };
        rec.active = true;
        rec.confirmed_at = Some(now);
        rec.last_step = Some(i64::try_from(step).unwrap_or(i64::MAX));
        rec.failures = 0;
        rec.failure_window_start = None;
        rec.locked_until = None;
        tx.put_totp(&rec).await?;
        let mut record = Record::default();
        record.event(
            now,
            &by.name,
            "totp.enrolled",
            json!({"custodian": by.name}),
        );
        self.commit(tx, record).await?;
        Ok(TotpStatus::from(&rec))
    }

    /// Removes a custodian's TOTP enrolment: their own (custodian), or anyone's (admin, e.g.
    /// a lost phone or a lock-out). Audited with who did it.
    pub async fn totp_reset(&self, by: &Actor, custodian: &str) -> Result<(), EngineError> {
        if custodian == by.name {
            by.may(Action::Approve)?;
        } else {
            by.may(Action::ManageActors)?;
        }
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let was = tx
            .totp(custodian)
            .await?
            .ok_or_else(|| EngineError::not_found("TOTP enrolment of", custodian))?;
        tx.delete_totp(custodian).await?;
        let mut record = Record::default();
        record.event(
            now,
            &by.name,
            "totp.removed",
            json!({"custodian": custodian, "was_active": was.active, "by_admin": custodian != by.name}),
        );
        self.commit(tx, record).await?;
        Ok(())
    }

    /// Every TOTP enrolment (admins and auditors), or the caller's own.
    pub async fn totp_status(&self, by: &Actor) -> Result<Vec<TotpStatus>, EngineError> {
        by.may(Action::Read)?;
        let all = self.store().read().await?.totp_records().await?;
        let everyone = by.may(Action::ReadAudit).is_ok();
        Ok(all
            .iter()
            .filter(|r| everyone || r.custodian == by.name)
            .map(TotpStatus::from)
            .collect())
    }

    /// Names of the custodians with an active TOTP enrolment (readiness).
    pub(crate) async fn totp_active(&self, tx: &mut dyn Tx) -> Result<Vec<String>, EngineError> {
        Ok(tx
            .totp_records()
            .await?
            .into_iter()
            .filter(|r| r.active)
            .map(|r| r.custodian)
            .collect())
    }

    /// The second-factor gate of an approval by `custodian` of a break of `procedure`, inside
    /// the approval's transaction. A passed code's step is stored by the caller with the
    /// approval (`Tx::advance_totp_step`).
    pub(crate) async fn second_factor_gate(
        &self,
        tx: &mut dyn Tx,
        procedure: &Procedure,
        custodian: &str,
        proof: SecondFactorProof<'_>,
        now: Timestamp,
    ) -> Result<Gate, EngineError> {
        if let SecondFactorProof::DrillExempt = proof {
            return Ok(Gate::Skip("drill"));
        }
        let rec = tx.totp(custodian).await?.filter(|r| r.active);
        let key = procedure.custodian(custodian).map(|c| &c.key);
        let required = procedure
            .second_factor
            .filter(|rule| key.is_none_or(|k| rule.needs_totp(k)));
        let hardware = procedure.second_factor.is_some() && key.is_some_and(|k| k.is_hardware());
        let Some(mut rec) = rec else {
            return Ok(match (required, proof) {
                (Some(rule), _) => Gate::Refused(
                    SecondFactorError::NotEnrolled {
                        custodian: custodian.to_owned(),
                        why: format!(
                            "procedure `{}` requires `second_factor: {rule}`; enrol with `breakglass totp enroll` and `breakglass totp confirm CODE`",
                            procedure.id
                        ),
                    },
                    None,
                ),
                (None, SecondFactorProof::Code(_)) => Gate::Refused(
                    SecondFactorError::NotEnrolled {
                        custodian: custodian.to_owned(),
                        why: "a TOTP code was given but there is nothing to check it against; approve without --totp, or enrol first".into(),
                    },
                    None,
                ),
                (None, _) if hardware => Gate::Hardware,
                (None, _) => Gate::Skip("none"),
            });
        };
        let code = match proof {
            SecondFactorProof::Code(code) => code,
            _ => {
                let why = match required {
                    Some(rule) => format!(
                        "procedure `{}` requires `second_factor: {rule}`",
                        procedure.id
                    ),
                    None => "they enrolled TOTP".into(),
                };
                return Ok(Gate::Refused(
                    SecondFactorError::Missing {
                        custodian: custodian.to_owned(),
                        why,
                    },
                    None,
                ));
            }
        };
        Ok(match self.verify_code(&mut rec, code, now) {
            Ok(step) => Gate::Passed(step),
            Err(e) => Gate::Refused(e, Some(rec)),
        })
    }

    /// Checks a code against an enrolment: refused while locked; a wrong or malformed code is
    /// counted in `rec` (and locks it at the limit); a used step is refused without counting.
    fn verify_code(
        &self,
        rec: &mut TotpRecord,
        code: &str,
        now: Timestamp,
    ) -> Result<u64, SecondFactorError> {
        if let Some(until) = rec.locked_until
            && now < until
        {
            return Err(SecondFactorError::Locked {
                custodian: rec.custodian.clone(),
                until,
                seconds: (until.since(now) + 999) / 1000,
            });
        }
        let secret = open_totp_secret(&self.inner.totp_key, &rec.custodian, &rec.sealed_secret)
            .map_err(|reason| SecondFactorError::Refused {
                reason,
                lock: String::new(),
            })?;
        let unix_seconds = u64::try_from(now.0 / 1000).unwrap_or(0);
        let last = rec.last_step.and_then(|s| u64::try_from(s).ok());
        match check_totp(&secret, code, unix_seconds, last) {
            Ok(step) => Ok(step),
            Err(TotpError::Reused) => Err(SecondFactorError::Refused {
                reason: TotpError::Reused,
                lock: String::new(),
            }),
            Err(reason) => {
                let window = TOTP_FAILURE_WINDOW.as_millis() as i64;
                match rec.failure_window_start {
                    Some(start) if now.since(start) < window => rec.failures += 1,
                    _ => {
                        rec.failure_window_start = Some(now);
                        rec.failures = 1;
                    }
                }
                rec.locked_until = None;
                let mut lock = String::new();
                if rec.failures >= TOTP_MAX_FAILURES {
                    let until = now.plus(TOTP_LOCKOUT);
                    rec.locked_until = Some(until);
                    rec.failures = 0;
                    rec.failure_window_start = None;
                    lock = format!(
                        "; {TOTP_MAX_FAILURES} wrong codes within 5 minutes: TOTP for `{}` is locked until {until} (15 minutes)",
                        rec.custodian
                    );
                }
                Err(SecondFactorError::Refused { reason, lock })
            }
        }
    }
}
