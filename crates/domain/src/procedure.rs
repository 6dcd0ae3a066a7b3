//! Procedures as code: the YAML file format, its validation, and the validated `Procedure`.
//!
//! A file holds one procedure or several, as YAML documents separated by `---`. Parsing
//! keeps the line and column of every field that validation may reject, so each error names
//! the file, the position and the field.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use breakglass_custody::CustodianKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};

/// Largest procedure file accepted, in bytes: procedure files are small and hand-written.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// One procedure as written in a file. Field order here is the order in the JSON Schema.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcedureSpec {
    /// Stable identifier: lowercase letters, digits, `-`, `_` and `.`, at most 64 characters.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// What this path opens and when to use it.
    #[serde(default)]
    pub description: String,
    /// The system the procedure opens (never its secret).
    pub target: TargetSpec,
    /// The people who each hold one share of the sealed credential (sealed targets only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custodians: Vec<CustodianSpec>,
    /// How many custodians must approve (at least 2, at most the number of custodians;
    /// sealed targets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<u8>")]
    pub quorum: Option<Spanned<u8>>,
    /// Longest grant a break may ask for, e.g. `15m` or `1h` (sealed targets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub max_grant: Option<Spanned<String>>,
    /// Where a credential breakglass cannot seal lives and who holds it (`kind: external`
    /// targets only): location, holders, how many must be present, the human steps, and
    /// how often a holder confirms the safe's contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custody: Option<crate::external::CustodySpec>,
    /// Names of the alert channels told about every break.
    #[serde(default)]
    pub alert_channels: Vec<String>,
    /// A human must acknowledge the break alert within this time (e.g. `5m`), or it escalates.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub ack_within: Option<Spanned<String>>,
    /// Channels alerted when nobody acknowledged in time.
    #[serde(default)]
    pub escalation: Vec<String>,
    /// When the sealed credential must be rotated.
    #[serde(default)]
    pub rotation: Option<RotationSpec>,
    /// How often the procedure must be drilled.
    #[serde(default)]
    pub drill: Option<DrillSpec>,
    /// Named systems the emergency path relies on (e.g. `vpn`, `okta`, `dns`).
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// The outages this procedure is for (e.g. `okta`): it must not depend on them.
    #[serde(default)]
    pub protects_against: Vec<String>,
    /// A second factor every approval must carry: `totp` (a fresh TOTP code from every
    /// approver) or `hardware_or_totp` (a hardware key through an age plugin, or a TOTP code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub second_factor: Option<Spanned<String>>,
}

/// The target section of a procedure file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// What kind of system this is.
    pub kind: TargetKind,
    /// Connection details (host, port, database, …). Never the secret itself.
    #[serde(default)]
    pub details: BTreeMap<String, String>,
}

/// A custodian entry of a procedure file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustodianSpec {
    /// The custodian's name, unique within the procedure; also their actor name.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// How to reach them at 2 a.m. (email, phone, chat handle).
    #[serde(default)]
    pub contact: String,
    /// Public key: an age X25519 recipient (`age1…`) or an OpenSSH `ssh-ed25519` key.
    #[schemars(with = "String")]
    pub key: Spanned<String>,
}

/// Rotation policy.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotationSpec {
    /// Oldest the sealed credential may get before the procedure is flagged, e.g. `90d`.
    #[schemars(with = "String")]
    pub max_credential_age: Spanned<String>,
}

/// Drill schedule.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillSpec {
    /// Longest allowed time between drills, e.g. `90d` for quarterly.
    #[schemars(with = "String")]
    pub every: Spanned<String>,
    /// The server runs an automated drill whenever the latest one is older than `every`
    /// (needs a drill credential: `breakglass seal PROCEDURE --drill`).
    #[serde(default)]
    pub automated: bool,
    /// When the server runs automated drills, as a cron expression in UTC (e.g. `0 3 * * MON`),
    /// instead of whenever the latest drill is older than `every`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cron: Option<Spanned<String>>,
    /// A drill whose time to access (request to first login) is longer fails, e.g. `2m`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub max_time_to_access: Option<Spanned<String>>,
}

/// The kinds of target a procedure can open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A static secret (root password, recovery codes): the grant is a single reveal.
    Secret,
    /// A PostgreSQL server: the grant is an ephemeral role.
    Postgres,
    /// A MariaDB server: the grant is an ephemeral user.
    Mariadb,
    /// SSH hosts trusting a CA: the grant is a short-lived certificate.
    Ssh,
    /// An HTTP API that enables an emergency account.
    Http,
    /// A credential breakglass cannot seal (a hardware MFA token in a safe, a password on
    /// paper): the procedure's `custody` section says where it lives and who holds it.
    External,
}

impl TargetKind {
    /// The name used in files and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Secret => "secret",
            TargetKind::Postgres => "postgres",
            TargetKind::Mariadb => "mariadb",
            TargetKind::Ssh => "ssh",
            TargetKind::Http => "http",
            TargetKind::External => "external",
        }
    }
}

/// Limits set by the server's configuration that every procedure must respect.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// No procedure may allow a grant longer than this.
    pub grant_ceiling: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            grant_ceiling: Duration::from_secs(4 * 3600),
        }
    }
}

/// A validated procedure.
#[derive(Debug, Clone, PartialEq)]
pub struct Procedure {
    /// Identifier.
    pub id: String,
    /// Description.
    pub description: String,
    /// Target.
    pub target: Target,
    /// Custodians, in file order.
    pub custodians: Vec<Custodian>,
    /// Approvals needed.
    pub quorum: u8,
    /// Longest grant.
    pub max_grant: Duration,
    /// Alert channel names.
    pub alert_channels: Vec<String>,
    /// Acknowledgement deadline after a break is requested.
    pub ack_within: Option<Duration>,
    /// Channels told when the acknowledgement is late.
    pub escalation: Vec<String>,
    /// Oldest allowed credential age.
    pub max_credential_age: Option<Duration>,
    /// Longest allowed time between drills.
    pub drill_every: Option<Duration>,
    /// Whether the server runs automated drills on that schedule.
    pub drill_automated: bool,
    /// Time-to-access budget of a drill.
    pub drill_max_time_to_access: Option<Duration>,
    /// When automated drills run, if by cron.
    pub drill_cron: Option<crate::drill::CronSchedule>,
    /// Declared dependencies.
    pub dependencies: Vec<String>,
    /// The outages this procedure is for.
    pub protects_against: Vec<String>,
    /// The second factor every approval must carry, if the file requires one.
    pub second_factor: Option<SecondFactor>,
    /// External custody (`kind: external`): then there are no custodians, quorum or grant.
    pub external: Option<crate::external::ExternalCustody>,
}

/// A second factor a procedure requires on every approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecondFactor {
    /// A fresh TOTP code from every approver, checked by the server.
    Totp,
    /// A hardware-backed custodian key (an age plugin recipient such as `age1yubikey1…`) counts
    /// by itself; any other approver gives a TOTP code.
    HardwareOrTotp,
}

impl SecondFactor {
    /// The name used in procedure files.
    pub fn as_str(self) -> &'static str {
        match self {
            SecondFactor::Totp => "totp",
            SecondFactor::HardwareOrTotp => "hardware_or_totp",
        }
    }

    /// Parses the name used in procedure files.
    pub fn parse(text: &str) -> Option<SecondFactor> {
        match text.trim() {
            "totp" => Some(SecondFactor::Totp),
            "hardware_or_totp" => Some(SecondFactor::HardwareOrTotp),
            _ => None,
        }
    }

    /// Whether an approval by a custodian holding `key` needs a TOTP code under this rule.
    pub fn needs_totp(self, key: &CustodianKey) -> bool {
        match self {
            SecondFactor::Totp => true,
            SecondFactor::HardwareOrTotp => !key.is_hardware(),
        }
    }
}

impl fmt::Display for SecondFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Kind.
    pub kind: TargetKind,
    /// Connection details.
    pub details: BTreeMap<String, String>,
}

/// A validated custodian.
#[derive(Debug, Clone, PartialEq)]
pub struct Custodian {
    /// Name (also the actor name).
    pub name: String,
    /// Contact.
    pub contact: String,
    /// Public key.
    pub key: CustodianKey,
}

impl Procedure {
    /// The custodian with this name.
    pub fn custodian(&self, name: &str) -> Option<&Custodian> {
        self.custodians.iter().find(|c| c.name == name)
    }
}

/// A procedure parsed from a file, with where it came from.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The validated procedure.
    pub procedure: Procedure,
    /// Its specification as written (`spec_yaml` renders it for storage and `show`).
    pub spec: ProcedureSpec,
    /// SHA-256 (hex) of the whole file it came from.
    pub content_hash: String,
    /// Where its fields are in that file.
    pub positions: Positions,
}

impl Parsed {
    /// The specification as YAML, for storage and `show`. Rendered on demand: `check` over
    /// many files never needs it.
    pub fn spec_yaml(&self) -> String {
        serde_saphyr::to_string(&self.spec).unwrap_or_default()
    }
}

/// Where one procedure's fields are in its file, so a finding about a field can point at it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    /// (dotted field path, 1-based line, 1-based column), in file order.
    fields: Vec<(String, u64, u64)>,
}

impl Positions {
    /// The line and column of `field` — a dotted path such as `id`, `quorum`, `drill.every`,
    /// `custodians[1].key`, or `custodians` for the first custodian — when the file has that
    /// field and its position is kept (scalars only; lists of names have none).
    pub fn of(&self, field: &str) -> Option<(u64, u64)> {
        self.fields
            .iter()
            .find(|(f, _, _)| f == field)
            .map(|&(_, line, column)| (line, column))
    }

    fn from_spec(spec: &ProcedureSpec) -> Positions {
        let mut fields = Vec::new();
        let mut add = |field: String, at: &serde_saphyr::Location| {
            if at.line() > 0 {
                fields.push((field, at.line(), at.column()));
            }
        };
        add("id".into(), &spec.id.referenced);
        if let Some(first) = spec.custodians.first() {
            add("custodians".into(), &first.name.referenced);
        }
        for (i, c) in spec.custodians.iter().enumerate() {
            add(format!("custodians[{i}].name"), &c.name.referenced);
            add(format!("custodians[{i}].key"), &c.key.referenced);
        }
        if let Some(q) = &spec.quorum {
            add("quorum".into(), &q.referenced);
        }
        if let Some(m) = &spec.max_grant {
            add("max_grant".into(), &m.referenced);
        }
        if let Some(c) = &spec.custody {
            add("custody".into(), &c.location.referenced);
            add("custody.location".into(), &c.location.referenced);
            if let Some(first) = c.holders.first() {
                add("custody.holders".into(), &first.name.referenced);
            }
            for (i, h) in c.holders.iter().enumerate() {
                add(format!("custody.holders[{i}].name"), &h.name.referenced);
            }
            if let Some(p) = &c.present {
                add("custody.present".into(), &p.referenced);
            }
            if let Some(first) = c.steps.first() {
                add("custody.steps".into(), &first.referenced);
            }
            for (i, step) in c.steps.iter().enumerate() {
                add(format!("custody.steps[{i}]"), &step.referenced);
            }
            if let Some(a) = &c.attest_every {
                add("custody.attest_every".into(), &a.referenced);
            }
        }
        if let Some(a) = &spec.ack_within {
            add("ack_within".into(), &a.referenced);
        }
        if let Some(r) = &spec.rotation {
            add(
                "rotation.max_credential_age".into(),
                &r.max_credential_age.referenced,
            );
        }
        if let Some(d) = &spec.drill {
            add("drill.every".into(), &d.every.referenced);
        }
        if let Some(f) = &spec.second_factor {
            add("second_factor".into(), &f.referenced);
        }
        Positions { fields }
    }
}

/// A problem in a procedure file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcedureError {
    /// The file name as given.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: u64,
    /// 1-based column (0 when unknown).
    pub column: u64,
    /// Dotted path of the field, e.g. `custodians[1].key`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ProcedureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.field, self.message
        )
    }
}

impl std::error::Error for ProcedureError {}

/// Parses and validates every procedure in one file. Returns every error found, not only the
/// first, so a user fixes a file in one pass.
pub fn parse_procedures(
    file: &str,
    text: &str,
    limits: &Limits,
) -> Result<Vec<Parsed>, Vec<ProcedureError>> {
    let err = |line: u64, column: u64, field: &str, message: String| ProcedureError {
        file: file.to_owned(),
        line,
        column,
        field: field.to_owned(),
        message,
    };
    if text.len() > MAX_FILE_BYTES {
        return Err(vec![err(
            0,
            0,
            "(file)",
            format!("larger than {MAX_FILE_BYTES} bytes"),
        )]);
    }
    let specs: Vec<ProcedureSpec> = match serde_saphyr::from_multiple(text) {
        Ok(specs) => specs,
        Err(e) => {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            let message = e.without_snippet().to_string();
            let field = unknown_field_name(&message).unwrap_or_else(|| "(document)".into());
            return Err(vec![err(line, column, &field, first_line(&message))]);
        }
    };
    if specs.is_empty() {
        return Err(vec![err(
            1,
            1,
            "(document)",
            "no procedure in this file".into(),
        )]);
    }
    let content_hash = hex::encode(Sha256::digest(text.as_bytes()));
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    let mut seen_ids = HashSet::new();
    for spec in specs {
        let at = |s: &serde_saphyr::Location| (s.line(), s.column());
        if !seen_ids.insert(spec.id.value.clone()) {
            let (l, c) = at(&spec.id.referenced);
            errors.push(err(
                l,
                c,
                "id",
                format!("procedure `{}` appears twice in this file", spec.id.value),
            ));
        }
        match validate(&spec, limits) {
            Ok(procedure) => {
                let positions = Positions::from_spec(&spec);
                parsed.push(Parsed {
                    procedure,
                    spec,
                    content_hash: content_hash.clone(),
                    positions,
                });
            }
            Err(problems) => errors.extend(problems.into_iter().map(|(loc, field, message)| {
                let (l, c) = loc.as_ref().map(at).unwrap_or((0, 0));
                err(l, c, &field, message)
            })),
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

type Problem = (Option<serde_saphyr::Location>, String, String);

/// Checks one specification against the rules; returns every problem.
pub fn validate(spec: &ProcedureSpec, limits: &Limits) -> Result<Procedure, Vec<Problem>> {
    let mut problems: Vec<Problem> = Vec::new();
    let mut problem = |loc: Option<serde_saphyr::Location>, field: String, msg: String| {
        problems.push((loc, field, msg))
    };
    let id = spec.id.value.trim();
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
    {
        problem(
            Some(spec.id.referenced),
            "id".into(),
            "must be 1-64 characters of a-z, 0-9, '-', '_' or '.'".into(),
        );
    }
    let mut custodians = Vec::new();
    let mut names = HashSet::new();
    let mut fingerprints: BTreeMap<String, String> = BTreeMap::new();
    for (i, c) in spec.custodians.iter().enumerate() {
        let name = c.name.value.trim();
        if name.is_empty()
            || name.len() > 64
            || name.chars().any(|ch| ch.is_whitespace() || ch.is_control())
        {
            problem(
                Some(c.name.referenced),
                format!("custodians[{i}].name"),
                "must be 1-64 characters without spaces".into(),
            );
        } else if !names.insert(name.to_owned()) {
            problem(
                Some(c.name.referenced),
                format!("custodians[{i}].name"),
                format!("custodian `{name}` is listed twice"),
            );
        }
        match CustodianKey::parse(c.key.value.trim()) {
            Ok(key) => {
                let fp = key.fingerprint();
                if let Some(other) = fingerprints.get(&fp) {
                    problem(
                        Some(c.key.referenced),
                        format!("custodians[{i}].key"),
                        format!("the same key is already used by custodian `{other}`"),
                    );
                } else {
                    fingerprints.insert(fp, name.to_owned());
                }
                custodians.push(Custodian {
                    name: name.to_owned(),
                    contact: c.contact.clone(),
                    key,
                });
            }
            Err(e) => problem(
                Some(c.key.referenced),
                format!("custodians[{i}].key"),
                e.to_string(),
            ),
        }
    }
    let external = spec.target.kind == TargetKind::External;
    let id_at = Some(spec.id.referenced);
    let mut custody = None;
    match (&spec.custody, external) {
        (Some(c), true) => {
            let mut found = Vec::new();
            custody = Some(crate::external::validate(c, spec.id.referenced, &mut found));
            for (loc, field, message) in found {
                problem(loc, field, message);
            }
        }
        (None, true) => problem(
            id_at,
            "custody".into(),
            "a `kind: external` target needs a custody section: where the credential lives, its holders and the steps".into(),
        ),
        (Some(c), false) => problem(
            Some(c.location.referenced),
            "custody".into(),
            format!(
                "only `kind: external` targets are held outside breakglass; a `{}` target's credential is sealed to its custodians",
                spec.target.kind.as_str()
            ),
        ),
        (None, false) => {}
    }
    let quorum = match (&spec.quorum, external) {
        (Some(q), true) => {
            problem(
                Some(q.referenced),
                "quorum".into(),
                "an external-custody procedure has no sealed shares; say how many holders must be present with custody.present".into(),
            );
            0
        }
        (None, true) => 0,
        (None, false) => {
            problem(id_at, "quorum".into(), "missing field `quorum`".into());
            0
        }
        (Some(q), false) => {
            let quorum = q.value;
            if quorum < 2 {
                problem(
                    Some(q.referenced),
                    "quorum".into(),
                    format!("must be at least 2 (two-person rule), got {quorum}"),
                );
            } else if usize::from(quorum) > spec.custodians.len() {
                problem(
                    Some(q.referenced),
                    "quorum".into(),
                    format!(
                        "{quorum} is larger than the number of custodians ({})",
                        spec.custodians.len()
                    ),
                );
            }
            quorum
        }
    };
    if external && let Some(first) = spec.custodians.first() {
        problem(
            Some(first.name.referenced),
            "custodians".into(),
            "an external-custody procedure has no sealed shares; list the people who hold the credential under custody.holders".into(),
        );
    }
    if external && spec.second_factor.is_some() {
        problem(
            spec.second_factor.as_ref().map(|f| f.referenced),
            "second_factor".into(),
            "an external-custody procedure has no approvals to carry a second factor".into(),
        );
    }
    let max_grant = match (&spec.max_grant, external) {
        (Some(m), true) => {
            problem(
                Some(m.referenced),
                "max_grant".into(),
                "an external-custody procedure grants nothing: breakglass never holds the credential".into(),
            );
            Duration::ZERO
        }
        (None, true) => Duration::ZERO,
        (None, false) => {
            problem(
                id_at,
                "max_grant".into(),
                "missing field `max_grant`".into(),
            );
            Duration::ZERO
        }
        (Some(m), false) => match parse_duration(&m.value) {
            Ok(d) if d > limits.grant_ceiling => {
                problem(
                    Some(m.referenced),
                    "max_grant".into(),
                    format!(
                        "{} is longer than the configured ceiling of {}",
                        m.value.trim(),
                        crate::time::format_duration(limits.grant_ceiling)
                    ),
                );
                d
            }
            Ok(d) => d,
            Err(e) => {
                problem(Some(m.referenced), "max_grant".into(), e);
                Duration::ZERO
            }
        },
    };
    let max_credential_age = spec.rotation.as_ref().and_then(|r| {
        parse_duration(&r.max_credential_age.value)
            .map_err(|m| {
                problem(
                    Some(r.max_credential_age.referenced),
                    "rotation.max_credential_age".into(),
                    m,
                )
            })
            .ok()
    });
    let drill_every = spec.drill.as_ref().and_then(|d| {
        parse_duration(&d.every.value)
            .map_err(|m| problem(Some(d.every.referenced), "drill.every".into(), m))
            .ok()
    });
    let drill_max_time_to_access = spec
        .drill
        .as_ref()
        .and_then(|d| d.max_time_to_access.as_ref())
        .and_then(|m| {
            parse_duration(&m.value)
                .map_err(|e| problem(Some(m.referenced), "drill.max_time_to_access".into(), e))
                .ok()
        });
    let drill_automated = spec.drill.as_ref().is_some_and(|d| d.automated);
    if external && drill_automated {
        problem(
            spec.drill.as_ref().map(|d| d.every.referenced),
            "drill.automated".into(),
            "an external-custody procedure is drilled by the people who hold it (`breakglass drill run` opens a timed run of its steps); the server cannot drill it alone".into(),
        );
    }
    let drill_cron = spec
        .drill
        .as_ref()
        .and_then(|d| d.cron.as_ref())
        .and_then(|c| {
            crate::drill::CronSchedule::parse(&c.value)
                .map_err(|e| problem(Some(c.referenced), "drill.cron".into(), e))
                .ok()
        });
    for (i, name) in spec.alert_channels.iter().enumerate() {
        if name.trim().is_empty() {
            problem(
                None,
                format!("alert_channels[{i}]"),
                "must not be empty".into(),
            );
        }
    }
    let ack_within = spec.ack_within.as_ref().and_then(|a| {
        parse_duration(&a.value)
            .map_err(|m| problem(Some(a.referenced), "ack_within".into(), m))
            .ok()
    });
    if spec.ack_within.is_some() && spec.alert_channels.is_empty() {
        problem(
            spec.ack_within.as_ref().map(|a| a.referenced),
            "ack_within".into(),
            "needs alert_channels: nobody would be asked to acknowledge".into(),
        );
    }
    if !spec.escalation.is_empty() && spec.ack_within.is_none() {
        problem(
            None,
            "escalation".into(),
            "needs ack_within: escalation happens when an acknowledgement is late".into(),
        );
    }
    for (i, name) in spec.escalation.iter().enumerate() {
        if name.trim().is_empty() {
            problem(None, format!("escalation[{i}]"), "must not be empty".into());
        }
    }
    for (i, name) in spec.dependencies.iter().enumerate() {
        if name.trim().is_empty() {
            problem(
                None,
                format!("dependencies[{i}]"),
                "must not be empty".into(),
            );
        }
    }
    for key in spec.target.details.keys() {
        let k = key.to_ascii_lowercase();
        if ["password", "secret", "token", "private_key"]
            .iter()
            .any(|s| k.contains(s))
        {
            problem(
                None,
                format!("target.details.{key}"),
                "secrets never go in a procedure file; seal them with `breakglass seal`".into(),
            );
        }
    }
    let second_factor = spec.second_factor.as_ref().and_then(|f| {
        let parsed = SecondFactor::parse(&f.value);
        if parsed.is_none() {
            problem(
                Some(f.referenced),
                "second_factor".into(),
                format!(
                    "`{}` is not a second factor; use `totp` or `hardware_or_totp`",
                    f.value.trim().chars().take(32).collect::<String>()
                ),
            );
        }
        parsed
    });
    let target = Target {
        kind: spec.target.kind,
        details: spec.target.details.clone(),
    };
    if let Err(detail_problems) = target.config() {
        for (field, message) in detail_problems {
            if !problems.iter().any(|(_, f, _)| f == &field) {
                problems.push((None, field, message));
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Procedure {
        id: id.to_owned(),
        description: spec.description.clone(),
        target,
        custodians,
        quorum,
        max_grant,
        alert_channels: spec.alert_channels.clone(),
        ack_within,
        escalation: spec.escalation.clone(),
        max_credential_age,
        drill_every,
        drill_automated,
        drill_max_time_to_access,
        drill_cron,
        dependencies: spec.dependencies.clone(),
        protects_against: spec.protects_against.clone(),
        second_factor,
        external: custody,
    })
}

/// Parses a human duration such as `15m`, `1h30m` or `90d`; zero is refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!(
            "`{}` is not a duration like 15m or 1h ({e})",
            text.trim()
        )),
    }
}

/// The parser's message without its own position suffix (the position is reported apart).
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default().trim();
    match line.rfind(" at line ") {
        Some(i) if line[i..].contains(", column ") => line[..i].to_owned(),
        _ => line.to_owned(),
    }
}

fn unknown_field_name(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    Some(rest.split('`').next()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE1: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    const AGE2: &str = "age16x89adflfx7u83grlza8l35h0rymue2ygl9rev5dj0366yyescls7khghf";
    const AGE3: &str = "age1e47uwdetjgvmnc3kgjda9255pku38w0gxrpw4h5vdy4gntm06ywqlhdggx";

    fn file(quorum: u8, keys: [&str; 3], max_grant: &str) -> String {
        format!(
            "id: root-db\ndescription: test\ntarget:\n  kind: secret\ncustodians:\n  - name: alice\n    key: {}\n  - name: bob\n    key: {}\n  - name: carol\n    key: {}\nquorum: {quorum}\nmax_grant: {max_grant}\n",
            keys[0], keys[1], keys[2]
        )
    }

    fn errors(text: &str) -> Vec<String> {
        parse_procedures("p.yaml", text, &Limits::default())
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn valid_file_parses() {
        let parsed = parse_procedures(
            "p.yaml",
            &file(2, [AGE1, AGE2, AGE3], "15m"),
            &Limits::default(),
        )
        .expect("valid");
        assert_eq!(parsed.len(), 1);
        let p = &parsed[0].procedure;
        assert_eq!(p.id, "root-db");
        assert_eq!(p.quorum, 2);
        assert_eq!(p.max_grant, Duration::from_secs(900));
        assert_eq!(parsed[0].content_hash.len(), 64);
        // The stored YAML parses back to the same procedure.
        let again = parse_procedures("stored", &parsed[0].spec_yaml(), &Limits::default())
            .expect("reparse");
        assert_eq!(&again[0].procedure, p);
    }

    #[test]
    fn several_documents_per_file() {
        let two = format!(
            "{}---\n{}",
            file(2, [AGE1, AGE2, AGE3], "15m"),
            file(2, [AGE1, AGE2, AGE3], "15m").replace("root-db", "other")
        );
        let parsed = parse_procedures("p.yaml", &two, &Limits::default()).expect("valid");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].procedure.id, "other");
    }

    #[test]
    fn quorum_rules_name_line_and_field() {
        assert_eq!(
            errors(&file(4, [AGE1, AGE2, AGE3], "15m")),
            ["p.yaml:12:9: quorum: 4 is larger than the number of custodians (3)"]
        );
        assert_eq!(
            errors(&file(1, [AGE1, AGE2, AGE3], "15m")),
            ["p.yaml:12:9: quorum: must be at least 2 (two-person rule), got 1"]
        );
    }

    #[test]
    fn duplicate_and_malformed_keys() {
        let e = errors(&file(2, [AGE1, AGE2, AGE1], "15m"));
        assert_eq!(
            e,
            ["p.yaml:11:10: custodians[2].key: the same key is already used by custodian `alice`"]
        );
        let e = errors(&file(2, [AGE1, AGE2, "age1notakey"], "15m"));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("p.yaml:11:10: custodians[2].key: "),
            "{e:?}"
        );
    }

    #[test]
    fn grant_ceiling_and_bad_duration() {
        assert_eq!(
            errors(&file(2, [AGE1, AGE2, AGE3], "5h")),
            ["p.yaml:13:12: max_grant: 5h is longer than the configured ceiling of 4h"]
        );
        let e = errors(&file(2, [AGE1, AGE2, AGE3], "soon"));
        assert!(
            e[0].starts_with("p.yaml:13:12: max_grant: `soon` is not a duration"),
            "{e:?}"
        );
    }

    #[test]
    fn sealed_targets_still_need_quorum_and_max_grant() {
        let text = file(2, [AGE1, AGE2, AGE3], "15m")
            .replace("quorum: 2\n", "")
            .replace("max_grant: 15m\n", "");
        assert_eq!(
            errors(&text),
            [
                "p.yaml:1:5: quorum: missing field `quorum`",
                "p.yaml:1:5: max_grant: missing field `max_grant`"
            ]
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let text = file(2, [AGE1, AGE2, AGE3], "15m") + "colour: red\n";
        let e = errors(&text);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("p.yaml:14:1: colour: unknown field `colour`"),
            "{e:?}"
        );
    }

    #[test]
    fn secrets_in_details_are_refused() {
        let text = file(2, [AGE1, AGE2, AGE3], "15m").replace(
            "kind: secret\n",
            "kind: secret\n  details:\n    password: hunter2\n",
        );
        let e = errors(&text);
        assert!(
            e[0].contains("target.details.password: secrets never go"),
            "{e:?}"
        );
        assert!(!e[0].contains("hunter2"));
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "",
            "[",
            "id: [1,2",
            ":\n:\n",
            "quorum: 300\n",
            "\u{0}\u{1}",
            "- - - -",
        ] {
            let _ = parse_procedures("g.yaml", text, &Limits::default());
        }
    }
}
