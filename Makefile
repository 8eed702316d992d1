# soko's two commands: `make run` (the all-in-one) and `make test` (the whole suite).
# Both install what they need first: Debian packages (as root) and a virtualenv in .venv.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test lint bench deps system-deps clean

run: deps
	$(VENV)/bin/soko up

test: deps
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: deps
	$(VENV)/bin/ruff check .

bench: deps
	$(VENV)/bin/soko bench ring

deps: system-deps $(STAMP)

system-deps:
	bash tools/install-system-deps.sh

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test,compute]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
