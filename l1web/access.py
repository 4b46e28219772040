"""Who may see and use what: the one ownership rule, as pure functions over plain facts.

A content hash is a name, not a key: knowing one gives no right to it. A user may see (and so
use as a run input) an item that is
- their own upload or import, or an output of one of their own runs (their owner index holds it),
- a named asset (the samples, or assets an admin registers) or an ownerless system item,
- published to L2 (and so public), or
- shared on purpose by its owner with every signed-in user.
Admins may see everything. Runs and recipes follow the same shape: their owners, admins, and
(for recipes) everyone once shared. Callers turn a refusal into the very answer an unknown id
gets, so a refusal tells nothing.

No Flask and no Redis here: `state/cache.py` gathers an `Item`, this module decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


class Person(Protocol):
    """Anything with a user's name and admin flag (`l1web.users.User`)."""

    @property
    def name(self) -> str: ...
    @property
    def is_admin(self) -> bool: ...


@dataclass(frozen=True)
class Item:
    """What decides access to one content hash; `exists` False for an unknown hash."""

    exists: bool
    owner: str | None = None  # first uploader; None for system items (samples)
    holders: frozenset[str] = frozenset()  # users whose own index holds it (uploads, own outputs)
    asset: bool = False
    published: bool = False
    shared: bool = False

    @property
    def public(self) -> bool:
        """Visible to every signed-in user."""
        return self.owner is None or self.asset or self.published or self.shared


def can_see(user: Person | None, item: Item) -> bool:
    """True when `user` may see the item (its page, bytes and metadata)."""
    if not item.exists or user is None:
        return False
    return user.is_admin or item.public or user.name in item.holders


def can_use(user: Person | None, item: Item) -> bool:
    """True when `user` may use the item as a run input: exactly what they may see."""
    return can_see(user, item)


def can_manage(user: Person | None, item: Item) -> bool:
    """True when `user` may delete or (un)share the item: one of its holders, or an admin."""
    return item.exists and user is not None and (user.is_admin or user.name in item.holders)


def owns(user: Person | None, owners: Iterable[str]) -> bool:
    """True when `user` is one of a record's owners, or an admin (runs, recipes)."""
    return user is not None and (user.is_admin or user.name in set(owners))


def can_see_recipe(user: Person | None, owners: Iterable[str], *, shared: bool) -> bool:
    return user is not None and (shared or owns(user, owners))
