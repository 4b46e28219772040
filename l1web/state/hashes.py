"""Typing at the edge of redis-py, for the state classes (which share one decoding client)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from redis.typing import EncodableT, FieldT


def fields(mapping: Mapping[str, EncodableT]) -> Mapping[FieldT, EncodableT]:
    """`mapping`, unchanged, as `hset(mapping=…)` is typed: redis-py's key type there is invariant,
    so a `dict[str, str]` does not match `Mapping[FieldT, EncodableT]` though every `str` is a field."""
    return cast(Mapping[FieldT, EncodableT], mapping)
