"""What L1 knows about IPFS, in Redis: our SHA3 → CID index, what we share, what peers told us.

Local truth (`ipfs_cids`, `ipfs_results`, `ipfs_runs`) is written only from bytes this node
holds. What peers publish lands in separate `ipns:remote:*` hashes and is only a hint: an item
fetched by a peer's CID is used only after its SHA3 matches (`ipfs/fetch.py`), and a peer entry never
replaces a local one.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import redis

from l1web.state import hashes, keys


class IPFSIndex:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    # Local truth -------------------------------------------------------------------------------
    def cid(self, digest: str) -> str | None:
        return cast(str | None, self.redis.hget(keys.ipfs_cids(), digest))  # a decoding client

    def set_cid(self, digest: str, cid: str) -> None:
        self.redis.hset(keys.ipfs_cids(), digest, cid)

    def cids(self) -> dict[str, str]:
        return cast(dict[str, str], self.redis.hgetall(keys.ipfs_cids()))  # a decoding client

    def share_result(self, cache_id: str, digest: str) -> None:
        self.redis.hset(keys.ipfs_results(), cache_id, digest)

    def results(self) -> dict[str, str]:
        return cast(dict[str, str], self.redis.hgetall(keys.ipfs_results()))  # a decoding client

    def set_run(self, run_id: str, record: dict[str, Any]) -> None:
        self.redis.hset(keys.ipfs_runs(), run_id, json.dumps(record, sort_keys=True))

    def run(self, run_id: str) -> dict[str, Any] | None:
        raw = self.redis.hget(keys.ipfs_runs(), run_id)
        return json.loads(raw) if raw else None

    def runs(self) -> dict[str, dict[str, Any]]:
        raw_runs = cast(dict[str, str], self.redis.hgetall(keys.ipfs_runs()))  # a decoding client
        return {run_id: json.loads(raw) for run_id, raw in raw_runs.items()}

    # Retry queue -------------------------------------------------------------------------------
    def mark_pending(self, run_id: str) -> None:
        self.redis.sadd(keys.ipfs_pending(), run_id)

    def pending(self) -> list[str]:
        return sorted(cast(set[str], self.redis.smembers(keys.ipfs_pending())))  # a decoding client

    def done(self, run_id: str) -> None:
        self.redis.srem(keys.ipfs_pending(), run_id)

    # Peers -------------------------------------------------------------------------------------
    def remote_result(self, cache_id: str) -> dict[str, Any] | None:
        raw = self.redis.hget(keys.ipns_remote_results(), cache_id)
        return json.loads(raw) if raw else None

    def remote_cid(self, digest: str) -> dict[str, Any] | None:
        raw = self.redis.hget(keys.ipns_remote_cids(), digest)
        return json.loads(raw) if raw else None

    def merge_peer(self, peer: str, document_text: str, results: dict[str, dict[str, Any]],
                   cids: dict[str, str]) -> int:
        """Record a peer's (already validated) document; entries we already hold are left alone."""
        mine = self.cids()
        known = set(cast(list[str], self.redis.hkeys(keys.ipns_remote_results())))  # a decoding client
        new_results = {cache_id: json.dumps({**entry, "peer": peer}, sort_keys=True)
                       for cache_id, entry in results.items() if cache_id not in known}
        new_cids = {digest: json.dumps({"cid": cid, "peer": peer})
                    for digest, cid in cids.items() if digest not in mine}
        with self.redis.pipeline() as pipe:
            pipe.set(keys.ipns_peer(peer), document_text)
            if new_results:
                pipe.hset(keys.ipns_remote_results(), mapping=hashes.fields(new_results))
            for digest, value in new_cids.items():
                pipe.hsetnx(keys.ipns_remote_cids(), digest, value)
            pipe.execute()
        return len(new_results)

    def forget_remote_result(self, cache_id: str) -> None:
        """A peer entry that failed verification is dropped so it is not tried again and again."""
        self.redis.hdel(keys.ipns_remote_results(), cache_id)

    # Status (read by the admin status page) ----------------------------------------------------
    def set_status(self, **fields: object) -> None:
        values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        values["updated"] = f"{time.time():.3f}"
        self.redis.hset(keys.ipns_status(), mapping=hashes.fields(values))

    def status(self) -> dict[str, str]:
        return cast(dict[str, str], self.redis.hgetall(keys.ipns_status()))  # a decoding client
