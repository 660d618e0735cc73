# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast test-slow check bench soak validate install clean

# The production install (not editable, no test tools). The Dockerfile runs `python -m pip install` with exactly
# these arguments; tests/test_docs.py checks that they agree and runs the install.
INSTALL_ARGS := --no-cache-dir '.[redis,postgres,nats]'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 'setuptools>=77'
	$(PY) -m pip install --quiet -e '.[test,redis,postgres,nats]'
	touch $(STAMP)

var/webhook-secret:
	@mkdir -p var
	@umask 077 && $(PY) -c "import secrets; print(secrets.token_urlsafe(32), end='')" > var/webhook-secret
	@chmod 600 var/webhook-secret
	@echo "Created a random webhook secret in var/webhook-secret."

var/console-token:
	@mkdir -p var
	@umask 077 && $(PY) -c "import secrets; print(secrets.token_urlsafe(32), end='')" > var/console-token
	@chmod 600 var/console-token
	@echo "Created a random console and API token in var/console-token."

run: $(STAMP) var/webhook-secret var/console-token
	@echo "Webhook secret: var/webhook-secret (show it for the Asgardeo console with: cat var/webhook-secret)"
	@echo "Web console: http://127.0.0.1:8080/console (log in with the token in var/console-token: cat var/console-token)"
	$(VENV)/bin/idhooks serve --config config.yaml

# The whole suite: lint and type checks, fast tests and the slower real-process / Redis outage / soak runs.
test: $(STAMP) check
	$(PY) -m pytest -q

test-fast: $(STAMP) check
	$(PY) -m pytest -m "not slow" -q

# ruff and mypy, configured in pyproject.toml (mypy is strict on the modules listed there).
check: $(STAMP)
	$(VENV)/bin/ruff check engine actions tests bench
	$(VENV)/bin/mypy

test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q

validate: $(STAMP)
	$(VENV)/bin/idhooks validate --config config.yaml

bench: $(STAMP)
	$(PY) bench/run.py

# Not part of CI or `make test`: 10 minutes of mixed genuine and hostile traffic at 200 requests/s against a
# real server with a flaky and a slow-drip target (IDHOOKS_SOAK_SECONDS / IDHOOKS_SOAK_RATE for a shorter run).
soak: $(STAMP)
	$(PY) bench/soak.py

install:
	$(PYTHON) -m pip install $(INSTALL_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
