# JetPero: `make run` to start it, `make test` to test it (both install what they need).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run stop test lint compose-check audit bench bench-instructions clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: install
	./tools/run.sh

stop:
	$(BIN)/python -m tools.openbao stop --data-dir .data

lint: install
	$(BIN)/ruff check .

compose-check:
	@if command -v docker-compose >/dev/null; then docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml is valid"; \
	else echo "docker-compose not installed: compose file not validated (apt-get install docker-compose)"; fi

test: lint compose-check
	$(BIN)/pytest

audit: install
	$(BIN)/pip-audit -r requirements.txt

bench: install
	$(BIN)/python -m bench.run

bench-instructions: install
	$(BIN)/python -m bench.instructions

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
