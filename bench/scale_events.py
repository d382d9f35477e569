#!/usr/bin/env python3
"""Live events at scale: N subscribers to `GET /api/items/events` while a writer makes
100 writes a second through the API; delivery latency, losses, CPU and memory.

    python3 bench/scale_events.py --db both --subscribers 10,100,1000

Builds nothing unless given --build (`cargo build --release --features bench --bin
trellis --bin trellis-sse-client`). PostgreSQL: TRELLIS_BENCH_PG_URL (or TRELLIS_TEST_PG_URL), an admin URL
under which a throwaway database is created.

The subscribers (bench/sse_client.rs, one Rust thread, so that the client is not the
bottleneck) are a mix of ten kinds, each a different user (its own token):
  - admin, unfiltered (sees every write);
  - admin with `filter=price > 500` (about half);
  - member of one of 10 regions (the row policy `owner.region = user.region`: a tenth);
  - member of one region with `filter=quantity < 25` (a twentieth).
The writer creates items (half the writes), renames them (four in ten) and deletes
them (one in ten), paced at --rate writes a second from 4 threads. Every subscriber
that may see a write must get exactly one event about it: the expected events are
computed from the rules above, and `lost` counts the missing ones.

Latency of an event = the time it is received (the client's clock) minus `at`, the
commit time the server wrote in the change log (the same machine's clock; ms).
CPU: utime + stime of the process from /proc/PID/stat over the writing window,
in % of one core (200 % = both cores). RSS per subscriber: the growth of the
server's VmRSS from before the streams open to when they are all open, over N.
`--perf` records a profile of the server (`perf record -F 2000 -g`) for 6 s during
the largest run of each database.
"""

import argparse
import collections
import http.client
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import REGIONS, SECRET, free_port, start, stop, token  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRELLIS = os.path.join(ROOT, "target", "release", "trellis")
CLIENT = os.path.join(ROOT, "target", "release", "trellis-sse-client")
TICK = os.sysconf("SC_CLK_TCK")
KINDS = 10


def subscriber(i):
    """(token, filter, visible(item) -> bool) of subscriber i."""
    kind = i % KINDS
    sub = f"sub-{i}"
    region = REGIONS[(i // KINDS) % len(REGIONS)]
    if kind in (0, 1):
        return token(sub, ["admin"]), "", lambda it: True
    if kind in (2, 3):
        return token(sub, ["admin"]), "price > 500", lambda it: it["price"] > 500
    if kind in (4, 5, 6, 7):
        return token(sub, ["member"], region), "", lambda it, r=region: it["region"] == r
    return (
        token(sub, ["member"], region),
        "quantity < 25",
        lambda it, r=region: it["region"] == r and it["quantity"] < 25,
    )


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Api:
    def __init__(self, port, tok):
        self.port, self.tok = port, tok
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method, path, body=None):
        headers = {"authorization": f"Bearer {self.tok}", "content-type": "application/json"}
        for attempt in range(3):
            try:
                self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                return r.status, (json.loads(data) if data else None)
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt == 2:
                    raise
        raise RuntimeError("unreachable")


def seed(port, admin):
    """10 owners in each region; returns [(owner id, region)]."""
    api = Api(port, admin)
    owners = []
    for i in range(10 * len(REGIONS)):
        region = REGIONS[i % len(REGIONS)]
        st, body = api.call("POST", "/api/owners", {"name": f"Owner {i}", "region": region})
        assert st == 201, (st, body)
        owners.append((body["id"], region))
    return owners


def write(port, admin, owners, rate, seconds, rng):
    """Paced writes from 4 threads; returns the writes [(kind, item)] in commit order
    is not needed: each write is one event per subscriber that may see it."""
    n = int(rate * seconds)
    plan = []
    for k in range(n):
        r = rng.random()
        plan.append("create" if r < 0.5 else "rename" if r < 0.9 else "delete")
    lock = threading.Lock()
    alive = []  # items that exist: dicts with id, price, quantity, region
    done = []  # (kind, item, response ms)
    errors = []
    t0 = time.monotonic() + 0.2
    counter = iter(range(n))

    def worker():
        api = Api(port, admin)
        wrng = random.Random(rng.random())
        while True:
            with lock:
                k = next(counter, None)
                if k is None:
                    return
                kind = plan[k]
                target = None
                if kind != "create":
                    if len(alive) < 20:
                        kind = "create"
                    else:
                        target = alive[wrng.randrange(len(alive))]
                        if kind == "delete" and time.monotonic() - target["born"] < 2:
                            # A record deleted before its creation is delivered
                            # arrives as `deleted` alone (docs/events.md: events carry
                            # the record as it is when sent): delete older ones only.
                            kind, target = "create", None
                        elif kind == "delete":
                            alive.remove(target)
                        elif target.get("busy"):
                            kind = "create"
                            target = None
                        else:
                            target["busy"] = True
            delay = t0 + k / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            start_t = time.monotonic()
            if kind == "create":
                owner, region = owners[wrng.randrange(len(owners))]
                price = wrng.randint(0, 100_000)
                item = {"price": price / 100, "quantity": wrng.randint(0, 50), "region": region}
                body = {
                    "title": f"Item {k}",
                    "price": f"{price // 100}.{price % 100:02d}",
                    "quantity": item["quantity"],
                    "owner": owner,
                }
                st, resp = api.call("POST", "/api/items", body)
                if st != 201:
                    errors.append((kind, st, resp))
                    continue
                item["id"] = resp["id"]
                item["born"] = time.monotonic()
                with lock:
                    alive.append(item)
            elif kind == "rename":
                st, resp = api.call("PATCH", f"/api/items/{target['id']}", {"title": f"Renamed {k}"})
                with lock:
                    target["busy"] = False
                if st != 200:
                    errors.append((kind, st, resp))
                    continue
                item = target
            else:
                st, resp = api.call("DELETE", f"/api/items/{target['id']}")
                if st not in (200, 204):
                    errors.append((kind, st, resp))
                    continue
                item = target
            with lock:
                done.append((kind, dict(item), (time.monotonic() - start_t) * 1000))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    return done, errors, elapsed


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def run_n(port, pid, admin, owners, n, args, work, rng, perf_to=None):
    subs = [subscriber(i) for i in range(n)]
    spec = os.path.join(work, f"spec-{n}.tsv")
    out = os.path.join(work, f"events-{n}.tsv")
    with open(spec, "w") as f:
        for tok, flt, _ in subs:
            f.write(f"{tok}\t{flt}\n")
    rss0 = rss_mib(pid)
    client = subprocess.Popen(
        [CLIENT, "--port", str(port), "--path", "/api/items/events", "--spec", spec, "--out", out],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    line = client.stdout.readline().strip()
    if not line.startswith("ready"):
        client.kill()
        sys.exit(f"subscribers did not open: {line}")
    time.sleep(1.0)
    rss1 = rss_mib(pid)
    s0, c0 = cpu_ticks(pid), cpu_ticks(client.pid)
    perf = None
    if perf_to:
        perf = subprocess.Popen(
            ["perf", "record", "-F", "2000", "-g", "-p", str(pid), "-o", perf_to, "--", "sleep", "6"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    done, errors, elapsed = write(port, admin, owners, args.rate, args.seconds, rng)
    s1, c1 = cpu_ticks(pid), cpu_ticks(client.pid)
    rss2 = rss_mib(pid)
    time.sleep(args.drain)
    if perf:
        perf.wait()
    client.stdin.close()
    client.wait()
    events = collections.defaultdict(list)
    closed = set()
    with open(out) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "#closed":
                closed.add(int(parts[1]))
                continue
            i, seq, name, rid, at_ms, recv_us = parts
            events[int(i)].append((name, rid, int(at_ms), int(recv_us)))
    lat = []
    expected = delivered = lost = extra = 0
    other = collections.Counter()
    for i, (_, _, visible) in enumerate(subs):
        want = collections.Counter(item["id"] for kind, item, _ in done if visible(item))
        got = collections.Counter()
        for name, rid, at_ms, recv_us in events[i]:
            if name in ("created", "updated", "deleted", "removed", "transitioned"):
                got[rid] += 1
                lat.append(recv_us / 1000 - at_ms)
            else:
                other[name] += 1
        expected += sum(want.values())
        delivered += sum(got.values())
        lost += sum((want - got).values())
        extra += sum((got - want).values())
    wall = elapsed
    res = {
        "subscribers": n,
        "writes": len(done),
        "write_errors": len(errors),
        "writes_per_s": len(done) / wall,
        "write_ms_p50": pct([d[2] for d in done], 50),
        "write_ms_p99": pct([d[2] for d in done], 99),
        "expected": expected,
        "delivered": delivered,
        "lost": lost,
        "extra": extra,
        "other_events": dict(other),
        "closed_early": len(closed),
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "max_ms": max(lat) if lat else float("nan"),
        "server_cpu_pct": (s1 - s0) / TICK / wall * 100,
        "client_cpu_pct": (c1 - c0) / TICK / wall * 100,
        "rss_before_mib": rss0,
        "rss_open_mib": rss1,
        "rss_writing_mib": rss2,
        "rss_per_sub_kib": (rss1 - rss0) * 1024 / n,
    }
    if errors:
        print(f"  write errors (first 3): {errors[:3]}", flush=True)
    return res


def run_db(db, args, pg_admin):
    work = tempfile.mkdtemp(prefix=f"trellis-scale-events-{db}-")
    shutil.copytree(os.path.join(ROOT, "bench", "project"), os.path.join(work, "project"))
    if db == "sqlite":
        url = f"sqlite://{work}/bench.db"
    else:
        name = "bench_events_" + uuid.uuid4().hex[:8]
        subprocess.run(["psql", pg_admin, "-q", "-c", f"CREATE DATABASE {name}"], check=True)
        url = re.sub(r"/[^/?]*(\?|$)", f"/{name}\\1", pg_admin, count=1)
    env = dict(os.environ, BENCH_JWT_SECRET=SECRET, RUST_LOG="warn")
    port = free_port()
    cmd = [args.server, "serve", os.path.join(work, "project"), "--port", str(port), "--no-watch", "--database-url", url]
    proc = start(cmd, port, env)
    admin = token("bench-writer", ["admin"])
    owners = seed(port, admin)
    rng = random.Random(20261207)
    print(f"# {db}: trellis pid {proc.pid}; load {os.getloadavg()[0]:.2f}", flush=True)
    results = []
    largest = max(args.subscribers)
    for n in args.subscribers:
        perf_to = os.path.join(ROOT, "target", f"perf-events-{db}-{n}.data") if args.perf and n == largest else None
        r = run_n(port, proc.pid, admin, owners, n, args, work, rng, perf_to)
        r["load"] = os.getloadavg()[0]
        results.append(r)
        print(
            f"{db:8} {n:5} subs: p50 {r['p50_ms']:7.1f} ms p99 {r['p99_ms']:7.1f} ms max {r['max_ms']:7.1f} | "
            f"delivered {r['delivered']}/{r['expected']} lost {r['lost']} extra {r['extra']} closed {r['closed_early']} "
            f"{r['other_events'] or ''}| writes {r['writes_per_s']:.0f}/s (p99 {r['write_ms_p99']:.1f} ms) | "
            f"server CPU {r['server_cpu_pct']:.0f} % client {r['client_cpu_pct']:.0f} % | "
            f"RSS {r['rss_before_mib']:.0f}->{r['rss_open_mib']:.0f} MiB ({r['rss_per_sub_kib']:.0f} KiB/sub) | load {r['load']:.2f}",
            flush=True,
        )
        if perf_to:
            print(f"  profile: perf report -i {perf_to} --no-children --sort symbol", flush=True)
    stop(proc)
    shutil.rmtree(work, ignore_errors=True)
    if db == "postgres":
        subprocess.run(["psql", pg_admin, "-q", "-c", f"DROP DATABASE IF EXISTS {name}"], check=False)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--subscribers", default="10,100,1000")
    ap.add_argument("--rate", type=float, default=100.0, help="writes a second")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long the writer writes")
    ap.add_argument("--drain", type=float, default=3.0, help="seconds to wait for the last events")
    ap.add_argument("--perf", action="store_true", help="profile the server during the largest run")
    ap.add_argument("--plot", default=os.path.join(ROOT, "docs", "bench", "scale-events.svg"))
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--server", default=TRELLIS, help="the trellis binary (e.g. an older build, to compare)")
    ap.add_argument("--build", action="store_true", help="cargo build --release the server and the client first")
    ap.add_argument("--replot", default="", help="only draw the plot from a --json file of an earlier run")
    args = ap.parse_args()
    if args.replot:
        with open(args.replot) as f:
            plot(json.load(f), args)
        return
    args.subscribers = [int(x) for x in args.subscribers.split(",")]
    if args.build:
        # One feature set for both, so that the library is built once.
        cmd = ["cargo", "build", "--release", "--features", "bench", "--bin", "trellis", "--bin", "trellis-sse-client"]
        subprocess.run(cmd, cwd=ROOT, check=True)
    for exe in (args.server, CLIENT):
        if not os.path.exists(exe):
            sys.exit(f"{exe} is missing: build it (or pass --build)")
    # Every stream is a descriptor in the server and in the client.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(args.subscribers) * 2 + 512
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    pg_admin = os.environ.get("TRELLIS_BENCH_PG_URL") or os.environ.get("TRELLIS_TEST_PG_URL", "")
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    report = {}
    for db in dbs:
        if db == "postgres" and not pg_admin:
            sys.exit("PostgreSQL: set TRELLIS_BENCH_PG_URL (an admin URL; a database is created under it)")
        report[db] = run_db(db, args, pg_admin)
    print()
    print(f"{args.rate:.0f} writes/s for {args.seconds:.0f} s; load average at the end {os.getloadavg()[0]:.2f}")
    print()
    print("| database | subscribers | delivered / expected | lost | p50 ms | p99 ms | max ms | server CPU | client CPU | RSS per subscriber |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for db, results in report.items():
        for r in results:
            print(
                f"| {db} | {r['subscribers']:,} | {r['delivered']:,} / {r['expected']:,} | {r['lost']} | "
                f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['max_ms']:.0f} | {r['server_cpu_pct']:.0f} % | "
                f"{r['client_cpu_pct']:.0f} % | {r['rss_per_sub_kib']:.0f} KiB |"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    plot(report, args)


def plot(report, args):
    """docs/bench/scale-events.svg: p50 and p99 against subscribers, per database."""
    if not args.plot:
        return
    try:
        from plot import line_chart
    except ImportError:
        print("bench/plot.py is missing: no plot", file=sys.stderr)
        return
    names = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    series, styles = {}, {}
    for db, results in report.items():
        series[f"{names[db]} p50"] = [(r["subscribers"], r["p50_ms"]) for r in results]
        series[f"{names[db]} p99"] = [(r["subscribers"], r["p99_ms"]) for r in results]
        styles[f"{names[db]} p50"] = "--"
    line_chart(
        args.plot,
        f"Event delivery latency (commit to client), {args.rate:.0f} writes/s",
        "subscribers",
        "latency (ms)",
        series,
        logx=True,
        hlines=[(250, "target: p99 250 ms")],
        styles=styles,
    )
    print(f"plot: {os.path.relpath(args.plot, ROOT)}")

if __name__ == "__main__":
    main()
