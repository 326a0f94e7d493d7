#!/usr/bin/env bash
# Builds (once) the test control plane: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl and kwok, from the Go module proxy at the versions in versions.env.
# The binaries are cached by version outside the clone; a second run prints the cached
# directory at once. Prints the binary directory on stdout (logs go to stderr).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/versions.env"
cache=${MODELCOMMONS_CACHE:-$HOME/.cache/modelcommons}
dest="$cache/bin/k8s-${KUBE_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"
bins="etcd kwok $KUBE_COMMANDS"
# kwok ships no default stages in its binary; the stages that make fake nodes Ready and run
# pods (Job pods to completion) come from the kwok module's own kustomize/stage files.
KWOK_STAGES="node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml"

missing() { for b in $bins; do [ -x "$dest/$b" ] || echo "$b"; done; [ -f "$dest/kwok-stages.yaml" ] || echo kwok-stages; }
todo=$(missing)
if [ -z "$todo" ]; then echo "$dest"; exit 0; fi
has() { grep -qx "$1" <<<"$todo"; }

export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
command -v go >/dev/null || { echo "go is not on PATH: install Go >= 1.26 (the control plane is built from source)" >&2; exit 1; }
mkdir -p "$dest"
start=$(date +%s)
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
ver_pkgs="k8s.io/component-base/version k8s.io/client-go/pkg/version"
ldflags="-s -w"
for p in $ver_pkgs; do
  ldflags+=" -X $p.gitVersion=${KUBE_VERSION} -X $p.gitMajor=1 -X $p.gitMinor=${minor} -X $p.gitTreeState=clean"
done
cd "$here"
# Each binary is written under a temporary name and renamed, so an interrupted build never
# leaves a half-written binary that looks complete.
for c in $KUBE_COMMANDS; do
  has "$c" || continue
  echo "building $c ${KUBE_VERSION} (cold: several minutes each on 2 cores)" >&2
  go build -trimpath -ldflags "$ldflags" -o "$dest/.$c.tmp" "k8s.io/kubernetes/cmd/$c"
  mv "$dest/.$c.tmp" "$dest/$c"
done
if has etcd; then
  echo "building etcd ${ETCD_VERSION}" >&2
  go build -trimpath -ldflags "-s -w" -o "$dest/.etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$dest/.etcd.tmp" "$dest/etcd"
fi
if has kwok; then
  echo "building kwok ${KWOK_VERSION}" >&2
  tmp=$(mktemp -d "$dest/.kwok.XXXXXX")
  GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
  mv "$tmp/kwok" "$dest/kwok"; rm -rf "$tmp"
fi
if has kwok-stages; then
  moddir=$(cd /tmp && go mod download -json "sigs.k8s.io/kwok@${KWOK_VERSION}" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  for f in $KWOK_STAGES; do echo "---"; cat "$moddir/kustomize/stage/$f"; echo; done >"$dest/.kwok-stages.tmp"
  mv "$dest/.kwok-stages.tmp" "$dest/kwok-stages.yaml"
fi
echo "control plane ready in $(( $(date +%s) - start ))s in $dest" >&2
echo "$dest"
