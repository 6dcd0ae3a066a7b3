//! Tidy: project-wide rules a compiler cannot check. Every Rust file opens with a `//!` line
//! saying what it is for; only `store` knows SQL; only `server` knows axum; the I/O-free crates
//! stay free of I/O and async.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name()
                .is_some_and(|n| n == "target" || n == "vectors")
            {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn files_of(krate: &str) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(
        &workspace().join("crates").join(krate).join("src"),
        &mut files,
    );
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            (p, text)
        })
        .collect()
}

#[test]
fn every_file_opens_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    rust_files(&workspace().join("xtask"), &mut files);
    assert!(files.len() > 20, "found only {} files", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|p| {
            !std::fs::read_to_string(p)
                .unwrap_or_default()
                .starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` header: {missing:?}"
    );
}

#[test]
fn pure_crates_do_no_io_and_are_not_async() {
    for krate in ["domain", "custody", "audit", "recovery"] {
        for (path, text) in files_of(krate) {
            for banned in [
                "async fn", "std::fs", "std::net", "tokio", "sqlx", "reqwest", "println!",
            ] {
                assert!(
                    !text.contains(banned),
                    "{} uses `{banned}`; {krate} must do no I/O",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn only_the_store_knows_sql_and_only_the_server_knows_http() {
    for krate in [
        "domain", "custody", "audit", "recovery", "engine", "server", "cli",
    ] {
        for (path, text) in files_of(krate) {
            assert!(
                !text.contains("sqlx::"),
                "{} uses sqlx; only the store may",
                path.display()
            );
        }
    }
    for krate in ["domain", "custody", "audit", "engine", "store"] {
        for (path, text) in files_of(krate) {
            assert!(
                !text.contains("axum::"),
                "{} uses axum; only the server may",
                path.display()
            );
        }
    }
}

#[test]
fn engine_types_are_not_serialize() {
    for krate in ["domain", "engine"] {
        for (path, text) in files_of(krate) {
            // The procedure file format is serde by nature (it IS a file format); nothing else.
            if path.ends_with("procedure.rs") {
                continue;
            }
            assert!(
                !text.contains("derive(Serialize") && !text.contains("Serialize)]"),
                "{} derives Serialize",
                path.display()
            );
        }
    }
}
