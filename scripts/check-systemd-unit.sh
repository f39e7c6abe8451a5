#!/usr/bin/env bash
# Prints the systemd sandboxing exposure of systemd/atlas-archiver.service and fails above 2.0.
# Installs systemd's tools from Debian's packages when systemd-analyze is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v systemd-analyze >/dev/null; then
  apt-get update -qq && apt-get install -y -qq systemd >/dev/null
fi
out=$(systemd-analyze security --offline=true --no-pager ./systemd/atlas-archiver.service 2>&1) || true
figure=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for atlas-archiver.service: \([0-9.]*\).*/\1/p')
if [ -z "$figure" ]; then
  printf '%s\n' "$out" >&2
  echo "could not read the exposure level" >&2
  exit 1
fi
echo "systemd-analyze security: atlas-archiver.service exposure $figure (limit 2.0)"
awk -v f="$figure" 'BEGIN { exit !(f <= 2.0) }' || { printf '%s\n' "$out" | grep -v '^✓' >&2; exit 1; }
