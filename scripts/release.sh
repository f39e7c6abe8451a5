#!/usr/bin/env bash
# Release build: dist/atlas-archiver-<version>-<target>.tar.gz for the host's target, and for
# x86_64-unknown-linux-musl (a static binary) when that Rust target is installed
# (`rustup target add x86_64-unknown-linux-musl`, plus musl-tools), each holding the binary,
# shell completions, manual pages, the systemd unit, the example config, the IAM policy, LICENSE,
# README and CHANGELOG; and dist/SHA256SUMS over the tarballs.
# Usage: scripts/release.sh [DIST_DIR]     Check: (cd dist && sha256sum -c SHA256SUMS)
set -euo pipefail
cd "$(dirname "$0")/.."
dist="${1:-dist}"
mkdir -p "$dist"
dist="$(cd "$dist" && pwd)"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
host=$(rustc -vV | sed -n 's/^host: //p')
targets=("$host")
if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl && command -v musl-gcc >/dev/null; then
  targets+=(x86_64-unknown-linux-musl)
else
  echo "note: x86_64-unknown-linux-musl is not installed here; building $host only" >&2
fi
tarballs=()
for target in "${targets[@]}"; do
  if [ "$target" = "$host" ]; then
    cargo build --release --locked --bin atlas-archiver >&2
    bin=target/release/atlas-archiver
  else
    cargo build --release --locked --bin atlas-archiver --target "$target" >&2
    bin="target/$target/release/atlas-archiver"
  fi
  name="atlas-archiver-$version-$target"
  stage=$(mktemp -d)
  root="$stage/$name"
  mkdir -p "$root/completions" "$root/man"
  install -m 755 "$bin" "$root/atlas-archiver"
  strip "$root/atlas-archiver" 2>/dev/null || true
  "$root/atlas-archiver" completions bash > "$root/completions/atlas-archiver.bash"
  "$root/atlas-archiver" completions zsh > "$root/completions/_atlas-archiver"
  "$root/atlas-archiver" completions fish > "$root/completions/atlas-archiver.fish"
  "$root/atlas-archiver" man --dir "$root/man"
  cp LICENSE README.md CHANGELOG.md systemd/atlas-archiver.service \
     config/atlas-archiver.example.toml docs/iam-policy.json "$root/"
  tar -C "$stage" --owner=0 --group=0 --sort=name -czf "$dist/$name.tar.gz" "$name"
  rm -rf "$stage"
  tarballs+=("$name.tar.gz")
  echo "built $dist/$name.tar.gz" >&2
done
(cd "$dist" && sha256sum "${tarballs[@]}" > SHA256SUMS)
echo "wrote $dist/SHA256SUMS" >&2
