//! Schema of both backends. Each statement is idempotent (`IF NOT EXISTS`), applied in order at
//! start-up. The audit log refuses UPDATE and DELETE in the database itself, so no code path,
//! ours or an operator's SQL console, can quietly rewrite it.

/// SQLite schema.
pub(crate) const SQLITE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS procedures (id TEXT PRIMARY KEY, spec_yaml TEXT NOT NULL, content_hash TEXT NOT NULL, source TEXT NOT NULL, version BIGINT NOT NULL, updated_at BIGINT NOT NULL, seal_id TEXT, taint_reason TEXT, taint_break TEXT, taint_revealed BIGINT NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS seals (seal_id TEXT PRIMARY KEY, procedure_id TEXT NOT NULL, threshold BIGINT NOT NULL, ciphertext BLOB NOT NULL, commitments TEXT NOT NULL, secret_fingerprint BLOB NOT NULL, fingerprint_salt BLOB NOT NULL, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS seal_shares (seal_id TEXT NOT NULL, custodian TEXT NOT NULL, idx BIGINT NOT NULL, age_file BLOB NOT NULL, PRIMARY KEY (seal_id, custodian))",
    "CREATE TABLE IF NOT EXISTS breaks (id TEXT PRIMARY KEY, procedure_id TEXT NOT NULL, seal_id TEXT NOT NULL, requester TEXT NOT NULL, reason TEXT NOT NULL, ticket TEXT NOT NULL, duration_ms BIGINT NOT NULL, quorum BIGINT NOT NULL, requested_at BIGINT NOT NULL, approval_deadline BIGINT NOT NULL, approvals TEXT NOT NULL, state TEXT NOT NULL, granted_at BIGINT, deadline BIGINT, revealed_at BIGINT, ended_at BIGINT, closed_by TEXT, due_at BIGINT)",
    "CREATE INDEX IF NOT EXISTS breaks_due ON breaks (due_at)",
    "CREATE INDEX IF NOT EXISTS breaks_procedure ON breaks (procedure_id, requested_at)",
    "CREATE INDEX IF NOT EXISTS breaks_ended ON breaks (ended_at)",
    "CREATE TABLE IF NOT EXISTS grant_payloads (break_id TEXT PRIMARY KEY, payload BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS actors (name TEXT PRIMARY KEY, roles TEXT NOT NULL, public_key TEXT, token_hash TEXT UNIQUE, contact TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_log (seq BIGINT PRIMARY KEY, time_ms BIGINT NOT NULL, actor TEXT NOT NULL, kind TEXT NOT NULL, procedure_id TEXT, break_id TEXT, payload TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_head (id BIGINT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)",
    "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '') ON CONFLICT DO NOTHING",
    "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, seq BIGINT NOT NULL, destination TEXT NOT NULL, payload TEXT NOT NULL, created_at BIGINT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, next_attempt_at BIGINT NOT NULL, delivered_at BIGINT, last_error TEXT)",
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (delivered_at, next_attempt_at)",
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "CREATE TABLE IF NOT EXISTS checkpoints (id INTEGER PRIMARY KEY AUTOINCREMENT, seq BIGINT NOT NULL, key_id TEXT NOT NULL, head TEXT NOT NULL, time_ms BIGINT NOT NULL, signature TEXT NOT NULL, UNIQUE (seq, key_id))",
    "CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END",
    "CREATE INDEX IF NOT EXISTS audit_log_kind ON audit_log (kind)",
    "CREATE INDEX IF NOT EXISTS audit_log_procedure ON audit_log (procedure_id, seq)",
    "CREATE INDEX IF NOT EXISTS audit_log_break ON audit_log (break_id, seq)",
    "CREATE TABLE IF NOT EXISTS acks (break_id TEXT PRIMARY KEY, procedure_id TEXT NOT NULL, requested_at BIGINT NOT NULL, ack_deadline BIGINT, acked_at BIGINT, acked_by TEXT, escalated_at BIGINT)",
    "CREATE INDEX IF NOT EXISTS acks_due ON acks (ack_deadline)",
    "CREATE TABLE IF NOT EXISTS channel_tests (channel TEXT PRIMARY KEY, at BIGINT NOT NULL, ok BIGINT NOT NULL, status TEXT NOT NULL, latency_ms BIGINT, error TEXT)",
    "CREATE TABLE IF NOT EXISTS delivery_attempts (id INTEGER PRIMARY KEY AUTOINCREMENT, outbox_id BIGINT NOT NULL, destination TEXT NOT NULL, at BIGINT NOT NULL, ok BIGINT NOT NULL, status TEXT NOT NULL, latency_ms BIGINT, error TEXT)",
    "CREATE TABLE IF NOT EXISTS grants (break_id TEXT PRIMARY KEY, procedure_id TEXT NOT NULL, kind TEXT NOT NULL, handle TEXT NOT NULL, created_at BIGINT NOT NULL, deadline BIGINT NOT NULL, end_requested_at BIGINT, end_cause TEXT, ended_at BIGINT, end_attempts BIGINT NOT NULL DEFAULT 0, next_attempt_at BIGINT, last_error TEXT)",
    "CREATE INDEX IF NOT EXISTS grants_to_end ON grants (ended_at, end_requested_at)",
    "CREATE TABLE IF NOT EXISTS target_reports (procedure_id TEXT NOT NULL, kind TEXT NOT NULL, at BIGINT NOT NULL, ok BIGINT NOT NULL, detail TEXT NOT NULL, PRIMARY KEY (procedure_id, kind))",
    "CREATE TABLE IF NOT EXISTS attestations (custodian TEXT NOT NULL, key_fingerprint TEXT NOT NULL, attested_at BIGINT, lost_at BIGINT, lost_reason TEXT, PRIMARY KEY (custodian, key_fingerprint))",
    "CREATE TABLE IF NOT EXISTS drills (id TEXT PRIMARY KEY, procedure_id TEXT NOT NULL, mode TEXT NOT NULL, injections TEXT NOT NULL, requested_by TEXT NOT NULL, started_at BIGINT NOT NULL, finished_at BIGINT, outcome TEXT NOT NULL, break_id TEXT, content_hash TEXT NOT NULL, time_to_access_ms BIGINT, report TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS drills_procedure ON drills (procedure_id, started_at)",
    "CREATE TABLE IF NOT EXISTS drill_seals (procedure_id TEXT PRIMARY KEY, seal_id TEXT NOT NULL, updated_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS schedule_runs (name TEXT PRIMARY KEY, last_run_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS session_chunks (session_id TEXT NOT NULL, first_seq BIGINT NOT NULL, break_id TEXT NOT NULL, statements BIGINT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (session_id, first_seq))",
    "CREATE INDEX IF NOT EXISTS session_chunks_break ON session_chunks (break_id)",
    "CREATE TABLE IF NOT EXISTS sessions (token_hash TEXT PRIMARY KEY, actor TEXT NOT NULL, expires_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS challenges (id TEXT PRIMARY KEY, actor TEXT NOT NULL, kind TEXT NOT NULL, expected TEXT NOT NULL, expires_at BIGINT NOT NULL)",
    // Offline recovery (recovery kits exported after each seal; imported spools, once each).
    "CREATE TABLE IF NOT EXISTS recovery_kits (procedure_id TEXT PRIMARY KEY, seal_id TEXT NOT NULL, kit_id TEXT NOT NULL, location TEXT NOT NULL, exported_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS recovery_imports (spool_head TEXT PRIMARY KEY, procedure_id TEXT NOT NULL, kit_id TEXT NOT NULL, lines BIGINT NOT NULL, imported_by TEXT NOT NULL, imported_at BIGINT NOT NULL)",
    // TOTP second factor: the secret encrypted under the server's totp.key, the last accepted
    // step (a code is accepted once) and the count of recent wrong codes.
    "CREATE TABLE IF NOT EXISTS totp_enrollments (custodian TEXT PRIMARY KEY, sealed_secret BLOB NOT NULL, active BIGINT NOT NULL, created_at BIGINT NOT NULL, confirmed_at BIGINT, last_step BIGINT, failures BIGINT NOT NULL DEFAULT 0, failure_window_start BIGINT, locked_until BIGINT)",
    // External custody: runs of a procedure's human steps (breaks and drills; the steps and
    // who confirmed each as JSON) and holders' attestations and rotations (history).
    "CREATE TABLE IF NOT EXISTS external_runs (id TEXT PRIMARY KEY, procedure_id TEXT NOT NULL, kind TEXT NOT NULL, opened_by TEXT NOT NULL, reason TEXT NOT NULL, ticket TEXT NOT NULL, started_at BIGINT NOT NULL, finished_at BIGINT, outcome TEXT NOT NULL, steps TEXT NOT NULL, done TEXT NOT NULL, content_hash TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS external_runs_procedure ON external_runs (procedure_id, started_at)",
    "CREATE TABLE IF NOT EXISTS custody_records (id INTEGER PRIMARY KEY AUTOINCREMENT, procedure_id TEXT NOT NULL, holder TEXT NOT NULL, kind TEXT NOT NULL, at BIGINT NOT NULL, recorded_by TEXT NOT NULL, note TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS custody_records_procedure ON custody_records (procedure_id, at)",
];

/// PostgreSQL schema.
pub(crate) const POSTGRES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS procedures (id TEXT PRIMARY KEY, spec_yaml TEXT NOT NULL, content_hash TEXT NOT NULL, source TEXT NOT NULL, version BIGINT NOT NULL, updated_at BIGINT NOT NULL, seal_id TEXT, taint_reason TEXT, taint_break TEXT, taint_revealed BIGINT NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS seals (seal_id TEXT PRIMARY KEY, procedure_id TEXT NOT NULL, threshold BIGINT NOT NULL, ciphertext BYTEA NOT NULL, commitments TEXT NOT NULL, secret_fingerprint BYTEA NOT NULL, fingerprint_salt BYTEA NOT NULL, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS seal_shares (seal_id TEXT NOT NULL, custodian TEXT NOT NULL, idx BIGINT NOT NULL, age_file BYTEA NOT NULL, PRIMARY KEY (seal_id, custodian))",
    "CREATE TABLE IF NOT EXISTS breaks (id TEXT PRIMARY KEY, procedure_id TEXT NOT NULL, seal_id TEXT NOT NULL, requester TEXT NOT NULL, reason TEXT NOT NULL, ticket TEXT NOT NULL, duration_ms BIGINT NOT NULL, quorum BIGINT NOT NULL, requested_at BIGINT NOT NULL, approval_deadline BIGINT NOT NULL, approvals TEXT NOT NULL, state TEXT NOT NULL, granted_at BIGINT, deadline BIGINT, revealed_at BIGINT, ended_at BIGINT, closed_by TEXT, due_at BIGINT)",
    "CREATE INDEX IF NOT EXISTS breaks_due ON breaks (due_at)",
    "CREATE INDEX IF NOT EXISTS breaks_procedure ON breaks (procedure_id, requested_at)",
    "CREATE INDEX IF NOT EXISTS breaks_ended ON breaks (ended_at)",
    "CREATE TABLE IF NOT EXISTS grant_payloads (break_id TEXT PRIMARY KEY, payload BYTEA NOT NULL)",
    "CREATE TABLE IF NOT EXISTS actors (name TEXT PRIMARY KEY, roles TEXT NOT NULL, public_key TEXT, token_hash TEXT UNIQUE, contact TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_log (seq BIGINT PRIMARY KEY, time_ms BIGINT NOT NULL, actor TEXT NOT NULL, kind TEXT NOT NULL, procedure_id TEXT, break_id TEXT, payload TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_head (id BIGINT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)",
    "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '') ON CONFLICT DO NOTHING",
    "CREATE TABLE IF NOT EXISTS outbox (id BIGSERIAL PRIMARY KEY, seq BIGINT NOT NULL, destination TEXT NOT NULL, payload TEXT NOT NULL, created_at BIGINT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, next_attempt_at BIGINT NOT NULL, delivered_at BIGINT, last_error TEXT)",
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (delivered_at, next_attempt_at)",
    "CREATE OR REPLACE FUNCTION breakglass_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$",
    "DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION breakglass_audit_append_only()",
    "CREATE TABLE IF NOT EXISTS checkpoints (id BIGSERIAL PRIMARY KEY, seq BIGINT NOT NULL, key_id TEXT NOT NULL, head TEXT NOT NULL, time_ms BIGINT NOT NULL, signature TEXT NOT NULL, UNIQUE (seq, key_id))",
    "DROP TRIGGER IF EXISTS checkpoints_append_only ON checkpoints",
    "CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON checkpoints FOR EACH STATEMENT EXECUTE FUNCTION breakglass_audit_append_only()",
    "CREATE INDEX IF NOT EXISTS audit_log_kind ON audit_log (kind)",
    "CREATE INDEX IF NOT EXISTS audit_log_procedure ON audit_log (procedure_id, seq)",
    "CREATE INDEX IF NOT EXISTS audit_log_break ON audit_log (break_id, seq)",
    "CREATE TABLE IF NOT EXISTS acks (break_id TEXT PRIMARY KEY, procedure_id TEXT NOT NULL, requested_at BIGINT NOT NULL, ack_deadline BIGINT, acked_at BIGINT, acked_by TEXT, escalated_at BIGINT)",
    "CREATE INDEX IF NOT EXISTS acks_due ON acks (ack_deadline)",
    "CREATE TABLE IF NOT EXISTS channel_tests (channel TEXT PRIMARY KEY, at BIGINT NOT NULL, ok BIGINT NOT NULL, status TEXT NOT NULL, latency_ms BIGINT, error TEXT)",
    "CREATE TABLE IF NOT EXISTS delivery_attempts (id BIGSERIAL PRIMARY KEY, outbox_id BIGINT NOT NULL, destination TEXT NOT NULL, at BIGINT NOT NULL, ok BIGINT NOT NULL, status TEXT NOT NULL, latency_ms BIGINT, error TEXT)",
    "CREATE TABLE IF NOT EXISTS grants (break_id TEXT PRIMARY KEY, procedure_id TEXT NOT NULL, kind TEXT NOT NULL, handle TEXT NOT NULL, created_at BIGINT NOT NULL, deadline BIGINT NOT NULL, end_requested_at BIGINT, end_cause TEXT, ended_at BIGINT, end_attempts BIGINT NOT NULL DEFAULT 0, next_attempt_at BIGINT, last_error TEXT)",
    "CREATE INDEX IF NOT EXISTS grants_to_end ON grants (ended_at, end_requested_at)",
    "CREATE TABLE IF NOT EXISTS target_reports (procedure_id TEXT NOT NULL, kind TEXT NOT NULL, at BIGINT NOT NULL, ok BIGINT NOT NULL, detail TEXT NOT NULL, PRIMARY KEY (procedure_id, kind))",
    "CREATE TABLE IF NOT EXISTS attestations (custodian TEXT NOT NULL, key_fingerprint TEXT NOT NULL, attested_at BIGINT, lost_at BIGINT, lost_reason TEXT, PRIMARY KEY (custodian, key_fingerprint))",
    "CREATE TABLE IF NOT EXISTS drills (id TEXT PRIMARY KEY, procedure_id TEXT NOT NULL, mode TEXT NOT NULL, injections TEXT NOT NULL, requested_by TEXT NOT NULL, started_at BIGINT NOT NULL, finished_at BIGINT, outcome TEXT NOT NULL, break_id TEXT, content_hash TEXT NOT NULL, time_to_access_ms BIGINT, report TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS drills_procedure ON drills (procedure_id, started_at)",
    "CREATE TABLE IF NOT EXISTS drill_seals (procedure_id TEXT PRIMARY KEY, seal_id TEXT NOT NULL, updated_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS schedule_runs (name TEXT PRIMARY KEY, last_run_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS session_chunks (session_id TEXT NOT NULL, first_seq BIGINT NOT NULL, break_id TEXT NOT NULL, statements BIGINT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (session_id, first_seq))",
    "CREATE INDEX IF NOT EXISTS session_chunks_break ON session_chunks (break_id)",
    "CREATE TABLE IF NOT EXISTS sessions (token_hash TEXT PRIMARY KEY, actor TEXT NOT NULL, expires_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS challenges (id TEXT PRIMARY KEY, actor TEXT NOT NULL, kind TEXT NOT NULL, expected TEXT NOT NULL, expires_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS share_holders (break_id TEXT PRIMARY KEY, instance TEXT NOT NULL, url TEXT NOT NULL)",
    // Where each server's gateway is reached by the others (a client that arrives at a server
    // not holding its break's login is relayed to the holder's gateway).
    "CREATE TABLE IF NOT EXISTS instance_gateways (instance TEXT PRIMARY KEY, address TEXT NOT NULL, tls BIGINT NOT NULL)",
    // Which server gave each live gateway session its cancellation key (the pid only: the
    // secret half stays in that server's memory), so a cancel request that reaches another
    // server is sent on to it. Expired rows (a server that died) are dropped on insert.
    "CREATE TABLE IF NOT EXISTS gateway_cancel_keys (pid BIGINT PRIMARY KEY, instance TEXT NOT NULL, expires_at BIGINT NOT NULL)",
    // Offline recovery (recovery kits exported after each seal; imported spools, once each).
    "CREATE TABLE IF NOT EXISTS recovery_kits (procedure_id TEXT PRIMARY KEY, seal_id TEXT NOT NULL, kit_id TEXT NOT NULL, location TEXT NOT NULL, exported_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS recovery_imports (spool_head TEXT PRIMARY KEY, procedure_id TEXT NOT NULL, kit_id TEXT NOT NULL, lines BIGINT NOT NULL, imported_by TEXT NOT NULL, imported_at BIGINT NOT NULL)",
    // TOTP second factor: the secret encrypted under the server's totp.key, the last accepted
    // step (a code is accepted once) and the count of recent wrong codes.
    "CREATE TABLE IF NOT EXISTS totp_enrollments (custodian TEXT PRIMARY KEY, sealed_secret BYTEA NOT NULL, active BIGINT NOT NULL, created_at BIGINT NOT NULL, confirmed_at BIGINT, last_step BIGINT, failures BIGINT NOT NULL DEFAULT 0, failure_window_start BIGINT, locked_until BIGINT)",
    // External custody: runs of a procedure's human steps (breaks and drills; the steps and
    // who confirmed each as JSON) and holders' attestations and rotations (history).
    "CREATE TABLE IF NOT EXISTS external_runs (id TEXT PRIMARY KEY, procedure_id TEXT NOT NULL, kind TEXT NOT NULL, opened_by TEXT NOT NULL, reason TEXT NOT NULL, ticket TEXT NOT NULL, started_at BIGINT NOT NULL, finished_at BIGINT, outcome TEXT NOT NULL, steps TEXT NOT NULL, done TEXT NOT NULL, content_hash TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS external_runs_procedure ON external_runs (procedure_id, started_at)",
    "CREATE TABLE IF NOT EXISTS custody_records (id BIGSERIAL PRIMARY KEY, procedure_id TEXT NOT NULL, holder TEXT NOT NULL, kind TEXT NOT NULL, at BIGINT NOT NULL, recorded_by TEXT NOT NULL, note TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS custody_records_procedure ON custody_records (procedure_id, at)",
];

/// Columns added after their table was first released: `(table, column, ALTER statement)`.
/// Each is added when missing, so a data directory made by an earlier version keeps working.
pub(crate) const ADDED_COLUMNS: &[(&str, &str, &str)] = &[(
    "breaks",
    "drill_id",
    "ALTER TABLE breaks ADD COLUMN drill_id TEXT",
)];
