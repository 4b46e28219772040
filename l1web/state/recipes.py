"""Recipes ("configs") in Redis: the YAML as uploaded, its canonical form, owner and name."""

from __future__ import annotations

import json
import time
from typing import Any, cast

import redis
import redis.client

from l1web.access import Person, can_see_recipe
from l1web.state import keys


class Recipes:
    """Saved recipes (the seed calls them "configs": its `/configs` URLs and `config` keys stay)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def save(self, config_id: str, *, name: str, owner: str, yaml_text: str, recipe: dict[str, Any]) -> bool:
        """Store a config (idempotent per id and owner); True when it was new."""
        created = time.time()
        record = {"id": config_id, "name": name, "yaml": yaml_text,
                  "recipe": json.dumps(recipe, sort_keys=True), "created": str(created)}
        new = not self.redis.sismember(keys.config_owners(config_id), owner)
        with self.redis.pipeline() as pipe:
            pipe.hset(keys.config(config_id), mapping={k: v for k, v in record.items() if k != "owner"})
            pipe.sadd(keys.config_owners(config_id), owner)
            pipe.zadd(keys.configs_index(), {config_id: created}, nx=True)
            pipe.zadd(keys.configs_by_user(owner), {config_id: created}, nx=True)
            pipe.hset(keys.config_names(owner), name, config_id)
            pipe.execute()
        return new

    def get(self, config_id: str) -> dict[str, Any] | None:
        raw: dict[str, Any] = cast(dict[str, str], self.redis.hgetall(keys.config(config_id)))  # a decoding client
        if not raw or "recipe" not in raw:
            return None
        raw["recipe"] = json.loads(raw["recipe"])
        raw["owners"] = sorted(self.redis.smembers(keys.config_owners(config_id)))
        raw["shared"] = self.redis.zscore(keys.configs_shared(), config_id) is not None
        return raw

    def visible_to(self, config: dict[str, Any], user: Person | None) -> bool:
        """Whether `user` may see (and run) this config: the one rule in `l1web.access`."""
        return can_see_recipe(user, config.get("owners", []), shared=bool(config.get("shared")))

    def set_shared(self, config_id: str, shared: bool) -> None:
        """Share a config with every signed-in user, or stop sharing it."""
        if shared:
            created = float(self.redis.hget(keys.config(config_id), "created") or time.time())
            self.redis.zadd(keys.configs_shared(), {config_id: created})
        else:
            self.redis.zrem(keys.configs_shared(), config_id)

    def shared(self, limit: int = 50) -> list[dict[str, Any]]:
        """Recipes shared on purpose, newest first."""
        ids = cast(list[str], self.redis.zrevrange(keys.configs_shared(), 0, limit - 1))  # a decoding client
        return [c for c in (self.get(i) for i in ids) if c]

    def id_for_name(self, owner: str, name: str) -> str | None:
        return cast(str | None, self.redis.hget(keys.config_names(owner), name))  # a decoding client

    def page(self, *, user: str | None, offset: int = 0, limit: int = 50) -> tuple[list[dict[str, Any]], int]:
        index = keys.configs_by_user(user) if user is not None else keys.configs_index()
        total = self.redis.zcard(index)
        ids = cast(list[str], self.redis.zrevrange(index, offset, offset + limit - 1))  # a decoding client
        return [c for c in (self.get(i) for i in ids) if c], total

    def add_ref(self, config_id: str, run_id: str) -> None:
        self.redis.sadd(keys.config_refs(config_id), run_id)

    def remove_ref(self, config_id: str, run_id: str) -> None:
        self.redis.srem(keys.config_refs(config_id), run_id)

    def refs(self, config_id: str) -> set[str]:
        return cast(set[str], self.redis.smembers(keys.config_refs(config_id)))  # a decoding client

    def delete(self, config_id: str, owner: str) -> list[str]:
        """Remove the owner's copy; returns referencing run ids instead when runs still use it."""
        pipe = self.redis.pipeline()
        while True:
            try:
                pipe.watch(keys.config_refs(config_id))  # type: ignore[no-untyped-call]  # unannotated in redis-py
                refs = sorted(cast(set[str], pipe.smembers(keys.config_refs(config_id))))  # a decoding client
                if refs:
                    pipe.reset()
                    return refs
                pipe.multi()
                self._delete(pipe, config_id, owner)
                pipe.execute()
                return []
            except redis.WatchError:
                continue
            finally:
                pipe.reset()

    def _delete(self, pipe: redis.client.Pipeline, config_id: str, owner: str) -> None:
        record = cast(dict[str, str], self.redis.hgetall(keys.config(config_id)))  # a decoding client
        pipe.srem(keys.config_owners(config_id), owner)
        pipe.zrem(keys.configs_by_user(owner), config_id)
        if record.get("name") and self.redis.hget(keys.config_names(owner), record["name"]) == config_id:
            pipe.hdel(keys.config_names(owner), record["name"])
        if self.redis.smembers(keys.config_owners(config_id)) <= {owner}:
            pipe.delete(keys.config(config_id), keys.config_owners(config_id))
            pipe.zrem(keys.configs_index(), config_id)
            pipe.zrem(keys.configs_shared(), config_id)
