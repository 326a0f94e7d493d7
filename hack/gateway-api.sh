#!/usr/bin/env bash
# Fetches (once, cached by version outside the clone) the Gateway API's standard CRDs from the
# Go module proxy — the module sigs.k8s.io/gateway-api carries them — for the ModelDeployment
# route tests. Prints an `export` line for their folder.
set -euo pipefail
GATEWAY_API_VERSION=v1.6.3
cache=${MODELCOMMONS_CACHE:-$HOME/.cache/modelcommons}
dest="$cache/gateway-api-$GATEWAY_API_VERSION"
if [ ! -s "$dest/gateway.networking.k8s.io_httproutes.yaml" ]; then
  echo "deps: Gateway API $GATEWAY_API_VERSION CRDs from the Go module proxy" >&2
  dir=$(cd "${TMPDIR:-/tmp}" && GOTOOLCHAIN=local GOFLAGS=-mod=mod \
    go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir/config/crd/standard" ] || { echo "deps: no config/crd/standard in $dir" >&2; exit 1; }
  mkdir -p "$dest.tmp"
  cp "$dir"/config/crd/standard/gateway.networking.k8s.io_*.yaml "$dest.tmp/"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
fi
echo "export MODELCOMMONS_GATEWAY_API_CRDS=$dest"
