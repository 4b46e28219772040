"""Add a completed run's outputs and provenance to IPFS, pinned, and index SHA3 → CID.

Called by the worker right after a run completes (`after_run`, a best-effort hook: IPFS being
down never fails a run — the run id stays in `ipfs:pending` and the sync task retries it), and
by the sync task for the pending ones. Every step output of the run is added, not only the
final one, so a peer can reuse any step by cache id.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

from l1web.clients import Clients
from l1web.errors import L1Error
from l1web.ipfs.client import IPFSClient, IPFSError
from l1web.runs.model import RunStatus, StepStatus
from l1web.settings import Settings
from l1web.state import StateManager
from l1web.state.ipfs import IPFSIndex
from l1web.store import ContentStore

log = logging.getLogger(__name__)


@functools.cache
def client_for(api: str, timeout: float) -> IPFSClient:
    return IPFSClient(api, timeout=timeout)


def enabled(settings: Settings) -> bool:
    return bool(settings.ipfs_api)


def after_run(ctx: Clients, run_id: str) -> None:
    """The worker's hook when a run completes: add and pin its outputs; never raises."""
    if not enabled(ctx.settings):
        return
    index = ctx.state.ipfs
    try:
        index.mark_pending(run_id)
        publish_run(client_for(ctx.settings.ipfs_api, ctx.settings.ipfs_timeout), ctx.state, ctx.store,
                    index, run_id)
    except Exception as exc:  # noqa: BLE001 - a run is complete whatever IPFS says; the sync task retries
        log.warning("IPFS: outputs of run %s not added yet (%s); the sync task will retry", run_id[:12], exc)


def canonical_bytes(document: object) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def add_item(client: IPFSClient, store: ContentStore, index: IPFSIndex, digest: str) -> str:
    """The CID of a stored item, adding (and pinning) its verified bytes the first time."""
    known = index.cid(digest)
    if known:
        return known
    path = store.path_for(digest)  # verifies the bytes against their SHA3 name
    with open(path, "rb") as handle:
        cid = client.add(handle, name=digest)
    index.set_cid(digest, cid)
    return cid


def publish_run(client: IPFSClient, state: StateManager, store: ContentStore, index: IPFSIndex,
                run_id: str) -> dict[str, Any] | None:
    """Add every output of a completed run and its provenance; the run's IPFS record, or None."""
    run = state.runs.get(run_id)
    if run is None or run.get("status") != RunStatus.COMPLETED:
        index.done(run_id)  # deleted or re-run meanwhile: nothing to publish now
        return None
    states = state.runs.step_states(run_id)
    for step in state.runs.steps(run_id):
        current = states.get(step["step_id"], {})
        digest = current.get("output")
        if not digest or not StepStatus(current.get("status", StepStatus.PENDING)).done:
            continue
        add_item(client, store, index, digest)
        if step["type"] != "SOURCE":
            index.share_result(step["cache_id"], digest)
    output = str(run["output_hash"])
    record = {
        "output_hash": output,
        "output_cid": add_item(client, store, index, output),
        "provenance_cid": client.add(canonical_bytes(run.get("provenance") or {}), name="provenance.json"),
        "recipe_id": run.get("recipe_id", ""),
        "recipe_name": run.get("recipe_name", ""),
        "config_id": run.get("config_id", ""),
        "finished": run.get("finished", ""),
    }
    index.set_run(run_id, record)
    index.done(run_id)
    return record


def retry_pending(client: IPFSClient, state: StateManager, store: ContentStore, index: IPFSIndex) -> int:
    """Publish runs whose hook failed; returns how many are still pending. Raises if IPFS is down."""
    left = 0
    for run_id in index.pending():
        try:
            publish_run(client, state, store, index, run_id)
        except IPFSError:
            raise
        except L1Error as exc:  # an output not on this host (another worker's cache): later
            log.info("IPFS: run %s not publishable here yet: %s", run_id[:12], exc)
            left += 1
    return left
