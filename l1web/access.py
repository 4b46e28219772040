"""Who may see and use what: the one ownership rule, as pure functions over plain facts.

A content hash is a name, not a key: knowing one gives no right to it. A user may see (and so
use as a run input) an item that is
- their own upload or import, or an output of one of their own runs (their owner index holds it),
- a named asset (the samples, or assets an admin registers) or an ownerless system item,
- published to L2 (and so public), or
- shared on purpose by its owner with every signed-in user.
Admins may see everything. Runs and recipes follow the same shape: their owners, admins, and
(for recipes) everyone once shared. A refusal is the very answer an unknown id
gets, so it tells nothing.

A quarantined item (its bytes stopped matching its name) has no bytes to give, but its quarantine
record keeps who could see it: they (`told_quarantined`) get the 410 with its reason, everyone
else the same answer as for an unknown hash, and nobody may use it as an input.

No Flask and no Redis here: `state/cache.py` gathers an `Item`, the predicates decide, and the
checks at the end (`visible_item`, `managed_item`, `usable`, `require_input`, `lacking`,
`listing_owner`) are what every path that turns a hash or name into bytes asks, beside the run
rule (`owns`, which `RunService.get` asks). Routes only call them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from l1web.errors import CorruptItem, Forbidden, NotFound

if TYPE_CHECKING:
    from l1web.state.cache import ItemMeta


class Person(Protocol):
    """Anything with a user's name and admin flag (`l1web.users.User`)."""

    @property
    def name(self) -> str: ...
    @property
    def is_admin(self) -> bool: ...


@dataclass(frozen=True)
class Item:
    """What decides access to one content hash; `exists` False for an unknown hash and for a
    quarantined one, whose `quarantined` reason and other facts come from its quarantine record."""

    exists: bool
    owner: str | None = None  # first uploader; None for system items (samples)
    holders: frozenset[str] = frozenset()  # users whose own index holds it (uploads, own outputs)
    asset: bool = False
    published: bool = False
    shared: bool = False
    quarantined: str | None = None  # why its bytes were quarantined; None when they were not

    @property
    def public(self) -> bool:
        """Visible to every signed-in user."""
        return self.owner is None or self.asset or self.published or self.shared


def _may_know(user: Person, item: Item) -> bool:
    return user.is_admin or item.public or user.name in item.holders


def can_see(user: Person | None, item: Item) -> bool:
    """True when `user` may see the item (its page, bytes and metadata)."""
    return item.exists and user is not None and _may_know(user, item)


def told_quarantined(user: Person | None, item: Item) -> bool:
    """True when the item is quarantined and `user` could see it before: they are told why (410);
    anyone else is answered as for an unknown hash."""
    return item.quarantined is not None and user is not None and _may_know(user, item)


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


# The checks: facts from the index, the rule above, one answer --------------------------------
class Index(Protocol):
    """What the checks read from the content index (`l1web.state.cache.CacheIndex`)."""

    def access_item(self, digest: str, asker: str | None) -> Item: ...

    def access_items(self, digests: list[str], asker: str) -> list[Item]: ...


class Store(Protocol):
    """What the checks read from the content store (`l1web.store.ContentStore`)."""

    @property
    def index(self) -> Index: ...

    def check_name(self, digest: str) -> str: ...

    def meta(self, digest: str) -> ItemMeta: ...


def _name(user: Person | None) -> str | None:
    return user.name if user else None


def visible_item(store: Store, digest: str, user: Person | None) -> ItemMeta:
    """The item's metadata if `user` may see it (`can_see`): its page, metadata and bytes.
    A malformed hash is a 400; a quarantined item is a 410 with its reason for those who could
    see it (`told_quarantined`); anything else refused is the same 404 as an unknown hash.

    The rule answers before the store is asked: the store refuses a quarantined item to anyone."""
    store.check_name(digest)
    item = store.index.access_item(digest, _name(user))
    if told_quarantined(user, item):
        raise CorruptItem(f"item {digest} is quarantined: {item.quarantined}")
    if not can_see(user, item):
        raise NotFound(f"no cached item {digest}")
    return store.meta(digest)


def managed_item(store: Store, digest: str, user: Person | None) -> ItemMeta:
    """Like `visible_item`, for changes (delete, share): one's own items only (admins: any).
    Another user's shared item is visible, so it answers 403 here rather than 404."""
    meta = visible_item(store, digest, user)
    if not manageable(store.index, digest, user):
        raise Forbidden("only the item's owner can change it")
    return meta


def manageable(index: Index, digest: str, user: Person | None) -> bool:
    """True when `user` may delete or (un)share `digest` (`can_manage`)."""
    return can_manage(user, index.access_item(digest, _name(user)))


def usable(index: Index, digest: str, user: Person) -> bool:
    """True when `user` may use `digest` as a run input (`can_use`)."""
    return can_use(user, index.access_item(digest, user.name))


def require_input(index: Index, digest: str, user: Person, label: str, *, known: Item | None = None,
                  **details: object) -> None:
    """Nothing when `user` may use `digest` as a run input (`can_use`). Otherwise a 410 naming
    the quarantine reason if they could see it before (`told_quarantined`), else the 404
    "`label` … is not in the cache" that an unknown hash gets (`details` go with either).
    `known`: the item's facts, already read for `user` (with other reads, in one round trip)."""
    item = known if known is not None else index.access_item(digest, user.name)
    if can_use(user, item):
        return
    if told_quarantined(user, item):
        raise CorruptItem(f"{label} {digest} is quarantined: {item.quarantined}; upload the right bytes again",
                          **details)
    raise NotFound(f"{label} {digest[:12]}… is not in the cache; upload it first", **details)


def lacking(index: Index, digests: Sequence[str], user: Person | None) -> list[str]:
    """Those of `digests` that `user` may not use (unknown or another's private), in one round trip."""
    unique = list(dict.fromkeys(digests))
    items = index.access_items(unique, _name(user) or "")
    return [d for d, item in zip(unique, items, strict=True) if not can_use(user, item)]


def listing_owner(user: Person | None, asked: str | None) -> str | None:
    """Whose records a listing shows: the `asked` owner (None: everyone's) for admins, one's own
    for everyone else."""
    if user is None or user.is_admin:
        return asked or None
    return user.name
