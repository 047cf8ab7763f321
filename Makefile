# The two commands of the README. Each does its own set-up from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# axe-core for the accessibility checks of the browser tests (npm registry; skipped without npm,
# where those checks skip too, except under CI=true where they fail).
AXE := node_modules/axe-core/axe.min.js
HOST ?= 127.0.0.1
PORT ?= 8000
SAMPLE_MONTHS := 2026-04 2026-05 2026-06

.PHONY: run test lint bench install clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

$(AXE): package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --silent && touch $(AXE); \
	else echo "npm not found: accessibility checks (axe-core) will be skipped"; fi

install: $(STAMP) $(AXE)

# A local demo: sample papers, the sample months published to the archive (no subscribers yet,
# so nothing is mailed), then the web app and the clock. Emails land in var/outbox, readable at
# http://127.0.0.1:8000/outbox.
run: export NEWSLETTER_POSTAL_ADDRESS ?= ML Foundations demo, 1 Example Street, Nowhere
run: export NEWSLETTER_BASE_URL ?= http://$(HOST):$(PORT)
run: $(STAMP)
	$(BIN)/newsletter init
	$(BIN)/newsletter papers import newsletter/data/sample_papers.yaml
	@for m in $(SAMPLE_MONTHS); do $(BIN)/newsletter monthly --month $$m || exit 1; done
	HOST=$(HOST) PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start --port $(PORT) web clock

test: $(STAMP) $(AXE)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache node_modules
