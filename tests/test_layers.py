"""The pure core (engine, store, state, recipes, the run service) imports no web framework, and no
blueprint imports another (they share only l1web/web/ and the services)."""

import ast
import subprocess
import sys
from pathlib import Path

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


#: What a render worker runs: the job layer and what it publishes with. It needs no web framework
#: either (the L2 client lives in `l1web.auth`, whose package loads nothing).
JOBS = ("l1web.jobs", "l1web.jobs.runs", "l1web.runs.l2_publish", "l1web.worker")


def test_the_job_layer_imports_without_flask():
    loaded = loaded_after_importing(JOBS)
    assert {"l1web.jobs.runs", "l1web.runs.l2_publish", "l1web.auth.l2"} <= loaded
    web = ("flask.", "flask_", "l1web.web", "l1web.blueprints")
    assert not {m for m in loaded if m == "flask" or m.startswith(web)}


def test_the_web_factory_does_load_flask():
    # The check above is only meaningful if the probe can see Flask when it is imported.
    assert "flask" in loaded_after_importing(("l1web.web",))


def blueprint_imports(path: Path) -> list[str]:
    """`file:line: module` for each import of another blueprint in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        found += [f"{path.name}:{node.lineno}: {n}" for n in names if n.startswith("l1web.blueprints")]
    return found


def test_blueprints_only_route_and_import_no_other_blueprint():
    # Shared request helpers, shapes and services live in l1web/web/ and the core, not in a blueprint.
    folder = Path(__file__).resolve().parent.parent / "l1web" / "blueprints"
    routes = [p for p in sorted(folder.glob("*.py")) if p.name != "__init__.py"]
    assert len(routes) >= 10
    assert [hit for path in routes for hit in blueprint_imports(path)] == []


def test_the_blueprint_scan_sees_an_import_of_another_blueprint(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from l1web.blueprints.runs import run_json\nimport l1web.blueprints.cache\n")
    assert blueprint_imports(probe) == ["probe.py:1: l1web.blueprints.runs", "probe.py:2: l1web.blueprints.cache"]
