#!/usr/bin/env bash
# End to end on a local kind cluster, for users who have Docker. NOT run in our CI:
# no Docker daemon or Kubernetes cluster runs on our machines (see README, "Run on a
# cluster").
#
# Needs: docker, kind, kubectl, and a Kubeflow Pipelines install reachable at
# $KFP_HOST (e.g. `kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`).
# Steps: cluster, images, platform manifests, a submitted pipeline, the deployed
# champion, one prediction.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER="${CLUSTER:-crispops}"
REGISTRY="${REGISTRY:-localhost/crispops}"
KFP_HOST="${KFP_HOST:-http://127.0.0.1:8080}"
CRISPOPS=".venv/bin/crispops"

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "e2e-kind: $tool is required" >&2; exit 2; }
done
[ -x "$CRISPOPS" ] || make venv

echo "== kind cluster $CLUSTER"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s

echo "== a champion to deploy"
[ -f .crispops/champion.json ] || make demo
BENTO="$(python3 -c 'import json; print(json.load(open(".crispops/champion.json"))["bento_tag"])')"

echo "== images (built locally, loaded into kind instead of pushed)"
$CRISPOPS images --registry "$REGISTRY" | grep -v '^docker push' | grep -v '^#' | bash -x
COMPONENTS="$($CRISPOPS images --registry "$REGISTRY" | awk '/^docker build/ {print $(NF-1)}')"
kind load docker-image --name "$CLUSTER" "$REGISTRY/${BENTO%%:*}:${BENTO##*:}" "$COMPONENTS"

echo "== credentials (a dev-only Secret; use your secret manager elsewhere)"
kubectl create namespace crispops --dry-run=client -o yaml | kubectl apply -f -
kubectl -n crispops create secret generic crispops-feast-credentials \
  --from-literal=REDIS_PASSWORD="$(openssl rand -hex 16)" \
  --from-literal=POSTGRES_PASSWORD="$(openssl rand -hex 16)" \
  --dry-run=client -o yaml | kubectl apply -f -

echo "== deploy the champion (applies the dev overlay, waits, rolls back on failure)"
$CRISPOPS deploy --overlay dev --bento "$BENTO" --registry "$REGISTRY" --timeout 600

echo "== submit the training pipeline, and a nightly schedule"
$CRISPOPS submit --host "$KFP_HOST" --experiment e2e
$CRISPOPS submit --host "$KFP_HOST" --experiment e2e --schedule "0 3 * * *"

echo "== call the service"
kubectl -n crispops port-forward svc/crispops-model-service 3000:3000 >/dev/null &
PF=$!
trap 'kill $PF 2>/dev/null || true' EXIT
sleep 3
curl -sf http://127.0.0.1:3000/readyz && echo
curl -sf -X POST http://127.0.0.1:3000/predict_entity -H 'content-type: application/json' \
  -d '{"records": [{"customer_id": 1001, "requested_amount": 12000, "term_months": 36}]}'
echo
