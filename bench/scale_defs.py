#!/usr/bin/env python3
"""How start-up, `trellis check`, hot reload and memory grow with the number of entities.

    cargo build --release && python3 bench/scale_defs.py --db both --entities 10,100,500

For each size N the script generates a project of N entities (about 17 fields each:
string, text, integer, number, decimal, enum, date, datetime, boolean, email, url,
json, uuid, a ref to a parent entity, a second ref, a `many` on every fourth entity,
an `inverse` where an entity has children, an index, search fields on every third),
a policy per entity (named row conditions, a condition through the parent ref,
field rules, a preset) and a workflow on every fifth entity (with a guard through a
relation). Then, on each database asked for:

- `check`: wall time of `trellis check DIR` (median of --repeat runs);
- first start: `trellis serve` on an empty database (every table is created), from
  process start to the first 200 from `/_/ready`;
- second start: the same on the tables the first start made (nothing to migrate);
- reload: with the server watching its files, --edits times: add a field to one
  model file (in the middle of the project) and time from the write to the first
  200 of `GET /api/<that entity>?fields=<new field>` as an admin (400 while the
  old definitions serve). Includes the watcher's 100 ms debounce;
- RSS (VmRSS from /proc) when ready, and after the reloads.

PostgreSQL: from TRELLIS_BENCH_PG_URL (else TRELLIS_TEST_PG_URL, else /tmp/pgurl);
each size gets a fresh database (CREATE DATABASE), dropped afterwards.

Writes the table to stdout (Markdown), the raw numbers to
docs/bench/scale-defs.json and the plot to docs/bench/scale-defs.svg (bench/plot.py:
a pinned matplotlib in bench/.venv, installed on first use; --no-plot skips it).
Times are wall times, with the trellis process's own CPU time beside them (the part
a busy machine does not inflate; PostgreSQL's own work is not in it).
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "trellis")
SECRET = "scale-defs-secret-scale-defs-secret-0123456789"
ADMIN = "00000000-0000-7000-8000-000000000001"


# ---------------------------------------------------------------- the project


def name(i):
    return f"e{i:03}"


def has_workflow(i):
    return i % 5 == 4


def model(i, n):
    """The model file of entity i of n."""
    e = name(i)
    workflow = has_workflow(i)
    lines = [
        f"entity: {e}",
        f"label: Entity {i}",
        f"description: Generated entity {i} of {n}.",
        "fields:",
        "  title: { type: string, required: true, min: 1, max: 120 }",
        "  summary: { type: text, max: 5000 }",
        "  owner: { type: string, max: 64 }",
        "  quantity: { type: integer, min: 0 }",
        "  score: { type: number, min: 0, max: 100 }",
        "  price: { type: decimal, scale: 2, min: 0 }",
        # The workflow keeps the state; an entity without one has a default.
        "  status: { type: enum, values: [draft, open, closed] }"
        if workflow
        else "  status: { type: enum, values: [draft, open, closed], default: draft }",
        "  due: date",
        "  happened_at: datetime",
        "  active: { type: boolean, default: true }",
        "  contact: email",
        "  site: url",
        "  extra: json",
        "  external_ref: uuid",
        "  internal_notes: text",
    ]
    if i > 0:
        lines.append(f"  parent: {{ type: ref, to: {name((i - 1) // 2)}, on_delete: cascade }}")
        lines.append(f"  related: {{ type: ref, to: {name(i // 3)} }}")
    if i > 0 and i % 4 == 0:
        lines.append(f"  links: {{ type: many, of: {name(i // 4)} }}")
    if 2 * i + 1 < n:
        lines.append(f"  children: {{ type: inverse, of: {name(2 * i + 1)}, via: parent }}")
    lines.append("indexes:")
    lines.append("  - [status, due]")
    if i % 3 == 0:
        lines.append("search: [title, summary]")
    return "\n".join(lines) + "\n"


def policy(i):
    e = name(i)
    conditions = ["  mine: owner = user.id", "  visible: status != draft and active"]
    if i > 0:
        conditions.append("  parent_open: parent.status != closed")
    member_where = "mine or visible" + (" and parent_open" if i > 0 else "")
    rules = [
        "  - name: Admins do everything",
        "    roles: [admin]",
        '    allow: ["*"]',
        "  - name: Members see their own and the visible records",
        "    roles: [member]",
        "    allow: [list, read, aggregate]",
        f"    where: {member_where}",
        "  - name: Members write their own",
        "    roles: [member]",
        "    allow: [create, update, delete]",
        "    where: mine",
        "  - name: Nobody but admins deletes a closed record",
        "    roles: [member]",
        "    deny: [delete]",
        "    where: status = closed",
    ]
    if has_workflow(i):
        rules += [
            "  - name: Owners publish and close",
            "    roles: [member]",
            "    allow: [transition.publish, transition.close]",
            "    where: mine",
        ]
    return "\n".join(
        [f"entity: {e}", "conditions:"]
        + conditions
        + ["rules:"]
        + rules
        + [
            "fields:",
            "  owner: { on_create: user.id, write: { roles: [admin] } }",
            "  internal_notes: { read: { roles: [admin] } }",
            "  price: { write: { roles: [admin], where: status = draft } }",
        ]
        + (["  happened_at: { write: never }"] if has_workflow(i) else [])
    ) + "\n"


def workflow(i):
    guard = (
        "    require:\n      - where: parent.status = open\n        message: The parent is not open\n"
        if i > 0
        else ""
    )
    return (
        f"entity: {name(i)}\n"
        "field: status\n"
        "initial: draft\n"
        "states:\n"
        "  draft: { label: Draft }\n"
        "  open: { label: Open }\n"
        "  closed: { label: Closed, final: true }\n"
        "transitions:\n"
        "  publish:\n"
        "    from: draft\n"
        "    to: open\n"
        + guard
        + "  close:\n"
        "    from: open\n"
        "    to: closed\n"
        "    set: { happened_at: now }\n"
    )


def write_project(path, n):
    for d in ("models", "policies", "workflows"):
        os.makedirs(os.path.join(path, d))
    for i in range(n):
        with open(os.path.join(path, "models", f"{name(i)}.yaml"), "w") as f:
            f.write(model(i, n))
        with open(os.path.join(path, "policies", f"{name(i)}.yaml"), "w") as f:
            f.write(policy(i))
        if has_workflow(i):
            with open(os.path.join(path, "workflows", f"{name(i)}.yaml"), "w") as f:
                f.write(workflow(i))
    with open(os.path.join(path, "trellis.yaml"), "w") as f:
        f.write(
            f"name: Scale {n}\n"
            "auth:\n  jwt: { algorithm: HS256, secret_env: BENCH_JWT_SECRET }\n"
        )


# ---------------------------------------------------------------- measuring


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin_token():
    """An HS256 token with the admin role (what `trellis token` signs)."""

    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": ADMIN, "roles": ["admin"], "iat": now, "exp": now + 3600}).encode())
    signing = header + b"." + claims
    sig = b64(hmac.new(SECRET.encode(), signing, hashlib.sha256).digest())
    return (signing + b"." + sig).decode()


def status_of(url, token=None):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as err:
        err.read()
        return err.code
    except Exception:
        return None


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_ms(pid):
    """CPU time (user + system) the process has used so far, in ms."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) * 1000 / ticks


def server_env():
    return dict(os.environ, BENCH_JWT_SECRET=SECRET, RUST_LOG="warn")


def start(project, url, watch):
    """Starts serve; returns (process, port, seconds to the first 200 of /_/ready)."""
    port = free_port()
    args = [BIN, "serve", project, "--port", str(port), "--database-url", url, "--color", "never"]
    if not watch:
        args.append("--no-watch")
    log = open(os.path.join(os.path.dirname(project), "serve.log"), "a")
    t0 = time.monotonic()
    proc = subprocess.Popen(args, env=server_env(), stdout=log, stderr=log)
    while status_of(f"http://127.0.0.1:{port}/_/ready") != 200:
        if proc.poll() is not None:
            log.flush()
            sys.exit(f"serve exited: see {log.name}:\n" + open(log.name).read()[-3000:])
        if time.monotonic() - t0 > 300:
            proc.kill()
            sys.exit("serve was not ready within 300 s")
        time.sleep(0.002)
    return proc, port, time.monotonic() - t0


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def time_check(project, repeat):
    """Median wall and CPU seconds of `trellis check`, and its peak RSS in MiB."""
    times, cpus, peaks = [], [], []
    for _ in range(repeat):
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [BIN, "check", project, "--color", "never"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        times.append(time.monotonic() - t0)
        cpus.append(usage.ru_utime + usage.ru_stime)
        peaks.append(usage.ru_maxrss / 1024)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"the generated project does not check:\n{out[-3000:]}")
    return statistics.median(times), statistics.median(cpus), statistics.median(peaks)


def reloads(project, port, n, edits):
    """Edits one model file `edits` times; returns the latencies in seconds."""
    i = n // 2
    path = os.path.join(project, "models", f"{name(i)}.yaml")
    base = f"http://127.0.0.1:{port}/api/{name(i)}s"
    token = admin_token()
    if status_of(base + "?limit=1", token) != 200:
        sys.exit(f"GET {base} as admin does not answer 200")
    text = open(path).read()
    latencies = []
    for k in range(1, edits + 1):
        field = f"bench_{k}"
        text = text.replace("\nindexes:", f"\n  {field}: text\nindexes:", 1)
        probe = f"{base}?limit=1&fields=title,{field}"
        if status_of(probe, token) == 200:
            sys.exit(f"{field} answers before the edit")
        t0 = time.monotonic()
        if k % 2:
            with open(path, "w") as f:
                f.write(text)
        else:  # as many editors save: a temporary file renamed over the original
            tmp = path + ".tmp~"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        while status_of(probe, token) != 200:
            if time.monotonic() - t0 > 120:
                sys.exit(f"edit {k} of {path} was not served within 120 s")
            time.sleep(0.002)
        latencies.append(time.monotonic() - t0)
        time.sleep(0.3)  # let the watcher settle between edits
    return latencies


def pg_base_url():
    url = os.environ.get("TRELLIS_BENCH_PG_URL") or os.environ.get("TRELLIS_TEST_PG_URL")
    if not url and os.path.exists("/tmp/pgurl"):
        url = open("/tmp/pgurl").read().strip()
    if not url:
        sys.exit("PostgreSQL: set TRELLIS_BENCH_PG_URL (a server where CREATE DATABASE is allowed)")
    return url


def psql(url, sql):
    subprocess.run(["psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True)


def measure(db, n, project, work, args):
    drop = None
    if db == "sqlite":
        url = f"sqlite://{work}/scale-{n}.db"
    else:
        base = pg_base_url()
        dbname = f"scale_defs_{n}_{uuid.uuid4().hex[:8]}"
        psql(base, f"CREATE DATABASE {dbname}")
        url = re.sub(r"/[^/?]*(\?|$)", f"/{dbname}\\1", base, count=1)
        drop = lambda: psql(base, f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")  # noqa: E731
    try:
        row = {"db": db, "entities": n}
        proc, _, took = start(project, url, watch=False)
        row["first_start_ms"] = took * 1000
        row["first_start_cpu_ms"] = cpu_ms(proc.pid)
        row["rss_first_mib"] = rss_mib(proc.pid)
        stop(proc)
        seconds, cpus, rss = [], [], []
        for k in range(args.repeat):
            proc, port, took = start(project, url, watch=k == args.repeat - 1)
            seconds.append(took)
            cpus.append(cpu_ms(proc.pid))
            rss.append(rss_mib(proc.pid))
            if k < args.repeat - 1:
                stop(proc)
        row["second_start_ms"] = statistics.median(seconds) * 1000
        row["second_start_cpu_ms"] = statistics.median(cpus)
        row["rss_ready_mib"] = statistics.median(rss)
        try:
            before = cpu_ms(proc.pid)
            lat = reloads(project, port, n, args.edits)
            # CPU per reload: includes the probes' requests (a few per reload, small).
            row["reload_cpu_ms"] = (cpu_ms(proc.pid) - before) / args.edits
            row["reload_ms"] = statistics.median(lat) * 1000
            row["reload_max_ms"] = max(lat) * 1000
            row["rss_reloaded_mib"] = rss_mib(proc.pid)
        finally:
            stop(proc)
        # The edits stay in the file; put the generated model back for the next database.
        i = n // 2
        with open(os.path.join(project, "models", f"{name(i)}.yaml"), "w") as f:
            f.write(model(i, n))
        return row
    finally:
        if drop:
            drop()


# ---------------------------------------------------------------- output


def table(rows):
    """Wall time (the process's own CPU time in brackets: the part the load of the
    machine does not inflate; PostgreSQL's own work is not in it)."""
    out = [
        "| database | entities | check | first start | second start | reload (median / worst) | RSS ready | RSS after reloads | check peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['db']} | {r['entities']} | {r['check_ms']:.0f} ms ({r['check_cpu_ms']:.0f}) "
            f"| {r['first_start_ms']:.0f} ms ({r['first_start_cpu_ms']:.0f}) "
            f"| {r['second_start_ms']:.0f} ms ({r['second_start_cpu_ms']:.0f}) "
            f"| {r['reload_ms']:.0f} / {r['reload_max_ms']:.0f} ms ({r['reload_cpu_ms']:.0f}) "
            f"| {r['rss_ready_mib']:.0f} MiB | {r['rss_reloaded_mib']:.0f} MiB | {r['check_peak_rss_mib']:.0f} MiB |"
        )
    return "\n".join(out)


def plot(rows, out, title):
    """Three charts: wall time, the trellis process's CPU time, memory (bench/plot.py)."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from plot import line_charts

    def series(keys):
        out = {}
        for db in ("sqlite", "postgres"):
            mine = sorted((r for r in rows if r["db"] == db), key=lambda r: r["entities"])
            if not mine:
                continue
            for key, label in keys:
                out[f"{label} ({db})"] = [(r["entities"], r[key]) for r in mine]
        return out

    styles = {}
    for db in ("sqlite", "postgres"):
        for label, style in (("check", ":"), ("first start", "-"), ("second start", "--"), ("reload", "-.")):
            styles[f"{label} ({db})"] = style
        styles[f"ready ({db})"] = "-"
        styles[f"after reloads ({db})"] = "--"
        styles[f"check peak ({db})"] = ":"
    times = [("check_ms", "check"), ("first_start_ms", "first start"), ("second_start_ms", "second start"), ("reload_ms", "reload")]
    cpus = [("check_cpu_ms", "check"), ("first_start_cpu_ms", "first start"), ("second_start_cpu_ms", "second start"), ("reload_cpu_ms", "reload")]
    rss = [("rss_ready_mib", "ready"), ("rss_reloaded_mib", "after reloads"), ("check_peak_rss_mib", "check peak")]
    line_charts(
        out,
        title,
        [
            {"title": "wall time (reload: median)", "xlabel": "entities", "ylabel": "ms", "series": series(times), "logx": False, "styles": styles},
            {"title": "CPU time of the trellis process", "xlabel": "entities", "ylabel": "ms", "series": series(cpus), "logx": False, "styles": styles},
            {"title": "resident memory (VmRSS)", "xlabel": "entities", "ylabel": "MiB", "series": series(rss), "logx": False, "styles": styles},
        ],
        ncols=3,
    )


def main():
    global BIN
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--entities", default="10,100,500", help="comma-separated sizes")
    ap.add_argument("--edits", type=int, default=5, help="reloads per size and database")
    ap.add_argument("--repeat", type=int, default=3, help="runs of check and of the second start (median)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "bench", "scale-defs"), help="path prefix of the .json and .svg")
    ap.add_argument("--binary", default=BIN, help="the trellis to measure (e.g. a build of an older commit)")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the generated projects (printed)")
    args = ap.parse_args()
    BIN = os.path.abspath(args.binary)
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    sizes = [int(s) for s in args.entities.split(",")]
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    work = tempfile.mkdtemp(prefix="trellis-scale-defs-")
    rows = []
    try:
        for n in sizes:
            project = os.path.join(work, f"p{n}", "project")
            write_project(project, n)
            check_s, check_cpu_s, check_peak = time_check(project, args.repeat)
            for db in dbs:
                row = measure(db, n, project, os.path.join(work, f"p{n}"), args)
                row["check_ms"] = check_s * 1000
                row["check_cpu_ms"] = check_cpu_s * 1000
                row["check_peak_rss_mib"] = check_peak
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        if args.keep:
            print(f"projects kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    load = open("/proc/loadavg").read().split()[:3]
    print(f"\nload average before the last size: {' '.join(load)}; {os.cpu_count()} cores\n")
    print(table(rows))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"load_average": load, "rows": rows}, f, indent=1)
    if not args.no_plot:
        plot(rows, args.out + ".svg", "Trellis: definitions at scale (" + ", ".join(map(str, sizes)) + " entities)")
        print(f"\nplot: {os.path.relpath(args.out + '.svg', ROOT)}")


if __name__ == "__main__":
    main()
