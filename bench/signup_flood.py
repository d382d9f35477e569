#!/usr/bin/env python3
"""Peak memory of `trellis serve` under a flood of concurrent signups.

Copies the root project to a temporary folder, raises `limits.signup` there so
that every signup proceeds (the per-address limit would otherwise refuse all but
10 a minute), sets `limits.password_hashes`, starts the server, sends N signups
at once and prints the server's peak resident set (VmHWM from /proc/PID/status).

    python3 bench/signup_flood.py [--binary target/debug/trellis] [--signups 100]
                                  [--hashes 4]

Results: docs/limits.md.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "trellis"))
    ap.add_argument("--signups", type=int, default=100)
    ap.add_argument("--hashes", type=int, default=4)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="trellis-signups-")
    try:
        for d in ("models", "policies", "workflows"):
            shutil.copytree(os.path.join(ROOT, d), os.path.join(work, d))
        with open(os.path.join(ROOT, "trellis.yaml")) as f:
            settings = f.read()
        settings += (
            "\nlimits:\n"
            f"  signup: {{ per_minute: {args.signups * 10} }}\n"
            f"  password_hashes: {args.hashes}\n"
        )
        with open(os.path.join(work, "trellis.yaml"), "w") as f:
            f.write(settings)
        port = free_port()
        env = dict(os.environ, TRELLIS_JWT_SECRET="x" * 48, RUST_LOG="warn")
        env.pop("DATABASE_URL", None)
        server = subprocess.Popen(
            [args.binary, "serve", work, "--port", str(port), "--no-watch"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/_/health", timeout=1).read()
                break
            except Exception:
                time.sleep(0.1)
        else:
            sys.exit("the server did not start")
        idle = status_kib(server.pid, "VmRSS")

        statuses = []
        lock = threading.Lock()

        def signup(i):
            body = json.dumps(
                {
                    "email": f"flood{i}@example.com",
                    "password": "correct horse battery",
                    "display_name": f"Flood {i}",
                }
            ).encode()
            req = urllib.request.Request(
                base + "/auth/signup",
                data=body,
                headers={"content-type": "application/json"},
                method="POST",
            )
            try:
                code = urllib.request.urlopen(req, timeout=120).status
            except urllib.error.HTTPError as e:
                code = e.code
            except Exception as e:  # noqa: BLE001
                code = type(e).__name__
            with lock:
                statuses.append(code)

        started = time.time()
        threads = [threading.Thread(target=signup, args=(i,)) for i in range(args.signups)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - started
        peak = status_kib(server.pid, "VmHWM")
        server.terminate()
        server.wait()
        counts = {}
        for s in statuses:
            counts[str(s)] = counts.get(str(s), 0) + 1
        print(
            f"{args.signups} concurrent signups, password_hashes={args.hashes}, "
            f"{os.path.basename(os.path.dirname(os.path.dirname(args.binary)))}/"
            f"{os.path.basename(os.path.dirname(args.binary))} binary: "
            f"answers {counts} in {elapsed:.1f} s; RSS idle {idle / 1024:.0f} MiB, "
            f"peak (VmHWM) {peak / 1024:.0f} MiB"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
