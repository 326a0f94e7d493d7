#!/usr/bin/env bash
# Installs whatever the build and the tests need and is missing, from the registries this
# project may use: npm (anvil, solc, OpenZeppelin), PyPI (the torch wheel libtorch comes in),
# the Go module proxy (the control plane and helm, built from source) and Debian (openssl), plus the
# Python reference (torch 2.13.0 + transformers from PyPI) the trainer's parity tests use.
# Everything heavy is cached by version under ${MODELCOMMONS_CACHE:-~/.cache/modelcommons}.
# Prints shell `export` lines for LIBTORCH, MODELCOMMONS_CONTROLPLANE_BIN, MODELCOMMONS_PYTHON,
# MODELCOMMONS_HELM, the object-store servers of the Datanet tests (hack/object-stores.sh) and
# the Gateway API CRDs of the route tests (hack/gateway-api.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
for tool in cargo go node npm python3; do
  need "$tool" || { echo "deps: $tool is required (Rust >= 1.95, Go >= 1.26, Node 20, Python 3)" >&2; exit 1; }
done
if ! need openssl; then
  echo "deps: installing openssl (test certificates)" >&2
  if need apt-get; then
    (apt-get update -qq && apt-get install -y -qq openssl) >&2
  else
    echo "deps: openssl is required" >&2; exit 1
  fi
fi

# npm packages, reinstalled when the lockfile changes.
lock=contracts/package-lock.json
stamp=contracts/node_modules/.modelcommons-lock.sha256
want=$(sha256sum "$lock" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "deps: npm ci in contracts/ (anvil, solc, OpenZeppelin)" >&2
  npm ci --prefix contracts --no-audit --no-fund --loglevel=error >&2
  echo "$want" > "$stamp"
fi

libtorch=$(hack/libtorch.sh)
bins=$(hack/controlplane/build.sh)
python=$(hack/pyenv.sh)
helm=$(hack/helm.sh)
hack/object-stores.sh
hack/gateway-api.sh
echo "export LIBTORCH=$libtorch"
echo "export MODELCOMMONS_PYTHON=$python"
echo "export MODELCOMMONS_CONTROLPLANE_BIN=$bins"
echo "export MODELCOMMONS_HELM=$helm"
