#!/usr/bin/env bash
# Proof with real clients (issue 17): generates two clients from the served root
# project's /openapi.json, type-checks them with `tsc --strict`, and runs a program
# with each against the server. Run by .ci/run; runs alone too (after `cargo build`):
#   clients/run.sh
# Needs node 20+ with npm, python3 with venv, java 17+ (openapi-generator's JAR) and
# the registries (npm, PyPI) for the pinned packages; nothing else from the network.
# Generated code and installs stay out of git: clients/node_modules, clients/dist,
# clients/openapi-fetch/api.d.ts, clients/typescript-fetch/generated, target/clients.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/target/debug/trellis
out=$root/target/clients
[ -x "$bin" ] || { echo "FATAL: $bin is missing; run cargo build first" >&2; exit 1; }
for tool in node npm java python3 curl; do
  command -v "$tool" >/dev/null || { echo "FATAL: $tool is not installed" >&2; exit 1; }
done
mkdir -p "$out"
started=$(date +%s)

# Pinned installs: npm ci from package-lock.json; PyPI into a venv under target/.
(cd clients && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
if [ ! -x "$out/venv/bin/pip" ]; then
  python3 -m venv "$out/venv"
fi
"$out/venv/bin/pip" install --quiet --disable-pip-version-check -r clients/requirements.txt

# A fresh root project in a temporary folder, on a free port, with a fresh SQLite db.
work=$(mktemp -d /tmp/trellis-clients.XXXXXX)
cp -r models policies workflows trellis.yaml "$work/"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export TRELLIS_JWT_SECRET=clients-secret-clients-secret-clients
"$bin" serve "$work" --port "$port" --no-watch --database-url "sqlite://$work/clients.db" >"$work/serve.log" 2>&1 &
pid=$!
stop_server() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
fail() {
  echo "FATAL: $1" >&2
  echo "server log (last 40 lines):" >&2
  tail -40 "$work/serve.log" >&2 || true
  stop_server
  exit 1
}
trap stop_server EXIT
up=
for _ in $(seq 1 300); do
  if curl -fsS "http://127.0.0.1:$port/_/health" >/dev/null 2>&1; then up=1; break; fi
  sleep 0.1
done
[ -n "$up" ] || fail "the server did not start"
curl -fsS "http://127.0.0.1:$port/openapi.json" -o "$out/openapi.json" || fail "GET /openapi.json"

# Generate. openapi-typescript with its default flags; typescript-fetch with only
# the module options Node's ESM needs (import extensions, ES6 output).
(cd clients && npx --no-install openapi-typescript "$out/openapi.json" -o openapi-fetch/api.d.ts --silent) \
  || fail "openapi-typescript could not generate the types"
rm -rf clients/typescript-fetch/generated
# typescript-fetch (7.26.0) cannot type an operation that takes JSON or
# multipart/form-data: it imports a model for the multipart body that it never
# writes. It gets the document without the multipart alternative where an
# operation also takes JSON (create and PATCH; the add-a-file routes keep theirs);
# openapi-typescript above types the whole document.
python3 - "$out/openapi.json" "$out/openapi-json-bodies.json" <<'PY' || fail "could not drop the multipart bodies"
import json, sys
doc = json.load(open(sys.argv[1]))
for item in doc["paths"].values():
    for op in item.values():
        if isinstance(op, dict):
            content = op.get("requestBody", {}).get("content", {})
            if len(content) > 1:
                content.pop("multipart/form-data", None)
json.dump(doc, open(sys.argv[2], "w"))
PY
"$out/venv/bin/openapi-generator-cli" generate -i "$out/openapi-json-bodies.json" -g typescript-fetch \
  -o clients/typescript-fetch/generated \
  --additional-properties=importFileExtension=.js,supportsES6=true >"$out/typescript-fetch.log" 2>&1 \
  || { tail -40 "$out/typescript-fetch.log" >&2; fail "openapi-generator (typescript-fetch) failed"; }

# Type-check both programs with the generated code and build them, in one tsc run:
# with --noEmitOnError it emits nothing unless `tsc --strict --noEmit` would pass
# (one run instead of two: tsc takes most of this script's time).
rm -rf clients/dist
(cd clients && npx --no-install tsc --strict --noEmitOnError) || fail "tsc --strict found errors (above)"

export TRELLIS_URL="http://127.0.0.1:$port"
TRELLIS_ADMIN_TOKEN=$("$bin" token "$work" --sub ci-admin --roles admin 2>"$work/token.log") \
  || { cat "$work/token.log" >&2; fail "trellis token"; }
export TRELLIS_ADMIN_TOKEN
node clients/dist/openapi-fetch/main.js || fail "the openapi-fetch program failed"
node clients/dist/typescript-fetch/main.js || fail "the typescript-fetch program failed"

stop_server
trap - EXIT
rm -rf "$work"
echo "   clients: openapi-fetch and typescript-fetch passed ($(($(date +%s) - started)) s)"
