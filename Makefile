# Shunter developer commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
export SHUNTER_BIN_DIR ?= $(HOME)/.cache/shunter/bin
# kubectl and the other control-plane binaries built by `make controlplane`.
export PATH := $(SHUNTER_BIN_DIR):$(abspath $(VENV))/bin:$(PATH)
PYTEST_ARGS ?=
# mypy's cache outside the checkout, so a fresh clone (CI) starts warm; keyed by the
# checkout's path (its entries name the files they checked).
MYPY_CACHE ?= $(HOME)/.cache/shunter/mypy-$(shell printf %s "$(CURDIR)" | sha1sum | cut -c1-12)
# make test's pytest-xdist workers, each with its own control plane and PostgreSQL
# (tests/support/tiers.py); 0 runs the suite in one process. Three on two cores: a
# third of the suite's time is waits (Lease takeovers, the kubelet's minute-long
# container GC, grace periods), when two workers left the CPU 30-40 % idle.
TEST_WORKERS ?= 3

.PHONY: help venv controlplane cluster cluster-down postgres postgres-down lint test manifests chart-lint \
        test-unit demo demo-down e2e-kind bench bench-10k bench-preemption bench-grace-frontier bench-reports bench-estimates bench-fair-peers bench-kueue-shape kueue soak clean trainer-venv deps \
        realnode-bins images demo-real

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The real node's packages are not needed against another cluster (KUBECONFIG).
deps: ## Install the Debian packages the targets need (only the missing ones; hack/install-deps.sh)
	@hack/install-deps.sh base browser $(if $(KUBECONFIG),,realnode)

# uv (from PyPI) installs the rest: seconds from its cache (~/.cache/uv), where pip
# takes about a minute on two cores.
$(VENV)/.installed: pyproject.toml
	@hack/install-deps.sh base
	python3 -m venv $(VENV)
	$(PY) -m pip install -q 'uv>=0.5'
	$(VENV)/bin/uv pip install -q --python $(PY) -e '.[local,test,lint,bench]'
	touch $@

venv: $(VENV)/.installed ## Create .venv with the package, test and lint tools (caches: ~/.cache/pip, ~/.cache/uv)

controlplane: ## Build etcd, kube-apiserver, -controller-manager, -scheduler, kubectl, kwok, helm (pinned; cached)
	@hack/install-deps.sh base
	hack/controlplane/build.sh

realnode-bins: controlplane ## Build the real node's kubelet, kube-proxy, containerd, runc, CNI, buildkit, crictl (pinned; cached)
	hack/controlplane/build-realnode.sh

images: venv realnode-bins trainer-venv ## Build the operator/API and trainer images into the real node's containerd (cached by content)
	$(PY) -m shunter.devcluster.cli images

cluster: venv controlplane ## Start the local control plane with 4 fake GPU nodes x 8 GPUs; prints the kubeconfig
	$(PY) -m shunter.devcluster.cli cluster up --name dev

cluster-down: venv ## Stop the local control plane (no process left) and delete its state
	$(PY) -m shunter.devcluster.cli cluster down --name dev

postgres: venv ## Start the embedded PostgreSQL; prints DATABASE_URL
	$(PY) -m shunter.devcluster.cli postgres up --name dev

postgres-down: venv ## Stop the embedded PostgreSQL and delete its data
	$(PY) -m shunter.devcluster.cli postgres down --name dev

demo: deps venv controlplane ## The whole system locally: cluster, Postgres, operator, API on :8000, sample jobs
	$(PY) -m shunter.devcluster.cli demo up

demo-real: venv images ## The demo plus the real node and one real trainer job (see README, "A real node")
	$(PY) -m shunter.devcluster.cli demo up --real-node

demo-down: venv ## Stop everything `make demo` or `make demo-real` started
	$(PY) -m shunter.devcluster.cli demo down

e2e-kind: venv controlplane ## The e2e suite on a kind cluster (needs Docker and kind; see hack/e2e-kind.sh)
	hack/e2e-kind.sh

kueue: ## Build Kueue (pinned in hack/controlplane/kueue; ~4 min, cached), the bench's queueing peer
	hack/controlplane/build.sh kueue

# Kueue's client QPS/burst in the benches: its manifest's 50/100, and raised.
KUEUE_SETTINGS ?= 50/100,500/1000

bench: venv controlplane kueue ## Benchmarks: Shunter vs Kueue vs batch/v1 Jobs (~1.5 h; writes bench/results/*.json; see bench/RESULTS.md)
	hack/install-deps.sh bench
	$(PY) -m bench.latency --jobs 200 --idle 20 --chain 100 --kueue $(KUEUE_SETTINGS)
	$(PY) -m bench.throughput --jobs 1000 --run-for 5s --kueue $(KUEUE_SETTINGS)
	$(PY) -m bench.throughput --jobs 1000 --run-for 1s --precreate --kueue $(KUEUE_SETTINGS)
	$(PY) -m bench.api_load --jobs 10000 --cycles 2000
	$(PY) -m bench.api_abuse

bench-10k: venv controlplane kueue ## The 10,000-job throughput run for all peers (1-2 h)
	$(PY) -m bench.throughput --jobs 10000 --run-for 5s --kueue $(KUEUE_SETTINGS)

bench-fair-peers: venv controlplane kueue ## Fair sharing, weights 2:1, Shunter then Kueue with fair sharing on one kwok cluster, real time (~30 min; issue 24, bench/RESULTS.md)
	$(PY) -m bench.fair_share_peers --minutes 12 --window 120

bench-kueue-shape: venv controlplane kueue ## Kueue's baseline perf shape (30 queues in 5 cohorts, 15,000 jobs), Shunter then Kueue + Jobs; SCALE, RUNTIME_SCALE, SHAPE=large, NODES=5000 (issue 26; 30-90 min)
	$(PY) -m bench.kueue_shape --shape $(or $(SHAPE),baseline) --scale $(or $(SCALE),1) --runtime-scale $(or $(RUNTIME_SCALE),1) \
		$(if $(NODES),--nodes $(NODES) --node-lease-seconds 300 --node-status-seconds 600)

bench-preemption: venv ## Preemption policies on a 300-job trace in virtual time, 5 seeds (~5 min; issue 23, bench/RESULTS.md)
	$(PY) -m bench.preemption_trace --seeds 1 2 3 4 5

bench-grace-frontier: venv ## Redone work against preemptor wait by the sized-grace bound, same trace (~6 min)
	$(PY) -m bench.grace_frontier 30 60 120 240 600

bench-estimates: venv ## Start-time estimates on a 300-job trace in virtual time, 5 seeds, vs a Slurm-style baseline; what-if and plan cost at 10,000 queued jobs (~5 min; issue 25, bench/RESULTS.md)
	$(PY) -m bench.estimates --seeds 1 2 3 4 5

bench-reports: venv controlplane ## Trainer reports' cost: 1,000 running jobs reporting every 10 s vs none (~12 min; issue 23, bench/RESULTS.md)
	$(PY) -m bench.reports

soak: venv controlplane ## The soak: 30 min of 50 REST clients with killed replicas, a DB and an API server restart (bench/soak.py)
	$(PY) -m bench.soak --minutes $(or $(MINUTES),30)

manifests: controlplane ## Re-render manifests/ from the Helm chart (a test fails if they drift)
	hack/render-manifests.sh

chart-lint: controlplane ## helm lint and helm template of charts/shunter
	helm lint --strict charts/shunter
	helm template shunter charts/shunter >/dev/null

lint: venv ## ruff (format + check), mypy --strict (the trainer too, without torch), import-linter
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --cache-dir $(MYPY_CACHE) operator/shunter api/shunter hack/shunter
	$(VENV)/bin/mypy --cache-dir $(MYPY_CACHE) trainer-image/shunter_trainer trainer-image/standalone_trainer
	$(VENV)/bin/lint-imports

trainer-venv: ## The trainer's torch venv under ~/.cache, plus the test extras (transformers, lightning); CPU is enough
	@hack/trainer-venv.sh

# With KUBECONFIG (kind, any cluster) the images come from elsewhere (hack/e2e-kind.sh).
TEST_IMAGES := $(if $(KUBECONFIG),,images)
test: deps venv controlplane lint chart-lint $(TEST_IMAGES) ## Lint, then the whole suite on real control planes with a real node, TEST_WORKERS in parallel (KUBECONFIG to reuse a cluster: one worker)
	SHUNTER_TRAINER_PYTHON=$$(hack/trainer-venv.sh) $(PY) -m pytest --durations=25 \
		-n $(if $(KUBECONFIG),0,$(TEST_WORKERS)) --dist loadgroup $(PYTEST_ARGS)

# The unit tier stands alone: a bin dir that does not exist proves no built binary is
# used (nor a control plane started), and tests/unit/conftest.py refuses the network.
test-unit: venv ## The unit tier (tests/unit) alone, under a minute: no cluster, Postgres, network or built binary
	env -u KUBECONFIG -u DATABASE_URL SHUNTER_BIN_DIR=/nonexistent/shunter-bin \
		$(PY) -m pytest tests/unit $(PYTEST_ARGS)

clean: ## Remove the venv and build leftovers (not the Go or pip caches)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
