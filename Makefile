# The two commands of the README: `make run` and `make test`. Both are idempotent and fast when
# nothing changed (stamps record what was installed from which pyproject.toml).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTANCE ?= instance
# Where `make run` serves: `make run PORT=5077` when 5000 is taken (e.g. by macOS AirPlay).
HOST ?= 127.0.0.1
PORT ?= 5000
PYTEST_ARGS ?=

.PHONY: run test install install-test system-packages system-packages-test lint clean docs translations

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[server]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e '.[server,test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

system-packages:
	@scripts/system-packages.sh run

system-packages-test:
	@scripts/system-packages.sh test

run: install system-packages
	GOVERNANCE_INSTANCE=$(INSTANCE) $(BIN)/govern init
	GOVERNANCE_INSTANCE=$(INSTANCE) $(BIN)/govern demo
	GOVERNANCE_INSTANCE=$(INSTANCE) $(BIN)/govern run --host $(HOST) --port $(PORT)

test: install-test system-packages-test
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

docs: install
	$(BIN)/govern workflow diagram --format mermaid --out docs/workflow.mmd

# Re-extract the interface's messages (templates, views, forms, the workflow's N_-marked labels), merge them into
# the Simplified Chinese catalogue and compile it. New messages arrive untranslated: translate them in the .po, then
# run this again (tests/test_i18n.py fails while any message is untranslated or the .mo is stale). The folder is
# zh_Hans_CN because Babel parses the interface's locale code zh_CN to zh_Hans_CN and Flask-Babel looks for that.
translations: install
	$(BIN)/pybabel extract -F babel.cfg -k _l -k N_ --project ai-governance-irb -o governance/translations/messages.pot .
	$(BIN)/pybabel update -i governance/translations/messages.pot -d governance/translations -l zh_Hans_CN --no-fuzzy-matching --ignore-obsolete
	$(BIN)/pybabel compile -d governance/translations -l zh_Hans_CN --statistics

clean:
	rm -rf $(VENV) .pytest_cache
