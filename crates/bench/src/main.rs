//! `breakglass-bench`: measures breakglass against the performance bar in BRIEF.md, each figure
//! next to a baseline taken in the same process, and writes the results as Markdown.
//!
//! Run it with `cargo xtask bench` (which writes BENCHMARKS.md). It is a plain binary, not a
//! timed test: the numbers are reported, never asserted.

mod access;
mod alerts;
mod append;
mod check;
mod drill;
mod idle;
mod report;
mod scale;
mod targets;
mod verify;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use breakglass_store::SqlStore;

use crate::report::Report;

/// What to run, from the command line.
#[derive(Debug, Clone)]
struct Args {
    out: Option<PathBuf>,
    breaks: usize,
    warmup: usize,
    append_commits: usize,
    append_batches: usize,
    batch_size: usize,
    writers: usize,
    concurrent_commits: usize,
    verify_entries: usize,
    only_append: bool,
    only_verify: bool,
    alert_events: usize,
    target_breaks: usize,
    skip_postgres: bool,
    skip_targets: bool,
    check_procedures: usize,
    skip_check: bool,
    only_check: bool,
    drills: usize,
    skip_drill: bool,
    only_drill: bool,
    scale_cycles: usize,
    only_scale: bool,
    only_idle: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            out: None,
            breaks: 1000,
            warmup: 20,
            append_commits: 5000,
            append_batches: 500,
            batch_size: 100,
            writers: 64,
            concurrent_commits: 20_000,
            verify_entries: 1_000_000,
            only_append: false,
            only_verify: false,
            alert_events: 1000,
            target_breaks: 200,
            skip_postgres: false,
            skip_targets: false,
            check_procedures: 10_000,
            skip_check: false,
            only_check: false,
            drills: 10,
            skip_drill: false,
            only_drill: false,
            scale_cycles: 300,
            only_scale: false,
            only_idle: false,
        }
    }
}

const USAGE: &str = "usage: breakglass-bench [--out FILE] [--breaks N] [--warmup N] [--append-commits N] \
[--append-batches N] [--batch-size N] [--writers N] [--concurrent-commits N] [--only-append] [--verify-entries N] [--only-verify] \
[--alert-events N] [--target-breaks N] [--no-postgres] [--no-targets] [--check-procedures N] [--no-check] \
[--only-check] [--drills N] [--no-drill] [--only-drill] [--scale-cycles N] [--only-scale] [--only-idle]

--only-append runs section 2 (audit append with durability on SQLite and, unless --no-postgres,
PostgreSQL) alone and prints it, and writes no --out file. --only-verify runs section 3 (audit
verify throughput in memory, --verify-entries entries) alone and prints it, and writes no --out file. --only-check runs section 6 (`breakglass check` over generated files) alone and prints it; it
needs the release `breakglass` binary next to the bench (`cargo build --release -p breakglass-cli`)
for its binary rows, and writes no --out file. --only-drill runs section 7 (automated drills on a
private PostgreSQL cluster) alone and prints it. --only-scale runs section 8 (break cycles through 1,
2 and 3 `breakglass serve` processes on one PostgreSQL, --scale-cycles each) alone and prints it;
it needs the release `breakglass` binary next to the bench. --only-idle runs section 9 (the
server's resident memory at idle, before and after a load) alone and prints it; it needs the
release `breakglass` binary next to the bench.";

impl Args {
    fn parse(mut it: impl Iterator<Item = String>) -> Result<Args> {
        let mut args = Args::default();
        while let Some(flag) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .with_context(|| format!("{name} needs a value\n{USAGE}"))
            };
            match flag.as_str() {
                "--out" => args.out = Some(PathBuf::from(value("--out")?)),
                "--breaks" => args.breaks = number("--breaks", &value("--breaks")?)?,
                "--warmup" => args.warmup = value("--warmup")?.parse().context("--warmup")?,
                "--append-commits" => {
                    args.append_commits = number("--append-commits", &value("--append-commits")?)?
                }
                "--append-batches" => {
                    args.append_batches = number("--append-batches", &value("--append-batches")?)?
                }
                "--batch-size" => {
                    args.batch_size = number("--batch-size", &value("--batch-size")?)?
                }
                "--writers" => args.writers = number("--writers", &value("--writers")?)?,
                "--concurrent-commits" => {
                    args.concurrent_commits =
                        number("--concurrent-commits", &value("--concurrent-commits")?)?
                }
                "--verify-entries" => {
                    args.verify_entries = number("--verify-entries", &value("--verify-entries")?)?
                }
                "--only-append" => args.only_append = true,
                "--only-verify" => args.only_verify = true,
                "--alert-events" => {
                    args.alert_events = number("--alert-events", &value("--alert-events")?)?
                }
                "--target-breaks" => {
                    args.target_breaks = number("--target-breaks", &value("--target-breaks")?)?
                }
                "--check-procedures" => {
                    args.check_procedures =
                        number("--check-procedures", &value("--check-procedures")?)?
                }
                "--no-check" => args.skip_check = true,
                "--only-check" => args.only_check = true,
                "--drills" => args.drills = number("--drills", &value("--drills")?)?,
                "--no-drill" => args.skip_drill = true,
                "--only-drill" => args.only_drill = true,
                "--scale-cycles" => {
                    args.scale_cycles = number("--scale-cycles", &value("--scale-cycles")?)?
                }
                "--only-scale" => args.only_scale = true,
                "--only-idle" => args.only_idle = true,
                "--no-postgres" => args.skip_postgres = true,
                "--no-targets" => args.skip_targets = true,
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument `{other}`\n{USAGE}"),
            }
        }
        if args.only_check && (args.skip_check || args.out.is_some()) {
            bail!(
                "--only-check prints section 6 alone: it takes neither --no-check nor --out\n{USAGE}"
            );
        }
        if args.only_append && args.out.is_some() {
            bail!("--only-append prints section 2 alone: it takes no --out\n{USAGE}");
        }
        if args.only_verify && args.out.is_some() {
            bail!("--only-verify prints section 3 alone: it takes no --out\n{USAGE}");
        }
        Ok(args)
    }

    /// The arguments as they would be typed, for the report.
    fn command_line(&self) -> String {
        let mut s = String::from("cargo run --release -p breakglass-bench --");
        if let Some(out) = &self.out {
            s.push_str(&format!(" --out {}", out.display()));
        }
        let d = Args::default();
        for (flag, value, default) in [
            ("--breaks", self.breaks, d.breaks),
            ("--warmup", self.warmup, d.warmup),
            ("--append-commits", self.append_commits, d.append_commits),
            ("--append-batches", self.append_batches, d.append_batches),
            ("--batch-size", self.batch_size, d.batch_size),
            ("--writers", self.writers, d.writers),
            (
                "--concurrent-commits",
                self.concurrent_commits,
                d.concurrent_commits,
            ),
            ("--verify-entries", self.verify_entries, d.verify_entries),
            ("--alert-events", self.alert_events, d.alert_events),
            ("--target-breaks", self.target_breaks, d.target_breaks),
            (
                "--check-procedures",
                self.check_procedures,
                d.check_procedures,
            ),
            ("--drills", self.drills, d.drills),
            ("--scale-cycles", self.scale_cycles, d.scale_cycles),
        ] {
            if value != default {
                s.push_str(&format!(" {flag} {value}"));
            }
        }
        if self.skip_postgres {
            s.push_str(" --no-postgres");
        }
        if self.skip_targets {
            s.push_str(" --no-targets");
        }
        if self.skip_check {
            s.push_str(" --no-check");
        }
        if self.only_append {
            s.push_str(" --only-append");
        }
        if self.only_verify {
            s.push_str(" --only-verify");
        }
        if self.only_check {
            s.push_str(" --only-check");
        }
        if self.skip_drill {
            s.push_str(" --no-drill");
        }
        if self.only_drill {
            s.push_str(" --only-drill");
        }
        if self.only_scale {
            s.push_str(" --only-scale");
        }
        if self.only_idle {
            s.push_str(" --only-idle");
        }
        s
    }
}

fn number(flag: &str, text: &str) -> Result<usize> {
    let n: usize = text
        .parse()
        .with_context(|| format!("{flag} takes a positive number, not `{text}`"))?;
    if n == 0 {
        bail!("{flag} must be at least 1");
    }
    Ok(n)
}

/// The PostgreSQL server the sections that use one run against (its description), unless
/// `--no-postgres` was given or none is reachable (why not).
async fn postgres_unless_skipped(args: &Args) -> Result<String, String> {
    if args.skip_postgres {
        Err("--no-postgres given".to_owned())
    } else {
        report::postgres_reachable().await
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse(std::env::args().skip(1))?;
    let started = Instant::now();
    let mut report = Report::new(&args.command_line());
    if args.only_append {
        let dir = tempfile::tempdir().context("temp dir for the SQLite database")?;
        let postgres = postgres_unless_skipped(&args).await;
        report.postgres(&postgres);
        report.sqlite_dir(dir.path());
        append_section(&mut report, &args, &postgres, dir.path()).await?;
        println!("{}", report.finish(started.elapsed()));
        return Ok(());
    }
    if args.only_verify {
        report.postgres(&Err("--only-verify given".to_owned()));
        verify_section(&mut report, &args)?;
        println!("{}", report.finish(started.elapsed()));
        return Ok(());
    }
    if args.only_check {
        report.postgres(&Err("--only-check given".to_owned()));
        check_section(&mut report, &args)?;
        println!("{}", report.finish(started.elapsed()));
        return Ok(());
    }
    if args.only_drill {
        report.postgres(&Err("--only-drill given".to_owned()));
        drill_section(&mut report, &args).await?;
        println!("{}", report.finish(started.elapsed()));
        return Ok(());
    }
    if args.only_idle {
        report.postgres(&Err("--only-idle given".to_owned()));
        idle_section(&mut report).await?;
        println!("{}", report.finish(started.elapsed()));
        return Ok(());
    }
    if args.only_scale {
        let postgres = report::postgres_reachable().await;
        report.postgres(&postgres);
        scale_section(&mut report, &args, &postgres).await?;
        println!("{}", report.finish(started.elapsed()));
        return Ok(());
    }

    let dir = tempfile::tempdir().context("temp dir for the SQLite databases")?;
    let postgres = postgres_unless_skipped(&args).await;
    report.postgres(&postgres);
    report.sqlite_dir(dir.path());

    // 1. Time-to-access.
    eprintln!("[1/7] time-to-access: {} breaks on SQLite", args.breaks);
    let sqlite = SqlStore::open_sqlite(&dir.path().join("access.db"))
        .await
        .context("open SQLite")?;
    let mut access = vec![(
        "SQLite",
        Ok(access::run(sqlite, args.breaks, args.warmup)
            .await
            .context("time-to-access on SQLite")?),
    )];
    access.push((
        "PostgreSQL",
        match &postgres {
            Ok(_) => {
                eprintln!("[1/7] time-to-access: {} breaks on PostgreSQL", args.breaks);
                Ok(on_postgres("bench::access", |store| {
                    access::run(store, args.breaks, args.warmup)
                })
                .await
                .context("time-to-access on PostgreSQL")?)
            }
            Err(reason) => Err(reason.clone()),
        },
    ));
    report.access(&access, &args);

    // 2. Audit append with durability.
    append_section(&mut report, &args, &postgres, dir.path()).await?;

    // 3. Audit verify, in memory.
    verify_section(&mut report, &args)?;

    // 4. Alert latency, through the real server to a local webhook receiver.
    eprintln!(
        "[4/7] alert latency: {} breaks through the server to a webhook",
        args.alert_events
    );
    let plan = alerts::Plan {
        events: args.alert_events,
        warmup: args.warmup,
    };
    let figures = alerts::run(plan).await.context("alert latency")?;
    report.alerts(&figures, plan);

    // 5. Time-to-access per target, to a verified login by a real client.
    let plan = targets::Plan {
        breaks: args.target_breaks,
        warmup: args.warmup,
    };
    let mut per_target = Vec::new();
    for kind in [targets::Kind::Postgres, targets::Kind::Mariadb] {
        let label = kind.label();
        let run = if args.skip_targets {
            Err("--no-targets given".to_owned())
        } else {
            eprintln!(
                "[5/7] time-to-access per target: {} breaks on {label}",
                plan.breaks
            );
            let store = SqlStore::open_sqlite(
                &dir.path()
                    .join(format!("targets-{}.db", label.to_ascii_lowercase())),
            )
            .await
            .context("open SQLite")?;
            match kind {
                targets::Kind::Postgres => targets::postgres(store, plan).await,
                targets::Kind::Mariadb => targets::mariadb(store, plan).await,
            }
            .with_context(|| format!("time-to-access on {label}"))?
        };
        if let Err(reason) = &run {
            eprintln!("[5/7] {label} not measured: {reason}");
        }
        per_target.push((label, run));
    }
    report.targets(&per_target, plan);

    // 6. `breakglass check` over generated procedure files.
    check_section(&mut report, &args)?;

    // 7. A full automated drill on PostgreSQL.
    drill_section(&mut report, &args).await?;

    // 8. Scale-out: 1, 2 and 3 servers on one PostgreSQL.
    scale_section(&mut report, &args, &postgres).await?;

    // 9. The server's resident memory at idle.
    idle_section(&mut report).await?;

    let text = report.finish(started.elapsed());
    println!("{text}");
    if let Some(out) = &args.out {
        std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// Section 9: the real server's resident memory at idle, before and after a load (or why not).
async fn idle_section(report: &mut Report) -> Result<()> {
    let plan = idle::Plan {
        procedures: 100,
        requests: 600,
    };
    let run = match idle::binary() {
        Ok(binary) => {
            eprintln!(
                "[9] idle memory of `breakglass serve`: {} procedures, {} requests",
                plan.procedures, plan.requests
            );
            Ok(idle::run(plan, &binary).await.context("idle memory")?)
        }
        Err(reason) => {
            eprintln!("[9] idle memory not measured: {reason}");
            Err(reason)
        }
    };
    report.idle(&run, plan);
    Ok(())
}

/// Section 2: durable audit appends through the store on SQLite (a fresh file in `dir`) and on
/// a fresh PostgreSQL database (or why not).
async fn append_section(
    report: &mut Report,
    args: &Args,
    postgres: &Result<String, String>,
    dir: &std::path::Path,
) -> Result<()> {
    eprintln!("[2/7] audit append on SQLite");
    let plan = append::Plan {
        commits: args.append_commits,
        batches: args.append_batches,
        batch_size: args.batch_size,
        writers: args.writers,
        concurrent_commits: args.concurrent_commits,
    };
    let sqlite = SqlStore::open_sqlite(&dir.join("append.db"))
        .await
        .context("open SQLite")?;
    let mut appends = vec![(
        "SQLite",
        Ok(append::run(sqlite, plan)
            .await
            .context("audit append on SQLite")?),
    )];
    appends.push((
        "PostgreSQL",
        match postgres {
            Ok(_) => {
                eprintln!("[2/7] audit append on PostgreSQL");
                Ok(
                    on_postgres("bench::append", |store| append::run(store, plan))
                        .await
                        .context("audit append on PostgreSQL")?,
                )
            }
            Err(reason) => Err(reason.clone()),
        },
    ));
    report.append(&appends, plan);
    Ok(())
}

/// Section 3: audit verify throughput in memory, against a plain SHA-256 pass.
fn verify_section(report: &mut Report, args: &Args) -> Result<()> {
    eprintln!("[3/7] audit verify over {} entries", args.verify_entries);
    let figures = verify::run(args.verify_entries)?;
    report.verify(&figures);
    Ok(())
}

/// Section 7: full automated drills on PostgreSQL (or why not).
async fn drill_section(report: &mut Report, args: &Args) -> Result<()> {
    let run = if args.skip_drill {
        Err("--no-drill given".to_owned())
    } else {
        eprintln!(
            "[7/7] {} automated drills on PostgreSQL, end to end",
            args.drills
        );
        drill::run(args.drills, args.warmup.min(3))
            .await
            .context("automated drills")?
    };
    if let Err(reason) = &run {
        eprintln!("[7/7] drills not measured: {reason}");
    }
    report.drill(&run);
    Ok(())
}

/// Section 8: break cycles through 1, 2 and 3 servers on one PostgreSQL (or why not).
async fn scale_section(
    report: &mut Report,
    args: &Args,
    postgres: &Result<String, String>,
) -> Result<()> {
    let plan = scale::Plan {
        cycles: args.scale_cycles,
        concurrency: 16,
        warmup: args.warmup,
    };
    let run = match postgres {
        Ok(_) => scale::run(plan).await.context("scale-out")?,
        Err(reason) => Err(reason.clone()),
    };
    if let Err(reason) = &run {
        eprintln!("[8] scale-out not measured: {reason}");
    }
    report.scale(&run, plan);
    Ok(())
}

/// Section 6: `breakglass check` over `--check-procedures` generated files (or why not).
fn check_section(report: &mut Report, args: &Args) -> Result<()> {
    let plan = check::Plan {
        procedures: args.check_procedures,
    };
    let run = if args.skip_check {
        Err("--no-check given".to_owned())
    } else {
        eprintln!(
            "[6/7] breakglass check over {} generated procedure files",
            plan.procedures
        );
        Ok(check::run(plan).context("breakglass check")?)
    };
    report.check(&run, plan);
    Ok(())
}

/// Runs `body` on a store over a fresh PostgreSQL database, dropping the database after.
async fn on_postgres<T, F, Fut>(name: &str, body: F) -> Result<T>
where
    F: FnOnce(SqlStore) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let db = breakglass_testkit::fresh_postgres(name)
        .await
        .context("PostgreSQL became unreachable")?;
    let result = match SqlStore::connect(&db.url).await {
        Ok(store) => {
            let pool = store.clone();
            let result = body(store).await;
            pool.close().await;
            result
        }
        Err(e) => Err(anyhow::Error::new(e).context("connecting to the fresh database")),
    };
    db.drop_db().await;
    result
}
