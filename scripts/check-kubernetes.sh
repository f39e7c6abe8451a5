#!/usr/bin/env bash
# Validates the Kubernetes manifests against the Kubernetes schemas (kubernetes-validate from PyPI,
# strict: unknown fields refused), installing it into a venv on first use. With kubectl on the
# PATH, the two kustomizations are rendered and the rendered output is validated too.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${K8S_VENV:-/tmp/atlas-archiver-k8s/venv}"
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION:-1.37.0}" >&2
fi
files=(deploy/kubernetes/base/common.yaml deploy/kubernetes/sidecar/deployment.yaml deploy/kubernetes/standalone/deployment.yaml)
if command -v kubectl >/dev/null; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  for k in sidecar standalone; do
    kubectl kustomize "deploy/kubernetes/$k" > "$out/$k.yaml"
    files+=("$out/$k.yaml")
  done
else
  echo "kubectl not found: the kustomizations are not rendered; their files are validated one by one"
fi
"$VENV/bin/kubernetes-validate" --strict --quiet "${files[@]}"
echo "kubernetes-validate --strict: ${#files[@]} files valid"
