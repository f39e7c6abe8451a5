#!/usr/bin/env bash
# Starts a single-node Garage (crates.io `garage` 2.5.0, AGPL-3.0) on loopback, building it with
# `cargo install` on first use (20-30 min on 2 cores; cached in ~/.cargo/bin afterwards).
# Prints `export` lines for the test suite. Adapted from shared/research/s3-servers.md.
# Usage: eval "$(scripts/start-garage.sh)"; stop: kill "$(cat "$W/pid")"
set -euo pipefail
W="${S3_WORKDIR:-/tmp/atlas-archiver-garage}"; PORT="${S3_PORT:-19900}"; BUCKET="${S3_BUCKET:-test-bucket}"
AK="${S3_ACCESS_KEY:-GK0123456789abcdef01234567}"   # "GK" + 24 hex
SK="${S3_SECRET_KEY:-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef}"   # 64 hex
RPC="${GARAGE_RPC_PORT:-19901}"; ADM="${GARAGE_ADMIN_PORT:-19903}"
mkdir -p "$W"
BIN="${GARAGE_BIN:-$(command -v garage || true)}"
[ -n "$BIN" ] || { [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/garage" ] && BIN="${CARGO_HOME:-$HOME/.cargo}/bin/garage"; } || true
if [ -z "$BIN" ] || ! "$BIN" --version 2>/dev/null | grep -q "[:v]${GARAGE_VERSION:-2.5.0}\b"; then
  echo "building garage ${GARAGE_VERSION:-2.5.0} (first time only, 20-30 min)..." >&2
  cargo install garage --version "${GARAGE_VERSION:-2.5.0}" --locked >&2
  BIN="${CARGO_HOME:-$HOME/.cargo}/bin/garage"
fi
STARTED=0
if ! { [ -f "$W/pid" ] && kill -0 "$(cat "$W/pid")" 2>/dev/null; }; then
  STARTED=1
  rm -rf "$W/meta" "$W/data"
  cat >"$W/garage.toml" <<CONF
metadata_dir = "$W/meta"
data_dir = "$W/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$RPC"
rpc_public_addr = "127.0.0.1:$RPC"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$PORT"
[admin]
api_bind_addr = "127.0.0.1:$ADM"
CONF
  GARAGE_DEFAULT_ACCESS_KEY="$AK" GARAGE_DEFAULT_SECRET_KEY="$SK" GARAGE_DEFAULT_BUCKET="$BUCKET" \
    nohup "$BIN" -c "$W/garage.toml" server --single-node --default-bucket >"$W/server.log" 2>&1 &
  echo $! >"$W/pid"
fi
for _ in $(seq 150); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADM/health")" = 200 ] && break; sleep .2
done
code=000
for _ in $(seq 50); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -I --aws-sigv4 aws:amz:us-east-1:s3 --user "$AK:$SK" \
    -H 'x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' \
    "http://127.0.0.1:$PORT/$BUCKET")
  [ "$code" = 200 ] && break; sleep .2
done
[ "$code" = 200 ] || { echo "garage not ready (HEAD bucket: $code)" >&2; tail -20 "$W/server.log" >&2; exit 1; }
cat <<ENV
export ATLAS_ARCHIVER_TEST_S3_NAME=garage
export ATLAS_ARCHIVER_TEST_S3_ENDPOINT=http://127.0.0.1:$PORT
export ATLAS_ARCHIVER_TEST_S3_ACCESS_KEY=$AK ATLAS_ARCHIVER_TEST_S3_SECRET_KEY=$SK
export ATLAS_ARCHIVER_TEST_S3_BUCKET=$BUCKET ATLAS_ARCHIVER_TEST_S3_PID=$(cat "$W/pid") ATLAS_ARCHIVER_TEST_S3_STARTED=$STARTED
ENV
