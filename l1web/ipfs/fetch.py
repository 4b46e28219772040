"""IPFS as a source for the content store's `Remote` (`l1web/store/remote.py`), and as its peers.

`IPFSSource` fetches an item by CID (our own index, then what peers published); `IPFSPeers`
answers "did a peer L1 render this step?" from the peers' IPNS documents and adds and pins a
completed run's outputs. Both are built by `l1web.clients.Clients.from_settings` only when
`IPFS_API` is set. Bytes are used only once their SHA3 matches their name
(`l1web.store.remote.ingest_verified`); the peer hook swallows every failure, so the caller
then renders as if the item were not there.
"""

from __future__ import annotations

import logging

from l1web.clients import Clients
from l1web.ipfs.client import IPFSError
from l1web.ipfs.pinning import after_run, client_for
from l1web.settings import Settings
from l1web.state import StateManager
from l1web.store import ContentStore
from l1web.store.remote import FetchError, Mismatch, ingest_verified

log = logging.getLogger(__name__)


class IPFSSource:
    """Items by CID from the IPFS node at `IPFS_API`: ours first, then the CIDs peers published."""

    name = "IPFS"

    def __init__(self, settings: Settings, state: StateManager, store: ContentStore) -> None:
        self.settings, self.state, self.store = settings, state, store

    def fetch(self, digest: str) -> str:
        index = self.state.ipfs
        remote = index.remote_cid(digest) or {}
        failures = []
        for cid in dict.fromkeys(c for c in (index.cid(digest), remote.get("cid")) if c):
            try:
                return self.from_cid(digest, cid, source=f"ipfs:{cid}")
            except (IPFSError, FetchError) as exc:
                failures.append(f"{cid}: {exc}")
        raise FetchError("; ".join(failures) or "no CID known")

    def from_cid(self, digest: str, cid: str, *, source: str) -> str:
        client = client_for(self.settings.ipfs_api, self.settings.ipfs_timeout)
        return ingest_verified(self.store, digest, client.cat_iter(cid), source=source)


class IPFSPeers:
    """Step results peer L1s published over IPNS, and the add+pin of our own completed runs."""

    def __init__(self, clients: Clients, source: IPFSSource) -> None:
        self.clients, self.source = clients, source

    def result(self, cache_id: str) -> str | None:
        """A step output a peer L1 published for `cache_id`, fetched by CID and verified; else None."""
        state, store = self.clients.state, self.clients.store
        index = state.ipfs
        try:
            entry = index.remote_result(cache_id)
            if not entry:
                return None
            digest = str(entry["digest"])
            if not store.has(digest):
                self.source.from_cid(digest, str(entry["cid"]), source=f"peer:{entry.get('peer', '?')}")
            # Recorded only where nothing local is: local truth is never overwritten.
            state.results.set_if_absent(cache_id, digest)
            return digest
        except (Mismatch, KeyError, TypeError) as exc:
            log.warning("peer entry for step %s dropped: %s", cache_id[:12], exc)
            index.forget_remote_result(cache_id)
        except Exception as exc:  # noqa: BLE001 - IPFS down or slow: render instead
            log.warning("peer output for step %s not fetched: %s", cache_id[:12], exc)
        return None

    def after_run(self, run_id: str) -> None:
        after_run(self.clients, run_id)
