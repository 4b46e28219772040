"""The content store's reach beyond this host: the fetcher the composition root gives a process.

`Remote` is what the run jobs ask ("is this item here, or can it be brought here?", "did a peer
render this step?", "send this output to the server", "a run completed"). It knows no protocol:
it tries the `Source`s it was given, in order, and hands peer look-ups and run hooks to an
optional `Peers` object. `l1web.clients.Clients.from_settings` builds it: with IPFS off and no
L1 server configured it has no source and no peers, so a single-host run never calls into
`l1web.ipfs` (the IPFS source and peers are imported only when `IPFS_API` is set).

`L1Server` is the remote-worker HTTP transfer (`GET/PUT/DELETE /worker/cache/{hash}` with the
shared `WORKER_TOKEN`) for workers on other hosts with their own CACHE_DIR. Bytes stream into
the store's temp dir while being hashed; a mismatch is discarded and never enters the cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Protocol

import requests

from l1web.errors import L1Error
from l1web.settings import Settings
from l1web.store import ContentStore
from l1web.store.names import is_digest, new_hasher

log = logging.getLogger(__name__)

#: Header carrying the shared worker secret on L1 fetches.
WORKER_TOKEN_HEADER = "X-Worker-Token"  # noqa: S105 - a header name, not a secret
#: Seconds to wait for a connection to the L1 server.
CONNECT_TIMEOUT = 3.0
#: Seconds a fetch from the L1 server may stall between chunks.
HTTP_READ_TIMEOUT = 60.0
#: Bytes per chunk when streaming a fetch into the store.
CHUNK = 1024 * 1024
#: Attempts to send an output to the L1 server, and the pause after the first failure (seconds).
PUSH_ATTEMPTS, PUSH_BACKOFF = 3, 0.5
#: Seconds (connect, read) a chunk deletion on the L1 server may take.
DELETE_TIMEOUT = (3.0, 10.0)


class FetchError(L1Error):
    status, code = 502, "fetch_failed"


class Mismatch(FetchError):
    """The bytes that came do not hash to the name they were asked for."""


class Source(Protocol):
    """One place an item this host lacks may come from; `fetch` raises FetchError when it cannot."""

    name: str

    def fetch(self, digest: str) -> str: ...


class Peers(Protocol):
    """Other L1s' published step results, and the hook that publishes ours (IPFS)."""

    def result(self, cache_id: str) -> str | None: ...

    def after_run(self, run_id: str) -> None: ...


class Remote:
    """The fetcher injected beside the content store: sources tried in order, then peers."""

    def __init__(self, store: ContentStore, sources: Sequence[Source] = (), *, peers: Peers | None = None,
                 server: L1Server | None = None) -> None:
        self.store, self.sources, self.peers, self.server = store, tuple(sources), peers, server

    def has(self, digest: str) -> bool:
        """True when `digest` is in this host's store now — fetching it first when it is elsewhere."""
        if self.store.has(digest):
            return True
        if not is_digest(digest) or not self.sources:
            return False
        try:
            self.fetch(digest)
            return True
        except Exception as exc:  # noqa: BLE001 - a hook: any failure means "not here", never a crash
            log.warning("could not fetch %s to this host: %s", digest[:12], exc)
            return False

    def ensure_local(self, digests: Iterable[str]) -> None:
        """Fetch every one of `digests` this host lacks (a render's inputs); FetchError names the first miss."""
        for digest in digests:
            if self.sources and not self.store.has(digest):
                self.fetch(digest)

    def fetch(self, digest: str) -> str:
        """Fetch `digest` from the first source that has it; raises FetchError naming each failure."""
        failures = []
        for source in self.sources:
            try:
                return source.fetch(digest)
            except FetchError as exc:
                failures.append(f"{source.name}: {exc}")
        raise FetchError(f"item {digest[:12]}… is not on this host and no source had it: "
                         + ("; ".join(failures) or "no source configured"))

    def peer_result(self, cache_id: str) -> str | None:
        """A step output a peer L1 published for `cache_id`, fetched and verified; else None."""
        return self.peers.result(cache_id) if self.peers else None

    def share(self, digest: str, owner: str | None) -> None:
        """On a worker on another host: send a rendered output to the L1 server before the step ends."""
        if self.server:
            self.server.push(digest, owner)

    def forget(self, digest: str) -> None:
        """A chunk removed here: remove the L1 server's copy too (workers on other hosts)."""
        if self.server:
            self.server.delete(digest)

    def after_run(self, run_id: str) -> None:
        """A run completed: let the peers know (IPFS add+pin when enabled); never raises."""
        if self.peers:
            self.peers.after_run(run_id)


def remote_worker(settings: Settings) -> bool:
    """A worker on another host: it pulls inputs from and pushes outputs to the L1 server."""
    return bool(settings.l1_server_url and settings.worker_token)


class L1Server:
    """The L1 server over HTTP, seen from a worker on another host (a Source, and where outputs go)."""

    name = "L1"

    def __init__(self, store: ContentStore, url: str, token: str) -> None:
        self.store, self.url, self.token = store, url, token

    def _url(self, digest: str) -> str:
        return f"{self.url}/worker/cache/{digest}"

    def fetch(self, digest: str) -> str:
        try:
            with requests.get(self._url(digest), headers={WORKER_TOKEN_HEADER: self.token}, stream=True,
                              timeout=(CONNECT_TIMEOUT, HTTP_READ_TIMEOUT)) as response:
                if response.status_code != 200:
                    raise FetchError(f"GET /worker/cache/{digest[:12]}… answered HTTP {response.status_code}")
                return ingest_verified(self.store, digest, response.iter_content(CHUNK), source="worker-fetch")
        except requests.RequestException as exc:
            raise FetchError(f"GET /worker/cache/{digest[:12]}… failed: {type(exc).__name__}") from None

    def push(self, digest: str, owner: str | None) -> None:
        """Send a rendered output to the L1 server, which verifies it; retried briefly, else FetchError.

        Done before the step counts as finished, so the next step (on any host) and the L1 server's
        own downloads find it there.
        """
        error = ""
        for attempt in range(PUSH_ATTEMPTS):
            try:
                with open(self.store.path_for(digest), "rb") as body:
                    response = requests.put(self._url(digest), data=body, params={"owner": owner or ""},
                                            headers={WORKER_TOKEN_HEADER: self.token},
                                            timeout=(CONNECT_TIMEOUT, HTTP_READ_TIMEOUT))
                if response.status_code in (200, 201):
                    return
                error = f"HTTP {response.status_code}"
                if response.status_code < 500:
                    break
            except requests.RequestException as exc:
                error = type(exc).__name__
            time.sleep(PUSH_BACKOFF * (attempt + 1))
        raise FetchError(f"could not send output {digest[:12]}… to the L1 server: {error}")

    def delete(self, digest: str) -> None:
        try:
            requests.delete(self._url(digest), headers={WORKER_TOKEN_HEADER: self.token}, timeout=DELETE_TIMEOUT)
        except requests.RequestException as exc:  # the server sweeps nothing itself: say so, go on
            log.warning("could not delete chunk %s on the L1 server: %s", digest[:12], type(exc).__name__)


def ingest_verified(store: ContentStore, digest: str, chunks: Iterable[bytes], *, source: str,
                    owner: str | None = None, max_bytes: int | None = None) -> str:
    """Stream `chunks` into the store under `digest`, or discard them if their SHA3 differs."""
    writer = store.writer(max_bytes)
    hasher = new_hasher()
    try:
        for chunk in chunks:
            hasher.update(chunk)
            writer.write(chunk)
    except BaseException:
        writer.discard()
        raise
    actual = hasher.hexdigest()
    if actual != digest:
        writer.discard()
        raise Mismatch(f"fetched bytes hash to {actual[:12]}…, not {digest[:12]}…; discarded")
    return store.commit(writer, source=source, owner=owner).digest
