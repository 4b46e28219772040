"""SCRATCH (not committed)."""
import cProfile
import pstats
import time

from tests.helpers import put_fresh_image


def test_prof(alice_client, app, tmp_path):
    headers = {"Authorization": f"Bearer {alice_client.token}"}
    digests = [put_fresh_image(app, tmp_path) for i in range(180)]
    for d in digests[:20]:
        alice_client.post("/runs", json={"recipe": "invert", "inputs": [d]}, headers=headers)
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    for d in digests[20:]:
        r = alice_client.post("/runs", json={"recipe": "invert", "inputs": [d]}, headers=headers)
        assert r.status_code == 201
    prof.disable()
    print(f"\nper POST {(time.perf_counter()-t)/160*1000:.2f} ms (profiled)")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
