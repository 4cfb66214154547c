# Common commands. `make demo` and `make test` are the README's two set-up commands.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONTROL_PLANE := operator/httpsync/devcluster/build-control-plane.sh

.PHONY: venv demo test lint unit crds control-plane cluster-up cluster-down bench e2e-kind clean

$(BIN)/httpsync: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

venv: $(BIN)/httpsync

## The main job on the embedded default: sync Port's overview scenario from the bundled demo API
## into the embedded SQLite catalog (./httpsync-catalog.db), then list what landed.
demo: venv
	$(BIN)/httpsync sync --demo-api -f examples/port-overview/
	$(BIN)/httpsync catalog list

## kube-apiserver, etcd, kubectl, helm and the tests' kstatus (hack/kstatus), built from Go modules into
## ~/.cache/httpsync/bin (only what is missing).
control-plane:
	bash $(CONTROL_PLANE)

lint: venv
	$(BIN)/ruff check operator tests bench
	$(BIN)/python -m httpsync.api.crdgen --check
	$(BIN)/python -m tests.helm.chartcrds --check

## Everything: lint, CRD drift check, unit and integration tests on a real kube-apiserver + etcd.
test: venv control-plane lint
	$(BIN)/pytest -q

unit: venv
	$(BIN)/pytest -q -m "not cluster"

crds: venv
	$(BIN)/python -m httpsync.api.crdgen
	$(BIN)/python -m tests.helm.chartcrds

cluster-up: venv
	$(BIN)/httpsync cluster up

cluster-down: venv
	$(BIN)/httpsync cluster down

## The engine's benchmarks (bench/results.json), then the operator at scale on the real control plane
## (bench/results-operator.json; SOURCES=2500 for the 5,000-mapping target). See bench/README.md.
SOURCES ?= 500
bench: venv control-plane
	$(BIN)/python -m bench
	$(BIN)/python -m bench --only operator --sources $(SOURCES)

## Needs Docker and kind (not available on the development machines): image, chart, quickstart, wait for Ready.
e2e-kind:
	bash hack/e2e-kind.sh

clean:
	rm -rf $(VENV) httpsync-catalog.db .pytest_cache .ruff_cache
