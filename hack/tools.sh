#!/usr/bin/env bash
# Lint tools built from Go modules into a cache folder outside the repository; prints the binary's path on stdout.
# Rebuilds only when the binary is missing or has another version.
#
#   hack/tools.sh actionlint      # github.com/rhysd/actionlint (lints .github/workflows)
#
# Env: ACTIONLINT_VERSION (v1.7.12), HTTPSYNC_CACHE (~/.cache/httpsync; the tools go to $HTTPSYNC_CACHE/bin/tools).
set -euo pipefail

ACTIONLINT_VERSION=${ACTIONLINT_VERSION:-v1.7.12}
CACHE=${HTTPSYNC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/httpsync}
TOOLS="$CACHE/bin/tools"

say() { echo "[tools] $*" >&2; }

go_install() {  # module@version binary
  command -v go >/dev/null || { say "Go is needed to build $2 (install Go >= 1.24)"; exit 1; }
  mkdir -p "$TOOLS"
  say "building $1"
  GOBIN="$TOOLS" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "$1" >&2
}

case "${1:-}" in
  actionlint)
    bin="$TOOLS/actionlint"
    if [[ ! -x "$bin" ]] || [[ "$("$bin" --version 2>/dev/null | head -n1)" != "$ACTIONLINT_VERSION" ]]; then
      go_install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" actionlint
    fi
    echo "$bin"
    ;;
  *)
    say "usage: $0 actionlint"
    exit 2
    ;;
esac
