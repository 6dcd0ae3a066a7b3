//! Actors, their roles, and the authorization matrix. The engine asks `Actor::may` before every
//! use case; handlers never decide who may do what.

use std::fmt;

use breakglass_custody::CustodianKey;

/// A role an actor holds. An actor may hold several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Applies procedures, seals credentials, enrols actors.
    Admin,
    /// Opens breaks, receives grants, closes their own breaks.
    Requester,
    /// Holds a share and approves breaks.
    Custodian,
    /// Reads everything, changes nothing.
    Auditor,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Requester, Role::Custodian, Role::Auditor];

    /// The name used in the API and CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Requester => "requester",
            Role::Custodian => "custodian",
            Role::Auditor => "auditor",
        }
    }

    /// Parses a role name.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something an actor may try to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Apply procedure files.
    ApplyProcedure,
    /// Seal or re-seal a procedure's credential.
    Seal,
    /// Enrol actors and issue tokens.
    ManageActors,
    /// Open a break.
    OpenBreak,
    /// Approve a break with one's share.
    Approve,
    /// Reveal a granted secret (the requester only; checked again by the lifecycle).
    Reveal,
    /// Close a break early.
    CloseBreak,
    /// Read procedures, breaks and actors.
    Read,
    /// Read and export the audit log.
    ReadAudit,
    /// Run a target's health check or discovery (records a report; opens nothing).
    CheckTarget,
    /// Run a drill (automated drills use the drill credential; live ones open a real break).
    RunDrill,
    /// Read the people inventory (who holds what, their contacts and keys).
    ReadPeople,
    /// Confirm a human step of an external-custody break or drill (the engine also checks
    /// that the actor is a holder, the run's opener or an admin).
    CustodyStep,
    /// Record that an externally held credential is in its place, or was rotated (the engine
    /// also checks that the actor is the holder, or an admin recording for them).
    AttestCustody,
}

/// An enrolled actor.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    /// Unique name.
    pub name: String,
    /// Roles held.
    pub roles: Vec<Role>,
    /// Public key used to sign in (humans); `None` for token-only machines.
    pub key: Option<CustodianKey>,
}

/// Refusal of an action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{actor}` may not {action}: it needs the {needs} role")]
pub struct Denied {
    /// Who asked.
    pub actor: String,
    /// What they asked, in words.
    pub action: &'static str,
    /// Roles that would allow it.
    pub needs: String,
}

impl Actor {
    /// Whether this actor holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The authorization matrix.
    pub fn may(&self, action: Action) -> Result<(), Denied> {
        let (allowed, words): (&[Role], &'static str) = match action {
            Action::ApplyProcedure => (&[Role::Admin], "apply procedures"),
            Action::Seal => (&[Role::Admin], "seal credentials"),
            Action::ManageActors => (&[Role::Admin], "manage actors"),
            Action::OpenBreak => (&[Role::Requester, Role::Admin], "open breaks"),
            Action::Approve => (&[Role::Custodian], "approve breaks"),
            Action::Reveal => (&[Role::Requester, Role::Admin], "reveal grants"),
            Action::CloseBreak => (&[Role::Requester, Role::Admin], "close breaks"),
            Action::Read => (&Role::ALL, "read"),
            Action::ReadAudit => (&[Role::Admin, Role::Auditor], "read the audit log"),
            Action::CheckTarget => (&[Role::Admin], "check targets"),
            Action::RunDrill => (&[Role::Admin, Role::Requester], "run drills"),
            Action::ReadPeople => (&[Role::Admin, Role::Auditor], "read the people inventory"),
            Action::CustodyStep => (
                &[Role::Admin, Role::Requester, Role::Custodian],
                "confirm external custody steps",
            ),
            Action::AttestCustody => (
                &[Role::Admin, Role::Custodian],
                "attest or rotate externally held credentials",
            ),
        };
        if allowed.iter().any(|r| self.has(*r)) {
            Ok(())
        } else {
            Err(Denied {
                actor: self.name.clone(),
                action: words,
                needs: allowed
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(roles: &[Role]) -> Actor {
        Actor {
            name: "x".into(),
            roles: roles.to_vec(),
            key: None,
        }
    }

    #[test]
    fn matrix() {
        let auditor = actor(&[Role::Auditor]);
        assert!(auditor.may(Action::Read).is_ok());
        assert!(auditor.may(Action::ReadAudit).is_ok());
        for a in [
            Action::ApplyProcedure,
            Action::Seal,
            Action::OpenBreak,
            Action::Approve,
            Action::Reveal,
            Action::CloseBreak,
            Action::ManageActors,
        ] {
            assert!(auditor.may(a).is_err(), "auditor may {a:?}");
        }
        let custodian = actor(&[Role::Custodian]);
        assert!(custodian.may(Action::Approve).is_ok());
        assert_eq!(
            custodian.may(Action::OpenBreak).unwrap_err().to_string(),
            "`x` may not open breaks: it needs the requester or admin role"
        );
        assert!(actor(&[Role::Requester]).may(Action::Approve).is_err());
        assert!(auditor.may(Action::ReadPeople).is_ok());
        assert!(custodian.may(Action::ReadPeople).is_err());
        assert!(actor(&[Role::Requester]).may(Action::ReadPeople).is_err());
        assert!(auditor.may(Action::CustodyStep).is_err());
        assert!(auditor.may(Action::AttestCustody).is_err());
        assert!(custodian.may(Action::CustodyStep).is_ok());
        assert!(custodian.may(Action::AttestCustody).is_ok());
        assert_eq!(
            actor(&[Role::Requester])
                .may(Action::AttestCustody)
                .unwrap_err()
                .to_string(),
            "`x` may not attest or rotate externally held credentials: it needs the admin or custodian role"
        );
    }
}
