#!/usr/bin/env python3
"""Bounded cost per request (issue 15): ranked full-text search over 100,000 rows, and
cheap requests while 8 expensive ones run at once.

For each database: the project in bench/cost_project (100,000 documents of about 25
words from a Zipf-distributed vocabulary of 5,000 words, 1,000 authors; the `notes`
search field is hidden from the role `reader`).

1. Ranked `q` (relevance order, `limit=20`): one client, one request at a time, with
   words drawn uniformly from the vocabulary (most match tens to hundreds of rows; the
   commonest hundreds of thousands of word occurrences), for an admin (every search
   field) and a reader (`notes` hidden: the match is narrowed to the other fields).
   Reports p50 / p90 / p99 / max; and the same for the 10 commonest words, and
   `lorem`, which every document contains.
2. Storms: `wrk -t1 -c4` on `GET /api/docs/{id}` for SECONDS alone, then while 8
   threads send expensive requests back to back: (a) `q=lorem` (ranks all 100,000
   rows), (b) the heaviest filter within the cost budget (8 `or` branches of
   `owner.docs.title ~ …`, each document against its author's 100 documents).
   Reports the cheap requests' p50 / p99 / errors and what the expensive ones got.

    cargo build --release --bin trellis
    python3 bench/cost.py --db sqlite|postgres|both [--seconds 10] [--parts q,qstorm]
        [--trellis path/to/an/older/trellis]
    (PostgreSQL: TRELLIS_BENCH_PG_URL or TRELLIS_TEST_PG_URL)
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402  (token, free_port, start, stop, wrk, ts)

ROOT = b.ROOT
VOCABULARY = 5000
DOCS = 100_000
AUTHORS = 1000


def words():
    """5,000 distinct pseudo-words, commonest first."""
    out = []
    for n in range(VOCABULARY):
        w, k = "", n + 26 * 26
        while k:
            w += "bcdfghjklmnprstvz"[k % 17] + "aeiou"[k // 17 % 5]
            k //= 85
        out.append(w)
    assert len(set(out)) == VOCABULARY
    return out


def seed(db, url, pg_admin):
    rng = random.Random(20261207)
    vocab = words()
    weights = [1 / (r + 1) for r in range(VOCABULARY)]
    now = b.ts(__import__("datetime").datetime.now(__import__("datetime").timezone.utc))
    authors = [(str(uuid.uuid4()), f"Author {i}") for i in range(AUTHORS)]
    docs = []
    for i in range(DOCS):
        pick = rng.choices(vocab, weights, k=29)
        docs.append((
            str(uuid.uuid4()),
            " ".join(pick[:4]),
            "lorem " + " ".join(pick[4:24]),
            " ".join(pick[24:]),
            authors[i % AUTHORS][0],
        ))
    if db == "sqlite":
        import sqlite3

        con = sqlite3.connect(url.removeprefix("sqlite://"))
        con.executemany(
            "INSERT INTO author (id, created_at, updated_at, version, name) VALUES (?, ?, ?, 1, ?)",
            [(a[0], now, now, a[1]) for a in authors],
        )
        con.executemany(
            "INSERT INTO doc (id, created_at, updated_at, version, title, body, notes, owner) VALUES (?, ?, ?, 1, ?, ?, ?, ?)",
            [(d[0], now, now, d[1], d[2], d[3], d[4]) for d in docs],
        )
        con.commit()
        con.execute("ANALYZE")
        con.close()
    else:
        import csv
        import io

        def copy(table, columns, rows):
            buf = io.StringIO()
            csv.writer(buf).writerows(rows)
            subprocess.run(
                ["psql", url, "-q", "-c", f"\\copy {table} ({columns}) FROM STDIN WITH (FORMAT csv)"],
                input=buf.getvalue(), text=True, check=True,
            )

        copy("author", "id, created_at, updated_at, version, name", [(a[0], now, now, 1, a[1]) for a in authors])
        copy("doc", "id, created_at, updated_at, version, title, body, notes, owner",
             [(d[0], now, now, 1, d[1], d[2], d[3], d[4]) for d in docs])
        subprocess.run(["psql", url, "-q", "-c", "ANALYZE"], check=True)
    return vocab, [d[0] for d in rng.sample(docs, 10_000)]


class Client:
    def __init__(self, port, tok):
        self.port, self.tok = port, tok
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path):
        t = time.perf_counter()
        try:
            self.conn.request("GET", path, headers={"Authorization": f"Bearer {self.tok}"})
            res = self.conn.getresponse()
            body = res.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            return 599, b"", (time.perf_counter() - t) * 1000
        return res.status, body, (time.perf_counter() - t) * 1000


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def ranked(client, queries):
    times, bad = [], 0
    for q in queries:
        status, _, ms = client.get(f"/api/docs?q={urllib.parse.quote(q)}&limit=20")
        bad += status != 200
        times.append(ms)
    return times, bad


def storm(port, tok, path, ids_file, seconds, work):
    """wrk on GET by id while 8 threads send `path` back to back (alone if path is None)."""
    script = os.path.join(work, "get.lua")
    with open(script, "w") as f:
        f.write(f"""
local ids = {{}}
for l in io.lines("{ids_file}") do ids[#ids + 1] = l end
wrk.headers["Authorization"] = "Bearer {tok}"
request = function() return wrk.format("GET", "/api/docs/" .. ids[math.random(#ids)]) end
""")
    stop = threading.Event()
    seen = []

    def heavy():
        c = Client(port, tok)
        while not stop.is_set():
            status, _, ms = c.get(path)
            seen.append((status, ms))

    threads = [threading.Thread(target=heavy) for _ in range(8)] if path else []
    for t in threads:
        t.start()
    if threads:
        time.sleep(1)  # the storm is on
    out = subprocess.run(
        ["wrk", "-t1", "-c4", f"-d{seconds}s", "--latency", "-s", script, f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    ).stdout
    stop.set()
    for t in threads:
        t.join()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = b.to_ms(re.search(r"\n\s+50%\s+(\S+)", out).group(1))
    p99 = b.to_ms(re.search(r"\n\s+99%\s+(\S+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: .*timeout (\d+)", out)
    return {
        "rps": rps, "p50": p50, "p99": p99,
        "non2xx": int(bad.group(1)) if bad else 0,
        "timeouts": int(errs.group(1)) if errs else 0,
        "heavy": len(seen),
        "heavy_status": sorted({s for s, _ in seen}),
        "heavy_p50": statistics.median(ms for _, ms in seen) if seen else 0,
    }


def run_db(db, args, pg_admin):
    work = tempfile.mkdtemp(prefix=f"trellis-cost-{db}-")
    project = os.path.join(work, "project")
    shutil.copytree(os.path.join(ROOT, "bench", "cost_project"), project)
    if db == "sqlite":
        url = f"sqlite://{work}/cost.db"
    else:
        name = "cost_" + uuid.uuid4().hex[:8]
        subprocess.run(["psql", pg_admin, "-q", "-c", f"CREATE DATABASE {name}"], check=True)
        url = re.sub(r"/[^/?]*(\?|$)", f"/{name}\\1", pg_admin, count=1)
    env = dict(os.environ, BENCH_JWT_SECRET=b.SECRET, RUST_LOG="warn")
    port = b.free_port()
    cmd = [args.trellis, "serve", project, "--port", str(port),
           "--no-watch", "--database-url", url]
    b.stop(b.start(cmd, port, env))
    t = time.time()
    vocab, ids = seed(db, url, pg_admin)
    print(f"# {db}: seeded {DOCS:,} documents in {time.time() - t:.0f} s", flush=True)
    ids_file = os.path.join(work, "ids.txt")
    with open(ids_file, "w") as f:
        f.write("\n".join(ids) + "\n")
    proc = b.start(cmd, port, env)
    admin = b.token("bench-admin", ["admin"])
    reader = b.token("bench-reader", ["reader"])
    rng = random.Random(7)
    report = {}
    sample = [rng.choice(vocab) for _ in range(args.queries)]
    common = vocab[:10]
    parts = args.parts.split(",")
    for who, tok in (("admin", admin), ("reader", reader)) if "q" in parts else ():
        c = Client(port, tok)
        ranked(c, sample[:20])  # warm-up
        for label, qs in (("uniform words", sample), ("10 commonest words", common * 3), ("lorem (every row)", ["lorem"] * 5)):
            times, bad = ranked(c, qs)
            report[(who, label)] = (statistics.median(times), pct(times, 90), pct(times, 99), max(times), bad)
            r = report[(who, label)]
            print(f"{db:8} q {who:6} {label:20} p50 {r[0]:8.2f}  p90 {r[1]:8.2f}  p99 {r[2]:8.2f}  max {r[3]:8.2f} ms  non-200 {r[4]}", flush=True)
    heavy_filter = " or ".join(f"owner.docs.title ~ 'nothing like {n}'" for n in range(8))
    storms = [
        ("alone", None),
        ("8 x q=lorem", "/api/docs?q=lorem&limit=20"),
        ("8 x heaviest filter", "/api/docs?limit=20&filter=" + urllib.parse.quote(heavy_filter)),
    ]
    for (label, path), part in zip(storms, ("alone", "qstorm", "filterstorm")):
        if part not in parts:
            continue
        s = storm(port, admin, path, ids_file, args.seconds, work)
        report[("storm", label)] = s
        print(f"{db:8} get by id, {label:20} {s['rps']:8.0f}/s p50 {s['p50']:7.2f} p99 {s['p99']:8.2f} ms "
              f"non-2xx {s['non2xx']} timeouts {s['timeouts']} | expensive: {s['heavy']} answered, "
              f"statuses {s['heavy_status']}, p50 {s['heavy_p50']:.0f} ms", flush=True)
    b.stop(proc)
    shutil.rmtree(work, ignore_errors=True)
    if db == "postgres":
        subprocess.run(["psql", pg_admin, "-q", "-c", f"DROP DATABASE {name}"], check=False)
    return report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--parts", default="q,alone,qstorm,filterstorm",
                    help="comma-separated: q (ranked search), alone, qstorm, filterstorm")
    ap.add_argument("--trellis", default=os.path.join(ROOT, "target", "release", "trellis"),
                    help="the server binary (e.g. one built from an earlier commit)")
    args = ap.parse_args()
    pg_admin = os.environ.get("TRELLIS_BENCH_PG_URL") or os.environ.get("TRELLIS_TEST_PG_URL", "")
    for db in ["sqlite", "postgres"] if args.db == "both" else [args.db]:
        if db == "postgres" and not pg_admin:
            sys.exit("PostgreSQL: set TRELLIS_BENCH_PG_URL or TRELLIS_TEST_PG_URL")
        run_db(db, args, pg_admin)


if __name__ == "__main__":
    main()
