# Two commands for a fresh clone: `make book` and `make test`. Each creates .venv on first use
# and installs the exact pins of requirements.lock into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= teaching
CHAPTER ?=
# A chapter unchanged since its last run (source, parameters, package, lock file) is kept; RERUN=1 executes it anyway.
RERUN ?=
# Chapters run two at a time (pages of one chapter in order; a page that times something alone).
JOBS ?= 2
# OpenMP threads sleep between parallel regions instead of spinning: the book and the tests run
# many small tensor operations, and spinning threads make them many times slower on a busy machine.
OMP_WAIT_POLICY ?= PASSIVE
export OMP_WAIT_POLICY

.PHONY: book run render test golden environment clean help

help:
	@echo "make book [PROFILE=teaching|ci|paper] [CHAPTER=01] [RERUN=1]  execute chapters and render HTML into _build/<profile>/"
	@echo "make test                                            the ci-profile book, unit tests, nbval, the browser check"
	@echo "make golden [CHAPTER=02]                             re-record the checked values in tests/golden/"
	@echo "make environment                                     rewrite environment.yml from requirements.lock"

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

book: $(STAMP)
	$(PY) -m lyapbook.book build --profile $(PROFILE) --jobs $(JOBS) $(if $(CHAPTER),--chapter $(CHAPTER)) $(if $(RERUN),--rerun)

run: $(STAMP)
	$(PY) -m lyapbook.book run --profile $(PROFILE) --jobs $(JOBS) $(if $(CHAPTER),--chapter $(CHAPTER)) $(if $(RERUN),--rerun)

render: $(STAMP)
	$(PY) -m lyapbook.book render --profile $(PROFILE)

# The browser check (tests/test_browser.py) runs when Chromium is installed; without it pytest's
# summary says "browser check skipped". LYAPBOOK_REQUIRE_BROWSER=1 (set by .ci/run) makes a
# missing Chromium a failure instead.
test: $(STAMP)
	$(PY) -m lyapbook.book build --profile ci --jobs $(JOBS) --check-golden
	$(PY) -m lyapbook.book nbval-prepare
	$(PY) -m pytest tests _build/nbval --nbval-lax --nbval-current-env -p no:cacheprovider

golden: $(STAMP)
	$(PY) -m lyapbook.book golden $(if $(CHAPTER),--chapter $(CHAPTER))

environment: $(STAMP)
	$(PY) -m lyapbook.book environment

clean:
	rm -rf _build
