"""`make typecheck` in the suite: `mypy --strict` passes on every module listed under `[tool.mypy]`
in pyproject.toml (the pure core and the jobs), so a change that breaks a type there fails like a test."""

import subprocess
import sys
import tomllib

import pytest

from l1web.paths import ROOT

CONFIG = ROOT / "pyproject.toml"


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=280, check=False)


@pytest.mark.slow
def test_the_core_and_the_jobs_pass_mypy_strict():
    done = mypy()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Success: no issues found" in done.stdout


def test_the_strict_list_holds_the_core_folders_whole():
    # The check above is only as wide as its list: a new module in these folders is checked too.
    config = tomllib.loads(CONFIG.read_text())["tool"]["mypy"]
    assert config["strict"] is True
    core = {"l1web/engine/", "l1web/store/", "l1web/state/", "l1web/recipes/", "l1web/runs/", "l1web/jobs/"}
    assert core <= set(config["files"])


@pytest.mark.slow
def test_the_project_settings_refuse_an_unannotated_function(tmp_path):
    # ... and only as strict as its settings: they must refuse what `--strict` refuses.
    probe = tmp_path / "probe.py"
    probe.write_text("def f(x):\n    return x\n")
    done = mypy("--config-file", str(CONFIG), "--cache-dir", str(tmp_path / "cache"), str(probe))
    assert done.returncode == 1, done.stdout
    assert "[no-untyped-def]" in done.stdout
