#!/usr/bin/env bash
# PostgreSQL gateway vs direct vs PgBouncer: pgbench select-only through four paths (the fourth,
# HAProxy forwarding TCP without reading it, is the floor any proxy on this machine pays).
#
#   bash scripts/bench-gateway.sh
#
# In one go, on this machine:
#   1. builds target/release/breakglass (`cargo build --release -p breakglass-cli`); starts a
#      private PostgreSQL cluster in a temp dir (initdb, scram-sha-256 for TCP on 127.0.0.1,
#      fsync off, max_connections 300, a free port, its unix socket in the temp dir); creates
#      the roles of the CLI tests' `pg_target` (an admin role with CREATEROLE whose password
#      is sealed, the app role grants join, an operator role with CREATEROLE +
#      pg_signal_backend), a benchmark login role that is a member of the app role, and a
#      database; `pgbench -i -s 10` as superuser; SELECT on the pgbench tables to the app role;
#   2. starts PgBouncer (session pooling, SCRAM for clients, plain TCP to PostgreSQL) and
#      HAProxy (`mode tcp`, one thread: it forwards bytes both ways without looking at them,
#      so the client logs in to PostgreSQL itself) — the least a proxy between pgbench and
#      PostgreSQL can cost on this machine: two more socket hops per message on the same CPUs;
#   3. starts `breakglass serve --gateway` (plaintext), enrols custodians and a requester,
#      applies an `access: proxy` procedure, seals the admin password, opens a break, approves
#      it as two custodians and reveals it: a gateway connection string;
#   4. runs `pgbench -n -S -M simple -T 10 -c C -j 2 -l` for C = 8 and 64 against PostgreSQL
#      directly, through PgBouncer, through HAProxy and through the gateway — all over TCP on 127.0.0.1
#      without TLS, each logging in with SCRAM as a login role that is a member of the app
#      role — in interleaved rounds: for each C, first a short warm-up on each path (not
#      measured), then BENCH_ROUNDS rounds of one measured run per path, the order alternating
#      from round to round (direct, PgBouncer, HAProxy, gateway; then the reverse; then
#      forward again…). This machine's speed drifts by about ±10 % over a minute: with one run
#      per path in a fixed order the ratios between paths were mostly that drift (the same
#      set-up a minute apart gave gateway ÷ PgBouncer 0.76 or 0.99); interleaved in alternating
#      order, the per-path medians over rounds hold still. Each run's median latency comes from
#      pgbench's per-transaction logs and its TPS from its summary; the report gives, per path,
#      the median over rounds, and every round's TPS and ratios. Before each run it waits until
#      `breakglass serve` is idle (it ends the previous gateway run's sessions in the
#      background), and it accounts the CPU the machine spent on anything else meanwhile,
#      and each proxy's CPU and context switches per thread (PgBouncer's and HAProxy's thread; the gateway's
#      relay threads, SQLite workers and server runtime workers, from /proc/PID/task);
#      then it reads the gateway's recording (`breakglass session show BREAK --output json`)
#      and checks it holds a statement for every transaction pgbench reported (every round and
#      warm-up);
#   5. writes the section "## PostgreSQL gateway vs direct vs PgBouncer" of BENCHMARKS.md
#      (replacing it if present; the rest of the file is left alone) and prints it;
#   6. stops everything it started and removes its temp dir (trap on EXIT).
#
# Environment (all optional):
#   BREAKGLASS_BIN   use this breakglass binary instead of building target/release/breakglass
#   BENCH_DURATION   seconds per measured run (default 10; with 3 rounds the whole script takes
#                    about 6 minutes)
#   BENCH_ROUNDS     measured rounds per client count, each one run per path, the order
#                    alternating (default 3: direct, PgBouncer, HAProxy, gateway; the reverse;
#                    the first order again)
#   BENCH_WARMUP     seconds of the warm-up run on each path, per client count, before the
#                    rounds (default 3)
#   BENCH_CLIENTS    client counts (default "8 64")
#   BENCH_GATEWAY_THREADS  the gateway's relay threads (`serve --gateway-threads`; default 0:
#                    one per core)
#   BENCH_PIN=1      give the proxies a CPU of their own: PostgreSQL (postmaster and backends)
#                    and pgbench on CPU 0, PgBouncer, HAProxy and breakglass serve on CPUs 1…N-1
#                    (`taskset`; needs 2 CPUs or more). The section written is then "## PostgreSQL
#                    gateway vs direct vs PgBouncer, the proxies on their own CPU", beside the
#                    unpinned one
#   BENCH_TLS=1      clients connect over TLS (`sslmode=require`): PostgreSQL with `ssl = on` for
#                    the direct path, PgBouncer with `client_tls_sslmode = require`, the gateway
#                    with `serve --tls-self-signed`; each proxy reaches PostgreSQL in plain TCP
#                    on loopback, so every path has one TLS hop, the client's. HAProxy cannot
#                    answer PostgreSQL's SSLRequest itself: it forwards the client's TLS to
#                    PostgreSQL unread. The section written is "…, over TLS"
#   BENCH_OUT        the Markdown file to update (default BENCHMARKS.md at the workspace root)
#   BENCH_KEEP=1     keep the temp dir (logs, pgbench logs) instead of removing it
#   BENCH_SETTLE_MAX longest wait, in seconds, for breakglass serve to go idle before a run (240)
#   BENCH_SESSION_WAIT  at the end, also wait up to this many seconds for every gateway
#                    session to be ended and digested (default 0: report what is open)
#   PG_BIN           PostgreSQL server binaries (default /usr/lib/postgresql/15/bin)
#   BENCH_HOLD=FILE  for profiling by hand: set everything up, write shell assignments to FILE
#                    (DIRECT_URL, PGB_URL, PGB_PID, HAP_URL, HAP_PID, BG_PID, POSTMASTER_PID, and TOKEN_CMD, a
#                    command printing a fresh gateway connection string), then wait until FILE
#                    is deleted, and stop everything; nothing is measured or written
#
# Exit status: 0 when every run completed (targets met or not: the section says which);
# 1 on a setup error; 3 when a pgbench run failed or reported failed transactions (the
# section is still written and names the run).

set -euo pipefail

SCRIPT_START=$(date +%s)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPORT_PY="$ROOT/scripts/bench_gateway_report.py"
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-3}
ROUNDS=${BENCH_ROUNDS:-3}
CLIENTS=${BENCH_CLIENTS:-"8 64"}
OUT=${BENCH_OUT:-$ROOT/BENCHMARKS.md}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
SCALE=10
THREADS=2
GATEWAY_CONNECTIONS=200
GATEWAY_THREADS=${BENCH_GATEWAY_THREADS:-0}

say() { printf 'bench-gateway: %s\n' "$*" >&2; }
die() {
    printf 'bench-gateway: error: %s\n' "$*" >&2
    exit 1
}

BIN_OVERRIDE=${BREAKGLASS_BIN:-}
# No other BREAKGLASS_* variable of the caller's shell may change what runs here.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^BREAKGLASS_' || true)
# Nor libpq's: every connection below names its host, port, user and password.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^PG' | grep -v '^PG_BIN$' || true)
export PGCONNECT_TIMEOUT=10

[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "BENCH_DURATION must be a whole number of seconds ≥ 1, not '$DURATION'"
[[ $WARMUP =~ ^[1-9][0-9]*$ ]] || die "BENCH_WARMUP must be a whole number of seconds ≥ 1, not '$WARMUP'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a whole number ≥ 1, not '$ROUNDS'"
TLS=${BENCH_TLS:-0}
[[ $TLS == 0 || $TLS == 1 ]] || die "BENCH_TLS must be 0 or 1, not '$TLS'"
# What every pgbench and psql connection string ends with.
if ((TLS)); then SSLMODE=require; else SSLMODE=disable; fi
PIN=${BENCH_PIN:-0}
[[ $PIN == 0 || $PIN == 1 ]] || die "BENCH_PIN must be 0 or 1, not '$PIN'"
# With BENCH_PIN=1: the commands that start the database and pgbench, and those that start the
# proxies, run under these prefixes (children inherit the CPU set).
DB_PIN=()
PROXY_PIN=()
if ((PIN)); then
    command -v taskset >/dev/null || die "BENCH_PIN=1 needs \`taskset\` (util-linux)"
    NCPU=$(nproc)
    ((NCPU >= 2)) || die "BENCH_PIN=1 needs at least 2 CPUs, this machine has $NCPU"
    DB_PIN=(taskset -c 0)
    PROXY_PIN=(taskset -c "1-$((NCPU - 1))")
fi

# --- tools -------------------------------------------------------------------------------
for tool in "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PG_BIN/postgres"; do
    [[ -x $tool ]] || die "$tool not found (Debian package postgresql-15, or set PG_BIN)"
done
TLS_TOOLS=
((TLS)) && TLS_TOOLS=openssl
for tool in psql pgbench python3 $TLS_TOOLS; do
    command -v "$tool" >/dev/null || die "\`$tool\` is not installed (psql/pgbench: Debian package postgresql-client)"
done
PGBOUNCER=$(command -v pgbouncer || true)
[[ -n $PGBOUNCER ]] || PGBOUNCER=/usr/sbin/pgbouncer
[[ -x $PGBOUNCER ]] || die "pgbouncer not found (apt-get install -y pgbouncer)"
HAPROXY=$(command -v haproxy || true)
[[ -n $HAPROXY ]] || HAPROXY=/usr/sbin/haproxy
[[ -x $HAPROXY ]] || die "haproxy not found (apt-get install -y haproxy)"
[[ -f $REPORT_PY ]] || die "$REPORT_PY is missing"

AS_ROOT=0
if [[ $(id -u) -eq 0 ]]; then
    AS_ROOT=1
    id postgres >/dev/null 2>&1 || die "running as root but there is no \`postgres\` user to run PostgreSQL"
    command -v runuser >/dev/null || die "running as root needs \`runuser\` (util-linux) to run PostgreSQL as postgres"
fi
# PostgreSQL refuses to run as root: as root, its commands run as the postgres user.
as_pg() {
    if ((AS_ROOT)); then runuser -u postgres -- "$@"; else "$@"; fi
}

# --- the breakglass binary -----------------------------------------------------------------
BIN=$BIN_OVERRIDE
# The workspace as built (not as it is when the report is written: it may be edited while the
# runs go on).
GIT_REV=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null | grep -c . || true)
if [[ -z $BIN ]]; then
    command -v cargo >/dev/null || die "cargo not found (or set BREAKGLASS_BIN to a built binary)"
    say "building: cargo build --release -p breakglass-cli"
    (cd "$ROOT" && cargo build --release -p breakglass-cli) || die "cargo build --release -p breakglass-cli failed"
    BIN=$ROOT/target/release/breakglass
fi
[[ -x $BIN ]] || die "breakglass binary $BIN not found or not executable"
BIN_BUILT=$(date -u -r "$BIN" +%Y-%m-%dT%H:%M:%SZ)

# --- temp dir and cleanup ------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-gateway.XXXXXX")
chmod 755 "$WORK" # the postgres user (as root) must reach its directories below
PGDIR=$WORK/pg
PGDATA=$PGDIR/data
PGB_DIR=$WORK/pgbouncer
HAP_DIR=$WORK/haproxy
BG_DIR=$WORK/breakglass
KEYS=$BG_DIR/keys
RES=$WORK/results
mkdir -p "$PGDIR" "$PGB_DIR" "$HAP_DIR" "$KEYS" "$RES"
: >"$WORK/pgpass" # no ~/.pgpass: every password below is in its connection string
chmod 600 "$WORK/pgpass"
export PGPASSFILE=$WORK/pgpass
# A copy of the binary, so a concurrent rebuild of target/release cannot swap it mid-run.
mkdir "$WORK/bin"
cp "$BIN" "$WORK/bin/breakglass" || die "copying $BIN"
BIN=$WORK/bin/breakglass
BG_PID=
PG_STARTED=0

# Ends process PID: TERM, up to 5 s to go, then KILL.
stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if ((rc != 0)); then
        say "failed (exit $rc); the last lines of the logs:"
        for f in "$BG_DIR/serve.log" "$PGB_DIR/pgbouncer.log" "$HAP_DIR/haproxy.log" "$PGDIR/server.log"; do
            [[ -s $f ]] && { printf -- '--- %s\n' "$f" >&2; tail -n 15 "$f" >&2; }
        done
    fi
    if [[ -n $BG_PID ]]; then
        stop_pid "$BG_PID"
        wait "$BG_PID" 2>/dev/null
    fi
    # The daemons' pid files (HAProxy's holds one pid per line: the first is its own).
    local f
    for f in "$PGB_DIR/pgbouncer.pid" "$HAP_DIR/haproxy.pid"; do
        [[ -s $f ]] && stop_pid "$(head -n 1 "$f")"
    done
    if ((PG_STARTED)); then
        as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 30 stop >/dev/null 2>&1 ||
            as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1
    fi
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something accepts TCP connections on 127.0.0.1:PORT.
wait_port() {
    local port=$1 what=$2 tries=${3:-100}
    for _ in $(seq "$tries"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$what does not accept connections on 127.0.0.1:$port"
}

random_hex() { python3 -c 'import secrets; print(secrets.token_hex(16))'; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- 1. PostgreSQL -------------------------------------------------------------------------
say "starting a private PostgreSQL cluster in $PGDIR"
SU_PW=$(random_hex)
ADM_PW=$(random_hex)
OP_PW=$(random_hex)
USER_PW=$(random_hex)
printf '%s\n' "$SU_PW" >"$PGDIR/pwfile"
chmod 700 "$PGDIR"
chmod 600 "$PGDIR/pwfile"
((AS_ROOT)) && chown -R postgres: "$PGDIR"
as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C --no-sync \
    --pwfile="$PGDIR/pwfile" --auth-local=trust --auth-host=scram-sha-256 \
    >"$PGDIR/initdb.log" 2>&1 || { cat "$PGDIR/initdb.log" >&2; die "initdb failed"; }
rm -f "$PGDIR/pwfile"
# The socket directory is private (0700): trusting the socket lets only its owner (and root)
# in; every TCP login presents a SCRAM password.
printf 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' >"$PGDATA/pg_hba.conf"
cat >>"$PGDATA/postgresql.conf" <<EOF

# bench-gateway.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGDIR'
password_encryption = 'scram-sha-256'
max_connections = 300
shared_buffers = '256MB'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
if ((TLS)); then
    # A self-signed certificate for 127.0.0.1, for PostgreSQL (the direct path) and PgBouncer.
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
        -keyout "$PGDATA/server.key" -out "$PGDATA/server.crt" >"$PGDIR/openssl.log" 2>&1 ||
        { cat "$PGDIR/openssl.log" >&2; die "openssl could not make a certificate"; }
    chmod 600 "$PGDATA/server.key"
    ((AS_ROOT)) && chown postgres: "$PGDATA/server.key" "$PGDATA/server.crt"
    printf "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n" >>"$PGDATA/postgresql.conf"
else
    echo "ssl = off" >>"$PGDATA/postgresql.conf"
fi
# A free port can be taken between probing and binding: try a few.
PGPORT=
for _ in 1 2 3 4 5; do
    port=$(free_port)
    if as_pg "${DB_PIN[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PGDIR/server.log" -o "-p $port" -w -t 60 start >/dev/null 2>&1; then
        PGPORT=$port
        PG_STARTED=1
        break
    fi
done
[[ -n $PGPORT ]] || { tail -n 20 "$PGDIR/server.log" >&2; die "PostgreSQL did not start"; }
wait_port "$PGPORT" PostgreSQL
POSTMASTER_PID=$(head -n 1 "$PGDATA/postmaster.pid")
say "PostgreSQL on 127.0.0.1:$PGPORT"

su_psql() { psql -X -q -v ON_ERROR_STOP=1 -h "$PGDIR" -p "$PGPORT" -U postgres "$@"; }

# The roles of the CLI tests' `pg_target`, plus the benchmark's own login role: a member of
# the app role, like the gateway's ephemeral role, with a SCRAM password.
su_psql -d postgres <<EOF || die "creating the roles and the database failed"
CREATE ROLE bench_adm LOGIN PASSWORD '$ADM_PW' CREATEROLE;
CREATE ROLE bench_app NOLOGIN;
GRANT bench_app TO bench_adm WITH ADMIN OPTION;
CREATE ROLE bench_op LOGIN PASSWORD '$OP_PW' CREATEROLE;
GRANT pg_signal_backend TO bench_op;
CREATE ROLE bench_user LOGIN PASSWORD '$USER_PW' IN ROLE bench_app;
CREATE DATABASE bench;
EOF
say "pgbench -i -s $SCALE (as superuser)"
pgbench -i -s "$SCALE" -q -h "$PGDIR" -p "$PGPORT" -U postgres bench >"$PGDIR/pgbench-init.log" 2>&1 ||
    { cat "$PGDIR/pgbench-init.log" >&2; die "pgbench -i failed"; }
# pgbench -S -n reads pgbench_branches (the scale) and pgbench_accounts.
su_psql -d bench -c "GRANT SELECT ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO bench_app; CHECKPOINT;" ||
    die "granting SELECT on the pgbench tables failed"

PG_VERSION=$(su_psql -d bench -At -c "SHOW server_version")
DIRECT_URL="postgresql://bench_user:$USER_PW@127.0.0.1:$PGPORT/bench?sslmode=$SSLMODE"
psql -X -At "$DIRECT_URL" -c "SELECT count(*) FROM pgbench_branches" >/dev/null ||
    die "bench_user cannot log in over TCP and read pgbench_branches"

# --- 2. PgBouncer --------------------------------------------------------------------------
PGB_PORT=$(free_port)
printf '"bench_user" "%s"\n' "$USER_PW" >"$PGB_DIR/userlist.txt"
cat >"$PGB_DIR/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$PGPORT dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $PGB_DIR/userlist.txt
pool_mode = session
max_client_conn = 300
default_pool_size = 80
reserve_pool_size = 0
max_db_connections = 0
client_tls_sslmode = $( ((TLS)) && echo require || echo disable)
$( ((TLS)) && printf 'client_tls_cert_file = %s\nclient_tls_key_file = %s\n' "$PGB_DIR/server.crt" "$PGB_DIR/server.key")
server_tls_sslmode = disable
logfile = $PGB_DIR/pgbouncer.log
pidfile = $PGB_DIR/pgbouncer.pid
log_connections = 0
log_disconnections = 0
EOF
chmod 600 "$PGB_DIR/userlist.txt"
if ((TLS)); then
    cp "$PGDATA/server.crt" "$PGDATA/server.key" "$PGB_DIR/"
    chmod 600 "$PGB_DIR/server.key"
fi
((AS_ROOT)) && chown -R postgres: "$PGB_DIR"
say "starting PgBouncer (session pooling) on 127.0.0.1:$PGB_PORT"
if ((AS_ROOT)); then
    "${PROXY_PIN[@]}" "$PGBOUNCER" -d -u postgres "$PGB_DIR/pgbouncer.ini" >"$PGB_DIR/start.log" 2>&1
else
    "${PROXY_PIN[@]}" "$PGBOUNCER" -d "$PGB_DIR/pgbouncer.ini" >"$PGB_DIR/start.log" 2>&1
fi || { cat "$PGB_DIR/start.log" "$PGB_DIR/pgbouncer.log" >&2 2>/dev/null; die "pgbouncer did not start"; }
wait_port "$PGB_PORT" PgBouncer
for _ in $(seq 50); do [[ -s $PGB_DIR/pgbouncer.pid ]] && break; sleep 0.1; done
PGB_PID=$(cat "$PGB_DIR/pgbouncer.pid" 2>/dev/null) || die "pgbouncer wrote no pid file"
PGB_URL="postgresql://bench_user:$USER_PW@127.0.0.1:$PGB_PORT/bench?sslmode=$SSLMODE"
psql -X -At "$PGB_URL" -c "SELECT 1" >/dev/null || die "cannot log in through PgBouncer"
PGB_VERSION=$("$PGBOUNCER" --version | head -n 1)

# HAProxy: TCP forwarding only, one thread (as PgBouncer's one), no splicing. The client's
# SCRAM login goes through to PostgreSQL unread. `log stderr` with -D goes nowhere: problems
# would show as failed pgbench runs.
HAP_PORT=$(free_port)
cat >"$HAP_DIR/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 1000
    pidfile $HAP_DIR/haproxy.pid

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend pgbench
    bind 127.0.0.1:$HAP_PORT
    default_backend postgres

backend postgres
    server pg 127.0.0.1:$PGPORT
EOF
say "starting HAProxy (mode tcp, one thread) on 127.0.0.1:$HAP_PORT"
"$HAPROXY" -c -q -f "$HAP_DIR/haproxy.cfg" >"$HAP_DIR/check.log" 2>&1 ||
    { cat "$HAP_DIR/check.log" >&2; die "the HAProxy configuration does not check"; }
"${PROXY_PIN[@]}" "$HAPROXY" -D -f "$HAP_DIR/haproxy.cfg" >"$HAP_DIR/haproxy.log" 2>&1 ||
    { cat "$HAP_DIR/haproxy.log" >&2; die "haproxy did not start"; }
wait_port "$HAP_PORT" HAProxy
for _ in $(seq 50); do [[ -s $HAP_DIR/haproxy.pid ]] && break; sleep 0.1; done
HAP_PID=$(head -n 1 "$HAP_DIR/haproxy.pid" 2>/dev/null) || die "haproxy wrote no pid file"
HAP_URL="postgresql://bench_user:$USER_PW@127.0.0.1:$HAP_PORT/bench?sslmode=$SSLMODE"
psql -X -At "$HAP_URL" -c "SELECT 1" >/dev/null || die "cannot log in through HAProxy"
HAP_VERSION=$("$HAPROXY" -v | head -n 1 | sed 's/ - https.*//')

# --- 3. breakglass serve --gateway and a granted proxy break --------------------------------
cat >"$BG_DIR/targets.yaml" <<EOF
connections:
  - name: pg
    kind: postgres
    operator_url: postgres://bench_op:$OP_PW@127.0.0.1:$PGPORT/bench?sslmode=disable
EOF
say "starting breakglass serve --gateway"
SERVE_TLS=()
# With TLS the API is HTTPS too, with the same self-signed certificate, which the CLI trusts.
((TLS)) && SERVE_TLS=(--tls-self-signed)
"${PROXY_PIN[@]}" "$BIN" serve --listen 127.0.0.1:0 --data-dir "$BG_DIR/data" --targets "$BG_DIR/targets.yaml" \
    "${SERVE_TLS[@]}" --gateway 127.0.0.1:0 --gateway-threads "$GATEWAY_THREADS" </dev/null >"$BG_DIR/serve.out" 2>"$BG_DIR/serve.log" &
BG_PID=$!
if ((TLS)); then GW_TLS_WORD=TLS; else GW_TLS_WORD="no TLS"; fi
BG_URL=
GW_ADDR=
for _ in $(seq 300); do
    kill -0 "$BG_PID" 2>/dev/null || die "breakglass serve exited: $(tail -n 20 "$BG_DIR/serve.log")"
    BG_URL=$(sed -n 's/^breakglass serving on \(http[^ ]*\) (sqlite store)$/\1/p' "$BG_DIR/serve.log" | head -n 1)
    GW_ADDR=$(sed -n "s/^breakglass gateway (PostgreSQL) on \\([^ ]*\\) ($GW_TLS_WORD).*\$/\\1/p" "$BG_DIR/serve.log" | head -n 1)
    [[ -n $BG_URL && -n $GW_ADDR ]] && break
    sleep 0.1
done
[[ -n $BG_URL ]] || die "breakglass serve did not report its address within 30 s"
[[ -n $GW_ADDR ]] || die "breakglass serve did not report its gateway (\"breakglass gateway (PostgreSQL) on ADDR ($GW_TLS_WORD)\")"
GW_PORT=${GW_ADDR##*:}
wait_port "$GW_PORT" "the breakglass gateway"
say "breakglass on $BG_URL, gateway on $GW_ADDR"

CLI_TLS=()
((TLS)) && CLI_TLS=(--ca-cert "$BG_DIR/data/tls/cert.pem")
bgcli() { "$BIN" --server "$BG_URL" "${CLI_TLS[@]}" --data-dir "$BG_DIR/data" "$@"; }
as_actor() {
    local who=$1
    shift
    bgcli --identity "$KEYS/$who.key" "$@"
}

for name in alice bob carol dave; do
    "$BIN" custodian keygen --out "$KEYS/$name.key" >"$KEYS/$name.pub" 2>"$KEYS/keygen.err" ||
        die "breakglass custodian keygen for $name failed: $(cat "$KEYS/keygen.err")"
    grep -q '^age1' "$KEYS/$name.pub" || die "custodian keygen printed no age public key for $name"
done
bgcli actor add dave --role requester --key-file "$KEYS/dave.pub" >/dev/null || die "enrolling the requester failed"
{
    cat <<EOF
id: pgbench
description: bench-gateway.sh
target:
  kind: postgres
  details:
    host: 127.0.0.1
    port: "$PGPORT"
    dbname: bench
    admin_user: bench_adm
    grant_role: bench_app
    connection: pg
    sslmode: disable
    access: proxy
    gateway_connections: "$GATEWAY_CONNECTIONS"
    refuse: DROP DATABASE; ALTER SYSTEM
custodians:
EOF
    for name in alice bob carol; do
        printf '  - name: %s\n    key: %s\n' "$name" "$(cat "$KEYS/$name.pub")"
    done
    printf 'quorum: 2\nmax_grant: 2h\n'
} >"$BG_DIR/pgbench.yaml"
bgcli procedure apply "$BG_DIR/pgbench.yaml" >/dev/null || die "procedure apply failed"
printf '%s\n' "$ADM_PW" | bgcli seal pgbench >/dev/null || die "sealing the admin password failed"
as_actor dave --output json break open pgbench --reason "gateway benchmark" --ticket BENCH-1 \
    --duration 1h >"$BG_DIR/break.json" || die "break open failed"
BREAK_ID=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$BG_DIR/break.json")
for name in alice bob; do
    as_actor "$name" approve "$BREAK_ID" >/dev/null || die "approval by $name failed"
done
GW_URL=$(as_actor dave break reveal "$BREAK_ID" 2>"$BG_DIR/reveal.err") ||
    die "break reveal failed: $(cat "$BG_DIR/reveal.err")"
case $GW_URL in
postgresql://"$BREAK_ID":*@"$GW_ADDR"/*sslmode=$SSLMODE) ;;
*) die "the reveal is not a gateway connection string ending in sslmode=$SSLMODE: ${GW_URL%%:*}:…" ;;
esac
psql -X -At "$GW_URL" -c "SELECT count(*) FROM pgbench_branches" >/dev/null 2>"$RES/gateway-check.err" ||
    die "cannot query through the gateway: $(cat "$RES/gateway-check.err")"
say "break $BREAK_ID granted; the gateway admits its token"

# A fresh token (its own budget of $GATEWAY_CONNECTIONS connections) for each pgbench run.
gateway_url() {
    as_actor dave break token "$BREAK_ID" 2>"$BG_DIR/token.err" ||
        die "breakglass break token $BREAK_ID failed: $(cat "$BG_DIR/token.err")"
}

if [[ -n ${BENCH_HOLD:-} ]]; then
    {
        printf 'DIRECT_URL=%q\nPGB_URL=%q\nPGB_PID=%q\nHAP_URL=%q\nHAP_PID=%q\nBG_PID=%q\nPOSTMASTER_PID=%q\n' \
            "$DIRECT_URL" "$PGB_URL" "$PGB_PID" "$HAP_URL" "$HAP_PID" "$BG_PID" "$POSTMASTER_PID"
        printf 'TOKEN_CMD=%q\n' "$BIN --server $BG_URL ${CLI_TLS[*]} --data-dir $BG_DIR/data --identity $KEYS/dave.key break token $BREAK_ID"
    } >"$BENCH_HOLD"
    say "holding: connection strings in $BENCH_HOLD; delete it to stop"
    while [[ -e $BENCH_HOLD ]]; do sleep 1; done
    exit 0
fi

# --- 4. pgbench ----------------------------------------------------------------------------
FAILED_RUNS=()
# run_pgbench PATH CLIENTS SECONDS TAG [extra pgbench args…]
run_pgbench() {
    local path=$1 c=$2 secs=$3 tag=$4
    shift 4
    local url
    case $path in
    direct) url=$DIRECT_URL ;;
    pgbouncer) url=$PGB_URL ;;
    haproxy) url=$HAP_URL ;;
    gateway)
        local t0 t1
        t0=$(date +%s.%N)
        url=$(gateway_url) || exit 1
        t1=$(date +%s.%N)
        python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.2f}")' "$t0" "$t1" >"$RES/$path-c$c-$tag.token_s"
        ;;
    esac
    [[ -n $url ]] || die "no connection string for $path"
    local out="$RES/$path-c$c-$tag.out" rc=0 before after w0 w1
    # CPU accounting of the run: the machine's busy ticks against those of the processes
    # measured (PostgreSQL with its backends, PgBouncer, breakglass, HAProxy, pgbench), to show how
    # much CPU anything else on the machine took meanwhile.
    # The proxy's threads, for the report's per-thread table (PgBouncer's, HAProxy's, the gateway's).
    local proxy=
    case $path in
    pgbouncer) proxy=$PGB_PID ;;
    haproxy) proxy=$HAP_PID ;;
    gateway) proxy=$BG_PID ;;
    esac
    [[ -n $proxy ]] && python3 "$REPORT_PY" --thread-snapshot "$proxy" >"$RES/$path-c$c-$tag.threads-before"
    before=$(python3 "$REPORT_PY" --cpu-snapshot "+$POSTMASTER_PID" "$PGB_PID" "$BG_PID" "$HAP_PID" $$)
    w0=$(date +%s.%N)
    (cd "$RES" && "${DB_PIN[@]}" pgbench -n -S -M simple -T "$secs" -c "$c" -j "$THREADS" "$@" "$url") >"$out" 2>&1 || rc=$?
    w1=$(date +%s.%N)
    after=$(python3 "$REPORT_PY" --cpu-snapshot "+$POSTMASTER_PID" "$PGB_PID" "$BG_PID" "$HAP_PID" $$)
    [[ -n $proxy ]] && python3 "$REPORT_PY" --thread-snapshot "$proxy" >"$RES/$path-c$c-$tag.threads-after"
    echo "$before $after $w0 $w1" >"$RES/$path-c$c-$tag.cpu"
    echo "$rc" >"$RES/$path-c$c-$tag.rc"
    if ((rc != 0)) || grep -Eq 'aborted|number of failed transactions: [1-9]' "$out"; then
        FAILED_RUNS+=("$path c=$c $tag")
        say "WARNING: pgbench $path -c $c ($tag) exited $rc:"
        grep -Ev '^(pgbench|transaction type|scaling|query mode|number of (clients|threads)|maximum|duration)' "$out" | head -n 12 >&2
    fi
}

# The gateway's server keeps working after a gateway run (it ends each session: see the
# report), and it shares the CPUs with everything measured here. Before each pgbench run the
# script waits until `breakglass serve` is idle (at most 3 % of a CPU over a second), so no path
# is measured while the server finishes the previous gateway run. Prints the seconds waited.
SETTLE_MAX=${BENCH_SETTLE_MAX:-240}
TICKS=$(getconf CLK_TCK)
server_ticks() {
    local stat
    stat=$(cat "/proc/$BG_PID/stat" 2>/dev/null) ||
        die "breakglass serve is no longer running: $(tail -n 20 "$BG_DIR/serve.log")"
    awk '{ print $14 + $15 }' <<<"$stat"
}
settle() {
    local t0 prev cur i
    t0=$(date +%s)
    prev=$(server_ticks)
    for ((i = 0; i < SETTLE_MAX; i++)); do
        sleep 1
        cur=$(server_ticks)
        ((cur - prev <= TICKS * 3 / 100)) && break
        prev=$cur
    done
    echo $(($(date +%s) - t0))
}

# settled_run PATH CLIENTS SECONDS TAG [extra pgbench args…]: waits for breakglass serve to go
# idle, then runs pgbench.
settled_run() {
    local waited
    waited=$(settle)
    echo "$waited" >"$RES/$1-c$2-$4.settle_s"
    ((waited > 2)) && say "  waited $waited s for breakglass serve to go idle"
    run_pgbench "$@"
}

# Interleaved rounds: the machine's speed drifts over a minute, so every path runs once in each
# round, and the order alternates (odd rounds direct, PgBouncer, HAProxy, gateway; even rounds
# the reverse) so that no path always runs first, last or right after the gateway.
for c in $CLIENTS; do
    say "$c clients: ${WARMUP} s warm-up on each path, then $ROUNDS round(s) of ${DURATION} s per path"
    for path in direct pgbouncer haproxy gateway; do
        say "  $path warm-up"
        settled_run "$path" "$c" "$WARMUP" warmup
    done
    for ((r = 1; r <= ROUNDS; r++)); do
        if ((r % 2)); then order=(direct pgbouncer haproxy gateway); else order=(gateway haproxy pgbouncer direct); fi
        line=
        for path in "${order[@]}"; do
            settled_run "$path" "$c" "$DURATION" "run$r" -l --log-prefix="$RES/$path-c$c-run$r-log"
            tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$RES/$path-c$c-run$r.out")
            line+=" $path ${tps%.*}"
            [[ -n $tps ]] || line+="?"
        done
        say "  round $r/$ROUNDS, tps:$line"
    done
done

# --- 5. the recording, the logs, the report ------------------------------------------------
# Statements are stored in batches as they run; sessions are ended (and their recordings
# digested into the audit log) asynchronously after the client left. Read the recording until
# it holds a statement for every transaction pgbench reported through the gateway (at most 3
# reads); with BENCH_SESSION_WAIT=SECONDS, also until no session is open (or SECONDS passed).
RUNS_END=$(date +%s.%N)
SESSION_WAIT=${BENCH_SESSION_WAIT:-0}
say "reading the gateway's recording (breakglass session show $BREAK_ID --output json)"
OPEN_SESSIONS=unknown
SHOWS=0
SESSION_START=$RUNS_END
SESSION_END=$RUNS_END
while :; do
    sleep 3
    SESSION_START=$(date +%s.%N)
    SHOWS=$((SHOWS + 1))
    if ! bgcli --output json session show "$BREAK_ID" >"$RES/session.json" 2>"$RES/session.err"; then
        say "WARNING: session show failed: $(head -c 2000 "$RES/session.err")"
        : >"$RES/session.json"
        break
    fi
    SESSION_END=$(date +%s.%N)
    read -r OPEN_SESSIONS recorded expected < <(python3 "$REPORT_PY" --recording-check "$RES")
    waited=$(python3 -c 'import sys; print(int(float(sys.argv[2]) - float(sys.argv[1])))' "$RUNS_END" "$SESSION_END")
    say "  ${waited} s after the last run: $recorded pgbench statements recorded of $expected transactions; $OPEN_SESSIONS session(s) not ended yet"
    if ((recorded >= expected)); then
        ((OPEN_SESSIONS == 0 || waited >= SESSION_WAIT)) && break
    elif ((SHOWS >= 3 && waited >= SESSION_WAIT)); then
        break
    fi
done
SESSION_WAITED=$(python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$RUNS_END" "$SESSION_END")
grep -E ' (WARN|ERROR)|panick' "$BG_DIR/serve.log" >"$RES/serve-problems.log" || true
grep -E 'FATAL|ERROR|PANIC' "$PGDIR/server.log" >"$RES/pg-problems.log" || true
grep -Ei 'WARNING|ERROR|FATAL' "$PGB_DIR/pgbouncer.log" >"$RES/pgbouncer-problems.log" || true
kill -0 "$BG_PID" 2>/dev/null || echo "breakglass serve is no longer running" >>"$RES/serve-problems.log"

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
{
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc=$(nproc)"
    echo "clk_tck=$TICKS"
    echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "mem_gib=$(awk '/^MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)"
    echo "load_start=$LOAD_START"
    echo "load_end=$LOAD_END"
    echo "pg_version=$PG_VERSION"
    echo "pgbench_version=$(pgbench --version)"
    echo "pgbouncer_version=$PGB_VERSION"
    echo "haproxy_version=$HAP_VERSION"
    echo "pinned=$PIN"
    echo "tls=$TLS"
    ((PIN)) && echo "proxy_cpus=1-$((NCPU - 1))"
    echo "git_rev=$GIT_REV"
    echo "git_dirty=$GIT_DIRTY"
    echo "bin_built=$BIN_BUILT"
    echo "bin_given=${BIN_OVERRIDE:+1}"
    echo "break_id=$BREAK_ID"
    echo "scale=$SCALE"
    echo "duration=$DURATION"
    echo "warmup=$WARMUP"
    echo "rounds=$ROUNDS"
    echo "threads=$THREADS"
    echo "clients=$CLIENTS"
    echo "gateway_connections=$GATEWAY_CONNECTIONS"
    echo "open_sessions=$OPEN_SESSIONS"
    echo "session_waited_s=$SESSION_WAITED"
    echo "session_shows=$SHOWS"
    echo "session_wait_limit=$SESSION_WAIT"
    echo "session_show_s=$(python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$SESSION_START" "$SESSION_END")"
    echo "elapsed_s=$(($(date +%s) - SCRIPT_START))"
} >"$RES/meta.env"

python3 "$REPORT_PY" --results "$RES" --out "$OUT" || die "writing the report failed"
say "wrote the section \"## PostgreSQL gateway vs direct vs PgBouncer$( ((TLS)) && echo ', over TLS')$( ((PIN)) && echo ', the proxies on their own CPU')\" of $OUT ($(($(date +%s) - SCRIPT_START)) s so far)"

if ((${#FAILED_RUNS[@]})); then
    say "pgbench runs with errors: ${FAILED_RUNS[*]}"
    exit 3
fi
