#!/usr/bin/env bash
# Builds (once) helm from the Go module proxy at the pinned version and prints its path. Cached
# by version outside the clone, like the control plane.
set -euo pipefail
HELM_VERSION=v4.3.2
cache=${MODELCOMMONS_CACHE:-$HOME/.cache/modelcommons}
dest="$cache/bin/helm-${HELM_VERSION}"
if [ -x "$dest/helm" ]; then echo "$dest/helm"; exit 0; fi
command -v go >/dev/null || { echo "go is not on PATH: install Go >= 1.26 (helm is built from source)" >&2; exit 1; }
mkdir -p "$dest"
tmp=$(mktemp -d "$dest/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "building helm ${HELM_VERSION} (cold: a few minutes on 2 cores)" >&2
start=$(date +%s)
GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOBIN="$tmp" \
  go install -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}" \
  "helm.sh/helm/v4/cmd/helm@${HELM_VERSION}" >&2
mv "$tmp/helm" "$dest/helm"
echo "helm ready in $(( $(date +%s) - start ))s" >&2
echo "$dest/helm"
