#!/usr/bin/env python3
"""The report of scripts/bench-gateway.sh: reads its results directory (pgbench outputs and
per-transaction logs of every warm-up and measured round, the gateway's recording as `session
show --output json`, the problem lines of the servers' logs, meta.env), prints the section
"## PostgreSQL gateway vs direct vs PgBouncer" and writes it into BENCHMARKS.md, replacing that
section if present and leaving the rest of the file as it was.

Files per run, TAG being `warmup` or `run1`, `run2`, … (one per measured round):
PATH-cCLIENTS-TAG.{out,rc,cpu,settle_s} (and .token_s for the gateway); measured runs also have
pgbench's per-transaction logs PATH-cCLIENTS-TAG-log.*.
"""

import argparse
import glob
import json
import os
import re
import statistics
import sys

HEADING = "## PostgreSQL gateway vs direct vs PgBouncer"


def heading(meta):
    """The section's heading: runs with BENCH_TLS=1 or BENCH_PIN=1 get sections of their own."""
    return (
        HEADING
        + (", over TLS" if meta.get("tls") == "1" else "")
        + (", the proxies on their own CPU" if meta.get("pinned") == "1" else "")
    )
PATHS = ["direct", "pgbouncer", "haproxy", "gateway"]
LABELS = {
    "direct": "PostgreSQL directly",
    "pgbouncer": "PgBouncer (session pooling)",
    "haproxy": "HAProxy (TCP forwarding only)",
    "gateway": "**breakglass gateway**",
}
NAMES = {"direct": "direct", "pgbouncer": "PgBouncer", "haproxy": "HAProxy", "gateway": "gateway"}
TARGET_DIRECT = 0.95
TARGET_PGBOUNCER = 1.0
TARGET_ADDED_US = 100.0


def read_meta(results):
    meta = {}
    with open(os.path.join(results, "meta.env"), encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                k, v = line.split("=", 1)
                meta[k] = v
    return meta


def grab(pattern, text, cast=float):
    m = re.search(pattern, text, re.M)
    return cast(m.group(1)) if m else None


def pgbench_summary(path):
    """The figures of one pgbench output file (None when the file is missing)."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    rc_file = path[: -len(".out")] + ".rc"
    rc = int(open(rc_file).read().strip()) if os.path.exists(rc_file) else None
    return {
        "text": text,
        "rc": rc,
        "tps": grab(r"^tps = ([0-9.]+) \(without initial connection time\)", text),
        "processed": grab(r"^number of transactions actually processed: (\d+)", text, int),
        "failed": grab(r"^number of failed transactions: (\d+)", text, int),
        "latency_avg_ms": grab(r"^latency average = ([0-9.]+) ms", text),
        "connect_ms": grab(r"^initial connection time = ([0-9.]+) ms", text),
        "aborted": "aborted" in text,
    }


def latencies(results, path, clients, tag):
    """Per-transaction latencies (µs) from pgbench's `-l` logs of one run, and the count of failed ones."""
    lat, failed, files = [], 0, 0
    for name in glob.glob(os.path.join(results, f"{path}-c{clients}-{tag}-log.*")):
        files += 1
        with open(name, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                try:
                    lat.append(int(fields[2]))
                except ValueError:  # "failed" or "skipped"
                    failed += 1
    lat.sort()
    return lat, failed, files


def pct(sorted_values, q):
    if not sorted_values:
        return None
    if q == 50:
        n = len(sorted_values)
        mid = n // 2
        return float(sorted_values[mid]) if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2
    i = min(len(sorted_values) - 1, max(0, int(round(q / 100 * len(sorted_values))) - 1))
    return float(sorted_values[i])


def median(values):
    """The median of the values that are not None, or None."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, spec="{:,.0f}", none="—"):
    return none if v is None else spec.format(v)


def verdict(ok):
    return "met" if ok else "**not met**"


def recording(results):
    """What the gateway recorded, from `session show --output json`."""
    path = os.path.join(results, "session.json")
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    with open(path, encoding="utf-8") as f:
        rec = json.load(f)
    sessions = rec.get("sessions") or []
    statements = rec.get("statements") or []
    per_session = sum(int(s.get("statements") or 0) for s in sessions)
    selects = sum(1 for s in statements if "FROM pgbench_accounts WHERE aid" in (s.get("statement") or ""))
    errors = [s for s in statements if s.get("error") and not s.get("refused")]
    return {
        "sessions": len(sessions),
        "statements": len(statements),
        "per_session": per_session,
        "selects": selects,
        "errors": errors,
        "intact": sum(1 for s in sessions if s.get("recording_intact") is True),
        "not_intact": sum(1 for s in sessions if s.get("recording_intact") is False),
        "open": sum(1 for s in sessions if s.get("recording_intact") is None),
        "ends": sorted({str(s.get("end")) for s in sessions}),
    }


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_snapshot(pids):
    """Busy and steal ticks of the whole machine, and the ticks of `pids` (utime + stime + cutime +
    cstime: their own and their reaped children's). A pid written `+PID` also counts its live
    children (PostgreSQL's backends, which PgBouncer keeps open after a run)."""
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    busy = cpu[0] + cpu[1] + cpu[2]
    steal = cpu[7] if len(cpu) > 7 else 0
    each = {}
    for pid in pids:
        fields = proc_stat(pid.lstrip("+"))
        # state is fields[0]: utime, stime, cutime, cstime are fields[11:15]
        each[pid.lstrip("+")] = sum(int(x) for x in fields[11:15]) if fields else 0
    parents = {p.lstrip("+") for p in pids if p.startswith("+")}
    if parents:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                fields = proc_stat(entry)
                if fields and fields[1] in parents:
                    each[fields[1]] += int(fields[11]) + int(fields[12])
    per = [each[p.lstrip("+")] for p in pids]
    return [busy, steal, sum(per)] + per


def thread_snapshot(pid):
    """One line per thread of `pid`: tid, command name, utime and stime ticks, voluntary and
    involuntary context switches (from /proc/PID/task/TID/{stat,status})."""
    lines = []
    base = f"/proc/{pid}/task"
    try:
        tids = os.listdir(base)
    except OSError:
        return lines
    for tid in tids:
        fields = proc_stat(f"{pid}/task/{tid}")
        try:
            with open(f"{base}/{tid}/comm") as f:
                comm = f.read().strip().replace(" ", "_") or "?"
            with open(f"{base}/{tid}/status") as f:
                status = dict(l.split(":", 1) for l in f if ":" in l)
        except OSError:
            continue
        if not fields:
            continue
        vol = int(status.get("voluntary_ctxt_switches", "0").strip())
        invol = int(status.get("nonvoluntary_ctxt_switches", "0").strip())
        lines.append(f"{tid} {comm} {fields[11]} {fields[12]} {vol} {invol}")
    return lines


# Thread groups of the proxies, by command name prefix.
THREAD_GROUPS = [
    ("gateway-relay", "relay threads"),
    ("sqlx-sqlite", "SQLite workers (storing the recording)"),
    ("tokio-rt-worker", "server runtime workers"),
    ("pgbouncer", "PgBouncer's thread"),
    ("haproxy", "HAProxy's thread"),
]


def thread_cpu(results, path, clients, tag, hz):
    """Per thread group of the proxy: [user s, system s, voluntary, involuntary switches] during a
    run, from the .threads-before/.threads-after files; None without them."""
    snaps = []
    for side in ("before", "after"):
        f = os.path.join(results, f"{path}-c{clients}-{tag}.threads-{side}")
        if not os.path.exists(f):
            return None
        d = {}
        for line in open(f):
            v = line.split()
            if len(v) == 6:
                d[v[0]] = (v[1], *(int(x) for x in v[2:]))
        snaps.append(d)
    before, after = snaps
    groups = {}
    for tid, (comm, u, st, vol, inv) in after.items():
        u0, s0, v0, i0 = before.get(tid, (comm, 0, 0, 0, 0))[1:]
        name = next((label for prefix, label in THREAD_GROUPS if comm.startswith(prefix)), "other threads")
        g = groups.setdefault(name, [0.0, 0.0, 0, 0])
        g[0] += (u - u0) / hz
        g[1] += (st - s0) / hz
        g[2] += vol - v0
        g[3] += inv - i0
    return groups


CPU_PROCS = ["postgres", "pgbouncer", "breakglass", "haproxy", "pgbench"]  # the order bench-gateway.sh passes them


def foreign_cpu(results, path, clients, tag, nproc, hz):
    """(share of the machine's CPU that other processes used during a run, steal share, CPU seconds per
    measured process) or None. The .cpu file: before snapshot, after snapshot, start, end."""
    f = os.path.join(results, f"{path}-c{clients}-{tag}.cpu")
    if not os.path.exists(f):
        return None
    v = open(f).read().split()
    n = 3 + len(CPU_PROCS)
    if len(v) != 2 * n + 2:
        return None
    a = [int(x) for x in v[:n]]
    b = [int(x) for x in v[n : 2 * n]]
    wall = float(v[2 * n + 1]) - float(v[2 * n])
    capacity = nproc * wall * hz
    if capacity <= 0:
        return None
    other = max(0, (b[0] - a[0]) - (b[2] - a[2]))
    per = {name: (b[3 + i] - a[3 + i]) / hz for i, name in enumerate(CPU_PROCS)}
    return other / capacity, (b[1] - a[1]) / capacity, per


def gateway_transactions(results):
    """Transactions pgbench reported through the gateway: every measured round and every warm-up."""
    total = 0
    for name in glob.glob(os.path.join(results, "gateway-c*-*.out")):
        s = pgbench_summary(name)
        total += (s or {}).get("processed") or 0
    return total


def lines_of(results, name):
    path = os.path.join(results, name)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        return [l.rstrip("\n") for l in f if l.strip()]


def rounds_text(n):
    return f"{n} round" + ("" if n == 1 else "s")


def round_label(tag):
    return "warm-up" if tag == "warmup" else f"round {tag[3:]}"


def build_section(results):
    meta = read_meta(results)
    clients = [int(c) for c in meta["clients"].split()]
    rounds = int(meta.get("rounds", "1"))
    nproc, hz = int(meta["nproc"]), int(meta.get("clk_tck", 100))
    # runs[(path, clients, round)]: one measured run (None when pgbench left no output).
    runs, warmups = {}, {}
    for c in clients:
        for p in PATHS:
            warmups[(p, c)] = pgbench_summary(os.path.join(results, f"{p}-c{c}-warmup.out"))
            for r in range(1, rounds + 1):
                s = pgbench_summary(os.path.join(results, f"{p}-c{c}-run{r}.out"))
                if s is not None:
                    lat, failed_log, files = latencies(results, p, c, f"run{r}")
                    s.update(
                        median_us=pct(lat, 50),
                        p99_us=pct(lat, 99),
                        logged=len(lat),
                        failed_log=failed_log,
                        log_files=files,
                        foreign=foreign_cpu(results, p, c, f"run{r}", nproc, hz),
                        threads=thread_cpu(results, p, c, f"run{r}", hz),
                    )
                runs[(p, c, r)] = s

    def failed_count(s):
        return s["failed"] if s["failed"] is not None else s["failed_log"]

    def run_failed(s):
        return s["rc"] not in (0, None) or s["aborted"] or bool(s["failed"]) or s.get("tps") is None

    def usable(s):
        """A measured run whose figures count: pgbench completed it without an error or a failed transaction."""
        return s is not None and not run_failed(s) and not failed_count(s)

    def sum_threads(rs):
        total = {}
        for s in rs:
            for name, v in s["threads"].items():
                t = total.setdefault(name, [0.0, 0.0, 0, 0])
                for i in range(4):
                    t[i] += v[i]
        return total or None

    # agg[(path, clients)]: the medians over rounds of the per-run figures, the sums of the counts,
    # the worst round's share of CPU used by other processes, the CPU of each process summed over rounds.
    agg = {}
    for c in clients:
        for p in PATHS:
            rs = [(r, runs[(p, c, r)]) for r in range(1, rounds + 1)]
            ok = [s for _, s in rs if usable(s)]
            foreign = [(s["foreign"][0], r) for r, s in rs if s and s.get("foreign")]
            cpu_runs = [s for _, s in rs if usable(s) and s.get("foreign") and s.get("processed")]
            cpu = {k: sum(s["foreign"][2][k] for s in cpu_runs) for k in CPU_PROCS} if cpu_runs else None
            agg[(p, c)] = {
                "rounds": len(ok),
                "missing": [(r, "not run" if s is None else "failed") for r, s in rs if not usable(s)],
                "tps": median(s["tps"] for s in ok),
                "median_us": median(s["median_us"] for s in ok),
                "p99_us": median(s["p99_us"] for s in ok),
                "latency_avg_ms": median(s["latency_avg_ms"] for s in ok),
                "connect_ms": median(s["connect_ms"] for s in ok),
                "processed": sum(s["processed"] or 0 for _, s in rs if s) if any(s for _, s in rs) else None,
                "failed": sum(failed_count(s) or 0 for _, s in rs if s) if any(s for _, s in rs) else None,
                "foreign_worst": max(foreign) if foreign else None,
                "cpu": cpu,
                "cpu_tx": sum(s["processed"] for s in cpu_runs),
                "threads": sum_threads([s for s in cpu_runs if s.get("threads")]),
                "threads_tx": sum(s["processed"] for s in cpu_runs if s.get("threads")),
            }

    def round_ratio(c, r, over, of="gateway"):
        g, o = runs.get((of, c, r)), runs.get((over, c, r))
        return g["tps"] / o["tps"] if (usable(g) and usable(o)) else None

    out = []
    w = out.append
    pinned = meta.get("pinned") == "1"
    tls = meta.get("tls") == "1"
    w(heading(meta))
    w("")
    dirty = meta.get("git_dirty", "0")
    rev = meta.get("git_rev", "unknown")
    rev_note = f"`{rev}`" + (f" plus uncommitted changes to {dirty} tracked file(s)" if dirty not in ("", "0") else "")
    w(f"- Date: {meta['date']} (system clock, UTC)")
    w(
        f"- Machine: {meta['nproc']} CPUs (`nproc`), {meta.get('cpu', '?')}, {meta.get('mem_gib', '?')} GiB RAM; "
        f"load average (1/5/15 min) {meta.get('load_start', '?')} at start, {meta.get('load_end', '?')} at end"
    )
    w(
        f"- Reproduce: `bash scripts/bench-gateway.sh` (builds `target/release/breakglass` with "
        f"`cargo build --release -p breakglass-cli`, starts and stops everything itself; whole run {meta['elapsed_s']} s)"
    )
    w(
        f"- PostgreSQL {meta['pg_version']}: a private cluster the script starts with `initdb` in a temp dir, "
        f"`scram-sha-256` for TCP logins on 127.0.0.1, `fsync = off`, `synchronous_commit = off`, "
        f"`max_connections = 300`, `shared_buffers = 256MB`, "
        + ("`ssl = on` (a self-signed RSA-2048 certificate)" if tls else "no TLS")
        + f"; data: `pgbench -i -s {meta['scale']}` as superuser "
        f"({int(meta['scale']) * 100_000:,} accounts)"
    )
    if pinned:
        w(
            f"- Pinned (`BENCH_PIN=1 bash scripts/bench-gateway.sh`): PostgreSQL (its postmaster and every backend) and "
            f"pgbench on CPU 0, PgBouncer, HAProxy and `breakglass serve` on CPU(s) {meta.get('proxy_cpus', '1')} "
            "(`taskset`): a proxy's own CPU time is no longer taken from the client and the server, as with a proxy on "
            "a host of its own; the direct path gets CPU 0 only, like the others' client and server"
        )
    w(
        f"- {meta['pgbouncer_version']}: `pool_mode = session`, `auth_type = scram-sha-256` (userlist), "
        f"`max_client_conn = 300`, `default_pool_size = 80`, "
        + ("`client_tls_sslmode = require` (the same certificate), " if tls else "")
        + "plain TCP to PostgreSQL; "
        + f"{meta['pgbench_version']}"
    )
    w(
        f"- {meta.get('haproxy_version', 'HAProxy')}: `mode tcp`, `nbthread 1`, no splicing: it forwards the bytes "
        "both ways without reading them (the client's SCRAM login goes through to PostgreSQL"
        + (", and so does its TLS, which PostgreSQL terminates" if tls else "")
        + "), so it pays only for "
        "the extra hop — the least any proxy between pgbench and PostgreSQL costs on this machine"
    )
    w(
        f"- breakglass: `target/release/breakglass` built {meta.get('bin_built', '?')}"
        + (" (given as `BREAKGLASS_BIN`, not rebuilt by this run)" if meta.get("bin_given") else "")
        + f", workspace at {rev_note}; `serve --gateway 127.0.0.1:0` "
        + ("with `--tls-self-signed` (clients over TLS, the API over HTTPS)" if tls else "without TLS")
        + ", SQLite store; "
        f"an `access: proxy` procedure on that database (`sslmode: disable`, `gateway_connections: \"{meta['gateway_connections']}\"`, "
        f"`refuse: DROP DATABASE; ALTER SYSTEM`), one break opened for 1 h, approved by 2 of 3 custodians and revealed; "
        f"each gateway run (warm-ups included) uses a fresh token from `breakglass break token`"
    )
    w("")
    w(
        f"Workload: `pgbench -n -S -M simple -T {meta['duration']} -c C -j {meta['threads']} -l` "
        f"(select-only, simple protocol: one `SELECT abalance FROM pgbench_accounts WHERE aid = …` per transaction). "
        "Paths, all over TCP on 127.0.0.1 "
        + (
            "with TLS from pgbench (`sslmode=require`: PostgreSQL, PgBouncer and the gateway each terminate it; "
            "the proxies reach PostgreSQL in plain TCP), "
            if tls
            else "without TLS, "
        )
        + "each logging in with SCRAM-SHA-256 as a login role that is a "
        "member of the procedure's grant role `bench_app`: **direct** — `bench_user` to PostgreSQL; **PgBouncer** — "
        "`bench_user` to PgBouncer, which holds server connections as `bench_user`; **HAProxy** — `bench_user` to "
        "PostgreSQL through HAProxy's forwarded TCP connection; **gateway** — the break id and a "
        "gateway token to breakglass, which logs in upstream as the grant's ephemeral role `bg_…` and records every "
        "statement. TPS is pgbench's \"tps = … (without initial connection time)\"; latencies are from pgbench's "
        "per-transaction logs (`-l`, every transaction of the run, measured by the client from sending the query to "
        "the last result). "
        + (
            "pgbench and PostgreSQL share CPU 0, the proxies have the other CPU(s): a proxy's hop still costs the "
            "sending side its loopback delivery and a wake-up across CPUs."
            if pinned
            else "pgbench, PostgreSQL, the proxies and breakglass share the machine's CPUs, so a proxy's own "
            "CPU time is taken from the client and the server."
        )
    )
    w("")
    w(
        f"Order of the runs: interleaved rounds. For each client count, first a {meta['warmup']} s warm-up on each path "
        f"(same options, not measured), then {rounds_text(rounds)} of one {meta['duration']} s run per path, the order "
        "alternating from round to round: direct, PgBouncer, HAProxy, gateway in odd rounds, the reverse in even "
        "rounds. Why: this machine's speed drifts by about ±10 % over a minute, so with one run per path in a fixed "
        "order the ratios between paths were mostly that drift (the same set-up a minute apart gave gateway ÷ PgBouncer "
        "0.76 or 0.99). With every path in every round, and no path always first, last or right after the gateway, "
        "the per-path medians over rounds hold still; the per-round tables show how far single rounds scatter. "
        "\"CPU used by other processes\": the machine's busy CPU time during a run (user + nice + system in "
        "`/proc/stat`) less that of the processes measured (PostgreSQL with its backends, PgBouncer, HAProxy, "
        "`breakglass serve`, pgbench), as a share of all its CPUs; more than a few per cent means something else on the machine "
        "(a build…) competed with that run."
    )
    w("")
    disturbed = [
        f"{NAMES[p]} with {c} clients in round {r} ({s['foreign'][0] * 100:.0f} %)"
        for (p, c, r), s in runs.items()
        if s and s.get("foreign") and s["foreign"][0] > 0.05
    ]
    if disturbed:
        w(
            "**Caution: other processes took more than 5 % of the machine's CPU during "
            + ", ".join(disturbed)
            + "; those figures are depressed by it. Rerun on a quiet machine.**"
        )
        w("")

    for c in clients:
        w(f"### {c} clients")
        w("")
        w(
            f"TPS, latencies and initial connection time: the median over the {rounds_text(rounds)} of that path's runs "
            "(the latency columns: the median over rounds of each run's median and p99); transactions and failed: "
            "summed over the rounds; CPU used by other processes: the worst round."
        )
        w("")
        w("| Path | TPS | × direct | median latency µs | p99 latency µs | avg latency ms (pgbench) | transactions | failed | initial connection ms | CPU used by other processes |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        d = agg[("direct", c)]
        for p in PATHS:
            a = agg[(p, c)]
            if a["rounds"] == 0 and a["processed"] is None:
                w(f"| {LABELS[p]} | not run | | | | | | | | |")
                continue
            ratio = a["tps"] / d["tps"] if (a["tps"] and d["tps"]) else None
            fw = a["foreign_worst"]
            w(
                f"| {LABELS[p]} | {fmt(a['tps'])} | {fmt(ratio, '{:.3f}×')} | {fmt(a['median_us'])} | {fmt(a['p99_us'])} | "
                f"{fmt(a['latency_avg_ms'], '{:.3f}')} | {fmt(a['processed'])} | {fmt(a['failed'])} | {fmt(a['connect_ms'], '{:.1f}')} | "
                f"{fmt(fw[0] * 100 if fw else None, '{:.1f} %')}{f' (round {fw[1]})' if fw and rounds > 1 else ''} |"
            )
        short = [
            f"{NAMES[p]} over {agg[(p, c)]['rounds']} of {rounds} ("
            + ", ".join(f"round {r} {why}" for r, why in agg[(p, c)]["missing"])
            + ")"
            for p in PATHS
            if agg[(p, c)]["missing"]
        ]
        if short:
            w("")
            w("**Medians over fewer rounds** (a failed run's figures are left out; see Errors): " + "; ".join(short) + ".")
        w("")
        w(f"Each round ({c} clients), TPS:")
        w("")
        w("| Round | Order | direct | PgBouncer | HAProxy | gateway | gateway ÷ direct | gateway ÷ PgBouncer | gateway ÷ HAProxy | HAProxy ÷ direct |")
        w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in range(1, rounds + 1):
            cell = {}
            for p in PATHS:
                s = runs.get((p, c, r))
                cell[p] = fmt(s["tps"]) if usable(s) else ("not run" if s is None else "failed")
            w(
                f"| {r} | {'direct first' if r % 2 else 'gateway first'} | {cell['direct']} | {cell['pgbouncer']} | "
                f"{cell['haproxy']} | {cell['gateway']} | {fmt(round_ratio(c, r, 'direct'), '{:.3f}')} | "
                f"{fmt(round_ratio(c, r, 'pgbouncer'), '{:.3f}')} | {fmt(round_ratio(c, r, 'haproxy'), '{:.3f}')} | "
                f"{fmt(round_ratio(c, r, 'direct', of='haproxy'), '{:.3f}')} |"
            )
        w("")

    have_cpu = [(p, c) for (p, c), a in agg.items() if a["cpu"] and a["cpu_tx"]]
    if have_cpu:
        w("### CPU time per transaction")
        w("")
        w(
            "CPU time of each process during the measured runs (utime + stime from `/proc`, with PostgreSQL's backends "
            "and pgbench's threads), summed over the rounds and divided by the transactions pgbench completed in them: "
            f"where each path spends the machine's {meta['nproc']} CPUs."
        )
        w("")
        w("| Clients | Path | PostgreSQL µs | PgBouncer µs | HAProxy µs | breakglass µs | pgbench µs | total µs |")
        w("|---:|---|---:|---:|---:|---:|---:|---:|")
        per_tx = {}
        for c in clients:
            for p in PATHS:
                a = agg[(p, c)]
                if not a["cpu"] or not a["cpu_tx"]:
                    continue
                us = {k: v * 1e6 / a["cpu_tx"] for k, v in a["cpu"].items()}
                per_tx[(p, c)] = sum(us.values())
                w(
                    f"| {c} | {LABELS[p]} | {us['postgres']:.1f} | {us['pgbouncer']:.1f} | {us['haproxy']:.1f} | "
                    f"{us['breakglass']:.1f} | {us['pgbench']:.1f} | {per_tx[(p, c)]:.1f} |"
                )
        w("")
        bounds = []
        for c in clients:
            td, tg, th = per_tx.get(("direct", c)), per_tx.get(("gateway", c)), per_tx.get(("haproxy", c))
            gd, dd, hd = agg[("gateway", c)]["tps"], agg[("direct", c)]["tps"], agg[("haproxy", c)]["tps"]
            if td and tg and gd and dd:
                bounds.append(
                    f"with {c} clients a transaction costs {td:.0f} µs of CPU direct and {tg:.0f} µs "
                    f"through the gateway, so with the CPUs saturated the gateway can reach about "
                    f"{td / tg:.2f}× direct TPS (measured, medians: {gd / dd:.2f}×)"
                    + (
                        f"; through HAProxy, which only forwards, {th:.0f} µs, about {td / th:.2f}× direct "
                        f"(measured: {hd / dd:.2f}×)"
                        if th and hd
                        else ""
                    )
                )
        if bounds and not pinned:
            w(
                "Every CPU microsecond a proxy spends here is taken from pgbench and PostgreSQL on the same CPUs: "
                + "; ".join(bounds)
                + ". (Per-process and machine-wide CPU accounting differ by a few per cent, so the \"other processes\" "
                "column is only accurate to about that.)"
            )
            w("")
    have_threads = [(p, c) for (p, c), a in agg.items() if a.get("threads") and a.get("threads_tx")]
    if have_threads:
        w("### The proxies' threads")
        w("")
        w(
            "Per thread group of each proxy, summed over the measured rounds and divided by their transactions "
            "(`/proc/PID/task/*/stat` and `status`): user and system CPU, and how often its threads went to sleep "
            "(voluntary switches) or were preempted while they had work (involuntary switches)."
        )
        w("")
        w("| Clients | Path | Threads | user µs | system µs | voluntary switches | involuntary switches |")
        w("|---:|---|---|---:|---:|---:|---:|")
        for c in clients:
            for p in PATHS:
                a = agg[(p, c)]
                if not a.get("threads") or not a.get("threads_tx"):
                    continue
                tx = a["threads_tx"]
                for name, (u, st, vol, inv) in sorted(a["threads"].items(), key=lambda kv: -(kv[1][0] + kv[1][1])):
                    if u + st == 0 and vol + inv == 0:
                        continue
                    w(
                        f"| {c} | {LABELS[p]} | {name} | {u * 1e6 / tx:.2f} | {st * 1e6 / tx:.2f} | "
                        f"{vol / tx:.3f} | {inv / tx:.3f} |"
                    )
        w("")

    w("### Targets")
    w("")
    w(
        f"From the medians over the {rounds_text(rounds)}: gateway median TPS ÷ direct (or PgBouncer) median TPS, and "
        "the median over rounds of the gateway's median latency less the same for direct."
    )
    w("")
    w("| Clients | Measure | Value | Target | Result |")
    w("|---:|---|---:|---|---|")
    missed, spreads, floor = [], [], []
    for c in clients:
        d, b, h, g = (agg[(p, c)] for p in PATHS)
        absent = [f"{NAMES[p]} round {r} {why}" for p in PATHS for r, why in agg[(p, c)]["missing"]]
        if absent:
            w(f"| {c} | not every run gave figures: {', '.join(absent)} | — | — | **not met** |")
            missed.append(f"{c} clients: {', '.join(absent)}")
            continue
        r1 = g["tps"] / d["tps"]
        r2 = g["tps"] / b["tps"]
        added = (g["median_us"] - d["median_us"]) if (g["median_us"] is not None and d["median_us"] is not None) else None
        ok1, ok2 = r1 >= TARGET_DIRECT, r2 >= TARGET_PGBOUNCER
        ok3 = added is not None and added < TARGET_ADDED_US
        w(f"| {c} | gateway TPS ÷ direct TPS | {r1:.3f} | ≥ {TARGET_DIRECT:.2f} | {verdict(ok1)} |")
        w(f"| {c} | gateway TPS ÷ PgBouncer TPS | {r2:.3f} | ≥ {TARGET_PGBOUNCER:.2f} | {verdict(ok2)} |")
        w(f"| {c} | added median latency, gateway − direct | {fmt(added, '{:,.0f} µs')} | < {TARGET_ADDED_US:.0f} µs | {verdict(ok3)} |")
        if not ok1:
            missed.append(f"{c} clients: gateway TPS {r1:.3f}× direct < {TARGET_DIRECT:.2f}×")
        if not ok2:
            missed.append(f"{c} clients: gateway TPS {r2:.3f}× PgBouncer < {TARGET_PGBOUNCER:.2f}×")
        if not ok3:
            missed.append(f"{c} clients: gateway adds {fmt(added, '{:,.0f}')} µs to the median ≥ {TARGET_ADDED_US:.0f} µs")
        if h["tps"] and d["tps"]:
            floor.append(
                f"{c} clients: HAProxy {h['tps'] / d['tps']:.3f}× direct TPS"
                + (f", {h['median_us'] - d['median_us']:,.0f} µs added to the median latency" if h["median_us"] is not None and d["median_us"] is not None else "")
                + f"; the gateway {g['tps'] / h['tps']:.3f}× HAProxy's TPS"
            )
        per_b = [x for x in (round_ratio(c, r, "pgbouncer") for r in range(1, rounds + 1)) if x is not None]
        per_d = [x for x in (round_ratio(c, r, "direct") for r in range(1, rounds + 1)) if x is not None]
        per_h = [x for x in (round_ratio(c, r, "direct", of="haproxy") for r in range(1, rounds + 1)) if x is not None]
        if per_b:
            spreads.append(
                f"{c} clients: gateway ÷ PgBouncer {min(per_b):.3f}–{max(per_b):.3f}, "
                f"gateway ÷ direct {min(per_d):.3f}–{max(per_d):.3f}"
                + (f", HAProxy ÷ direct {min(per_h):.3f}–{max(per_h):.3f}" if per_h else "")
            )
    w("")
    if spreads:
        w(f"Range of the per-round TPS ratios (min–max over the {rounds_text(rounds)}): " + "; ".join(spreads) + ".")
        w("")
    if missed:
        w("Not met: " + "; ".join(missed) + ".")
    else:
        w("Every target met.")
    w("")
    if floor and tls:
        w(
            "HAProxy, forwarding TCP without reading it (medians over the same rounds): " + "; ".join(floor) + ". Over "
            "TLS it is no floor: it passes the client's TLS through to PostgreSQL, which still does that work, while "
            "PgBouncer and the gateway terminate it and take it off PostgreSQL's CPU."
        )
        w("")
    elif floor:
        w(
            "The floor for any proxy on this machine (HAProxy forwarding TCP without reading it, medians over the "
            "same rounds): " + "; ".join(floor) + ". A proxy that parses, authenticates and records cannot cost less "
            "than one that only forwards, so where HAProxy is below a target, no proxy "
            + ("with the same CPUs" if pinned else "on these shared CPUs")
            + " meets it."
        )
        w("")

    # The recording: evidence that the gateway recorded while it was measured.
    w("### The gateway's recording")
    w("")
    gw_tx = gateway_transactions(results)
    rec = recording(results)
    if rec is None:
        err = " ".join(lines_of(results, "session.err"))[:500]
        w(f"`breakglass session show {meta['break_id']} --output json` returned nothing{': ' + err if err else ''}.")
    else:
        missing = gw_tx - rec["selects"]
        w(
            f"`breakglass session show {meta['break_id']} --output json`, read {meta.get('session_waited_s', '?')} s after the "
            f"last run (the last of {meta.get('session_shows', '?')} read(s) took {meta.get('session_show_s', '?')} s): "
            f"{rec['sessions']:,} gateway sessions and {rec['statements']:,} recorded statements, {rec['selects']:,} of them "
            f"pgbench's `SELECT abalance FROM pgbench_accounts WHERE aid = …`, for {gw_tx:,} transactions pgbench reported "
            f"through the gateway ({'the measured round' if rounds == 1 else f'all {rounds} measured rounds'} and the warm-ups) — "
            + ("every one recorded" if missing == 0 else
               (f"{missing:,} not (yet) recorded" if missing > 0 else
                f"{-missing:,} more than pgbench counted (transactions in flight when a timed run stopped)"))
            + f". Sessions ended with a recording that matches their audit entry: {rec['intact']:,} of {rec['sessions']:,}"
            + (f"; {rec['not_intact']:,} do NOT match" if rec["not_intact"] else "")
            + (f"; **{rec['open']:,} not ended yet** (no end, no digest)" if rec["open"] else "")
            + f"; ends: {', '.join(e for e in rec['ends'] if e != 'None') or '—'}."
        )
        if rec["errors"]:
            sample = "; ".join(sorted({str(s.get("error")) for s in rec["errors"]})[:5])
            w("")
            w(f"{len(rec['errors']):,} recorded statements ended in an error: {sample}")

    serve = lines_of(results, "serve-problems.log")
    slow = [l for l in serve if "slow statement" in l and "FROM session_statements WHERE break_id" in l]
    rows = [int(m.group(1)) for m in (re.search(r"rows_returned=(\d+)", l) for l in slow) if m]
    secs = [float(m.group(1)) for m in (re.search(r"elapsed_secs=([0-9.]+)", l) for l in slow) if m]
    tags = ["warmup"] + [f"run{r}" for r in range(1, rounds + 1)]
    settles = []
    for c in clients:
        for tag in tags:
            for p in PATHS:
                f = os.path.join(results, f"{p}-c{c}-{tag}.settle_s")
                if os.path.exists(f):
                    v = int(open(f).read().strip() or 0)
                    if v > 2:
                        settles.append(f"{v} s before the {NAMES[p]} {c}-client {'warm-up' if tag == 'warmup' else 'run of ' + round_label(tag)}")
    tokens = []
    for c in clients:
        for tag in tags:
            f = os.path.join(results, f"gateway-c{c}-{tag}.token_s")
            if os.path.exists(f):
                try:
                    tokens.append((float(open(f).read().strip()), f"{c} clients, {round_label(tag)}"))
                except ValueError:
                    pass
    w("")
    text = (
        "After a gateway run the server keeps working: each session's end is a write transaction that reads back "
        "the recording, and the script waits, before every pgbench run, until `breakglass serve` is idle (≤ 3 % of a "
        "CPU over a second), so no path is measured while the server finishes the previous gateway run. "
    )
    text += ("It waited " + "; ".join(settles) + ". ") if settles else "No wait was longer than 2 s. "
    if slow:
        text += (
            f"breakglass serve logged {len(slow):,} slow-statement warnings for "
            f"`SELECT … FROM session_statements WHERE break_id = $1 ORDER BY started_at, session_id, seq` "
            f"(up to {max(rows, default=0):,} rows, {max(secs, default=0):.1f} s each at most, {sum(secs):.0f} s in all; only runs over 1 s are "
            f"logged): the query each session's end (and each `session show`) runs, which reads the statements of the "
            f"whole break, not of the one session. "
        )
    if tokens:
        lo, hi = min(tokens), max(tokens)
        text += (
            f"`breakglass break token` (a fresh token before each of the {len(tokens)} gateway runs) took "
            + (f"{lo[0]:.2f} s each." if lo[0] == hi[0] else f"{lo[0]:.2f}–{hi[0]:.2f} s (the longest: {hi[1]}).")
        )
    w(text.strip())
    w("")

    problems = []
    other = [l for l in serve if l not in slow]
    if other:
        problems.append(("breakglass serve", other))
    for name, what in (("pg-problems.log", "PostgreSQL"), ("pgbouncer-problems.log", "PgBouncer"), ("haproxy-problems.log", "HAProxy")):
        lines = lines_of(results, name)
        if lines:
            problems.append((what, lines))
    failed_runs = []
    every = [((p, c, "warmup"), s) for (p, c), s in warmups.items()] + [((p, c, f"run{r}"), s) for (p, c, r), s in runs.items()]
    for (p, c, tag), s in every:
        if s is None:
            continue
        if run_failed(s):
            failed_runs.append((p, c, tag, s))
    w("### Errors")
    w("")
    if not problems and not failed_runs:
        w(
            "No pgbench run failed or aborted, no transaction failed, and the logs of breakglass serve"
            + (" (besides the slow-statement warnings above)" if slow else "")
            + ", PostgreSQL, PgBouncer and HAProxy hold no warning or error."
        )
    for p, c, tag, s in failed_runs:
        detail = [l for l in s["text"].splitlines() if re.search(r"abort|error|FATAL|failed", l, re.I)][:5]
        w(
            f"- pgbench {NAMES[p]}, {c} clients, {round_label(tag)}: exit {s['rc']}"
            + (": `" + "` / `".join(d.strip() for d in detail) + "`" if detail else "")
        )
    for what, lines in problems:
        distinct = []
        for l in lines:
            key = re.sub(r"^\S*\d{2}:\d{2}:\d{2}\S*\s+", "", l)[:200]
            if key not in distinct:
                distinct.append(key)
        w(f"- {what} logged {len(lines):,} warning/error line(s), e.g. " + "; ".join(f"`{d}`" for d in distinct[:3]))
    w("")
    return "\n".join(out)


def replace_section(path, section, title):
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmarks\n"
    lines = text.split("\n")
    start = next((i for i, l in enumerate(lines) if l.strip() == title), None)
    other = next((i for i, l in enumerate(lines) if l.strip() == HEADING), None)
    if start is None and title != HEADING and other is not None:
        # A first pinned run: its section right after the unpinned one.
        end = next((i for i in range(other + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "\n".join(lines[:end]).rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
        if end < len(lines):
            new += "\n" + "\n".join(lines[end:]).lstrip("\n")
    elif start is None:
        new = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        before = "\n".join(lines[:start])
        after = "\n".join(lines[end:])
        new = before + ("\n" if before else "") + section.rstrip("\n") + "\n"
        if after.strip():
            new += "\n" + after.lstrip("\n")
        if not new.endswith("\n"):
            new += "\n"
    tmp = path + ".bench-gateway.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", help="results directory of bench-gateway.sh")
    ap.add_argument(
        "--recording-check",
        metavar="RESULTS",
        help="print how many sessions of RESULTS/session.json are not ended, how many pgbench statements it holds, "
        "and how many transactions pgbench reported through the gateway; then exit",
    )
    ap.add_argument("--out", help="Markdown file whose section to replace (default: print only)")
    ap.add_argument(
        "--cpu-snapshot",
        nargs="+",
        metavar="PID",
        help="print the machine's busy CPU ticks (user + nice + system), its steal ticks, and the ticks used by "
        "these processes and their waited-for children; then exit",
    )
    ap.add_argument(
        "--thread-snapshot",
        metavar="PID",
        help="print one line per thread of PID: tid, name, utime and stime ticks, voluntary and involuntary "
        "context switches; then exit",
    )
    a = ap.parse_args()
    if a.thread_snapshot:
        print("\n".join(thread_snapshot(a.thread_snapshot)))
        return 0
    if a.cpu_snapshot:
        print(*cpu_snapshot(a.cpu_snapshot))
        return 0
    if a.recording_check:
        rec = recording(a.recording_check)
        print(rec["open"] if rec else 0, rec["selects"] if rec else 0, gateway_transactions(a.recording_check))
        return 0
    if not a.results:
        ap.error("--results is required")
    section = build_section(a.results)
    print(section)
    if a.out:
        replace_section(a.out, section, heading(read_meta(a.results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
