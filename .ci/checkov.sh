#!/usr/bin/env bash
# Static security scan of the rendered Kubernetes manifests with checkov.
#
# checkov does not fit in the project's .venv (it downgrades packaging and
# others), so it gets a virtual environment of its own: .venv-checkov.
# Each overlay under manifests/overlays/ is rendered with `kubectl kustomize`
# and scanned as one file, and so is each of dev and prod with components/spark
# composed in (as tests/unit/test_manifests.py renders them). A check that cannot apply is skipped in the
# manifest itself, on the object, with a reason:
#   metadata.annotations: checkov.io/skipN: CKV_K8S_XX=<justification>
# Exits non-zero when any overlay fails to render, has a failed check, or
# checkov does not report a result.
#
# Environment: PYTHON (default python3), KUBECTL (default kubectl),
# CHECKOV_VENV (default .venv-checkov), CHECKOV_VERSION (pinned below, so a
# new checkov release cannot turn CI red on its own).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
KUBECTL="${KUBECTL:-kubectl}"
VENV="${CHECKOV_VENV:-$ROOT/.venv-checkov}"
CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"

if ! command -v "$KUBECTL" >/dev/null 2>&1; then
    echo "checkov.sh: $KUBECTL not found (needed to render the overlays)" >&2
    exit 2
fi

if [ ! -x "$VENV/bin/checkov" ] || [ "$("$VENV/bin/checkov" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
    echo "checkov.sh: installing checkov $CHECKOV_VERSION into $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# overlays/<env> + components/spark, in a kustomization of their own (relative paths:
# kustomize refuses absolute ones).
for env in dev prod; do
    [ -f "manifests/overlays/$env/kustomization.yaml" ] || continue
    mkdir -p "$tmp/spark-$env"
    cat >"$tmp/spark-$env/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: crispops
resources:
  - $(realpath --relative-to="$tmp/spark-$env" "manifests/overlays/$env")
components:
  - $(realpath --relative-to="$tmp/spark-$env" manifests/components/spark)
images:
  - name: crispops-components-spark
    newName: ghcr.io/crispops/crispops-components
    newTag: 0.1.0-spark
EOF
done

status=0
found=0
for dir in manifests/overlays/*/ "$tmp"/spark-*/; do
    [ -f "$dir/kustomization.yaml" ] || continue
    found=1
    env="$(basename "$dir")"
    echo "== checkov: $env"
    if ! "$KUBECTL" kustomize "$dir" >"$tmp/$env.yaml"; then
        echo "checkov.sh: kubectl kustomize $dir failed" >&2
        status=1
        continue
    fi
    # --skip-download: no calls to the vendor's API (no network here, no API key).
    rc=0
    "$VENV/bin/checkov" -f "$tmp/$env.yaml" --framework kubernetes --quiet --compact \
        --skip-download >"$tmp/$env.out" 2>&1 || rc=$?
    cat "$tmp/$env.out"
    if [ "$rc" -ne 0 ]; then
        status=1
    elif ! grep -q "Failed checks: 0," "$tmp/$env.out"; then
        # checkov can print a traceback and still exit 0; no summary means no result.
        echo "checkov.sh: no clean checkov summary for overlays/$env" >&2
        status=1
    fi
done

if [ "$found" -eq 0 ]; then
    echo "checkov.sh: no overlays under manifests/overlays" >&2
    exit 1
fi
exit "$status"
