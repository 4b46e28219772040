"""Hostile input against every route: each case is refused with its status and a message that
names the problem, and changes nothing — no Redis key written or removed (the test scans the
whole test database, RQ's keys included, so no job can be enqueued unseen), no file left in the
cache directory, no call to L2 where none is due.

Cases are rows in tables; `test_every_route_has_hostile_cases` fails when a route appears that no
row reaches and that is not listed in `NO_INPUT` with a reason.
"""

from __future__ import annotations

import hashlib
import html
import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import pytest
import redis
from PIL import Image
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from devl2.testing import LiveL2, SignedInClient
from l1web.recipes.parse import MAX_RECIPE_BYTES
from l1web.settings import Settings
from l1web.store.remote import WORKER_TOKEN_HEADER

#: Upload limit of the app under test: small, so oversized bodies cost nothing to build.
MAX_UPLOAD = 256 * 1024
JSON = {"Accept": "application/json"}
YAML = {**JSON, "Content-Type": "application/x-yaml"}
#: The shared secret of workers on other hosts, and the header that carries it.
WORKER_TOKEN = "worker-secret-for-tests"
WORKER = {WORKER_TOKEN_HEADER: WORKER_TOKEN}
#: Key prefixes of the fixed-window rate counters: counting a refused sign-in attempt is due.
RATE_KEYS = ("artdag:rate:",)
#: Markup and template syntax that must come back escaped, never live.
PAYLOAD = '<script>alert(1)</script>{{7*7}}{% raw %}"\'><img src=x onerror=alert(2)>'

RECIPE = """\
name: invert-it
version: "1.0"
description: Invert the colours of one image
dag:
  nodes:
    - {id: user_image, type: SOURCE, config: {input: true, name: input_image}}
    - {id: flip, type: EFFECT, config: {effect: invert}, inputs: [user_image]}
  output: flip
"""
BLUR = RECIPE.replace("{effect: invert}", "{effect: blur, params: {sigma: SIGMA}}")
RESIZE = RECIPE.replace("{id: flip, type: EFFECT, config: {effect: invert}",
                        "{id: flip, type: RESIZE, config: {width: WIDTH, height: 16}")


@pytest.fixture()
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The shared settings with a small upload limit and one import root."""
    (tmp_path / "imports").mkdir()
    return settings.with_changes(max_upload_bytes=MAX_UPLOAD, import_roots=(tmp_path / "imports",),
                                 worker_token=WORKER_TOKEN)


# Test media ----------------------------------------------------------------------------------------
def png_bytes(size: tuple[int, int] = (16, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG whose header claims width×height pixels: a pixel bomb's header, a few bytes long."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def zero_png(side: int) -> bytes:
    """A real side×side greyscale PNG of zeros: megabytes of pixels in a few kilobytes (zip-bomb-like)."""
    row = b"\x00" * (side + 1)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return png_declaring(side, side, body)


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "HOSTILE", close: bool = True) -> bytes:
    """A multipart/form-data body from (field, filename, bytes) parts."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + (f"--{boundary}--\r\n".encode() if close else b"")


MULTIPART = {**JSON, "Content-Type": "multipart/form-data; boundary=HOSTILE"}


# The world a case runs in --------------------------------------------------------------------------
class World:
    """alice signed in, and (made on first use) her image, recipe and run; what cases refer to."""

    def __init__(self, app, alice: SignedInClient, admin_factory: Callable[[], SignedInClient],
                 dev_l2: LiveL2, tmp_path: Path) -> None:
        self.app, self.alice, self.dev_l2, self.tmp_path = app, alice, dev_l2, tmp_path
        self._admin_factory = admin_factory

    @cached_property
    def admin(self) -> SignedInClient:
        return self._admin_factory()

    @cached_property
    def img(self) -> str:
        answer = self.alice.post("/cache/upload", data=png_bytes(), headers=JSON)
        assert answer.status_code == 201, answer.data
        return answer.json["digest"]

    @cached_property
    def cfg(self) -> str:
        answer = self.alice.post("/configs/upload", data=RECIPE.encode(), headers=YAML)
        assert answer.status_code == 201, answer.data
        return answer.json["id"]

    @cached_property
    def run(self) -> str:
        answer = self.alice.post("/runs", json={"recipe": self.cfg, "inputs": [self.img]}, headers=JSON)
        assert answer.status_code == 201, answer.data
        return answer.json["id"]

    @cached_property
    def imports(self) -> str:
        return str(self.tmp_path / "imports")

    def fill(self, value):
        """`value` with `{img}`, `{cfg}`, `{run}`, `{imports}` replaced (recursively)."""
        if isinstance(value, str):
            for name in ("img", "cfg", "run", "imports"):
                if "{" + name + "}" in value:
                    value = value.replace("{" + name + "}", getattr(self, name))
            return value
        if isinstance(value, bytes):
            return self.fill(value.decode("latin-1")).encode("latin-1")
        if isinstance(value, dict):
            return {self.fill(k): self.fill(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.fill(v) for v in value)
        return value


@pytest.fixture()
def world(app, alice_client, dev_l2, tmp_path) -> World:
    from devl2.testing import sign_in

    return World(app, alice_client, lambda: sign_in(app, dev_l2, "admin"), dev_l2, tmp_path)


def redis_snapshot(client: redis.Redis) -> dict[str, tuple[str, bytes]]:
    """Every key of the test database with its type and serialised value (test code may scan)."""
    return {key: (client.type(key), client.dump(key)) for key in client.scan_iter(count=1000)}


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@dataclass
class Effects:
    """What a request changed: Redis keys, cache files, L2 verify calls."""

    keys: dict[str, str]
    files: tuple[list[str], list[str]]
    l2_calls: int


class Watch:
    """Snapshot before, compare after."""

    def __init__(self, redis_client: redis.Redis, cache_dir: Path, dev_l2: LiveL2) -> None:
        self.redis, self.cache_dir, self.dev_l2 = redis_client, cache_dir, dev_l2

    def __enter__(self) -> Watch:
        self.before = redis_snapshot(self.redis)
        self.files = files_under(self.cache_dir)
        self.calls = self.dev_l2.calls()
        return self

    def __exit__(self, *exc) -> None:
        after = redis_snapshot(self.redis)
        changed = {k: "added" for k in after.keys() - self.before.keys()}
        changed |= {k: "removed" for k in self.before.keys() - after.keys()}
        changed |= {k: "changed" for k in after.keys() & self.before.keys() if after[k] != self.before[k]}
        self.effects = Effects(changed, (self.files, files_under(self.cache_dir)), self.dev_l2.calls() - self.calls)

    def assert_nothing_changed(self, may_write: tuple[str, ...] = (), l2_calls: int = 0) -> None:
        unexpected = {k: v for k, v in self.effects.keys.items() if not k.startswith(may_write)}
        assert unexpected == {}, f"Redis changed: {unexpected}"
        before, after = self.effects.files
        assert before == after, f"cache files changed: {sorted(set(before) ^ set(after))}"
        assert self.effects.l2_calls == l2_calls, f"{self.effects.l2_calls} L2 verify calls, expected {l2_calls}"


@pytest.fixture()
def watch(redis_client, settings, dev_l2) -> Callable[[], Watch]:
    return lambda: Watch(redis_client, settings.cache_dir, dev_l2)


# Cases -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One hostile request and what must come back.

    `who`: alice (cookie + CSRF), anon, admin, bearer:<kind> (see `token_for`), nocsrf (alice's
    cookie without the token). `says` must appear in the error message (JSON) or, unescaped, in
    the HTML page. `may_write` lists key prefixes a refusal may still touch (rate counters).
    """

    id: str
    method: str
    path: str
    status: int
    says: str
    who: str = "alice"
    kwargs: dict = field(default_factory=dict)
    may_write: tuple[str, ...] = ()
    l2_calls: int = 0
    follow: bool = False
    #: Cases of one group run in one test (one sign-in), each as a subtest with its own snapshot.
    group: str = ""


def request_for(case: Case, world: World, client_for: Callable[[str], object]):
    client = client_for(case.who)
    kwargs = world.fill(case.kwargs)
    headers = {**JSON, **kwargs.pop("headers", {})}
    return client.open(world.fill(case.path), method=case.method, headers=headers,
                       follow_redirects=case.follow, **kwargs)


def message_of(response) -> str:
    if response.is_json:
        return str((response.json or {}).get("message", ""))
    return html.unescape(response.get_data(as_text=True))


# 1. Malformed ids, hashes and names in URLs ---------------------------------------------------------------
BAD_IDS = {
    "traversal": "..%2F..%2Fetc%2Fpasswd",
    "encoded-traversal": "%252e%252e%252fetc%252fpasswd",
    "dotdot": "..",
    "nul": "%00" + "a" * 63,
    "star": "*",
    "redis-glob": "artdag:run:*",
    "wildcards": "a%3F[0-9]*",
    "hex63": "a" * 63,
    "hex65": "a" * 65,
    "upper-hex": "A" * 64,
    "trailing-newline": "a" * 64 + "%0A",
    "arabic-digits": "%D9%A3" * 64,
    "markup": "%3Cscript%3Ealert(1)%3C%2Fscript%3E%7B%7B7*7%7D%7D",
}
#: (method, path with {id}, what the route answers for an id that is not one, request kwargs).
ID_ROUTES = [
    ("GET", "/cache/{id}", "hash", {}),
    ("DELETE", "/cache/{id}", "hash", {}),
    ("GET", "/cache/{id}/meta", "hash", {}),
    ("GET", "/media/{id}", "hash", {}),
    ("GET", "/media/{id}/thumb", "hash", {}),
    ("POST", "/media/{id}/delete", "hash", {}),
    ("GET", "/runs/{id}", "run", {}),
    ("DELETE", "/runs/{id}", "run", {}),
    ("POST", "/runs/{id}/cancel", "run", {}),
    ("POST", "/runs/{id}/rerun", "run", {}),
    ("POST", "/runs/{id}/pause", "run", {}),
    ("POST", "/runs/{id}/priority", "run", {"json": {"priority": 0}}),
    ("POST", "/runs/{id}/resume", "run", {}),
    ("POST", "/runs/{id}/requeue", "run", {}),
    ("GET", "/runs/{id}/provenance", "run", {}),
    ("GET", "/runs/{id}/steps/invert/log", "run", {}),
    ("GET", "/runs/{id}/steps/invert/preview", "run", {}),
    ("GET", "/run/{id}/log-panel", "run", {}),
    ("GET", "/run/{id}", "run", {}),
    ("GET", "/run/{id}/fragment", "run", {}),
    ("POST", "/run/{id}/cancel", "run", {}),
    ("POST", "/run/{id}/delete", "run", {}),
    ("GET", "/configs/{id}", "recipe", {}),
    ("DELETE", "/configs/{id}", "recipe", {}),
    ("POST", "/configs/{id}/run", "recipe", {"json": {"inputs": {}}}),
    ("GET", "/recipe/{id}", "recipe", {}),
    ("POST", "/recipe/{id}/run", "recipe", {"data": {"output_name": "x"}}),
    ("POST", "/recipe/{id}/delete", "recipe", {}),
    ("GET", "/effects/{id}", "effect", {}),
    ("POST", "/runs/{id}/publish", "run", {}),
    ("POST", "/run/{id}/publish", "run", {}),
    ("GET", "/worker/cache/{id}", "hash", {"headers": WORKER}),
    ("PUT", "/worker/cache/{id}", "hash", {"headers": WORKER, "data": b"rendered bytes"}),
    ("DELETE", "/worker/cache/{id}", "hash", {"headers": WORKER}),
]
ID_ANSWERS = {
    "hash": (400, "not a content hash"),
    "run": (404, "no run"),
    "recipe": (404, "no recipe"),
    "effect": (404, "no effect"),
}


def _route_of(app, path: str, method: str) -> str | None:
    from urllib.parse import unquote

    adapter = app.url_map.bind("localhost")
    try:
        return adapter.match(unquote(path), method)[0]
    except MethodNotAllowed:
        return "405"
    except (NotFound, RequestRedirect):
        return None


def id_cases(app) -> list[Case]:
    cases = []
    for method, template, family, kwargs in ID_ROUTES:
        intended = _route_of(app, template.replace("{id}", "a" * 64), method)
        for name, bad in BAD_IDS.items():
            path = template.replace("{id}", bad)
            routed = _route_of(app, path, method)
            if routed == intended:
                status, says = ID_ANSWERS[family]
            elif routed == "cache.malformed":
                status, says = 400, "not a content hash"
            elif routed == "405":  # a slash in the id: another route, not for this method
                status, says = 405, "not allowed"
            else:  # a slash in the id: no route takes it
                status, says = 404, "not found"
            cases.append(Case(f"{method} {template} {name}", method, path, status, says, kwargs=kwargs,
                              group=f"{method} {template}"))
    cases.append(Case("POST /run/<id>/<action> unknown action", "POST", "/run/{run}/%3Cscript%3E", 400,
                      "unknown action"))
    for name, value in {"huge-start": "bytes=" + "9" * 30 + "-", "empty-suffix": "bytes=-0",
                        "reversed": "bytes=5-1", "many-ranges": "bytes=" + "0-0," * 500 + "0-1",
                        "other-unit": "items=0-1"}.items():
        cases.append(Case(f"GET /cache/<hash> range {name}", "GET", "/cache/{img}", 416, "range",
                          kwargs={"headers": {"Range": value}}, group="download ranges"))
    cases.append(Case("GET /static traversal", "GET", "/static/..%2F..%2Fl1web%2F__init__.py", 404, "not found"))
    cases.append(Case("GET /static encoded traversal", "GET", "/static/%252e%252e/settings.py", 404, "not found"))
    return cases


# 2. Uploads -------------------------------------------------------------------------------------------------
HLS = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
UPLOAD_BODIES: dict[str, tuple[bytes, int, str]] = {
    "zero-byte": (b"", 400, "empty upload"),
    "pixel-bomb-png": (png_declaring(100_000, 100_000), 415, "pixel"),
    "zip-bomb-like-png": (zero_png(9000), 415, "pixel"),
    "hls-local-file": (HLS, 415, "playlist"),
    "hls-http": (b"#EXTM3U\n#EXTINF:1,\nhttp://169.254.169.254/latest/meta-data\n", 415, "playlist"),
    "hls-with-bom": (b"\xef\xbb\xbf \n" + HLS, 415, "playlist"),
    "ffconcat": (b"ffconcat version 1.0\nfile '/etc/passwd'\n", 415, "playlist"),
    "pls-playlist": (b"[playlist]\nFile1=http://127.0.0.1:9/x.mp3\n", 415, "playlist"),
}


def upload_cases() -> list[Case]:
    return [replace(case, group=case.id.split(" ")[0] + " upload") for case in _upload_cases()]


def _upload_cases() -> list[Case]:
    cases = []
    for name, (body, status, says) in UPLOAD_BODIES.items():
        cases.append(Case(f"raw upload {name}", "POST", "/cache/upload?filename=x.mp4", status, says,
                          kwargs={"data": body}))
        cases.append(Case(f"multipart upload {name}", "POST", "/cache/upload", status, says,
                          kwargs={"data": multipart([("file", "x.mp4", body)]), "headers": MULTIPART}))
        cases.append(Case(f"media form upload {name}", "POST", "/media", status, says,
                          kwargs={"data": multipart([("file", "x.mp4", body)]),
                                  "headers": {**MULTIPART, "HX-Request": "true"}}))
    big = b"x" * (MAX_UPLOAD + 1)
    cases += [
        Case("raw upload declared too large", "POST", "/cache/upload", 413, "larger than the limit",
             kwargs={"data": b"x", "environ_overrides": {"CONTENT_LENGTH": str(10 * MAX_UPLOAD)}}),
        Case("raw upload streamed too large", "POST", "/cache/upload", 413, "larger than the limit",
             kwargs={"input_stream": io.BytesIO(big), "environ_overrides": {"wsgi.input_terminated": True}}),
        Case("multipart upload streamed too large", "POST", "/cache/upload", 413, "larger than the limit",
             kwargs={"input_stream": io.BytesIO(multipart([("file", "big", big)])), "headers": MULTIPART,
                     "environ_overrides": {"wsgi.input_terminated": True}}),
        Case("media form upload too large", "POST", "/media", 413, "larger than the limit",
             kwargs={"input_stream": io.BytesIO(multipart([("file", "big", big)])), "headers": MULTIPART,
                     "environ_overrides": {"wsgi.input_terminated": True}}),
        Case("raw upload truncated (Content-Length larger than body)", "POST", "/cache/upload", 400, "truncated",
             kwargs={"data": b"abc", "environ_overrides": {"CONTENT_LENGTH": "1000"}}),
        Case("multipart upload truncated (Content-Length larger than body)", "POST", "/cache/upload", 400,
             "truncated", kwargs={"data": multipart([("file", "a", b"abc" * 100)], close=False)[:-100],
                                  "headers": MULTIPART, "environ_overrides": {"CONTENT_LENGTH": "5000"}}),
        Case("multipart upload without closing boundary", "POST", "/cache/upload", 400, "malformed multipart",
             kwargs={"data": multipart([("file", "a", b"abc")], close=False), "headers": MULTIPART}),
        Case("multipart upload without boundary", "POST", "/cache/upload", 400, "boundary",
             kwargs={"data": b"abc", "headers": {"Content-Type": "multipart/form-data"}}),
        Case("multipart upload without file part", "POST", "/cache/upload", 400, "no file part",
             kwargs={"data": multipart([("other", None, b"abc")]), "headers": MULTIPART}),
        Case("multipart upload with too many parts", "POST", "/cache/upload", 413, "parts",
             kwargs={"data": multipart([(f"f{i}", None, b"x") for i in range(40)] + [("file", "a", b"abc")]),
                     "headers": MULTIPART}),
        Case("multipart upload with oversized text fields", "POST", "/cache/upload", 413, "too large",
             kwargs={"data": multipart([("note", None, b"x" * 40_000), ("file", "a", b"abc")]),
                     "headers": MULTIPART}),
    ]
    return cases


# 3. Recipes --------------------------------------------------------------------------------------------------
ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 10) if prev else ', '.join(['x'] * 10)}]\n"
    for prev, name in zip(["", "a", "b", "c", "d"], ["a", "b", "c", "d", "e"], strict=True)
)


def _nodes(count: int) -> str:
    lines = ["name: big", "dag:", "  nodes:", "    - {id: n0, type: SOURCE, config: {input: true}}"]
    step = "    - {{id: n{}, type: EFFECT, config: {{effect: invert}}, inputs: [n{}]}}"
    lines += [step.format(i, i - 1) for i in range(1, count)]
    return "\n".join([*lines, f"  output: n{count - 1}", ""])


def _sequence(inputs: int) -> str:
    refs = ", ".join(["a"] * inputs)
    return ("name: seq\ndag:\n  nodes:\n    - {id: a, type: SOURCE, config: {input: true}}\n"
            f"    - {{id: s, type: SEQUENCE, inputs: [{refs}]}}\n  output: s\n")


#: name → (YAML text or bytes, what the message says). The canary path is filled per test.
HOSTILE_YAML: dict[str, tuple[str | bytes, str]] = {
    "syntax-error": ("name: x\ndag: [unclosed\n", "line 3, column 1"),
    "tab-indentation": ("name: x\ndag:\n\tnodes: []\n", "line 3"),
    "python-object-apply": ("name: !!python/object/apply:os.system ['touch CANARY']\n", "python/object/apply"),
    "python-object-new": ("name: !!python/object/new:subprocess.Popen [[touch, CANARY]]\n", "python/object/new"),
    "python-name": ("name: !!python/name:os.system\n", "python/name"),
    "custom-tag": ("name: !shell rm -rf /\n", "!shell"),
    "alias-bomb": (ALIAS_BOMB, "alias bomb"),
    "recursive-alias": ("a: &a [*a]\n", "alias bomb"),
    "huge-document": ("name: x\ndescription: '" + "x" * (MAX_RECIPE_BYTES + 10) + "'\n", "limit"),
    "deep-nesting": ("[" * 20_000, "deeper than"),
    "deep-flow-mappings": ("{a: " * 5000, "deeper than"),
    "nul-byte": ("name: a\x00b\n", "character"),
    "control-character": ("name: a\x07b\n", "character"),
    "not-utf8": (b"name: \xff\xfe\n", "not UTF-8"),
    "two-documents": ("name: a\n---\nname: b\n", "another document"),
    "not-a-mapping": ("- just\n- a list\n", "mapping"),
    "empty": ("", "empty"),
    "only-a-comment": ("# nothing here\n", "empty"),
    "unhashable-key": ("? [a, b]\n: c\n", "unhashable"),
    "unknown-top-level-key": (RECIPE + "exec: true\n", "unknown top-level key"),
    "cycle": (RECIPE.replace("inputs: [user_image]", "inputs: [flip]"), "cycle"),
    "oversized-dag": (_nodes(300), "too many nodes"),
    "too-many-inputs": (_sequence(65), "inputs"),
    "unknown-type": (RECIPE.replace("type: EFFECT", "type: TELEPORT"), "unknown node type"),
    "unknown-effect": (RECIPE.replace("effect: invert", "effect: rm-rf"), "rm-rf"),
    "duplicate-node-id": (RECIPE.replace("id: flip", "id: user_image"), "duplicate node id"),
    "output-not-a-node": (RECIPE.replace("output: flip", "output: nowhere"), "output node"),
    "dangling-input": (RECIPE.replace("inputs: [user_image]", "inputs: [ghost]"), "not a node of the DAG"),
    "param-nan": (BLUR.replace("SIGMA", ".nan"), "finite"),
    "param-infinity": (BLUR.replace("SIGMA", ".inf"), "finite"),
    "param-minus-infinity": (BLUR.replace("SIGMA", "-.inf"), "finite"),
    "param-1e308": (BLUR.replace("SIGMA", "1.0e+308"), "between"),
    "param-huge-int": (BLUR.replace("SIGMA", "9" * 400), "between"),
    "param-5000-digits": (BLUR.replace("SIGMA", "9" * 5000), "cannot be read"),
    "param-string": (BLUR.replace("SIGMA", "'2'"), "must be a number"),
    "param-list": (BLUR.replace("SIGMA", "[2]"), "must be a number"),
    "param-bool": (BLUR.replace("SIGMA", "true"), "must be a number"),
    "param-timestamp": (BLUR.replace("SIGMA", "2001-12-14"), "must be a number"),
    "param-binary": (BLUR.replace("SIGMA", "!!binary aGVsbG8="), "must be a number"),
    "config-nan": (RESIZE.replace("WIDTH", ".nan"), "finite"),
    "config-huge-int": (RESIZE.replace("WIDTH", "9" * 400), "between"),
    "config-1e308": (RESIZE.replace("WIDTH", "1.0e+308"), "between"),
    "config-string-for-number": (RESIZE.replace("WIDTH", "'16'"), "must be a number"),
    "config-list-for-scalar": (RESIZE.replace("WIDTH", "[16]"), "must be a number"),
    "config-set": (RESIZE.replace("WIDTH", "!!set {a}"), "must be a number"),
    "source-hash-trailing-newline": (RECIPE.replace("{input: true, name: input_image}",
                                                    '{hash: "' + "a" * 64 + '\\n"}'), "digest"),
    "source-hash-upper-case": (RECIPE.replace("{input: true, name: input_image}", "{hash: " + "A" * 64 + "}"),
                               "digest"),
    "registry-hash-traversal": (RECIPE.replace("dag:", "registry: {assets: {cat: {hash: ../../etc/passwd}}}\ndag:"),
                                "64 lower-case hex"),
    "effect-hash-mismatch": (RECIPE.replace("dag:", "registry: {effects: {invert: {hash: '" + "0" * 64 + "'}}}\ndag:"),
                             "does not match"),
    "node-id-trailing-newline": (RECIPE.replace("id: flip", 'id: "flip\\n"')
                                 .replace("output: flip", 'output: "flip\\n"'), "needs an id"),
    "node-id-markup": (RECIPE.replace("id: flip", "id: '<script>'").replace("output: flip", "output: '<script>'"),
                       "needs an id"),
    "node-id-traversal": (RECIPE.replace("id: flip", "id: ../../x").replace("output: flip", "output: ../../x"),
                          "needs an id"),
    "name-markup": (RECIPE.replace("name: invert-it", "name: '<b>{{7*7}}</b>'"), "'name' must be"),
    "name-trailing-newline": (RECIPE.replace("name: invert-it", 'name: "invert-it\\n"'), "'name' must be"),
    "input-name-markup": (RECIPE.replace("name: input_image", "name: '{% debug %}'"), "input name"),
    "description-too-long": (RECIPE.replace("description: Invert the colours of one image",
                                            "description: " + "x" * 3000), "description"),
    "version-timestamp": (RECIPE.replace('version: "1.0"', "version: 2001-12-14"), "'version' must be"),
}


def recipe_cases() -> list[Case]:
    return [replace(case, group=" ".join(case.id.split(" ")[:2])) for case in _recipe_cases()]


def _recipe_cases() -> list[Case]:
    cases = []
    for name, (text, says) in HOSTILE_YAML.items():
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        cases.append(Case(f"yaml body {name}", "POST", "/configs/upload", 400, says,
                          kwargs={"data": data, "headers": YAML}))
        cases.append(Case(f"yaml file {name}", "POST", "/configs/upload", 400, says,
                          kwargs={"data": {"file": (io.BytesIO(data), "r.yaml")}}))
        if isinstance(text, str) and len(data) < 200_000 and "\x00" not in text:  # a form field is text
            cases.append(Case(f"recipes form {name}", "POST", "/recipes", 400, says,
                              kwargs={"data": {"yaml": data.decode("utf-8", "replace")},
                                      "headers": {"Accept": "text/html"}}))
    return cases


# 4. Runs: ill-typed bodies -----------------------------------------------------------------------------------
def _raw_json(text: str) -> dict:
    return {"data": text, "headers": {"Content-Type": "application/json"}}


def _streamed(body: bytes, content_type: str) -> dict:
    """A body sent without Content-Length (chunked): only the bytes read can be counted."""
    return {"input_stream": io.BytesIO(body), "headers": {"Content-Type": content_type},
            "environ_overrides": {"wsgi.input_terminated": True}}


def _run(extra: str) -> dict:
    return _raw_json('{"recipe": "blur", "inputs": ["{img}"], ' + extra + "}")


RUN_BODIES: dict[str, tuple[dict, int, str]] = {
    "not-json": (_raw_json("recipe=dog"), 400, "JSON object"),
    "json-array": (_raw_json("[]"), 400, "JSON object"),
    "deeply-nested-json": (_raw_json("[" * 50_000 + "]" * 50_000), 400, "nest"),
    "body-too-large": (_raw_json('{"recipe": "' + "x" * 300_000 + '"}'), 413, "larger than"),
    "recipe-number": ({"json": {"recipe": 5, "inputs": []}}, 400, "'recipe' must be"),
    "recipe-list": ({"json": {"recipe": ["blur"], "inputs": []}}, 400, "'recipe' must be"),
    "recipe-unknown": ({"json": {"recipe": "rm-rf", "inputs": ["{img}"]}}, 404, "no effect or recipe named"),
    "inputs-string": ({"json": {"recipe": "blur", "inputs": "{img}"}}, 400, "'inputs' must be"),
    "inputs-numbers": ({"json": {"recipe": "blur", "inputs": [1]}}, 400, "'inputs' must be"),
    "inputs-too-many": ({"json": {"recipe": "blur", "inputs": ["{img}"] * 65}}, 400, "'inputs' must be"),
    "inputs-wrong-count": ({"json": {"recipe": "blur", "inputs": []}}, 400, "takes 1 input"),
    "input-not-cached": ({"json": {"recipe": "blur", "inputs": ["b" * 64]}}, 404, "not in the cache"),
    "input-upper-hex": ({"json": {"recipe": "blur", "inputs": ["A" * 64]}}, 404, "neither a cached hash"),
    "input-trailing-newline": ({"json": {"recipe": "blur", "inputs": ["{img}\n"]}}, 404, "neither a cached hash"),
    "input-traversal": ({"json": {"recipe": "blur", "inputs": ["../../etc/passwd"]}}, 404, "neither a cached hash"),
    "input-glob": ({"json": {"recipe": "blur", "inputs": ["*"]}}, 404, "neither a cached hash"),
    "input-nul": ({"json": {"recipe": "blur", "inputs": ["\x00"]}}, 404, "neither a cached hash"),
    "input-lone-surrogate": (_raw_json('{"recipe": "blur", "inputs": ["\\ud800"]}'), 400, "not valid Unicode"),
    "recipe-lone-surrogate": (_raw_json('{"recipe": "\\udfff", "inputs": []}'), 400, "not valid Unicode"),
    "output-name-lone-surrogate": (_raw_json('{"recipe": "blur", "inputs": ["{img}"], "output_name": "\\ud800"}'),
                                   400, "not valid Unicode"),
    "output-name-markup": ({"json": {"recipe": "blur", "inputs": ["{img}"], "output_name": PAYLOAD}}, 400,
                           "'output_name' must be"),
    "output-name-template": ({"json": {"recipe": "blur", "inputs": ["{img}"], "output_name": "{{7*7}}"}}, 400,
                             "'output_name' must be"),
    "output-name-trailing-newline": ({"json": {"recipe": "blur", "inputs": ["{img}"], "output_name": "out\n"}},
                                     400, "'output_name' must be"),
    "output-name-header-injection": ({"json": {"recipe": "blur", "inputs": ["{img}"],
                                               "output_name": "a\r\nSet-Cookie: x=1"}}, 400, "'output_name' must be"),
    "output-name-number": ({"json": {"recipe": "blur", "inputs": ["{img}"], "output_name": 7}}, 400,
                           "'output_name' must be"),
    "params-list": ({"json": {"recipe": "blur", "inputs": ["{img}"], "params": [1]}}, 400, "'params' must be"),
    "param-nan": (_run('"params": {"sigma": NaN}'), 400, "finite"),
    "param-infinity": (_run('"params": {"sigma": Infinity}'), 400, "finite"),
    "param-minus-infinity": (_run('"params": {"sigma": -Infinity}'), 400, "finite"),
    "param-1e308": (_run('"params": {"sigma": 1e308}'), 400, "between"),
    "param-1e400": (_run('"params": {"sigma": 1e400}'), 400, "finite"),
    "param-huge-int": (_run('"params": {"sigma": ' + "9" * 400 + "}"), 400, "between"),
    "param-string": (_run('"params": {"sigma": "2"}'), 400, "must be a number"),
    "param-list": (_run('"params": {"sigma": [2]}'), 400, "must be a number"),
    "param-bool": (_run('"params": {"sigma": true}'), 400, "must be a number"),
    "param-unknown": (_run('"params": {"__class__": 1}'), 400, "unknown param"),
    "force-string": ({"json": {"recipe": "blur", "inputs": ["{img}"], "force": "yes"}}, 400, "'force' must be"),
    "unknown-field": ({"json": {"recipe": "blur", "inputs": ["{img}"], "owner": "admin"}}, 400, "unknown field"),
}


def run_cases() -> list[Case]:
    return [replace(case, group=f"{case.method} {case.path}") for case in _run_cases()]


def _run_cases() -> list[Case]:
    cases = [Case(f"POST /runs {name}", "POST", "/runs", status, says, kwargs=kwargs)
             for name, (kwargs, status, says) in RUN_BODIES.items()]
    cases += [
        Case("run form too large", "POST", "/recipe/{cfg}/run", 413, "exceeds",
             kwargs={"data": {"input.input_image": "x" * (2 * 1024 * 1024)}, "headers": {"Accept": "text/html"}}),
        Case("run form too large, streamed", "POST", "/recipe/{cfg}/run", 413, "exceeds",
             kwargs=_streamed(b"input.input_image=" + b"x" * (2 * 1024 * 1024),
                              "application/x-www-form-urlencoded")),
        Case("recipes form too large", "POST", "/recipes", 413, "exceeds",
             kwargs={"data": {"yaml": "x" * (2 * 1024 * 1024)}, "headers": {"Accept": "text/html"}}),
        Case("recipe file part too large", "POST", "/configs/upload", 413, "exceeds",
             kwargs={"data": multipart([("file", "r.yaml", b"x" * (2 * 1024 * 1024))]), "headers": MULTIPART}),
        Case("run json too large, streamed", "POST", "/runs", 413, "larger than",
             kwargs=_streamed(b'{"recipe": "' + b"x" * (2 * 1024 * 1024) + b'"}', "application/json")),
        Case("recipe run unknown input name", "POST", "/configs/{cfg}/run", 400, "unexpected input",
             kwargs={"json": {"inputs": {"input_image": "{img}", "<script>": "{img}"}}}),
        Case("recipe run missing input", "POST", "/configs/{cfg}/run", 400, "missing input",
             kwargs={"json": {"inputs": {}}}),
        Case("recipe run with a recipe field", "POST", "/configs/{cfg}/run", 400, "unknown field 'recipe'",
             kwargs={"json": {"recipe": "blur", "inputs": {"input_image": "{img}"}}}),
        Case("recipe run with params", "POST", "/configs/{cfg}/run", 400, "'params' apply to a single effect",
             kwargs={"json": {"inputs": {"input_image": "{img}"}, "params": {"sigma": 1}}}),
        Case("recipe run output name markup", "POST", "/configs/{cfg}/run", 400, "'output_name' must be",
             kwargs={"json": {"inputs": {"input_image": "{img}"}, "output_name": PAYLOAD}}),
        Case("recipe run not json", "POST", "/configs/{cfg}/run", 400, "JSON object",
             kwargs=_raw_json("inputs=1")),
        Case("run form output name markup", "POST", "/recipe/{cfg}/run", 200, "'output_name' must be",
             kwargs={"data": {"input.input_image": "{img}", "output_name": PAYLOAD},
                     "headers": {"Accept": "text/html"}}, follow=True),
        Case("run form unknown input", "POST", "/recipe/{cfg}/run", 200, "neither a cached hash",
             kwargs={"data": {"input.input_image": PAYLOAD}, "headers": {"Accept": "text/html"}}, follow=True),
        Case("run form extra input", "POST", "/recipe/{cfg}/run", 200, "unexpected input",
             kwargs={"data": {"input.input_image": "{img}", "input.{{7*7}}": "{img}"},
                     "headers": {"Accept": "text/html"}}, follow=True),
    ]
    return cases


# 5. Listings: query parameters -------------------------------------------------------------------------------
LISTING_QUERIES = {
    "/runs": ["limit=1e308", "limit=NaN", "limit=0", "limit=-1", "limit=" + "9" * 30, "offset=-1",
              "offset=" + "9" * 30, "status=%3Cscript%3E", "status=*"],
    "/runs/fragment": ["limit=NaN", "offset=" + "9" * 30, "status=%7B%7B7*7%7D%7D"],
    "/cache": ["limit=1e308", "limit=NaN", "limit=0", "limit=" + "9" * 30, "page=0", "page=" + "9" * 30,
               "cursor=nan:" + "a" * 64, "cursor=inf:x", "cursor=%00garbage*"],
    "/media": ["limit=NaN", "page=" + "9" * 30, "cursor=nan:x", "cursor=garbage"],
    "/configs": ["offset=NaN", "offset=" + "9" * 30],
    "/recipes": ["offset=abc", "offset=" + "9" * 30],
}
LISTING_SAYS = {"limit": "limit", "offset": "offset", "page": "page", "status": "status", "cursor": "cursor"}


def listing_cases() -> list[Case]:
    cases = []
    for path, queries in LISTING_QUERIES.items():
        for query in queries:
            says = LISTING_SAYS[query.split("=")[0]]
            cases.append(Case(f"GET {path}?{query}", "GET", f"{path}?{query}", 400, says, group=f"GET {path}"))
    return cases


# 6. Tokens, sessions and sign-in endpoints ------------------------------------------------------------------
TOKEN_KINDS = {
    # kind → (status, says, L2 calls due)
    "forged": (401, "not valid", 1),
    "alg-none": (401, "not valid", 1),
    "foreign-issuer": (401, "not valid", 1),  # names another L2: the configured one is asked, no other
    "expired": (401, "not valid", 1),
    "other-l1": (401, "not valid", 1),
    "revoked": (401, "revoked", 0),
    "malformed-quote": (400, "malformed", 0),
    "malformed-space": (400, "malformed", 0),
    "oversized": (400, "malformed", 0),
}


def token_cases() -> list[Case]:
    cases = []
    for kind, (status, says, calls) in TOKEN_KINDS.items():
        cases.append(Case(f"bearer {kind} token", "GET", "/runs", status, says, who=f"bearer:{kind}",
                          may_write=RATE_KEYS, l2_calls=calls))
        cases.append(Case(f"/auth with {kind} token", "GET", "/auth?auth_token=TOKEN:" + kind, status, says,
                          who="anon", may_write=RATE_KEYS, l2_calls=calls))
        cases.append(Case(f"/auth/revoke of {kind} token", "POST", "/auth/revoke", status, says, who="anon",
                          kwargs={"json": {"token": "TOKEN:" + kind}}, may_write=RATE_KEYS, l2_calls=calls))
    cases += [
        Case("/auth without token", "GET", "/auth", 400, "malformed", who="anon"),
        Case("forged session cookie", "GET", "/runs", 401, "sign in", who="cookie:forged"),
        Case("/auth/whoami anonymous", "GET", "/auth/whoami", 401, "sign in", who="anon"),
        Case("/auth/revoke anonymous without token", "POST", "/auth/revoke", 401, "send the token", who="anon"),
        Case("/auth/revoke deeply nested json", "POST", "/auth/revoke", 400, "send json", who="anon",
             kwargs=_raw_json("[" * 50_000)),
        Case("revoke-user not json", "POST", "/auth/revoke-user", 400, "send json", who="anon",
             kwargs={"data": "username=alice"}, may_write=RATE_KEYS),
        Case("revoke-user deeply nested json", "POST", "/auth/revoke-user", 400, "send json", who="anon",
             kwargs=_raw_json("[" * 50_000), may_write=RATE_KEYS),
        Case("revoke-user markup username", "POST", "/auth/revoke-user", 400, "send json", who="anon",
             kwargs={"json": {"username": PAYLOAD, "tokens": ["x"]}}, may_write=RATE_KEYS),
        Case("revoke-user wildcard username", "POST", "/auth/revoke-user", 400, "send json", who="anon",
             kwargs={"json": {"username": "*", "tokens": ["x"]}}, may_write=RATE_KEYS),
        Case("revoke-user tokens not a list", "POST", "/auth/revoke-user", 400, "send json", who="anon",
             kwargs={"json": {"username": "alice", "tokens": "x"}}, may_write=RATE_KEYS),
        Case("revoke-user lone surrogate token", "POST", "/auth/revoke-user", 401, "none of these", who="anon",
             kwargs=_raw_json('{"username": "alice", "tokens": ["\\ud800"]}'), may_write=RATE_KEYS),
        Case("revoke-user too many tokens", "POST", "/auth/revoke-user", 400, "send json", who="anon",
             kwargs={"json": {"username": "alice", "tokens": ["x"] * 51}}, may_write=RATE_KEYS),
        Case("revoke-user body too large", "POST", "/auth/revoke-user", 400, "too large", who="anon",
             kwargs=_raw_json('{"username": "alice", "tokens": ["' + "x" * 200_000 + '"]}'), may_write=RATE_KEYS),
        Case("revoke-user with a token that is not alice's", "POST", "/auth/revoke-user", 401, "none of these",
             who="anon", kwargs={"json": {"username": "alice", "tokens": ["TOKEN:forged"]}}, may_write=RATE_KEYS),
    ]
    return cases


# 7. Import by path -----------------------------------------------------------------------------------------
IMPORT_PATHS = {
    "etc-passwd": ("/etc/passwd", 403, "not inside an import root"),
    "traversal": ("{imports}/../../../../etc/passwd", 403, "not inside an import root"),
    "encoded-traversal": ("{imports}/%2e%2e/%2e%2e/etc/passwd", 404, "no such file"),
    "relative": ("etc/passwd", 400, "absolute"),
    "nul": ("{imports}/a\x00b", 400, "NUL"),
    "proc-environ": ("/proc/self/environ", 403, "not inside an import root"),
    "dev-zero": ("/dev/zero", 403, "not inside an import root"),
    "directory": ("{imports}", 400, "not a regular file"),
    "glob": ("{imports}/*", 404, "no such file"),
    "empty": ("", 400, "empty"),
}


SHA3_OF_DATA = hashlib.sha3_256(b"rendered bytes").hexdigest()
EMPTY_SHA3 = hashlib.sha3_256(b"").hexdigest()


def worker_cases() -> list[Case]:
    put = "/worker/cache/" + SHA3_OF_DATA
    return [replace(case, who="anon", group="worker routes") for case in [
        Case("worker download without token", "GET", "/worker/cache/{img}", 401, "missing or wrong"),
        Case("worker download with a wrong token", "GET", "/worker/cache/{img}", 401, "missing or wrong",
             kwargs={"headers": {WORKER_TOKEN_HEADER: WORKER_TOKEN + "x"}}),
        Case("worker upload without token", "PUT", put, 401, "missing or wrong", kwargs={"data": b"rendered bytes"}),
        Case("worker upload with a lookalike token", "PUT", put, 401, "missing or wrong",
             kwargs={"data": b"rendered bytes", "headers": {WORKER_TOKEN_HEADER: WORKER_TOKEN.upper()}}),
        Case("worker upload whose bytes do not hash to the name", "PUT", "/worker/cache/" + "a" * 64, 400, "hash",
             kwargs={"data": b"rendered bytes", "headers": WORKER}),
        Case("worker upload of zero bytes", "PUT", "/worker/cache/" + "a" * 64, 400, "hash to",
             kwargs={"data": b"", "headers": WORKER}),
        Case("worker upload of zero bytes named by their hash", "PUT", "/worker/cache/" + EMPTY_SHA3, 400, "empty",
             kwargs={"data": b"", "headers": WORKER}),
        Case("worker chunk removal without token", "DELETE", "/worker/cache/{img}", 401, "missing or wrong"),
        # Only chunks a worker has joined may go (state/chunks.py): an ordinary item is "unknown".
        Case("worker removal of an item that is no chunk", "DELETE", "/worker/cache/{img}", 404, "no cached item",
             kwargs={"headers": WORKER}),
        Case("worker upload too large", "PUT", "/worker/cache/" + "a" * 64, 413, "larger than the limit",
             kwargs={"input_stream": io.BytesIO(b"x" * (MAX_UPLOAD + 1)), "headers": WORKER,
                     "environ_overrides": {"wsgi.input_terminated": True}}),
    ]]


def import_cases() -> list[Case]:
    cases = [Case(f"import {name}", "POST", "/cache/import", status, says, who="admin",
                  kwargs={"query_string": {"path": path}}, group="import")
             for name, (path, status, says) in IMPORT_PATHS.items()]
    cases.append(Case("import as a non-admin", "POST", "/cache/import", 403, "admins only",
                      kwargs={"query_string": {"path": "/etc/passwd"}}))
    return cases


#: One URL per RQ dashboard page (rq-dashboard's own routes, mounted at /rq for admins).
DASHBOARD_RULES = [
    "/rq/", "/rq/0/", "/rq/0/data/job/x.json", "/rq/0/data/jobs/runs/queued/10/asc/1.json", "/rq/0/data/queues.json",
    "/rq/0/data/workers.json", "/rq/0/view", "/rq/0/view/job/x", "/rq/0/view/jobs",
    "/rq/0/view/jobs/runs/queued/10/asc/1", "/rq/0/view/queues", "/rq/0/view/workers", "/rq/favicon.ico",
    "/rq/static/x.css", "/rq/requeue/runs",
]
DASHBOARD_ACTIONS = ["/rq/job/x/delete", "/rq/job/x/requeue", "/rq/queue/runs/queued/empty", "/rq/queue/runs/compact",
                     "/rq/requeue/runs"]


def ops_cases() -> list[Case]:
    cases = [
        Case("/metrics for a non-admin", "GET", "/metrics", 403, "admin", group="operators"),
        Case("/metrics anonymous", "GET", "/metrics", 401, "sign in", who="anon", group="operators"),
        Case("/metrics with a malformed bearer token", "GET", "/metrics", 400, "malformed",
             who="bearer:malformed-space", group="operators"),
        Case("/admin/status for a non-admin", "GET", "/admin/status", 403, "admin", group="operators"),
    ]
    cases += [Case(f"dashboard {path} for a non-admin", "GET", path, 403, "administrators only", group="dashboard")
              for path in DASHBOARD_RULES]
    cases += [Case(f"dashboard {path} anonymous", "GET", path, 401, "sign in", who="anon", group="dashboard anonymous")
              for path in DASHBOARD_RULES]
    cases += [Case(f"dashboard action {method} {path}", method, path, 403, "read-only", who="admin",
                   group="dashboard actions")
              for path in DASHBOARD_ACTIONS for method in ("POST", "GET") if method == "POST" or "requeue/" in path]
    cases += [Case(f"dashboard action {path} for a non-admin", "POST", path, 403, "administrators only",
                   group="dashboard actions") for path in DASHBOARD_ACTIONS]
    return cases


def steer_cases() -> list[Case]:
    """Batches, bulk actions and the workers page (issue 15): each refusal names what is wrong."""
    batch, bulk = "/batches", "/runs/bulk"
    unknown_batch = "/batches/" + "0" * 32
    cases = [
        Case("batch of an unknown recipe", "POST", batch, 404, "no effect or recipe named",
             kwargs={"json": {"recipe": "nope", "inputs": ["{img}"]}}),
        Case("batch with an unknown hash", "POST", batch, 404, "inputs[1]: input",
             kwargs={"json": {"recipe": "invert", "inputs": ["{img}", "ab" * 32]}}),
        Case("batch with no inputs", "POST", batch, 400, "non-empty list", kwargs={"json": {"recipe": "invert",
                                                                                           "inputs": []}}),
        Case("batch with too many inputs", "POST", batch, 400, "at most", kwargs={"json": {
            "recipe": "invert", "inputs": ["{img}"] * 101}}),
        Case("batch with a number for an input", "POST", batch, 400, "inputs[0] must be",
             kwargs={"json": {"recipe": "invert", "inputs": [5]}}),
        Case("batch with inputs as an object", "POST", batch, 400, "non-empty list",
             kwargs={"json": {"recipe": "invert", "inputs": {"a": "{img}"}}}),
        Case("batch above the priority ceiling", "POST", batch, 403, "ceiling",
             kwargs={"json": {"recipe": "invert", "inputs": ["{img}"], "priority": 9}}),
        Case("batch form with nothing ticked", "POST", batch, 303, "",
             kwargs={"data": {"recipe": "{cfg}"}, "headers": {"Accept": "text/html"}}),
        Case("batch listing at a negative offset", "GET", batch, 400, "offset",
             kwargs={"query_string": {"offset": -1}}),
        Case("unknown batch", "GET", unknown_batch, 404, "no batch"),
        Case("batch id with a glob", "GET", "/batches/artdag:batch:*", 404, "no batch"),
        Case("unknown batch's fragment", "GET", unknown_batch + "/fragment", 404, "no batch"),
        Case("unknown batch action", "POST", unknown_batch + "/explode", 400, "unknown action"),
        Case("action on an unknown batch", "POST", unknown_batch + "/cancel", 404, "no batch"),
        Case("bulk with an unknown action", "POST", bulk, 400, "unknown action",
             kwargs={"json": {"action": "explode", "runs": ["{run}"]}}),
        Case("bulk with no runs", "POST", bulk, 400, "at least one run", kwargs={"json": {"action": "cancel",
                                                                                         "runs": []}}),
        Case("bulk with runs as text", "POST", bulk, 400, "list of run ids", kwargs={"json": {"action": "cancel",
                                                                                             "runs": "{run}"}}),
        Case("bulk with an extra field", "POST", bulk, 400, "unknown field", kwargs={"json": {
            "action": "cancel", "runs": ["{run}"], "all": True}}),
        Case("workers page for a non-admin", "GET", "/workers", 403, "administrators"),
        Case("workers fragment for a non-admin", "GET", "/workers/fragment", 403, "administrators"),
        Case("drain by a non-admin", "POST", "/workers/w1/drain", 403, "administrators"),
        Case("drain of an unknown worker", "POST", "/workers/nobody/drain", 404, "no worker named", who="admin"),
        Case("unknown worker action", "POST", "/workers/w1/explode", 400, "drain or resume", who="admin"),
        Case("worker name too long", "POST", "/workers/" + "w" * 201 + "/drain", 400, "at most", who="admin"),
        Case("priority form with text", "POST", "/run/{run}/priority", 303, "",
             kwargs={"data": {"priority": "high"}, "headers": {"Accept": "text/html"}}),
    ]
    return [replace(case, group="batches, bulk actions, workers") for case in cases]


def tus_cases() -> list[Case]:
    """Resumable uploads (tus) and /cache/missing: bad headers, ids and bodies change nothing."""
    tus, unknown = {"Tus-Resumable": "1.0.0"}, "/cache/uploads/" + "0" * 32
    patch = {**tus, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    return [replace(case, group="tus") for case in [
        Case("tus create without Tus-Resumable", "POST", "/cache/uploads", 412, "Tus-Resumable",
             kwargs={"headers": {"Upload-Length": "5"}}),
        Case("tus create with a text length", "POST", "/cache/uploads", 400, "non-negative integer",
             kwargs={"headers": {**tus, "Upload-Length": "five"}}),
        Case("tus create larger than the limit", "POST", "/cache/uploads", 413, "larger than the limit",
             kwargs={"headers": {**tus, "Upload-Length": str(10 * MAX_UPLOAD)}}),
        Case("tus create with deferred length", "POST", "/cache/uploads", 400, "not supported",
             kwargs={"headers": {**tus, "Upload-Defer-Length": "1"}}),
        Case("tus create with broken metadata", "POST", "/cache/uploads", 400, "not base64",
             kwargs={"headers": {**tus, "Upload-Length": "5", "Upload-Metadata": "filename <script>"}}),
        Case("tus create with a body", "POST", "/cache/uploads", 400, "PATCH",
             kwargs={"headers": {**tus, "Upload-Length": "5"}, "data": b"12345"}),
        Case("tus patch of an unknown upload", "PATCH", unknown, 404, "no upload",
             kwargs={"headers": patch, "data": b"abc"}),
        Case("tus patch with a path in the id", "PATCH", "/cache/uploads/..%2f..%2fetc", 405, "not allowed",
             kwargs={"headers": patch, "data": b"abc"}),
        Case("tus patch without its content type", "PATCH", unknown, 415, "offset+octet-stream",
             kwargs={"headers": {**tus, "Upload-Offset": "0"}, "data": b"abc"}),
        Case("tus patch with a negative offset", "PATCH", unknown, 400, "non-negative integer",
             kwargs={"headers": {**patch, "Upload-Offset": "-5"}, "data": b"abc"}),
        Case("tus delete of an unknown upload", "DELETE", unknown, 404, "no upload", kwargs={"headers": tus}),
        Case("missing: not JSON", "POST", "/cache/missing", 400, "hashes", kwargs={"data": b"x"}),
        Case("missing: junk hash", "POST", "/cache/missing", 400, "not a content hash",
             kwargs={"json": {"hashes": ["../../etc/passwd"]}}),
        Case("missing: too many", "POST", "/cache/missing", 400, "at most 1000",
             kwargs={"json": {"hashes": ["a" * 64] * 1001}}),
    ]]


ALL_CASES_BUILDERS = (upload_cases, recipe_cases, run_cases, listing_cases, token_cases, import_cases, worker_cases,
                      ops_cases, tus_cases, steer_cases)


def static_cases() -> list[Case]:
    return [case for builder in ALL_CASES_BUILDERS for case in builder()]


def route_table():
    """The real app on throwaway directories with a Redis client that never connects: enough to
    match URLs at collection time (creating the app opens no connection)."""
    import tempfile

    from l1web.state import StateManager
    from l1web.web import create_app

    scratch = Path(tempfile.mkdtemp(prefix="l1-routes-"))
    settings = Settings(secret_key="routes", testing=True, cache_dir=scratch / "cache", data_dir=scratch / "data")
    return create_app(settings, state=StateManager(redis.Redis(host="127.0.0.1", port=1)))


def _id_case_params() -> list[Case]:
    return id_cases(route_table())


# Clients -------------------------------------------------------------------------------------------------
def make_token(kind: str, world: World) -> str:
    import base64
    import json as jsonlib

    l1_url = world.app.extensions["l1"].settings.l1_public_url
    l2 = world.dev_l2
    if kind == "forged":
        real = l2.mint("alice", l1_url)
        head, body, _sig = real.split(".")
        return f"{head}.{body}.{base64.urlsafe_b64encode(b'x' * 32).rstrip(b'=').decode()}"
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(jsonlib.dumps(obj).encode()).rstrip(b"=").decode()

    if kind == "alg-none":
        return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'sub': 'admin', 'iss': l2.url, 'aud': l1_url})}."
    if kind == "foreign-issuer":
        real = l2.mint("alice", l1_url)
        head, _body, sig = real.split(".")
        return f"{head}.{part({'sub': 'alice', 'iss': 'http://169.254.169.254', 'aud': l1_url})}.{sig}"
    if kind == "expired":
        return l2.mint("alice", l1_url, ttl=-60)
    if kind == "other-l1":
        return l2.mint("alice", "http://other-l1.example")
    if kind == "revoked":
        token = l2.mint("alice", l1_url)
        answer = world.app.test_client().post("/auth/revoke", json={"token": token}, headers=JSON)
        assert answer.status_code == 200, answer.data
        return token
    if kind == "malformed-quote":
        return 'abc"def'
    if kind == "malformed-space":
        return "abc def"
    if kind == "oversized":
        return "a" * 10_000
    raise AssertionError(kind)


@pytest.fixture()
def client_for(world: World):
    def pick(who: str):
        if who == "alice":
            return world.alice
        if who == "admin":
            return world.admin
        if who == "nocsrf":
            world.alice.csrf = ""
            return world.alice
        client = world.app.test_client()
        if who.startswith("cookie:"):
            client.set_cookie("l1_session", "forged-" + "x" * 40)
        return client
    return pick


def prepare(case: Case, world: World) -> Case:
    """Mint the tokens a case names (before the snapshot: minting is the test's, not the app's)."""
    kwargs, path, who = case.kwargs, case.path, case.who
    if "TOKEN:" in path:
        base, kind = path.split("TOKEN:")
        path = base + make_token(kind, world)
    if "json" in kwargs and isinstance(kwargs["json"], dict):
        body = dict(kwargs["json"])
        if str(body.get("token", "")).startswith("TOKEN:"):
            body["token"] = make_token(body["token"].split(":")[1], world)
        if isinstance(body.get("tokens"), list):
            body["tokens"] = [make_token(t.split(":")[1], world) if str(t).startswith("TOKEN:") else t
                              for t in body["tokens"]]
        kwargs = {**kwargs, "json": body}
    if who.startswith("bearer:"):
        token = make_token(who.split(":")[1], world)
        kwargs = {**kwargs, "headers": {**kwargs.get("headers", {}), "Authorization": f"Bearer {token}"}}
        who = "anon"
    return replace(case, path=path, kwargs=kwargs, who=who)


def _touch_world(case: Case, world: World) -> None:
    """Make the objects a case refers to before the snapshot."""
    text = repr(case.kwargs) + case.path
    for name in ("run", "cfg", "img"):
        if "{" + name + "}" in text:
            getattr(world, name)
    if case.who == "admin":
        world.admin


def check(case: Case, world: World, client_for, watch, tmp_path: Path) -> None:
    _touch_world(case, world)
    case = prepare(case, world)
    canary = tmp_path / "canary"
    case = _with_canary(case, canary)
    with watch() as seen:
        response = request_for(case, world, client_for)
    assert response.status_code == case.status, (response.status_code, response.data[:400])
    message = message_of(response)
    assert case.says.lower() in message.lower(), message[:600]
    if not response.is_json:
        assert "<script>alert" not in response.get_data(as_text=True)
    seen.assert_nothing_changed(case.may_write, case.l2_calls)
    assert not canary.exists(), "a YAML tag ran code"


def _with_canary(case: Case, canary: Path) -> Case:
    data = case.kwargs.get("data")
    if isinstance(data, bytes) and b"CANARY" in data:
        return replace(case, kwargs={**case.kwargs, "data": data.replace(b"CANARY", str(canary).encode())})
    return case


def grouped(cases: list[Case]) -> list:
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.group or case.id, []).append(case)
    return [pytest.param(members, id=name) for name, members in groups.items()]


@pytest.mark.parametrize("cases", grouped(_id_case_params()))
def test_malformed_ids_are_refused_and_change_nothing(cases, world, client_for, watch, tmp_path, subtests):
    for case in cases:
        with subtests.test(msg=case.id):
            check(case, world, client_for, watch, tmp_path)


@pytest.mark.parametrize("cases", grouped(static_cases()))
def test_hostile_request_is_refused_and_changes_nothing(cases, world, client_for, watch, tmp_path, subtests):
    for case in cases:
        with subtests.test(msg=case.id):
            check(case, world, client_for, watch, tmp_path)


# 8. Cross-site requests: every state-changing route ------------------------------------------------------
#: (method, path, who, kwargs): a request that would change something if it were let through.
UNSAFE_REQUESTS = [
    ("POST", "/auth/revoke", "alice", {}),
    ("POST", "/auth/revoke-user", "anon", {"json": {"username": "alice", "tokens": ["ALICE_TOKEN"]}}),
    ("POST", "/cache/import", "admin", {"query_string": {"path": "{imports}/a.bin"}}),
    ("POST", "/cache/upload", "alice", {"data": b"fresh bytes"}),
    ("POST", "/cache/uploads", "alice", {"headers": {"Tus-Resumable": "1.0.0", "Upload-Length": "5"}}),
    ("PATCH", "/cache/uploads/" + "0" * 32, "alice", {"data": b"abc", "headers": {
        "Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}}),
    ("DELETE", "/cache/uploads/" + "0" * 32, "alice", {"headers": {"Tus-Resumable": "1.0.0"}}),
    ("POST", "/cache/missing", "alice", {"json": {"hashes": []}}),
    ("DELETE", "/cache/{img}", "alice", {}),
    ("DELETE", "/cache/{img}/x", "alice", {}),
    ("POST", "/cache/{img}/share", "alice", {}),
    ("DELETE", "/cache/{img}/share", "alice", {}),
    ("POST", "/configs/{cfg}/share", "alice", {}),
    ("DELETE", "/configs/{cfg}/share", "alice", {}),
    ("POST", "/media/{img}/share", "alice", {"data": {"shared": "1"}}),
    ("POST", "/recipe/{cfg}/share", "alice", {"data": {"shared": "1"}}),
    ("POST", "/configs/upload", "alice", {"data": RECIPE.replace("invert-it", "other").encode(), "headers": YAML}),
    ("DELETE", "/configs/{cfg}", "alice", {}),
    ("POST", "/configs/{cfg}/run", "alice", {"json": {"inputs": {"input_image": "{img}"}, "output_name": "b"}}),
    ("POST", "/logout", "alice", {}),
    ("POST", "/media", "alice", {"data": multipart([("file", "n.bin", b"new")]), "headers": MULTIPART}),
    ("POST", "/media/{img}/delete", "alice", {}),
    ("POST", "/recipe/{cfg}/delete", "alice", {}),
    ("POST", "/recipe/{cfg}/run", "alice", {"data": {"input.input_image": "{img}", "output_name": "c"}}),
    ("POST", "/recipes", "alice", {"data": {"yaml": RECIPE.replace("invert-it", "third")}}),
    ("POST", "/run/{run}/cancel", "alice", {}),
    ("POST", "/runs", "alice", {"json": {"recipe": "invert", "inputs": ["{img}"]}}),
    ("PUT", "/notify", "alice", {"json": {"secret": "s" * 20}}),
    ("DELETE", "/runs/{run}", "alice", {}),
    ("POST", "/runs/{run}/cancel", "alice", {}),
    ("POST", "/runs/{run}/rerun", "alice", {}),
    ("POST", "/runs/{run}/pause", "alice", {}),
    ("POST", "/runs/{run}/priority", "alice", {"json": {"priority": 0}}),
    ("POST", "/runs/{run}/resume", "alice", {}),
    ("POST", "/runs/{run}/requeue", "alice", {}),
    ("POST", "/admin/queue/pause", "admin", {}),
    ("POST", "/batches", "alice", {"json": {"recipe": "invert", "inputs": ["{img}"]}}),
    ("POST", "/batches/" + "0" * 32 + "/cancel", "alice", {}),
    ("POST", "/runs/bulk", "alice", {"json": {"action": "cancel", "runs": ["{run}"]}}),
    ("POST", "/workers/w1/drain", "admin", {}),
    ("PUT", "/worker/cache/" + SHA3_OF_DATA, "anon", {"data": b"rendered bytes", "headers": WORKER}),
    ("DELETE", "/worker/cache/{img}", "anon", {"headers": WORKER}),
    ("POST", "/runs/{run}/publish", "alice", {}),
    ("POST", "/run/{run}/publish", "alice", {}),
    ("POST", "/rq/requeue/runs", "admin", {}),
    ("POST", "/rq/job/x/delete", "admin", {}),
    ("POST", "/rq/job/x/requeue", "admin", {}),
    ("POST", "/rq/queue/runs/queued/empty", "admin", {}),
    ("POST", "/rq/queue/runs/compact", "admin", {}),
]
CROSS_SITE = {
    "sec-fetch-site-cross-site": ({"Sec-Fetch-Site": "cross-site"}, "cross-site"),
    "sec-fetch-site-same-site": ({"Sec-Fetch-Site": "same-site"}, "cross-site"),
    "foreign-origin": ({"Origin": "https://evil.example"}, "cross-origin"),
    "null-origin": ({"Origin": "null"}, "cross-origin"),
    "lookalike-origin": ({"Origin": "http://127.0.0.1:8100.evil.example"}, "cross-origin"),
}


def csrf_cases() -> list[Case]:
    cases = []
    for method, path, who, kwargs in UNSAFE_REQUESTS:
        for name, (headers, says) in CROSS_SITE.items():
            sent = {**kwargs, "headers": {**kwargs.get("headers", {}), **headers}}
            cases.append(Case(f"{method} {path} {name}", method, path, 403, says, who=who, kwargs=sent,
                              group=f"{method} {path}"))
        if who != "anon":  # last in its group: it drops the client's CSRF token
            cases.append(Case(f"{method} {path} without CSRF token", method, path, 403, "CSRF token",
                              who="nocsrf" if who == "alice" else who, kwargs=kwargs, group=f"{method} {path}"))
    return cases


@pytest.mark.parametrize("cases", grouped(csrf_cases()))
def test_cross_site_state_changes_are_refused(cases, world, client_for, watch, tmp_path, subtests):
    (tmp_path / "imports" / "a.bin").write_bytes(b"import me")
    for case in cases:
        if "ALICE_TOKEN" in repr(case.kwargs):
            case = replace(case, kwargs={"json": {"username": "alice", "tokens": [world.alice.token]},
                                         "headers": case.kwargs["headers"]})
        if case.who == "admin" and case.id.endswith("without CSRF token"):
            world.admin.csrf = ""
        with subtests.test(msg=case.id):
            check(case, world, client_for, watch, tmp_path)


def test_every_state_changing_route_has_cross_site_cases(app):
    unsafe = {(rule.endpoint, method) for rule in app.url_map.iter_rules()
              for method in rule.methods - {"GET", "HEAD", "OPTIONS"}}
    covered = {(_route_of(app, path.replace("{img}", "a" * 64).replace("{cfg}", "b" * 64)
                          .replace("{run}", "c" * 64), method), method) for method, path, _w, _k in UNSAFE_REQUESTS}
    covered |= {("runs.act", "POST")}
    assert unsafe - covered == set(), "state-changing routes without cross-site cases"


# 9. Route coverage -----------------------------------------------------------------------------------------
#: Routes that take no user input besides what every route gets (cookie, Accept), with why.
NO_INPUT = {
    ("home.index", "GET"): "server info; no parameters",
    ("effects.index", "GET"): "static list of effects",
    ("cache.assets", "GET"): "static list of named assets",
    ("auth.logout_page", "GET"): "a page with a form; no parameters",
    ("auth.login", "GET"): "only `next`, covered by test_open_redirects_in_next_are_refused",
    ("auth.auth", "GET"): "also covered by test_open_redirects_in_next_are_refused",
    ("apidocs.docs", "GET"): "a static page",
    ("apidocs.openapi_json", "GET"): "the document; no parameters (fuzzed from in tests/test_schemathesis.py)",
    ("apidocs.download_client", "GET"): "the CLI script; no parameters",
    ("ops.healthz", "GET"): "no parameters, touches nothing",
    ("ops.readyz", "GET"): "no parameters",
    ("notify.show", "GET"): "the signed-in user's own settings; no parameters",
    ("runs.queue_state", "GET"): "no parameters; admins only (tests/test_runs_pause.py checks a non-admin gets 403)",
}


def test_every_route_has_hostile_cases(app):
    routes = {(rule.endpoint, method) for rule in app.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    fake = {"{img}": "a" * 64, "{cfg}": "b" * 64, "{run}": "c" * 64, "{imports}": "/tmp"}
    covered = set()
    for case in [*_id_case_params(), *static_cases(), *csrf_cases()]:
        path = case.path
        for key, value in fake.items():
            path = path.replace(key, value)
        endpoint = _route_of(app, path.split("?")[0], case.method)
        if endpoint:
            covered.add((endpoint, case.method))
    missing = sorted(routes - covered - set(NO_INPUT))
    assert missing == [], f"routes with no hostile-input case (add rows, or list them in NO_INPUT): {missing}"


# 10. Open redirects ----------------------------------------------------------------------------------------
NEXT_PAYLOADS = [
    "//evil.example", "/\\evil.example", "https://evil.example", "javascript:alert(1)", "%2F%2Fevil.example",
    "/%09/evil.example", "/\t/evil.example", "\\\\evil.example", "http:/evil.example", "/%2F%2Fevil.example",
    "/%5Cevil.example", "data:text/html,<script>alert(1)</script>", "///evil.example", " //evil.example",
]


@pytest.mark.parametrize("target", NEXT_PAYLOADS)
def test_open_redirects_in_next_are_refused(target, app, dev_l2):
    l1_url = app.extensions["l1"].settings.l1_public_url
    client = app.test_client()
    answer = client.get("/auth", query_string={"auth_token": dev_l2.mint("alice", l1_url), "next": target})
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/"
    page = client.get("/login", query_string={"next": target}).get_data(as_text=True)
    assert "evil.example" not in html.unescape(page).replace("%2F", "/")


def test_a_local_next_is_kept(app, dev_l2):
    l1_url = app.extensions["l1"].settings.l1_public_url
    answer = app.test_client().get("/auth", query_string={"auth_token": dev_l2.mint("alice", l1_url),
                                                          "next": "/runs?status=failed"})
    assert answer.headers["Location"] == "/runs?status=failed"


# 11. Active content downloaded back ----------------------------------------------------------------------------
ACTIVE = {
    "svg-with-script": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    "svg-with-xml-prolog": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
    "html": b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>",
    "png-html-polyglot": png_bytes() + b"<html><script>alert(1)</script></html>",
}


@pytest.mark.parametrize("name", ACTIVE)
@pytest.mark.parametrize("inline", [False, True])
def test_active_content_downloads_as_inert_attachment(name, inline, alice_client):
    stored = alice_client.post("/cache/upload", data=ACTIVE[name], query_string={"filename": f"{name}.html"},
                               headers=JSON)
    assert stored.status_code == 201, stored.data
    answer = alice_client.get(f"/cache/{stored.json['digest']}", query_string={"inline": "1"} if inline else {})
    answer.close()
    assert answer.status_code == 200
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in answer.headers["Content-Security-Policy"]
    mimetype = answer.mimetype
    assert "html" not in mimetype and "svg" not in mimetype and "xml" not in mimetype
    if mimetype == "application/octet-stream":
        assert answer.headers["Content-Disposition"].startswith("attachment")
    assert not answer.headers["Content-Disposition"].endswith((".html", ".svg", '.html"', '.svg"'))


# 12. Markup and template syntax in names, rendered back ------------------------------------------------------
#: A payload without slashes, for file names (their path parts are dropped before display).
FILE_PAYLOAD = "<b onmouseover=alert(1)>{{7*7}}<img src=x onerror=alert(2)>.png"


def assert_escaped(page: str, tag: str = "<script>alert(1)") -> None:
    assert tag not in page and "<img src=x" not in page
    assert html.escape(tag, quote=False) in page
    assert "{{7*7}}" in page  # shown as typed, never evaluated


def test_markup_in_an_upload_file_name_is_escaped_on_media_pages(alice_client):
    body = multipart([("file", FILE_PAYLOAD, png_bytes())])
    stored = alice_client.post("/cache/upload", data=body, headers=MULTIPART)
    assert stored.status_code == 201, stored.data
    digest = stored.json["digest"]
    for page in ("/media", f"/media/{digest}"):
        page_html = alice_client.get(page, headers={"Accept": "text/html"}).get_data(as_text=True)
        assert_escaped(page_html, "<b onmouseover=alert(1)")


def test_markup_in_a_recipe_description_and_version_is_escaped(alice_client):
    text = RECIPE.replace("Invert the colours of one image", "'" + PAYLOAD.replace("'", "''") + "'")
    text = text.replace('version: "1.0"', "version: '<script>alert(1)</script>{{7*7}}'")
    stored = alice_client.post("/configs/upload", data=text.encode(), headers=YAML)
    assert stored.status_code == 201, stored.data
    for page in ("/recipes", f"/recipe/{stored.json['id']}"):
        assert_escaped(alice_client.get(page, headers={"Accept": "text/html"}).get_data(as_text=True))


@pytest.mark.parametrize("path", [
    "/recipe/%3Cscript%3Ealert(1)%3C%2Fscript%3E%7B%7B7*7%7D%7D",
    "/run/%3Cscript%3Ealert(1)%3C%5Cscript%3E%7B%7B7*7%7D%7D",
    "/runs?status=%3Cscript%3Ealert(1)%3C%2Fscript%3E%7B%7B7*7%7D%7D",
    "/media/%3Cscript%3Ealert(1)%3C%2Fscript%3E%7B%7B7*7%7D%7D",
])
def test_markup_echoed_in_error_pages_is_escaped(path, alice_client):
    answer = alice_client.get(path, headers={"Accept": "text/html"})
    assert answer.status_code in (400, 404)
    page = answer.get_data(as_text=True)
    assert "<script>alert(1)" not in page
    assert "{{7*7}}" in page or "404" in page


def test_markup_in_a_run_form_input_is_escaped_in_the_flash(world):
    answer = world.alice.post(f"/recipe/{world.cfg}/run", data={"input.input_image": PAYLOAD},
                              follow_redirects=True, headers={"Accept": "text/html"})
    assert answer.status_code == 200
    assert_escaped(answer.get_data(as_text=True))
