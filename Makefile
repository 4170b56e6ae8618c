# JetPero: `make run` to start it, `make test` to test it (both install what they need).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The lock files pin every package, transitive ones included, with its hashes; pip refuses
# anything else. requirements-dev.txt holds the runtime set too (the same versions).
PIP_INSTALL := $(BIN)/pip install --quiet --require-hashes
PIP_COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links $(LOCK_FLAGS)

.PHONY: install lock run stop test lint compose-check audit bench bench-instructions clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $(STAMP)

# Regenerate both lock files from requirements.in and requirements-dev.in (runtime first: the
# dev lock is constrained to it). Existing pins are kept; LOCK_FLAGS="--upgrade-package NAME"
# (or "--upgrade") moves transitive ones.
lock: install
	$(PIP_COMPILE) --output-file requirements.txt requirements.in
	$(PIP_COMPILE) --output-file requirements-dev.txt requirements-dev.in

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

# Known vulnerabilities in the locked packages (needs PyPI's vulnerability data), then the
# bandit rules on their own (they also run in `make lint`).
audit: install
	$(BIN)/pip-audit --disable-pip -r requirements.txt -r requirements-dev.txt
	$(BIN)/ruff check --select S --ignore S101 .

bench: install
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.limited

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
