#!/usr/bin/env python3
"""Instructions per request, counted by valgrind's callgrind: a measure of a build's
cost that does not move with the machine's load (the same binary, rows and requests
give the same count, whatever else runs), for before/after comparisons on a shared
machine, where wrk's requests per second do.

Each server (one or more Trellis builds, and the hand-written reference) runs under
callgrind on the bench project's rows (bench/bench.py's seed: 1,000 owners, 100,000
items); for each request shape of bench/bench.py: a warm-up, counters zeroed, N
requests one after the other on one keep-alive connection, counters dumped. The
report gives instructions per request (all threads: handler, runtime, SQLite when it
is in the process) and each Trellis build over the reference.

    python3 bench/instructions.py --db sqlite --requests 300 \\
        --server now=target/release/trellis --server before=../wt-base/target/release/trellis

Only the server process is counted: on PostgreSQL the database's own work is not
(use --db sqlite to count a request's whole cost).
"""

import argparse
import glob
import http.client
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def request_body(body, owners, rng):
    return body.replace("{owner}", rng.choice(owners)).encode() if body else None


def drive(port, method, path, body, tok, ids, owners, n, rng):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    bad = 0
    for _ in range(n):
        p = path.replace("{id}", rng.choice(ids))
        conn.request(
            method,
            p,
            body=request_body(body, owners, rng),
            headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"},
        )
        res = conn.getresponse()
        res.read()
        if res.status >= 300:
            bad += 1
    conn.close()
    return bad


def totals(out_dir, pid, before):
    """The `totals:` of the dump callgrind_control -d has just written."""
    for _ in range(600):
        files = set(glob.glob(os.path.join(out_dir, f"callgrind.out.{pid}.*"))) - before
        for f in files:
            with open(f) as fh:
                for line in fh:
                    if line.startswith("totals:") or line.startswith("summary:"):
                        return int(line.split()[1]), files
        time.sleep(0.1)
    sys.exit("callgrind wrote no dump")


def measure(cmd, port, env, shapes, args, ids, owners, tokens, out_dir):
    vg = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out_dir}/callgrind.out.%p",
        "--dump-instr=no",
        "--compress-strings=no",
    ]
    proc = subprocess.Popen(vg + cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(1200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/_/health")
            c.getresponse().read()
            break
        except Exception:
            if proc.poll() is not None:
                sys.exit(f"server exited under valgrind: {proc.returncode}")
            time.sleep(0.5)
    got = {}
    seen = set()
    for name, method, path, body, who in shapes:
        rng = random.Random(name)
        drive(port, method, path, body, tokens[who], ids, owners, args.warmup, rng)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        bad = drive(port, method, path, body, tokens[who], ids, owners, args.requests, rng)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        total, files = totals(out_dir, proc.pid, seen)
        seen |= files
        got[name] = (total / args.requests, bad)
        print(f"  {name:24} {total / args.requests:12,.0f} instructions/request" + (f" ({bad} non-2xx)" if bad else ""), flush=True)
    proc.terminate()
    proc.wait()
    return got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--only", default="", help="comma-separated parts of request names")
    ap.add_argument("--server", action="append", default=[], help="NAME=PATH of a trellis build (repeatable)")
    ap.add_argument("--dumps", default="", help="keep callgrind's dumps in this folder (for callgrind_annotate)")
    ap.add_argument("--reference", default=os.path.join(bench.ROOT, "target", "release", "trellis-reference"))
    args = ap.parse_args()
    servers = [s.split("=", 1) for s in args.server] or [["trellis", os.path.join(bench.ROOT, "target", "release", "trellis")]]
    shapes = [r for r in bench.REQUESTS if not args.only or any(o in r[0] for o in args.only.split(","))]
    pg_admin = os.environ.get("TRELLIS_BENCH_PG_URL") or os.environ.get("TRELLIS_TEST_PG_URL", "")
    if args.db == "postgres" and not pg_admin:
        sys.exit("PostgreSQL: set TRELLIS_BENCH_PG_URL")
    env = dict(os.environ, BENCH_JWT_SECRET=bench.SECRET, RUST_LOG="warn")
    tokens = {"admin": bench.token("bench-admin", ["admin"]), "member": bench.token("bench-member", ["member"], bench.REGIONS[3])}
    report = {}
    for name, binary in servers + [["reference", args.reference]]:
        # Fresh rows for every server: writes of one do not change what the next reads.
        work = tempfile.mkdtemp(prefix="trellis-instr-")
        shutil.copytree(os.path.join(bench.ROOT, "bench", "project"), os.path.join(work, "project"))
        if args.db == "sqlite":
            url = f"sqlite://{work}/bench.db"
        else:
            db = "instr_" + uuid.uuid4().hex[:8]
            subprocess.run(["psql", pg_admin, "-q", "-c", f"CREATE DATABASE {db}"], check=True)
            url = re.sub(r"/[^/?]*(\?|$)", f"/{db}\\1", pg_admin, count=1)
        setup = servers[0][1]
        port = bench.free_port()
        tcmd = lambda b: [b, "serve", os.path.join(work, "project"), "--port", str(port), "--no-watch", "--database-url", url]
        bench.stop(bench.start(tcmd(setup), port, env))
        ids, owners = bench.seed(args.db, url, work, pg_admin)
        cmd = [binary, "--db", url, "--port", str(port)] if name == "reference" else tcmd(binary)
        print(f"# {name}: {binary}", flush=True)
        report[name] = measure(cmd, port, env, shapes, args, ids, owners, tokens, work)
        if args.dumps:
            os.makedirs(args.dumps, exist_ok=True)
            for f in glob.glob(os.path.join(work, "callgrind.out.*")):
                shutil.copy(f, os.path.join(args.dumps, f"{name}-{os.path.basename(f)}"))
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"callgrind, {args.db}, {args.requests} requests after {args.warmup} of warm-up, instructions per request")
    print()
    names = [s[0] for s in servers]
    print("| request | " + " | ".join(names) + " | reference | " + " | ".join(f"{n} / reference" for n in names) + " |")
    print("|---|" + "---|" * (2 * len(names) + 1))
    for shape in shapes:
        r = report["reference"][shape[0]][0]
        cells = [f"{report[n][shape[0]][0]:,.0f}" for n in names] + [f"{r:,.0f}"] + [f"{report[n][shape[0]][0] / r:.2f}" for n in names]
        print(f"| {shape[0]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
