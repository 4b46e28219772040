"""Publishing a completed run's output to L2, after which neither the run nor the output may go.

L1 sends `POST {L2}/publish` with the user's own token as Bearer (L2 knows whose publication it
is from the token, and L1 needs no secret of its own), the output hash and the provenance; see
docs/l2-contract.md §6. Only once L2 confirms does L1 mark the run `published` and put the
output in the published set, which the content store's delete refuses. If L2 is down, slow or
refuses, nothing is marked and the user is told why.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from typing import Any

from l1web.auth import l2
from l1web.errors import BadGateway, Conflict, Forbidden, GatewayTimeout, Unauthorized, Unavailable
from l1web.runs.model import Run, RunStatus
from l1web.runs.service import RunService
from l1web.settings import Settings
from l1web.users import User

log = logging.getLogger(__name__)

#: Largest L2 answer read, in bytes.
MAX_ANSWER_BYTES = 16 * 1024


def publish(service: RunService, settings: Settings, run_id: str, user: User, token: str | None) -> tuple[Run, bool]:
    """Publish the run's output for its owner; (publication, newly published)."""
    run = service.get(run_id, user)
    if run.get("owner") != user.name:
        raise Forbidden("Only the run's owner can publish it (L2 records it under their name).")
    if run["status"] != RunStatus.COMPLETED or not run.get("output_hash"):
        raise Conflict(f"the run is {run['status']}; only a completed run's output can be published",
                       run_status=run["status"])
    if run.get("published") == "1":
        return publication_of(run), False
    if not token:
        raise Unauthorized("L1 does not hold your L2 token for this session; sign in again through L2 to publish.")
    server = l2.pick_l2(token, settings.l2_servers)
    answer = _post(server, token, {
        "l1": settings.l1_public_url, "run_id": run_id, "output_hash": run["output_hash"],
        "output_name": run.get("output_name") or run.get("recipe_name") or "",
        "provenance": run.get("provenance") or {},
    }, settings.l2_publish_timeout)
    published_at = time.time()
    if not _mark(service, run_id, server, answer, published_at):
        raise Conflict("the run changed while it was being published; reload it and try again")
    log.info("published run %s output %s to %s as %s", run_id, run["output_hash"][:12], server, answer.get("id"))
    return publication_of(service.state.runs.get(run_id) or run), True


def _post(server: str, token: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    # The same whole-exchange deadline as sign-in's verify call: an L2 dripping its answer byte
    # by byte must not hold this request's thread past `timeout` (a read timeout would not stop it).
    try:
        status, raw = l2.exchange(server, "/publish", body, timeout, headers={"Authorization": f"Bearer {token}"},
                                  max_bytes=MAX_ANSWER_BYTES)
    except l2.L2Timeout as exc:
        raise GatewayTimeout(f"L2 at {server} did not answer within {timeout:g} s; the run was not published.") \
            from exc
    except (OSError, http.client.HTTPException) as exc:
        raise Unavailable(f"L2 at {server} is unreachable ({type(exc).__name__}); the run was not published.") \
            from exc
    try:
        data = json.loads(raw) if len(raw) <= MAX_ANSWER_BYTES else None
    except ValueError:
        data = None
    message = data.get("message") if isinstance(data, dict) else None
    if status in (401, 403):
        raise Forbidden(f"L2 refused the publication: {message or 'your token is not accepted'}; "
                        "sign in again through L2.")
    if status in (200, 201) and isinstance(data, dict) and isinstance(data.get("id"), str | int):
        return data
    if 400 <= status < 500:
        raise BadGateway(f"L2 refused the publication ({status}): {message or 'no reason given'}")
    raise BadGateway(f"L2 answered {status} with no usable publication record; the run was not published.")


def _mark(service: RunService, run_id: str, server: str, answer: dict[str, Any], published_at: float) -> bool:
    """Mark the run and its output published, only if the run is still there and completed."""
    return service.state.runs.mark_published(
        run_id, published_at=repr(published_at), published_to=server,
        published_id=str(answer["id"]), published_url=str(answer.get("url") or ""))


def publication_of(run: Run) -> dict[str, Any]:
    return {
        "run_id": run["id"], "output_hash": run.get("output_hash"), "published": run.get("published") == "1",
        "published_at": float(run["published_at"]) if run.get("published_at") else None,
        "l2": run.get("published_to") or None, "l2_id": run.get("published_id") or None,
        "l2_url": run.get("published_url") or None,
    }
