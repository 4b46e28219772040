#!/bin/sh
# Refresh docs/screenshots/ from the browser tests that take them (tests write to their temp dir
# otherwise, so a test run never changes the work tree). Needs what `make test` needs (chromium,
# redis-server, ffmpeg). Look at the pictures before committing them.
set -eu
cd "$(dirname "$0")/.."
E2E_SCREENSHOTS="$PWD/docs/screenshots" exec .venv/bin/python -m pytest -q -p no:randomly \
    tests/test_browser_watch.py tests/test_browser_chunks.py tests/test_browser_queue.py tests/test_browser_steer.py \
    "tests/test_uploads.py::test_browser_uploads_with_a_progress_bar_and_resumes_after_a_reload" "$@"
