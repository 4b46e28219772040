"""Notification settings per user (default URL, signing secret) and each run's deliveries.

The signing secret is kept as is, not hashed: HMAC needs the key itself to sign (unlike a bearer
token, which only has to be recognised). Only its owner's requests and the workers read it.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict, cast

import redis

from l1web.state import hashes, keys

#: Delivery records kept per run (every attempt of every end of the run).
MAX_DELIVERIES = 50


class NotifySettings(TypedDict):
    url: str
    secret: str


class Notifications:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def user(self, username: str) -> NotifySettings:
        """`{"url": default or "", "secret": … or ""}`."""
        raw = cast(dict[str, str], self.redis.hgetall(keys.notify_user(username)))  # a decoding client
        return {"url": raw.get("url", ""), "secret": raw.get("secret", "")}

    def set_user(self, username: str, **fields: str) -> None:
        if fields:
            self.redis.hset(keys.notify_user(username), mapping=hashes.fields(fields))

    def record(self, run_id: str, delivery: dict[str, Any]) -> None:
        key = keys.run_deliveries(run_id)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.rpush(key, json.dumps(delivery, sort_keys=True))
            pipe.ltrim(key, -MAX_DELIVERIES, -1)
            pipe.expire(key, keys.DELIVERIES_TTL)
            pipe.execute()

    def deliveries(self, run_id: str) -> list[dict[str, Any]]:
        raw = cast(list[str], self.redis.lrange(keys.run_deliveries(run_id), 0, -1))  # a decoding client
        return decode_deliveries(raw)


def decode_deliveries(raw: list[str]) -> list[dict[str, Any]]:
    """Delivery records as stored (JSON lines, oldest first); `Runs.view` reads them too."""
    return [json.loads(item) for item in raw]
