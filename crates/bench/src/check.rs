//! `breakglass check FILES` over many generated procedure files: the CLI's lint path (read each
//! file, then `readiness::lint_file`: parse, validate, lint — the function the CLI calls), in
//! process and through the real binary, against reading and YAML-parsing the same files into
//! untyped values.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use breakglass_custody::keygen;
use breakglass_domain::readiness::{self, LintPolicy, Verdict};
use breakglass_domain::{Limits, ProcedureError};
use serde_json::Value;

/// Timed rounds of each pass; the fastest counts.
pub(crate) const ROUNDS: usize = 3;

/// Distinct custodian keys the generated procedures draw from.
pub(crate) const KEYS: usize = 8;

/// What the bench asks of this run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Procedure files to generate, one procedure each.
    pub(crate) procedures: usize,
}

/// Figures of the check run.
#[derive(Debug, Clone)]
pub(crate) struct CheckFigures {
    /// Files (and procedures) checked.
    pub(crate) files: usize,
    /// Their total size.
    pub(crate) bytes: usize,
    /// Procedures judged ready, degraded and broken by the lint.
    pub(crate) verdicts: [usize; 3],
    /// Findings in all.
    pub(crate) findings: usize,
    /// Generating and writing the files (untimed for the ratios).
    pub(crate) generate: Duration,
    /// Read every file and YAML-parse it into untyped values (the baseline).
    pub(crate) baseline: Duration,
    /// Read every file and `readiness::lint_file` it, in this process.
    pub(crate) lint: Duration,
    /// The real `breakglass` binary on every file: `--output json`, then `--output sarif`.
    pub(crate) binary: Result<BinaryFigures, String>,
}

/// Timings of the real binary.
#[derive(Debug, Clone)]
pub(crate) struct BinaryFigures {
    /// The binary that ran.
    pub(crate) path: PathBuf,
    /// `breakglass --output json check FILES…`, process start to exit.
    pub(crate) json: Duration,
    /// `breakglass --output sarif check FILES…`, process start to exit.
    pub(crate) sarif: Duration,
}

/// Generates the files in a temp dir and times the passes over them.
pub(crate) fn run(plan: Plan) -> Result<CheckFigures> {
    let dir = tempfile::tempdir().context("temp dir for the procedure files")?;
    let t = Instant::now();
    let keys: Vec<String> = (0..KEYS)
        .map(|_| keygen().1.canonical().to_owned())
        .collect();
    let mut names = Vec::with_capacity(plan.procedures);
    let mut bytes = 0;
    for i in 0..plan.procedures {
        let name = format!("p{i:05}.yaml");
        let text = procedure(i, &keys);
        bytes += text.len();
        std::fs::write(dir.path().join(&name), text).with_context(|| format!("writing {name}"))?;
        names.push(name);
    }
    let generate = t.elapsed();
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.path().join(n)).collect();

    // The lint's verdicts, once untimed, for the report and to check the binary against.
    let mut verdicts = [0; 3];
    let mut findings = 0;
    for path in &paths {
        for l in lint(path)? {
            verdicts[l.readiness.verdict as usize] += 1;
            findings += l.readiness.findings.len();
        }
    }
    ensure!(
        verdicts.iter().sum::<usize>() == plan.procedures,
        "linted {} procedures of {}",
        verdicts.iter().sum::<usize>(),
        plan.procedures
    );

    let binary_path = std::env::current_exe()
        .context("the bench's own path")?
        .with_file_name(format!("breakglass{}", std::env::consts::EXE_SUFFIX));
    let mut binary = if binary_path.is_file() {
        Ok(BinaryFigures {
            path: binary_path,
            json: Duration::MAX,
            sarif: Duration::MAX,
        })
    } else {
        Err(format!(
            "no `breakglass` binary next to the bench at {}: `cargo build --release -p breakglass-cli` first",
            binary_path.display()
        ))
    };

    // Each pass runs ROUNDS times, interleaved, and the fastest of each counts: on a shared
    // machine the minimum is the figure least disturbed by other work. The files are in the
    // page cache after the first pass of the first round (and after being written).
    let (mut baseline, mut linted) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for path in &paths {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            black_box(docs);
        }
        baseline = baseline.min(t.elapsed());

        // What `breakglass check FILES` does: read every file, then `lint_files`, which
        // spreads the parsing over the machine's cores.
        let t = Instant::now();
        let mut files = Vec::with_capacity(paths.len());
        for path in &paths {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            files.push((path.display().to_string(), text));
        }
        let results = readiness::lint_files(&files, &Limits::default(), &LintPolicy::default());
        ensure!(
            results.iter().all(Result::is_ok),
            "a generated file is invalid"
        );
        black_box(results);
        linted = linted.min(t.elapsed());

        if let Ok(b) = &mut binary {
            let (json, out) = check_binary(&b.path, dir.path(), &names, "json")?;
            b.json = b.json.min(json);
            let procedures = out["procedures"].as_array().map_or(0, Vec::len);
            ensure!(
                procedures == plan.procedures,
                "the binary judged {procedures} procedures of {}",
                plan.procedures
            );
            let (sarif, out) = check_binary(&b.path, dir.path(), &names, "sarif")?;
            b.sarif = b.sarif.min(sarif);
            let results = out["runs"][0]["results"].as_array().map_or(0, Vec::len);
            ensure!(
                results == findings,
                "the binary's SARIF has {results} results, the lint {findings} findings"
            );
        }
    }

    Ok(CheckFigures {
        files: plan.procedures,
        bytes,
        verdicts,
        findings,
        generate,
        baseline,
        lint: linted,
        binary,
    })
}

/// Reads one file and lints it, as `breakglass check FILES` does for each file.
fn lint(path: &Path) -> Result<Vec<readiness::Linted>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    readiness::lint_file(
        &path.display().to_string(),
        &text,
        &Limits::default(),
        &LintPolicy::default(),
    )
    .map_err(|errors: Vec<ProcedureError>| {
        let first = errors.first().map(ToString::to_string).unwrap_or_default();
        anyhow::anyhow!("generated file is invalid: {first}")
    })
}

/// Runs `breakglass --output FORMAT check NAMES…` in `dir`; returns its wall time and its
/// output. Exit 10 (a broken procedure) is expected, as is 0 when none is broken.
fn check_binary(
    binary: &Path,
    dir: &Path,
    names: &[String],
    format: &str,
) -> Result<(Duration, Value)> {
    let t = Instant::now();
    let out = Command::new(binary)
        .args(["--output", format, "check"])
        .args(names)
        .current_dir(dir)
        .env_remove("BREAKGLASS_SERVER")
        .env_remove("BREAKGLASS_TOKEN")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    let took = t.elapsed();
    ensure!(
        matches!(out.status.code(), Some(0 | 10)),
        "breakglass check exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v = serde_json::from_slice(&out.stdout).context("breakglass check's output")?;
    Ok((took, v))
}

/// The `i`-th generated procedure. The mix: 2 to 6 custodians, sometimes a quorum of all of
/// them, with or without alert channels, drills (some too far apart) and rotation, sometimes a
/// dependency on the very outage the procedure is for (broken); secret, PostgreSQL and SSH
/// targets.
fn procedure(i: usize, keys: &[String]) -> String {
    let n = 2 + i % 5;
    let quorum = if i.is_multiple_of(7) { n } else { 2 };
    let mut s =
        format!("id: proc-{i:05}\ndescription: generated procedure {i} for the check benchmark\n");
    s.push_str(match i % 4 {
        0 => "target:\n  kind: secret\n",
        1 => {
            "target:\n  kind: postgres\n  details:\n    host: db-07.internal\n    dbname: app\n    admin_user: breakglass_admin\n    grant_role: app_admin\n    connection: db-07\n"
        }
        2 => {
            "target:\n  kind: ssh\n  details:\n    principals: root, deploy\n    hosts: web-01, web-02\n"
        }
        _ => "target:\n  kind: secret\n  details:\n    host: vault-01.internal\n    location: safe 3, shelf 2\n",
    });
    s.push_str("custodians:\n");
    for c in 0..n {
        let key = &keys[(i + c) % keys.len()];
        s.push_str(&format!(
            "  - name: custodian-{c}\n    contact: custodian-{c}@example.com\n    key: {key}\n"
        ));
    }
    s.push_str(&format!("quorum: {quorum}\nmax_grant: 15m\n"));
    if i % 4 != 3 {
        s.push_str("alert_channels: [sec-slack, pager]\nack_within: 5m\nescalation: [phone]\n");
    }
    match i % 3 {
        0 => {}
        1 => s.push_str("drill:\n  every: 30d\n"),
        _ if i % 9 == 2 => s.push_str("drill:\n  every: 180d\n"),
        _ => s.push_str("drill:\n  every: 60d\n"),
    }
    if i % 5 != 1 {
        s.push_str("rotation:\n  max_credential_age: 90d\n");
    }
    if i.is_multiple_of(10) {
        s.push_str("dependencies: [okta, vpn]\nprotects_against: [okta]\n");
    } else {
        s.push_str("dependencies: [vpn, dns]\nprotects_against: [okta]\n");
    }
    s
}

impl CheckFigures {
    /// Procedures per second for a pass that took `d`.
    pub(crate) fn per_s(&self, d: Duration) -> f64 {
        self.files as f64 / d.as_secs_f64()
    }

    /// Ready, degraded and broken counts.
    pub(crate) fn verdict(&self, v: Verdict) -> usize {
        self.verdicts[v as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_procedures_are_valid_and_mixed() {
        let keys: Vec<String> = (0..KEYS)
            .map(|_| keygen().1.canonical().to_owned())
            .collect();
        let mut verdicts = [0; 3];
        for i in 0..90 {
            let text = procedure(i, &keys);
            let linted =
                readiness::lint_file("p.yaml", &text, &Limits::default(), &LintPolicy::default())
                    .unwrap_or_else(|e| panic!("procedure {i} is invalid: {e:?}\n{text}"));
            assert_eq!(linted.len(), 1);
            verdicts[linted[0].readiness.verdict as usize] += 1;
        }
        assert!(verdicts.iter().all(|&n| n > 0), "{verdicts:?}");
    }
}
