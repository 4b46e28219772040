"""CacheIndex: listings newest first with stable cursors, owners, assets, counters."""

from __future__ import annotations

import pytest

from l1web.errors import BadRequest, NotFound
from l1web.state import keys
from l1web.state.cache import ItemMeta


def record(index, n: int, *, owner: str | None = None, created: float | None = None) -> str:
    digest = f"{n:064x}"
    index.record(ItemMeta(digest=digest, size=n + 1, created=created if created is not None else 1000.0 + n,
                          source="test", owner=owner), verified="sig")
    return digest


def test_listing_is_newest_first_and_cursors_visit_every_item_once(state):
    index = state.cache
    digests = [record(index, n) for n in range(7)]
    seen, cursor = [], None
    while True:
        page = index.list(limit=3, cursor=cursor)
        seen += [m.digest for m in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(digests))
    assert page.total == 7


def test_cursors_step_over_items_created_in_the_same_instant(state):
    index = state.cache
    digests = {record(index, n, created=5000.0) for n in range(5)}
    first = index.list(limit=2)
    second = index.list(limit=2, cursor=first.next_cursor)
    third = index.list(limit=2, cursor=second.next_cursor)
    listed = [m.digest for page in (first, second, third) for m in page.items]
    assert sorted(listed) == sorted(digests) and len(listed) == 5
    assert third.next_cursor is None


def test_a_new_item_does_not_shift_the_next_page(state):
    index = state.cache
    for n in range(4):
        record(index, n)
    first = index.list(limit=2)
    record(index, 99)
    second = index.list(limit=2, cursor=first.next_cursor)
    assert [m.digest for m in second.items] == [f"{1:064x}", f"{0:064x}"]


def test_offsets_give_numbered_pages(state):
    index = state.cache
    digests = [record(index, n) for n in range(5)]
    assert [m.digest for m in index.list(limit=2, offset=4).items] == [digests[0]]


def test_a_malformed_cursor_is_a_bad_request(state):
    with pytest.raises(BadRequest):
        state.cache.list(limit=2, cursor="not-a-cursor")


def test_owner_listing_only_shows_that_owners_items(state):
    index = state.cache
    mine = record(index, 1, owner="alice")
    record(index, 2, owner="bob")
    assert [m.digest for m in index.list(limit=10, owner="alice").items] == [mine]


def test_counters_follow_records_and_deletes(state):
    index = state.cache
    digest = record(index, 9)
    record(index, 9)
    assert index.stats() == {"items_stored": 1, "bytes_stored": 10, "dedup_hits": 1}
    assert index.delete_unless_referenced(digest).deleted
    assert index.stats()["items_stored"] == 0 and index.stats()["bytes_stored"] == 0


def test_assets_need_an_existing_item_and_a_clean_name(state):
    index = state.cache
    digest = record(index, 3)
    with pytest.raises(NotFound):
        index.set_asset("ghost", f"{4:064x}")
    with pytest.raises(BadRequest):
        index.set_asset("../evil", digest)
    index.set_asset("cat", digest)
    assert index.assets() == {"cat": digest}
    assert index.refs(digest) == {"asset:cat"}


def test_index_keys_are_the_ones_keys_py_builds(state, redis_client):
    digest = record(state.cache, 5, owner="alice")
    assert redis_client.exists(keys.cache_item(digest))
    assert redis_client.zscore(keys.cache_index(), digest) == 1005.0
    assert redis_client.zscore(keys.cache_owner_index("alice"), digest) == 1005.0
    assert all(key.startswith("artdag:") for key in redis_client.keys("*"))


def test_batched_access_facts_equal_the_single_item_ones(state):
    """`access_items` (one script for /cache/missing) answers what `access_item` answers for each
    hash: own, another user's private, shared, published, asset, ownerless, quarantined, unknown,
    deleted, and a hash asked twice."""
    index = state.cache
    own, private, shared, published, asset, ownerless, quarantined, deleted = (
        record(index, 1, owner="alice"), record(index, 2, owner="bob"), record(index, 3, owner="bob"),
        record(index, 4, owner="bob"), record(index, 5, owner="bob"), record(index, 6),
        record(index, 7, owner="bob"), record(index, 8, owner="bob"))
    index.set_shared(shared, True)
    index.mark_published(published)
    index.set_asset("cat", asset)
    index.quarantine(quarantined, "bytes changed")
    assert index.delete_unless_referenced(deleted).deleted
    unknown = "f" * 64
    asked = [own, private, shared, published, asset, ownerless, quarantined, unknown, deleted, own]
    for asker in ("alice", "bob", ""):
        batched = index.access_items(asked, asker)
        assert batched == [index.access_item(d, asker or None) for d in asked]
    facts = dict(zip(asked, index.access_items(asked, "alice"), strict=True))
    assert facts[own].holders == {"alice"} and facts[own].owner == "alice"
    assert not facts[private].public and facts[private].exists and not facts[private].holders
    assert facts[shared].shared and facts[published].published and facts[asset].asset
    assert facts[ownerless].owner is None and facts[ownerless].public
    assert not facts[quarantined].exists and not facts[unknown].exists and not facts[deleted].exists
    assert index.access_items([], "alice") == []
