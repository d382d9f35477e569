#!/usr/bin/env python3
"""How the cost of a read grows with the table: get, list, page 50 at 1k … 1M rows.

    python3 bench/scale_size.py --db both --rows 1000,100000,1000000

For each database (SQLite, PostgreSQL) and each size, ascending: the bench project
(bench/project: items with an owner, an index [status, -price, id]) is filled up to
that many items (Trellis creates the tables; the rows go straight into them:
executemany in one transaction on SQLite, COPY on PostgreSQL, the change log the
insert triggers write pruned afterwards as retention would), then wrk (32
connections, a warm-up, then RUNS runs of SECONDS each, median) measures

  - get by id:               GET /api/items/{random id}
  - filtered + sorted list:  GET /api/items?filter=status = open and price > {T}&sort=-price&limit=10
  - keyset page 50:          the same list with after=<the cursor of page 49>, gathered
                             first by following `next` 49 times, for each threshold T

(T is one of 9 thresholds, picked at random per request.) At the largest size it
records each request's SQL and its plan: the statements from Trellis's own log
(RUST_LOG=sqlx::query=debug), EXPLAIN QUERY PLAN on SQLite; on PostgreSQL the plans
of the statements as Trellis runs them (auto_explain with ANALYZE and BUFFERS, sent
back as notices that Trellis logs).

Writes docs/bench/scale-size.md (the table and the plans) and docs/bench/scale-size.svg
(latency against rows, log x; matplotlib from bench/.venv, see bench/plot.py).

PostgreSQL: TRELLIS_BENCH_PG_URL (or TRELLIS_TEST_PG_URL), an administrator URL
(a database is created and dropped); when neither is set, a throwaway cluster is
started with .ci/postgres.sh. Builds target/release/trellis first (cargo build
--release) unless --no-build. Needs wrk and psql (installed with apt-get if missing).
"""

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
import json
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import REGIONS, SECRET, free_port, start, stop, to_ms, token, ts  # noqa: E402
from plot import line_charts  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THRESHOLDS = [100, 125, 150, 175, 200, 225, 250, 275, 300]
PAGE = 50
OWNERS = 1000
REQUESTS = ["get by id", "filtered + sorted list", f"keyset page {PAGE}"]
SAMPLE = 10_000  # random ids kept for the get


def list_path(threshold, limit, after=None):
    q = {"filter": f"status = open and price > {threshold}", "sort": "-price", "limit": str(limit)}
    if after:
        q["after"] = after
    return "/api/items?" + urllib.parse.urlencode(q, quote_via=urllib.parse.quote)


def uuid7(ms, rng):
    """A version 7 UUID (as Trellis makes them): 48 bits of milliseconds, then random."""
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rng.getrandbits(12) << 64 | 0b10 << 62 | rng.getrandbits(62)
    return str(uuid.UUID(int=value))


def loadavg():
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------
# Databases: create, fill, prune the change log, analyze.


class Db:
    def __init__(self, kind, work, pg_admin):
        self.kind = kind
        if kind == "sqlite":
            self.path = os.path.join(work, "bench.db")
            self.url = f"sqlite://{self.path}"
        else:
            self.admin = pg_admin
            self.name = "bench_scale_" + uuid.uuid4().hex[:8]
            self.psql_admin(f"CREATE DATABASE {self.name}")
            parts = urllib.parse.urlsplit(pg_admin)
            self.url = urllib.parse.urlunsplit(parts._replace(path="/" + self.name))

    def psql_admin(self, sql):
        subprocess.run(["psql", self.admin, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, stdout=subprocess.DEVNULL)

    def psql(self, sql, capture=False):
        out = subprocess.run(
            ["psql", self.url, "-q", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            check=True, text=True, capture_output=capture,
        )
        return out.stdout if capture else None

    def drop(self):
        if self.kind == "postgres":
            self.psql_admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")

    def insert(self, owners, items):
        """`items`: an iterable of (id, title, price in cents, quantity, status, owner)."""
        now = datetime.now(timezone.utc)
        if self.kind == "sqlite":
            import sqlite3

            con = sqlite3.connect(self.path, isolation_level=None)
            # Loading only: no journal, no syncs, a cache that holds the indexes
            # (the server switches the file back to WAL when it opens it).
            con.execute("PRAGMA journal_mode = OFF")
            con.execute("PRAGMA synchronous = OFF")
            con.execute("PRAGMA cache_size = -1000000")
            t = ts(now)
            con.execute("BEGIN")
            con.executemany(
                "INSERT INTO owner (id, created_at, updated_at, version, name, region) VALUES (?, ?, ?, 1, ?, ?)",
                ((o[0], t, t, o[1], o[2]) for o in owners),
            )
            con.executemany(
                "INSERT INTO item (id, created_at, updated_at, version, title, price, quantity, status, owner) "
                "VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?)",
                ((it[0], t, t, it[1], it[2], it[3], it[4], it[5]) for it in items),
            )
            con.execute("COMMIT")
            con.execute("PRAGMA journal_mode = WAL")
            con.close()
        else:
            t = now.isoformat()

            def copy(table, columns, rows):
                proc = subprocess.Popen(
                    ["psql", self.url, "-q", "-v", "ON_ERROR_STOP=1", "-c", f"\\copy {table} ({columns}) FROM STDIN"],
                    stdin=subprocess.PIPE, text=True,
                )
                chunk = []
                for row in rows:
                    chunk.append("\t".join(row) + "\n")
                    if len(chunk) >= 10_000:
                        proc.stdin.write("".join(chunk))
                        chunk = []
                proc.stdin.write("".join(chunk))
                proc.stdin.close()
                if proc.wait() != 0:
                    sys.exit(f"COPY into {table} failed")

            copy("owner", "id, created_at, updated_at, version, name, region", ((o[0], t, t, "1", o[1], o[2]) for o in owners))
            copy(
                "item",
                "id, created_at, updated_at, version, title, price, quantity, status, owner",
                ((it[0], t, t, "1", it[1], f"{it[2] // 100}.{it[2] % 100:02d}", str(it[3]), it[4], it[5]) for it in items),
            )

    def prune_and_analyze(self):
        """The insert triggers logged every row in _trellis_changes: prune them as the
        retention task does (delete, and remember how far), then refresh statistics."""
        if self.kind == "sqlite":
            import sqlite3

            con = sqlite3.connect(self.path)
            (seq,) = con.execute("SELECT COALESCE(MAX(seq), 0) FROM _trellis_changes").fetchone()
            con.execute("DELETE FROM _trellis_changes WHERE seq <= ?", (seq,))
            con.execute(
                "INSERT INTO _trellis_changes_pruned (id, seq) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq "
                "WHERE excluded.seq > _trellis_changes_pruned.seq",
                (seq,),
            )
            con.commit()
            con.execute("ANALYZE")
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            con.close()
        else:
            self.psql(
                "BEGIN; "
                "INSERT INTO _trellis_changes_pruned (id, seq) SELECT 1, COALESCE(MAX(seq), 0) FROM _trellis_changes "
                "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq WHERE excluded.seq > _trellis_changes_pruned.seq; "
                "DELETE FROM _trellis_changes WHERE seq <= (SELECT seq FROM _trellis_changes_pruned WHERE id = 1); "
                "COMMIT;"
            )
            self.psql("VACUUM ANALYZE")

    def count(self):
        if self.kind == "sqlite":
            import sqlite3

            con = sqlite3.connect(self.path)
            (n,) = con.execute("SELECT COUNT(*) FROM item").fetchone()
            con.close()
            return n
        return int(self.psql("SELECT COUNT(*) FROM item", capture=True).strip())


def make_owners(rng):
    return [(uuid7(1_700_000_000_000 + i, rng), f"Owner {i}", REGIONS[i % len(REGIONS)]) for i in range(OWNERS)]


def make_items(rng, start_n, count, owner_ids, sample):
    """`count` items after the first `start_n`; keeps a uniform sample of their ids
    (reservoir, over every item so far) in `sample`."""
    base_ms = 1_750_000_000_000
    for i in range(start_n, start_n + count):
        iid = uuid7(base_ms + i, rng)
        if len(sample) < SAMPLE:
            sample.append(iid)
        else:
            j = rng.randrange(i + 1)
            if j < SAMPLE:
                sample[j] = iid
        status = "closed" if rng.random() < 0.1 else "open"
        yield (iid, f"Item {i}", rng.randint(0, 100_000), rng.randint(0, 50), status, owner_ids[rng.randrange(OWNERS)])


# ---------------------------------------------------------------------------
# Requests.


def get_json(port, path, tok):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {tok}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def page_cursors(port, tok, limit):
    """For each threshold: the cursor that asks for page PAGE (the `next` of page PAGE-1)."""
    out = []
    for t in THRESHOLDS:
        after = None
        for _ in range(PAGE - 1):
            page = get_json(port, list_path(t, limit, after), tok)
            after = page["next"]
            if after is None:
                sys.exit(f"fewer than {PAGE} pages of {limit} for price > {t}: add rows or lower --limit")
        out.append((t, after))
    return out


def lua_script(work, name, tok, lines):
    """A wrk script that sends one of `lines` (request paths) at random."""
    data = os.path.join(work, f"{name}.txt")
    with open(data, "w") as f:
        f.write("\n".join(lines) + "\n")
    script = f"""
local paths = {{}}
for l in io.lines("{data}") do paths[#paths + 1] = l end
local counter = 0
function setup(thread) counter = counter + 1; thread:set("seed", counter) end
function init(args) math.randomseed(os.time() * 1000 + (seed or 0)) end
wrk.headers["Authorization"] = "Bearer {tok}"
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
"""
    path = os.path.join(work, f"{name}.lua")
    with open(path, "w") as f:
        f.write(script)
    return path


def wrk(port, script, seconds, connections):
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"\n\s+50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"\n\s+99%\s+(\S+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, p50, p99, int(bad.group(1)) if bad else 0


def request_paths(port, tok, ids, limit):
    cursors = page_cursors(port, tok, limit)
    return {
        "get by id": [f"/api/items/{i}" for i in ids],
        "filtered + sorted list": [list_path(t, limit) for t in THRESHOLDS],
        f"keyset page {PAGE}": [list_path(t, limit, c) for t, c in cursors],
    }


# ---------------------------------------------------------------------------
# Plans.

STATEMENT = re.compile(r'sqlx::query: summary=.*? db\.statement="((?:[^"\\]|\\.)*)"')
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def unescape(s):
    return json.loads('"' + s.replace("\\'", "'") + '"')


def statements_in(log_text):
    """The statements about items in a piece of Trellis's log (not the background
    tasks' polling of the outbox or the WAL)."""
    out = []
    for m in STATEMENT.finditer(ANSI.sub("", log_text)):
        sql = unescape(m.group(1)).strip()
        if re.search(r'\b"?item"?\b', sql) and "_trellis_outbox" not in sql:
            out.append(sql)
    return out


def explain_sqlite(db, sql, params):
    import sqlite3

    con = sqlite3.connect(db.path)
    rows = con.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    con.close()
    # id, parent, notused, detail: indent by depth.
    depth = {0: -1}
    lines = []
    for node, parent, _, detail in rows:
        d = depth.get(parent, -1) + 1
        depth[node] = d
        lines.append("  " * d + detail)
    return "\n".join(lines)


def sqlite_params(sql):
    """NULL for each parameter: SQLite plans a statement before its values are bound
    (as Trellis's prepared statements are), so the plan does not depend on them."""
    return [None] * len(re.findall(r"\?", sql))


def capture_plans(db, tcmd, port, env, work, paths, limit):
    """Runs each request once more on a server that logs its statements (and, on
    PostgreSQL, their plans) and returns {request: [(sql, plan)]}."""
    log = os.path.join(work, "plans.log")
    penv = dict(env, RUST_LOG="warn,sqlx::query=debug,sqlx::postgres::notice=info", NO_COLOR="1")
    if db.kind == "postgres":
        db.psql_admin(
            f"ALTER DATABASE {db.name} SET session_preload_libraries = 'auto_explain'; "
        )
        for k, v in [("log_min_duration", "0"), ("log_analyze", "on"), ("log_buffers", "on"), ("log_level", "notice"),
                     ("log_timing", "on"), ("log_nested_statements", "on")]:
            db.psql_admin(f"ALTER DATABASE {db.name} SET auto_explain.{k} = '{v}'")
    out = {}
    with open(log, "w") as logf:
        proc = subprocess.Popen(tcmd, env=penv, stdout=logf, stderr=subprocess.STDOUT)
        from bench import wait_up

        wait_up(port, proc)
        tok = token("bench-admin", ["admin"])
        for name in REQUESTS:
            # A few times, so that PostgreSQL's plan is the one it settles on (a
            # prepared statement gets its generic plan from the sixth execution).
            for _ in range(7):
                before = os.path.getsize(log)
                get_json(port, paths[name][0], tok)
                time.sleep(0.3)
            with open(log) as f:
                f.seek(before)
                text = f.read()
            out[name] = (paths[name][0], text)
        stop(proc)
    if db.kind == "postgres":
        db.psql_admin(f"ALTER DATABASE {db.name} RESET ALL")
    plans = {}
    for name, (path, text) in out.items():
        sqls = statements_in(text)
        if db.kind == "sqlite":
            plans[name] = [(sql, explain_sqlite(db, sql, sqlite_params(sql))) for sql in sqls]
        else:
            notices = pg_plans(text)
            plans[name] = [(sql, notices.pop(0) if notices else "(no plan logged)") for sql in sqls]
    return plans


NOTICE = re.compile(r"sqlx::postgres::notice: (?:message=)?(.*?)(?=\n\S+Z\s+(?:DEBUG|INFO|WARN|ERROR|TRACE)\b|\Z)", re.S)


def pg_plans(text):
    """The plans auto_explain sent as notices, without their "Query Text" part."""
    out = []
    for m in NOTICE.finditer(ANSI.sub("", text)):
        body = m.group(1).strip()
        if body.startswith('"') and body.endswith('"'):
            body = unescape(body[1:-1])
        if "Query Text:" not in body:
            continue
        plan = body.split("\n", 2)[-1] if body.count("\n") >= 2 else body
        out.append(plan.rstrip())
    return out


# ---------------------------------------------------------------------------


def build():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "trellis"], cwd=ROOT, check=True)


def start_postgres():
    """A throwaway cluster from .ci/postgres.sh: (admin url, stop function)."""
    out = subprocess.run(
        ["bash", "-c", 'source .ci/postgres.sh >&2 && printf "%s\\n%s\\n%s\\n%s\\n" "$TRELLIS_TEST_PG_URL" "$PG_TMP" "$PG_BIN" "$PG_USER"'],
        cwd=ROOT, check=True, text=True, capture_output=True,
    ).stdout.split("\n")
    url, tmp, pgbin, user = out[:4]

    def stop_pg():
        subprocess.run(["runuser", "-u", user, "--", f"{pgbin}/pg_ctl", "-D", f"{tmp}/data", "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)

    return url, stop_pg


def servers(args):
    """[(label, binary)]: the build to measure, then the baseline if given."""
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    out = [("trellis", args.trellis or os.path.join(target, "release", "trellis"))]
    if args.baseline:
        out.append(("baseline", args.baseline))
    return out


def measure(kind, label, n, port, work, tok, paths, args, results):
    for name in REQUESTS:
        script = lua_script(work, re.sub(r"\W+", "_", name), tok, paths[name])
        wrk(port, script, args.warmup, args.connections)
        load = loadavg()
        runs = [wrk(port, script, args.seconds, args.connections) for _ in range(args.runs)]
        med = (
            statistics.median(r[0] for r in runs),
            statistics.median(r[1] for r in runs),
            statistics.median(r[2] for r in runs),
            sum(r[3] for r in runs),
            load,
        )
        results[(label, name, n)] = med
        print(
            f"{kind:8} {label:8} {n:>9,} {name:24} {med[0]:9.0f}/s p50 {med[1]:7.2f} p99 {med[2]:7.2f} ms"
            + (f" non-2xx {med[3]}" if med[3] else "") + f"  (load {load})",
            flush=True,
        )


def run_db(kind, sizes, args, pg_admin):
    work = tempfile.mkdtemp(prefix=f"trellis-scale-{kind}-")
    shutil.copytree(os.path.join(ROOT, "bench", "project"), os.path.join(work, "project"))
    db = Db(kind, work, pg_admin)
    env = dict(os.environ, BENCH_JWT_SECRET=SECRET, RUST_LOG="warn")
    port = free_port()

    def command(binary):
        return [binary, "serve", os.path.join(work, "project"), "--port", str(port), "--no-watch", "--database-url", db.url]

    rng = random.Random(20261207)
    owners = make_owners(rng)
    sample = []
    loaded = 0
    results = {}
    plans = {}
    tok = token("bench-admin", ["admin"])
    try:
        # The oldest server creates the tables (the newer one then finds them current).
        stop(start(command(servers(args)[-1][1]), port, env))
        for n in sizes:
            t0 = time.time()
            db.insert(owners if loaded == 0 else [], make_items(rng, loaded, n - loaded, [o[0] for o in owners], sample))
            db.prune_and_analyze()
            loaded = n
            assert db.count() == n
            print(f"# {kind}: {n:,} items loaded in {time.time() - t0:.0f} s (load {loadavg()})", flush=True)
            paths = None
            for label, binary in servers(args):
                proc = start(command(binary), port, env)
                if paths is None:
                    paths = request_paths(port, tok, sample, args.limit)
                measure(kind, label, n, port, work, tok, paths, args, results)
                stop(proc)
                if n == max(sizes) and not args.no_plans:
                    plans[label] = capture_plans(db, command(binary), port, env, work, paths, args.limit)
    finally:
        db.drop()
        shutil.rmtree(work, ignore_errors=True)
    return results, plans


def git_head():
    out = subprocess.run(["git", "log", "-1", "--format=%h %s"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip()


def report(args, sizes, dbs, all_results, all_plans):
    labels = [label for label, _ in servers(args)]
    lines = []
    command = f"python3 bench/scale_size.py --db {args.db} --rows {args.rows}"
    if args.baseline:
        command += " --baseline " + args.baseline
    lines.append(f"Command: `{command}`")
    lines.append("")
    lines.append(
        f"wrk -t2 -c{args.connections}, {args.warmup} s warm-up, median of {args.runs} runs of {args.seconds} s; "
        f"lists with limit={args.limit}; load = the 1/5/15-minute load average when the runs started "
        f"({os.cpu_count()} cores). Server: {'the given binary' if args.trellis else 'the release build of ' + git_head()}"
        + (f"; baseline: {args.baseline}" if args.baseline else "") + "."
    )
    lines.append("")
    lines.append("| database | request | rows | " + " | ".join(
        f"{label} req/s | {label} p50 / p99 ms" for label in labels) + " | load |")
    lines.append("|---|---|---:|" + "---:|---:|" * len(labels) + "---|")
    for kind in dbs:
        for name in REQUESTS:
            for n in sizes:
                cells = []
                load = ""
                for label in labels:
                    r = all_results[kind].get((label, name, n))
                    if not r:
                        cells += ["", ""]
                        continue
                    bad = f" ({r[3]} non-2xx)" if r[3] else ""
                    cells += [f"{r[0]:,.0f}{bad}", f"{r[1]:.2f} / {r[2]:.2f}"]
                    load = load or r[4]
                lines.append(f"| {kind} | {name} | {n:,} | " + " | ".join(cells) + f" | {load} |")
    for kind in dbs:
        for label in labels:
            plans = all_plans.get(kind, {}).get(label)
            if not plans:
                continue
            lines.append("")
            what = "EXPLAIN QUERY PLAN" if kind == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) of the statements as the server ran them, by auto_explain"
            lines.append(f"### Plans at {max(sizes):,} rows, {kind}, {label} ({what})")
            for name in REQUESTS:
                for sql, plan in plans.get(name, []):
                    lines.append("")
                    lines.append(f"**{name}**")
                    lines.append("")
                    lines.append("```sql")
                    lines.append(sql)
                    lines.append("```")
                    lines.append("```")
                    lines.append(plan)
                    lines.append("```")
    return "\n".join(lines) + "\n"


def plot(path, args, sizes, dbs, all_results):
    charts = []
    for kind in dbs:
        series, styles = {}, {}
        for label, _ in servers(args):
            for name in REQUESTS:
                for q, idx in (("p50", 1), ("p99", 2)):
                    key = (f"{label}: " if args.baseline else "") + f"{name} {q}"
                    series[key] = [(n, all_results[kind][(label, name, n)][idx]) for n in sizes
                                   if (label, name, n) in all_results[kind]]
                    styles[key] = ("-" if q == "p50" else ":") if label == "trellis" else ("--" if q == "p50" else "-.")
        charts.append(dict(title=kind, xlabel="rows in the table", ylabel="latency (ms)", series=series,
                           logx=True, logy=True, styles=styles))
    line_charts(path, f"Latency against table size (wrk -c{args.connections}; p50 solid, p99 dotted)", charts,
                ncols=len(charts))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--rows", default="1000,100000,1000000", help="comma-separated table sizes, e.g. 1000,100000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--limit", type=int, default=10, help="page size of the lists")
    ap.add_argument("--no-plans", action="store_true", help="skip recording the plans at the largest size")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--baseline", help="another server binary (e.g. a build of main) measured on the same rows after it")
    ap.add_argument("--trellis", help="the server binary to measure (default: the release build; implies --no-build)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "bench", "scale-size"),
                    help="writes OUT.md and OUT.svg")
    args = ap.parse_args()
    sizes = sorted(int(s.replace("_", "")) for s in args.rows.split(","))
    if sizes[0] * 0.9 * 0.7 < PAGE * args.limit + 1:
        sys.exit(f"the smallest table needs at least {PAGE} pages of {args.limit} matching rows")
    for tool, pkg in (("wrk", "wrk"), ("psql", "postgresql-client")):
        if not shutil.which(tool):
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", pkg], check=True, stdout=subprocess.DEVNULL)
    if not args.no_build and not args.trellis:
        build()
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    pg_admin = os.environ.get("TRELLIS_BENCH_PG_URL") or os.environ.get("TRELLIS_TEST_PG_URL", "")
    stop_pg = None
    if "postgres" in dbs and not pg_admin:
        pg_admin, stop_pg = start_postgres()
    all_results, all_plans = {}, {}
    try:
        for kind in dbs:
            all_results[kind], all_plans[kind] = run_db(kind, sizes, args, pg_admin)
    finally:
        if stop_pg:
            stop_pg()
    md = report(args, sizes, dbs, all_results, all_plans)
    print()
    print(md)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".md", "w") as f:
        f.write(md)
    plot(args.out + ".svg", args, sizes, dbs, all_results)
    print(f"wrote {args.out}.md and {args.out}.svg")


if __name__ == "__main__":
    main()
