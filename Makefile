# Seller Insights: every target installs what it needs first (virtual environments from pinned
# requirements, the CDK CLI from package-lock.json, the dependency layer, Chromium for browser tests).

SHELL := /bin/bash
.DEFAULT_GOAL := help
STAGE ?= dev
# cdk deploy's approval of security-broadening changes: a person at a terminal; CI passes never (its
# environment's reviewers approve instead, .github/workflows/deploy.yml).
APPROVAL ?= broadening

PYTHON_BIN ?= $(shell command -v python3.13 2>/dev/null || echo python3)
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
CDK := JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 npx --no-install cdk
# The machine's pip configuration may list local indexes that do not exist; their warnings are noise.
PIP_QUIET := --quiet --disable-pip-version-check
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: help install demo dev test lint typecheck unit integration infra-tests e2e browser synth lint-iac \
        layer deploy diff clean chromium rollback destroy

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON_BIN) -c 'import sys; assert sys.version_info[:2] == (3, 13), "Python 3.13 is required (see .python-version); found " + sys.version' 
	@test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	@echo "installing the Python environment (.venv) ..."
	@$(PY) -m pip install $(PIP_QUIET) -r requirements-dev.txt 2> >(grep -v "is ignored: it is neither" >&2)
	@touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON_BIN) -m venv $(CHECKOV_VENV)
	@echo "installing checkov in its own environment (.venv-checkov) ..."
	@$(CHECKOV_VENV)/bin/pip install $(PIP_QUIET) -r requirements-checkov.txt 2> >(grep -v "is ignored: it is neither" >&2)
	@touch $@

node_modules/.installed: package.json package-lock.json
	@echo "installing the CDK CLI (node_modules) ..."
	@npm ci --silent --no-audit --no-fund
	@touch $@

install: $(VENV)/.installed node_modules/.installed layer  ## everything make demo and make dev need

layer: $(VENV)/.installed  ## build the third-party Lambda layer (manylinux aarch64, Python 3.13, .pyc)
	@$(PY) -m layers.deps.build

chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then echo "installing Debian's chromium for the browser test ..."; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; \
	  else echo "the browser test needs Debian's chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

demo: install  ## the main job on the local stack: consent, tokens, reports into S3, export and deletion
	@$(PY) -m local demo

dev: install  ## run the local stack until Ctrl-C (prints its endpoints as one JSON line)
	@$(PY) -m local serve

lint: $(VENV)/.installed  ## ruff, and the import boundaries of pyproject.toml (import-linter)
	@$(VENV)/bin/ruff check .
	@PYTHONPATH=functions:layers/shared/python:. $(VENV)/bin/lint-imports --no-cache --no-logo

typecheck: $(VENV)/.installed  ## mypy on the deployed code, the infrastructure, the local stack and the benchmarks
	@$(VENV)/bin/mypy layers functions infra app.py local bench ops

unit: $(VENV)/.installed
	@$(PY) -m pytest tests/unit tests/local -q

integration: $(VENV)/.installed
	@$(PY) -m pytest tests/integration -q

infra-tests: $(VENV)/.installed layer
	@$(PY) -m pytest tests/infra -q

e2e: install
	@$(PY) -m pytest tests/e2e_local -q

browser: install chromium
	@$(PY) -m pytest tests/browser -q

synth: install  ## cdk synth STAGE=dev|prod|local with the cdk-nag gate (fails on any unacknowledged finding)
	@$(CDK) synth -c stage=$(STAGE) -q
	@echo "synthesized SellerInsights-$(STAGE) into cdk.out with zero unacknowledged cdk-nag findings"

lint-iac: synth $(CHECKOV_VENV)/.installed  ## cfn-lint and checkov on the synthesized template
	@$(VENV)/bin/cfn-lint
	@$(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml --quiet --compact

test: install chromium $(CHECKOV_VENV)/.installed  ## everything CI runs; line coverage of functions/ and layers/shared/, floor 90%
	@$(MAKE) --no-print-directory lint typecheck
	@$(PY) -m pytest tests -q -p no:cacheprovider --cov --cov-report=term
	@$(MAKE) --no-print-directory lint-iac

diff: install  ## cdk diff against the account in your AWS credentials
	@$(CDK) diff -c stage=$(STAGE)

deploy: install  ## cdk deploy STAGE=dev|prod to the account in your AWS credentials
	@$(CDK) deploy -c stage=$(STAGE) --require-approval $(APPROVAL)

rollback: $(VENV)/.installed  ## point every live alias back to its version before the last deploy (STAGE, FUNCTION=duty VERSION=n, DRY_RUN=1)
	@$(PY) -m ops rollback --stage $(STAGE) $(if $(FUNCTION),--function $(FUNCTION)) \
	  $(if $(VERSION),--version $(VERSION)) $(if $(DRY_RUN),--dry-run)

destroy: install  ## cdk destroy STAGE=..., refused while the stack holds seller data (PURGE_FIRST=1: request every purge)
	@if [ "$(STAGE)" = local ]; then echo "the local stage is never deployed: stop make dev instead" >&2; exit 2; fi
	@$(PY) -m ops destroy-check --stage $(STAGE) $(if $(PURGE_FIRST),--purge-first)
	@$(CDK) destroy -c stage=$(STAGE)

clean:  ## remove build outputs (keeps the virtual environments)
	rm -rf cdk.out build .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage .coverage.*
