#!/usr/bin/env bash
# `make test`: installs what is missing, checks generated files, lints, builds, starts one
# shared control plane for the integration tests, runs every test of the workspace, and
# stops what it started — also when a test fails or the run is interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
step() { printf '\n==> %s (%ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }

step "dependencies"
eval "$(hack/deps.sh)"

step "generated files are up to date"
node contracts/build.js --check
cargo run -q -p modelcommons-crds --bin crdgen -- --check
hack/render-deploy.sh --check
python3 examples/contract-review/generate.py --check
# The Argo CD health checks (Lua, run in gopher-lua as Argo CD runs them) against their
# sample statuses, and the argocd-cm patch generated from them.
go -C hack/gitops-health run . --check >/dev/null

step "crate boundaries and controller shape"
hack/check-deps.sh
python3 hack/check-controllers.py

step "format and lints"
cargo fmt --all --check
cargo clippy -q --workspace --all-targets -- -D warnings

step "build"
cargo test --workspace --no-run -q 2>&1 | grep -v '^  Executable' || true
cargo build -q -p modelcommons-testbed --bin testbed -p modelcommons-trainer --bin modelcommons-trainer

step "shared control plane"
state=$(mktemp -d "${TMPDIR:-/tmp}/modelcommons-testbed-shared.XXXXXX")
"${CARGO_TARGET_DIR:-target}/debug/testbed" up --dir "$state/cp" >"$state/up.log" 2>&1 &
cp_pid=$!
cleanup() {
  kill -TERM "$cp_pid" 2>/dev/null && wait "$cp_pid" 2>/dev/null
  rm -rf "$state"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 600); do
  [ -f "$state/cp/ready" ] && break
  if ! kill -0 "$cp_pid" 2>/dev/null; then cat "$state/up.log" >&2; echo "the control plane failed to start" >&2; exit 1; fi
  sleep 0.2
done
[ -f "$state/cp/ready" ] || { cat "$state/up.log" >&2; echo "the control plane was not ready in 120s" >&2; exit 1; }
grep 'ready in' "$state/up.log"
export MODELCOMMONS_TEST_KUBECONFIG="$state/cp/kubeconfig"

step "tests"
log="$state/test.log"
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (cargo prints one `test result:` per binary).
passed=$(grep -oE '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
step "done"
echo "$passed passed, $failed failed"
exit "$rc"
