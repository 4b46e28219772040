"""The server and `make bench` run where ffmpeg is imageio-ffmpeg's and there is no ffprobe.

So no command list in the server's code or the benchmarks names `ffmpeg` or `ffprobe` by its
bare name (which only a system install puts on PATH): they go through `engine.ffmpeg.ffmpeg_exe()`
and `ffprobe_exe()`, which fall back to the wheels. A static check over the source (the
benchmarks need minutes to run, and `make bench` once failed this way on a fresh machine).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*ROOT.glob("l1web/**/*.py"), *ROOT.glob("bench/*.py"), *ROOT.glob("*.py")])


def bare_tool_commands(path: Path) -> list[int]:
    """Lines of `path` where a command is written as a list or tuple literal that starts with the
    string "ffmpeg" or "ffprobe" and has an option ("-…") after it (a tuple of names is no command)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return sorted(node.lineno for node in ast.walk(tree)
                  if isinstance(node, ast.List | ast.Tuple) and node.elts
                  and isinstance(node.elts[0], ast.Constant) and node.elts[0].value in ("ffmpeg", "ffprobe")
                  and any(isinstance(e, ast.Constant) and str(e.value).startswith("-") for e in node.elts[1:]))


def test_the_check_sees_a_bare_command(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('import subprocess\nsubprocess.run(["ffmpeg", "-i", "x"])\nNAMES = ("ffmpeg", "ffprobe")\n'
                      'ARGS = ("ffprobe", "-v", "error")\n')
    assert bare_tool_commands(sample) == [2, 4]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_bare_ffmpeg_or_ffprobe_command(path):
    assert bare_tool_commands(path) == [], f"{path.relative_to(ROOT)}: use ffmpeg_exe()/ffprobe_exe()"
