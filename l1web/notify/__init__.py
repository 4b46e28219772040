"""Run-end notifications (webhooks): signing, checking targets, and one signed POST.

A run may carry `notify_url` (or its owner a default one). When the run ends, a worker POSTs a
JSON summary there, signed with HMAC-SHA256 under the owner's secret:

    X-L1-Timestamp: <unix seconds>
    X-L1-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body bytes>")>
    X-L1-Delivery:  <run id>.<attempt>   (the same on every retry: receivers drop repeats)

Receivers check the signature over the exact body bytes and refuse timestamps outside a replay
window (`verify`). The scheme is the one Stripe and Slack document (timestamp bound into the
HMAC); it is hand-written here because it is ten lines of `hmac` and no maintained library
covers the sending side. Targets are http(s) only; host names are resolved once and every
address must be public unless the operator allows private ones, and the connection goes to the
address checked (no second lookup a DNS rebinding could change). No web framework here.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from l1web.runs.model import Run

#: Header names of a delivery.
TIMESTAMP_HEADER, SIGNATURE_HEADER, DELIVERY_HEADER = "X-L1-Timestamp", "X-L1-Signature", "X-L1-Delivery"
#: Seconds a receiver should accept a timestamp away from its own clock.
REPLAY_WINDOW = 300
#: Longest notify URL accepted, in characters.
MAX_URL = 2048
#: Shortest signing secret a user may set.
MIN_SECRET = 16
#: Bytes of a receiver's answer read (the status is what counts).
MAX_ANSWER = 4096


class TargetRefused(ValueError):
    """A notify URL that may not be called (scheme, host, or a private address)."""


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-L1-Signature` value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, now: float | None = None,
           window: int = REPLAY_WINDOW) -> bool:
    """What a receiver does: the timestamp is recent and the signature matches (constant time)."""
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - stamp) > window:
        return False
    return hmac.compare_digest(sign(secret, stamp, body), signature or "")


def check_url(url: object) -> str:
    """The URL if it is a plausible http(s) target (no lookup yet); TargetRefused otherwise."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise TargetRefused(f"a notify URL must be text of at most {MAX_URL} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("a notify URL must start with http:// or https://")
    if not parts.hostname:
        raise TargetRefused("a notify URL must name a host")
    if parts.username or parts.password:
        raise TargetRefused("a notify URL may not carry a user name or password")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise TargetRefused("a notify URL has a bad port") from None
    return url


def resolve(url: str, *, allow_private: bool) -> list[str]:
    """The addresses `url`'s host resolves to, all of them allowed; TargetRefused otherwise."""
    parts = urlsplit(check_url(url))
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"the notify host {parts.hostname!r} does not resolve: {exc}") from None
    addresses = list(dict.fromkeys(cast(str, info[4][0]) for info in infos))  # an IPv4 or IPv6 address
    if not addresses:
        raise TargetRefused(f"the notify host {parts.hostname!r} has no address")
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        private = (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
                   or ip.is_reserved or ip.is_unspecified or not ip.is_global)
        if private and not allow_private:
            raise TargetRefused(f"the notify host {parts.hostname!r} is a loopback or private address "
                                f"({address}); an operator may allow these with NOTIFY_ALLOW_PRIVATE")
    return addresses


def payload(run: Run) -> dict[str, Any]:
    """The JSON summary of a run that ended."""
    return {
        "event": "run.finished", "run_id": run["id"], "status": run.get("status"),
        "recipe": run.get("recipe_name") or "", "output_hash": run.get("output_hash") or None,
        "error": run.get("error") or None, "attempt": int(run.get("attempt") or 1),
        "finished": float(run["finished"]) if run.get("finished") not in (None, "") else None,
    }


@dataclass(frozen=True)
class Answer:
    status: int
    seconds: float


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool) -> Answer:
    """One POST to `url` at a checked address; the whole exchange bounded by `timeout`.

    Raises TargetRefused, OSError (connection, deadline) or http.client.HTTPException.
    """
    parts = urlsplit(url)
    address = resolve(url, allow_private=allow_private)[0]
    port = parts.port or (443 if parts.scheme == "https" else 80)
    started = time.monotonic()
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = _PinnedHTTPS(parts.hostname or "", port, address, timeout=timeout)
    else:
        connection = http.client.HTTPConnection(address, port, timeout=timeout)
    # A socket timeout bounds each wait, not the exchange: a watchdog closes it at the deadline.
    timer = threading.Timer(timeout, connection.close)
    timer.daemon = True
    timer.start()
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        connection.request("POST", path, body=body, headers={"Host": host or "", **headers})
        answer = connection.getresponse()
        answer.read(MAX_ANSWER)
        return Answer(answer.status, round(time.monotonic() - started, 3))
    finally:
        timer.cancel()
        connection.close()


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to an address already checked, with the certificate verified for the host name."""

    def __init__(self, hostname: str, port: int, address: str, *, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(hostname, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)


def signed_request(run: Run, secret: str, *, now: float | None = None) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of the delivery of `run`'s end."""
    body = json.dumps(payload(run), sort_keys=True, separators=(",", ":")).encode()
    stamp = int(time.time() if now is None else now)
    return body, {
        "Content-Type": "application/json", "User-Agent": "L1-notify/1",
        TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: sign(secret, stamp, body),
        DELIVERY_HEADER: f"{run['id']}.{int(run.get('attempt') or 1)}",
    }
