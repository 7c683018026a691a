# The two commands of the README: `make run` and `make test`. Both set everything up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_PACKAGES := redis-server:redis-server influxd:influxdb
TEST_PACKAGES := $(RUN_PACKAGES) victoria-metrics:victoria-metrics chromium:chromium docker-compose:docker-compose promtool:prometheus \
	dockerd:docker.io debootstrap:debootstrap

.PHONY: run test lint bench setup clean system-packages-run system-packages-test

run: system-packages-run $(STAMP)
	$(BIN)/ha-ingestor dev

# Three processes, each test file in one of them (module fixtures are shared within a file): the
# suite mostly waits on real servers and processes (its CPU is busy ~40% of the time with two),
# so a third on two cores takes it from ~9 to ~6 minutes; no file should hold over 3 minutes,
# except tests/docker/test_compose_stack.py (one stack for the whole file, ~5 min, mostly waiting;
# it sorts first, so it starts at once beside the others). It runs as root (its own dockerd).
test: system-packages-test $(STAMP) lint
	$(BIN)/pytest -n 3 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Starts its own Redis, InfluxDB, simulator, listener, workers and beat; ~10-15 min; the table
# goes to bench/RESULTS.md. `$(BIN)/python -m bench --quick` is a smoke run.
bench: system-packages-run $(STAMP)
	$(BIN)/python -m bench

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { $(MAKE) --no-print-directory _install PACKAGES="python3-venv" && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

system-packages-run:
	@$(MAKE) --no-print-directory _ensure WANT="$(RUN_PACKAGES)"

system-packages-test:
	@$(MAKE) --no-print-directory _ensure WANT="$(TEST_PACKAGES)"

# WANT is a list of command:debian-package pairs; install the packages whose command is missing.
_ensure:
	@missing=""; for pair in $(WANT); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then $(MAKE) --no-print-directory _install PACKAGES="$$missing"; fi

_install:
	@if [ "$$(id -u)" = 0 ]; then \
	  echo "Installing Debian packages:$(PACKAGES)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(PACKAGES); \
	else \
	  echo "Missing Debian packages. Run this once, then try again:"; \
	  echo "  sudo apt-get update && sudo apt-get install -y $(PACKAGES)"; \
	  exit 1; \
	fi

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis
