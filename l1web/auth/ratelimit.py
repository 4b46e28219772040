"""Rate limits in Redis: fixed windows for sign-in (`rate_limit`), a token bucket for runs.

A fixed window lets a burst of up to twice `limit` through at a window edge; that is fine for
stopping floods and guessing, and costs one round trip. Run submission uses a token bucket
instead: a batch script's burst (`RUN_RATE_BURST`, 200 by default) passes at once, after which
submissions pass at the refill rate (`RUN_RATE_LIMIT` per minute), and a refused one is told
exactly when a token is back (`Retry-After`).
"""

from __future__ import annotations

import math

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


def limit_run_submission(count: int = 1) -> None:
    """Call before enqueueing a run (`count` runs: a batch, all or none): one token a run from
    the user's bucket and the address's bucket.

    Each holds `RUN_RATE_BURST` tokens and gains `RUN_RATE_LIMIT` a minute; a refusal (429)
    takes no token and says how many seconds until one is back.
    """
    settings = current.settings()
    user = g.get("user")
    buckets = [f"runs:addr:{request.remote_addr}"]
    if user is not None:
        buckets.insert(0, f"runs:user:{user.name}")
    wait = current.state().tokens.take_tokens(buckets, settings.run_rate_burst, settings.run_rate_limit, count)
    if wait:
        retry = RUN_WINDOW if math.isinf(wait) else max(1, math.ceil(wait))
        raise TooManyRequests(f"Too many requests: run submissions are limited; try again in {retry} s.",
                              retry_after=retry)
