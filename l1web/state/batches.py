"""Batches: one recipe run over many inputs. A batch is a hash holding its owner, its recipe and
the ids of its runs (JSON, in input order); each user's batches are indexed by creation time.
The runs themselves are ordinary runs (`state/runs.py`)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

import redis

from l1web.state import hashes, keys


class Batches:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def create(self, batch_id: str, *, owner: str, run_ids: Sequence[str], fields: Mapping[str, str]) -> dict[str, Any]:
        created = time.time()
        record: dict[str, str] = {**fields, "id": batch_id, "owner": owner, "created": repr(created),
                  "count": str(len(run_ids)), "runs": json.dumps(list(run_ids))}
        with self.redis.pipeline() as pipe:
            pipe.hset(keys.batch(batch_id), mapping=hashes.fields(record))
            pipe.zadd(keys.batches_by_user(owner), {batch_id: created})
            pipe.execute()
        return self._decode(record)

    def get(self, batch_id: str) -> dict[str, Any] | None:
        raw = cast(dict[str, str], self.redis.hgetall(keys.batch(batch_id)))  # a decoding client
        return self._decode(raw) if raw else None

    def page(self, owner: str, *, offset: int = 0, limit: int = 50) -> tuple[list[dict[str, Any]], int]:
        """One user's batches, newest first, and how many they have."""
        index = keys.batches_by_user(owner)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(index)
            pipe.zrevrange(index, offset, offset + limit - 1)
            total, ids = pipe.execute()
        with self.redis.pipeline(transaction=False) as pipe:
            for batch_id in ids:
                pipe.hgetall(keys.batch(batch_id))
            found = cast(list[dict[str, str]], pipe.execute())  # a decoding client
        return [self._decode(raw) for raw in found if raw], int(total)

    def delete(self, batch_id: str, owner: str) -> None:
        with self.redis.pipeline() as pipe:
            pipe.delete(keys.batch(batch_id))
            pipe.zrem(keys.batches_by_user(owner), batch_id)
            pipe.execute()

    @staticmethod
    def _decode(raw: Mapping[str, str]) -> dict[str, Any]:
        out: dict[str, object] = dict(raw)
        out["runs"] = json.loads(raw.get("runs") or "[]")
        out["count"] = int(raw.get("count") or 0)
        out["created"] = float(raw.get("created") or 0)
        return out
