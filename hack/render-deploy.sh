#!/usr/bin/env bash
# Renders the kustomize base and overlays under deploy/ from the Helm chart, so GitOps users
# get exactly what `helm install` makes. `--check` fails when the committed files differ.
set -euo pipefail
cd "$(dirname "$0")/.."
helm=${MODELCOMMONS_HELM:-$(hack/helm.sh)}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
render() {
  "$helm" template modelcommons charts/modelcommons --namespace modelcommons-system "$@" |
    sed -e 's/app.kubernetes.io\/managed-by: Helm/app.kubernetes.io\/managed-by: kustomize/' \
        -e '/helm.sh\/chart:/d'
}
header() { echo "# Rendered from charts/modelcommons by hack/render-deploy.sh ($*). Do not edit."; }
mkdir -p "$out/base" "$out/overlays/dev" "$out/overlays/production"
cp crds/modelcommons.dev_crds.yaml "$out/base/crds.yaml"
{ header "default values"; render; } >"$out/base/operator.yaml"
dev=(--set devChain.enabled=true)
{ header "devChain.enabled=true"; render "${dev[@]}" --show-only templates/devchain.yaml; } >"$out/overlays/dev/devchain.yaml"
{ header "devChain.enabled=true"; render "${dev[@]}" --show-only templates/deployment.yaml; } >"$out/overlays/dev/operator.yaml"
prod=(--set ledger.rpcUrl=https://rpc.example.org --set ledger.keySecret.name=modelcommons-ledger-key
      --set ledger.addressesConfigMap.name=modelcommons-ledger-addresses)
{ header "a production chain: set the RPC URL"; render "${prod[@]}" --show-only templates/deployment.yaml; } >"$out/overlays/production/operator.yaml"
files="base/crds.yaml base/operator.yaml overlays/dev/devchain.yaml overlays/dev/operator.yaml overlays/production/operator.yaml"
if [ "${1:-}" = "--check" ]; then
  for f in $files; do
    cmp -s "$out/$f" "deploy/$f" || { echo "deploy/$f is out of date: run hack/render-deploy.sh" >&2; exit 1; }
  done
  echo "deploy/ up to date"
else
  for f in $files; do cp "$out/$f" "deploy/$f"; done
  echo "rendered deploy/ from charts/modelcommons"
fi
