"""The `l1` command (console script of the installed package).

    l1 run [--workers N] [--no-l2]   everything on one machine, as `make run` (l1web.launcher)
    l1 web                           the web app under waitress, as `python app.py`
    l1 worker [queue ...]            an RQ worker, as `python worker.py` (also `l1-worker`)
"""

from __future__ import annotations

import sys

USAGE = "usage: l1 {run,web,worker} [options]   (l1 run --help, l1 worker --help)"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command == "run":
        from l1web.launcher import main as run

        return run(rest)
    if command == "web":
        if rest:
            print("l1 web takes no arguments: it reads the environment (.env.example lists it)", file=sys.stderr)
            return 2
        from l1web.web.serving import serve

        serve()
        return 0
    if command == "worker":
        return worker(rest)
    print(USAGE, file=sys.stderr)
    return 0 if command in ("-h", "--help") else 2


def worker(argv: list[str] | None = None) -> int:
    """`l1-worker` / `l1 worker`."""
    from l1web.worker import main as work

    work(list(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
