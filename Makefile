# Two commands for a new user: `make demo` runs the product, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint format install migrate serve clean bench bench-smoke bench-scaled soak system-packages

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

# A local .env with a fresh secret key, made once; edit it to point at a real broker.
.env:
	sed "s|^SECRET_KEY=.*|SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')|" .env.example > $@

migrate: install .env
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py collectstatic --noinput -v0

demo: migrate
	$(BIN)/python manage.py demo

serve: migrate
	$(BIN)/python manage.py serve

# ruff (style), import-linter (the layers' import rules) and mypy (types), all must be clean.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	SECRET_KEY=lint $(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Mosquitto, openssl and Chromium: installed as root, else the apt-get line to run, at once.
system-packages:
	@scripts/system-packages.sh

# PostgreSQL, one of this machine's services: the history writer's tests run there too (its
# SQL differs there: one statement over an array per column), in a database named after the
# run's shell, as the scale-out tests make their own (TEST_POSTGRES_URL points elsewhere).
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres

# The smoke benchmark runs inside `make test` as tests/test_bench_smoke.py.
test: system-packages install lint
	$(BIN)/python -m pytest
	DATABASE_URL=$(dir $(TEST_POSTGRES_URL))gooee_history_$$$$ $(BIN)/python -m pytest -p no:cacheprovider \
		tests/test_history.py tests/test_rollups.py

# Benchmarks against raw-MQTT baselines in the same run (docs/benchmarks.md); not for CI.
bench: install
	$(BIN)/python -m bench.run

# Scenarios 2-3 on two web processes and a bridge worker with Redis and PostgreSQL (#9 layout),
# then what crosses Redis per frame at 100 and 1,000 pages on two web processes.
bench-scaled: install
	$(BIN)/python -m bench.run --only freshness broadcast --scale-out --out bench/results/scaled.json
	$(BIN)/python -m bench.hub_redis --pages 100 1000 --out bench/results/scaled-redis.json

bench-smoke: install
	$(BIN)/python -m bench.run --smoke --out bench/results/smoke.json

# Long reliability runs (docs/reliability.md): the full fault counts, fuzzing and 30 min of load.
soak: install
	$(BIN)/python -m pytest -m soak -p no:cacheprovider --timeout=0

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
