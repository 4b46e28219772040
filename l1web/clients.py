"""The composition root: the long-lived clients one process needs, built once from its settings.

The web app (`l1web.web.create_app` keeps one in `app.extensions["l1"]`), every job of a worker
process (`process_clients()`) and the IPFS code all take this one bundle. No web framework here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import redis

from l1web.settings import Settings
from l1web.state import StateManager, connect
from l1web.store import ContentStore


@dataclass
class Clients:
    """Settings, the state manager, the content store and RQ's own (bytes) Redis connection."""

    settings: Settings
    state: StateManager
    store: ContentStore
    rq_connection: redis.Redis

    @classmethod
    def from_settings(cls, settings: Settings, *, state: StateManager | None = None) -> Clients:
        """Connect to what `settings` names; nothing is contacted until first used."""
        state = state or StateManager.from_url(settings.redis_url)
        return cls(settings, state, ContentStore(settings.cache_dir, state.cache),
                   connect(settings.redis_url, decode=False))


@functools.cache
def process_clients() -> Clients:
    """This process's clients, from the environment, built on first use (a worker's jobs share them)."""
    return Clients.from_settings(Settings.from_env())
