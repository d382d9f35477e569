#!/usr/bin/env python3
"""Startup time and memory of `trellis serve` on a generated project of many entities.

    cargo build --release && python3 bench/many_entities.py [--entities 200]

Writes a project with N entities (8 fields each: text, numbers, a decimal, an enum,
a date, and a reference to an earlier entity), a policy per entity, then starts
`serve` on a fresh SQLite file and (with TRELLIS_BENCH_PG_URL) a fresh PostgreSQL
database. Times are from process start to the first 200 from /_/health: the first
start creates every table; the second finds them. RSS is read from /proc after the
server is up and has answered one list request per entity.
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "trellis")


def write_project(path, n):
    os.makedirs(os.path.join(path, "models"))
    os.makedirs(os.path.join(path, "policies"))
    for i in range(n):
        ref = f"  parent: {{ type: ref, to: e{(i - 1) // 2:03} }}\n" if i else ""
        with open(os.path.join(path, "models", f"e{i:03}.yaml"), "w") as f:
            f.write(
                f"entity: e{i:03}\n"
                "fields:\n"
                "  name: { type: string, required: true, max: 120 }\n"
                "  notes: text\n"
                "  count: integer\n"
                "  score: number\n"
                "  price: { type: decimal, precision: 12, scale: 2 }\n"
                "  status: { type: enum, values: [new, active, archived], default: new }\n"
                "  due: date\n"
                + ref
            )
        with open(os.path.join(path, "policies", f"e{i:03}.yaml"), "w") as f:
            f.write(
                f"entity: e{i:03}\n"
                "rules:\n"
                "  - roles: [admin]\n    allow: [\"*\"]\n"
                "  - roles: [member]\n    allow: [list, read]\n    where: status != archived\n"
            )
    with open(os.path.join(path, "trellis.yaml"), "w") as f:
        f.write("auth:\n  jwt: { algorithm: HS256, secret_env: BENCH_JWT_SECRET }\n")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_/health", timeout=1) as r:
            return r.status == 200
    except Exception:
        return False


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start(project, url, n):
    port = free_port()
    env = dict(os.environ, BENCH_JWT_SECRET="many-entities-secret-many-entities-0123", RUST_LOG="warn")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [BIN, "serve", project, "--port", str(port), "--no-watch", "--database-url", url],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    while not healthy(port):
        if proc.poll() is not None:
            raise SystemExit(f"serve exited: {proc.stderr.read()}")
        if time.monotonic() - t0 > 120:
            raise SystemExit("serve did not become healthy in 120 s")
        time.sleep(0.005)
    took = time.monotonic() - t0
    return proc, port, took


def run(db, url, project, n):
    results = []
    for attempt in ("first start (creates the tables)", "second start (tables exist)"):
        proc, port, took = start(project, url, n)
        up_rss = rss_mib(proc.pid)
        # The admin-free health check is open; list each entity once as nobody (401s
        # are fine: they still route, check and answer).
        for i in range(n):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/e{i:03}s", timeout=5).read()
            except Exception:
                pass
        rss = rss_mib(proc.pid)
        proc.terminate()
        proc.wait()
        results.append((db, attempt, took, up_rss, rss))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", type=int, default=200)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="trellis-many-")
    project = os.path.join(work, "project")
    write_project(project, args.entities)
    out = subprocess.run([BIN, "check", project], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the generated project does not check: {out.stdout}{out.stderr}")
    rows = run("sqlite", f"sqlite://{work}/many.db", project, args.entities)
    pg = os.environ.get("TRELLIS_BENCH_PG_URL")
    if pg:
        name = "many_" + uuid.uuid4().hex[:8]
        subprocess.run(["psql", pg, "-q", "-c", f"CREATE DATABASE {name}"], check=True)
        url = re.sub(r"/[^/?]*(\?|$)", f"/{name}\\1", pg, count=1)
        rows += run("postgres", url, project, args.entities)
    print(f"\n{args.entities} entities\n")
    print("| database | start | time to healthy | RSS when up | RSS after one request per entity |")
    print("|---|---|---|---|---|")
    for db, attempt, took, up, rss in rows:
        print(f"| {db} | {attempt} | {took * 1000:.0f} ms | {up:.0f} MiB | {rss:.0f} MiB |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
