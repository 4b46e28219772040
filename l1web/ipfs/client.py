"""A small client for the Kubo-compatible HTTP RPC API (`/api/v0/...`), with a timeout on every call.

Written against the subset js-ipfs 0.66 and Kubo share (docs/ipfs.md): every call is a POST; the
file part of `add` carries a Content-Type (js-ipfs refuses it otherwise); `cat` and `name/publish`
get a server-side `timeout` too, because a missing CID blocks an offline node for ever; IPNS names
are kept exactly as the node returned them (js-ipfs `12D3KooW…`, Kubo `k51…`), never converted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import BinaryIO

import requests

from l1web.errors import L1Error

#: Seconds to connect to the RPC API (it is local or on the LAN).
CONNECT_TIMEOUT = 3.0
#: Seconds an ordinary call may take to answer.
DEFAULT_TIMEOUT = 30.0
#: Bytes per chunk when streaming `cat` to a file.
CHUNK = 1024 * 1024


class IPFSError(L1Error):
    """An IPFS RPC call failed; the message names the call and the node's own reason."""

    status = 502
    code = "ipfs_error"


def api_base(value: str) -> str:
    """`http://host:port` from an IPFS_API value: a URL or a multiaddr like `/ip4/127.0.0.1/tcp/5001`."""
    value = value.strip().rstrip("/")
    if value.startswith(("http://", "https://")):
        return value.removesuffix("/api/v0")
    parts = value.strip("/").split("/")
    if len(parts) >= 4 and parts[0] in ("ip4", "ip6", "dns", "dns4", "dns6") and parts[2] == "tcp":
        host = f"[{parts[1]}]" if parts[0] == "ip6" else parts[1]
        return f"http://{host}:{parts[3]}"
    raise ValueError(f"IPFS_API must be an http URL or a /ip4/…/tcp/… multiaddr, not {value!r}")


class IPFSClient:
    """One node's RPC API. Thread-safe enough for our use (one requests.Session per client)."""

    def __init__(self, api: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base = api_base(api)
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # never send a local node's traffic through a proxy

    # Plumbing --------------------------------------------------------------------------------
    def _post(self, call: str, params: dict | None = None, *, files=None, stream: bool = False,
              timeout: float | None = None) -> requests.Response:
        wait = timeout or self.timeout
        try:
            response = self.session.post(f"{self.base}/api/v0/{call}", params=params, files=files,
                                         stream=stream, timeout=(CONNECT_TIMEOUT, wait))
        except requests.RequestException as exc:
            raise IPFSError(f"IPFS {call} failed: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise IPFSError(f"IPFS {call} failed: HTTP {response.status_code}: {_reason(response)}")
        return response

    def _json(self, call: str, params: dict | None = None, **kwargs) -> dict:
        response = self._post(call, params, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise IPFSError(f"IPFS {call} answered something that is not JSON: {response.text[:200]!r}") from None

    # Calls ------------------------------------------------------------------------------------
    def version(self) -> str:
        return str(self._json("version").get("Version", ""))

    def add(self, data: bytes | BinaryIO, *, name: str = "file", pin: bool = True) -> str:
        """Add bytes (or an open binary file), pinned by default; the CID (CIDv0 `Qm…`, as Kubo)."""
        files = {"file": (name, data, "application/octet-stream")}
        response = self._post("add", {"pin": str(pin).lower(), "quieter": "true"}, files=files)
        # One JSON object per line (progress and directories may add lines); the last names the file.
        lines = [line for line in response.text.splitlines() if line.strip()]
        try:
            cid = json.loads(lines[-1])["Hash"]
        except (IndexError, ValueError, KeyError, TypeError):
            raise IPFSError(f"IPFS add answered without a Hash: {response.text[:200]!r}") from None
        return str(cid)

    def cat(self, cid: str, *, timeout: float | None = None) -> bytes:
        return b"".join(self.cat_iter(cid, timeout=timeout))

    def cat_iter(self, cid: str, *, timeout: float | None = None) -> Iterator[bytes]:
        """The content of `cid` in chunks; a CID the node cannot find fails after `timeout`."""
        wait = timeout or self.timeout
        response = self._post("cat", {"arg": cid, "timeout": f"{wait:g}s"}, stream=True, timeout=wait + 5)
        try:
            yield from response.iter_content(CHUNK)
        except requests.RequestException as exc:
            raise IPFSError(f"IPFS cat {cid} broke off: {exc}") from None
        finally:
            response.close()

    def pin_add(self, cid: str) -> None:
        self._json("pin/add", {"arg": cid, "timeout": f"{self.timeout:g}s"})

    def pins(self) -> set[str]:
        """CIDs pinned recursively (what `add` pins)."""
        return set((self._json("pin/ls", {"type": "recursive"}).get("Keys") or {}).keys())

    def key_list(self) -> dict[str, str]:
        """Key name → IPNS name (js-ipfs lists every key twice; a dict folds that)."""
        keys = self._json("key/list").get("Keys") or []
        return {str(k["Name"]): str(k["Id"]) for k in keys}

    def key_gen(self, name: str) -> str:
        return str(self._json("key/gen", {"arg": name, "type": "ed25519"})["Id"])

    def key_id(self, name: str) -> str:
        """The IPNS name of key `name`, generating the key on first use."""
        found = self.key_list().get(name)
        return found or self.key_gen(name)

    def name_publish(self, cid: str, *, key: str, lifetime: str = "48h", ttl: str = "1m") -> str:
        """Point this key's IPNS name at `cid` (stored locally at once; `allow-offline`)."""
        params = {"arg": f"/ipfs/{cid}", "key": key, "lifetime": lifetime, "ttl": ttl,
                  "allow-offline": "true", "resolve": "false", "timeout": f"{self.timeout:g}s"}
        return str(self._json("name/publish", params)["Name"])

    def name_resolve(self, name: str, *, timeout: float | None = None) -> str:
        """The CID an IPNS name points at (`/ipfs/<cid>` → `<cid>`)."""
        wait = timeout or self.timeout
        arg = name if name.startswith("/ipns/") else f"/ipns/{name}"
        path = str(self._json("name/resolve", {"arg": arg, "timeout": f"{wait:g}s"}, timeout=wait + 5)["Path"])
        if not path.startswith("/ipfs/"):
            raise IPFSError(f"IPFS name/resolve {name} gave {path!r}, not an /ipfs/ path")
        return path.removeprefix("/ipfs/").split("/")[0]

    def shutdown(self) -> None:
        self._post("shutdown", timeout=5)


def _reason(response: requests.Response) -> str:
    """The node's error message (Kubo shape `{"Message","Code","Type"}`) or the start of the body."""
    try:
        body = response.json()
        if isinstance(body, dict) and body.get("Message"):
            return str(body["Message"])
    except ValueError:
        pass
    return response.text[:200] or response.reason
