"""The provenance record of a completed run: who rendered what, from what, with which tools."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from l1web.engine import ffmpeg
from l1web.engine.canonical import sha3_json
from l1web.engine.effects import EffectError, get_effect

if TYPE_CHECKING:
    from l1web.clients import Clients
    from l1web.runs.model import Run

#: Python packages whose versions every provenance record lists.
PACKAGES = ("flask", "rq", "redis", "numpy", "scipy", "pillow", "pyyaml")


@functools.cache
def tool_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        first = ffmpeg.run([ffmpeg.ffmpeg_exe(), "-version"], timeout=10).decode().splitlines()[0]
        versions["ffmpeg"] = first.split(" version ")[1].split()[0] if " version " in first else first
    except (ffmpeg.FFmpegError, OSError, IndexError):
        versions["ffmpeg"] = None
    versions["ffmpeg_source"] = _ffmpeg_source()
    versions["probe"] = "ffprobe" if ffmpeg.ffprobe_exe() else "pyav " + _package_version("av")
    return versions


def _ffmpeg_source() -> str | None:
    """Which ffmpeg rendered: "system", "imageio-ffmpeg" or "FFMPEG setting"."""
    try:
        return ffmpeg.ffmpeg_source()[1]
    except ffmpeg.FFmpegError:
        return None


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


@functools.cache
def infrastructure() -> dict[str, Any]:
    from l1web import __version__

    software = {"l1": __version__, **tool_versions()}
    hardware = {"machine": platform.machine(), "processor": platform.processor(),
                "cpus": os.cpu_count(), "system": platform.system(), "release": platform.release()}
    host = platform.node() or "unknown"
    return {
        "software": {"name": "infra:artdag-l1", "content_hash": sha3_json(software), "versions": software},
        "hardware": {"name": f"infra:{host}", "content_hash": sha3_json(hardware), "details": hardware},
    }


def rendered_by(owner: str | None, l2_servers: tuple[str, ...]) -> str | None:
    if not owner:
        return None
    domain = urlparse(l2_servers[0]).netloc if l2_servers else "localhost"
    return f"@{owner}@{domain}"


def build(ctx: Clients, run: Run, steps: list[dict[str, Any]], states: dict[str, dict[str, Any]],
          output: str) -> dict[str, Any]:
    effects = []
    for step in steps:
        if step.get("type") == "EFFECT":
            try:
                effect = get_effect(step["config"]["effect"])
            except EffectError:
                continue
            effects.append({"name": effect.name, "content_hash": effect.hash, "version": effect.version,
                            "params": step["config"].get("params", {})})
    return {
        "task_id": run["id"],
        "rendered_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rendered_by": rendered_by(run.get("owner"), ctx.settings.l2_servers),
        "output": {"name": run.get("output_name") or run.get("recipe_name"), "content_hash": output},
        "inputs": [{"name": name, "content_hash": digest} for name, digest in sorted(run["input_hashes"].items())],
        "effects": effects,
        "infrastructure": infrastructure(),
        "recipe": {"id": run["recipe_id"], "name": run.get("recipe_name")},
        "plan_id": run.get("plan_id"),
        "steps": [
            {"step_id": s["step_id"], "type": s.get("type"), "cache_id": s["cache_id"],
             "status": states[s["step_id"]].get("status"),
             "cache_hit": states[s["step_id"]].get("status") == "cached",
             "duration_s": states[s["step_id"]].get("duration"),
             "output": states[s["step_id"]].get("output"),
             "attempts": states[s["step_id"]].get("attempts", [])}
            for s in steps
        ],
        "tools": {**tool_versions(), "python_executable": os.path.basename(sys.executable)},
    }
