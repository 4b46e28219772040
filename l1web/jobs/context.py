"""What a job needs (settings, state, store), built once per worker process from the environment."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import redis

from l1web.settings import Settings
from l1web.state import StateManager, connect
from l1web.store import ContentStore


@dataclass
class JobContext:
    settings: Settings
    state: StateManager
    store: ContentStore
    rq_connection: redis.Redis


@functools.cache
def job_context() -> JobContext:
    settings = Settings.from_env()
    state = StateManager.from_url(settings.redis_url)
    return JobContext(settings, state, ContentStore(settings.cache_dir, state.cache),
                      connect(settings.redis_url, decode=False))


class JobLogAdapter(logging.LoggerAdapter):
    """Stamps the run and job ids on every line a job logs."""

    def process(self, msg, kwargs):
        extra = self.extra or {}
        return f"[run {str(extra.get('run', '-'))[:12]} job {extra.get('job', '-')}] {msg}", kwargs
