# The ODR platform's commands. `make run` and `make test` are all a new user needs.
SHELL := /bin/bash
UV_VERSION := 0.13.8
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: help env run test test-unit lint format browser-deps bench-deps bench migrate clean

help:
	@echo "make run     - the whole platform on this machine (Tansu, SMTP sink, 4 APIs, 4 workers)"
	@echo "make test    - the whole suite (unit, integration on SQLite + PostgreSQL, e2e, browser)"
	@echo "make lint    - ruff check, ruff format --check, mypy"
	@echo "make bench   - benchmarks on PostgreSQL against same-run baselines -> bench/results/"
	@echo "              (BENCH_ARGS=\"--quick\" for a short run, --only ingest,batch,... for some phases)"

# The environment: uv (installed with pip if missing), then every workspace package from uv.lock.
env: $(VENV)/.synced
$(VENV)/.synced: uv.lock pyproject.toml shared/pyproject.toml cli/pyproject.toml services/*/pyproject.toml
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	uv sync --all-packages --frozen
	@touch $@

run: env
	$(BIN)/odr stack --var var

migrate: env
	$(BIN)/gateway-migrate && $(BIN)/complaints-migrate && $(BIN)/mediation-migrate && $(BIN)/notifications-migrate

# Headless Chromium from Debian for the browser tests (never a browser download).
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "installing Debian chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

# wrk from Debian for the closed-loop throughput runs.
bench-deps:
	@if ! command -v wrk >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk >/dev/null; \
	fi

bench: env bench-deps
	$(PY) -m bench.run $(BENCH_ARGS)

# wrk too: the bench smoke test measures a short closed-loop ingest run.
test: env browser-deps bench-deps
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: env
	$(BIN)/pytest -m "not e2e and not browser and not kafka" $(PYTEST_ARGS)

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared/src services/*/src cli/src

format: env
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf var test-artifacts .pytest_cache .mypy_cache .ruff_cache

# Container images for deploy/k8s (one per service, from uv.lock): odr/<service>:$(IMAGE_TAG), or
# $(IMAGE_REGISTRY)/odr/<service>:$(IMAGE_TAG). Needs docker or podman (CONTAINER_TOOL=...).
IMAGE_TAG ?= dev
IMAGE_REGISTRY ?=
IMAGE_SERVICES := gateway complaints mediation notifications
CONTAINER_TOOL ?= $(shell command -v docker >/dev/null 2>&1 && echo docker || (command -v podman >/dev/null 2>&1 && echo podman))
.PHONY: images
images:
	@if [ -z "$(CONTAINER_TOOL)" ]; then \
	  echo "make images needs docker or podman (none found on PATH); set CONTAINER_TOOL=... to choose one" >&2; exit 1; fi
	@$(CONTAINER_TOOL) info >/dev/null 2>&1 || { \
	  echo "make images: '$(CONTAINER_TOOL)' cannot reach its engine (is the daemon running?)" >&2; exit 1; }
	@set -e; for svc in $(IMAGE_SERVICES); do \
	  ref="$(if $(IMAGE_REGISTRY),$(IMAGE_REGISTRY)/)odr/$$svc:$(IMAGE_TAG)"; \
	  echo "building $$ref"; \
	  $(CONTAINER_TOOL) build -f deploy/docker/$$svc.Dockerfile -t "$$ref" .; \
	done

# Crash safety, replay, poison messages, webhooks, access matrix, JWT, abuse, fuzzing, personal
# data: counted and printed; the counts land in test-artifacts/reliability.json (docs/reliability.md).
.PHONY: test-reliability
test-reliability: env
	$(BIN)/pytest -m reliability tests/reliability -s $(PYTEST_ARGS)
