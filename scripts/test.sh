#!/usr/bin/env bash
# The test command (README, .ci/run): on a fresh machine it installs and starts the two real
# S3-compatible servers the suite runs against, moto (PyPI) and Garage (crates.io), then runs
# the whole suite against moto and the S3 suites again against Garage. Servers this script
# started are stopped at exit; servers already running are reused and left running.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
for tool in curl tmux chromium; do
    command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null; }
done
# The status page's test loads it in this browser; set, it cannot be skipped.
export ATLAS_ARCHIVER_TEST_BROWSER="${ATLAS_ARCHIVER_TEST_BROWSER:-chromium}"
# The email test's SMTP server (tests/fixtures/smtp_server.py) runs on aiosmtpd from PyPI.
SMTP_VENV="${SMTP_VENV:-/tmp/atlas-archiver-smtp/venv}"
if [ ! -x "$SMTP_VENV/bin/python" ] || ! "$SMTP_VENV/bin/python" -c "import aiosmtpd" 2>/dev/null; then
    python3 -m venv "$SMTP_VENV"
    "$SMTP_VENV/bin/pip" install -q "aiosmtpd==1.4.6"
fi
export ATLAS_ARCHIVER_TEST_SMTP_PYTHON="$SMTP_VENV/bin/python"

echo "== systemd unit sandboxing"
scripts/check-systemd-unit.sh

echo "== alert rules (promtool check rules; promtool test rules: a firing and a quiet case per rule)"
command -v promtool >/dev/null || { apt-get update -qq && apt-get install -y -qq prometheus >/dev/null; }
promtool check rules deploy/prometheus/alerts.yaml
(cd deploy/prometheus && promtool test rules alerts.test.yaml)
python3 -m json.tool deploy/grafana/atlas-archiver.json >/dev/null

echo "== Kubernetes manifests (kubernetes-validate --strict; rendered with kubectl kustomize when present)"
scripts/check-kubernetes.sh

# The test builds carry the fault-injection points the reliability suite needs; release builds
# (`cargo build --release`) never do.
FEATURES=(--features fault-injection)

echo "== building tests"
cargo build --workspace --all-targets --locked "${FEATURES[@]}"

echo "== starting moto"
eval "$(scripts/start-moto.sh)"
[ "$ATLAS_ARCHIVER_TEST_S3_STARTED" = 1 ] && pids+=("$ATLAS_ARCHIVER_TEST_S3_PID")
echo "== cargo test (all suites, S3 server: moto)"
cargo test --locked --workspace --all-targets "${FEATURES[@]}"

echo "== starting Garage"
eval "$(scripts/start-garage.sh)"
[ "$ATLAS_ARCHIVER_TEST_S3_STARTED" = 1 ] && pids+=("$ATLAS_ARCHIVER_TEST_S3_PID")
echo "== cargo test (S3 end-to-end, dedicated, discovery, restore, prune, immutability, preflight, daemon and reliability suites, S3 server: Garage)"
cargo test --locked "${FEATURES[@]}" --test e2e --test dedicated --test discover --test restore --test prune --test immutability --test preflight --test daemon --test reliability

echo "== short benchmark (1 GiB through atlas-archiver into Garage; fails only if the object is wrong)"
QUICK=1 bench/run.sh

echo "== release tarball (scripts/release.sh: its SHA256SUMS checked, the packaged binary run)"
dist=$(mktemp -d)
scripts/release.sh "$dist"
(cd "$dist" && sha256sum -c SHA256SUMS)
tar -xzf "$dist"/atlas-archiver-*.tar.gz -C "$dist"
"$dist"/atlas-archiver-*/atlas-archiver --version
bash -n "$dist"/atlas-archiver-*/completions/atlas-archiver.bash
rm -rf "$dist"
