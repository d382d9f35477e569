#!/usr/bin/env python3
"""Reload latency: from a model file written to the new definition served.

Starts `target/release/trellis serve` on a copy of the root project (SQLite),
then makes N edits to models/skill.yaml, each adding a field. Half are written in
place, half the way many editors save (write a temporary file, rename it over the
original). After each write it polls GET /openapi.json until the new field is in
it, and records the time since the write began (debounce, load, check, schema
change, swap, and the poll's own resolution of about 2 ms).

    cargo build --release && python3 bench/reload_latency.py [--edits 50]
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=50)
    args = ap.parse_args()
    binary = os.path.join(ROOT, "target", "release", "trellis")
    if not os.path.exists(binary):
        sys.exit("build first: cargo build --release")
    work = tempfile.mkdtemp(prefix="trellis-reload-")
    for d in ["models", "policies", "workflows"]:
        shutil.copytree(os.path.join(ROOT, d), os.path.join(work, d))
    shutil.copy(os.path.join(ROOT, "trellis.yaml"), work)
    port = free_port()
    env = dict(os.environ, TRELLIS_JWT_SECRET="bench-secret-bench-secret-bench-secret", RUST_LOG="warn")
    server = subprocess.Popen(
        [binary, "serve", work, "--port", str(port), "--database-url", f"sqlite://{work}/bench.db"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                get(base + "/_/health")
                break
            except Exception:
                time.sleep(0.05)
        model = os.path.join(work, "models", "skill.yaml")
        text = open(model).read().rstrip("\n") + "\n"
        latencies = []
        for i in range(1, args.edits + 1):
            text = text.replace("\nunique:", f"\n  bench_{i}: text\nunique:") if "\nunique:" in text else text + f"  bench_{i}: text\n"
            marker = f'"bench_{i}"'.encode()
            start = time.perf_counter()
            if i % 2:
                with open(model, "w") as f:
                    f.write(text)
            else:
                tmp = model + ".tmp~"
                with open(tmp, "w") as f:
                    f.write(text)
                os.replace(tmp, model)
            while marker not in get(base + "/openapi.json"):
                if time.perf_counter() - start > 10:
                    sys.exit(f"edit {i} was not served within 10 s")
                time.sleep(0.002)
            latencies.append((time.perf_counter() - start) * 1000)
            time.sleep(0.2)  # let the watcher settle between edits
        latencies.sort()
        result = {
            "edits": len(latencies),
            "median_ms": round(statistics.median(latencies), 1),
            "p90_ms": round(latencies[int(len(latencies) * 0.9) - 1], 1),
            "worst_ms": round(latencies[-1], 1),
            "best_ms": round(latencies[0], 1),
        }
        print(json.dumps(result))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
