#!/usr/bin/env bash
# Smoke test of the dev overlay on a real K3s cluster (not run by `make test`: it needs one).
#
#   deploy/k3s/smoke.sh                 # apply the dev overlay, wait, send two requests
#   deploy/k3s/smoke.sh --build         # first build the edge image with Docker and import it into K3s
#   SMOKE_CLEANUP=1 deploy/k3s/smoke.sh # delete the namespace afterwards
#
# Needs: kubectl pointing at a single-node K3s (KUBECONFIG=/etc/rancher/k3s/k3s.yaml), curl, and
# the image ghcr.io/open-autoglm/edge-agent:<version> on the node (pushed to a registry the node
# pulls from, or --build: `docker build` here and `k3s ctr images import`, which needs sudo).
# It applies deploy/k3s/overlays/dev, waits for NATS, the hub and the agent to be ready, then
# sends one request the agent answers itself (x-agl-tier: edge) and one it escalates to the hub
# through NATS (model glm-4-plus, x-agl-tier: cloud), through `kubectl port-forward`.
set -euo pipefail
cd "$(dirname "$0")/../.."

NAMESPACE=agl-dev
LOCAL_PORT=${LOCAL_PORT:-18080}
TIMEOUT=${TIMEOUT:-600s}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
IMAGE=ghcr.io/open-autoglm/edge-agent:$VERSION

die() { echo "smoke: $*" >&2; exit 1; }
command -v kubectl >/dev/null || die "kubectl is missing"
command -v curl >/dev/null || die "curl is missing"
kubectl version >/dev/null 2>&1 || die "kubectl cannot reach a cluster; set KUBECONFIG (K3s: /etc/rancher/k3s/k3s.yaml)"

if [ "${1:-}" = "--build" ]; then
  command -v docker >/dev/null || die "--build needs Docker"
  echo ">> building $IMAGE"
  docker build -f deploy/docker/edge.Dockerfile -t "$IMAGE" .
  echo ">> importing $IMAGE into K3s's containerd"
  docker save "$IMAGE" | sudo k3s ctr images import -
fi

echo ">> applying deploy/k3s/overlays/dev"
kubectl kustomize --load-restrictor LoadRestrictionsNone deploy/k3s/overlays/dev | kubectl apply -f -

echo ">> waiting for NATS, the hub and the agent (up to $TIMEOUT)"
kubectl -n "$NAMESPACE" rollout status statefulset/nats --timeout="$TIMEOUT"
kubectl -n "$NAMESPACE" rollout status deployment/agl-hub --timeout="$TIMEOUT"
kubectl -n "$NAMESPACE" rollout status daemonset/agl-agent --timeout="$TIMEOUT"

kubectl -n "$NAMESPACE" port-forward service/agl-agent "$LOCAL_PORT:8080" >/dev/null &
forward=$!
cleanup() {
  kill "$forward" 2>/dev/null || true
  if [ "${SMOKE_CLEANUP:-0}" = 1 ]; then kubectl delete namespace "$NAMESPACE" --wait=false; fi
}
trap cleanup EXIT
for _ in $(seq 50); do
  curl -fsS "http://127.0.0.1:$LOCAL_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done

# ask MODEL EXPECTED_TIER: one chat completion; fail unless the answer says where it was made.
ask() {
  local model=$1 want=$2 headers body
  headers=$(mktemp)
  body=$(curl -fsS --max-time 180 -D "$headers" "http://127.0.0.1:$LOCAL_PORT/v1/chat/completions" \
    -H 'content-type: application/json' \
    -d "{\"model\": \"$model\", \"max_tokens\": 16, \"messages\": [{\"role\": \"user\", \"content\": \"Name one colour.\"}]}") \
    || die "request for $model failed"
  local tier reason
  tier=$(tr -d '\r' <"$headers" | sed -n 's/^x-agl-tier: //Ip' | tail -1)
  reason=$(tr -d '\r' <"$headers" | sed -n 's/^x-agl-reason: //Ip' | tail -1)
  rm -f "$headers"
  [ "$tier" = "$want" ] || die "$model: expected x-agl-tier $want, got '$tier' (reason '$reason'): $body"
  echo "ok: $model answered on tier $tier (reason $reason)"
}
ask smollm2-135m-instruct edge
ask glm-4-plus cloud
echo ">> smoke test passed"
