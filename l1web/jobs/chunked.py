"""Chunked steps in the queue: settings, reuse of a joined whole, and removal of the chunks.

Chunks (engine/chunks.py) are ordinary steps: claimed, cached under their own cache ids (so a
run re-done after a crash renders only the chunks still missing) and shown with progress. Two
things are particular to them, and live here:

- a chunk whose joined whole is already recorded is not rendered: the whole is reused;
- once the join has run — whether it succeeded or failed — the chunk files are temporary
  garbage: their results are forgotten, the joining host and the L1 server delete their
  copies, and every other host sweeps its own against `RemovedChunks` after each step.
  Chunks of a run that ends before its join are kept, so re-running it reuses them.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from l1web.engine.chunks import Chunking
from l1web.engine.plan import Step
from l1web.errors import L1Error
from l1web.settings import Settings

if TYPE_CHECKING:
    from l1web.clients import Clients

#: Source recorded for a stored chunk (chunks are stored without an owner: nobody's media).
SOURCE_PREFIX = "chunk:"


def chunking(settings: Settings) -> Chunking:
    return Chunking(seconds=settings.chunk_seconds, min_seconds=settings.chunk_min_seconds)


def is_chunk(step: Step) -> bool:
    return bool(step.get("chunk"))


def is_join(step: Step) -> bool:
    return bool(step.get("join"))


def joined_whole(steps: list[Step], step: Step) -> Step | None:
    """The join step a chunk step belongs to."""
    owner = step["chunk"]["of"]
    return next((s for s in steps if s["step_id"] == owner), None)


def remove_chunks(ctx: Clients, steps: list[Step], join_step: Step, states: dict[str, dict[str, Any]]) -> list[str]:
    """Forget and delete the join's chunk outputs everywhere; the digests removed."""
    by_id = {s["step_id"]: s for s in steps}
    whole = ctx.state.results.get_result(join_step["cache_id"])
    removed = []
    for chunk_id in join_step["join"]["chunks"]:
        digest = (states.get(chunk_id) or {}).get("output")
        if not digest or digest == whole:  # a chunk that reused the whole
            continue
        ctx.state.results.forget_result(by_id[chunk_id]["cache_id"])
        meta = ctx.state.cache.get(digest)
        if meta is not None and meta.owner:
            continue  # chunks are stored ownerless: these bytes are also someone's item
        removed.append(digest)
    ctx.state.removed_chunks.add(removed)
    for digest in removed:
        with contextlib.suppress(L1Error):  # gone already, or (impossibly) referenced
            ctx.store.delete(digest)
        ctx.store.location(digest).unlink(missing_ok=True)
        ctx.remote.forget(digest)  # a worker on another host: the L1 server's copy goes too
    return removed


def sweep(ctx: Clients) -> int:
    """Delete this host's copies of chunks removed elsewhere; how many files went.

    A digest stored again since (a forced re-run renders a chunk to the same bytes, and the list
    forgets it only once the new copy is stored) is kept: `drop_unindexed_copy` checks the index
    under the item's lock. Unlinking by the list alone lost such a chunk when another worker's
    sweep ran between its store and its `discard` (bench_chunks, second round)."""
    return sum(ctx.store.drop_unindexed_copy(digest) for digest in ctx.state.removed_chunks.recent())
