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

# Operators (README "Operators", "Backups and key rotation"); DATA is the local OpenBao's directory.
.PHONY: operator-vault-token backup restore test-compose
DATA ?= .data
TTL ?= 8h
operator-vault-token: install
	@./tools/operator-vault-token.sh $(DATA) $(TTL)

backup: install
	$(BIN)/python -m tools.backup save --data-dir $(DATA) $(if $(FILE),--file $(FILE))

restore: install
	@test -n "$(FILE)" || { echo "usage: make restore FILE=backups/<snapshot>.snap [INIT=<its init.json>]" >&2; exit 2; }
	$(BIN)/python -m tools.backup restore --data-dir $(DATA) --file $(FILE) $(if $(INIT),--init-file $(INIT))

test-compose: install
	$(BIN)/pytest tests/test_compose_stack.py -v -rs
