"""The exact shapes of L1's Redis keys: other nodes and operators' scripts read them."""

from l1web.state import keys

D = "a" * 64


def test_seed_key_names_are_kept():
    assert keys.run("r1") == "artdag:run:r1"
    assert keys.user_tokens("alice") == "artdag:user_tokens:alice"
    assert keys.claim(D) == f"artdag:claim:{D}"


def test_cache_keys():
    assert keys.cache_item(D) == f"artdag:cache:item:{D}"
    assert keys.cache_index() == "artdag:cache:index"
    assert keys.cache_refs(D) == f"artdag:cache:refs:{D}"
    assert keys.assets() == "artdag:assets"


def test_operations_keys():
    assert keys.step_metrics() == "artdag:metrics:steps"
    assert keys.session_token(D) == f"artdag:session_token:{D}"


def test_every_key_has_the_artdag_prefix():
    builders = [getattr(keys, n) for n in dir(keys) if callable(getattr(keys, n)) and not n.startswith("_")]
    for build in builders:
        argc = build.__code__.co_argcount
        assert build(*["x"] * argc).startswith("artdag:"), build.__name__


def test_revoked_tokens_are_kept_thirty_days():
    assert keys.REVOKED_TTL == 30 * 24 * 3600


def test_ipfs_and_ipns_keys():
    assert keys.ipfs_cids() == "artdag:ipfs:cids"
    assert keys.ipfs_results() == "artdag:ipfs:results"
    assert keys.ipfs_runs() == "artdag:ipfs:runs"
    assert keys.ipfs_pending() == "artdag:ipfs:pending"
    assert keys.ipns_status() == "artdag:ipns:status"
    assert keys.ipns_peer("12D3KooWx") == "artdag:ipns:peer:12D3KooWx"
    assert keys.ipns_remote_results() == "artdag:ipns:remote:results"
    assert keys.ipns_remote_cids() == "artdag:ipns:remote:cids"
