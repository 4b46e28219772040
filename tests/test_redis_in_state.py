"""Redis is reached only through the state manager: no module outside `l1web/state/` reads a
client off an object (`….redis`) or imports the Redis key-name builders (`l1web.state.keys`).
RQ's own connection (`Clients.rq_connection`) is RQ's business and not checked here."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "l1web"
STATE = PACKAGE / "state"


def reaches_around_state(path: Path) -> list[str]:
    """`file:line: what` for each place `path` takes a Redis client off an object or imports key names."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr == "redis":
            found.append(f"{path.name}:{node.lineno}: .redis")
        if isinstance(node, ast.ImportFrom):
            names = {alias.name for alias in node.names}
            builders = {n for n in names if not n.isupper()}  # constants such as CLAIM_TTL name no key
            if (node.module == "l1web.state" and "keys" in names) or (node.module == "l1web.state.keys" and builders):
                found.append(f"{path.name}:{node.lineno}: imports key names")
    return found


def test_no_module_outside_state_touches_a_redis_client():
    outside = [p for p in sorted(PACKAGE.rglob("*.py")) if STATE not in p.parents]
    assert len(outside) > 50
    assert [hit for path in outside for hit in reaches_around_state(path)] == []


def test_the_scan_sees_a_client_taken_around_the_state_manager(tmp_path):
    # The check above is only meaningful if it recognises what it forbids.
    probe = tmp_path / "probe.py"
    probe.write_text("from l1web.state import keys\n\n\ndef f(state):\n    return state.redis.get(keys.run('x'))\n")
    assert reaches_around_state(probe) == ["probe.py:1: imports key names", "probe.py:5: .redis"]


def key_fragments_in_lua(path: Path) -> list[str]:
    """`file:line: 'literal'` for each quoted Lua string in `path`'s scripts that looks like part of
    a key name (a word then a colon): scripts get their key names from `keys.py` through KEYS/ARGV."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "redis.call" in node.value:
            for literal in re.findall(r"'([^']*)'|\"([^\"]*)\"", node.value):
                text = "".join(literal)
                if re.search(r"\w:|artdag", text):  # 'runs:status:' is a key part; ':' alone joins a token
                    found.append(f"{path.name}:{node.lineno}: {text!r}")
    return found


#: Scripts not converted yet, each with why (none left: fair.py now fills templates from keys.py).
NOT_YET: set[str] = set()


def test_lua_scripts_build_no_key_names():
    scripts = [p for p in sorted(STATE.glob("*.py")) if "redis.call" in p.read_text()]
    assert len(scripts) >= 5
    assert [hit for p in scripts if p.name not in NOT_YET for hit in key_fragments_in_lua(p)] == []
    assert all(key_fragments_in_lua(STATE / name) for name in NOT_YET)  # drop a name from NOT_YET once clean


def test_the_lua_scan_sees_a_key_built_in_a_script(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("S = \"\"\"\nredis.call('ZREM', ARGV[1] .. 'runs:status:' .. s, KEYS[1])\n\"\"\"\n")
    assert key_fragments_in_lua(probe) == ["probe.py:1: 'runs:status:'"]
