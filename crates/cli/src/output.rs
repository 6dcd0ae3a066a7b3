//! Output: human tables or JSON (`--output json` on every listing).

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::Value;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Human-readable text (also `table`).
    #[value(alias = "table")]
    Text,
    /// JSON, one document.
    Json,
    /// SARIF 2.1.0, for code scanning (`check` only).
    Sarif,
}

impl Format {
    /// Whether to print JSON.
    pub(crate) fn is_json(self) -> bool {
        self == Format::Json
    }
}

/// Prints a JSON value pretty.
pub(crate) fn json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Prints a table.
pub(crate) fn table(header: &[&str], rows: Vec<Vec<String>>) {
    println!("{}", table_text(header, rows));
}

/// A table as text (`(none)` without rows).
pub(crate) fn table_text(header: &[&str], rows: Vec<Vec<String>>) -> String {
    if rows.is_empty() {
        return "(none)".into();
    }
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    t.to_string()
}

/// A JSON field as display text (`-` for null).
pub(crate) fn field(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        other => other.to_string(),
    }
}

/// Prints a listing: the whole JSON document with `--output json`, otherwise a table with one
/// row per element of `value[key]`.
pub(crate) fn listing(
    format: Format,
    value: &Value,
    key: &str,
    header: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) {
    if format.is_json() {
        json(value);
        return;
    }
    table(
        header,
        value[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(row)
            .collect(),
    );
}
