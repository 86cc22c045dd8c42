# The two quickstart commands (README): `make quickstart` and `make test`.
# Both create the project virtual environment on first use and reuse it afterwards; it is
# reinstalled when requirements.txt or pyproject.toml change.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install quickstart test lint demo bench clean

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -e .
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps \
		-r requirements-nodeps.txt
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/rag-vqa quickstart

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

demo: $(STAMP)
	$(BIN)/rag-vqa demo --sample

bench: $(STAMP)
	$(BIN)/python bench/encode.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
