"""The background IPNS sync: publish this node's shareable state, read and merge the peers'.

Runs as its own process (`python -m l1web.ipfs.sync`, started by the launcher when
IPNS_SYNC_INTERVAL > 0 and IPFS is on), never on the request path. Every interval it retries
outputs whose IPFS add failed, builds one JSON document (SHA3 → CID index, step cache id →
output, completed runs with provenance CIDs, the configs they used), and — only when it changed
since the last publish (coalescing) — adds it and points this node's IPNS name at it. Then it
resolves each name in IPNS_PEERS, reads its document (size-capped, validated entry by entry) and
merges it into the `ipns:remote:*` hints, which never overwrite local truth. Failures back off
exponentially; everything lands in `artdag:ipns:status` for the admin status page.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import threading
import time

from l1web.clients import Clients
from l1web.ipfs.client import IPFSClient, IPFSError
from l1web.ipfs.pinning import canonical_bytes, client_for, retry_pending
from l1web.settings import Settings
from l1web.state import StateManager
from l1web.state.ipfs import IPFSIndex
from l1web.store import ContentStore
from l1web.store.names import is_digest, new_hasher

log = logging.getLogger("l1web.ipfs.sync")

#: Format tag of the sync document; a peer document with another tag is ignored.
DOC_FORMAT = "artdag-l1-sync/1"
#: Longest wait between attempts while failing, in seconds.
MAX_BACKOFF = 600.0
#: Largest peer document accepted, in bytes.
MAX_DOCUMENT = 16 * 1024 * 1024
#: Configs listed in the document at most.
MAX_CONFIGS = 1000
#: What a CID may look like (CIDv0 base58 `Qm…`, CIDv1 in base32/base58/base36).
CID_RE = re.compile(r"^[A-Za-z0-9]{20,128}$")


def build_document(state: StateManager, index: IPFSIndex) -> dict:
    """This node's shareable state (without a timestamp, so unchanged state hashes the same)."""
    cids = index.cids()
    results = {cache_id: {"digest": digest, "cid": cids[digest]}
               for cache_id, digest in index.results().items() if digest in cids}
    runs = index.runs()
    configs = {}
    for config_id in sorted({r.get("config_id") for r in runs.values() if r.get("config_id")})[:MAX_CONFIGS]:
        config = state.recipes.get(config_id)
        if config:
            configs[config_id] = {"name": config.get("name", ""), "recipe": config["recipe"]}
    return {"format": DOC_FORMAT, "cids": cids, "results": results, "runs": runs, "configs": configs}


def validate_document(document: object) -> tuple[dict[str, dict], dict[str, str]]:
    """(results, cids) of a peer document, keeping only well-formed entries; ValueError if unusable."""
    if not isinstance(document, dict) or document.get("format") != DOC_FORMAT:
        raise ValueError(f"not an {DOC_FORMAT} document")
    raw_cids = document.get("cids") if isinstance(document.get("cids"), dict) else {}
    cids = {d: c for d, c in raw_cids.items() if is_digest(d) and isinstance(c, str) and CID_RE.match(c)}
    results = {}
    raw_results = document.get("results") if isinstance(document.get("results"), dict) else {}
    for cache_id, entry in raw_results.items():
        if not (is_digest(cache_id) and isinstance(entry, dict)):
            continue
        digest, cid = entry.get("digest"), entry.get("cid")
        if is_digest(digest) and isinstance(cid, str) and CID_RE.match(cid):
            results[cache_id] = {"digest": digest, "cid": cid}
    return results, cids


class SyncTask:
    """One node's sync loop; `once()` is one cycle (tests call it directly)."""

    def __init__(self, settings: Settings, state: StateManager, store: ContentStore,
                 client: IPFSClient | None = None) -> None:
        self.settings, self.state, self.store = settings, state, store
        self.client = client or client_for(settings.ipfs_api, settings.ipfs_timeout)
        self.index = state.ipfs
        self.published_hash = ""
        self.stop = threading.Event()

    def once(self) -> dict:
        """Retry pending adds, publish if changed, read the peers; the status written. Raises on failure."""
        started = time.time()
        pending = retry_pending(self.client, self.state, self.store, self.index)
        name = self.client.key_id(self.settings.ipns_key)
        document = build_document(self.state, self.index)
        content_hash = new_hasher()
        content_hash.update(canonical_bytes(document))
        changed = content_hash.hexdigest() != self.published_hash
        if changed:
            cid = self.client.add(canonical_bytes({**document, "node": name, "published_at": started}),
                                  name="artdag-l1-sync.json")
            self.client.name_publish(cid, key=self.settings.ipns_key)
            self.published_hash = content_hash.hexdigest()
            self.index.set_status(published_cid=cid, published_at=f"{started:.3f}",
                                  document_entries=len(document["results"]))
        peers = {peer: self.read_peer(peer) for peer in self.settings.ipns_peers}
        healthy = all(p["ok"] for p in peers.values())
        status = {"state": "ok" if healthy else "degraded", "name": name, "key": self.settings.ipns_key,
                  "interval": self.settings.ipns_sync_interval, "last_attempt": f"{started:.3f}",
                  "last_ok": f"{time.time():.3f}", "failures": 0, "last_error": "", "pending": pending,
                  "published": changed, "peers": peers}
        self.index.set_status(**status)
        return status

    def read_peer(self, peer: str) -> dict:
        """Resolve, fetch, validate and merge one peer's document; a summary for the status page."""
        try:
            cid = self.client.name_resolve(peer, timeout=self.settings.ipfs_timeout)
            raw = b""
            for chunk in self.client.cat_iter(cid, timeout=self.settings.ipfs_timeout):
                raw += chunk
                if len(raw) > MAX_DOCUMENT:
                    raise ValueError(f"document larger than {MAX_DOCUMENT} bytes")
            results, cids = validate_document(json.loads(raw))
            added = self.index.merge_peer(peer, raw.decode(), results, cids)
            return {"ok": True, "cid": cid, "results": len(results), "new": added, "at": f"{time.time():.3f}"}
        except (IPFSError, ValueError, UnicodeDecodeError) as exc:
            log.warning("IPNS peer %s not read: %s", peer, exc)
            return {"ok": False, "error": str(exc)[:300], "at": f"{time.time():.3f}"}

    def run_forever(self) -> None:
        failures = 0
        interval = max(self.settings.ipns_sync_interval, 0.1)
        self._note(state="starting", interval=interval, failures=0, last_error="")
        while not self.stop.is_set():
            delay = interval
            try:
                self.once()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the task outlives any single failure
                failures += 1
                delay = min(interval * 2 ** failures, MAX_BACKOFF)
                log.warning("IPNS sync failed (%d in a row), next attempt in %.0f s: %s", failures, delay, exc)
                self._note(state="error", failures=failures, last_error=str(exc)[:500],
                           last_attempt=f"{time.time():.3f}")
            self._note(next_attempt=f"{time.time() + delay:.3f}")
            self.stop.wait(delay)

    def _note(self, **fields: object) -> None:
        """Write the status, unless Redis itself is what is failing (then only the log says so)."""
        try:
            self.index.set_status(**fields)
        except Exception as exc:  # noqa: BLE001
            log.warning("IPNS sync status not written: %s", exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="L1's background IPNS sync (see docs/ipfs.md).")
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    if not settings.ipfs_api or settings.ipns_sync_interval <= 0:
        print("IPNS sync is off (set IPFS_API and IPNS_SYNC_INTERVAL > 0)", file=sys.stderr)
        return 0
    clients = Clients.from_settings(settings)
    task = SyncTask(settings, clients.state, clients.store)
    signal.signal(signal.SIGTERM, lambda *_: task.stop.set())
    signal.signal(signal.SIGINT, lambda *_: task.stop.set())
    log.info("IPNS sync every %g s via %s, key %s, peers %s", settings.ipns_sync_interval, settings.ipfs_api,
             settings.ipns_key, ", ".join(settings.ipns_peers) or "none")
    task.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
