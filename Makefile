# leadpipe's two front doors are `make run` and `make test`; everything else
# here exists to make those work on a fresh machine with only Python 3.11+,
# make and a C compiler. uv is bootstrapped into .tools/, the project's
# environment into .venv/, both from uv.lock so every machine gets the same
# versions.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
STAMP := $(VENV)/.leadpipe-synced
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Every service process, CLI and test stack imports FastAPI, SQLAlchemy and
# aiokafka afresh: compiled once here, a start costs ~1.7 s of CPU instead of
# ~4 s (more where PYTHONDONTWRITEBYTECODE keeps Python from caching them).
export UV_COMPILE_BYTECODE := 1

.DEFAULT_GOAL := help
.PHONY: help install run test test-unit bench redrive replay rescore what-if export asyncapi openapi schemas config-doc lock clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(UV):
	@command -v $(PYTHON) >/dev/null || { echo "leadpipe needs Python 3.11 or newer, and there is no $(PYTHON) here: install one, or set PYTHON=python3.12 (or similar)."; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "leadpipe needs Python 3.11 or newer; $(PYTHON) is older. Set PYTHON=python3.12 (or similar)."; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { echo "$(PYTHON) lacks its venv module (Debian and Ubuntu ship it apart: sudo apt install python3-venv)."; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(STAMP): $(UV) uv.lock pyproject.toml shared/pyproject.toml services/*/pyproject.toml
	$(UV) sync --frozen --all-packages
	@$(VENV)/bin/python -m compileall -q shared/src services/*/src > /dev/null
	@touch $@

install: $(STAMP) ## create .venv from uv.lock

run: $(STAMP) ## start broker, Postgres and every service; Ctrl-C stops all
	$(VENV)/bin/leadpipe-stack run

# Two pytest-xdist workers: one runs every test that needs the stack (the
# plugin groups them), the other the rest meanwhile. TEST_WORKERS=0 runs all
# in this one process, in file order.
TEST_WORKERS ?= 2
TEST_DIST := -n $(TEST_WORKERS) --dist loadgroup

test: $(STAMP) ## run every test against a real broker and Postgres
	$(VENV)/bin/pytest $(TEST_DIST) $(PYTEST_ARGS)

test-unit: $(STAMP) ## only the tests that need no broker or Postgres
	$(VENV)/bin/pytest -m "not integration" $(TEST_DIST) $(PYTEST_ARGS)

bench: $(STAMP) ## start a stack and print throughput and latency figures
	$(VENV)/bin/python -m tests.bench $(BENCH_ARGS)

redrive: $(STAMP) ## send dead letters (leads.deadletter) back to their topics (REDRIVE_ARGS="--dry-run"); dead webhook deliveries: leadpipe-delivery redrive
	$(VENV)/bin/leadpipe-redrive $(REDRIVE_ARGS)

replay: $(STAMP) ## rebuild the reports from leads.lifecycle (REPLAY_ARGS="--since 2026-11-01": re-apply only what came since)
	$(VENV)/bin/leadpipe-reporting replay $(REPLAY_ARGS)

rescore: $(STAMP) ## re-score open leads under the current rules.yaml (RESCORE_ARGS="--dry-run" first)
	$(VENV)/bin/leadpipe-scoring rescore $(RESCORE_ARGS)

what-if: $(STAMP) ## route past MQLs again under candidate files (WHATIF_ARGS="--since ISO --reps F --territories F --accounts F --reasons F")
	$(VENV)/bin/leadpipe-routing what-if $(WHATIF_ARGS)

export: $(STAMP) ## write leads.lifecycle to a file for analysts (EXPORT_ARGS="lifecycle.parquet --since ...")
	$(VENV)/bin/leadpipe-reporting export $(or $(EXPORT_ARGS),lifecycle.jsonl)

asyncapi: $(STAMP) ## regenerate docs/asyncapi.yaml from the event models (the tests check it)
	$(VENV)/bin/python -c 'from leadpipe_common.asyncapi import document, to_yaml; print(to_yaml(document()), end="")' > docs/asyncapi.yaml.partial
	mv docs/asyncapi.yaml.partial docs/asyncapi.yaml

openapi: $(STAMP) ## regenerate docs/openapi/<service>.json from the services (the tests check them)
	$(VENV)/bin/python -m leadpipe_common.local.openapi .

schemas: $(STAMP) ## publish the JSON schema of each new event version under docs/schemas (the tests check them)
	$(VENV)/bin/python -m leadpipe_common.local.contracts .

config-doc: $(STAMP) ## regenerate README.md's configuration table from the settings classes (the tests check it)
	$(VENV)/bin/python -m leadpipe_common.local.configdoc README.md

lock: $(UV) ## re-resolve uv.lock after changing a pyproject.toml
	$(UV) lock

clean: ## remove the environments and local data
	rm -rf $(VENV) $(TOOLS) .data
