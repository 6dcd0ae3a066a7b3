//! Project tasks. `cargo xtask test` runs the whole test suite and prints a summary that
//! counts skipped tests; `cargo xtask ci` runs exactly what `.ci/run` runs; `cargo xtask bench`
//! runs the benchmarks and writes BENCHMARKS.md; `cargo xtask fuzz [SECONDS] [--release]` builds
//! the cargo-fuzz targets and runs each for a bounded time.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    match task.as_str() {
        "test" => test(&root),
        "ci" => {
            run(&root, "cargo", &["fmt", "--all", "--", "--check"])?;
            run(
                &root,
                "cargo",
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            )?;
            test(&root)
        }
        "bench" => {
            // Section 6 also times the real `breakglass` binary, which the bench finds next to
            // itself.
            run(
                &root,
                "cargo",
                &["build", "--release", "-p", "breakglass-cli"],
            )?;
            run(
                &root,
                "cargo",
                &[
                    "run",
                    "--release",
                    "-p",
                    "breakglass-bench",
                    "--",
                    "--out",
                    "BENCHMARKS.md",
                ],
            )
        }
        "fuzz" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            let seconds = args
                .iter()
                .find_map(|a| a.parse::<u64>().ok())
                .unwrap_or(20);
            fuzz(&root, seconds, args.iter().any(|a| a == "--release"))
        }
        _ => bail!("usage: cargo xtask test|ci|bench|fuzz [SECONDS] [--release]"),
    }
}

fn run(root: &Path, program: &str, args: &[&str]) -> Result<()> {
    eprintln!("$ {program} {}", args.join(" "));
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    eprintln!(
        "$ {program} {}: done in {} s",
        args.join(" "),
        started.elapsed().as_secs()
    );
    Ok(())
}

/// Runs every test of the workspace, echoing the output, then prints one summary line:
/// `N passed, N failed, N skipped`. Tests that cannot reach a service they need record a skip
/// in `$BREAKGLASS_SKIP_DIR` (under `CI=true` they fail instead).
fn test(root: &Path) -> Result<()> {
    let skip_dir: PathBuf = root.join("target").join("skips");
    let _ = std::fs::remove_dir_all(&skip_dir);
    std::fs::create_dir_all(&skip_dir)?;
    eprintln!("$ cargo test --workspace");
    let started = Instant::now();
    let mut child = Command::new("cargo")
        .args(["test", "--workspace", "--no-fail-fast"])
        .env("BREAKGLASS_SKIP_DIR", &skip_dir)
        .current_dir(root)
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    let stdout = child.stdout.take().context("stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count(rest, " passed");
            failed += count(rest, " failed");
            ignored += count(rest, " ignored");
        }
    }
    let status = child.wait()?;
    let mut skips: Vec<String> = std::fs::read_dir(&skip_dir)?
        .filter_map(|e| e.ok())
        .map(|e| {
            format!(
                "{}: {}",
                e.file_name().to_string_lossy(),
                std::fs::read_to_string(e.path()).unwrap_or_default()
            )
        })
        .collect();
    skips.sort();
    for s in &skips {
        println!("skipped {s}");
    }
    let skipped = skips.len() as u64;
    // A skipped test returns early and so is also counted as passed by cargo; count it once.
    println!();
    println!(
        "summary: {} passed, {failed} failed, {skipped} skipped ({ignored} ignored benchmarks) in {} s (build and run)",
        passed.saturating_sub(skipped),
        started.elapsed().as_secs()
    );
    if !status.success() || failed > 0 {
        bail!("tests failed");
    }
    Ok(())
}

fn count(summary: &str, word: &str) -> u64 {
    summary
        .split(';')
        .find(|part| part.trim_end().ends_with(word.trim()))
        .and_then(|part| part.split_whitespace().rev().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The cargo-fuzz targets (`fuzz/fuzz_targets/`).
const FUZZ_TARGETS: &[&str] = &[
    "procedure",
    "share",
    "audit_line",
    "api_body",
    "pg_wire",
    "recovery",
];

/// Builds every fuzz target (libFuzzer with coverage instrumentation; no sanitizer, so the
/// stable toolchain builds it) and runs each for `seconds`, printing its executions. A crash
/// fails the task and leaves its input in `fuzz/artifacts/TARGET/`.
fn fuzz(root: &Path, seconds: u64, release: bool) -> Result<()> {
    let fuzz_dir = root.join("fuzz");
    let mut build = vec!["fuzz", "build", "-s", "none"];
    build.push(if release { "--release" } else { "--dev" });
    run(&fuzz_dir, "cargo", &build)?;
    let time = format!("-max_total_time={seconds}");
    let mut summary = Vec::new();
    for target in FUZZ_TARGETS {
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let mut args = vec!["fuzz", "run", "-s", "none"];
        args.push(if release { "--release" } else { "--dev" });
        args.extend([target, "--", &time]);
        eprintln!("$ cargo {}", args.join(" "));
        let out = Command::new("cargo")
            .args(&args)
            .current_dir(&fuzz_dir)
            .output()
            .with_context(|| format!("running fuzz target {target}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let done = log
            .lines()
            .rev()
            .find(|l| l.starts_with("Done "))
            .unwrap_or("no summary line")
            .to_owned();
        if !out.status.success() {
            eprintln!("{log}");
            bail!("fuzz target {target} failed: see fuzz/artifacts/{target}/");
        }
        println!("fuzz {target}: {done}");
        summary.push(format!("{target}: {done}"));
    }
    println!("fuzz summary: no crash; {}", summary.join("; "));
    Ok(())
}
