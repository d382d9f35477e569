#!/usr/bin/env bash
# The peak resident set of `trellis serve` (release build) while it receives one
# 1 GiB multipart upload into a local-folder file field (docs/files.md, "Memory").
# Prints the answer's status and time and VmHWM (the process's peak RSS) from
# /proc/PID/status. Usage: bash bench/files_rss.sh [SIZE_MIB]   (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
TARGET=${CARGO_TARGET_DIR:-target}
# TRELLIS_BIN: another build to measure (e.g. target/debug/trellis).
if [ -z "${TRELLIS_BIN:-}" ]; then
  cargo build --release --quiet --bin trellis
fi
BIN=${TRELLIS_BIN:-$TARGET/release/trellis}

WORK=$(mktemp -d /tmp/trellis-files-rss.XXXXXX)
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/project/models"
printf 'name: rss\n' > "$WORK/project/trellis.yaml"
cat > "$WORK/project/models/blob.yaml" <<'YAML'
entity: blob
fields:
  title: string
  content: { type: file, max_size: 1GiB }
YAML
# Random bytes (incompressible), written once.
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > "$WORK/big.bin"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN" serve "$WORK/project" --port "$PORT" --no-watch >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT/_/live" 2>/dev/null && break
  sleep 0.1
done
echo "before: $(grep VmRSS /proc/$SERVER/status)"
curl -sS -o "$WORK/answer.json" -w 'upload: HTTP %{http_code}, %{size_upload} bytes in %{time_total} s\n' \
  -F title=big -F "content=@$WORK/big.bin;filename=big.bin" "http://127.0.0.1:$PORT/api/blobs"
head -c 400 "$WORK/answer.json"; echo
echo "peak:   $(grep VmHWM /proc/$SERVER/status)"
