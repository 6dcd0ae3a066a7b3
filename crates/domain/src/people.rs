//! Who is on the hook: the inventory per person. A person is a custodian name — the same name
//! in several procedures is the same person (and the actor they sign in as). For each person:
//! their contact(s) as the procedure files give them, every procedure they hold a share of and
//! whether it could still reach its quorum without them, their keys with the latest
//! attestation and lost declaration, and their latest drill participation. Pure rules: the
//! engine gathers the records.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::procedure::Procedure;
use crate::time::{Timestamp, format_duration};

/// What the store knows of one custodian key (the engine's attestation record, as plain data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Custodian name.
    pub custodian: String,
    /// Key fingerprint.
    pub fingerprint: String,
    /// Latest successful attestation.
    pub attested_at: Option<Timestamp>,
    /// When the key was declared lost.
    pub lost_at: Option<Timestamp>,
    /// Why (no secrets).
    pub lost_reason: Option<String>,
}

/// A drill a person took part in (their share was accepted in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillSeen {
    /// The custodian whose share was accepted.
    pub custodian: String,
    /// Drill id.
    pub drill: String,
    /// Procedure drilled.
    pub procedure: String,
    /// `automated` or `live`.
    pub mode: String,
    /// `passed`, `failed` or `running`.
    pub outcome: String,
    /// When the drill finished (or started, while it runs).
    pub at: Timestamp,
}

/// One procedure a person holds a share of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// Procedure id.
    pub procedure: String,
    /// The current seal, if sealed.
    pub seal_id: Option<String>,
    /// Approvals needed (M).
    pub quorum: u8,
    /// Custodians (N).
    pub custodians: usize,
    /// The other custodians whose key is not declared lost.
    pub others_available: usize,
    /// Whether the others could still reach the quorum without this person.
    pub reachable_without: bool,
    /// External custody: where the credential lives (then `quorum` is how many holders must
    /// be present and `custodians` how many hold it; there are no shares or keys).
    pub location: Option<String>,
    /// External custody: this holder's latest confirmation of the safe's contents.
    pub attested_at: Option<Timestamp>,
}

/// One key a person holds shares under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldKey {
    /// Fingerprint (`CustodianKey::fingerprint`).
    pub fingerprint: String,
    /// Key kind, in words (`age X25519`, `ssh-ed25519`).
    pub kind: String,
    /// The procedures whose shares are sealed to it.
    pub procedures: Vec<String>,
    /// Latest successful attestation.
    pub attested_at: Option<Timestamp>,
    /// Never attested, or attested longer ago than the server's maximum age.
    pub overdue: bool,
    /// When it was declared lost.
    pub lost_at: Option<Timestamp>,
    /// Why.
    pub lost_reason: Option<String>,
}

/// A contact as the procedure files give it, with the procedures that give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The contact as written (may be empty: the file gave none).
    pub contact: String,
    /// Procedures giving it.
    pub procedures: Vec<String>,
}

/// Something to fix about a person, readiness-style: a stable code and words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Stable code (`person.single_point_of_failure`, `person.contact_mismatch`,
    /// `person.no_contact`, `person.attestation_overdue`, `person.key_lost`).
    pub code: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

/// One person and what they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Custodian (and actor) name.
    pub name: String,
    /// Their contacts, one per distinct value, in procedure order.
    pub contacts: Vec<Contact>,
    /// Every procedure they hold a share of, by id.
    pub holdings: Vec<Holding>,
    /// Their keys, by fingerprint.
    pub keys: Vec<HeldKey>,
    /// Their latest drill participation, if the store has one.
    pub last_drill: Option<DrillSeen>,
    /// What to fix, most serious first.
    pub warnings: Vec<Warning>,
}

impl Person {
    /// The procedures that could not reach their quorum without this person.
    pub fn critical(&self) -> Vec<&str> {
        self.holdings
            .iter()
            .filter(|h| !h.reachable_without)
            .map(|h| h.procedure.as_str())
            .collect()
    }

    /// Whether some procedure could not reach its quorum without this person.
    pub fn single_point_of_failure(&self) -> bool {
        self.holdings.iter().any(|h| !h.reachable_without)
    }

    /// The contact in one line: the single one, or every distinct one joined with ` / `;
    /// `no contact` when the files give none.
    pub fn contact(&self) -> String {
        let all: Vec<&str> = self
            .contacts
            .iter()
            .map(|c| c.contact.as_str())
            .filter(|c| !c.is_empty())
            .collect();
        if all.is_empty() {
            "no contact".into()
        } else {
            all.join(" / ")
        }
    }
}

/// The name and contact of a custodian, as alerts, drills and attestations write them:
/// `alice <alice@example.com>`, or `alice <no contact>`.
pub fn named(name: &str, contact: &str) -> String {
    if contact.trim().is_empty() {
        format!("{name} <no contact>")
    } else {
        format!("{name} <{}>", contact.trim())
    }
}

/// What the inventory is computed from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Every procedure with its current seal id.
    pub procedures: &'a [(&'a Procedure, Option<&'a str>)],
    /// Every key record.
    pub keys: &'a [KeyRecord],
    /// Drill participations (any order; the latest per person is kept).
    pub drills: &'a [DrillSeen],
    /// Now.
    pub now: Timestamp,
    /// Attestations older than this are overdue.
    pub attestation_max_age: Duration,
    /// Holders' attestations and rotations of externally kept credentials.
    pub custody: &'a [crate::external::CustodyRecord],
}

/// The inventory: one [`Person`] per custodian name, sorted by name.
pub fn inventory(inputs: Inputs<'_>) -> Vec<Person> {
    let record = |name: &str, fp: &str| {
        inputs
            .keys
            .iter()
            .find(|k| k.custodian == name && k.fingerprint == fp)
    };
    let lost = |name: &str, fp: &str| record(name, fp).is_some_and(|k| k.lost_at.is_some());
    let mut people: BTreeMap<String, Person> = BTreeMap::new();
    for (p, seal) in inputs.procedures {
        for c in &p.custodians {
            let person = person_for(&mut people, &c.name, &c.contact, &p.id);
            let others_available = p
                .custodians
                .iter()
                .filter(|o| o.name != c.name && !lost(&o.name, &o.key.fingerprint()))
                .count();
            person.holdings.push(Holding {
                procedure: p.id.clone(),
                seal_id: seal.map(str::to_owned),
                quorum: p.quorum,
                custodians: p.custodians.len(),
                others_available,
                reachable_without: others_available >= usize::from(p.quorum),
                location: None,
                attested_at: None,
            });
            let fp = c.key.fingerprint();
            match person.keys.iter_mut().find(|k| k.fingerprint == fp) {
                Some(k) => k.procedures.push(p.id.clone()),
                None => {
                    let r = record(&c.name, &fp);
                    let attested_at = r.and_then(|r| r.attested_at);
                    person.keys.push(HeldKey {
                        fingerprint: fp.clone(),
                        kind: c.key.kind().to_string(),
                        procedures: vec![p.id.clone()],
                        attested_at,
                        overdue: attested_at.is_none_or(|t| {
                            u128::try_from(inputs.now.since(t)).unwrap_or(0)
                                > inputs.attestation_max_age.as_millis()
                        }),
                        lost_at: r.and_then(|r| r.lost_at),
                        lost_reason: r.and_then(|r| r.lost_reason.clone()),
                    });
                }
            }
        }
    }
    for (p, _) in inputs.procedures {
        let Some(custody) = &p.external else {
            continue;
        };
        for h in &custody.holders {
            let person = person_for(&mut people, &h.name, &h.contact, &p.id);
            let others_available = custody.holders.len().saturating_sub(1);
            person.holdings.push(Holding {
                procedure: p.id.clone(),
                seal_id: None,
                quorum: custody.present,
                custodians: custody.holders.len(),
                others_available,
                reachable_without: others_available >= usize::from(custody.present),
                location: Some(custody.location.clone()),
                attested_at: crate::external::latest(
                    inputs.custody,
                    &p.id,
                    Some(&h.name),
                    crate::external::RecordKind::Attested,
                )
                .map(|r| r.at),
            });
        }
    }
    for d in inputs.drills {
        if let Some(person) = people.get_mut(&d.custodian)
            && person.last_drill.as_ref().is_none_or(|l| l.at < d.at)
        {
            person.last_drill = Some(d.clone());
        }
    }
    let mut out: Vec<Person> = people.into_values().collect();
    for person in &mut out {
        person
            .holdings
            .sort_by(|a, b| a.procedure.cmp(&b.procedure));
        person.warnings = warnings(person, &inputs);
    }
    out
}

fn warnings(person: &Person, inputs: &Inputs<'_>) -> Vec<Warning> {
    let mut out = Vec::new();
    let critical = person.critical();
    if !critical.is_empty() {
        out.push(Warning {
            code: "person.single_point_of_failure",
            message: format!(
                "single point of failure: without {}, {} cannot reach {} quorum; add a custodian or lower the quorum",
                person.name,
                critical.join(", "),
                if critical.len() == 1 { "its" } else { "their" }
            ),
        });
    }
    for k in &person.keys {
        if k.lost_at.is_some() {
            out.push(Warning {
                code: "person.key_lost",
                message: format!(
                    "key {} declared lost{}: re-seal {} to a new key, or attest if it was found",
                    k.fingerprint,
                    k.lost_reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default(),
                    k.procedures.join(", ")
                ),
            });
        } else if k.overdue {
            out.push(Warning {
                code: "person.attestation_overdue",
                message: match k.attested_at {
                    Some(t) => format!(
                        "key {} last attested {} ago (more than {}): `breakglass custodian attest {}`",
                        k.fingerprint,
                        format_duration(Duration::from_millis(
                            u64::try_from(inputs.now.since(t)).unwrap_or(0)
                        )),
                        format_duration(inputs.attestation_max_age),
                        person.name
                    ),
                    None => format!(
                        "key {} never attested: `breakglass custodian attest {}`",
                        k.fingerprint, person.name
                    ),
                },
            });
        }
    }
    let given: Vec<&Contact> = person
        .contacts
        .iter()
        .filter(|c| !c.contact.trim().is_empty())
        .collect();
    if given.len() > 1 {
        out.push(Warning {
            code: "person.contact_mismatch",
            message: format!(
                "contact differs between procedures: {}; make the files agree",
                given
                    .iter()
                    .map(|c| format!("{} in {}", c.contact, c.procedures.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
    }
    if given.is_empty() {
        out.push(Warning {
            code: "person.no_contact",
            message: format!(
                "no procedure gives a contact for {}: nobody can reach them at 2 a.m.",
                person.name
            ),
        });
    } else if given.len() < person.contacts.len() {
        let missing: Vec<&str> = person
            .contacts
            .iter()
            .filter(|c| c.contact.trim().is_empty())
            .flat_map(|c| c.procedures.iter().map(String::as_str))
            .collect();
        out.push(Warning {
            code: "person.contact_mismatch",
            message: format!(
                "no contact in {} while others give one; make the files agree",
                missing.join(", ")
            ),
        });
    }
    out
}

/// The inventory entry of `name` (made on first sight), with `contact` recorded as given for
/// `procedure`.
fn person_for<'a>(
    people: &'a mut BTreeMap<String, Person>,
    name: &str,
    contact: &str,
    procedure: &str,
) -> &'a mut Person {
    let person = people.entry(name.to_owned()).or_insert_with(|| Person {
        name: name.to_owned(),
        contacts: Vec::new(),
        holdings: Vec::new(),
        keys: Vec::new(),
        last_drill: None,
        warnings: Vec::new(),
    });
    match person.contacts.iter_mut().find(|x| x.contact == contact) {
        Some(x) => x.procedures.push(procedure.to_owned()),
        None => person.contacts.push(Contact {
            contact: contact.to_owned(),
            procedures: vec![procedure.to_owned()],
        }),
    }
    person
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::procedure::{Custodian, Target, TargetKind};
    use breakglass_custody::CustodianKey;

    const KEY_A: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    fn procedure(id: &str, quorum: u8, custodians: &[(&str, &str)]) -> Procedure {
        Procedure {
            id: id.into(),
            description: String::new(),
            target: Target {
                kind: TargetKind::Secret,
                details: Default::default(),
            },
            custodians: custodians
                .iter()
                .map(|(name, contact)| Custodian {
                    name: (*name).into(),
                    contact: (*contact).into(),
                    key: CustodianKey::parse(KEY_A).unwrap(),
                })
                .collect(),
            quorum,
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

    #[test]
    fn criticality_contacts_and_overdue() {
        let two_of_two = procedure("db", 2, &[("alice", "a@x"), ("bob", "b@x")]);
        let two_of_three = procedure(
            "vault",
            2,
            &[("alice", "a@x"), ("bob", "@bob"), ("carol", "")],
        );
        let procedures = [(&two_of_two, Some("seal_1")), (&two_of_three, None)];
        let fp = CustodianKey::parse(KEY_A).unwrap().fingerprint();
        let day = 86_400_000;
        let keys = [KeyRecord {
            custodian: "alice".into(),
            fingerprint: fp.clone(),
            attested_at: Some(Timestamp(40 * day)),
            lost_at: None,
            lost_reason: None,
        }];
        let people = inventory(Inputs {
            procedures: &procedures,
            keys: &keys,
            drills: &[],
            now: Timestamp(45 * day),
            attestation_max_age: Duration::from_secs(30 * 86_400),
            custody: &[],
        });
        let names: Vec<&str> = people.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol"]);
        let alice = &people[0];
        assert_eq!(alice.critical(), ["db"]);
        assert!(alice.single_point_of_failure());
        assert!(!alice.keys[0].overdue);
        assert_eq!(alice.keys[0].procedures, ["db", "vault"]);
        let bob = &people[1];
        assert!(
            bob.warnings
                .iter()
                .any(|w| w.code == "person.contact_mismatch")
        );
        assert!(bob.keys[0].overdue, "never attested");
        assert_eq!(bob.contact(), "b@x / @bob");
        let carol = &people[2];
        assert!(!carol.single_point_of_failure());
        assert!(carol.warnings.iter().any(|w| w.code == "person.no_contact"));
        assert_eq!(named("carol", ""), "carol <no contact>");

        // Bob's key lost: alice and carol become critical to the 2-of-3.
        let keys = [KeyRecord {
            custodian: "bob".into(),
            fingerprint: fp,
            attested_at: None,
            lost_at: Some(Timestamp(44 * day)),
            lost_reason: Some("laptop stolen".into()),
        }];
        let people = inventory(Inputs {
            procedures: &procedures,
            keys: &keys,
            drills: &[],
            now: Timestamp(45 * day),
            attestation_max_age: Duration::from_secs(30 * 86_400),
            custody: &[],
        });
        assert_eq!(people[0].critical(), ["db", "vault"]);
        assert_eq!(people[2].critical(), ["vault"]);
        assert!(
            people[1]
                .warnings
                .iter()
                .any(|w| w.code == "person.key_lost")
        );
    }

    #[test]
    fn holders_of_external_custody_are_people() {
        use crate::procedure::{Limits, parse_procedures};
        let text = "id: aws-root\ntarget:\n  kind: external\ncustody:\n  location: safe B2\n  holders:\n    - {name: erin, contact: erin@x}\n    - {name: alice, contact: a@x}\n  present: 2\n  steps: [open the safe]\n";
        let external = parse_procedures("x.yaml", text, &Limits::default())
            .unwrap()
            .remove(0)
            .procedure;
        let sealed = procedure(
            "db",
            2,
            &[("alice", "a@x"), ("bob", "b@x"), ("carol", "c@x")],
        );
        let procedures = [(&sealed, Some("seal_1")), (&external, None)];
        let records = [crate::external::CustodyRecord {
            procedure: "aws-root".into(),
            holder: "erin".into(),
            kind: crate::external::RecordKind::Attested,
            at: Timestamp(7),
            recorded_by: "erin".into(),
            note: "token present".into(),
        }];
        let people = inventory(Inputs {
            procedures: &procedures,
            keys: &[],
            drills: &[],
            now: Timestamp(10),
            attestation_max_age: Duration::from_secs(30 * 86_400),
            custody: &records,
        });
        let names: Vec<&str> = people.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol", "erin"]);
        let alice = &people[0];
        assert_eq!(alice.holdings.len(), 2);
        let held = &alice.holdings[0];
        assert_eq!(held.procedure, "aws-root");
        assert_eq!(held.location.as_deref(), Some("safe B2"));
        assert_eq!((held.quorum, held.custodians), (2, 2));
        assert!(!held.reachable_without, "2 of 2 must be present");
        assert_eq!(held.attested_at, None);
        let erin = &people[3];
        assert_eq!(erin.holdings[0].attested_at, Some(Timestamp(7)));
        assert!(erin.keys.is_empty());
        assert!(erin.single_point_of_failure());
        assert_eq!(erin.contact(), "erin@x");
    }
}
