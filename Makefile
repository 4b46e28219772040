# L1 — the two commands the README starts with: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENDOR := l1web/static/vendor

.PHONY: setup run test test-fast lint typecheck bench clean lock

setup: $(VENV)/.installed $(VENDOR)/.installed

# Every package, transitive ones too, comes from the lock with its hash (see README, "Dependencies").
$(VENV)/.installed: requirements-dev.lock
	@devtools/check-setup-prereqs.sh python $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements-dev.lock
	touch $@

# Regenerate the locks after editing requirements.txt or requirements-dev.txt.
lock:
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q pip-tools==7.7.0
	.lock-venv/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras -o requirements.lock requirements.txt
	.lock-venv/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras -o requirements-dev.lock requirements-dev.txt
	rm -rf .lock-venv

# Front-end assets come from their npm packages (versions pinned in package.json), never a CDN.
# `npm ci` refuses this lock ("Missing: headless@ from lock file", in js-ipfs's tree), so `npm install`.
$(VENDOR)/.installed: package.json package-lock.json
	@devtools/check-setup-prereqs.sh npm
	npm install --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)/swagger-ui
	cp node_modules/htmx.org/dist/htmx.min.js node_modules/tus-js-client/dist/tus.min.js $(VENDOR)/
	cp node_modules/swagger-ui-dist/swagger-ui.css node_modules/swagger-ui-dist/swagger-ui-bundle.js \
	   node_modules/swagger-ui-dist/swagger-ui-standalone-preset.js $(VENDOR)/swagger-ui/
	touch $@

run: setup
	$(PY) -m l1web.launcher

# The tests use real redis-server, ffmpeg/ffprobe and chromium: the script installs them
# (root with apt) or names the packages and stops, before any test runs.
test: setup
	devtools/ensure-test-tools.sh
	$(PY) -m pytest -q

# The quick subset while developing: no browser, no slow marks (`make test` stays the whole suite).
test-fast: setup
	$(PY) -m pytest -q -m "not browser and not slow"

lint: setup
	$(PY) -m ruff check .

# mypy --strict on the pure core (the files listed under [tool.mypy] in pyproject.toml).
typecheck: setup
	$(PY) -m mypy

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) node_modules $(VENDOR)
