#!/usr/bin/env bash
# Scale benchmark: N Flex targets x 8 small snapshots, through the Atlas simulator
# (`atlas-archiver simulate --clusters N`) into a real S3 server (moto by default, or Garage), in
#   1. one `once` on an empty journal (every snapshot archived),
#   2. a second `once` (nothing new: the steady state of a schedule),
#   3. one daemon firing (`run` with schedule.run_on_first_start, an empty journal and a new
#      prefix), timed from start until /metrics counts every snapshot archived;
# for each N. Prints a table: wall time, time per snapshot, Atlas API calls per snapshot, peak RSS.
# The objects are counted in the bucket after each archiving pass: a pass that archived fewer
# than N x 8 fails the script (a correctness check, never a timed assertion).
#
# Usage: bench/scale.sh [N ...]        default: 10 50 100 200
#   STORE=moto|garage   the S3 server (default moto)
#   SNAPSHOTS=8         snapshots per target
#   SIZE=256KiB         size of each snapshot
#   POLL=200ms          atlas.poll_interval (the simulator's jobs are ready on the second poll)
#   TRANSFERS=8         storage.max_concurrent_transfers
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
W="${BENCH_WORKDIR:-/tmp/atlas-archiver-scale}"
rm -rf "$W"; mkdir -p "$W"
read -r -a COUNTS <<<"${*:-10 50 100 200}"
STORE="${STORE:-moto}"; SNAPSHOTS="${SNAPSHOTS:-8}"; SIZE="${SIZE:-256KiB}"
POLL="${POLL:-200ms}"; TRANSFERS="${TRANSFERS:-8}"
SIM_PORT="${SIM_PORT:-18189}"; HTTP_PORT="${HTTP_PORT:-19287}"
PROJECT=32b6e34b3d91647abb20e7b8

[ -x /usr/bin/time ] || { (apt-get update -qq || true) >/dev/null 2>&1; apt-get install -y -qq time >/dev/null; }
echo "== building (release)" >&2
cargo build --release --locked --bin atlas-archiver >&2
BIN="$ROOT/target/release/atlas-archiver"

echo "== starting $STORE" >&2
eval "$(scripts/start-"$STORE".sh)"
STORE_PID=$ATLAS_ARCHIVER_TEST_S3_PID STARTED_STORE=$ATLAS_ARCHIVER_TEST_S3_STARTED
EP=$ATLAS_ARCHIVER_TEST_S3_ENDPOINT AK=$ATLAS_ARCHIVER_TEST_S3_ACCESS_KEY SK=$ATLAS_ARCHIVER_TEST_S3_SECRET_KEY B=$ATLAS_ARCHIVER_TEST_S3_BUCKET
SIM_PID="" DAEMON_PID=""
cleanup() {
  for p in "$SIM_PID" "$DAEMON_PID"; do if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi; done
  if [ "$STARTED_STORE" = 1 ]; then kill "$STORE_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

# Objects under a prefix, counted with the SDK-free S3 API (ListObjectsV2, paged).
count_keys() {
  python3 - "$EP" "$B" "$1" "$AK" "$SK" <<'PY'
import datetime, hashlib, hmac, sys, urllib.parse, urllib.request, re
ep, bucket, prefix, ak, sk = sys.argv[1:]
host = urllib.parse.urlparse(ep).netloc
def sign(key, msg): return hmac.new(key, msg.encode(), hashlib.sha256).digest()
def get(query):
    now = datetime.datetime.now(datetime.timezone.utc)
    amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    qs = "&".join(f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}" for k, v in sorted(query.items()))
    empty = hashlib.sha256(b"").hexdigest()
    canon = f"GET\n/{bucket}\n{qs}\nhost:{host}\nx-amz-content-sha256:{empty}\nx-amz-date:{amz}\n\nhost;x-amz-content-sha256;x-amz-date\n{empty}"
    scope = f"{day}/us-east-1/s3/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz}\n{scope}\n{hashlib.sha256(canon.encode()).hexdigest()}"
    k = sign(sign(sign(sign(("AWS4" + sk).encode(), day), "us-east-1"), "s3"), "aws4_request")
    auth = f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()}"
    req = urllib.request.Request(f"{ep}/{bucket}?{qs}", headers={"x-amz-date": amz, "x-amz-content-sha256": empty, "Authorization": auth})
    return urllib.request.urlopen(req).read().decode()
n, token = 0, None
while True:
    q = {"list-type": "2", "prefix": prefix}
    if token: q["continuation-token"] = token
    body = get(q)
    n += len(re.findall(r"<Key>", body))
    m = re.search(r"<NextContinuationToken>([^<]*)</NextContinuationToken>", body)
    if not m: break
    token = m.group(1)
print(n)
PY
}
observed() { curl -sf "http://127.0.0.1:$SIM_PORT/_simulator/observed"; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

write_config() { # N prefix journal
  cat <<CONF
[atlas]
base_url = "http://127.0.0.1:$SIM_PORT"
client_id = "$CLIENT_ID"
client_secret = "$CLIENT_SECRET"
poll_interval = "$POLL"
[storage]
bucket = "$B"
endpoint = "$EP"
access_key_id = "$AK"
secret_access_key = "$SK"
prefix = "$2"
max_concurrent_transfers = $TRANSFERS
[journal]
path = "$3"
[schedule]
cron = "0 0 1 1 *"
run_on_first_start = true
[server]
listen = "127.0.0.1:$HTTP_PORT"
CONF
  for i in $(seq 1 "$1"); do
    if [ "$1" = 1 ]; then name=bench-flex; else name=$(printf 'bench-flex-%04d' "$i"); fi
    printf '[[target]]\nproject_id = "%s"\ncluster = "%s"\nkind = "flex"\n' "$PROJECT" "$name"
  done
}

timed() { # out-file cmd...: wall seconds, peak RSS KiB, CPU seconds
  /usr/bin/time -o "$1" -f "%e %M %U %S" "${@:2}" >"$W/last.out" 2>"$W/last.err" \
    || { tail -5 "$W/last.err" >&2; return 1; }
}

rows=()
for N in "${COUNTS[@]}"; do
  total=$((N * SNAPSHOTS))
  echo "== $N targets x $SNAPSHOTS snapshots of $SIZE" >&2
  "$BIN" simulate --listen "127.0.0.1:$SIM_PORT" --snapshot-size "$SIZE" --snapshots "$SNAPSHOTS" --clusters "$N" >"$W/sim.out" 2>"$W/sim.err" &
  SIM_PID=$!
  for _ in $(seq 100); do observed >/dev/null 2>&1 && break; sleep .1; done
  CLIENT_ID=$(sed -n 's/^client_id = "\(.*\)"$/\1/p' "$W/sim.out")
  CLIENT_SECRET=$(sed -n 's/^client_secret = "\(.*\)"$/\1/p' "$W/sim.out")
  write_config "$N" "scale-$N/once/" "$W/once-$N.sqlite" >"$W/once-$N.toml"
  write_config "$N" "scale-$N/daemon/" "$W/daemon-$N.sqlite" >"$W/daemon-$N.toml"

  # 1. one `once`, empty journal.
  before=$(observed)
  timed "$W/t1" "$BIN" once --config "$W/once-$N.toml"
  after=$(observed)
  read -r wall1 rss1 u1 s1 <"$W/t1"
  api1=$(( $(field "$after" api_requests) - $(field "$before" api_requests) ))
  got=$(count_keys "scale-$N/once/")
  [ "$got" = $((total * 2)) ] || { echo "once: $got objects under scale-$N/once/, expected $((total * 2)) (archives and manifests)" >&2; exit 1; }

  # 2. a second `once`: nothing new.
  before=$(observed)
  timed "$W/t2" "$BIN" once --config "$W/once-$N.toml"
  after=$(observed)
  read -r wall2 _ _ _ <"$W/t2"
  api2=$(( $(field "$after" api_requests) - $(field "$before" api_requests) ))
  jsize=$(stat -c %s "$W/once-$N.sqlite")

  # 3. one daemon firing, empty journal, new prefix.
  before=$(observed)
  start=$(date +%s.%N)
  "$BIN" run --config "$W/daemon-$N.toml" >"$W/daemon.out" 2>"$W/daemon.err" &
  DAEMON_PID=$!
  done_at=""
  for _ in $(seq 6000); do
    archived=$({ curl -sf "http://127.0.0.1:$HTTP_PORT/metrics" 2>/dev/null || true; } \
      | awk '/^atlas_archiver_snapshots_archived_total/ { s += $NF } END { print s + 0 }')
    if [ "$archived" -ge "$total" ]; then done_at=$(date +%s.%N); break; fi
    kill -0 "$DAEMON_PID" 2>/dev/null || { tail -5 "$W/daemon.err" >&2; exit 1; }
    sleep .1
  done
  [ -n "$done_at" ] || { echo "the daemon did not archive $total snapshots in 10 minutes" >&2; exit 1; }
  rss3=$(awk '/VmHWM/ { print $2 }' "/proc/$DAEMON_PID/status")
  after=$(observed)
  kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true; DAEMON_PID=""
  wall3=$(python3 -c "print(f'{$done_at - $start:.2f}')")
  api3=$(( $(field "$after" api_requests) - $(field "$before" api_requests) ))
  got=$(count_keys "scale-$N/daemon/")
  [ "$got" = $((total * 2)) ] || { echo "daemon: $got objects under scale-$N/daemon/, expected $((total * 2))" >&2; exit 1; }

  kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=""
  rows+=("$(python3 - "$N" "$total" "$wall1" "$rss1" "$u1" "$s1" "$api1" "$wall2" "$api2" "$jsize" "$wall3" "$rss3" "$api3" <<'PY'
import sys
n, total, wall1, rss1, u1, s1, api1, wall2, api2, jsize, wall3, rss3, api3 = sys.argv[1:]
total = int(total); n = int(n)
print(f"| {n} | {total} | {float(wall1):.1f} s | {1000*float(wall1)/total:.1f} ms | {int(api1)/total:.2f} | "
      f"{(float(u1)+float(s1))*1000/total:.1f} ms | {int(rss1)/1024:.0f} MiB | {float(wall2):.2f} s | "
      f"{1000*float(wall2)/n:.1f} ms | {int(api2)/n:.1f} | {int(jsize)/1024:.0f} KiB | {float(wall3):.1f} s | "
      f"{1000*float(wall3)/total:.1f} ms | {int(api3)/total:.2f} | {int(rss3)/1024:.0f} MiB |")
PY
)")
done

echo
echo "$STORE, $SNAPSHOTS snapshots of $SIZE per target, poll_interval $POLL, max_concurrent_transfers $TRANSFERS"
echo
echo "| targets | snapshots | once: wall | per snapshot | Atlas calls per snapshot | CPU per snapshot | peak RSS | again (nothing new): wall | per target | Atlas calls per target | journal | daemon firing: wall | per snapshot | Atlas calls per snapshot | peak RSS |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
