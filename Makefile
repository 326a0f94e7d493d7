# modelcommons — the commands. `make test` is the one CI runs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
DEPS = eval "$$(hack/deps.sh)"

.PHONY: help deps test unit demo check-deps check-controllers gitops-health lint examples crds deploy contracts cluster-up cluster-down bench bench-gas bench-trainer bench-operator selftest clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

deps: ## install what is missing (npm packages, libtorch, the control-plane binaries)
	@$(DEPS) && echo "LIBTORCH=$$LIBTORCH" && echo "control plane: $$MODELCOMMONS_CONTROLPLANE_BIN"

test: ## install, check generated files, lint, and run every test against real parts
	hack/test.sh

unit: ## the pure tests only (every crate's unit tests: no control plane, no chain)
	$(DEPS) && cargo test -q --workspace --lib --bins

check-deps: ## what ships links neither the test bed nor libtorch; the CLI not the operator
	hack/check-deps.sh

check-controllers: ## a folder per controller: decide steps do no I/O, children are typed, no function over 80 lines
	python3 hack/check-controllers.py

gitops-health: ## test the Argo CD health checks (Lua) against their sample statuses; regenerate argocd-cm.yaml with WRITE=1
	go -C hack/gitops-health run . $(if $(WRITE),--write,--check)

lint: ## rustfmt and clippy
	$(DEPS) && cargo fmt --all --check && cargo clippy --workspace --all-targets -- -D warnings

examples: ## regenerate the example's reviewed clauses and sign them with the dev keys
	$(DEPS) && cargo build -q -p modelcommons-cli --bin modelcommons \
	  && python3 examples/contract-review/generate.py \
	  && MODELCOMMONS_BIN="$${CARGO_TARGET_DIR:-target}/debug/modelcommons" examples/contract-review/sign-contributions.sh

crds: ## regenerate the CRD YAML from the Rust types
	$(DEPS) && cargo run -q -p modelcommons-crds --bin crdgen -- --write

demo: ## the whole lifecycle live on a local control plane and chain, ending with a chat completion
	$(DEPS) && cargo build -q -p modelcommons-operator --bins -p modelcommons-demo -p modelcommons-trainer --bin modelcommons-trainer \
	  && "$${CARGO_TARGET_DIR:-target}/debug/modelcommons-demo" $(DEMO_ARGS)

deploy: ## render the kustomize base and overlays in deploy/ from the Helm chart
	$(DEPS) && hack/render-deploy.sh

contracts: ## recompile the Solidity sources into contracts/artifacts
	$(DEPS) && node contracts/build.js

cluster-up: ## start a local control plane in the background (kubeconfig: .tmp/cluster/kubeconfig)
	$(DEPS) && cargo build -q -p modelcommons-testbed --bin testbed
	@mkdir -p .tmp
	@if [ -f .tmp/testbed.pid ] && kill -0 $$(cat .tmp/testbed.pid) 2>/dev/null; then echo "already running"; exit 0; fi
	@nohup target/debug/testbed up --dir .tmp/cluster >.tmp/testbed.log 2>&1 & echo $$! >.tmp/testbed.pid
	@for i in $$(seq 1 600); do [ -f .tmp/cluster/ready ] && break; kill -0 $$(cat .tmp/testbed.pid) 2>/dev/null || { cat .tmp/testbed.log; exit 1; }; sleep 0.2; done
	@cat .tmp/testbed.log

cluster-down: ## stop the local control plane and remove its data
	@if [ -f .tmp/testbed.pid ]; then kill -TERM $$(cat .tmp/testbed.pid) 2>/dev/null || true; \
	  while kill -0 $$(cat .tmp/testbed.pid) 2>/dev/null; do sleep 0.2; done; rm -f .tmp/testbed.pid; fi
	@rm -rf .tmp/cluster && echo "control plane stopped"

bench: ## measure the test bed: control-plane and anvil start times, warm `make test` wall time
	hack/bench.sh

bench-trainer: ## trainer speed and peak memory vs PyTorch eager / transformers generate (THREADS=2)
	hack/bench-trainer.sh

bench-operator: ## FineTuneJob controller latency, 1,000 jobs to Running, RSS, idle writes (FTJ_COUNT=1000; release build, as the image ships)
	$(DEPS) && cargo bench -q -p modelcommons-operator --bench controller

bench-gas: ## print the gas of every ledger operation on anvil (Merkle claims at 10, 1k, 10k recipients)
	$(DEPS) && cargo bench -q -p modelcommons-ledger --bench gas

selftest: ## train a tiny network with libtorch and print the loss curve
	$(DEPS) && cargo run -q -p modelcommons-trainer -- selftest

clean: ## remove build outputs (the version caches in ~/.cache/modelcommons stay)
	cargo clean && rm -rf .tmp
