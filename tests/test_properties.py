"""Property-based tests (Hypothesis) for the pure code that faces untrusted input first: the
recipe parser, the DAG validator, cache ids, and the hash/id/token/redirect validators.

Every test runs a bounded number of derandomized examples (the same ones on every machine),
so the module stays reproducible in CI and takes a few seconds per test.
"""

from __future__ import annotations

import copy
import datetime
import math
import random
import string
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from l1web.auth.redirects import safe_next
from l1web.auth.tokens import MAX_TOKEN_LENGTH, checked_token, is_username
from l1web.engine.canonical import DIGEST_RE, canonical_json
from l1web.engine.dag import MAX_NODES, NODE_ID_RE, Dag, Node, parse_dag, topological_order, validate
from l1web.engine.errors import DagError
from l1web.engine.node_types import NODE_TYPES
from l1web.engine.plan import cache_id
from l1web.errors import BadRequest, InvalidHash, L1Error
from l1web.recipes.parse import NAME_RE, RecipeError, parse_recipe, recipe_from_data
from l1web.runs.service import OUTPUT_NAME_RE, Submission
from l1web.store import names
from l1web.store.names import check_digest, is_digest, location


def bounded(examples: int):
    """Derandomized (same examples everywhere), no per-example deadline, `examples` of them."""
    return settings(max_examples=examples, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


HEX = "0123456789abcdef"

# Values YAML (and JSON) can carry, hostile ones included --------------------------------------------
scalars = (
    st.none() | st.booleans()
    | st.integers() | st.integers(min_value=10**300, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20) | st.sampled_from(["<script>", "{{7*7}}", "../../etc/passwd", "\x00", "a" * 64 + "\n"])
    | st.binary(max_size=8) | st.dates() | st.datetimes()
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4), max_leaves=12)


def _only_recipe_errors(call, *args) -> object:
    try:
        return call(*args)
    except RecipeError:
        return None


# 1. The recipe parser -----------------------------------------------------------------------------------
YAML_PIECES = [
    "name:", "dag:", "nodes:", "output:", "registry:", "effects:", "assets:", "hash:", "id:", "type:", "config:",
    "inputs:", "- ", "{", "}", "[", "]", ",", ": ", "? ", "&a ", "*a", "<<: *a", "!!python/object/apply:os.system ",
    "!!python/name:os.system", "!!binary ", "!!set ", "!!str ", "!foo ", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n",
    "---\n", "...\n", "|\n", ">\n", "#", "\t", "\n", "  ", "'", '"', "\\", "1e308", ".nan", "-.inf", "9" * 40,
    "0x" + "f" * 20, "2001-12-14", "~", "null", "true", "SOURCE", "EFFECT", "SEQUENCE", "invert", "blur", "sigma",
    "\x00", "\ufeff", "\x85", "\u2028", "é",
]
yaml_like = st.lists(st.sampled_from(YAML_PIECES) | st.text(max_size=3), max_size=60).map("".join)


@bounded(300)
@given(text=st.text(max_size=400) | yaml_like)
def test_parser_raises_only_recipe_errors_on_any_text(text):
    _only_recipe_errors(parse_recipe, text)


@bounded(150)
@given(data=st.binary(max_size=400))
def test_parser_raises_only_recipe_errors_on_any_bytes(data):
    _only_recipe_errors(parse_recipe, data)


@bounded(200)
@given(value=values)
def test_parser_raises_only_recipe_errors_on_any_yaml_structure(value):
    text = yaml.safe_dump(value, allow_unicode=True)
    _only_recipe_errors(parse_recipe, text)
    _only_recipe_errors(recipe_from_data, value)


# Recipe-shaped documents: mostly valid, with one field drawn from anywhere — the validators' deep paths.
CONFIG_KEYS = sorted({key for spec in NODE_TYPES.values() for key in spec.schema}
                     | {"effect", "params", "input", "name", "asset", "hash", "bogus"})
#: A plausible config per node type and input count (so most documents get past the shape checks).
PLAUSIBLE = {
    "SOURCE": {"input": True}, "EFFECT": {"effect": "blur", "params": {"sigma": 2}},
    "RESIZE": {"width": 32, "height": 16}, "SEQUENCE": {}, "BLEND": {"opacity": 0.5},
    "TRANSFORM": {"effects": {"hue": 10}}, "SEGMENT": {"offset": 0, "duration": 1},
}
TYPES_BY_INPUTS = {0: ["SOURCE"], 1: ["EFFECT", "RESIZE", "TRANSFORM", "SEGMENT", "SEQUENCE"], 2: ["BLEND", "SEQUENCE"]}
hostile_values = values | st.sampled_from(["invert", "dog", "a" * 64, {"sigma": math.nan}, {"sigma": 10**400},
                                           {"k": "2"}, [0, 0], "#fff", "red", -1, 0, 1e308])


@st.composite
def recipe_shaped(draw) -> dict:
    count = draw(st.integers(min_value=1, max_value=5))
    ids = [f"n{i}" for i in range(count)]
    nodes = []
    for index, node_id in enumerate(ids):
        arity = 0 if index == 0 else draw(st.integers(min_value=0, max_value=2))
        node_type = draw(st.sampled_from(TYPES_BY_INPUTS[arity]))
        config = copy.deepcopy(PLAUSIBLE[node_type])
        if node_type == "SOURCE":
            config = {"input": True, "name": node_id}
        if draw(st.integers(min_value=0, max_value=2)) == 0:  # one field from anywhere
            config[draw(st.sampled_from(CONFIG_KEYS))] = draw(hostile_values)
        if node_type == "EFFECT" and draw(st.integers(min_value=0, max_value=2)) == 0:
            if isinstance(config["params"], dict):
                config["params"][draw(st.sampled_from(["sigma", "k", "tau", "x"]))] = draw(hostile_values)
        earlier = ids[: index] or ids
        inputs = [draw(st.sampled_from(earlier if draw(st.integers(0, 9)) else ids)) for _ in range(arity)]
        nodes.append({"id": node_id, "type": node_type, "config": config, "inputs": inputs})
    name = draw(st.text(max_size=5)) if draw(st.integers(0, 5)) == 5 else draw(st.sampled_from(["r", "ok-name"]))
    recipe = {"name": name,
              "dag": {"nodes": nodes, "output": ids[-1]}}
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        recipe[draw(st.sampled_from(["registry", "version", "description", "exec"]))] = draw(hostile_values)
    return recipe


@bounded(250)
@given(data=recipe_shaped())
def test_recipe_shaped_documents_raise_only_recipe_errors_and_accepted_ones_round_trip(data):
    recipe = _only_recipe_errors(recipe_from_data, data)
    if recipe is None:
        return
    canonical_json(recipe.to_dict())  # no NaN, infinity or bytes ever reaches an id
    again = recipe_from_data(recipe.to_dict())
    assert again.id == recipe.id  # validation is idempotent: the canonical form is a fixed point
    assert recipe_from_data(yaml.safe_load(yaml.safe_dump(recipe.to_dict()))).id == recipe.id


@bounded(25)
@given(depth=st.integers(min_value=65, max_value=5000), opener=st.sampled_from(["[", "{a: ", "- ", "a:\n"]))
def test_any_nesting_depth_is_a_recipe_error_never_a_crash(depth, opener):
    if opener in ("- ", "a:\n"):  # block style: each level indents one more space
        depth = min(depth, 400)
        text = "".join(" " * i + opener.strip() + "\n" for i in range(depth)) + " " * depth + "x\n"
    else:
        text = opener * depth
    with pytest.raises(RecipeError, match="deeper than|limit|syntax"):
        parse_recipe(text)


# 2. The DAG validator ---------------------------------------------------------------------------------------
@st.composite
def graphs(draw) -> dict:
    """Graphs whose input counts mostly fit their types, with edges anywhere (so cycles happen)."""
    count = draw(st.integers(min_value=1, max_value=10))
    ids = [f"n{i}" for i in range(count)]
    nodes = []
    for node_id in ids:
        arity = draw(st.integers(min_value=0, max_value=2))
        node_type = draw(st.sampled_from(TYPES_BY_INPUTS[arity]))
        config = {"hash": "a" * 64} if node_type == "SOURCE" else copy.deepcopy(PLAUSIBLE[node_type])
        pool = ids if draw(st.integers(0, 19)) else [*ids, "ghost"]
        inputs = [draw(st.sampled_from(pool)) for _ in range(arity)]
        nodes.append({"id": node_id, "type": node_type, "config": config, "inputs": inputs})
    return {"nodes": nodes, "output": draw(st.sampled_from(ids))}


def _reaches_a_cycle(data: dict) -> bool:
    inputs = {n["id"]: [i for i in n["inputs"] if i != "ghost"] for n in data["nodes"]}
    on_path: set[str] = set()
    done: set[str] = set()

    def visit(node: str) -> bool:
        if node in on_path:
            return True
        if node in done:
            return False
        on_path.add(node)
        found = any(visit(child) for child in inputs[node])
        on_path.discard(node)
        done.add(node)
        return found

    return visit(data["output"])


@bounded(250)
@given(data=graphs())
def test_validator_orders_acyclic_graphs_and_names_cycles(data):
    try:
        dag = validate(parse_dag(data))
    except DagError as exc:
        if _reaches_a_cycle(data) and "cycle" not in str(exc):
            # Another problem was found first (bad input count, dangling input): also a refusal.
            assert any(word in str(exc) for word in ("inputs", "not a node"))
        return
    assert not _reaches_a_cycle(data)
    order = topological_order(dag)
    assert order[-1] == dag.output and len(order) == len(set(order))
    position = {node_id: i for i, node_id in enumerate(order)}
    for node_id in order:
        assert all(position[i] < position[node_id] for i in dag.nodes[node_id].inputs)


@bounded(200)
@given(data=values | st.fixed_dictionaries({"nodes": values, "output": values}))
def test_validator_raises_only_dag_errors_on_any_structure(data):
    try:
        validate(parse_dag(data))
    except DagError:
        pass


def test_validator_refuses_more_than_max_nodes():
    nodes = [{"id": f"n{i}", "type": "SOURCE", "config": {"hash": "a" * 64}} for i in range(MAX_NODES + 1)]
    with pytest.raises(DagError, match="too many nodes"):
        parse_dag({"nodes": nodes, "output": "n0"})


@bounded(100)
@given(length=st.integers(min_value=2, max_value=MAX_NODES))
def test_a_long_chain_validates_without_recursion(length):
    nodes = {"n0": Node("n0", "SOURCE", {"hash": "a" * 64})}
    for i in range(1, length):
        nodes[f"n{i}"] = Node(f"n{i}", "EFFECT", {"effect": "invert"}, (f"n{i - 1}",))
    order = topological_order(validate(Dag(nodes, f"n{length - 1}")))
    assert order == [f"n{i}" for i in range(length)]


# 3. Cache ids ---------------------------------------------------------------------------------------------
json_leaves = (st.none() | st.booleans() | st.integers(min_value=-(2**53), max_value=2**53)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
json_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=6)
configs = st.dictionaries(st.text(max_size=6), json_values, min_size=1, max_size=5)
input_ids = st.lists(st.text(alphabet=HEX, min_size=64, max_size=64), max_size=3)


def _shuffled(value: object, rng: random.Random) -> object:
    """The same value with every mapping's keys in another order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: _shuffled(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [_shuffled(item, rng) for item in value]
    return value


@bounded(100)
@given(config=configs, inputs=input_ids, seed=st.integers(min_value=0, max_value=2**32))
def test_cache_id_is_stable_under_key_order(config, inputs, seed):
    assert cache_id("T", _shuffled(config, random.Random(seed)), inputs, "T/1") == cache_id("T", config, inputs, "T/1")


def _leaves(value: object, path: tuple = ()) -> list[tuple]:
    """Paths to every scalar (and every empty container) inside a value."""
    if isinstance(value, dict | list) and not value:
        return [path]
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in _leaves(item, (*path, key))]
    if isinstance(value, list):
        return [leaf for i, item in enumerate(value) for leaf in _leaves(item, (*path, i))]
    return [path]


def _with(value: object, path: tuple, new: object) -> object:
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict):
        return {**value, head: _with(value[head], tuple(rest), new)}
    copy = list(value)  # type: ignore[arg-type]
    copy[head] = _with(copy[head], tuple(rest), new)
    return copy


def _get(value: object, path: tuple) -> object:
    for step in path:
        value = value[step]  # type: ignore[index]
    return value


@bounded(150)
@given(config=configs, inputs=input_ids, data=st.data())
def test_cache_id_changes_with_any_parameter_change(config, inputs, data):
    path = data.draw(st.sampled_from(_leaves(config)))
    old = _get(config, path)
    new = data.draw(json_leaves)
    # Values canonical JSON spells alike are the same parameter (1 == 1.0 == true is not: JSON differs).
    assume(canonical_json(new) != canonical_json(old))
    assert cache_id("T", _with(config, path, new), inputs, "T/1") != cache_id("T", config, inputs, "T/1")


@bounded(100)
@given(sigma=st.floats(min_value=0.1, max_value=64.0), other=st.floats(min_value=0.1, max_value=64.0))
def test_effect_step_ids_follow_their_params(sigma, other):
    from l1web.engine import plan

    def step_id(value: float) -> str:
        dag = parse_dag({"nodes": [{"id": "a", "type": "SOURCE", "config": {"hash": "a" * 64}},
                                   {"id": "e", "type": "EFFECT", "config": {"effect": "blur",
                                                                            "params": {"sigma": value}},
                                    "inputs": ["a"]}], "output": "e"})
        steps = plan(dag, {"a" * 64: {"media": {"kind": "image"}}})["steps"]
        return next(s["cache_id"] for s in steps if s["step_id"] == "e")

    assert (step_id(sigma) == step_id(other)) == (float(sigma) == float(other))
    if sigma == int(sigma):
        assert step_id(int(sigma)) == step_id(sigma)  # 2 and 2.0 spell one parameter


# 4. Hash, id, name, token and redirect validators --------------------------------------------------------
def _is_reference_digest(value: str) -> bool:
    return len(value) == 64 and all(ch in HEX for ch in value)


near_digests = st.builds(
    lambda base, edit: edit(base),
    st.text(alphabet=HEX, min_size=64, max_size=64),
    st.sampled_from([
        lambda s: s, lambda s: s + "\n", lambda s: s[:63], lambda s: s + "a", lambda s: s.upper(),
        lambda s: "\n" + s, lambda s: s[:32] + "\x00" + s[33:], lambda s: s[:10] + "٣" + s[11:],
        lambda s: s[:63] + "/", lambda s: "../" + s[3:], lambda s: s.replace("a", "*"), lambda s: s + "\r\n",
    ]),
)


@bounded(400)
@given(value=near_digests | st.text(max_size=70))
def test_every_digest_validator_agrees_with_the_definition(value):
    expected = _is_reference_digest(value)
    assert is_digest(value) is expected
    for pattern in (DIGEST_RE, names.DIGEST):  # one definition (engine/canonical.py), the store's name for it
        assert (pattern.fullmatch(value) is not None) is expected
        assert (pattern.match(value) is not None) is expected  # safe for callers that use .match
    if expected:
        assert check_digest(value) == value
        root = Path("/cache-root")
        assert location(root, value).parent.parent == root
    else:
        with pytest.raises(InvalidHash) as caught:
            check_digest(value)
        assert caught.value.message.isprintable()  # control characters are shown escaped
        with pytest.raises(InvalidHash):
            location(Path("/cache-root"), value)


NAME_CHARS = string.ascii_letters + string.digits + "_.-"


@bounded(300)
@given(value=st.text(alphabet=NAME_CHARS + "\n\x00 /<>{}é٣", max_size=66))
def test_node_ids_and_names_are_short_plain_ascii(value):
    ascii_word = 1 <= len(value) <= 64 and all(ch in NAME_CHARS for ch in value)
    assert (NODE_ID_RE.match(value) is not None) is (ascii_word and value[0] not in ".-")
    assert (NAME_RE.match(value) is not None) is (ascii_word and value[0] not in "._-")
    assert is_username(value) is (ascii_word and value[0] not in "._-")


@bounded(200)
@given(value=st.text(max_size=130) | st.sampled_from(["out\n", "a\r\nb", "<b>", "{{7*7}}", "x" * 129]))
def test_output_names_never_carry_markup_or_line_breaks(value):
    if OUTPUT_NAME_RE.match(value):
        assert 1 <= len(value) <= 128
        assert not set(value) & set("<>{}%\"'\r\n\x00/\\")


@bounded(150)
@given(token=st.text(max_size=80) | st.text(alphabet=string.ascii_letters + "._~+/=-", min_size=2040, max_size=2060))
def test_token_check_accepts_only_short_url_safe_text(token):
    plain = 1 <= len(token) <= MAX_TOKEN_LENGTH and all(
        ch in string.ascii_letters + string.digits + "._~+/=-" for ch in token)
    try:
        assert checked_token(token) == token and plain
    except BadRequest:
        assert not plain


redirect_pieces = st.lists(st.sampled_from(
    ["/", "//", "\\", "%2F", "%5C", "%09", "\t", "\n", "http:", "https://evil.example", "javascript:", "evil.example",
     "runs", "?next=", "#", "@", ":", ".", "..", "%2e", "%00", " ", "data:"]), max_size=8).map("".join)


@bounded(400)
@given(target=redirect_pieces | st.text(max_size=40))
def test_safe_next_only_ever_returns_a_local_path(target):
    result = safe_next(target)
    assert result in ("/", target)
    for form in (result, unquote(result)):
        parts = urlsplit(form)
        assert form.startswith("/") and not form.startswith("//") and "\\" not in form
        assert not parts.scheme and not parts.netloc
        assert all(ord(ch) >= 0x20 and ord(ch) != 0x7F for ch in form)


#: What a JSON body can hold: string keys only, numbers of any size, NaN and infinities (Python's
#: json module reads `NaN` and `Infinity`).
json_bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@bounded(200)
@given(body=json_bodies | st.dictionaries(st.sampled_from(["recipe", "inputs", "output_name", "params", "force",
                                                           "x"]), json_bodies, max_size=5))
def test_run_submissions_raise_only_bad_request(body):
    try:
        submission = Submission.from_json(body)
    except L1Error as exc:
        assert exc.status == 400
        return
    assert isinstance(submission.recipe, str) and isinstance(submission.force, bool)
    assert submission.output_name is None or OUTPUT_NAME_RE.fullmatch(submission.output_name)


def test_dates_in_yaml_are_refused_where_text_is_expected():
    text = "name: x\nversion: 2001-12-14\ndag: {nodes: [{id: a, type: SOURCE, config: {input: true}}], output: a}\n"
    with pytest.raises(RecipeError, match="'version' must be a string"):
        parse_recipe(text)
    assert isinstance(yaml.safe_load("d: 2001-12-14")["d"], datetime.date)
