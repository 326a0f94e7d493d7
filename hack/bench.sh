#!/usr/bin/env bash
# Measures the test bed: control plane start → ready (warm cache), anvil start → genesis block
# served, and the wall time of a warm `make test`. Prints the figures side by side with targets.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(hack/deps.sh)"
cargo build -q --release -p modelcommons-testbed --bin testbed
target/release/testbed bench --runs "${RUNS:-3}"
t0=$(date +%s.%N)
make test >/tmp/modelcommons-bench-test.log 2>&1 || { tail -50 /tmp/modelcommons-bench-test.log; exit 1; }
printf '%-52s %8.1fs\n' "make test, warm (caches and target/ built)" "$(echo "$(date +%s.%N) - $t0" | bc)"
