#!/usr/bin/env bash
# Starts moto's S3 server (PyPI moto[server]) on loopback, installing it into a venv on first use.
# Prints `export` lines for the test suite. Adapted from shared/research/s3-servers.md.
# Usage: eval "$(scripts/start-moto.sh)"; stop: kill "$(cat "$W/pid")"
set -euo pipefail
W="${S3_WORKDIR:-/tmp/atlas-archiver-moto}"; PORT="${S3_PORT:-19000}"; BUCKET="${S3_BUCKET:-test-bucket}"
AK="${S3_ACCESS_KEY:-testkey}"; SK="${S3_SECRET_KEY:-testsecret}"; VENV="${MOTO_VENV:-$W/venv}"
mkdir -p "$W"
if [ ! -x "$VENV/bin/moto_server" ]; then   # ~45-85 s, 317 MB venv
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q "moto[server]==${MOTO_VERSION:-5.2.5}" >&2
fi
STARTED=0
if ! { [ -f "$W/pid" ] && kill -0 "$(cat "$W/pid")" 2>/dev/null; }; then
  STARTED=1
  nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$W/server.log" 2>&1 &
  echo $! >"$W/pid"
fi
for _ in $(seq 150); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/moto-api/" && break; sleep .2; done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/moto-api/" || { tail -20 "$W/server.log" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --aws-sigv4 aws:amz:us-east-1:s3 --user "$AK:$SK" \
  -H 'x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' \
  "http://127.0.0.1:$PORT/$BUCKET")
case "$code" in 200|409) ;; *) echo "create bucket: HTTP $code" >&2; exit 1;; esac
cat <<ENV
export ATLAS_ARCHIVER_TEST_S3_NAME=moto
export ATLAS_ARCHIVER_TEST_S3_ENDPOINT=http://127.0.0.1:$PORT
export ATLAS_ARCHIVER_TEST_S3_ACCESS_KEY=$AK ATLAS_ARCHIVER_TEST_S3_SECRET_KEY=$SK
export ATLAS_ARCHIVER_TEST_S3_BUCKET=$BUCKET ATLAS_ARCHIVER_TEST_S3_PID=$(cat "$W/pid") ATLAS_ARCHIVER_TEST_S3_STARTED=$STARTED
ENV
