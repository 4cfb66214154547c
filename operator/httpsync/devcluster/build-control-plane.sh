#!/usr/bin/env bash
# Build kube-apiserver, kubectl, etcd and helm from Go modules into a cache folder
# outside the repository. Rebuilds only what is missing. Prints the folder on stdout's last line.
# In a source checkout it also builds the tests' kstatus command (hack/kstatus: the real
# sigs.k8s.io/cli-utils kstatus library) and links it into that folder beside helm.
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

# kstatus (tests only): built from a copy of hack/kstatus, so the build never writes into the checkout.
# Its folder is named after the cli-utils version and a hash of the sources: any change rebuilds it.
KSTATUS_SRC="$HERE/../../../hack/kstatus"
if [[ -f "$KSTATUS_SRC/go.mod" ]]; then
  CLI_UTILS=$(awk '$1 == "sigs.k8s.io/cli-utils" {print $2} $2 == "sigs.k8s.io/cli-utils" {print $3}' "$KSTATUS_SRC/go.mod")
  SUM=$(cat "$KSTATUS_SRC/go.mod" "$KSTATUS_SRC/go.sum" "$KSTATUS_SRC"/*.go | sha256sum | cut -c1-12)
  KSTATUS_BIN="$CACHE/bin/kstatus-cli-utils-${CLI_UTILS:-unknown}-$SUM"
  if [[ ! -x "$KSTATUS_BIN/kstatus" ]]; then
    say "building kstatus (sigs.k8s.io/cli-utils ${CLI_UTILS:-?}) from hack/kstatus (1-3 minutes)"
    D="$WORK/kstatus-$SUM-$$"; rm -rf "$D"; mkdir -p "$D" "$KSTATUS_BIN"
    cp "$KSTATUS_SRC/go.mod" "$KSTATUS_SRC/go.sum" "$KSTATUS_SRC"/*.go "$D/"
    (cd "$D" && go build -trimpath -ldflags "-s -w" -o "$KSTATUS_BIN/kstatus.$$" .)
    mv -f "$KSTATUS_BIN/kstatus.$$" "$KSTATUS_BIN/kstatus"
    rm -rf "$D"
    say "built $KSTATUS_BIN/kstatus"
  fi
  ln -sfn "$KSTATUS_BIN/kstatus" "$BIN/kstatus"
fi
echo "$BIN"
