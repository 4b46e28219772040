"""The L2 client: `POST {L2}/auth/verify`, to configured L2 servers only, failing closed.

No redirect is followed, connect and read time out quickly, the whole answer must arrive within
the timeout and be at most `MAX_ANSWER_BYTES`. Anything unexpected is an error, never a session.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import math
import socket
import threading
import time
from datetime import datetime

import requests

from l1web.auth.tokens import is_username
from l1web.errors import BadGateway, GatewayTimeout, Unavailable
from l1web.state.tokens import Verified

log = logging.getLogger(__name__)

#: Largest verify answer read from L2, in bytes.
MAX_ANSWER_BYTES = 16 * 1024
#: Bytes read from L2 per chunk.
CHUNK_BYTES = 4096
#: Path of the verify endpoint on every L2.
VERIFY_PATH = "/auth/verify"


class Invalid(Exception):
    """L2 answered: this token is not valid here (the reason is L2's, for the log only)."""


def pick_l2(token: str, servers: tuple[str, ...]) -> str:
    """The configured L2 that issued `token`: the one its `iss` names, else the first.

    The `iss` claim is read unverified only to choose among configured servers; a token never
    makes L1 call a URL that is not in `L2_SERVER`, and never goes to an L2 it does not name.
    """
    if not servers:
        raise Unavailable("Sign-in is unavailable: no L2 server is configured.")
    issuer = _unverified_issuer(token)
    return issuer if issuer in servers else servers[0]


def _unverified_issuer(token: str) -> str | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer.rstrip("/") if isinstance(issuer, str) else None


def verify(l2_url: str, token: str, l1_url: str, timeout: float) -> Verified:
    """Ask `l2_url` whether `token` is valid for `l1_url`; raise `Invalid` or a 502/503/504."""
    deadline = time.monotonic() + timeout
    try:
        with requests.post(f"{l2_url}{VERIFY_PATH}", json={"token": token, "l1": l1_url},
                           timeout=(timeout, timeout), allow_redirects=False, stream=True) as answer:
            body = _read_capped(answer, deadline)
            status = answer.status_code
    except requests.Timeout as exc:
        log.warning("L2 %s timed out verifying a token", l2_url)
        raise GatewayTimeout("Sign-in is unavailable: the L2 server did not answer in time.") from exc
    except requests.RequestException as exc:
        log.warning("L2 %s unreachable: %s", l2_url, type(exc).__name__)
        raise Unavailable("Sign-in is unavailable: the L2 server cannot be reached.") from exc
    return _verdict(l2_url, status, body, l1_url)


def _read_capped(answer: requests.Response, deadline: float) -> bytes:
    """The body, at most `MAX_ANSWER_BYTES`, all of it by `deadline`.

    The read timeout only bounds each wait for a byte, so an L2 dripping one byte at a time
    would never trip it; a watchdog shuts the socket at the deadline instead.
    """
    expired = threading.Event()
    sock = getattr(getattr(answer.raw, "connection", None), "sock", None)

    def cut() -> None:
        expired.set()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(max(deadline - time.monotonic(), 0.0), cut)
    watchdog.daemon = True
    watchdog.start()
    body = b""
    try:
        for chunk in answer.iter_content(CHUNK_BYTES):
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise BadGateway("The L2 server sent an answer that is too large.")
    except requests.RequestException:
        if expired.is_set():
            raise requests.Timeout("L2 answer took too long") from None
        raise
    finally:
        watchdog.cancel()
    if expired.is_set() or time.monotonic() > deadline:
        raise requests.Timeout("L2 answer took too long")
    return body


def _verdict(l2_url: str, status: int, body: bytes, l1_url: str) -> Verified:
    if 400 <= status < 500:
        raise Invalid(f"L2 answered {status}")
    if status != 200:
        log.warning("L2 %s answered %s to a verify call", l2_url, status)
        raise BadGateway("The L2 server gave an unexpected answer.")
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise BadGateway("The L2 server gave an answer that is not JSON.") from exc
    if not isinstance(answer, dict) or answer.get("valid") is not True:
        reason = answer.get("reason") if isinstance(answer, dict) else None
        raise Invalid(f"L2 says not valid ({reason})")
    # Trust nothing L2 did not state explicitly: the scope must name us, the user must be sane.
    scope = answer.get("l1")
    if not isinstance(scope, str) or scope.rstrip("/") != l1_url:
        raise Invalid("token is scoped to another L1")
    if not is_username(answer.get("username")):
        raise Invalid("L2 named no usable user")
    expires_at = _epoch(answer.get("expires_at"))
    if expires_at is None or expires_at <= time.time():
        raise Invalid("token expired or has no expiry")
    return Verified(answer["username"], expires_at)


def _epoch(value: object) -> int | None:
    """Seconds since the epoch from a number or an ISO 8601 time with a zone."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        return int(moment.timestamp()) if moment.tzinfo else None
    return None
