//! The OpenAPI 3.1 document of the API, served at `/api/openapi.json`. Written by hand next to
//! the router; a test checks that every route is documented and every documented path exists.

use serde_json::{Value, json};

fn op(summary: &str, auth: bool, body: Option<Value>, ok: &str) -> Value {
    let mut o = json!({
        "summary": summary,
        "responses": {
            "200": {"description": ok, "content": {"application/json": {"schema": {"type": "object"}}}},
            "400": {"$ref": "#/components/responses/Error"},
            "401": {"$ref": "#/components/responses/Error"},
            "403": {"$ref": "#/components/responses/Error"},
            "404": {"$ref": "#/components/responses/Error"},
            "409": {"$ref": "#/components/responses/Error"},
            "413": {"$ref": "#/components/responses/Error"},
            "422": {"$ref": "#/components/responses/Error"},
            "429": {"$ref": "#/components/responses/Error"},
            "503": {"$ref": "#/components/responses/Error"}
        }
    });
    if auth {
        o["security"] = json!([{"bearer": []}]);
    } else {
        o["security"] = json!([]);
    }
    if let Some(schema) = body {
        o["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": schema}}});
    }
    o
}

/// `op` whose success answer is `media` (not JSON), described as `ok`.
fn op_as(summary: &str, auth: bool, media: &str, ok: &str) -> Value {
    let mut o = op(summary, auth, None, ok);
    o["responses"]["200"] =
        json!({"description": ok, "content": {media: {"schema": {"type": "string"}}}});
    o
}

/// An HTML page's errors are pages too, except the rate limit's (JSON, from the middleware)
/// and a body over the limit (plain text, from the form extractor).
fn html_errors(mut o: Value) -> Value {
    if let Some(responses) = o["responses"].as_object_mut() {
        for (status, r) in responses.iter_mut() {
            match status.as_str() {
                "200" | "415" | "429" => {}
                "413" => {
                    *r = json!({"description": "The body is over the limit", "content": {"text/plain": {"schema": {"type": "string"}}}});
                }
                _ => {
                    *r = json!({"description": "An error page", "content": {"text/html": {"schema": {"type": "string"}}}});
                }
            }
        }
    }
    o
}

fn obj(required: &[&str], props: Value) -> Value {
    json!({"type": "object", "additionalProperties": false, "required": required, "properties": props})
}

/// The document.
pub fn document() -> Value {
    let files = obj(
        &["files"],
        json!({"files": {"type": "array", "items": obj(&["name", "content"], json!({"name": {"type": "string"}, "content": {"type": "string", "description": "YAML text of the file"}}))}}),
    );
    let mut paths = serde_json::Map::new();
    let mut add = |path: &str, method: &str, mut o: Value| {
        let mut parameters: Vec<Value> = ["id", "name", "token", "session", "step"]
            .into_iter()
            .filter(|param| path.contains(&format!("{{{param}}}")))
            .map(|param| json!({"name": param, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if let Some(query) = o.get_mut("parameters").and_then(Value::as_array_mut) {
            parameters.append(query);
        }
        if !parameters.is_empty() {
            o["parameters"] = Value::Array(parameters);
        }
        let entry = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        entry[method] = o;
    };
    add(
        "/healthz",
        "get",
        op("Liveness", false, None, "The process is up"),
    );
    add(
        "/readyz",
        "get",
        op("Readiness: the store answers", false, None, "Ready"),
    );
    add(
        "/api/openapi.json",
        "get",
        op("This document", false, None, "OpenAPI document"),
    );
    add(
        "/api/auth/challenge",
        "post",
        op(
            "Ask for a sign-in challenge (sign it with an ssh-ed25519 key, or decrypt it with an age identity)",
            false,
            Some(obj(
                &[],
                json!({"actor": {"type": "string"}, "key": {"type": "string", "description": "the caller's public key, instead of actor"}}),
            )),
            "The challenge",
        ),
    );
    add(
        "/api/auth/login",
        "post",
        op(
            "Answer a challenge; returns a session token",
            false,
            Some(obj(
                &["challenge_id", "response"],
                json!({"challenge_id": {"type": "string"}, "response": {"type": "string", "description": "SSHSIG armored signature, or the decrypted challenge text"}}),
            )),
            "A session token",
        ),
    );
    add(
        "/api/whoami",
        "get",
        op("The caller's name and roles", true, None, "The caller"),
    );
    add(
        "/api/procedures",
        "get",
        op(
            "Every procedure with seal state, taint and open breaks",
            true,
            None,
            "Procedures",
        ),
    );
    add(
        "/api/procedures/validate",
        "post",
        op(
            "Validate procedure files without applying them",
            true,
            Some(files.clone()),
            "Valid; 422 lists every problem with file, line, column and field",
        ),
    );
    add(
        "/api/procedures/apply",
        "post",
        op(
            "Apply procedure files: all or nothing, idempotent, audited (admin)",
            true,
            Some(files),
            "What changed per procedure",
        ),
    );
    add(
        "/api/procedures/{id}",
        "get",
        op(
            "One procedure with its YAML specification",
            true,
            None,
            "The procedure",
        ),
    );
    add(
        "/api/procedures/{id}/seal",
        "post",
        op(
            "Seal (or re-seal) the procedure's credential to its custodians (admin)",
            true,
            Some(obj(
                &["secret_b64"],
                json!({"secret_b64": {"type": "string", "format": "byte"}}),
            )),
            "The new seal",
        ),
    );
    add(
        "/api/procedures/{id}/recovery-kit",
        "get",
        op(
            "The procedure's recovery kit for its current seal, signed with the audit key (admin): everything an offline recovery needs but the custodians' private keys",
            true,
            None,
            "The kit file and its id",
        ),
    );
    add(
        "/api/audit/import",
        "post",
        op(
            "Import a recovery spool written by an offline recovery (admin): verified, appended to the chain marked offline, the procedure tainted, the break alerts raised; a spool already imported is refused",
            true,
            Some(obj(&["spool"], json!({"spool": {"type": "string"}}))),
            "What was imported",
        ),
    );
    add(
        "/api/procedures/{id}/check",
        "post",
        op(
            "Check the procedure's target without unsealing: account, privileges, expiry, hosts, API (admin); the report is stored and audited",
            true,
            None,
            "The health check, one line per check",
        ),
    );
    add(
        "/api/procedures/{id}/discover",
        "post",
        op(
            "List privileged accounts on the target, flagging those not in the inventory or without expiry (admin); stored and audited",
            true,
            None,
            "The accounts found",
        ),
    );
    add(
        "/api/procedures/{id}/target",
        "get",
        op(
            "The latest stored health check and discovery of the procedure's target",
            true,
            None,
            "The reports",
        ),
    );
    add(
        "/api/procedures/{id}/drills",
        "post",
        op(
            "Start a drill: `automated` (drill credential and drill identities; real target, real login) or `live` (a real break flagged DRILL, real custodians); optional injections idp-down, channel-down:NAME, custodian-lost:NAME, target-slow[:DELAY], target-down (admin, requester)",
            true,
            Some(obj(
                &[],
                json!({
                    "mode": {"type": "string", "enum": ["automated", "live"]},
                    "inject": {"type": "array", "items": {"type": "string"}},
                    "grant": {"type": "string"},
                    "ack_within": {"type": "string"},
                    "max_time_to_access": {"type": "string"},
                    "step_timeout": {"type": "string"},
                    "wait": {"type": "boolean"}
                }),
            )),
            "The drill (running, or finished with its report when `wait` is true)",
        ),
    );
    let record = obj(
        &["note"],
        json!({
            "holder": {"type": "string", "description": "the holder it is about (default: the caller; an admin may name a holder)"},
            "note": {"type": "string", "description": "what the holder saw or did (no secrets), at most 500 characters"}
        }),
    );
    add(
        "/api/procedures/{id}/custody",
        "get",
        op(
            "External custody of a `kind: external` procedure: where the credential lives, its holders with their latest attestation (and whether it is overdue), how many must be present, the steps, the latest rotation, the taint of a use, runs still going",
            true,
            None,
            "The custody status",
        ),
    );
    add(
        "/api/procedures/{id}/custody/breaks",
        "post",
        op(
            "Open a break on an external-custody procedure: a run of its human steps, alerted to its channels naming the holders (admin, requester); nothing is unsealed",
            true,
            Some(obj(
                &["reason", "ticket"],
                json!({"reason": {"type": "string"}, "ticket": {"type": "string"}}),
            )),
            "The run, with its steps",
        ),
    );
    add(
        "/api/procedures/{id}/custody/attest",
        "post",
        op(
            "A holder confirms the externally kept credential is in its place (the holder, or an admin for a holder; custodian or admin role)",
            true,
            Some(record.clone()),
            "The attestation",
        ),
    );
    add(
        "/api/procedures/{id}/custody/rotated",
        "post",
        op(
            "A holder records that the externally kept credential was rotated; clears the taint of a use (the holder, or an admin for a holder; custodian or admin role)",
            true,
            Some(record),
            "The rotation record",
        ),
    );
    add(
        "/api/custody/runs",
        "get",
        op(
            "Runs of external-custody procedures' human steps (breaks and drills), newest first (`procedure`, `limit` query)",
            true,
            None,
            "The runs",
        ),
    );
    add(
        "/api/custody/runs/{id}",
        "get",
        op(
            "One run: each step with who confirmed it, when, and how long it took",
            true,
            None,
            "The run",
        ),
    );
    add(
        "/api/custody/runs/{id}/steps/{step}",
        "post",
        op(
            "Confirm step `step` (1-based, in order, once) as done by the caller now: a holder, the run's opener or an admin; the last step ends the run (a break taints the credential until a holder records its rotation; a drill records its report)",
            true,
            Some(obj(&[], json!({"note": {"type": "string"}}))),
            "The run",
        ),
    );
    add(
        "/api/custody/runs/{id}/abort",
        "post",
        op(
            "Stop a running run before its last step (its opener or an admin); a break with a step done still taints the credential",
            true,
            Some(obj(&["reason"], json!({"reason": {"type": "string"}}))),
            "The run",
        ),
    );
    add(
        "/api/drills",
        "get",
        op(
            "Drill history, newest first (`procedure`, `limit` query)",
            true,
            None,
            "The drills with their reports",
        ),
    );
    add(
        "/api/drills/{id}",
        "get",
        op(
            "One drill with its timeline and checks",
            true,
            None,
            "The drill",
        ),
    );
    add(
        "/api/drills/{id}/report",
        "get",
        op(
            "A drill's report: `format=json` (default), `md` or `html` (a self-contained page with a timeline chart)",
            true,
            None,
            "The report",
        ),
    );
    add(
        "/api/readiness",
        "get",
        op(
            "Every procedure's readiness verdict (ready, degraded, broken) with each reason",
            true,
            None,
            "The verdicts",
        ),
    );
    add(
        "/api/whatif",
        "get",
        op(
            "What-if analysis: with the comma-separated `down` query (dependencies, channels, custodians, target connections or hosts) unavailable, can each procedure still be opened, by whom, over which channels",
            true,
            None,
            "One answer per procedure",
        ),
    );
    add(
        "/api/attestations",
        "get",
        op(
            "What is known of each custodian key: latest attestation, lost declaration",
            true,
            None,
            "The records",
        ),
    );
    add(
        "/api/people",
        "get",
        op(
            "Who is on the hook (admin, auditor): every custodian with their contacts, the procedures they hold a share of and whether each could reach its quorum without them, their keys' attestations and lost declarations, their latest drill, and warnings",
            true,
            None,
            "The people, by name",
        ),
    );
    add(
        "/api/people/{name}",
        "get",
        op(
            "One person of the inventory (admin, auditor)",
            true,
            None,
            "The person",
        ),
    );
    add(
        "/api/attestations/{id}",
        "post",
        op(
            "Answer an attestation challenge with its decrypted text (single use)",
            true,
            Some(obj(&["response"], json!({"response": {"type": "string"}}))),
            "The custodian key's record",
        ),
    );
    add(
        "/api/custodians/{name}/attest",
        "post",
        op(
            "Challenges encrypted to each of the custodian's keys, to prove the key is still held",
            true,
            None,
            "The challenges",
        ),
    );
    add(
        "/api/totp",
        "get",
        op(
            "TOTP enrolments without their secrets: every one (admin, auditor) or the caller's own",
            true,
            None,
            "The enrolments",
        ),
    );
    add(
        "/api/totp/enroll",
        "post",
        op(
            "Start the caller's TOTP enrolment (custodian): a new secret, answered once as base32 and an otpauth:// URI; active after /api/totp/confirm",
            true,
            None,
            "The secret and its URI",
        ),
    );
    add(
        "/api/totp/confirm",
        "post",
        op(
            "Confirm the caller's pending TOTP enrolment with a current code; approvals then need a code",
            true,
            Some(obj(&["code"], json!({"code": {"type": "string"}}))),
            "The enrolment",
        ),
    );
    add(
        "/api/totp/reset",
        "post",
        op(
            "Remove a TOTP enrolment: the caller's own, or a named custodian's (admin)",
            true,
            Some(
                json!({"type": "object", "properties": {"custodian": {"type": "string"}}, "additionalProperties": false}),
            ),
            "The custodian whose enrolment was removed",
        ),
    );
    add(
        "/api/custodians/{name}/lost",
        "post",
        op(
            "Declare a custodian's keys lost (admin); readiness counts them out of the quorum",
            true,
            Some(obj(&["reason"], json!({"reason": {"type": "string"}}))),
            "The custodian's key records",
        ),
    );
    add(
        "/api/breaks/{id}/grant",
        "get",
        op(
            "What the break created on its target (role, user, certificate serial, account) and whether the target confirmed its end",
            true,
            None,
            "The grant record",
        ),
    );
    add(
        "/api/actors",
        "get",
        op("Enrolled actors (never their tokens)", true, None, "Actors"),
    );
    add(
        "/api/actors",
        "post",
        op(
            "Enrol or update an actor (admin); with token=true returns a new API token once",
            true,
            Some(obj(
                &["name", "roles"],
                json!({"name": {"type": "string"}, "roles": {"type": "array", "items": {"enum": ["admin", "requester", "custodian", "auditor"]}}, "key": {"type": "string"}, "contact": {"type": "string"}, "token": {"type": "boolean"}}),
            )),
            "The actor, and its token when one was issued",
        ),
    );
    add(
        "/api/breaks",
        "get",
        op(
            "Breaks, newest first (query: procedure, limit)",
            true,
            None,
            "Breaks",
        ),
    );
    add(
        "/api/breaks",
        "post",
        op(
            "Open a break (requester)",
            true,
            Some(obj(
                &["procedure", "reason", "ticket"],
                json!({"procedure": {"type": "string"}, "reason": {"type": "string"}, "ticket": {"type": "string"}, "duration": {"type": "string", "description": "e.g. 15m; defaults to max_grant"}}),
            )),
            "The requested break",
        ),
    );
    add(
        "/api/breaks/{id}",
        "get",
        op("One break", true, None, "The break"),
    );
    add(
        "/api/breaks/{id}/share",
        "get",
        op(
            "The calling custodian's share of the break's seal, as an age file encrypted to their key",
            true,
            None,
            "The encrypted share",
        ),
    );
    add(
        "/api/breaks/{id}/approvals",
        "post",
        op(
            "Submit one's decrypted share (custodian); the quorum-completing approval issues the grant",
            true,
            Some(obj(
                &["share"],
                json!({"share": {"type": "string"}, "totp": {"type": "string", "description": "current TOTP code, when the custodian enrolled TOTP or the procedure requires a second factor"}}),
            )),
            "Approvals so far and the break",
        ),
    );
    add(
        "/api/breaks/{id}/reveal",
        "post",
        op(
            "The single reveal of a granted secret to the requester, as an age file encrypted to the requester's key",
            true,
            None,
            "The encrypted secret",
        ),
    );
    add(
        "/api/breaks/{id}/token",
        "post",
        op(
            "A fresh gateway token for a granted proxy break (the requester; earlier tokens stop working), as an age file holding the gateway connection string",
            true,
            None,
            "The encrypted connection string",
        ),
    );
    let mut o = op(
        "The break's signed evidence pack: one HTML page embedding a bundle signed with the audit key (admin, auditor); `breakglass evidence verify` checks it offline, each gateway session's statements against the digest in its audit entry. It holds at most `max_statements` of the gateway recording: each session whole, in order, while it fits; the others are listed with their count and digest",
        true,
        None,
        "The page",
    );
    o["parameters"] = json!([{
        "name": "max_statements",
        "in": "query",
        "required": false,
        "description": format!(
            "the pack's budget of recorded statements (default {}, at most {})",
            breakglass_engine::PACK_STATEMENTS,
            breakglass_engine::MAX_PACK_STATEMENTS
        ),
        "schema": {"type": "integer", "minimum": 0, "maximum": breakglass_engine::MAX_PACK_STATEMENTS},
    }]);
    add("/api/breaks/{id}/evidence", "get", o);
    let limit = |what: &str| json!({"name": "limit", "in": "query", "required": false, "description": what, "schema": {"type": "integer", "minimum": 0}});
    let mut o = op(
        "The break's gateway sessions, with whether each recording matches its audit entry, and the first `limit` statements of each (default 100, at most 1000; 0 for none); each session's `next_seq` is where its next page starts and `started_seq` is the audit entry of its start; `session` lists that session alone (404 when the break has none of that name) and `started_after` only the sessions started after that audit entry, for a follower (admin, auditor)",
        true,
        None,
        "Sessions and their first statements",
    );
    o["parameters"] = json!([
        limit("statements of each session, from its first"),
        {"name": "session", "in": "query", "required": false, "description": "only this session", "schema": {"type": "string"}},
        {"name": "started_after", "in": "query", "required": false, "description": "only the sessions whose start is a later audit entry than this one", "schema": {"type": "integer", "minimum": 0}},
    ]);
    add("/api/breaks/{id}/sessions", "get", o);
    add(
        "/api/sessions",
        "get",
        op(
            "The gateway sessions open now, across breaks (of granted proxy breaks among the newest 1,000), oldest first: break, procedure, requester, session, peer, `started_at`, `started_seq` and `here` (running on this server) (admin, auditor)",
            true,
            None,
            "Open sessions",
        ),
    );
    let mut o = op(
        "A page of a gateway session's statements, in order from position `from_seq` (default 0): at most `limit` (default 1000, at most 10000) and `next_seq`, where the next page starts (null at the end); on the last page `ended` says whether the session has ended (false: more statements may come) (admin, auditor)",
        true,
        None,
        "A page of statements",
    );
    o["parameters"] = json!([
        {"name": "from_seq", "in": "query", "required": false, "description": "the first statement's position", "schema": {"type": "integer", "minimum": 0}},
        limit("statements in the page"),
    ]);
    add("/api/breaks/{id}/sessions/{session}", "get", o);
    add(
        "/api/breaks/{id}/sessions/{session}/terminate",
        "post",
        op(
            &format!(
                "Terminate one open gateway session now (the break's requester or an admin): audited as `gateway.session_terminated` with the reason, then the client gets FATAL 57P01 naming who terminated it and why, a running statement is cancelled on the server, and the session's end is recorded as `terminated`; the break and its other sessions go on. 409 when the session has already ended; another server holding the break's gateway login gets the request forwarded. `reason`: one line, at most {} characters",
                breakglass_engine::TERMINATION_REASON_MAX
            ),
            true,
            Some(json!({
                "type": "object",
                "required": ["reason"],
                "additionalProperties": false,
                "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": breakglass_engine::TERMINATION_REASON_MAX}},
            })),
            "The session, who terminated it and why",
        ),
    );
    add(
        "/api/breaks/{id}/close",
        "post",
        op(
            "Close a break early (requester or admin)",
            true,
            None,
            "The ended break",
        ),
    );
    add(
        "/api/audit",
        "get",
        op(
            "Audit entries (query: from, limit) (admin, auditor)",
            true,
            None,
            "Entries",
        ),
    );
    add(
        "/api/audit/verify",
        "get",
        op(
            "Verify the whole hash chain against the stored head",
            true,
            None,
            "Verdict; names the first bad entry",
        ),
    );
    add(
        "/api/audit/export",
        "get",
        op_as(
            "The whole audit log as JSON Lines (docs/audit-log-format.md)",
            true,
            "application/x-ndjson",
            "One JSON object per line: every entry, then every checkpoint",
        ),
    );
    add(
        "/api/audit/pubkey",
        "get",
        op(
            "The current audit public key (`ed25519:…`) and its key id",
            false,
            None,
            "The key",
        ),
    );
    add(
        "/api/audit/keys",
        "get",
        op(
            "Every audit key the log announced, oldest first",
            true,
            None,
            "Keys",
        ),
    );
    add(
        "/api/audit/rotate-key",
        "post",
        op(
            "Rotate the audit key: a checkpoint by the old key, then an entry carrying its endorsement of the new key (admin)",
            true,
            None,
            "Old and new key ids",
        ),
    );
    add(
        "/api/audit/checkpoint",
        "post",
        op(
            "Sign a checkpoint of the current head now (admin, auditor)",
            true,
            None,
            "The checkpoint's sequence, or null when the newest checkpoint already covers the head",
        ),
    );
    add(
        "/api/audit/sinks",
        "get",
        op("Audit sinks and their delivery lag", true, None, "Sinks"),
    );
    add(
        "/metrics",
        "get",
        op_as(
            "Prometheus metrics: outbox lag per destination, readiness, drills",
            false,
            "text/plain",
            "Prometheus text exposition format 0.0.4",
        ),
    );
    add(
        "/api/ack",
        "post",
        op(
            "Acknowledge a break alert with the token from its link (single use; no sign-in: the token is the capability)",
            false,
            Some(obj(
                &["token"],
                json!({"token": {"type": "string"}, "by": {"type": "string"}}),
            )),
            "The break and the time to acknowledge",
        ),
    );
    add(
        "/ack/{token}",
        "get",
        html_errors(op_as(
            "HTML page with the acknowledge button (alerts link here)",
            false,
            "text/html",
            "The page",
        )),
    );
    add("/ack/{token}", "post", {
        let mut o = op_as(
            "HTML form target that acknowledges",
            false,
            "text/html",
            "The page saying the alert was acknowledged",
        );
        o["requestBody"] = json!({"required": true, "content": {"application/x-www-form-urlencoded": {"schema": obj(&[], json!({"by": {"type": "string"}}))}}});
        o["responses"]["415"] = json!({"description": "The body is not a form", "content": {"text/plain": {"schema": {"type": "string"}}}});
        html_errors(o)
    });
    add(
        "/api/channels",
        "get",
        op(
            "Alert channels with their backlog and latest test",
            true,
            None,
            "Channels",
        ),
    );
    add(
        "/api/channels/{name}/test",
        "post",
        op(
            "Send a test alert now and wait for the receipt (admin)",
            true,
            None,
            "The result with its latency",
        ),
    );
    add(
        "/api/channels/{name}/attempts",
        "get",
        op(
            "Recent delivery attempts of a channel (query: limit)",
            true,
            None,
            "Attempts",
        ),
    );
    json!({
        "openapi": "3.1.0",
        "info": {"title": "breakglass", "version": env!("CARGO_PKG_VERSION"), "description": "Emergency access with split custody, time-limited grants and a hash-chained audit log."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "A session token from /api/auth/login (bgs_…) or an API token (bgt_…)"}},
            "responses": {"Error": {"description": "An error", "content": {"application/json": {"schema": obj(&["error"], json!({"error": obj(&["code", "message"], json!({"code": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "array", "items": {"type": "object"}}}))}))}}}}
        }
    })
}
