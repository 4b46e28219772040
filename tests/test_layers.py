"""The pure core (engine, store, state, recipes, the run service) imports no web framework."""

import subprocess
import sys

CORE = ("l1web.engine", "l1web.engine.dag", "l1web.engine.plan", "l1web.engine.execute", "l1web.store",
        "l1web.state", "l1web.recipes.parse", "l1web.runs.service", "l1web.runs.provenance", "l1web.users",
        "l1web.clients", "l1web.errors", "l1web.status", "l1web.lifecycle", "l1web.access",
        "l1web.recipes.service")


def loaded_after_importing(modules: tuple[str, ...]) -> set[str]:
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_core_imports_without_flask():
    loaded = loaded_after_importing(CORE)
    assert {"l1web.engine.dag", "l1web.runs.service"} <= loaded
    assert not {m for m in loaded if m == "flask" or m.startswith(("flask.", "flask_"))}


def test_the_core_does_not_load_the_web_layer_or_the_job_layer():
    loaded = loaded_after_importing(CORE)
    assert not {m for m in loaded if m.startswith(("l1web.web", "l1web.blueprints", "l1web.jobs", "l1web.auth"))}


def test_the_web_factory_does_load_flask():
    # The check above is only meaningful if the probe can see Flask when it is imported.
    assert "flask" in loaded_after_importing(("l1web.web",))
