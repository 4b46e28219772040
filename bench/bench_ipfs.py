"""Two L1 nodes and IPNS sync: node B completes a run node A rendered by fetching, not rendering.

Starts two redis-servers (one per node), one js-ipfs node (offline, loopback; each L1 has its own
IPNS key on it — offline js-ipfs nodes cannot reach each other, see docs/ipfs.md), one RQ worker
and one sync process per node (IPNS_SYNC_INTERVAL = 1 s). Node A renders a recipe on a test
video; node B lists A's IPNS name in IPNS_PEERS and then runs the identical recipe.

Reported, each beside a baseline from the same run: node B's run time against node A's render
time (goal: B renders 0 steps and is faster), the per-step fetch time on B against the render
time on A, and the sync delay (A's outputs in IPFS → B's merged index knows every step) against
the sync interval (goal ≤ 2 intervals plus one cycle's work).

`python bench/bench_ipfs.py` runs it alone.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from l1web.devtools.processes import python_process, start_redis, stop_process, wait_for  # noqa: E402
from l1web.engine.ffmpeg import ffmpeg_exe  # noqa: E402
from l1web.ipfs.daemon import IPFSDaemon  # noqa: E402
from l1web.jobs.queues import run_service  # noqa: E402
from l1web.recipes.parse import parse_recipe  # noqa: E402
from l1web.runs.model import RunStatus  # noqa: E402
from l1web.runs.service import Submission  # noqa: E402
from l1web.state import StateManager, connect  # noqa: E402
from l1web.store import ContentStore  # noqa: E402
from l1web.users import User  # noqa: E402

#: Seconds between syncs on both nodes.
INTERVAL = 1.0
#: Seconds to wait for a run, a publish or a merge.
WAIT = 300
RECIPE = """
name: bench-ipfs
dag:
  nodes:
    - {id: clip, type: SOURCE, config: {input: true, name: clip}}
    - {id: ink, type: EFFECT, config: {effect: dog}, inputs: [clip]}
    - {id: warm, type: EFFECT, config: {effect: sepia}, inputs: [ink]}
  output: warm
"""


class Node:
    def __init__(self, root: Path, name: str, ipfs_api: str) -> None:
        self.name, self.root = name, root
        self.redis = start_redis(root / "redis")
        self.url = f"{self.redis.url}/5"
        self.state = StateManager(connect(self.url))
        self.store = ContentStore(root / "cache", self.state.cache)
        self.service = run_service(self.state, self.store, connect(self.url, decode=False))
        self.index = self.state.ipfs
        self.env = {"REDIS_URL": self.url, "CACHE_DIR": str(root / "cache"), "DATA_DIR": str(root),
                    "SECRET_KEY": "bench", "IPFS_API": ipfs_api, "IPNS_KEY": f"bench-{name}",
                    "IPNS_SYNC_INTERVAL": str(INTERVAL), "SAMPLE_ASSETS": "0"}
        self.procs: list[subprocess.Popen] = []

    def start(self, peers: str = "") -> None:
        env = {**self.env, "IPNS_PEERS": peers}
        self.procs.append(python_process(["worker.py", "--name", f"bench-ipfs-{self.name}"], env,
                                         log=self.root / "worker.log"))
        self.procs.append(python_process(["-m", "l1web.ipfs.sync"], env, log=self.root / "sync.log"))

    def run(self, clip: str) -> dict:
        recipe = parse_recipe(RECIPE)
        self.state.recipes.save(recipe.id, name=recipe.name, owner="bench", yaml_text=RECIPE,
                                recipe=recipe.to_dict())
        run, _ = self.service.submit(Submission(recipe.id, {"clip": clip}), User("bench"))
        wait_for(lambda: not RunStatus(self.state.runs.get(run["id"])["status"]).live, timeout=WAIT,
                 what=f"the run on node {self.name}")
        done = self.state.runs.get(run["id"])
        if done["status"] != RunStatus.COMPLETED:
            raise RuntimeError(f"run on node {self.name} {done['status']}: {done.get('error')}")
        return done

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)
        self.redis.stop()


def make_clip(path: Path) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=duration=4:size=640x360:rate=25", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(path)], check=True)


def step_time(node: Node, run_id: str) -> float:
    states = node.state.runs.step_states(run_id)
    return sum(float(s.get("duration") or 0) for sid, s in states.items() if sid != "clip")


def rows() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-ipfs-") as tmp:
        root = Path(tmp)
        ipfs = IPFSDaemon(root / "ipfs", log=root / "ipfs.log").start()
        node_a = node_b = None
        try:
            node_a, node_b = Node(root / "a", "a", ipfs.api), Node(root / "b", "b", ipfs.api)
            client = ipfs.client()
            name_a = client.key_id("bench-a")
            node_a.start()
            node_b.start(peers=name_a)
            make_clip(root / "clip.mp4")
            clip = node_a.store.put_file(root / "clip.mp4", source="bench")
            make_clip(root / "clip.mp4")
            assert node_b.store.put_file(root / "clip.mp4", source="bench") == clip

            run_a = node_a.run(clip)
            render_a = float(run_a["finished"]) - float(run_a["created"])
            wait_for(lambda: node_a.index.run(run_a["id"]), timeout=WAIT, what="node A's outputs in IPFS")
            published = time.time()
            step_ids = set(node_a.index.results())
            wait_for(lambda: all(node_b.index.remote_result(c) for c in step_ids), timeout=WAIT,
                     what="node B to merge node A's document")
            sync_delay = time.time() - published

            run_b = node_b.run(clip)
            fetch_b = float(run_b["finished"]) - float(run_b["created"])
            rendered_b = int(node_b.state.cache.stats().get("cache_misses", 0))
            rendered_a = int(node_a.state.cache.stats().get("cache_misses", 0))
            same = run_b["output_hash"] == run_a["output_hash"]
            steps_a, steps_b = step_time(node_a, run_a["id"]), step_time(node_b, run_b["id"])
        finally:
            for node in (node_b, node_a):
                if node is not None:
                    node.stop()
            ipfs.stop()
    return [
        {"benchmark": "ipfs: node B's identical run, by fetching (s)", "l1": fetch_b,
         "baseline": render_a, "ratio": fetch_b / render_a, "goal": "< 1", "unit": "s (baseline: A renders)"},
        {"benchmark": "ipfs: steps rendered on node B / on node A", "l1": rendered_b, "baseline": rendered_a,
         "ratio": None, "goal": "0 on B, same output: " + ("yes" if same else "NO"), "unit": "steps"},
        {"benchmark": "ipfs: step time, fetch+verify on B vs render on A", "l1": steps_b, "baseline": steps_a,
         "ratio": steps_b / steps_a if steps_a else None, "goal": "< 1", "unit": "s"},
        {"benchmark": "ipfs: sync delay (A's outputs in IPFS → merged on B)", "l1": sync_delay,
         "baseline": INTERVAL, "ratio": sync_delay / INTERVAL, "goal": "≤ 2 intervals + work", "unit": "s"},
    ]


if __name__ == "__main__":
    for row in rows():
        print(row)
