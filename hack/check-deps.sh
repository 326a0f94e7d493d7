#!/usr/bin/env bash
# Crate boundaries, checked: what ships links only what it needs. The operator's normal
# dependencies contain neither the test bed nor libtorch; the CLI's contain neither the
# operator, the test bed nor libtorch; the ledger and curation libraries neither the operator,
# the test bed nor libtorch. Fails with the offending path of the dependency tree.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
check() { # crate, forbidden crates...
  local crate=$1; shift
  local tree
  tree=$(cargo tree -q -e normal -p "$crate" --prefix none --format '{p}' | awk '{print $1}' | sort -u)
  for bad in "$@"; do
    if grep -qx "$bad" <<<"$tree"; then
      echo "check-deps: $crate links $bad:" >&2
      cargo tree -q -e normal -p "$crate" -i "$bad" >&2 || true
      fail=1
    fi
  done
}
check modelcommons-operator modelcommons-testbed tch torch-sys
check modelcommons-cli modelcommons-operator modelcommons-testbed tch torch-sys
check modelcommons-ledger modelcommons-operator modelcommons-testbed tch torch-sys
check modelcommons-curate modelcommons-operator modelcommons-testbed tch torch-sys
[ "$fail" = 0 ] && echo "crate boundaries hold (operator, cli, ledger, curate: no test bed, no libtorch)"
exit "$fail"
