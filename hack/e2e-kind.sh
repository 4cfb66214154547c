#!/usr/bin/env bash
# End to end on kind: build the operator image, load it into a kind cluster, install the chart, apply the
# quickstart and wait until every HttpSource and HttpEndpointMapping is Ready; then delete them in the documented
# order (resources first, so the operator releases its finalizers) and uninstall.
# Used by .github/workflows/e2e-kind.yaml and `make e2e-kind`. Needs docker, kind, kubectl and helm.
#
#   hack/e2e-kind.sh
#
# Env:
#   KIND_CLUSTER (httpsync-e2e)            the kind cluster; created if missing, deleted at the end if created here
#   KIND_NODE_IMAGE                        node image for `kind create cluster` (default: kind's own)
#   KEEP_CLUSTER (0)                       1: keep a cluster this script created
#   IMAGE_REPOSITORY (httpsync) IMAGE_TAG (e2e)   the image built and loaded
#   NAMESPACE (httpsync-system)            namespace of the Helm release
#   EXAMPLES (examples/quickstart)         manifests applied into EXAMPLES_NAMESPACE (httpsync-quickstart)
#   TIMEOUT (5m)                           for the rollout and each wait
set -euo pipefail
cd "$(dirname "$0")/.."

KIND_CLUSTER=${KIND_CLUSTER:-httpsync-e2e}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
IMAGE_REPOSITORY=${IMAGE_REPOSITORY:-httpsync}
IMAGE_TAG=${IMAGE_TAG:-e2e}
NAMESPACE=${NAMESPACE:-httpsync-system}
EXAMPLES=${EXAMPLES:-examples/quickstart}
EXAMPLES_NAMESPACE=${EXAMPLES_NAMESPACE:-httpsync-quickstart}
TIMEOUT=${TIMEOUT:-5m}
RELEASE=httpsync
IMAGE="$IMAGE_REPOSITORY:$IMAGE_TAG"
CONTEXT="kind-$KIND_CLUSTER"

say() { echo "[e2e-kind] $*" >&2; }
k() { kubectl --context "$CONTEXT" "$@"; }

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { say "$tool is required on PATH"; exit 1; }
done
[[ -d "$EXAMPLES" ]] || { say "$EXAMPLES does not exist"; exit 1; }

created=0
diagnostics() {
  say "diagnostics"
  k get pods,deployments -n "$NAMESPACE" -o wide || true
  k describe deployment -n "$NAMESPACE" || true
  k logs -n "$NAMESPACE" "deployment/$RELEASE-httpsync-operator" --tail=200 || true
  k get httpsources,httpendpointmappings -n "$EXAMPLES_NAMESPACE" -o yaml || true
  k get events -n "$EXAMPLES_NAMESPACE" --sort-by=.lastTimestamp || true
}
finish() {
  local status=$?
  if ((status != 0)); then diagnostics; fi
  if ((created)) && [[ "$KEEP_CLUSTER" != 1 ]]; then
    say "deleting kind cluster $KIND_CLUSTER"
    kind delete cluster --name "$KIND_CLUSTER" || true
  fi
  exit "$status"
}
trap finish EXIT

if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  say "using kind cluster $KIND_CLUSTER"
else
  say "creating kind cluster $KIND_CLUSTER"
  create=(kind create cluster --name "$KIND_CLUSTER" --wait 180s)
  if [[ -n "${KIND_NODE_IMAGE:-}" ]]; then create+=(--image "$KIND_NODE_IMAGE"); fi
  "${create[@]}"
  created=1
fi

say "building $IMAGE"
docker build -t "$IMAGE" \
  --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
kind load docker-image "$IMAGE" --name "$KIND_CLUSTER"

say "installing the chart into $NAMESPACE"
helm upgrade --install "$RELEASE" charts/httpsync-operator \
  --kube-context "$CONTEXT" --namespace "$NAMESPACE" --create-namespace \
  --set image.repository="$IMAGE_REPOSITORY" --set image.tag="$IMAGE_TAG" --set image.pullPolicy=Never \
  --wait --timeout "$TIMEOUT"
k rollout status "deployment/$RELEASE-httpsync-operator" -n "$NAMESPACE" --timeout "$TIMEOUT"

say "applying $EXAMPLES into $EXAMPLES_NAMESPACE"
k create namespace "$EXAMPLES_NAMESPACE" --dry-run=client -o yaml | k apply -f -
k apply -n "$EXAMPLES_NAMESPACE" -f "$EXAMPLES/"
if k get -n "$EXAMPLES_NAMESPACE" deployment/demo-api >/dev/null 2>&1; then
  # The quickstart's demo API runs the httpsync image: use the one just built and loaded.
  k set image -n "$EXAMPLES_NAMESPACE" deployment/demo-api demo-api="$IMAGE"
fi
k wait --for=condition=Ready httpsource --all -n "$EXAMPLES_NAMESPACE" --timeout "$TIMEOUT"
k wait --for=condition=Ready httpendpointmapping --all -n "$EXAMPLES_NAMESPACE" --timeout "$TIMEOUT"
k get httpsources,httpendpointmappings -n "$EXAMPLES_NAMESPACE" -o wide

say "uninstalling in the documented order"
k delete httpendpointmappings --all -n "$EXAMPLES_NAMESPACE" --wait --timeout "$TIMEOUT"
k delete httpsources --all -n "$EXAMPLES_NAMESPACE" --wait --timeout "$TIMEOUT"
helm uninstall "$RELEASE" --kube-context "$CONTEXT" --namespace "$NAMESPACE" --wait --timeout "$TIMEOUT"
say "passed"
