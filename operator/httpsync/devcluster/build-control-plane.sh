#!/usr/bin/env bash
# Build kube-apiserver, kubectl, etcd and helm from Go modules into a cache folder
# outside the repository. Rebuilds only what is missing. Prints the folder on stdout's last line.
# In a source checkout it also builds the tests' kstatus and promql commands (hack/kstatus: the real
# sigs.k8s.io/cli-utils kstatus library; hack/promql: the real Prometheus query parser) and links them into that
# folder beside helm.
#
#   bash operator/httpsync/devcluster/build-control-plane.sh           # build (if needed) and print the bin folder
#
# Env: HTTPSYNC_K8S_VERSION (1.34.4), HTTPSYNC_ETCD_VERSION (3.6.14), HTTPSYNC_HELM_VERSION (3.19.0),
#      HTTPSYNC_CACHE (~/.cache/httpsync), KUBEBUILDER_ASSETS (a folder that already holds
#      kube-apiserver, etcd and kubectl: used as is, nothing is built for those three).
set -euo pipefail
# Where this script lives, resolved before the builds below change directory.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

K8S_VERSION=${HTTPSYNC_K8S_VERSION:-1.34.4}
ETCD_VERSION=${HTTPSYNC_ETCD_VERSION:-3.6.14}
HELM_VERSION=${HTTPSYNC_HELM_VERSION:-3.19.0}
CACHE=${HTTPSYNC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/httpsync}
BIN="$CACHE/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
HELM_BIN="$CACHE/bin/helm-$HELM_VERSION"
WORK="$CACHE/build"
mkdir -p "$BIN" "$HELM_BIN" "$WORK"

export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
say() { echo "[control-plane] $*" >&2; }

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  for b in kube-apiserver etcd kubectl; do
    [[ -x "$KUBEBUILDER_ASSETS/$b" ]] || { say "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no $b"; exit 1; }
  done
  # Link the given binaries into a folder of ours, so helm can sit beside them.
  LINKS="$CACHE/bin/kubebuilder-assets"; mkdir -p "$LINKS"
  for b in kube-apiserver etcd kubectl; do ln -sf "$KUBEBUILDER_ASSETS/$b" "$LINKS/$b"; done
  BIN="$LINKS"
else
  if [[ ! -x "$BIN/kube-apiserver" || ! -x "$BIN/kubectl" ]]; then
    say "building kube-apiserver and kubectl v$K8S_VERSION from k8s.io/kubernetes (cold build: 10-15 minutes on 2 cores)"
    D="$WORK/k8s-$K8S_VERSION"; rm -rf "$D"; mkdir -p "$D"; cd "$D"
    go mod init example.local/k8sbins >/dev/null 2>&1
    MOD=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [[ -f "$MOD" ]] || { say "could not download k8s.io/kubernetes@v$K8S_VERSION"; exit 1; }
    STAGING=$(sed -n 's|^[[:space:]]*\(k8s.io/[A-Za-z0-9._-]*\) => \./staging/.*|\1|p' "$MOD")
    for m in $STAGING; do go mod edit "-replace=$m=$m@v0.${K8S_VERSION#1.}"; done
    go mod edit "-require=k8s.io/kubernetes@v$K8S_VERSION"
    printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kubectl"\n)\n' > tools.go
    LD="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      LD="$LD -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X $p.gitTreeState=clean"
    done
    say "go build (this is the slow part; no output until it finishes)"
    go build -trimpath -tags selinux,notest -ldflags "$LD" -o "$BIN/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
    say "built $BIN/kube-apiserver $BIN/kubectl"
  fi
  if [[ ! -x "$BIN/etcd" ]]; then
    say "building etcd v$ETCD_VERSION from go.etcd.io/etcd/server/v3 (1-3 minutes)"
    D="$WORK/etcd-$ETCD_VERSION"; rm -rf "$D"; mkdir -p "$D"; cd "$D"
    go mod init example.local/etcdbin >/dev/null 2>&1
    go mod edit "-require=go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    go mod download "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
    say "built $BIN/etcd"
  fi
fi

if [[ ! -x "$HELM_BIN/helm" ]]; then
  say "building helm v$HELM_VERSION from helm.sh/helm/v3 (2-4 minutes)"
  GOBIN="$HELM_BIN" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  say "built $HELM_BIN/helm"
fi
ln -sf "$HELM_BIN/helm" "$BIN/helm"

# Test tools of a source checkout, each built from a copy of hack/<name>, so the build never writes into the
# checkout, into a folder named after its main module's version and a hash of its sources (any change rebuilds
# it), and linked into the bin folder:
#   kstatus: the real sigs.k8s.io/cli-utils kstatus library (tests/packaging/test_kstatus.py)
#   promql:  the real Prometheus query parser and rules checker (tests/helm/test_monitoring.py)
build_hack_tool() {  # name, main module, minutes
  local name=$1 module=$2 minutes=$3 src="$HERE/../../../hack/$1" version sum out d
  [[ -f "$src/go.mod" ]] || return 0
  version=$(awk -v m="$module" '$1 == m {print $2} $2 == m {print $3}' "$src/go.mod")
  sum=$(cat "$src/go.mod" "$src/go.sum" "$src"/*.go | sha256sum | cut -c1-12)
  out="$CACHE/bin/$name-${module##*/}-${version:-unknown}-$sum"
  if [[ ! -x "$out/$name" ]]; then
    say "building $name ($module ${version:-?}) from hack/$name ($minutes minutes)"
    d="$WORK/$name-$sum-$$"; rm -rf "$d"; mkdir -p "$d" "$out"
    cp "$src/go.mod" "$src/go.sum" "$src"/*.go "$d/"
    (cd "$d" && go build -trimpath -ldflags "-s -w" -o "$out/$name.$$" .)
    mv -f "$out/$name.$$" "$out/$name"
    rm -rf "$d"
    say "built $out/$name"
  fi
  ln -sfn "$out/$name" "$BIN/$name"
}
build_hack_tool kstatus sigs.k8s.io/cli-utils 1-3
build_hack_tool promql github.com/prometheus/prometheus 1-3
echo "$BIN"
