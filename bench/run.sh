#!/usr/bin/env bash
# Throughput and memory benchmark: a snapshot of N GiB (incompressible, deterministic, generated
# on the fly by `atlas-archiver simulate`) moved from an HTTP URL on loopback into Garage, by
#   1. atlas-archiver `once` (through the Atlas simulator: the whole path),
#   2. rclone copyurl,
#   3. curl URL | aws s3 cp -,
#   4. the ceilings: curl URL > /dev/null, and a plain multipart upload of in-memory data;
# then the way back, from the bucket to local disk: atlas-archiver `restore --archive` and
# `restore --to`, against `aws s3 cp` and `rclone copy` of the same object.
# Rounds alternate the tools (A B C A B C ...). Every uploaded object's SHA-256 is checked against
# the source and the object deleted. Prints a table (median of the rounds).
#
# Usage: bench/run.sh [SIZE_GIB ...]            default: 1 8
#   ROUNDS=2                rounds per size
#   RSS_SIZES="1 8 32"      extra atlas-archiver-only runs to show that peak RSS stays flat
#   LATENCY="20 80"         latency runs (after the others; LATENCY_ONLY=1 for them alone): the
#                           snapshot URL behind examples/latency_proxy.rs at each RTT in ms (a
#                           WINDOW-byte window per connection, 4 MiB by default), `once` with
#                           atlas.download_connections = each of CONNECTIONS ("1 4 8"), and curl
#                           through the proxy (the one-connection ceiling), at the first size
#   QUICK=1                 CI mode: 1 GiB, atlas-archiver only (archive and restore); fails only if an object or file is wrong
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
W="${BENCH_WORKDIR:-/tmp/atlas-archiver-bench}"
mkdir -p "$W"
QUICK="${QUICK:-0}"
ROUNDS="${ROUNDS:-2}"
LATENCY="${LATENCY:-}"; CONNECTIONS="${CONNECTIONS:-1 4 8}"; WINDOW="${WINDOW:-4194304}"
PROXY_PORT="${PROXY_PORT:-18090}"
if [ "$QUICK" = 1 ]; then SIZES=(1); ROUNDS=1; RSS_SIZES=""; LATENCY=""; else SIZES=("${@:-1 8}"); SIZES=(${SIZES[*]}); RSS_SIZES="${RSS_SIZES-1 8 32}"; fi
SIM_PORT="${SIM_PORT:-18089}"

need() { command -v "$1" >/dev/null 2>&1; }
apt_install() { (apt-get update -qq || true) >/dev/null 2>&1; apt-get install -y -qq "$@" >/dev/null; }
[ -x /usr/bin/time ] || apt_install time
need curl || apt_install curl
if [ "$QUICK" != 1 ]; then
  need rclone || apt_install rclone
  if [ ! -x "$W/venv/bin/aws" ]; then
    python3 -m venv "$W/venv" >&2
    "$W/venv/bin/pip" install -q awscli >&2
  fi
fi

echo "== building (release)" >&2
cargo build --release --locked --bin atlas-archiver --example upload_ceiling --example latency_proxy >&2
BIN="$ROOT/target/release/atlas-archiver"
CEILING="$ROOT/target/release/examples/upload_ceiling"
PROXY="$ROOT/target/release/examples/latency_proxy"

echo "== starting Garage" >&2
eval "$(scripts/start-garage.sh)"
GARAGE_PID=$ATLAS_ARCHIVER_TEST_S3_PID
STARTED_GARAGE=$ATLAS_ARCHIVER_TEST_S3_STARTED
EP=$ATLAS_ARCHIVER_TEST_S3_ENDPOINT AK=$ATLAS_ARCHIVER_TEST_S3_ACCESS_KEY SK=$ATLAS_ARCHIVER_TEST_S3_SECRET_KEY B=$ATLAS_ARCHIVER_TEST_S3_BUCKET
SIM_PID="" PROXY_PID=""
cleanup() {
  [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null || true
  [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null || true
  [ "$STARTED_GARAGE" = 1 ] && kill "$GARAGE_PID" 2>/dev/null || true
}
trap cleanup EXIT
EMPTY=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
s3_curl() { curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user "$AK:$SK" -H "x-amz-content-sha256: $EMPTY" "$@"; }
object_sha() { s3_curl "$EP/$B/$1" | sha256sum | cut -d' ' -f1; }
# curl's SigV4 does not encode '/' in query values the way S3 expects: encode prefixes ourselves.
list_keys() { s3_curl "$EP/$B?list-type=2&prefix=$(printf '%s' "$1" | sed 's#/#%2F#g')" | grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g' || true; }
delete_prefix() {
  for k in $(list_keys "$1"); do
    s3_curl -X DELETE "$EP/$B/$k" -o /dev/null || true
  done
}

# start_sim SIZE [SIMULATE_ARGS...]
start_sim() {
  [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null || true
  local size=$1; shift
  "$BIN" --log-level warn simulate --listen "127.0.0.1:$SIM_PORT" --snapshot-size "${size}GiB" --snapshots 1 "$@" >"$W/sim.log" 2>&1 &
  SIM_PID=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$SIM_PORT/" && break; sleep 0.1; done
}
fresh_url() { python3 bench/snapshot_url.py "http://127.0.0.1:$SIM_PORT" 32b6e34b3d91647abb20e7b8 bench-flex; }

RESULTS="$W/results.tsv"; : >"$RESULTS"
delete_prefix bench/   # leftovers of an interrupted run
# measure TOOL SIZE CMD...: records wall, peak RSS (KiB), CPU seconds.
measure() {
  local tool=$1 size=$2; shift 2
  # Each tool starts with nothing dirty in the page cache: the write-back of what the previous
  # step wrote (Garage's data, a restored file) would otherwise be charged to whoever runs next.
  sync
  /usr/bin/time -f '%e %M %U %S' -o "$W/time.txt" "$@" >"$W/out.txt" 2>"$W/err.txt" || { echo "$tool failed:" >&2; tail -5 "$W/err.txt" >&2; return 1; }
  read -r wall rss user sys <"$W/time.txt"
  local cpu; cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')
  printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$size" "$wall" "$rss" "$cpu" >>"$RESULTS"
  awk -v t="$tool" -v n="$size" -v w="$wall" -v r="$rss" -v c="$cpu" \
    'BEGIN { printf "  %-22s %5s GiB  %7.2f s  %6.0f MiB/s  peak %5.0f MiB  cpu %6.2f s\n", t, n, w, n * 1024 / w, r / 1024, c }' >&2
}

# run_archiver SIZE ROUND [VARIANT]: `once` through the simulator with default settings, or with
# VARIANT "transfer only" (storage.validate_archives = false: the transfer path alone, the
# content validation being reported as the difference between the two rows), or
# "N connections" (atlas.download_connections = N, validation on).
write_config() {
  local dir=$1 prefix=$2 validate=${3:-true} connections=${4:-1}
  cat >"$dir/config.toml" <<EOF
[atlas]
base_url = "http://127.0.0.1:$SIM_PORT"
client_id = "mdb_sa_id_simulator"
client_secret = "mdb_sa_sk_simulator-secret"
poll_interval = "100ms"
download_connections = $connections
[storage]
bucket = "$B"
endpoint = "$EP"
region = "us-east-1"
prefix = "$prefix"
access_key_id = "$AK"
secret_access_key = "$SK"
validate_archives = $validate
[journal]
path = "journal.sqlite"
[[target]]
project_id = "32b6e34b3d91647abb20e7b8"
cluster = "bench-flex"
EOF
}

run_archiver() {
  local size=$1 round=$2 variant=${3:-} prefix="bench/archiver-$1-$2-$RANDOM/"
  local name=atlas-archiver validate=true connections=1
  case "$variant" in
    "") ;;
    *connection*) name="atlas-archiver ($variant)"; connections=${variant%% *} ;;
    *) name="atlas-archiver ($variant)"; validate=false ;;
  esac
  local dir="$W/run-$size-$round"; rm -rf "$dir"; mkdir -p "$dir"
  write_config "$dir" "$prefix" "$validate" "$connections"
  measure "$name" "$size" "$BIN" --log-level warn once --config "$dir/config.toml"
  local key; key=$(list_keys "$prefix" | grep '\.tar\.gz$')
  check "$key" atlas-archiver
  delete_prefix "$prefix"
}

check_file() {
  local got; got=$(sha256sum <"$1" | cut -d' ' -f1)
  if [ "$got" != "$EXPECTED" ]; then echo "WRONG FILE from $2: $1 has sha256 $got, the source $EXPECTED" >&2; exit 1; fi
  rm -f "$1"
}

# bench_restore SIZE ROUND: archives one snapshot (not timed), then gets it back with
# `restore --archive` (the verified .tar.gz), `restore --to` (unpacked), and the peers
# `aws s3 cp` and `rclone copy` of the same object; every file's SHA-256 is checked.
bench_restore() {
  local size=$1 round=$2 prefix="bench/restore-$1-$2-$RANDOM/"
  local dir="$W/restore-$size-$round"; rm -rf "$dir"; mkdir -p "$dir"
  write_config "$dir" "$prefix"
  "$BIN" --log-level warn once --config "$dir/config.toml" >/dev/null
  local key; key=$(list_keys "$prefix" | grep '\.tar\.gz$')
  local target=32b6e34b3d91647abb20e7b8/bench-flex
  measure "restore --archive" "$size" "$BIN" --log-level warn restore --config "$dir/config.toml" --target "$target" --latest --archive "$dir/out.tar.gz"
  check_file "$dir/out.tar.gz" "restore --archive"
  measure "restore --to" "$size" "$BIN" --log-level warn restore --config "$dir/config.toml" --target "$target" --latest --to "$dir/data"
  [ -f "$dir/data/WiredTiger" ] || { echo "restore --to left no WiredTiger file in $dir/data" >&2; exit 1; }
  rm -rf "$dir/data"
  if [ "$QUICK" != 1 ]; then
    measure "aws s3 cp" "$size" env AWS_ACCESS_KEY_ID="$AK" AWS_SECRET_ACCESS_KEY="$SK" AWS_DEFAULT_REGION=us-east-1 \
      "$W/venv/bin/aws" s3 cp "s3://$B/$key" "$dir/aws.tar.gz" --endpoint-url "$EP" --only-show-errors
    check_file "$dir/aws.tar.gz" "aws s3 cp"
    measure "rclone copy" "$size" env -u AWS_CA_BUNDLE RCLONE_CONFIG_G_TYPE=s3 RCLONE_CONFIG_G_PROVIDER=Other \
      RCLONE_CONFIG_G_ENDPOINT="$EP" RCLONE_CONFIG_G_ACCESS_KEY_ID="$AK" RCLONE_CONFIG_G_SECRET_ACCESS_KEY="$SK" \
      RCLONE_CONFIG_G_REGION=us-east-1 RCLONE_CONFIG_G_FORCE_PATH_STYLE=true rclone copy "g:$B/$key" "$dir/rclone/"
    check_file "$dir/rclone/$(basename "$key")" "rclone copy"
  fi
  delete_prefix "$prefix"
  rm -rf "$dir"
}

check() {
  local got; got=$(object_sha "$1")
  if [ "$got" != "$EXPECTED" ]; then echo "WRONG OBJECT from $2: $1 has sha256 $got, the source $EXPECTED" >&2; exit 1; fi
}

SIZES_MAIN=("${SIZES[@]}")
[ "${LATENCY_ONLY:-0}" = 1 ] && SIZES_MAIN=() && RSS_SIZES=""
for size in "${SIZES_MAIN[@]}"; do
  echo "== $size GiB" >&2
  start_sim "$size"
  url=$(fresh_url)
  EXPECTED=$(curl -s "$url" | sha256sum | cut -d' ' -f1)
  echo "  source sha256 $EXPECTED" >&2
  for round in $(seq "$ROUNDS"); do
    # The two atlas-archiver rows swap places every round: the first measurement of a round
    # runs slower on this machine (Garage's background work after the previous deletions).
    [ $((round % 2)) = 0 ] && [ "$QUICK" != 1 ] && run_archiver "$size" "$round" "transfer only"
    run_archiver "$size" "$round"
    [ "$QUICK" = 1 ] && continue
    [ $((round % 2)) = 1 ] && run_archiver "$size" "$round" "transfer only"
    key="bench/rclone-$size-$round"
    measure rclone "$size" env -u AWS_CA_BUNDLE RCLONE_CONFIG_G_TYPE=s3 RCLONE_CONFIG_G_PROVIDER=Other \
      RCLONE_CONFIG_G_ENDPOINT="$EP" RCLONE_CONFIG_G_ACCESS_KEY_ID="$AK" RCLONE_CONFIG_G_SECRET_ACCESS_KEY="$SK" \
      RCLONE_CONFIG_G_REGION=us-east-1 RCLONE_CONFIG_G_FORCE_PATH_STYLE=true rclone copyurl "$url" "g:$B/$key"
    check "$key" rclone; delete_prefix "$key"
    key="bench/awscli-$size-$round"
    measure "curl | aws s3 cp -" "$size" bash -c "curl -s '$url' | AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_DEFAULT_REGION=us-east-1 \
      '$W/venv/bin/aws' s3 cp - 's3://$B/$key' --endpoint-url '$EP' --expected-size $((size << 30)) --only-show-errors"
    check "$key" awscli; delete_prefix "$key"
    measure "ceiling: download" "$size" curl -s -o /dev/null "$url"
    measure "ceiling: upload" "$size" env AWS_ACCESS_KEY_ID="$AK" AWS_SECRET_ACCESS_KEY="$SK" "$CEILING" "$EP" "$B" "bench/ceiling-$size-$round" "${size}GiB"
  done
  for round in $(seq "$ROUNDS"); do
    bench_restore "$size" "$round"
  done
done
for size in $RSS_SIZES; do
  echo "== peak RSS of atlas-archiver at $size GiB" >&2
  start_sim "$size"
  EXPECTED=$(curl -s "$(fresh_url)" | sha256sum | cut -d' ' -f1)
  run_archiver "$size" rss
done

# The latency runs: the same snapshot, its URL behind the latency proxy (API calls stay direct).
LAT_RESULTS="$W/latency.tsv"; : >"$LAT_RESULTS"
MAIN_RESULTS=$RESULTS RESULTS="$W/latency-one.tsv"
for rtt in $LATENCY; do
  size=${SIZES[0]}
  echo "== latency: RTT $rtt ms, window $WINDOW bytes per connection, $size GiB" >&2
  start_sim "$size"
  EXPECTED=$(curl -s "$(fresh_url)" | sha256sum | cut -d' ' -f1)
  [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null || true
  "$PROXY" "127.0.0.1:$PROXY_PORT" "127.0.0.1:$SIM_PORT" "$rtt" "$WINDOW" >"$W/proxy.log" 2>&1 &
  PROXY_PID=$!
  start_sim "$size" --range --download-via "127.0.0.1:$PROXY_PORT"
  for _ in $(seq 100); do grep -q listening "$W/proxy.log" && break; sleep 0.1; done
  : >"$RESULTS"
  measure "curl (1 connection)" "$size" curl -s -o /dev/null "$(fresh_url)"
  for c in $CONNECTIONS; do
    run_archiver "$size" "rtt$rtt" "$c connection$([ "$c" = 1 ] || echo s)"
  done
  sed "s/^/$rtt\t/" "$RESULTS" >>"$LAT_RESULTS"
done
RESULTS=$MAIN_RESULTS
if [ -n "$LATENCY" ]; then
  echo "| RTT | size | tool | wall s | MiB/s | peak RSS MiB | CPU s/GiB |"
  echo "|---|---|---|---|---|---|---|"
  awk -F'\t' '{ printf "| %s ms | %s GiB | %s | %.2f | %.0f | %.0f | %.2f |\n", $1, $3, $2, $4, $3 * 1024 / $4, $5 / 1024, $6 / $3 }' "$LAT_RESULTS"
  [ "${LATENCY_ONLY:-0}" = 1 ] && exit 0
fi

python3 - "$RESULTS" <<'EOF'
import statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    tool, size, wall, rss, cpu = line.rstrip("\n").split("\t")
    rows[(int(size), tool)].append((float(wall), int(rss), float(cpu)))
sizes = sorted({s for s, _ in rows})
# (tools, the peers they are compared with, the ceilings): archiving, then restoring.
groups = [
    (["atlas-archiver", "atlas-archiver (transfer only)", "rclone", "curl | aws s3 cp -", "ceiling: download", "ceiling: upload"],
     ("rclone", "curl | aws s3 cp -"), ("ceiling: download", "ceiling: upload")),
    (["restore --archive", "restore --to", "aws s3 cp", "rclone copy"], ("aws s3 cp", "rclone copy"), ()),
]
print("| size | tool | wall s | MiB/s | peak RSS MiB | CPU s | CPU s/GiB | vs best peer | vs ceiling |")
print("|---|---|---|---|---|---|---|---|---|")
for size in sizes:
    med = {t: (statistics.median(w for w, _, _ in v), max(r for _, r, _ in v), statistics.median(c for _, _, c in v)) for (s, t), v in rows.items() if s == size}
    mibs = {t: size * 1024 / m[0] for t, m in med.items()}
    for tools, peer_names, ceiling_names in groups:
        peers = [mibs[t] for t in peer_names if t in mibs]
        ceil = [mibs[t] for t in ceiling_names if t in mibs]
        best_peer, ceiling = (max(peers) if peers else None), (min(ceil) if ceil else None)
        for tool in tools:
            if tool not in med: continue
            wall, rss, cpu = med[tool]
            vp = f"{mibs[tool] / best_peer:.2f}x" if best_peer and not tool.startswith("ceiling") else ""
            vc = f"{mibs[tool] / ceiling:.0%}" if ceiling and not tool.startswith("ceiling") else ""
            print(f"| {size} GiB | {tool} | {wall:.2f} | {mibs[tool]:.0f} | {rss / 1024:.0f} | {cpu:.2f} | {cpu / size:.2f} | {vp} | {vc} |")
EOF
