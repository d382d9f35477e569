# Contract tests: schemathesis (PyPI) against the root project's /openapi.json, as an
# administrator and as a contractor. Every check runs except positive_data_acceptance
# (generated bodies name records that do not exist, which the API rightly refuses).
# Source it from .ci/run after the debug build; it needs `python3 -m pip`.
# Usage: run_schemathesis EXAMPLES [more schemathesis options]
run_schemathesis() {
  local examples=$1
  shift
  if ! python3 -c 'import schemathesis' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check 'schemathesis>=4.32,<5'
  fi
  local bin work port pid
  bin=target/debug/trellis
  work=$(mktemp -d /tmp/trellis-st.XXXXXX)
  cp -r models policies workflows trellis.yaml "$work/"
  # For this run only: schemathesis sends thousands of requests (and signups) from
  # one address with one token per role, which the default abuse limits
  # (docs/limits.md) would rightly answer 429.
  cat >>"$work/trellis.yaml" <<'YAML'
limits:
  requests: { per_second: 1000000, burst: 1000000 }
  signup: { per_minute: 1000000 }
YAML
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export TRELLIS_JWT_SECRET=schemathesis-secret-schemathesis-secret
  "$bin" serve "$work" --port "$port" --no-watch --database-url "sqlite://$work/st.db" >"$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$port/_/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  local status=0 total=0 role token out cases
  for role in admin contractor; do
    token=$("$bin" token --dir "$work" --sub "st-$role" --roles "$role" 2>/dev/null)
    out="$work/st-$role.log"
    if ! schemathesis run "http://127.0.0.1:$port/openapi.json" \
        -H "Authorization: Bearer $token" \
        --checks all --exclude-checks positive_data_acceptance \
        --max-examples "$examples" --seed 20261127 --workers 2 \
        --request-timeout 30 "$@" >"$out" 2>&1; then
      status=1
      echo "FATAL: schemathesis found problems as $role:" >&2
      tail -80 "$out" >&2
    fi
    cases=$(grep -Eo '[0-9]+ generated' "$out" | tail -1 | grep -Eo '[0-9]+' || echo 0)
    echo "   schemathesis as $role: $cases generated cases"
    total=$((total + cases))
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ "$status" != 0 ]; then
    echo "server log:" >&2; tail -40 "$work/serve.log" >&2
    return 1
  fi
  echo "   schemathesis: $total generated cases, every check passed"
  rm -rf "$work"
}
