"""The L2 client: `POST {L2}/auth/verify` (and the publish call's exchange), to configured L2 servers only.

Plain `http.client`: no redirect is followed, no proxy is used, the whole exchange must finish
within the timeout and the answer be at most `MAX_ANSWER_BYTES`. Anything unexpected is an error, never a session.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import json
import logging
import math
import socket
import threading
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

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


class L2Timeout(Exception):
    """The whole exchange with L2 did not finish within its deadline."""


def exchange(url: str, path: str, payload: dict[str, Any], timeout: float, *, headers: dict[str, str] | None = None,
             max_bytes: int = MAX_ANSWER_BYTES) -> tuple[int, bytes]:
    """POST `payload` as JSON to `url` + `path`; (status, at most `max_bytes` + 1 bytes of body).

    The whole exchange (connect, headers, body) must fit in `timeout`: a watchdog shuts the
    socket at the deadline, since a socket timeout only bounds each wait for a byte and an L2
    dripping its headers or body one byte at a time would otherwise hold this thread for ever.
    Raises `L2Timeout`, or the `OSError` / `http.client.HTTPException` of an unusable exchange.
    No redirect is followed and no proxy is used: every L2 call (verify, publish) comes here.
    """
    target = urlsplit(url)
    connection_class = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(target.hostname or "", target.port, timeout=timeout)
    watchdog = _Watchdog(connection, timeout)
    try:
        connection.request("POST", f"{target.path.rstrip('/')}{path}", body=json.dumps(payload).encode(),
                           headers={"Content-Type": "application/json", "Accept": "application/json",
                                    **(headers or {})})
        answer = connection.getresponse()  # never follows a redirect
        body = _read_capped(answer, max_bytes)
        status = answer.status
    except (OSError, http.client.HTTPException) as exc:
        if watchdog.expired.is_set() or isinstance(exc, TimeoutError):
            raise L2Timeout(str(exc)) from exc
        raise
    finally:
        watchdog.cancel()
        connection.close()
    if watchdog.expired.is_set():
        raise L2Timeout("the deadline passed")
    return status, body


def verify(l2_url: str, token: str, l1_url: str, timeout: float) -> Verified:
    """Ask `l2_url` whether `token` is valid for `l1_url`; raise `Invalid` or a 502/503/504."""
    try:
        status, body = exchange(l2_url, VERIFY_PATH, {"token": token, "l1": l1_url}, timeout)
    except L2Timeout as exc:
        log.warning("L2 %s timed out verifying a token", l2_url)
        raise GatewayTimeout("Sign-in is unavailable: the L2 server did not answer in time.") from exc
    except (OSError, http.client.HTTPException) as exc:
        log.warning("L2 %s unreachable or unusable: %s", l2_url, type(exc).__name__)
        if isinstance(exc, OSError):
            raise Unavailable("Sign-in is unavailable: the L2 server cannot be reached.") from exc
        raise BadGateway("The L2 server gave an unusable answer.") from exc
    if len(body) > MAX_ANSWER_BYTES:
        raise BadGateway("The L2 server sent an answer that is too large.")
    return _verdict(l2_url, status, body, l1_url)


class _Watchdog:
    """Shuts the connection's socket once `timeout` seconds have passed, whatever it is doing."""

    def __init__(self, connection: http.client.HTTPConnection, timeout: float) -> None:
        self.connection = connection
        self.expired = threading.Event()
        self.timer = threading.Timer(timeout, self._cut)
        self.timer.daemon = True
        self.timer.start()

    def _cut(self) -> None:
        self.expired.set()
        sock = self.connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self.timer.cancel()


def _read_capped(answer: http.client.HTTPResponse, max_bytes: int) -> bytes:
    """The body, cut at `max_bytes` + 1 bytes (whatever Content-Length claims): a caller sees "too large"."""
    body = b""
    while len(body) <= max_bytes and (chunk := answer.read(CHUNK_BYTES)):
        body += chunk
    return body[:max_bytes + 1]


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
