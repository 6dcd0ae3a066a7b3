//! Time-to-access on the machine path: how long the engine's `approve` takes when it completes
//! the quorum (verify the share, combine the data key, open the secret, encrypt it to the
//! requester, commit durably), against the same call when it does not complete the quorum.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use breakglass_custody::{ExposeSecret, Identity, Secret, decrypt_share, keygen};
use breakglass_domain::{Actor, Break, Role};
use breakglass_engine::{ChainVerdict, Config, Engine, SystemClock};
use breakglass_store::SqlStore;

/// The procedure every break is opened on.
const PROCEDURE: &str = "bench-secret";

/// How long each grant asks for; every grant is closed right after it is issued anyway.
const GRANT: Duration = Duration::from_secs(60);

/// Latencies of the two approvals of each measured break, in break order.
#[derive(Debug, Clone)]
pub(crate) struct AccessFigures {
    /// The first approval (1 of 2): share verified and held, no quorum.
    pub(crate) first: Vec<Duration>,
    /// The second approval (2 of 2): quorum reached, grant issued.
    pub(crate) quorum: Vec<Duration>,
    /// Audit entries in the chain at the end (it is verified, untimed, as a sanity check).
    pub(crate) audit_entries: u64,
}

/// Custodians with their identities, the requester's identity, and the procedure file.
pub(crate) struct Fixture {
    custodians: Vec<(String, Identity)>,
    pub(crate) requester: Identity,
    pub(crate) yaml: String,
}

impl Fixture {
    /// Applies the procedure, enrols the requester `dave`, seals `secret`; returns dave.
    pub(crate) async fn install(
        &self,
        engine: &Engine,
        procedure: &str,
        secret: Secret,
    ) -> Result<Actor> {
        let admin = bench_admin();
        engine
            .apply(&admin, &[("bench.yaml".into(), self.yaml.clone())])
            .await
            .context("apply")?;
        engine
            .enroll(
                &admin,
                "dave",
                &[Role::Requester],
                Some(&self.requester.public().canonical()),
                "dave@example.com",
                false,
            )
            .await
            .context("enrol requester")?;
        engine
            .seal(&admin, procedure, secret)
            .await
            .context("seal")?;
        Ok(Actor {
            name: "dave".into(),
            roles: vec![Role::Requester],
            key: Some(self.requester.public()),
        })
    }

    fn new() -> Result<Fixture> {
        Fixture::with_target(PROCEDURE, "benchmark secret", "target:\n  kind: secret\n")
    }

    /// Three custodians (quorum 2), a requester identity, and procedure `id` on `target` (the
    /// whole `target:` block of the procedure file).
    pub(crate) fn with_target(id: &str, description: &str, target: &str) -> Result<Fixture> {
        let mut custodians = Vec::new();
        let mut listed = String::new();
        for name in ["alice", "bob", "carol"] {
            let (id, key) = keygen();
            custodians.push((
                name.to_owned(),
                Identity::parse(id.expose_secret()).context("custodian identity")?,
            ));
            listed.push_str(&format!(
                "  - name: {name}\n    contact: {name}@example.com\n    key: {}\n",
                key.canonical()
            ));
        }
        let (rid, _) = keygen();
        let yaml = format!(
            "id: {id}\ndescription: {description}\n{target}custodians:\n{listed}quorum: 2\nmax_grant: 15m\nalert_channels: [sec-slack]\n"
        );
        Ok(Fixture {
            custodians,
            requester: Identity::parse(rid.expose_secret()).context("requester identity")?,
            yaml,
        })
    }

    /// A custodian's decrypted share for `break_id`, encoded for `approve` (untimed work: in
    /// production it happens on the custodian's machine).
    pub(crate) async fn share(
        &self,
        engine: &Engine,
        who: &Actor,
        break_id: &str,
    ) -> Result<String> {
        let share = engine.share_for(who, break_id).await?;
        let identity = &self
            .custodians
            .iter()
            .find(|(n, _)| *n == who.name)
            .context("unknown custodian")?
            .1;
        let plain = decrypt_share(&share.age_file, identity).context("decrypting own share")?;
        Ok(plain.encode().to_string())
    }
}

/// The admin that sets the benchmarks up and closes their breaks.
pub(crate) fn bench_admin() -> Actor {
    Actor {
        name: "bench-admin".into(),
        roles: vec![Role::Admin],
        key: None,
    }
}

pub(crate) fn custodian(name: &str) -> Actor {
    Actor {
        name: name.into(),
        roles: vec![Role::Custodian],
        key: None,
    }
}

/// Sets up a procedure, a requester and a seal on `store`, then runs `warmup + breaks` breaks:
/// open, approve (alice, timed), approve (bob, timed, completes the quorum), close as admin.
/// Only the last `breaks` are recorded.
pub(crate) async fn run(store: SqlStore, breaks: usize, warmup: usize) -> Result<AccessFigures> {
    let f = Fixture::new()?;
    // The system clock, so that the engine's own timestamps are real and nothing is faked.
    let engine = Engine::new(Arc::new(store), Arc::new(SystemClock), Config::default());
    let admin = bench_admin();
    let dave = f
        .install(
            &engine,
            PROCEDURE,
            Secret::new(b"bench-root-password".to_vec()),
        )
        .await?;
    let (alice, bob) = (custodian("alice"), custodian("bob"));

    let mut figures = AccessFigures {
        first: Vec::with_capacity(breaks),
        quorum: Vec::with_capacity(breaks),
        audit_entries: 0,
    };
    for i in 0..warmup + breaks {
        let id = engine
            .open_break(&dave, PROCEDURE, "benchmark", "BENCH-1", Some(GRANT))
            .await
            .context("open")?
            .info
            .id
            .0;

        let share = f.share(&engine, &alice, &id).await?;
        let t = Instant::now();
        let first = engine
            .approve(&alice, &id, &share)
            .await
            .context("first approval")?;
        let first_took = t.elapsed();
        ensure!(
            matches!(first.state, Break::Requested(_)),
            "the first approval must not complete the quorum"
        );

        let share = f.share(&engine, &bob, &id).await?;
        let t = Instant::now();
        let second = engine
            .approve(&bob, &id, &share)
            .await
            .context("quorum approval")?;
        let quorum_took = t.elapsed();
        ensure!(
            matches!(second.state, Break::Granted(_)),
            "the second approval must issue the grant"
        );

        // Close at once so open grants never accumulate (untimed).
        engine.close(&admin, &id).await.context("close")?;
        if i >= warmup {
            figures.first.push(first_took);
            figures.quorum.push(quorum_took);
        }
        if (i + 1) % 250 == 0 {
            eprintln!("  {}/{} breaks", i + 1, warmup + breaks);
        }
    }
    match engine.verify_audit(&admin).await.context("verify audit")? {
        ChainVerdict::Intact(report) => figures.audit_entries = report.entries,
        other => anyhow::bail!("the audit chain does not verify after the run: {other:?}"),
    }
    Ok(figures)
}
