//! The break lifecycle as types: `Requested` → `Granted` → `Ended`.
//!
//! Each state holds only the data valid in it and each transition consumes the old state, so
//! "reveal a break that was never granted" or "approve an ended break" cannot be written; the
//! checks that depend on time or on who is asking return named errors.

use std::fmt;
use std::time::Duration;

use crate::procedure::Procedure;
use crate::time::Timestamp;

/// Identifier of a break, e.g. `brk_1f2e3d4c5b6a7980`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BreakId(pub String);

impl fmt::Display for BreakId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What every state of a break knows.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakInfo {
    /// Identifier.
    pub id: BreakId,
    /// The procedure opened.
    pub procedure: String,
    /// The seal whose shares open it.
    pub seal_id: String,
    /// Who asked.
    pub requester: String,
    /// Why.
    pub reason: String,
    /// Incident or change ticket.
    pub ticket: String,
    /// Grant length asked for.
    pub duration: Duration,
    /// When it was asked.
    pub requested_at: Timestamp,
    /// Approvals must arrive before this instant or the request lapses.
    pub approval_deadline: Timestamp,
    /// Approvals so far, in arrival order.
    pub approvals: Vec<Approval>,
    /// Approvals needed.
    pub quorum: u8,
    /// The drill this break belongs to, if it is one (alerts then say DRILL).
    pub drill: Option<String>,
}

/// One custodian's accepted share.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    /// The custodian.
    pub custodian: String,
    /// When the share was accepted.
    pub at: Timestamp,
}

/// A break waiting for custodians.
#[derive(Debug, Clone, PartialEq)]
pub struct Requested {
    /// Common data.
    pub info: BreakInfo,
}

/// A break whose quorum was reached: the grant is live until `deadline`.
#[derive(Debug, Clone, PartialEq)]
pub struct Granted {
    /// Common data.
    pub info: BreakInfo,
    /// When the quorum was reached and the grant issued.
    pub granted_at: Timestamp,
    /// When the grant ends.
    pub deadline: Timestamp,
    /// When the requester revealed the secret, if they have.
    pub revealed_at: Option<Timestamp>,
}

/// A finished break.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    /// Common data.
    pub info: BreakInfo,
    /// When it was granted, if it was.
    pub granted_at: Option<Timestamp>,
    /// The grant's deadline, if it was granted.
    pub deadline: Option<Timestamp>,
    /// When the secret was revealed, if it was.
    pub revealed_at: Option<Timestamp>,
    /// When it ended.
    pub ended_at: Timestamp,
    /// How it ended.
    pub reason: EndReason,
}

/// How a break ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The grant reached its deadline.
    Expired,
    /// Someone closed it early.
    Closed {
        /// Who.
        by: String,
    },
    /// The quorum was not reached before the approval deadline.
    Lapsed,
}

impl EndReason {
    /// Name used in the API and the store.
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::Closed { .. } => "closed",
            EndReason::Lapsed => "lapsed",
        }
    }
}

/// A break in any state.
#[derive(Debug, Clone, PartialEq)]
pub enum Break {
    /// Waiting for custodians.
    Requested(Requested),
    /// Grant live.
    Granted(Granted),
    /// Over.
    Ended(Ended),
}

impl Break {
    /// Common data.
    pub fn info(&self) -> &BreakInfo {
        match self {
            Break::Requested(r) => &r.info,
            Break::Granted(g) => &g.info,
            Break::Ended(e) => &e.info,
        }
    }

    /// The state's name: `requested`, `granted`, `expired`, `closed` or `lapsed`.
    pub fn state(&self) -> &'static str {
        match self {
            Break::Requested(_) => "requested",
            Break::Granted(_) => "granted",
            Break::Ended(e) => e.reason.as_str(),
        }
    }
}

/// Why a break cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The reason is empty.
    #[error("a reason is required")]
    NoReason,
    /// The ticket is empty.
    #[error("a ticket is required")]
    NoTicket,
    /// More time than the procedure allows.
    #[error("duration {asked} is longer than the procedure's max_grant of {max}")]
    TooLong {
        /// Asked, rendered.
        asked: String,
        /// Allowed, rendered.
        max: String,
    },
    /// The requester is a custodian and the others cannot make quorum without them.
    #[error(
        "two-person rule: only {others} custodian(s) other than `{requester}`, quorum is {quorum}"
    )]
    QuorumUnreachable {
        /// The requester.
        requester: String,
        /// Custodians other than the requester.
        others: usize,
        /// Quorum.
        quorum: u8,
    },
}

/// Why an approval is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApproveError {
    /// The requester tried to approve their own break.
    #[error("`{0}` requested this break and cannot approve it (two-person rule)")]
    SelfApproval(String),
    /// Not a custodian of this procedure.
    #[error("`{custodian}` is not a custodian of procedure `{procedure}`")]
    NotACustodian {
        /// Who.
        custodian: String,
        /// Procedure.
        procedure: String,
    },
    /// Already approved.
    #[error("`{0}` has already approved this break")]
    AlreadyApproved(String),
    /// The approval window has passed.
    #[error("the approval window closed at {0}")]
    Lapsed(Timestamp),
    /// The quorum is already reached.
    #[error("break is already granted")]
    AlreadyGranted,
    /// The break has ended.
    #[error("break has ended ({0})")]
    Ended(&'static str),
}

/// Why a reveal is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevealError {
    /// Only the requester may reveal.
    #[error("only the requester `{requester}` may reveal this grant, not `{actor}`")]
    NotRequester {
        /// The requester.
        requester: String,
        /// Who asked.
        actor: String,
    },
    /// The grant window is over.
    #[error("the grant window closed at {0}")]
    WindowClosed(Timestamp),
    /// It was revealed before.
    #[error("the secret was already revealed at {0}; a grant reveals once")]
    AlreadyRevealed(Timestamp),
    /// Not granted yet.
    #[error("break is not granted yet ({approvals} of {quorum} approvals)")]
    NotGranted {
        /// Approvals so far.
        approvals: usize,
        /// Quorum.
        quorum: u8,
    },
    /// Ended.
    #[error("break has ended ({0})")]
    Ended(&'static str),
}

/// Why a close is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    /// Already over.
    #[error("break has already ended ({0})")]
    Ended(&'static str),
    /// Only the requester or an admin may close.
    #[error("only the requester `{0}` or an admin may close this break")]
    NotAllowed(String),
}

impl Requested {
    /// Opens a break on `procedure`. `duration` defaults to the procedure's `max_grant`.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        id: BreakId,
        procedure: &Procedure,
        seal_id: String,
        requester: &str,
        reason: &str,
        ticket: &str,
        duration: Option<Duration>,
        now: Timestamp,
        approval_window: Duration,
    ) -> Result<Requested, OpenError> {
        if reason.trim().is_empty() {
            return Err(OpenError::NoReason);
        }
        if ticket.trim().is_empty() {
            return Err(OpenError::NoTicket);
        }
        let duration = duration.unwrap_or(procedure.max_grant);
        if duration > procedure.max_grant || duration.is_zero() {
            return Err(OpenError::TooLong {
                asked: crate::time::format_duration(duration),
                max: crate::time::format_duration(procedure.max_grant),
            });
        }
        let others = procedure
            .custodians
            .iter()
            .filter(|c| c.name != requester)
            .count();
        if others < usize::from(procedure.quorum) {
            return Err(OpenError::QuorumUnreachable {
                requester: requester.to_owned(),
                others,
                quorum: procedure.quorum,
            });
        }
        Ok(Requested {
            info: BreakInfo {
                id,
                procedure: procedure.id.clone(),
                seal_id,
                requester: requester.to_owned(),
                reason: reason.trim().to_owned(),
                ticket: ticket.trim().to_owned(),
                duration,
                requested_at: now,
                approval_deadline: now.plus(approval_window),
                approvals: Vec::new(),
                quorum: procedure.quorum,
                drill: None,
            },
        })
    }

    /// Checks that `custodian` may approve now, without changing anything. The engine calls
    /// this before it decrypts or verifies a share, so a refused approval costs nothing.
    pub fn check_approval(
        &self,
        custodian: &str,
        procedure: &Procedure,
        now: Timestamp,
    ) -> Result<(), ApproveError> {
        if now >= self.info.approval_deadline {
            return Err(ApproveError::Lapsed(self.info.approval_deadline));
        }
        if custodian == self.info.requester {
            return Err(ApproveError::SelfApproval(custodian.to_owned()));
        }
        if procedure.custodian(custodian).is_none() {
            return Err(ApproveError::NotACustodian {
                custodian: custodian.to_owned(),
                procedure: procedure.id.clone(),
            });
        }
        if self.info.approvals.iter().any(|a| a.custodian == custodian) {
            return Err(ApproveError::AlreadyApproved(custodian.to_owned()));
        }
        Ok(())
    }

    /// Records an approval.
    pub fn approve(
        mut self,
        custodian: &str,
        procedure: &Procedure,
        now: Timestamp,
    ) -> Result<Requested, ApproveError> {
        self.check_approval(custodian, procedure, now)?;
        self.info.approvals.push(Approval {
            custodian: custodian.to_owned(),
            at: now,
        });
        Ok(self)
    }

    /// Whether the quorum is reached.
    pub fn has_quorum(&self) -> bool {
        self.info.approvals.len() >= usize::from(self.info.quorum)
    }

    /// Issues the grant; `None` (and the break back) while the quorum is not reached.
    pub fn grant(self, now: Timestamp) -> Result<Granted, Requested> {
        if !self.has_quorum() {
            return Err(self);
        }
        let deadline = now.plus(self.info.duration);
        Ok(Granted {
            info: self.info,
            granted_at: now,
            deadline,
            revealed_at: None,
        })
    }

    /// Ends the request because its approval window passed.
    pub fn lapse(self, now: Timestamp) -> Result<Ended, Requested> {
        if now < self.info.approval_deadline {
            return Err(self);
        }
        Ok(self.end(now, EndReason::Lapsed))
    }

    /// Withdraws the request.
    pub fn close(self, by: &str, now: Timestamp) -> Ended {
        self.end(now, EndReason::Closed { by: by.to_owned() })
    }

    fn end(self, now: Timestamp, reason: EndReason) -> Ended {
        Ended {
            info: self.info,
            granted_at: None,
            deadline: None,
            revealed_at: None,
            ended_at: now,
            reason,
        }
    }
}

impl Granted {
    /// The single reveal to the requester within the window.
    pub fn reveal(mut self, actor: &str, now: Timestamp) -> Result<Granted, RevealError> {
        if actor != self.info.requester {
            return Err(RevealError::NotRequester {
                requester: self.info.requester.clone(),
                actor: actor.to_owned(),
            });
        }
        if now >= self.deadline {
            return Err(RevealError::WindowClosed(self.deadline));
        }
        if let Some(at) = self.revealed_at {
            return Err(RevealError::AlreadyRevealed(at));
        }
        self.revealed_at = Some(now);
        Ok(self)
    }

    /// Ends the grant at its deadline; gives the grant back when the deadline is still ahead.
    pub fn expire(self, now: Timestamp) -> Result<Ended, Granted> {
        if now < self.deadline {
            return Err(self);
        }
        Ok(self.end(now, EndReason::Expired))
    }

    /// Ends the grant early.
    pub fn close(self, by: &str, now: Timestamp) -> Ended {
        self.end(now, EndReason::Closed { by: by.to_owned() })
    }

    fn end(self, now: Timestamp, reason: EndReason) -> Ended {
        Ended {
            granted_at: Some(self.granted_at),
            deadline: Some(self.deadline),
            revealed_at: self.revealed_at,
            info: self.info,
            ended_at: now,
            reason,
        }
    }
}

impl Ended {
    /// Whether the data key was combined during this break (so the seal is exposed).
    pub fn was_granted(&self) -> bool {
        self.granted_at.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procedure::{Custodian, Target, TargetKind};
    use breakglass_custody::CustodianKey;

    fn procedure() -> Procedure {
        let key = |s: &str| CustodianKey::parse(s).expect("key");
        Procedure {
            id: "p".into(),
            description: String::new(),
            target: Target {
                kind: TargetKind::Secret,
                details: Default::default(),
            },
            custodians: ["alice", "bob", "carol"]
                .iter()
                .zip([
                    "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
                    "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
                    "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
                ])
                .map(|(n, k)| Custodian {
                    name: (*n).into(),
                    contact: String::new(),
                    key: key(k),
                })
                .collect(),
            quorum: 2,
            max_grant: Duration::from_secs(900),
            alert_channels: vec![],
            ack_within: None,
            escalation: vec![],
            max_credential_age: None,
            drill_every: None,
            drill_automated: false,
            drill_max_time_to_access: None,
            drill_cron: None,
            dependencies: vec![],
            protects_against: vec![],
            second_factor: None,
            external: None,
        }
    }

    fn open(requester: &str) -> Result<Requested, OpenError> {
        Requested::open(
            BreakId("brk_1".into()),
            &procedure(),
            "seal_1".into(),
            requester,
            "db down",
            "INC-1",
            None,
            Timestamp(1000),
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn full_path() {
        let p = procedure();
        let r = open("dave").expect("open");
        assert_eq!(r.info.duration, Duration::from_secs(900));
        let r = r.approve("alice", &p, Timestamp(2000)).expect("alice");
        let r = r.grant(Timestamp(2000)).expect_err("no quorum yet");
        assert_eq!(
            r.clone().approve("alice", &p, Timestamp(2100)).unwrap_err(),
            ApproveError::AlreadyApproved("alice".into())
        );
        let r = r.approve("bob", &p, Timestamp(3000)).expect("bob");
        let g = r.grant(Timestamp(3000)).expect("quorum");
        assert_eq!(g.deadline, Timestamp(3000 + 900_000));
        assert!(matches!(
            g.clone().reveal("alice", Timestamp(4000)),
            Err(RevealError::NotRequester { .. })
        ));
        let g = g.reveal("dave", Timestamp(4000)).expect("reveal");
        assert_eq!(
            g.clone().reveal("dave", Timestamp(5000)).unwrap_err(),
            RevealError::AlreadyRevealed(Timestamp(4000))
        );
        let g = g.expire(Timestamp(902_999)).expect_err("not yet");
        let e = g.expire(Timestamp(903_000)).expect("expired");
        assert_eq!(e.reason, EndReason::Expired);
        assert!(e.was_granted());
    }

    #[test]
    fn two_person_rule() {
        let p = procedure();
        let r = open("alice").expect("two others remain");
        assert_eq!(
            r.approve("alice", &p, Timestamp(2000)).unwrap_err(),
            ApproveError::SelfApproval("alice".into())
        );
        let mut p3 = procedure();
        p3.quorum = 3;
        let err = Requested::open(
            BreakId("b".into()),
            &p3,
            "s".into(),
            "alice",
            "r",
            "t",
            None,
            Timestamp(0),
            Duration::from_secs(60),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            OpenError::QuorumUnreachable {
                others: 2,
                quorum: 3,
                ..
            }
        ));
    }

    #[test]
    fn windows() {
        let p = procedure();
        let r = open("dave").expect("open");
        assert_eq!(
            r.clone()
                .approve("bob", &p, Timestamp(3_601_000))
                .unwrap_err(),
            ApproveError::Lapsed(Timestamp(3_601_000))
        );
        assert!(r.clone().lapse(Timestamp(3_600_999)).is_err());
        assert_eq!(
            r.lapse(Timestamp(3_601_000)).expect("lapsed").reason,
            EndReason::Lapsed
        );
        let g = open("dave")
            .unwrap()
            .approve("alice", &p, Timestamp(1))
            .unwrap()
            .approve("bob", &p, Timestamp(2))
            .unwrap()
            .grant(Timestamp(2))
            .unwrap();
        assert_eq!(
            g.reveal("dave", Timestamp(900_002)).unwrap_err(),
            RevealError::WindowClosed(Timestamp(900_002))
        );
        assert!(matches!(
            open("dave").unwrap().approve("zed", &p, Timestamp(5)),
            Err(ApproveError::NotACustodian { .. })
        ));
    }

    #[test]
    fn open_checks_inputs() {
        let p = procedure();
        let mk = |reason: &str, ticket: &str, d: Option<Duration>| {
            Requested::open(
                BreakId("b".into()),
                &p,
                "s".into(),
                "dave",
                reason,
                ticket,
                d,
                Timestamp(0),
                Duration::from_secs(60),
            )
        };
        assert_eq!(mk(" ", "T", None).unwrap_err(), OpenError::NoReason);
        assert_eq!(mk("r", "", None).unwrap_err(), OpenError::NoTicket);
        assert_eq!(
            mk("r", "t", Some(Duration::from_secs(3600)))
                .unwrap_err()
                .to_string(),
            "duration 1h is longer than the procedure's max_grant of 15m"
        );
    }
}
