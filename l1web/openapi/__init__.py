"""L1's OpenAPI 3 document, kept as YAML beside this module and merged here.

`base.yaml` holds the frame (info, auth schemes, shared components); every other `*.yaml` in
this folder describes one area of the API with its own `paths` and `components`. Splitting by
area lets several people add endpoints without editing the same file. Merging refuses a path,
method or component defined twice, and adds to every operation the responses every endpoint
can give: 401 when it needs sign-in, and a `default` error body (`{"error", "message"}`).
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import yaml

#: Folder holding the document's YAML files.
HERE = Path(__file__).parent
#: The file that holds the frame; merged first.
BASE = "base.yaml"
#: HTTP methods an OpenAPI path item may hold as operations.
OPERATIONS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class DocumentError(Exception):
    """The YAML files do not merge into one document (a duplicate, or a file of the wrong shape)."""


@lru_cache(maxsize=1)
def _merged() -> dict:
    document = _load(HERE / BASE)
    for path in sorted(HERE.glob("*.yaml")):
        if path.name != BASE:
            _merge_area(document, _load(path), path.name)
    _add_common_responses(document)
    return document


def document(server_url: str | None = None) -> dict:
    """The whole document (a fresh copy), with `servers` naming this server when given."""
    out = copy.deepcopy(_merged())
    if server_url:
        out["servers"] = [{"url": server_url.rstrip("/") or "/"}]
    return out


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise DocumentError(f"{path.name} is not a YAML mapping")
    return data


def _merge_area(document: dict, area: dict, name: str) -> None:
    unknown = set(area) - {"paths", "components"}
    if unknown:
        raise DocumentError(f"{name}: only 'paths' and 'components' belong in an area file, not {sorted(unknown)}")
    paths = document.setdefault("paths", {})
    for url, item in (area.get("paths") or {}).items():
        target = paths.setdefault(url, {})
        for key, value in item.items():
            if key in target:
                raise DocumentError(f"{name}: {key} {url} is already defined in another file")
            target[key] = value
    components = document.setdefault("components", {})
    for kind, entries in (area.get("components") or {}).items():
        section = components.setdefault(kind, {})
        for key, value in entries.items():
            if key in section:
                raise DocumentError(f"{name}: components/{kind}/{key} is already defined")
            section[key] = value


def _add_common_responses(document: dict) -> None:
    default_security = document.get("security", [])
    for item in document["paths"].values():
        for method in OPERATIONS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            security = operation.get("security", default_security)
            needs_sign_in = bool(security) and {} not in security
            if needs_sign_in and method != "head":
                responses.setdefault("401", {"$ref": "#/components/responses/Unauthorized"})
            if method != "head":
                responses.setdefault("default", {"$ref": "#/components/responses/Error"})


def operations() -> set[tuple[str, str]]:
    """Every (path, METHOD) the document describes, paths in Flask's `<name>` spelling."""
    found = set()
    for url, item in _merged()["paths"].items():
        flask_path = url.replace("{", "<").replace("}", ">")
        found.update((flask_path, method.upper()) for method in OPERATIONS if method in item)
    return found
