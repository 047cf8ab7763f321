# The two commands of the README. Each does its own set-up from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LOCK := requirements.lock
UV_VERSION := 0.13.9
# axe-core for the accessibility checks of the browser tests (npm registry; skipped without npm,
# where those checks skip too, except under CI=true where they fail).
AXE := node_modules/axe-core/axe.min.js
HOST ?= 127.0.0.1
PORT ?= 8000
SAMPLE_MONTHS := 2026-04 2026-05 2026-06

.PHONY: run test lint bench install lock clean

# Exact, hash-checked versions from the lock; the project itself on top without resolving
# again. A changed pyproject.toml or lock makes the next `make` reinstall; a lock compiled from
# other dependencies than pyproject.toml lists stops the install (run `make lock`).
$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) scripts/lockfile.py check $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

$(AXE): package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --silent && touch $(AXE); \
	else echo "npm not found: accessibility checks (axe-core) will be skipped"; fi

install: $(STAMP) $(AXE)

# Recompile the lock from pyproject.toml's ranges (every platform and Python >= 3.11).
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv==$(UV_VERSION)'
	$(BIN)/uv pip compile pyproject.toml --extra test --universal --python-version 3.11 \
		--generate-hashes --quiet --custom-compile-command 'make lock' -o $(LOCK)
	$(PYTHON) scripts/lockfile.py stamp $(LOCK)

# A local demo: sample papers, the sample months published to the archive (no subscribers yet,
# so nothing is mailed), then the web app and the clock. Emails land in var/outbox, readable at
# http://127.0.0.1:8000/outbox.
run: export NEWSLETTER_POSTAL_ADDRESS ?= ML Foundations demo, 1 Example Street, Nowhere
run: export NEWSLETTER_BASE_URL ?= http://$(HOST):$(PORT)
run: export NEWSLETTER_EDITORS ?= editor@example.org
run: $(STAMP)
	$(BIN)/newsletter init
	$(BIN)/newsletter papers import newsletter/data/sample_papers.yaml
	@for m in $(SAMPLE_MONTHS); do $(BIN)/newsletter monthly --month $$m || exit 1; done
	HOST=$(HOST) PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start --port $(PORT) web clock

test: $(STAMP) $(AXE)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .grimp_cache .import_linter_cache node_modules
