"""The composition root: the long-lived clients one process needs, built once from its settings.

The web app (`l1web.web.create_app` keeps one in `app.extensions["l1"]`), every job of a worker
process (`process_clients()`) and the IPFS code all take this one bundle. No web framework here.
Its `remote` is the content store's fetcher (`l1web/store/remote.py`): the L1 server over HTTP on a
worker on another host, IPFS when `IPFS_API` is set, and nothing at all otherwise — so a single-host
process with IPFS off never imports `l1web.ipfs`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import redis

from l1web.settings import Settings
from l1web.state import StateManager, connect
from l1web.store import ContentStore
from l1web.store.remote import L1Server, Remote, Source, remote_worker


@dataclass
class Clients:
    """Settings, the state manager, the content store and RQ's own (bytes) Redis connection."""

    settings: Settings
    state: StateManager
    store: ContentStore
    rq_connection: redis.Redis
    remote: Remote = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.remote = build_remote(self)

    @classmethod
    def from_settings(cls, settings: Settings, *, state: StateManager | None = None) -> Clients:
        """Connect to what `settings` names; nothing is contacted until first used."""
        state = state or StateManager.from_url(settings.redis_url)
        return cls(settings, state, ContentStore(settings.cache_dir, state.cache),
                   connect(settings.redis_url, decode=False))


def build_remote(clients: Clients) -> Remote:
    """The store's fetcher for these settings: IPFS first (when on), then the L1 server (remote workers)."""
    settings, store = clients.settings, clients.store
    sources: list[Source] = []
    peers = None
    if settings.ipfs_api:
        from l1web.ipfs.fetch import IPFSPeers, IPFSSource  # only with IPFS on: single hosts never load it

        ipfs = IPFSSource(settings, clients.state, store)
        sources.append(ipfs)
        peers = IPFSPeers(clients, ipfs)
    server = L1Server(store, settings.l1_server_url, settings.worker_token) if remote_worker(settings) else None
    if server:
        sources.append(server)
    return Remote(store, sources, peers=peers, server=server)


@functools.cache
def process_clients() -> Clients:
    """This process's clients, from the environment, built on first use (a worker's jobs share them)."""
    return Clients.from_settings(Settings.from_env())
