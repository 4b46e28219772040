"""Who is signed in: the domain's user, as L2 vouched for them (no web framework here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class User:
    """A signed-in user, as L2 vouched for them."""

    name: str
    is_admin: bool = False
