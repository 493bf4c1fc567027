# cocoon-operator: every target a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
# The control plane (kube-apiserver, kube-controller-manager, kubectl, etcd) is built once from
# Go modules into ~/.cache/cocoon-operator and reused; see docs/development.md.
CONTROL_PLANE = $$(bash tests/control-plane/build.sh)

.PHONY: help build install image test conformance lint fmt demo bench bench-upstream chaos crd control-plane helm registry cluster-up cluster-down

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

build: ## Build the binaries (debug): cocoon-operator (run, crd) and cocoon-dev (dev, simulate, cluster)
	$(CARGO) build --workspace

install: ## Install cocoon-operator and the kubectl plugin kubectl-cocoon into ~/.cargo/bin (on PATH: `kubectl cocoon`)
	export COCOON_GIT_COMMIT=$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown) && \
	  $(CARGO) install --locked --path . --bins && \
	  $(CARGO) install --locked --path crates/kubectl-cocoon

image: ## Build the operator's OCI image without Docker (static binary, user 65532, no shell) into target/image
	@binary=$$(bash hack/static-binary.sh) && $(CARGO) build --quiet -p cocoon-dev && \
	  COCOON_GIT_COMMIT=$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown) \
	  ./target/debug/cocoon-dev image --binary "$$binary" $(IMAGE_ARGS)

helm: ## Build (or find cached) helm from its Go module, for the chart tests
	bash tests/tools/build.sh helm

registry: ## Build (or find cached) the distribution project's OCI registry, for cocoonstack snapshots
	bash tests/tools/build.sh registry

control-plane: ## Build (or find cached) the local control-plane binaries
	bash tests/control-plane/build.sh

test: ## Run every test: unit, property, doc, and integration tests against a real control plane
	@bin=$(CONTROL_PLANE) && echo "control plane binaries: $$bin" && \
	  helm=$$(bash tests/tools/build.sh helm) && echo "helm: $$helm" && \
	  registry=$$(bash tests/tools/build.sh registry) && echo "registry: $$registry" && \
	  COCOON_CONTROL_PLANE_BIN=$$bin COCOON_HELM=$$helm COCOON_REGISTRY_BIN=$$registry $(CARGO) test --workspace --all-targets --no-fail-fast -- --test-threads=2 && \
	  $(CARGO) test --workspace --doc

conformance: ## The real vk-cocoon (built from ../shared/providers) against a fake hypervisor CLI: every workflow, also on the simulator, compared -> target/conformance/report.json
	@test -f ../shared/providers/build.sh || test -n "$$COCOON_PROVIDERS_KIT" || \
	  { echo "make conformance: no ../shared/providers/build.sh beside the repository (or COCOON_PROVIDERS_KIT): cannot build the real vk-cocoon" >&2; exit 1; }
	@bin=$(CONTROL_PLANE) && $(CARGO) build --quiet -p cocoon-operator -p cocoon-dev --bin cocoon-operator --bin cocoon-dev --bin fake-cocoon && \
	  COCOON_CONTROL_PLANE_BIN=$$bin RUST_LOG=$${RUST_LOG:-warn} ./target/debug/cocoon-dev conformance $(CONFORMANCE_ARGS)

lint: ## Check formatting and clippy (warnings are errors)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

crd: ## Regenerate the CRDs from the Rust types: deploy/ and the Helm chart's crds/
	$(CARGO) run --quiet -- crd --write deploy/
	$(CARGO) run --quiet -- crd --write charts/cocoon-operator/crds/

demo: ## Run the operator locally: control plane, CRDs, simulator, operator and examples
	@bin=$(CONTROL_PLANE) && $(CARGO) build --quiet -p cocoon-dev -p kubectl-cocoon --bin cocoon-dev --bin kubectl-cocoon && \
	  COCOON_CONTROL_PLANE_BIN=$$bin ./target/debug/cocoon-dev dev $(DEMO_ARGS)

bench: ## Every scenario at N=10,100,1000 sets, counted at the API server (BENCH_QUICK=1: N=10; BENCH_EXTERNAL_OPERATOR="<cmd>" adds a column); writes target/bench/report.json and report.svg
	@bin=$(CONTROL_PLANE) && $(CARGO) build --quiet --release -p cocoon-operator --bin cocoon-operator && \
	  $(CARGO) build --quiet --profile tools -p cocoon-dev && \
	  COCOON_CONTROL_PLANE_BIN=$$bin RUST_LOG=$${RUST_LOG:-warn} ./target/tools/cocoon-dev bench $(BENCH_ARGS)

bench-upstream: ## make bench with the upstream Go operator beside ours: v0.1.1 (seed dialect), v0.3.3 (current, a local registry); UPSTREAM=v0.1.1|v0.3.3
	@bin=$(CONTROL_PLANE) && $(CARGO) build --quiet --release -p cocoon-operator --bin cocoon-operator && \
	  $(CARGO) build --quiet --profile tools -p cocoon-dev && \
	  COCOON_CONTROL_PLANE_BIN=$$bin RUST_LOG=$${RUST_LOG:-warn} bash hack/bench-upstream.sh

chaos: ## SIGKILL the operator 100 times under a random workload and faults; prints figures (CHAOS_ARGS="--seed 7")
	@bin=$(CONTROL_PLANE) && $(CARGO) build --quiet -p cocoon-operator -p cocoon-dev && \
	  COCOON_CONTROL_PLANE_BIN=$$bin ./target/debug/cocoon-dev chaos --operator target/debug/cocoon-operator $(CHAOS_ARGS)

cluster-up: build ## Start a local control plane in the background (kubeconfig: target/dev/kubeconfig)
	bash hack/cluster.sh up

cluster-down: ## Stop the local control plane started by cluster-up
	bash hack/cluster.sh down
