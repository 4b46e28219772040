# L1 — the two commands the README starts with: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENDOR := l1web/static/vendor

.PHONY: setup run test lint bench clean

setup: $(VENV)/.installed $(VENDOR)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# Front-end assets come from their npm packages (versions pinned in package.json), never a CDN.
$(VENDOR)/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)/swagger-ui
	cp node_modules/htmx.org/dist/htmx.min.js $(VENDOR)/
	cp node_modules/swagger-ui-dist/swagger-ui.css node_modules/swagger-ui-dist/swagger-ui-bundle.js \
	   node_modules/swagger-ui-dist/swagger-ui-standalone-preset.js $(VENDOR)/swagger-ui/
	touch $@

run: setup
	$(PY) -m l1web.launcher

test: setup
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) node_modules $(VENDOR)
