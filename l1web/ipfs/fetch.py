"""Bring an item this host lacks into its store, and use it only once its SHA3 matches its name.

Two sources, tried in order: IPFS by CID (our own index, then what peers published), and the
L1 server over HTTP (`GET /worker/cache/{hash}` with `WORKER_TOKEN`) for workers on other hosts
with their own CACHE_DIR. The bytes stream into the store's temp dir while being hashed; a
mismatch is discarded and never enters the cache. The job hooks (`has`, `peer_result`) swallow
every failure: the caller then renders as if the item were not there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import requests

from l1web.clients import Clients
from l1web.errors import L1Error
from l1web.ipfs.client import CONNECT_TIMEOUT, IPFSError
from l1web.ipfs.pinning import client_for
from l1web.settings import Settings
from l1web.store import ContentStore
from l1web.store.names import is_digest, new_hasher

log = logging.getLogger(__name__)

#: Header carrying the shared worker secret on L1 fetches.
WORKER_TOKEN_HEADER = "X-Worker-Token"  # noqa: S105 - a header name, not a secret
#: Seconds a fetch from the L1 server may stall between chunks.
HTTP_READ_TIMEOUT = 60.0
#: Bytes per chunk when streaming a fetch into the store.
CHUNK = 1024 * 1024
#: Attempts to send an output to the L1 server, and the pause after the first failure (seconds).
PUSH_ATTEMPTS, PUSH_BACKOFF = 3, 0.5


class FetchError(L1Error):
    status, code = 502, "fetch_failed"


class Mismatch(FetchError):
    """The bytes that came do not hash to the name they were asked for."""


def remote_worker(settings: Settings) -> bool:
    """A worker on another host: it pulls inputs from and pushes outputs to the L1 server."""
    return bool(settings.l1_server_url and settings.worker_token)


def sources(settings: Settings) -> bool:
    return bool(settings.ipfs_api) or remote_worker(settings)


def has(ctx: Clients, digest: str) -> bool:
    """True when `digest` is in this host's store now — fetching it first when it is elsewhere."""
    if ctx.store.has(digest):
        return True
    if not is_digest(digest) or not sources(ctx.settings):
        return False
    try:
        fetch(ctx, digest)
        return True
    except Exception as exc:  # noqa: BLE001 - a hook: any failure means "not here", never a crash
        log.warning("could not fetch %s to this host: %s", digest[:12], exc)
        return False


def ensure_local(ctx: Clients, digests: Iterable[str]) -> None:
    """Fetch every one of `digests` this host lacks (a render's inputs); FetchError names the first miss."""
    if not sources(ctx.settings):  # nowhere to fetch from: the render's own path check says what is missing
        return
    for digest in digests:
        if not ctx.store.has(digest):
            fetch(ctx, digest)


def peer_result(ctx: Clients, cache_id: str) -> str | None:
    """A step output a peer L1 published for `cache_id`, fetched by CID and verified; else None."""
    if not ctx.settings.ipfs_api:
        return None
    index = ctx.state.ipfs
    try:
        entry = index.remote_result(cache_id)
        if not entry:
            return None
        digest = str(entry["digest"])
        if not ctx.store.has(digest):
            from_ipfs(ctx, digest, str(entry["cid"]), source=f"peer:{entry.get('peer', '?')}")
        # Recorded only where nothing local is: local truth is never overwritten.
        ctx.state.results.set_if_absent(cache_id, digest)
        return digest
    except (Mismatch, KeyError, TypeError) as exc:
        log.warning("peer entry for step %s dropped: %s", cache_id[:12], exc)
        index.forget_remote_result(cache_id)
    except Exception as exc:  # noqa: BLE001 - IPFS down or slow: render instead
        log.warning("peer output for step %s not fetched: %s", cache_id[:12], exc)
    return None


def fetch(ctx: Clients, digest: str) -> str:
    """Fetch `digest` from the first source that has it; raises FetchError naming each failure."""
    failures = []
    index = ctx.state.ipfs
    if ctx.settings.ipfs_api:
        remote = index.remote_cid(digest) or {}
        for cid in dict.fromkeys(c for c in (index.cid(digest), remote.get("cid")) if c):
            try:
                return from_ipfs(ctx, digest, cid, source=f"ipfs:{cid}")
            except (IPFSError, FetchError) as exc:
                failures.append(f"IPFS {cid}: {exc}")
    if remote_worker(ctx.settings):
        try:
            return from_l1(ctx, digest)
        except FetchError as exc:
            failures.append(f"L1: {exc}")
    raise FetchError(f"item {digest[:12]}… is not on this host and no source had it: "
                     + ("; ".join(failures) or "no source configured"))


def from_ipfs(ctx: Clients, digest: str, cid: str, *, source: str) -> str:
    client = client_for(ctx.settings.ipfs_api, ctx.settings.ipfs_timeout)
    return ingest_verified(ctx.store, digest, client.cat_iter(cid), source=source)


def from_l1(ctx: Clients, digest: str) -> str:
    url = f"{ctx.settings.l1_server_url}/worker/cache/{digest}"
    try:
        with requests.get(url, headers={WORKER_TOKEN_HEADER: ctx.settings.worker_token}, stream=True,
                          timeout=(CONNECT_TIMEOUT, HTTP_READ_TIMEOUT)) as response:
            if response.status_code != 200:
                raise FetchError(f"GET /worker/cache/{digest[:12]}… answered HTTP {response.status_code}")
            return ingest_verified(ctx.store, digest, response.iter_content(CHUNK), source="worker-fetch")
    except requests.RequestException as exc:
        raise FetchError(f"GET /worker/cache/{digest[:12]}… failed: {type(exc).__name__}") from None


def share(ctx: Clients, digest: str, owner: str | None) -> None:
    """On a worker on another host: send a rendered output to the L1 server, which verifies it.

    Done before the step counts as finished, so the next step (on any host) and the L1 server's
    own downloads find it there. Retried briefly; a failure fails the step with the reason.
    """
    if not remote_worker(ctx.settings):
        return
    url = f"{ctx.settings.l1_server_url}/worker/cache/{digest}"
    error = ""
    for attempt in range(PUSH_ATTEMPTS):
        try:
            with open(ctx.store.path_for(digest), "rb") as body:
                response = requests.put(url, data=body, params={"owner": owner or ""},
                                        headers={WORKER_TOKEN_HEADER: ctx.settings.worker_token},
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
