#!/usr/bin/env python3
"""Trellis against a hand-written ceiling (bench/reference.rs), request by request.

For each database (SQLite, PostgreSQL): the bench project (bench/project) with
1,000 owners and 100,000 items; both servers run side by side and are measured
alternately with wrk (32 connections, a warm-up, then RUNS runs of SECONDS each);
the report gives medians of requests/s, p50 and p99 latency, and Trellis/reference.

    bash bench/run.sh            # builds, starts a throwaway PostgreSQL, runs this
    python3 bench/bench.py --db sqlite --runs 3 --seconds 10   # (after building)
"""

import argparse
import base64
import csv
import hashlib
import hmac
import io
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "bench-secret-bench-secret-bench-secret-0123"
REGIONS = [f"region-{i}" for i in range(10)]
LIST = "/api/items?filter=status%20%3D%20open%20and%20price%20%3E%20100&sort=-price&limit=20"

REQUESTS = [
    # name, method, path template, body template, token
    ("get by id", "GET", "/api/items/{id}", None, "admin"),
    ("filtered + sorted list", "GET", LIST, None, "admin"),
    ("list with expand", "GET", "/api/items?limit=20&expand=owner", None, "admin"),
    ("create", "POST", "/api/items", '{"title":"bench item","price":"12.50","quantity":3,"owner":"{owner}"}', "admin"),
    ("patch", "PATCH", "/api/items/{id}", '{"title":"patched"}', "admin"),
    ("transition", "POST", "/api/items/{id}/transitions/bump", "{}", "admin"),
    ("list, row-level policy", "GET", LIST, None, "member"),
]


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(sub, roles, region=None):
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": sub, "roles": roles, "exp": int(time.time()) + 6 * 3600}
    if region:
        claims["region"] = region
    payload = b64(json.dumps(claims).encode())
    sig = hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(sig)}"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_up(port, proc):
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_/health", timeout=2).read()
            return
        except Exception:
            if proc.poll() is not None:
                sys.exit(f"server exited: {proc.returncode}")
            time.sleep(0.05)
    sys.exit("server did not start")


def start(cmd, port, env):
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(port, proc)
    return proc


def stop(proc):
    proc.terminate()
    proc.wait()


def ts(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seed(db, url, work, pg_admin):
    """1,000 owners in 10 regions, 100,000 open items; returns (item ids, owner ids)."""
    rng = random.Random(20261127)
    now = datetime.now(timezone.utc)
    owners = [(str(uuid.uuid4()), f"Owner {i}", REGIONS[i % 10]) for i in range(1000)]
    items = []
    for i in range(100_000):
        price = rng.randint(0, 100_000)  # cents
        items.append((str(uuid.uuid4()), f"Item {i}", price, rng.randint(0, 50), owners[rng.randrange(1000)][0]))
    if db == "sqlite":
        import sqlite3

        con = sqlite3.connect(url.removeprefix("sqlite://"))
        t = ts(now)
        con.executemany(
            "INSERT INTO owner (id, created_at, updated_at, version, name, region) VALUES (?, ?, ?, 1, ?, ?)",
            [(o[0], t, t, o[1], o[2]) for o in owners],
        )
        con.executemany(
            "INSERT INTO item (id, created_at, updated_at, version, title, price, quantity, status, owner) VALUES (?, ?, ?, 1, ?, ?, ?, 'open', ?)",
            [(it[0], t, t, it[1], it[2], it[3], it[4]) for it in items],
        )
        con.commit()
        con.execute("ANALYZE")
        con.close()
    else:
        def copy(table, columns, rows):
            buf = io.StringIO()
            csv.writer(buf).writerows(rows)
            subprocess.run(
                ["psql", url, "-q", "-c", f"\\copy {table} ({columns}) FROM STDIN WITH (FORMAT csv)"],
                input=buf.getvalue(), text=True, check=True,
            )

        t = now.isoformat()
        copy("owner", "id, created_at, updated_at, version, name, region", [(o[0], t, t, 1, o[1], o[2]) for o in owners])
        copy(
            "item",
            "id, created_at, updated_at, version, title, price, quantity, status, owner",
            [(it[0], t, t, 1, it[1], f"{it[2] // 100}.{it[2] % 100:02d}", it[3], "open", it[4]) for it in items],
        )
        subprocess.run(["psql", url, "-q", "-c", "ANALYZE"], check=True)
    sample = rng.sample([it[0] for it in items], 10_000)
    return sample, [o[0] for o in owners]


def lua(work, name, method, path, body, tok):
    """A wrk script: random ids and owners from files, one request shape."""
    ids = os.path.join(work, "ids.txt")
    owners = os.path.join(work, "owners.txt")
    script = f"""
local ids, owners = {{}}, {{}}
for l in io.lines("{ids}") do ids[#ids + 1] = l end
for l in io.lines("{owners}") do owners[#owners + 1] = l end
local counter = 0
function setup(thread) counter = counter + 1; thread:set("seed", counter) end
function init(args) math.randomseed(os.time() * 1000 + (seed or 0)) end
wrk.method = "{method}"
wrk.headers["Authorization"] = "Bearer {tok}"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local path = string.gsub("{path}", "{{id}}", ids[math.random(#ids)])
  local body = nil
  {"body = string.gsub('" + body + "', '{owner}', owners[math.random(#owners)])" if body else ""}
  return wrk.format(nil, path, nil, body)
end
"""
    f = os.path.join(work, f"{name}.lua")
    with open(f, "w") as fh:
        fh.write(script)
    return f


def to_ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n


def wrk(port, script, seconds, connections):
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"\n\s+50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"\n\s+99%\s+(\S+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    return rps, p50, p99, errors


def rss_peak_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_db(db, args, pg_admin):
    work = tempfile.mkdtemp(prefix=f"trellis-bench-{db}-")
    shutil.copytree(os.path.join(ROOT, "bench", "project"), os.path.join(work, "project"))
    if db == "sqlite":
        url = f"sqlite://{work}/bench.db"
    else:
        name = "bench_" + uuid.uuid4().hex[:8]
        subprocess.run(["psql", pg_admin, "-q", "-c", f"CREATE DATABASE {name}"], check=True)
        url = re.sub(r"/[^/?]*(\?|$)", f"/{name}\\1", pg_admin, count=1) if "/" in pg_admin.split("@")[-1] else pg_admin + "/" + name
    env = dict(os.environ, BENCH_JWT_SECRET=SECRET, RUST_LOG="warn")
    trellis = os.path.join(ROOT, "target", "release", "trellis")
    reference = os.path.join(ROOT, "target", "release", "trellis-reference")
    tport, rport = free_port(), free_port()
    tcmd = [trellis, "serve", os.path.join(work, "project"), "--port", str(tport), "--no-watch", "--database-url", url]
    # Trellis creates the tables; then the data goes in directly.
    proc = start(tcmd, tport, env)
    stop(proc)
    ids, owners = seed(db, url, work, pg_admin)
    with open(os.path.join(work, "ids.txt"), "w") as f:
        f.write("\n".join(ids) + "\n")
    with open(os.path.join(work, "owners.txt"), "w") as f:
        f.write("\n".join(owners) + "\n")
    tokens = {"admin": token("bench-admin", ["admin"]), "member": token("bench-member", ["member"], REGIONS[3])}
    tproc = start(tcmd, tport, env)
    rproc = start([reference, "--db", url, "--port", str(rport)], rport, env)
    # For profiling: `perf record -p <pid>` while the requests run.
    print(f"# {db}: trellis pid {tproc.pid}, reference pid {rproc.pid}", flush=True)
    results = []
    for name, method, path, body, who in REQUESTS:
        if args.only and not any(o in name for o in args.only.split(",")):
            continue
        script = lua(work, re.sub(r"\W+", "_", name), method, path, body, tokens[who])
        runs = {"trellis": [], "reference": []}
        for port in (tport, rport):
            wrk(port, script, args.warmup, args.connections)
        for _ in range(args.runs):
            for server, port in (("trellis", tport), ("reference", rport)):
                runs[server].append(wrk(port, script, args.seconds, args.connections))
        med = {
            s: (
                statistics.median(r[0] for r in runs[s]),
                statistics.median(r[1] for r in runs[s]),
                statistics.median(r[2] for r in runs[s]),
                sum(r[3] for r in runs[s]),
            )
            for s in runs
        }
        results.append((name, med))
        t, r = med["trellis"], med["reference"]
        print(
            f"{db:8} {name:24} trellis {t[0]:9.0f}/s p50 {t[1]:6.2f} p99 {t[2]:7.2f} ms | "
            f"reference {r[0]:9.0f}/s p50 {r[1]:6.2f} p99 {r[2]:7.2f} ms | ratio {t[0] / r[0]:.2f}"
            + (f" | non-2xx: trellis {t[3]}, reference {r[3]}" if t[3] or r[3] else ""),
            flush=True,
        )
    peak = rss_peak_mib(tproc.pid)
    stop(tproc)
    stop(rproc)
    shutil.rmtree(work, ignore_errors=True)
    return results, peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--only", default="", help="comma-separated parts of request names, e.g. create,patch")
    args = ap.parse_args()
    pg_admin = os.environ.get("TRELLIS_BENCH_PG_URL") or os.environ.get("TRELLIS_TEST_PG_URL", "")
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    report = []
    for db in dbs:
        if db == "postgres" and not pg_admin:
            sys.exit("PostgreSQL: set TRELLIS_BENCH_PG_URL (bench/run.sh starts a throwaway server)")
        results, peak = run_db(db, args, pg_admin)
        report.append((db, results, peak))
    print()
    print(f"wrk -t2 -c{args.connections}, {args.warmup} s warm-up, median of {args.runs} runs of {args.seconds} s, servers alternating")
    print()
    print("| database | request | Trellis req/s | reference req/s | ratio | Trellis p50 / p99 ms | reference p50 / p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for db, results, peak in report:
        for name, med in results:
            t, r = med["trellis"], med["reference"]
            print(f"| {db} | {name} | {t[0]:,.0f} | {r[0]:,.0f} | {t[0] / r[0]:.2f} | {t[1]:.2f} / {t[2]:.2f} | {r[1]:.2f} / {r[2]:.2f} |")
    for db, _, peak in report:
        print(f"\nPeak RSS of Trellis under load ({db}): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
