"""The per-app bundle of long-lived objects (settings, state, store) and accessors for routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, current_app, g

from l1web.settings import Settings
from l1web.state import StateManager
from l1web.users import User

if TYPE_CHECKING:
    import redis

    from l1web.runs.service import RunService
    from l1web.store import ContentStore

EXTENSION = "l1"


@dataclass
class L1:
    settings: Settings
    state: StateManager
    store: ContentStore
    rq_connection: redis.Redis
    runs: RunService

    @classmethod
    def create(cls, app: Flask, settings: Settings, state: StateManager) -> L1:
        from l1web.jobs.queues import run_service
        from l1web.state import connect
        from l1web.store import ContentStore

        store = ContentStore(settings.cache_dir, state.cache)
        rq_connection = connect(settings.redis_url, decode=False)
        bundle = cls(settings, state, store, rq_connection, run_service(state, store, rq_connection))
        app.extensions[EXTENSION] = bundle
        return bundle


def l1() -> L1:
    return current_app.extensions[EXTENSION]


def settings() -> Settings:
    return l1().settings


def state() -> StateManager:
    return l1().state


def store() -> ContentStore:
    return l1().store


def runs() -> RunService:
    return l1().runs


def current_user() -> User | None:
    """The user of this request, set by the sign-in layer; None when anonymous."""
    return g.get("user")
