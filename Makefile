# The two commands of the README. Each does its own set-up from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000
SAMPLE_MONTHS := 2026-04 2026-05 2026-06

.PHONY: run test lint bench install clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

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

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
