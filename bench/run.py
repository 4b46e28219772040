"""`make bench`: run every `bench/bench_*.py` and print one table.

Each module exposes `rows() -> list[dict]` with keys benchmark, l1, baseline, ratio, goal and
unit; every figure sits beside a baseline measured in the same run. Timings are reported, never
asserted: these machines are shared and noisy.
"""

from __future__ import annotations

import importlib.util
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ("benchmark", "l1", "baseline", "ratio", "goal", "unit")


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(HERE.parent))
    wanted = set(argv)
    rows: list[dict] = []
    failed = 0
    for path in sorted(HERE.glob("bench_*.py")):
        if wanted and path.stem not in wanted and path.stem.removeprefix("bench_") not in wanted:
            continue
        started = time.monotonic()
        print(f"running {path.name} …", file=sys.stderr, flush=True)
        try:
            rows += load(path).rows()
        except Exception:  # noqa: BLE001 - report and go on with the other benchmarks
            failed += 1
            traceback.print_exc()
            rows.append({"benchmark": f"{path.stem} FAILED", "unit": ""})
        print(f"  {path.name}: {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    table = [[fmt(row.get(col)) for col in COLUMNS] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in table)) if table else len(col) for i, col in enumerate(COLUMNS)]
    print(" | ".join(col.ljust(w) for col, w in zip(COLUMNS, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in table:
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
