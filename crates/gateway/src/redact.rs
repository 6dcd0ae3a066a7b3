//! Passwords kept out of session recordings.
//!
//! A responder fixing an incident often sets a password: `ALTER ROLE app PASSWORD '…'`, a
//! user mapping's `OPTIONS (password '…')`, a `CREATE SUBSCRIPTION … CONNECTION 'host=…
//! password=…'` or a `dblink_connect('postgresql://app:…@db/app')`. The statement reaches the
//! target as sent, but its recording — read by every admin and auditor, copied into evidence
//! packs — shows `'[redacted]'` in place of:
//!
//! - the string literal after the keyword `PASSWORD` (any case, an optional `=` between), in
//!   any quoting: `'…'`, `E'…'`, `U&'…'`, `$tag$…$tag$`;
//! - inside any string literal, the value of a libpq `password=` key (bare or quoted), and the
//!   password of a URI's `user:password@`;
//!
//! and a bound parameter's value ([`value`]) has the same `password=` and URI passwords
//! redacted. Comments, quoted identifiers and the rest of the statement are kept as sent.
//!
//! Hand-written: what is needed is a scan that finds the literals of one statement and their
//! positions, without parsing it (a statement may be any dialect the target accepts, or
//! malformed); PostgreSQL's own parser is not available as a crate without C. The scan is
//! linear and allocates only when it redacts; a statement with neither `password` (any case)
//! nor `://` is returned as is after one `memchr` pass.

use std::borrow::Cow;

/// What a redacted secret is recorded as.
pub const REDACTED: &str = "[redacted]";

/// The passwords a statement or a bound value carried, kept only while its answer is awaited:
/// an error the server sends back may quote them (`syntax error at or near "'hunter2"`), and
/// the recorded error has them replaced too ([`Secrets::scrub`]). Zeroized when dropped.
#[derive(Default)]
pub struct Secrets(Vec<zeroize::Zeroizing<String>>);

impl Secrets {
    /// Whether nothing was redacted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds the secrets of `other`.
    pub fn extend(&mut self, other: &Secrets) {
        self.0.extend(other.0.iter().cloned());
    }

    fn push(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        self.0.push(zeroize::Zeroizing::new(secret.to_owned()));
        // As the server may echo it: with a literal's doubled quotes or backslash escapes
        // undone.
        for undone in [secret.replace("''", "'"), secret.replace("\\'", "'")] {
            if undone != secret && !undone.is_empty() {
                self.0.push(zeroize::Zeroizing::new(undone));
            }
        }
    }

    /// `message` (a server's error about the statement) with every secret in it replaced by
    /// `[redacted]`, longest first.
    pub fn scrub(&self, message: &str) -> String {
        let mut out = message.to_owned();
        let mut by_length: Vec<&str> = self.0.iter().map(|s| s.as_str()).collect();
        by_length.sort_unstable_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in by_length {
            if out.contains(secret) {
                out = out.replace(secret, REDACTED);
            }
        }
        out
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} redacted)", self.0.len())
    }
}

/// `text` as recorded: the passwords it carries replaced by `'[redacted]'`.
pub fn statement(text: &str) -> Cow<'_, str> {
    statement_keeping(text, &mut None)
}

/// [`statement`], and the secrets it redacted added to `secrets` (created when there are
/// any).
pub fn statement_keeping<'a>(text: &'a str, secrets: &mut Option<Secrets>) -> Cow<'a, str> {
    if !mentions_secret(text.as_bytes()) {
        return Cow::Borrowed(text);
    }
    let b = text.as_bytes();
    let mut out = String::new();
    // Bytes of `text` before `copied` are in `out` already (when anything was redacted).
    let mut copied = 0usize;
    let mut i = 0usize;
    // Set after the keyword PASSWORD: the next literal is a password (until another token).
    let mut after_password = false;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() || c == b'=' {
            i += 1;
            continue;
        }
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            i = memchr::memchr(b'\n', &b[i..]).map_or(b.len(), |n| i + n + 1);
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i = block_comment_end(b, i);
            continue;
        }
        if c == b'"' {
            i = quoted_end(b, i + 1, b'"', false);
            after_password = false;
            continue;
        }
        if let Some(lit) = literal_at(b, i) {
            let body = &text[lit.body.clone()];
            if after_password {
                keep(secrets, body);
                push_redacted(&mut out, text, &mut copied, lit.start, lit.end);
            } else if let Some(redacted) = inner(body, secrets) {
                // The literal keeps its quoting; only the secrets in it are replaced.
                out.push_str(&text[copied..lit.body.start]);
                out.push_str(&redacted);
                copied = lit.body.end;
            }
            i = lit.end;
            after_password = false;
            continue;
        }
        if is_word_byte(c) {
            let start = i;
            while i < b.len() && is_word_byte(b[i]) {
                i += 1;
            }
            after_password = b[start..i].eq_ignore_ascii_case(b"password");
            continue;
        }
        // Any other character (a comma, a parenthesis…) ends what PASSWORD applies to.
        after_password = false;
        i += text[i..].chars().next().map_or(1, char::len_utf8);
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// A bound parameter's value as recorded: the `password=` values and URI passwords it
/// carries (a connection string bound as a parameter) replaced by `[redacted]`.
pub fn value(v: &str) -> Cow<'_, str> {
    value_keeping(v, &mut None)
}

/// [`value`], and the secrets it redacted added to `secrets` (created when there are any).
pub fn value_keeping<'a>(v: &'a str, secrets: &mut Option<Secrets>) -> Cow<'a, str> {
    if !mentions_secret(v.as_bytes()) {
        return Cow::Borrowed(v);
    }
    inner(v, secrets).map_or(Cow::Borrowed(v), Cow::Owned)
}

/// Bytes not known to be text (a binary value of a type the gateway shows in hex, a fast-path
/// function call's argument, the data of a `COPY … FROM STDIN`) with the passwords they carry
/// as text ([`value`]'s: `password=` values and URI passwords) replaced by `[redacted]`, and
/// the secrets added to `secrets`; `None` when they carry none. A hex dump is as readable as
/// the text, so it must not hold them either (`\lo_import` of a configuration file holding a
/// connection string, a `bytea` column given one). The other bytes are kept as they are; when
/// a secret is not valid UTF-8 (so not found as it was read), the whole value is given as the
/// redacted text instead.
pub fn bytes_keeping(v: &[u8], secrets: &mut Option<Secrets>) -> Option<Vec<u8>> {
    if !mentions_secret(v) {
        return None;
    }
    let text = String::from_utf8_lossy(v);
    let mut found = None;
    let redacted = inner(&text, &mut found)?;
    let found = found?;
    let mut by_length: Vec<&str> = found.0.iter().map(|s| s.as_str()).collect();
    by_length.sort_unstable_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = v.to_vec();
    let mut all_found = true;
    for secret in by_length {
        let finder = memchr::memmem::Finder::new(secret.as_bytes());
        if finder.find(&out).is_none() {
            // Not there as read: it held bytes that are not UTF-8 (or it is an unescaped
            // form, or part of a longer one already replaced, which are harmless).
            if secret.contains(char::REPLACEMENT_CHARACTER) {
                all_found = false;
            }
            continue;
        }
        let mut replaced = Vec::with_capacity(out.len());
        let mut copied = 0;
        for at in finder.find_iter(&out) {
            if at < copied {
                continue;
            }
            replaced.extend_from_slice(&out[copied..at]);
            replaced.extend_from_slice(REDACTED.as_bytes());
            copied = at + secret.len();
        }
        replaced.extend_from_slice(&out[copied..]);
        out = replaced;
    }
    secrets.get_or_insert_with(Secrets::default).extend(&found);
    Some(if all_found {
        out
    } else {
        redacted.into_bytes()
    })
}

/// Adds `secret` to `secrets` when they are being kept (`Some` or about to be).
fn keep(secrets: &mut Option<Secrets>, secret: &str) {
    secrets.get_or_insert_with(Secrets::default).push(secret);
}

/// Whether `b` contains `password` in any case, or `://`: only then can it hold a secret this
/// module redacts.
fn mentions_secret(b: &[u8]) -> bool {
    memchr::memchr2_iter(b'p', b'P', b).any(|i| {
        b.get(i..i + 8)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"password"))
    }) || memchr::memmem::find(b, b"://").is_some()
}

/// Where a literal starts, ends and its contents (between the quotes) lie.
struct Literal {
    start: usize,
    end: usize,
    body: std::ops::Range<usize>,
}

/// The string literal starting at `i`, if one does: `'…'`, `E'…'`/`e'…'` (backslash
/// escapes), `U&'…'`, `N'…'`, `B'…'`/`X'…'` (kept whole), `$tag$…$tag$`. An unterminated one
/// runs to the end of the text.
fn literal_at(b: &[u8], i: usize) -> Option<Literal> {
    let c = b[i];
    // A prefix letter counts only when it does not end a longer word (`type'…'` is no literal
    // prefix; the caller has already consumed words, so `i` starts a token here).
    let (open, backslashes) = match c {
        b'\'' => (i, false),
        b'E' | b'e' if b.get(i + 1) == Some(&b'\'') => (i + 1, true),
        b'N' | b'n' | b'B' | b'b' | b'X' | b'x' if b.get(i + 1) == Some(&b'\'') => (i + 1, false),
        b'U' | b'u' if b.get(i + 1) == Some(&b'&') && b.get(i + 2) == Some(&b'\'') => {
            (i + 2, false)
        }
        b'$' => {
            let tag_end = b[i + 1..]
                .iter()
                .position(|&x| !(x.is_ascii_alphanumeric() || x == b'_' || x >= 0x80))
                .map(|n| i + 1 + n)?;
            if b.get(tag_end) != Some(&b'$') || b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                // `$1` (a parameter) or a lone `$`.
                return None;
            }
            let tag = &b[i..=tag_end];
            let body_start = tag_end + 1;
            return Some(match memchr::memmem::find(&b[body_start..], tag) {
                Some(n) => Literal {
                    start: i,
                    end: body_start + n + tag.len(),
                    body: body_start..body_start + n,
                },
                None => Literal {
                    start: i,
                    end: b.len(),
                    body: body_start..b.len(),
                },
            });
        }
        _ => return None,
    };
    let end = quoted_end(b, open + 1, b'\'', backslashes);
    let body_end = if end > open + 1 && b.get(end - 1) == Some(&b'\'') && end - 1 > open {
        end - 1
    } else {
        end
    };
    Some(Literal {
        start: i,
        end,
        body: open + 1..body_end,
    })
}

/// The position after the closing `quote` of a quoted run whose contents start at `i` (a
/// doubled quote stands for one; with `backslashes`, a backslash escapes the next byte).
fn quoted_end(b: &[u8], mut i: usize, quote: u8, backslashes: bool) -> usize {
    while i < b.len() {
        let c = b[i];
        if backslashes && c == b'\\' {
            i += 2;
            continue;
        }
        if c == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// The position after the `*/` closing the (nested) block comment opened at `i`.
fn block_comment_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// Appends `text[copied..start]` and `'[redacted]'` for the literal `start..end`.
fn push_redacted(out: &mut String, text: &str, copied: &mut usize, start: usize, end: usize) {
    out.push_str(&text[*copied..start]);
    out.push('\'');
    out.push_str(REDACTED);
    out.push('\'');
    *copied = end;
}

/// `s` (a literal's contents or a parameter's value) with its `password=` values and URI
/// passwords redacted; `None` when it holds neither.
fn inner(s: &str, kept: &mut Option<Secrets>) -> Option<String> {
    let b = s.as_bytes();
    // (start, end) of each secret, in order, not overlapping.
    let mut secrets: Vec<(usize, usize)> = Vec::new();
    // libpq key/value: `password = value`, the key a whole word, the value bare (to the next
    // space) or single-quoted with backslash escapes.
    for at in memchr::memchr2_iter(b'p', b'P', b) {
        let Some(word) = b.get(at..at + 8) else {
            break;
        };
        if !word.eq_ignore_ascii_case(b"password")
            || (at > 0 && is_word_byte(b[at - 1]))
            || b.get(at + 8).is_some_and(|&c| is_word_byte(c))
        {
            continue;
        }
        let mut j = at + 8;
        while b.get(j).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        if b.get(j) != Some(&b'=') {
            continue;
        }
        j += 1;
        while b.get(j).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        let start = j;
        let end = if matches!(b.get(j), Some(b'\'' | b'\\')) {
            // A quoted value, its quotes escaped once more by the SQL literal around it:
            // everything to the end is taken as the secret rather than unescaping twice.
            b.len()
        } else {
            // A bare value ends at white space (anything after it, in a URI's query or
            // another format's `;`-separated pairs, is redacted with it: better too much).
            memchr::memchr3(b' ', b'\t', b'\n', &b[j..]).map_or(b.len(), |n| j + n)
        };
        if end > start {
            secrets.push((start, end));
        }
    }
    // URI user info: `scheme://user:password@host`.
    let mut from = 0usize;
    while let Some(n) = memchr::memmem::find(&b[from..], b"://") {
        let auth_start = from + n + 3;
        let auth_end = b[auth_start..]
            .iter()
            .position(|&c| matches!(c, b'/' | b'?' | b'#') || c.is_ascii_whitespace())
            .map_or(b.len(), |p| auth_start + p);
        let auth = &b[auth_start..auth_end];
        if let Some(at) = memchr::memrchr(b'@', auth)
            && let Some(colon) = memchr::memchr(b':', &auth[..at])
        {
            let (start, end) = (auth_start + colon + 1, auth_start + at);
            if end > start {
                secrets.push((start, end));
            }
        }
        from = auth_end.max(auth_start);
    }
    if secrets.is_empty() {
        return None;
    }
    secrets.sort_unstable();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0usize;
    for (start, end) in secrets {
        if start < copied {
            continue;
        }
        out.push_str(&s[copied..start]);
        out.push_str(REDACTED);
        keep(kept, &s[start..end]);
        copied = end;
    }
    out.push_str(&s[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        statement(s).into_owned()
    }

    #[test]
    fn statements_without_secrets_are_not_copied() {
        for s in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
            "SELECT 'password' AS word",
            "SELECT password FROM users",
            "UPDATE t SET note = 'no secret here' WHERE id = $1",
            "",
        ] {
            assert!(matches!(statement(s), Cow::Borrowed(_)), "{s}");
            assert_eq!(r(s), s);
        }
    }

    /// The secrets a redaction removed are kept (as written and as the server would echo
    /// them unescaped) and scrubbed from a message, longest first; nothing is kept when
    /// nothing was redacted.
    #[test]
    fn redacted_secrets_are_kept_to_scrub_the_servers_error() {
        let mut kept = None;
        let _ = statement_keeping("SELECT 1", &mut kept);
        let _ = value_keeping("host=db", &mut kept);
        assert!(kept.is_none());
        let recorded = statement_keeping(
            "ALTER ROLE a PASSWORD E'x\\'y'; SELECT dblink_connect('postgresql://u:pw2@h/d')",
            &mut kept,
        );
        assert_eq!(
            recorded,
            "ALTER ROLE a PASSWORD '[redacted]'; SELECT dblink_connect('postgresql://u:[redacted]@h/d')"
        );
        let kept = kept.expect("two secrets");
        assert_eq!(format!("{kept:?}"), "Secrets(3 redacted)");
        assert_eq!(
            kept.scrub("near \"x\\'y\" and \"x'y\", then pw2; pw"),
            "near \"[redacted]\" and \"[redacted]\", then [redacted]; pw"
        );
        let mut v = None;
        assert_eq!(value_keeping("password= ", &mut v), "password= ");
        assert!(v.is_none(), "an empty value is no secret");
    }

    #[test]
    fn role_passwords_are_redacted() {
        assert_eq!(
            r("ALTER ROLE app WITH PASSWORD 'hunter2' VALID UNTIL 'infinity'"),
            "ALTER ROLE app WITH PASSWORD '[redacted]' VALID UNTIL 'infinity'"
        );
        assert_eq!(
            r("create user bob encrypted password 'it''s secret';"),
            "create user bob encrypted password '[redacted]';"
        );
        assert_eq!(
            r("ALTER USER x PASSWORD E'a\\'b' LOGIN"),
            "ALTER USER x PASSWORD '[redacted]' LOGIN"
        );
        assert_eq!(
            r("ALTER ROLE x PASSWORD $$s3cret$$"),
            "ALTER ROLE x PASSWORD '[redacted]'"
        );
        assert_eq!(
            r("ALTER ROLE x PASSWORD $pw$a$b$pw$;"),
            "ALTER ROLE x PASSWORD '[redacted]';"
        );
        assert_eq!(
            r("ALTER ROLE x PASSWORD /* new */ U&'d\\0061t\\+000061'"),
            "ALTER ROLE x PASSWORD /* new */ '[redacted]'"
        );
        // psql's \password sends a SCRAM verifier: redacted too.
        assert_eq!(
            r("ALTER USER \"App\" PASSWORD 'SCRAM-SHA-256$4096:abc$def:ghi'"),
            "ALTER USER \"App\" PASSWORD '[redacted]'"
        );
        assert_eq!(
            r("ALTER ROLE x PASSWORD NULL"),
            "ALTER ROLE x PASSWORD NULL"
        );
        // Several statements in one query, and an unterminated literal.
        assert_eq!(
            r("CREATE ROLE a PASSWORD 'x'; CREATE ROLE b PASSWORD 'y"),
            "CREATE ROLE a PASSWORD '[redacted]'; CREATE ROLE b PASSWORD '[redacted]'"
        );
        assert_eq!(
            r("SELECT * FROM users WHERE password = 'plain'"),
            "SELECT * FROM users WHERE password = '[redacted]'"
        );
    }

    #[test]
    fn literals_that_only_look_like_keywords_are_kept() {
        // PASSWORD inside a comment, a literal or a quoted identifier is not the keyword.
        for s in [
            "SELECT 1 -- PASSWORD 'x'\n, 'kept'",
            "SELECT /* password */ 'kept'",
            "SELECT \"password\" 'kept'",
            "SELECT 'password', 'kept'",
            "ALTER ROLE x PASSWORD NULL, 'kept'",
        ] {
            assert!(r(s).contains("'kept'"), "{s} → {}", r(s));
        }
    }

    #[test]
    fn connection_strings_in_literals_are_redacted() {
        assert_eq!(
            r("CREATE SUBSCRIPTION s CONNECTION 'host=db password=pa55 dbname=app' PUBLICATION p"),
            "CREATE SUBSCRIPTION s CONNECTION 'host=db password=[redacted] dbname=app' PUBLICATION p"
        );
        assert_eq!(
            r("SELECT dblink_connect('c', 'password = ''a b'' user=x')"),
            "SELECT dblink_connect('c', 'password = [redacted]')"
        );
        assert_eq!(
            r("SELECT dblink_connect('postgresql://app:s3cr%40t@db:5432/app?sslmode=require')"),
            "SELECT dblink_connect('postgresql://app:[redacted]@db:5432/app?sslmode=require')"
        );
        assert_eq!(
            r("SELECT 'https://example.com/path', 'postgres://nopass@db/app'"),
            "SELECT 'https://example.com/path', 'postgres://nopass@db/app'"
        );
        assert_eq!(
            r("CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'app', password 'pw')"),
            "CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'app', password '[redacted]')"
        );
        assert_eq!(
            r("ALTER USER MAPPING FOR app SERVER s OPTIONS (SET password 'pw2')"),
            "ALTER USER MAPPING FOR app SERVER s OPTIONS (SET password '[redacted]')"
        );
    }

    #[test]
    fn parameter_values_are_redacted() {
        assert_eq!(value("host=db password=x"), "host=db password=[redacted]");
        assert_eq!(value("mysql://u:p@h/db"), "mysql://u:[redacted]@h/db");
        assert!(matches!(value("42"), Cow::Borrowed(_)));
        assert!(matches!(value("my password is long"), Cow::Borrowed(_)));
    }

    /// Whatever the bytes, the scan ends, does not panic and keeps a statement without a
    /// secret as it is (every prefix of tricky statements, cut at each character).
    #[test]
    fn any_prefix_is_handled() {
        let s = "ALTER ROLE x PASSWORD E'a\\'b' /* c /* d */ */ $t$ password=1 $t$ -- e\n\"q\"\"r\" U&'pg://a:b@c' é'";
        for (i, _) in s.char_indices() {
            let _ = statement(&s[..i]);
            let _ = value(&s[..i]);
        }
    }

    #[test]
    fn bytes_keep_all_but_the_passwords_they_carry() {
        let mut kept = None;
        assert_eq!(bytes_keeping(b"\x00\x01plain bytes\xff", &mut kept), None);
        assert!(kept.is_none());
        let clean = bytes_keeping(
            b"\x00dsn=postgresql://u:pw-1@h/d \xfe password=pw-2\n",
            &mut kept,
        )
        .unwrap();
        assert_eq!(
            clean,
            b"\x00dsn=postgresql://u:[redacted]@h/d \xfe password=[redacted]\n"
        );
        assert_eq!(
            kept.unwrap().scrub("pw-1 and pw-2"),
            "[redacted] and [redacted]"
        );
        // A password that is not UTF-8: the whole value as redacted text.
        let mut kept = None;
        let clean = bytes_keeping(b"\x00password=a\xffb next", &mut kept).unwrap();
        assert_eq!(clean, b"\x00password=[redacted] next");
    }
}
