# Set-up and the two everyday commands. Everything runs from .venv, made here.
#   make train   train deep_v1 on the embedded defaults (data/sample_2k.json -> runs/)
#   make test    the test suite (what CI runs), with a Docker engine: the running one,
#                or one started for the tests and stopped after (docker/local-engine.sh)

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt requirements-serving-protos.txt pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup train test sanity lint bench

setup: $(STAMP)

# The pinned requirements, then the project itself (editable: the code stays in the checkout) for its
# `fab`, which also reads Fabric 1's task:key=value form (launch/program.py).
$(STAMP): requirements.txt requirements-dev.txt requirements-serving-protos.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --no-deps -r requirements-serving-protos.txt
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation --editable .
	rm -f $(VENV)/.installed-* && touch $@

train: setup
	$(VENV)/bin/fab train --variant deep_v1 --local

test: setup
	$(VENV)/bin/ruff check .
	tests/install-services.sh
	docker/local-engine.sh run $(VENV)/bin/fab test

sanity: setup
	$(VENV)/bin/fab test_sanity

bench: setup
	$(VENV)/bin/python bench/bench_load.py
	$(VENV)/bin/python bench/bench_preprocess.py
	$(VENV)/bin/python bench/bench_train.py
	$(VENV)/bin/python bench/bench_score.py
