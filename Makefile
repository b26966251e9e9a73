# The project's entry points. `make test` and `make demo` are the README's two commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test test-unit browser screenshots lint schema golden bench bench-memory bench-reconcile bench-connector bench-platform demo platform platform-down platform-clean image chart-tools chart-rbac chart-test clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

test: install chart-tools image platform browser ## every test: unit, CLI, chart, image, browser and integration (on the local platform)
	$(BIN)/pytest

test-unit: install chart-tools ## the tests that need no platform
	$(BIN)/pytest -m "not integration"

browser: ## headless Chromium and chromedriver for the status page's tests (Debian's packages)
	bash hack/browser/install.sh

screenshots: install platform browser ## the status page in Chromium; the application page becomes docs/status-page.png
	$(BIN)/pytest tests/integration/test_status_page.py
	cp build/screenshots/application.png docs/status-page.png

platform: ## build (once, cached in ~/.cache/mico-platform) and start the local platform
	bash hack/platform/prerequisites.sh
	$(PYTHON) hack/platform/platform.py up

platform-down: ## stop exactly the processes `make platform` started
	$(PYTHON) hack/platform/platform.py down

platform-clean: platform-down ## also forget the platform's state (.platform/); caches stay
	rm -rf .platform

image: ## the OCI image build/mico-reconciler.oci.tar (hack/image/; caches in ~/.cache/mico-image)
	bash hack/image/build.sh

bench-reconcile: install platform ## the reconciler against its floors at 100/1,000/5,000 services; rewrites the README's tables
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/reconcile_bench.py --services 100 1000 5000 --plot bench/results/growth.png --readme

bench-connector: install platform ## the Kafka-FaaS-connector's throughput and latency against a bare pipe on the platform's broker
	$(BIN)/python bench/connector_bench.py

bench-platform: ## cold build (empty Go and platform caches) and warm start of the platform
	bash bench/platform_bench.sh

lint: install ## ruff, formatting, mypy (strict on the pure core), import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

schema: install ## regenerate the published JSON Schema from the models
	$(BIN)/mico-reconciler schema > schemas/mico.schema.json

golden: install ## regenerate the golden render of the example after an intended change
	$(BIN)/mico-reconciler render examples/mico.yaml > tests/golden/example-objects.yaml

bench: install ## validate/render of a generated 1,000-service config
	$(BIN)/python bench/spec_bench.py --services 1000

bench-memory: install ## the memory the daemon's libraries take once imported: the floor under its RSS
	$(BIN)/python bench/memory_floor.py

demo: install platform ## the platform, the example in its git server, the daemon reconciling it
	bash hack/demo.sh

chart-tools: ## helm and helm-unittest from the Go module proxy (cached in ~/.cache/mico-tools; .tools/bin/helm)
	bash hack/tools/helm.sh

chart-rbac: install ## regenerate the chart's RBAC rules from reconciler/cluster/permissions.py
	$(BIN)/python hack/chart/rbac_rules.py

chart-test: install chart-tools ## the chart's static tests (lint, render, schemas, helm-unittest, RBAC = permissions.py)
	$(BIN)/pytest tests/chart

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
