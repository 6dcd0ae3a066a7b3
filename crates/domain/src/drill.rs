//! Drills: their modes and the failures a drill can inject, parsed and checked against the
//! procedure before anything runs.

use std::fmt;
use std::time::Duration;

use crate::procedure::{Procedure, parse_duration};
use crate::time::Timestamp;

/// How a drill is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrillMode {
    /// The runner plays every part with the drill credential and drill identities: proves
    /// alerting, granting, login, expiry, termination and rotation without the real seal.
    Automated,
    /// Real custodians approve with their own keys; alerts say DRILL; measures humans.
    Live,
}

impl DrillMode {
    /// `automated` or `live`.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillMode::Automated => "automated",
            DrillMode::Live => "live",
        }
    }

    /// Parses `automated` or `live`.
    pub fn parse(text: &str) -> Result<DrillMode, String> {
        match text.trim() {
            "automated" => Ok(DrillMode::Automated),
            "live" => Ok(DrillMode::Live),
            other => Err(format!(
                "unknown drill mode `{other}`: expected `automated` or `live`"
            )),
        }
    }
}

/// A failure injected into a drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injection {
    /// Every declared identity provider is down: the path must not depend on one.
    IdpDown,
    /// This alert channel is down: the alert must escalate.
    ChannelDown(String),
    /// This custodian's key is lost: the quorum must be reachable without them.
    CustodianLost(String),
    /// Every call to the target takes this much longer (default: the whole time budget).
    TargetSlow(Option<Duration>),
    /// The target does not answer.
    TargetDown,
}

impl Injection {
    /// Parses `idp-down`, `channel-down:NAME`, `custodian-lost:NAME`, `target-slow[:DELAY]`
    /// or `target-down`.
    pub fn parse(text: &str) -> Result<Injection, String> {
        let text = text.trim();
        let (head, arg) = match text.split_once(':') {
            Some((h, a)) => (h, Some(a.trim())),
            None => (text, None),
        };
        let named = |what: &str| match arg {
            Some(a) if !a.is_empty() => Ok(a.to_owned()),
            _ => Err(format!("`{head}` needs a {what}: `{head}:NAME`")),
        };
        let none = |inj: Injection| match arg {
            None => Ok(inj),
            Some(_) => Err(format!("`{head}` takes no argument")),
        };
        match head {
            "idp-down" => none(Injection::IdpDown),
            "target-down" => none(Injection::TargetDown),
            "channel-down" => Ok(Injection::ChannelDown(named("channel name")?)),
            "custodian-lost" => Ok(Injection::CustodianLost(named("custodian name")?)),
            "target-slow" => match arg {
                None => Ok(Injection::TargetSlow(None)),
                Some(a) => parse_duration(a)
                    .map(|d| Injection::TargetSlow(Some(d)))
                    .map_err(|e| format!("target-slow delay: {e}")),
            },
            other => Err(format!(
                "unknown injection `{other}`: expected idp-down, channel-down:NAME, \
                 custodian-lost:NAME, target-slow[:DELAY] or target-down"
            )),
        }
    }

    /// Checks the injection names something the procedure has.
    pub fn check(&self, p: &Procedure) -> Result<(), String> {
        match self {
            Injection::ChannelDown(name)
                if !p.alert_channels.contains(name) && !p.escalation.contains(name) =>
            {
                Err(format!(
                    "channel-down:{name}: `{}` has no alert or escalation channel `{name}`",
                    p.id
                ))
            }
            Injection::CustodianLost(name) if !p.custodians.iter().any(|c| &c.name == name) => {
                Err(format!(
                    "custodian-lost:{name}: `{name}` is not a custodian of `{}`",
                    p.id
                ))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Injection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Injection::IdpDown => f.write_str("idp-down"),
            Injection::ChannelDown(n) => write!(f, "channel-down:{n}"),
            Injection::CustodianLost(n) => write!(f, "custodian-lost:{n}"),
            Injection::TargetSlow(None) => f.write_str("target-slow"),
            Injection::TargetSlow(Some(d)) => {
                write!(f, "target-slow:{}", humantime::format_duration(*d))
            }
            Injection::TargetDown => f.write_str("target-down"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_injection() {
        for text in [
            "idp-down",
            "channel-down:slack",
            "custodian-lost:alice",
            "target-slow",
            "target-slow:2s",
            "target-down",
        ] {
            let inj = Injection::parse(text).unwrap();
            assert_eq!(inj.to_string(), text);
        }
        assert_eq!(
            Injection::parse("target-slow:1500ms").unwrap(),
            Injection::TargetSlow(Some(Duration::from_millis(1500)))
        );
    }

    #[test]
    fn refuses_malformed_injections_with_the_reason() {
        let e = Injection::parse("channel-down").unwrap_err();
        assert!(e.contains("channel-down:NAME"), "{e}");
        let e = Injection::parse("idp-down:okta").unwrap_err();
        assert!(e.contains("takes no argument"), "{e}");
        let e = Injection::parse("disk-full").unwrap_err();
        assert!(e.contains("unknown injection `disk-full`"), "{e}");
        let e = Injection::parse("target-slow:soon").unwrap_err();
        assert!(e.contains("target-slow delay"), "{e}");
        assert!(DrillMode::parse("manual").is_err());
    }
}

/// When automated drills run, as a cron expression (UTC): five fields, minute first
/// (`0 3 * * MON`), or six or seven with seconds first.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    text: String,
    schedule: cron::Schedule,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl CronSchedule {
    /// Parses an expression; the error says what is wrong.
    pub fn parse(text: &str) -> Result<CronSchedule, String> {
        use std::str::FromStr;
        let text = text.trim();
        let fields = text.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {text}"),
            6 | 7 => text.to_owned(),
            n => {
                return Err(format!(
                    "`{text}` has {n} fields; a cron expression has 5 (minute hour day month weekday)"
                ));
            }
        };
        let schedule = cron::Schedule::from_str(&full)
            .map_err(|e| format!("`{text}` is not a cron expression: {e}"))?;
        if schedule.upcoming(chrono::Utc).next().is_none() {
            return Err(format!("`{text}` never fires"));
        }
        Ok(CronSchedule {
            text: text.to_owned(),
            schedule,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first time it fires strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t.0)?;
        self.schedule
            .after(&at)
            .next()
            .map(|n| Timestamp(n.timestamp_millis()))
    }
}

#[cfg(test)]
mod cron_tests {
    use super::*;

    #[test]
    fn five_field_expressions_fire_at_the_next_match() {
        let c = CronSchedule::parse("30 3 * * *").unwrap();
        // 2026-11-29T00:00:00Z
        let midnight = Timestamp(1_795_910_400_000);
        assert_eq!(
            c.next_after(midnight),
            Some(Timestamp(midnight.0 + (3 * 3600 + 30 * 60) * 1000))
        );
        let next = c.next_after(Timestamp(midnight.0 + (3 * 3600 + 30 * 60) * 1000));
        assert_eq!(
            next,
            Some(Timestamp(midnight.0 + (27 * 3600 + 30 * 60) * 1000)),
            "strictly after"
        );
        assert_eq!(c.as_str(), "30 3 * * *");
    }

    #[test]
    fn bad_expressions_say_why() {
        assert!(
            CronSchedule::parse("* * *")
                .unwrap_err()
                .contains("has 3 fields")
        );
        assert!(
            CronSchedule::parse("61 * * * *")
                .unwrap_err()
                .contains("not a cron expression")
        );
    }
}
