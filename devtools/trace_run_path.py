"""Count the hops of a run's path through L1's code, from `POST /runs` to its provenance record.

    .venv/bin/python devtools/trace_run_path.py [effect]     # from the project root; needs redis-server

One run of `effect` (default `invert`) on a small image, all in this process: the `POST /runs`
view under a request context (the user set as the sign-in layer sets it), then every queued job
with RQ's SimpleWorker in burst mode. A first run of the same kind warms every import; the second
run, on another image so nothing is cached, is traced. A profiler notes each call that enters an
`l1web` module other than the nearest `l1web` caller's: a *hop*. The report counts the distinct
hops (caller module → callee module), the calls across modules, and the modules and packages
entered; per half, the packages in the order the calls enter them (the code review's way of
following a run, with its returns to a package already entered); and lists every hop. The web
half includes storing the input image (`ContentStore.put_bytes`) before the request.

It runs against the checkout it sits in and knows the older layout too (`l1web.create_app`,
`l1web.services`), so an earlier commit can be measured with the same script:
`git archive <commit> | tar -x -C /tmp/old && cp devtools/trace_run_path.py /tmp/old/devtools/`.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _imports():
    try:
        from l1web.devtools.processes import RedisServer
    except ImportError:  # before the rename of services.py
        from l1web.services import RedisServer
    try:
        from l1web.web import create_app
    except ImportError:  # before the web layer
        from l1web import create_app
    return RedisServer, create_app


def _user(name: str):
    try:
        from l1web.users import User
    except ImportError:
        from l1web.context import User
    return User(name)


def _png(seed: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (seed * 40 % 256, 90, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


def _run_once(app, effect: str, seed: int, tracer: Tracer | None = None) -> dict:
    from flask import g
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    bundle = app.extensions["l1"]
    digest = bundle.store.put_bytes(_png(seed), source="upload", owner="alice").digest
    with app.test_request_context("/runs", method="POST", json={"recipe": effect, "inputs": [digest]},
                                  headers={"Accept": "application/json"}):
        g.user = _user("alice")
        response, status = app.view_functions["runs.submit"]()
        run_id = response.get_json()["id"]
    from rq import Queue

    if tracer is not None:
        tracer.phase = "worker"
    connection = bundle.rq_connection
    queues = [Queue(name, connection=connection, serializer=JSONSerializer) for name in ("steps", "runs", "default")]
    SimpleWorker(queues, connection=connection, serializer=JSONSerializer).work(burst=True, logging_level="ERROR")
    return bundle.state.runs.get(run_id)


class Tracer:
    """A `sys.setprofile` hook that records module-to-module calls inside `l1web`."""

    def __init__(self) -> None:
        self.hops: Counter[tuple[str, str]] = Counter()
        self.phase = "web"
        self.phases: dict[str, set[tuple[str, str]]] = {"web": set(), "worker": set()}
        # The rooms (packages) in the order the calls enter them, repeats in a row folded: the
        # code review's way of following a run ("jobs → recipes → engine → recipes → ipfs → …").
        self.rooms: dict[str, list[str]] = {"web": [], "worker": []}

    def __call__(self, frame, event, arg) -> None:
        if event != "call" or frame.f_code.co_name == "<module>":
            return
        callee = frame.f_globals.get("__name__", "")
        if not callee.startswith("l1web"):
            return
        caller, back = "", frame.f_back
        while back is not None:
            name = back.f_globals.get("__name__", "")
            if name.startswith("l1web") and back.f_code.co_name != "<module>":
                caller = name
                break
            back = back.f_back
        if caller and caller != callee:
            self.hops[(caller, callee)] += 1
            self.phases[self.phase].add((caller, callee))
            rooms = self.rooms[self.phase]
            for room in ([] if rooms else [_package(caller)]) + [_package(callee)]:
                if not rooms or rooms[-1] != room:
                    rooms.append(room)


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def main(argv: list[str]) -> None:
    effect = argv[0] if argv else "invert"
    RedisServer, create_app = _imports()
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = RedisServer(Path(tmp) / "redis").start()
        try:
            os.environ.update(REDIS_URL=f"{redis_server.url}/5", CACHE_DIR=f"{tmp}/cache", DATA_DIR=f"{tmp}/data",
                              SECRET_KEY="trace-only", SAMPLE_ASSETS="0", L1_PUBLIC_URL="http://127.0.0.1:8100")  # noqa: S106 - a throwaway server
            from l1web.settings import Settings

            app = create_app(Settings.from_env())
            warm = _run_once(app, effect, 1)
            assert warm["status"] == "completed", warm
            tracer = Tracer()
            sys.setprofile(tracer)
            try:
                run = _run_once(app, effect, 2, tracer)
            finally:
                sys.setprofile(None)
            assert run["status"] == "completed" and run.get("provenance"), run
        finally:
            redis_server.stop()
    report(tracer)


def report(tracer: Tracer) -> None:
    modules = {m for edge in tracer.hops for m in edge}
    packages = {_package(m) for m in modules}
    print(f"distinct hops (caller module -> callee module): {len(tracer.hops)}")
    for phase, edges in tracer.phases.items():
        entered = {m for edge in edges for m in edge}
        print(f"  {phase:6} half: {len(edges)} distinct hops, {len(entered)} modules")
    print(f"hops taken (calls across modules):              {sum(tracer.hops.values())}")
    print(f"modules entered:                                {len(modules)}")
    print(f"packages entered:                               {len(packages)}  {sorted(packages)}")
    print("ipfs modules entered:                           "
          f"{sorted(m for m in modules if m.startswith('l1web.ipfs')) or 'none'}")
    for phase, rooms in tracer.rooms.items():
        short = [room.removeprefix("l1web.") for room in rooms]
        print(f"  {phase:6} half, rooms in call order: {len(short)} entries, {len(set(short))} rooms, "
              f"{len(short) - len(set(short))} returns to a room already entered")
        print("    " + " → ".join(short))
    for (caller, callee), count in sorted(tracer.hops.items()):
        print(f"  {caller} -> {callee}  x{count}")


if __name__ == "__main__":
    main(sys.argv[1:])
