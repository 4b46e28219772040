"""Deletion: refused while a run, an asset or L2 needs the item, and atomic against add_ref."""

from __future__ import annotations

import threading

import pytest

from l1web.errors import Conflict, NotFound


def test_an_unreferenced_item_is_deleted_with_its_file(store, state):
    digest = store.put_bytes(b"intermediate", source="test").digest
    store.delete(digest)
    assert not store.location(digest).exists()
    assert not store.has(digest) and state.cache.count() == 0
    with pytest.raises(NotFound):
        store.delete(digest)


def test_deleting_an_item_referenced_by_runs_is_a_conflict_naming_them(store, state):
    digest = store.put_bytes(b"run input", source="test").digest
    state.cache.add_ref(digest, "run:r1")
    state.cache.add_ref(digest, "run:r2")
    with pytest.raises(Conflict) as caught:
        store.delete(digest)
    assert "run:r1" in caught.value.message and "run:r2" in caught.value.message
    assert caught.value.details["runs"] == ["r1", "r2"]
    assert store.path_for(digest).read_bytes() == b"run input"


def test_an_item_is_deletable_once_its_last_reference_is_removed(store, state):
    digest = store.put_bytes(b"run input", source="test").digest
    state.cache.add_ref(digest, "run:r1")
    state.cache.remove_ref(digest, "run:r1")
    store.delete(digest)
    assert not store.has(digest)


def test_a_published_item_cannot_be_deleted(store, state):
    digest = store.put_bytes(b"published output", source="test").digest
    state.cache.mark_published(digest)
    with pytest.raises(Conflict, match="published"):
        store.delete(digest)
    assert store.has(digest)


def test_a_named_asset_cannot_be_deleted_until_renamed(store, state):
    first = store.put_bytes(b"cat v1", source="test").digest
    second = store.put_bytes(b"cat v2", source="test").digest
    state.cache.set_asset("cat", first)
    with pytest.raises(Conflict, match="asset:cat"):
        store.delete(first)
    state.cache.set_asset("cat", second)
    store.delete(first)
    assert state.cache.asset("cat") == second


def test_add_ref_to_a_deleted_item_fails(store, state):
    digest = store.put_bytes(b"gone soon", source="test").digest
    store.delete(digest)
    with pytest.raises(NotFound):
        state.cache.add_ref(digest, "run:late")


def test_concurrent_add_ref_and_delete_never_lose_a_referenced_input(store, state):
    """Race a run taking a reference against a delete, many times: either the run holds a
    reference to an item that still exists, or it was told the item is gone."""
    for round_number in range(150):
        digest = store.put_bytes(f"race {round_number}".encode(), source="test").digest
        outcome: dict[str, object] = {}
        barrier = threading.Barrier(2)

        def take_ref(digest=digest, outcome=outcome, barrier=barrier):
            barrier.wait()
            try:
                state.cache.add_ref(digest, "run:racer")
                outcome["ref"] = True
            except NotFound:
                outcome["ref"] = False

        def delete(digest=digest, outcome=outcome, barrier=barrier):
            barrier.wait()
            try:
                store.delete(digest)
                outcome["deleted"] = True
            except Conflict:
                outcome["deleted"] = False

        threads = [threading.Thread(target=take_ref), threading.Thread(target=delete)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcome["ref"] != outcome["deleted"], outcome
        if outcome["ref"]:
            assert store.path_for(digest).is_file()
            assert "run:racer" in state.cache.refs(digest)
