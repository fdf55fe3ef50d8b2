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

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

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
	STUDIO_JOB_HEARTBEAT_SECONDS=0.5 STUDIO_JOB_STALE_SECONDS=3 \
	$(BIN)/python -m pytest tests/integration tests/browser tests/gpu -q

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	STUDIO_ENV=test $(BIN)/python manage.py makemigrations --check --dry-run
	STUDIO_ENV=production STUDIO_SECRET_KEY=lint-only-$$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') \
	DATABASE_URL=postgresql://studio@db/studio REDIS_URL=redis://redis:6379/0 STUDIO_ALLOWED_HOSTS=studio.example \
	$(BIN)/python manage.py check --deploy --fail-level WARNING

# The gallery half seeds 100,000 assets into a throwaway PostgreSQL database, created and dropped by the script.
BENCH_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/studio_bench

bench: install-test
	$(BIN)/python bench/run.py
	$(BIN)/python bench/provenance.py
	DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python bench/gallery_pages.py

# The demo model: train it (about 80 minutes on 2 CPU cores) and check what it draws.
train-demo: install
	$(BIN)/python manage.py train_demo_model

eval-demo: install
	$(BIN)/python manage.py eval_demo_model

clean:
	rm -rf $(VENV) staticfiles .mypy_cache .ruff_cache
