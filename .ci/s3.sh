# Starts a throwaway S3-compatible server (moto's server mode, pinned, from PyPI)
# on a free loopback port, with a bucket for the tests.
# Source it: it exports TRELLIS_TEST_S3_URL (the endpoint, with the bucket as its
# path: http://127.0.0.1:PORT/BUCKET) and the AWS_* credentials moto accepts, and
# defines stop_s3. Installs moto into a virtualenv under target/ (kept between
# runs). Fails loudly.

S3_MOTO_VERSION=5.2.5
S3_VENV=${S3_VENV:-target/s3-venv}
if ! "$S3_VENV/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$S3_MOTO_VERSION')" 2>/dev/null; then
  echo "== installing moto[server]==$S3_MOTO_VERSION into $S3_VENV"
  python3 -m venv "$S3_VENV" || { echo "FATAL: cannot create a Python virtualenv for moto (python3-venv)" >&2; exit 1; }
  "$S3_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$S3_MOTO_VERSION" || {
    echo "FATAL: cannot install moto[server]==$S3_MOTO_VERSION from PyPI; the S3 tests cannot run" >&2; exit 1; }
fi

S3_TMP=$(mktemp -d /tmp/trellis-s3.XXXXXX)
S3_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$S3_VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$S3_TMP/server.log" 2>&1 &
S3_PID=$!

stop_s3() {
  kill "$S3_PID" 2>/dev/null || true
  wait "$S3_PID" 2>/dev/null || true
  rm -rf "$S3_TMP"
}

# HTTP with Python's standard library (no curl needed): GET or PUT a URL, fail on an error status.
s3_http() {
  python3 -c 'import sys, urllib.request as u; u.urlopen(u.Request(sys.argv[2], method=sys.argv[1]), timeout=5)' "$1" "$2"
}

for _ in $(seq 1 100); do
  if s3_http GET "http://127.0.0.1:$S3_PORT/moto-api/" 2>/dev/null; then break; fi
  if ! kill -0 "$S3_PID" 2>/dev/null; then
    echo "FATAL: the S3 server (moto) exited:" >&2; cat "$S3_TMP/server.log" >&2; exit 1
  fi
  sleep 0.2
done
# The bucket: a plain path-style PUT (moto accepts any credentials).
s3_http PUT "http://127.0.0.1:$S3_PORT/trellis-test" || {
  echo "FATAL: cannot create the test bucket on the S3 server:" >&2; cat "$S3_TMP/server.log" >&2; exit 1; }

export AWS_ACCESS_KEY_ID=trellis-test AWS_SECRET_ACCESS_KEY=trellis-test
export TRELLIS_TEST_S3_URL="http://127.0.0.1:$S3_PORT/trellis-test"
echo "== S3 server (moto $S3_MOTO_VERSION) running on 127.0.0.1:$S3_PORT, bucket trellis-test"
