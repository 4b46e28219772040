"""Fixed-window rate limits in Redis: `rate_limit(bucket, limit, window)` for any route.

A fixed window lets a burst of up to twice `limit` through at a window edge; that is fine for
stopping floods and guessing, and costs one round trip.
"""

from __future__ import annotations

from flask import g, request

from l1web.errors import TooManyRequests
from l1web.web import current

#: Seconds in the run-submission window (the limit is `RUN_RATE_LIMIT` per window).
RUN_WINDOW = 60


def rate_limit(bucket: str, limit: int, window: int) -> None:
    """Count one request against `bucket`; 429 (with `retry_after`) once `limit` is exceeded."""
    if current.state().tokens.count_hit(bucket, window) > limit:
        raise TooManyRequests("Too many requests; wait a moment and try again.", retry_after=window)


def rate_limit_user_and_address(name: str, limit: int, window: int) -> None:
    """Apply one limit per signed-in user and another per client address."""
    user = g.get("user")
    if user is not None:
        rate_limit(f"{name}:user:{user.name}", limit, window)
    rate_limit(f"{name}:addr:{request.remote_addr}", limit, window)


def limit_run_submission() -> None:
    """Call before enqueueing a run: `RUN_RATE_LIMIT` per user and per address per minute."""
    rate_limit_user_and_address("runs", current.settings().run_rate_limit, RUN_WINDOW)
