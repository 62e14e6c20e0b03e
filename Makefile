# The commands people type. Everything installs into .venv from requirements.lock (pinned).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAM := PATH="$(abspath $(VENV))/bin:$$PATH" SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam
# checkov pins libraries of its own: it gets a virtual environment apart from the project's
CHECKOV_VENV := .venv-checkov
BUILD ?= .build
DEMO_MODEL := $(BUILD)/demo.keras
MODEL ?= $(DEMO_MODEL)
# Each model source (the model, how it is served, its companion) is exported once into a bundle of its own under
# $(BUILD)/bundles/; $(SERVED) points at the one `make model` made or found last: what the bulk jobs serve.
BUNDLE ?= $(BUILD)/bundles/$(SOURCE_KEY)
SERVED := $(BUILD)/bundle
SERVING = $(if $(filter file,$(origin BUNDLE)),$(SERVED),$(BUNDLE))  # what make run serves: BUNDLE=... if given
PORT ?= 3000
# What an export depends on: the bundle is rebuilt only when the model, its path or one of these changed.
EXPORTER := $(wildcard layers/exporter/*.py handler/carryover/engine/*.py handler/carryover/keras_model/*.py) \
	handler/carryover/manifest.py handler/carryover/modes.py
export PYTHONPATH := handler:.:client
export TF_CPP_MIN_LOG_LEVEL := 2
export KERAS_BACKEND := tensorflow

.PHONY: help venv venv-run preflight model run stream-deps send lint test test-fast bench bootstrap compare export-states import-states bench-peer build deploy smoke example openapi lock clean clean-state FORCE

help:
	@echo "make run          serve the demo model (or MODEL=path/to/model.keras, .h5 or SavedModel dir) on http://127.0.0.1:$(PORT)"
	@echo "make run STREAM=1 also a local Kinesis stream (kinesalite; needs Node.js) applied by the stream function"
	@echo "make send         put records of the demo on the local stream (USER_ID=..., RECORDS=n) and show the answers"
	@echo "make test         lint (ruff, mypy) and run the whole test suite"
	@echo "make test-fast    the pure unit tests only (no TensorFlow; under a minute)"
	@echo "make model        export MODEL (default: the demo; .keras, .h5 or a SavedModel dir) into a verified bundle at $(BUNDLE)"
	@echo "                  MODE=carry|window WINDOW=n: how it is served (default: chosen from the model)"
	@echo "                  NEXT=new.keras: keep the next version beside it (a rollout warms it up while MODEL answers)"
	@echo "                  PREVIOUS=old.keras: keep the version it replaces, exact for a rollback"
	@echo "make bench        measure latency, compute, cold start and DynamoDB cost on the bundle"
	@echo "make bench-peer   carryover vs TorchServe 0.12.0 stateful inference, same model, side by side"
	@echo "make build        sam build: the Lambda zip and its layers, into .aws-sam/build"
	@echo "make invoke      sam local invoke PredictFunction on the build (needs Docker): EVENT=events/predict.json"
	@echo "                  DYNAMODB_ENDPOINT=http://...: the DynamoDB holding the state (table TABLE_NAME, carryover-local)"
	@echo "make deploy       check AWS credentials and region, build, then sam deploy (guided the first time)"
	@echo "make smoke URL=…  call a deployed API with the client, signed with your AWS credentials (REGION=...)"
	@echo "make example      stream a sequence through the local API and chart it (.build/stream.png; OUT=...;"
	@echo "                  URL=http://127.0.0.1:$(PORT): through an API already running, such as make run's)"
	@echo "make clean-state  forget every user's state kept by the local API (.build/state.sqlite3)"
	@echo "make bootstrap MODEL=new.keras   the new version's state for every user, over their whole history"
	@echo "                  (the row log); STACK=name: the deployed stack's bootstrap (Step Functions), followed"
	@echo "make compare MODEL=new.keras     both versions over every user's history: .build/compare/report.md, .png"
	@echo "make export-states               every user's state as JSON lines (.build/states.jsonl); import-states FILE=..."

# Two pinned sets in one environment: what serving and exporting need (make run, make model), and the
# development tools on top (make test, make bench, ...), each installed once.
venv-run: $(VENV)/.installed-run
venv: $(VENV)/.installed

$(VENV)/.installed-run: requirements-run.lock
	@$(PYTHON) infra/install.py $(VENV) requirements-run.lock "serving and exporting"
	@touch $@

$(VENV)/.installed: requirements.lock $(VENV)/.installed-run
	@$(PYTHON) infra/install.py $(VENV) requirements.lock "development and tests"
	@$(VENV)/bin/pip install --quiet --no-deps -e client
	@touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.lock
	@echo "==> installing checkov into $(CHECKOV_VENV) (once)"
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet pip==25.3
	$(CHECKOV_VENV)/bin/pip install --quiet --no-deps -r requirements-checkov.lock
	@touch $@

preflight:
	@$(PYTHON) infra/local/preflight.py $(PORT) $(filter-out $(DEMO_MODEL),$(MODEL))

$(DEMO_MODEL): layers/exporter/demo.py | venv-run
	@$(PY) -m layers.exporter.demo $@

ifneq ($(MODEL),$(DEMO_MODEL))
$(MODEL):
	@echo "MODEL=$(MODEL): no such file or directory; give the path of a .keras or .h5 file, or of a SavedModel directory" >&2; exit 1
endif
ifneq ($(COMPANION),)
$(COMPANION):
	@echo "$(if $(NEXT),NEXT,PREVIOUS)=$(COMPANION): no such file; give the path of the other model's file" >&2; exit 1
endif

# Which model the bundle was made from: a different MODEL is a different bundle even if older on disk.
# MODE=carry|window and WINDOW=n choose how the model is served (default: from the model; see README);
# NEXT=path or PREVIOUS=path keeps a second version in the bundle ("Ship a retrained model" in the README).
# SEQUENCES=n: how many random chunked sequences the export verifies each engine on (default 50).
COMPANION := $(or $(NEXT),$(PREVIOUS))
SOURCE := $(abspath $(MODEL)) $(MODE) $(WINDOW) next=$(abspath $(NEXT)) previous=$(abspath $(PREVIOUS))
SOURCE_KEY := $(shell key=$$(printf '%s' '$(SOURCE)' | { sha256sum || shasum -a 256; } 2>/dev/null); echo "$${key:0:16}")
$(BUNDLE).source: FORCE
	@mkdir -p $(dir $(BUNDLE)); echo "$(SOURCE)" | cmp -s - $@ || echo "$(SOURCE)" > $@

# A SavedModel directory (MODEL=path/to/dir) is as new as the newest file in it.
model_files = $(if $(wildcard $(1)/saved_model.pb),$(shell find $(1) -type f),$(1))

$(BUNDLE)/manifest.json: $(call model_files,$(MODEL)) $(call model_files,$(COMPANION)) $(BUNDLE).source $(EXPORTER) | venv-run
	@$(PY) -m layers.exporter $(MODEL) $(BUNDLE) $(if $(MODE),--mode $(MODE)) $(if $(WINDOW),--window $(WINDOW)) \
		$(if $(NEXT),--next $(NEXT)) $(if $(PREVIOUS),--previous $(PREVIOUS)) \
		$(if $(SEQUENCES),--sequences $(SEQUENCES))

model: $(BUNDLE)/manifest.json
ifneq ($(abspath $(BUNDLE)),$(abspath $(SERVED)))
	@if [ -d $(SERVED) ] && [ ! -L $(SERVED) ]; then rm -rf $(SERVED); fi  # an earlier release's single bundle
	@ln -sfn $(abspath $(BUNDLE)) $(SERVED)
endif

# STREAM=1: kinesalite (pinned in infra/local/kinesis/package-lock.json, installed there with npm ci, once).
KINESIS_DIR := infra/local/kinesis
KINESIS_PORT ?= 4567

$(KINESIS_DIR)/node_modules/.installed: $(KINESIS_DIR)/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "STREAM=1 needs Node.js 18+ and npm for kinesalite: apt-get install nodejs npm (or https://nodejs.org)" >&2; exit 1; }
	@echo "==> installing kinesalite 3.3.3 into $(KINESIS_DIR)/node_modules (once)"
	@cd $(KINESIS_DIR) && npm ci --omit=optional --no-audit --no-fund --loglevel=error
	@touch $@

stream-deps: $(if $(filter 1,$(STREAM)),$(KINESIS_DIR)/node_modules/.installed)

run: preflight model stream-deps
	@PORT=$(PORT) STREAM=$(STREAM) KINESIS_PORT=$(KINESIS_PORT) $(PY) -m infra.local $(SERVING)

send: venv-run
	@$(PY) -m infra.local.send --endpoint http://127.0.0.1:$(KINESIS_PORT) $(if $(USER_ID),--user $(USER_ID)) $(if $(RECORDS),--records $(RECORDS))

LINTED := handler layers infra client examples tests

lint: venv
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict handler client/carryover_client

# The suite on every core (at most 4), a test file per worker at a time: each worker exports the test models its
# files use, once.
test: lint $(CHECKOV_VENV)/.installed $(KINESIS_DIR)/node_modules/.installed
	$(PY) -m pytest -n auto --maxprocesses 4 --dist loadfile

# The pure unit tests (tests/unit/fast): no TensorFlow, the small committed bundle; under a minute.
test-fast: venv
	$(PY) -m pytest tests/unit/fast -m fast -n auto --maxprocesses 4 -q

bench: model venv
	$(PY) -m tests.benchmarks $(BUNDLE)

# The peer (opt-in; about 1 GB and 1.5 min to install, once; needs java): TorchServe 0.12.0's stateful inference
# serving the same model, measured side by side with the local API in one run (make bench runs it when installed).
PEER_VENV := .venv-peer

$(PEER_VENV)/.installed: requirements-peer.lock
	@command -v java >/dev/null || { echo "bench-peer needs java on PATH (TorchServe's frontend): apt-get install -y openjdk-17-jre-headless" >&2; exit 1; }
	@echo "==> installing TorchServe 0.12.0 and torch 2.13.0 (CPU) into $(PEER_VENV) (once; about 1.5 min, 1 GB)"
	@start=$$SECONDS; $(PYTHON) -m venv $(PEER_VENV) && $(PEER_VENV)/bin/pip install --quiet pip==25.3 && \
	$(PEER_VENV)/bin/pip install --quiet --no-deps -r requirements-peer.lock && \
	echo "==> installed in $$((SECONDS - start)) s"
	@touch $@

bench-peer: model venv $(PEER_VENV)/.installed
	$(PY) -m tests.benchmarks.peer $(BUNDLE) --venv $(PEER_VENV)

# sam's closing advice (sam deploy --guided, ...) bypasses this Makefile: it is cut, and ours follows.
build: model venv
	@MODEL_BUNDLE_DIR="$(abspath $(BUNDLE))" $(SAM) build --template template.yaml | sed '/^Commands you can use next/,$$d'
	@du -sh .aws-sam/build/*/
	@echo "next: make deploy (checks your AWS credentials and region first)"

# sam local invoke (needs Docker) on the built template (make build first), with EVENT=events/<file>.json and the
# state in a DynamoDB the Lambda container reaches, DYNAMODB_ENDPOINT, table TABLE_NAME (the local stack's, which
# `make run DYNAMODB_ENDPOINT=...` creates); S3_ENDPOINT, KINESIS_ENDPOINT as well when given. DOCKER_NETWORK: the
# container joins that network too (where DynamoDB Local runs, say); FUNCTION=StreamFunction EVENT=events/kinesis.json.
# SAM passes a function only the variables its template declares: template.yaml declares these, empty.
.PHONY: invoke
BUILT_TEMPLATE ?= .aws-sam/build/template.yaml
FUNCTION ?= PredictFunction
TABLE_NAME ?= carryover-local

invoke: venv
	@test -n "$(EVENT)" || { echo "make invoke: give EVENT=events/<file>.json, the event $(FUNCTION) is invoked with" >&2; exit 1; }
	@test -n "$(DYNAMODB_ENDPOINT)" || { echo "make invoke: give DYNAMODB_ENDPOINT=http://<host>:<port>, a DynamoDB the Lambda container reaches (not 127.0.0.1; e.g. http://host.docker.internal:8000) with table $(TABLE_NAME) (make run DYNAMODB_ENDPOINT=... creates it)" >&2; exit 1; }
	@test -f "$(BUILT_TEMPLATE)" || { echo "make invoke: no $(BUILT_TEMPLATE): run make build first" >&2; exit 1; }
	@mkdir -p $(BUILD) && $(PY) -c 'import json, sys; given = zip(sys.argv[1::2], sys.argv[2::2]); print(json.dumps({"Parameters": {k: v for k, v in given if v}}))' \
		TABLE_NAME "$(TABLE_NAME)" DYNAMODB_ENDPOINT "$(DYNAMODB_ENDPOINT)" S3_ENDPOINT "$(S3_ENDPOINT)" \
		KINESIS_ENDPOINT "$(KINESIS_ENDPOINT)" > $(BUILD)/env-vars.json
	$(SAM) local invoke $(FUNCTION) --template $(BUILT_TEMPLATE) --event $(EVENT) --env-vars $(BUILD)/env-vars.json \
		$(if $(DOCKER_NETWORK),--docker-network $(DOCKER_NETWORK))

# Guided the first time (it saves the answers to samconfig.toml, region included), then from samconfig.toml.
deploy: venv
	@region=$$($(PY) -m infra.aws_check); $(MAKE) --no-print-directory build; \
		if grep -qs '^region' samconfig.toml; then $(SAM) deploy $${region:+--region $$region}; \
		else $(SAM) deploy --guided $${region:+--region $$region}; fi

smoke: venv
	@test -n "$(URL)" || { echo "usage: make smoke URL=https://<api-id>.execute-api.<region>.amazonaws.com [REGION=...]" >&2; exit 1; }
	@$(PY) -m examples.smoke "$(URL)" $(if $(REGION),--region $(REGION))

# The chart goes under .build/: the README's docs/stream.png changes only when asked (OUT=docs/stream.png).
OUT ?= $(BUILD)/stream.png
example: model venv
	@$(PY) -m examples.stream_chart $(BUNDLE) $(OUT) $(if $(URL),--url $(URL))

openapi: venv
	$(PY) -m carryover.http.openapi > openapi.json

lock: venv
	$(VENV)/bin/pip install --quiet -r <(grep -v '^tf-keras' requirements.in)
	$(VENV)/bin/pip install --quiet --no-deps $$(grep '^tf-keras' requirements.in)
	$(VENV)/bin/pip freeze --exclude-editable > requirements.lock
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install --quiet pip==25.3
	.venv-lock/bin/pip install --quiet -r <(grep -v '^tf-keras' requirements-run.in) -c requirements.lock
	.venv-lock/bin/pip install --quiet --no-deps $$(grep '^tf-keras' requirements-run.in)
	{ sed -n '1,2p' requirements-run.lock; .venv-lock/bin/pip freeze; } > requirements-run.lock.new
	mv requirements-run.lock.new requirements-run.lock && rm -rf .venv-lock

# The bulk jobs over every user of the local stack (its SQLite file, or DYNAMODB_ENDPOINT for the states), on
# the worker code a deployed bootstrap runs; the bootstrap of a deployed stack: STACK=name [REGION=...].
STATE_FILE ?= $(BUILD)/state.sqlite3
GIVEN_MODEL = $(filter-out $(DEMO_MODEL),$(MODEL))
BULK = $(PY) -m infra.bulk

bootstrap: venv
	@$(BULK) bootstrap --served $(SERVED) --state $(STATE_FILE) $(if $(GIVEN_MODEL),--model $(GIVEN_MODEL)) \
		$(if $(STACK),--stack $(STACK)) $(if $(REGION),--region $(REGION))

compare: venv
	@test -n "$(GIVEN_MODEL)" || { echo "make compare: give MODEL=new.keras, the version to compare with the served one" >&2; exit 1; }
	@$(BULK) compare --served $(SERVED) --state $(STATE_FILE) --model $(GIVEN_MODEL)

export-states: venv
	@$(BULK) export --served $(SERVED) --state $(STATE_FILE)

import-states: venv
	@test -n "$(FILE)" || { echo "make import-states: give FILE=states.jsonl (written by make export-states)" >&2; exit 1; }
	@$(BULK) import --served $(SERVED) --state $(STATE_FILE) $(FILE)

clean-state:
	rm -f $(BUILD)/state.sqlite3 $(BUILD)/state.sqlite3-wal $(BUILD)/state.sqlite3-shm

clean:
	rm -rf $(BUILD) .aws-sam
