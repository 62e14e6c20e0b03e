# The commands people type. Everything installs into .venv from requirements.lock (pinned).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# checkov pins libraries of its own: it gets a virtual environment apart from the project's
CHECKOV_VENV := .venv-checkov
BUILD := .build
DEMO_MODEL := $(BUILD)/demo.keras
MODEL ?= $(DEMO_MODEL)
BUNDLE ?= $(BUILD)/bundle
export PYTHONPATH := handler:.
export TF_CPP_MIN_LOG_LEVEL := 2
export KERAS_BACKEND := tensorflow

.PHONY: help venv model run lint test bench build lock clean openapi example

help:
	@echo "make run    serve the demo model (or MODEL=path/to/model.keras) on http://127.0.0.1:$${PORT:-3000}"
	@echo "make test   lint (ruff, mypy) and run the whole test suite"
	@echo "make model  export MODEL (default: the demo) into a verified bundle at $(BUNDLE)"
	@echo "make bench  measure latency, compute, cold start and DynamoDB cost on the bundle"
	@echo "make build  sam build: the Lambda zip and its layers, into .aws-sam/build"

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet pip==25.3
	$(VENV)/bin/pip install --quiet -r requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps -e client
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.lock
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet pip==25.3
	$(CHECKOV_VENV)/bin/pip install --quiet --no-deps -r requirements-checkov.lock
	touch $@

$(DEMO_MODEL): layers/model/demo.py | venv
	$(PY) -m layers.model.demo $@

model: venv $(MODEL)
	$(PY) -m layers.model.export $(MODEL) $(BUNDLE)

run: model
	$(PY) -m infra.local $(BUNDLE)

lint: venv
	$(VENV)/bin/ruff check handler layers infra client
	$(VENV)/bin/ruff format --check handler layers infra client
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict client/carryover_client

test: lint $(CHECKOV_VENV)/.installed
	$(PY) -m pytest

bench: model
	$(PY) -m tests.benchmarks.bench $(BUNDLE)

build: model
	PATH="$(abspath $(VENV))/bin:$$PATH" MODEL_BUNDLE_DIR="$(abspath $(BUNDLE))" SAM_CLI_TELEMETRY=0 \
		$(VENV)/bin/sam build --template template.yaml
	du -sh .aws-sam/build/*/

example: model
	$(PY) -m examples.stream_chart $(BUNDLE) docs/stream.png

openapi: venv
	$(PY) -m carryover.openapi > openapi.json

lock: venv
	$(VENV)/bin/pip install --quiet -r requirements.in
	$(VENV)/bin/pip freeze --exclude-editable > requirements.lock

clean:
	rm -rf $(BUILD) .aws-sam
