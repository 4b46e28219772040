#!/usr/bin/env python3
"""L1 command-line client: render media through an effect or recipe on an L1 server.

    python render.py login --token TOKEN             # check a token (from L2) and keep it
    python render.py dog cat --sync                  # the sample cat through the dog effect, and wait
    python render.py my-recipe --input image=photo.jpg --sync --output out.png
    python render.py invert 3f2a…(hash) --json       # submit and print the run as JSON
    python render.py logout                          # revoke the kept token and forget it

Inputs are asset names, content hashes, or local files (hashed here, uploaded only when the
server lacks them). Needs only `requests` and the standard library, so it runs as one file:
`GET /download/client` on a server serves it with that server as the default.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import queue
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

#: Server used when neither --server, L1_SERVER nor `login` says otherwise (`/download/client` fills it in).
DEFAULT_SERVER = "http://127.0.0.1:8100"
#: Seconds between status polls while waiting, when the server cannot wait for the run's end itself.
POLL_INTERVAL = 0.5
#: Seconds each status request lets the server wait for the run's end (when no progress bar is drawn).
LONG_WAIT = 20.0
#: Seconds one HTTP request (other than an upload or download) may take.
HTTP_TIMEOUT = 30
#: Run states in which the run may still change.
LIVE = ("pending", "running")
#: Step states whose output exists.
DONE = ("cached", "completed")
#: Characters of the progress bar.
BAR_WIDTH = 30
#: Environment variable naming the config file (tests point it at a temporary file).
CONFIG_ENV = "L1_CONFIG"
#: Words that start a subcommand rather than name an effect or recipe.
COMMANDS = ("login", "logout", "whoami", "upload")
#: Bytes per tus PATCH request. bench/bench_resumable.py sweeps 1, 4, 8 and 16 MiB: 1 MiB pays
#: the per-request cost visibly; 8 and 16 MiB were fastest in its quieter runs on the shared
#: machine. 8 MiB also bounds what a failure re-sends and what the pipelined bodies hold.
UPLOAD_CHUNK = 8 * 1024 * 1024
#: PATCH requests sent ahead of their answers on the one connection (HTTP/1.1 pipelining), so
#: the server hashes chunk k while chunk k+1 arrives. Safe for PATCH under tus: each names its
#: Upload-Offset, so a repeated or misordered one is refused (409), never applied twice.
PIPELINE_DEPTH = 2
#: Times an interrupted upload is resumed (HEAD, then PATCH from the server's offset) before giving up.
UPLOAD_RETRIES = 5
#: Most hashes one POST /cache/missing may carry.
MISSING_BATCH = 1000
TUS = {"Tus-Resumable": "1.0.0"}

# Exit statuses: each kind of failure has its own, so scripts can tell them apart.
EXIT_OK = 0
EXIT_RUN_FAILED = 1  # the run failed or was cancelled
EXIT_USAGE = 2  # bad arguments (argparse uses 2 as well)
EXIT_UNREACHABLE = 3  # no answer from the server
EXIT_AUTH = 4  # no token, or the server refused it (401/403)
EXIT_NOT_FOUND = 5  # unknown effect, recipe, input or run (404)
EXIT_REFUSED = 6  # any other refusal or server error
EXIT_INTERRUPTED = 130


class ClientError(Exception):
    """A failure to report to the user, with the exit status it maps to."""

    def __init__(self, message: str, status: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.status = status


# Entry points ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in COMMANDS else "render"
    args = parse_args(command, argv[1:] if command != "render" else argv)
    try:
        return {"login": login, "logout": logout, "whoami": whoami, "render": render,
                "upload": upload_command}[command](args)
    except ClientError as exc:
        return fail(args, str(exc), exc.status)
    except requests.ConnectionError:
        return fail(args, f"cannot reach the L1 server at {args.server} (is it running? try --server)",
                    EXIT_UNREACHABLE)
    except requests.Timeout:
        return fail(args, f"the L1 server at {args.server} did not answer in time", EXIT_UNREACHABLE)
    except KeyboardInterrupt:
        return fail(args, "interrupted (a submitted run goes on on the server)", EXIT_INTERRUPTED)


def fail(args: argparse.Namespace, message: str, status: int) -> int:
    print(f"render.py: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"error": message, "exit_status": status}))
    return status


def parse_args(command: str, argv: list[str]) -> argparse.Namespace:
    config = read_config()
    server = os.environ.get("L1_SERVER") or config.get("server") or DEFAULT_SERVER
    parser = argparse.ArgumentParser(prog=f"render.py {command}" if command != "render" else "render.py",
                                     description=COMMAND_HELP[command])
    parser.add_argument("--server", metavar="URL", default=server,
                        help="the L1 server's URL (default: %(default)s; env L1_SERVER, or the one you logged in to)")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    if command == "render":
        add_render_args(parser)
    if command == "upload":
        parser.add_argument("files", nargs="+", help="local files to put into the server's cache")
    if command in ("render", "login", "whoami", "upload"):
        parser.add_argument("--token", metavar="TOKEN",
                            help="an L2 token for this server (else L1_TOKEN, else the one kept by login)")
    args = parser.parse_args(argv)
    args.server = args.server.rstrip("/")
    args.config = config
    if command == "render" and args.inputs and args.input:
        parser.error("give inputs either in order or as --input NAME=VALUE, not both")
    return args


COMMAND_HELP = {
    "render": "Render media on an L1 server. Also: render.py login, render.py logout, render.py whoami "
              "(each with --help).",
    "login": "Check a token with the server and keep it (in $L1_CONFIG, else ~/.config/l1/config.json, mode 0600).",
    "logout": "Revoke the kept token on the server and forget it.",
    "whoami": "Show who the server takes you for.",
    "upload": "Put local files into the server's cache (only those it lacks; resumable: run it again "
              "after an interruption and it goes on where it stopped). Prints each file's hash.",
}


def add_render_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="effect name (dog, invert, …), recipe name or recipe id")
    parser.add_argument("inputs", nargs="*", help="asset names, content hashes or local files, in order")
    parser.add_argument("--input", action="append", default=[], metavar="NAME=VALUE",
                        help="a named input of a recipe (asset name, hash or local file)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=NUMBER",
                        help="a parameter of a single effect (see GET /effects)")
    parser.add_argument("--sync", action="store_true", help="wait for the run to finish")
    parser.add_argument("--output", metavar="FILE", help="download the result to this file (implies --sync)")
    parser.add_argument("--output-name", metavar="NAME", help="a name for the output")
    parser.add_argument("--force", action="store_true", help="render again even if this run exists")


# The config file --------------------------------------------------------------------------------
def config_path() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "l1" / "config.json"


def read_config() -> dict:
    """`{"server": URL, "tokens": {URL: token}}`; empty when there is none or it is unreadable."""
    try:
        data = json.loads(config_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_config(data: dict) -> Path:
    """Write the config readable by its owner only (0600), replacing the old one in one step."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
    return path


def token_for(args: argparse.Namespace) -> str | None:
    return getattr(args, "token", None) or os.environ.get("L1_TOKEN") or \
        (args.config.get("tokens") or {}).get(args.server)


def session_for(token: str | None) -> requests.Session:
    session = requests.Session()
    session.headers["Accept"] = "application/json"
    session.headers["User-Agent"] = "l1-render.py"
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


# login / logout / whoami -------------------------------------------------------------------------
def ask_server(session: requests.Session, server: str) -> dict:
    answer = session.get(f"{server}/auth/whoami", timeout=HTTP_TIMEOUT)
    check(answer, "checking the token")
    return answer.json()


def login(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("L1_TOKEN")
    if not token:
        if not sys.stdin.isatty():
            raise ClientError("give the token with --token (or L1_TOKEN)", EXIT_USAGE)
        import getpass

        token = getpass.getpass("Token from L2 (input hidden): ").strip()
    who = ask_server(session_for(token), args.server)
    config = dict(args.config)
    config["server"] = args.server
    config["tokens"] = {**(config.get("tokens") or {}), args.server: token}
    path = write_config(config)
    if args.json:
        print(json.dumps({"server": args.server, "username": who["username"], "config": str(path)}))
    else:
        print(f"Logged in to {args.server} as {who['username']}; token kept in {path}")
    return EXIT_OK


def logout(args: argparse.Namespace) -> int:
    tokens = dict(args.config.get("tokens") or {})
    token = tokens.pop(args.server, None)
    if token is None:
        raise ClientError(f"not logged in to {args.server}", EXIT_AUTH)
    revoked = True
    try:
        answer = session_for(None).post(f"{args.server}/auth/revoke", json={"token": token}, timeout=HTTP_TIMEOUT)
        revoked = answer.status_code in (200, 401)  # 401: already revoked or expired
    except requests.RequestException:
        revoked = False
    config = {**args.config, "tokens": tokens}
    if config.get("server") == args.server:
        config.pop("server")
    write_config(config)
    note = "" if revoked else " (the server could not be told; the token stays valid there until it expires)"
    if args.json:
        print(json.dumps({"server": args.server, "revoked": revoked}))
    else:
        print(f"Logged out of {args.server}{note}")
    return EXIT_OK


def whoami(args: argparse.Namespace) -> int:
    token = token_for(args)
    if not token:
        raise ClientError(f"not logged in to {args.server}: run render.py login --token TOKEN", EXIT_AUTH)
    who = ask_server(session_for(token), args.server)
    print(json.dumps(who) if args.json else f"{who['username']} on {args.server}"
          + (" (admin)" if who.get("is_admin") else ""))
    return EXIT_OK


# Rendering ----------------------------------------------------------------------------------------
def render(args: argparse.Namespace) -> int:
    token = token_for(args)
    if not token:
        raise ClientError(f"no token for {args.server}: run render.py login --token TOKEN, "
                          "or pass --token / set L1_TOKEN", EXIT_AUTH)
    session = session_for(token)
    inputs = resolve_inputs(session, args)
    sync = bool(args.sync or args.output)
    # Waiting, the submission itself asks the server to hold its answer until the run ends
    # (`Prefer: wait`): a small job is submitted and seen done in one request.
    run = submit(session, args, inputs, hold=first_hold(show=not args.json) if sync else 0)
    if not sync:
        print(json.dumps(run, indent=2) if args.json else run["id"])
        return EXIT_OK
    run = wait(session, args.server, run, show=not args.json)
    if run["status"] != "completed":
        if args.json:
            print(json.dumps({"run": run}, indent=2))
        reason = run.get("error") or failed_step_error(run) or "no reason given"
        print(f"render.py: run {run['id'][:12]} {run['status']}: {reason}", file=sys.stderr)
        return EXIT_RUN_FAILED
    if args.output:
        download(session, args.server, run["output_hash"], Path(args.output))
    report(session, args, run)
    return EXIT_OK


def resolve_inputs(session: requests.Session, args: argparse.Namespace) -> list[str] | dict[str, str]:
    if args.input:
        pairs = [item.split("=", 1) for item in args.input]
        if any(len(pair) != 2 or not pair[0] for pair in pairs):
            raise ClientError("--input takes NAME=VALUE", EXIT_USAGE)
        values = [value for _, value in pairs]
    else:
        values = list(args.inputs)
    digests = upload_missing(session, args.server, local_files(values), show=not args.json)
    resolved = [digests.get(value, value) for value in values]
    if args.input:
        return {name: value for (name, _), value in zip(pairs, resolved, strict=True)}
    return resolved


def local_files(values: list[str]) -> list[str]:
    """The values that name local files (the rest are asset names or hashes, for the server)."""
    files = []
    for value in values:
        path = Path(value)
        if path.is_file():
            files.append(value)
        elif os.sep in value and not path.exists():
            raise ClientError(f"no such file: {value}", EXIT_NOT_FOUND)
    return files


def upload_command(args: argparse.Namespace) -> int:
    token = token_for(args)
    if not token:
        raise ClientError(f"no token for {args.server}: run render.py login --token TOKEN, "
                          "or pass --token / set L1_TOKEN", EXIT_AUTH)
    for value in args.files:
        if not Path(value).is_file():
            raise ClientError(f"no such file: {value}", EXIT_NOT_FOUND)
    digests = upload_missing(session_for(token), args.server, args.files, show=not args.json)
    if args.json:
        print(json.dumps({"files": {value: digests[value] for value in args.files}}, indent=2))
    else:
        for value in args.files:
            print(f"{digests[value]}  {value}")
    return EXIT_OK


def upload_missing(session: requests.Session, server: str, files: list[str], *, show: bool) -> dict[str, str]:
    """Hash the files here, ask the server which it lacks (one round trip), upload only those."""
    digests = {value: sha3_file(Path(value)) for value in dict.fromkeys(files)}
    lacking = set(missing(session, server, list(dict.fromkeys(digests.values()))))
    for value, digest in digests.items():
        if digest in lacking:
            lacking.discard(digest)
            resumable_upload(session, server, Path(value), digest, show=show)
    return digests


def missing(session: requests.Session, server: str, digests: list[str]) -> list[str]:
    """Which of `digests` the server lacks (or which are not ours to use there)."""
    lacking: list[str] = []
    for start in range(0, len(digests), MISSING_BATCH):
        batch = digests[start:start + MISSING_BATCH]
        answer = session.post(f"{server}/cache/missing", json={"hashes": batch}, timeout=HTTP_TIMEOUT)
        check(answer, "asking the server which inputs it lacks")
        lacking += answer.json()["missing"]
    return lacking


def sha3_file(path: Path) -> str:
    digest = hashlib.sha3_256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# Resumable uploads (tus 1.0) --------------------------------------------------------------------------
def uploads_path() -> Path:
    """Where unfinished uploads are remembered, beside the config file."""
    return config_path().with_name("uploads.json")


def remembered_uploads() -> dict:
    try:
        data = json.loads(uploads_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember_upload(key: str, url: str | None) -> None:
    """Keep (or, with None, forget) the URL of an unfinished upload, so another run can resume it."""
    data = remembered_uploads()
    if url is None:
        data.pop(key, None)
    else:
        data[key] = url
    path = uploads_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)
    os.replace(temporary, path)


def resumable_upload(session: requests.Session, server: str, path: Path, digest: str, *, show: bool) -> None:
    """Upload `path` with the tus protocol, resuming a remembered upload of the same bytes."""
    size = path.stat().st_size
    key = f"{server} {digest} {size}"
    url = remembered_uploads().get(key)
    offset = upload_offset(session, url) if url else None
    if offset is None:
        url = create_upload(session, server, path, size)
        remember_upload(key, url)
        offset = 0
    elif show:
        print(f"resuming the upload of {path.name} at {offset} of {size} bytes", file=sys.stderr, flush=True)
    assert url is not None
    progress = UploadProgress(sys.stderr, path.name, size, offset) if show else None
    stored, attempts = None, 0
    while stored is None:
        try:
            stored = send_patches(session, url, path, offset, size, progress=progress)
        except (OSError, http.client.HTTPException, ConflictingOffset) as exc:
            attempts += 1
            if attempts > UPLOAD_RETRIES:
                raise ClientError(f"the upload of {path} broke off ({exc}); run the same command again to "
                                  "resume it where it stopped", EXIT_UNREACHABLE) from None
            time.sleep(min(2 ** attempts / 4, 4))
            try:
                offset = upload_offset(session, url)
            except requests.RequestException:
                continue
            if offset is None:
                raise ClientError(f"the server forgot the upload of {path} (expired?); run the command again "
                                  "to start it anew") from None
        if stored is None and offset == size:
            stored = session.head(url, headers=TUS, timeout=HTTP_TIMEOUT).headers.get("L1-Digest")
    if progress:
        progress.finish()
    remember_upload(key, None)
    if stored != digest:
        raise ClientError(f"the server stored {path} under another hash ({stored}) than {digest}")


def create_upload(session: requests.Session, server: str, path: Path, size: int) -> str:
    name = base64.b64encode(path.name.encode("utf-8")).decode("ascii")
    answer = session.post(f"{server}/cache/uploads", timeout=HTTP_TIMEOUT,
                          headers={**TUS, "Upload-Length": str(size), "Upload-Metadata": f"filename {name}"})
    check(answer, f"starting the upload of {path}")
    return requests.compat.urljoin(f"{server}/", answer.headers["Location"])


def upload_offset(session: requests.Session, url: str) -> int | None:
    """The offset to resume from; None when the server no longer knows the upload."""
    answer = session.head(url, headers=TUS, timeout=HTTP_TIMEOUT)
    if answer.status_code in (404, 410):
        return None
    check(answer, "asking the server how far the upload got")
    return int(answer.headers["Upload-Offset"])


class ConflictingOffset(Exception):
    """The server's offset is not the one a PATCH assumed (409): ask HEAD and go on from there."""


def send_patches(session: requests.Session, url: str, path: Path, offset: int, size: int, *,
                 progress: UploadProgress | None) -> str | None:
    """PATCH the bytes from `offset` to the end in UPLOAD_CHUNK pieces, pipelined on one connection
    (a sender thread writes requests with sendfile, this thread reads the answers in order); the
    stored item's hash once the last one is answered. requests cannot pipeline, hence http.client."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    connection = (http.client.HTTPSConnection if https else http.client.HTTPConnection)(
        parts.hostname, parts.port or (443 if https else 80), timeout=HTTP_TIMEOUT)
    connection.connect()
    sock = connection.sock
    answers = sock.makefile("rb")
    sent: queue.Queue = queue.Queue(maxsize=PIPELINE_DEPTH)
    failure: list[BaseException] = []
    fixed = "".join(f"{name}: {value}\r\n" for name, value in {
        "Host": parts.netloc, "Authorization": session.headers.get("Authorization", ""),
        "User-Agent": "l1-render.py", "Tus-Resumable": "1.0.0",
        "Content-Type": "application/offset+octet-stream"}.items() if value)

    head = f"PATCH {parts.path} HTTP/1.1\r\n{fixed}"
    thread = threading.Thread(target=send_chunks, name="tus-sender", daemon=True,
                              args=(sock, path, (offset, size), head, (sent, failure)))
    thread.start()
    stored = None
    try:
        while sent.get() is not None:
            status, headers, body = read_answer(answers)
            if status == 409:
                raise ConflictingOffset("the server is at another offset")
            if status == 460:
                raise ConflictingOffset("a chunk arrived damaged (checksum mismatch)")
            if status != 204:
                raise ClientError(f"uploading {path} failed ({status}): {error_message(body)}",
                                  {401: EXIT_AUTH, 403: EXIT_AUTH, 404: EXIT_NOT_FOUND}.get(status, EXIT_REFUSED))
            if progress:
                progress.show(int(headers["Upload-Offset"]))
            stored = headers.get("L1-Digest") or stored
        if failure:
            raise failure[0]
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # stops the sender if it is still writing
        except OSError:
            pass
        while thread.is_alive():  # it may wait to queue one more chunk: let it, so it can end
            try:
                sent.get(timeout=0.05)
            except queue.Empty:
                pass
        answers.close()
        connection.close()
    return stored


def send_chunks(sock: socket.socket, path: Path, span: tuple[int, int], head: str,
                channels: tuple[queue.Queue, list[BaseException]]) -> None:
    """The sender thread: one PATCH per chunk, its body straight from the file (sendfile)."""
    position, size = span
    sent, failure = channels
    try:
        with open(path, "rb") as source:
            while position < size:
                count = min(UPLOAD_CHUNK, size - position)
                sent.put(count)
                sock.sendall(f"{head}Upload-Offset: {position}\r\nContent-Length: {count}\r\n\r\n".encode("latin-1"))
                sock.sendfile(source, position, count)
                position += count
    except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
        failure.append(exc)
    finally:
        sent.put(None)


def read_answer(stream) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One HTTP/1.1 response from a pipelined connection: status, headers, body (Content-Length)."""
    line = stream.readline(65537)
    if not line:
        raise ConnectionResetError("the server closed the connection")
    fields = line.split(None, 2)
    if len(fields) < 2 or not fields[1].isdigit():
        raise http.client.BadStatusLine(line.decode("latin-1", "replace"))
    headers = http.client.parse_headers(stream)
    length = int(headers.get("Content-Length") or 0)
    body = stream.read(length) if length else b""
    if len(body) < length:
        raise ConnectionResetError("the server closed the connection mid-answer")
    return int(fields[1]), headers, body


def error_message(body: bytes) -> str:
    try:
        return json.loads(body).get("message") or body.decode("utf-8", "replace")[:200]
    except (ValueError, AttributeError):
        return body.decode("utf-8", "replace")[:200].strip()


class UploadProgress:
    """Bytes, rate and ETA: one redrawn line on a terminal, else a line every 10 %."""

    def __init__(self, stream, name: str, size: int, offset: int) -> None:
        self.stream, self.name, self.size = stream, name, size
        self.tty = stream.isatty()
        self.start, self.start_offset = time.monotonic(), offset
        self.shown_tenth = offset * 10 // size if size else 10

    def show(self, offset: int) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = (offset - self.start_offset) / elapsed
        eta = (self.size - offset) / rate if rate > 0 else 0.0
        filled = BAR_WIDTH * offset // self.size if self.size else BAR_WIDTH
        line = (f"{self.name} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {offset * 100 // max(self.size, 1):3d}% "
                f"{offset / 2**20:.1f}/{self.size / 2**20:.1f} MiB  {rate / 2**20:.1f} MiB/s  ETA {eta:.0f} s")
        if self.tty:
            self.stream.write(f"\r\x1b[2K{line}")
            self.stream.flush()
        elif offset * 10 // max(self.size, 1) > self.shown_tenth or offset == self.size:
            self.shown_tenth = offset * 10 // max(self.size, 1)
            print(line, file=self.stream, flush=True)

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def submit(session: requests.Session, args: argparse.Namespace, inputs, hold: int = 0) -> dict:
    """Start the run; with `hold`, the server may keep the answer up to that many seconds, until
    the run has ended (RFC 7240 `Prefer: wait`; a server that does not wait answers at once)."""
    body: dict = {"recipe": args.recipe, "inputs": inputs, "force": args.force}
    if args.output_name:
        body["output_name"] = args.output_name
    if args.param:
        body["params"] = parse_params(args.param)
    headers = {"Prefer": f"wait={hold}"} if hold else {}
    answer = session.post(f"{args.server}/runs", json=body, headers=headers, timeout=HTTP_TIMEOUT + hold)
    check(answer, "starting the run")
    return answer.json()


def parse_params(items: list[str]) -> dict[str, float | int]:
    params: dict[str, float | int] = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            params[name] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            raise ClientError(f"--param takes NAME=NUMBER, not {item!r}", EXIT_USAGE) from None
    return params


# Waiting, with progress ------------------------------------------------------------------------------
def first_hold(*, show: bool) -> int:
    """Whole seconds the submission may wait for the run's end (`Prefer: wait` takes whole
    seconds): long without a progress bar, else short enough for the bar's first drawing."""
    return int(LONG_WAIT) if not show else max(1, round(POLL_INTERVAL))


def wait(session: requests.Session, server: str, run: dict, *, show: bool) -> dict:
    """Wait until the run is no longer live; progress goes to stderr (redrawn on a terminal).

    Each request asks the server to hold its answer until the run's status changes (`?wait=`),
    so the end is seen as soon as it happens; while a progress bar shows, the wait is short
    enough to redraw it every `POLL_INTERVAL`. A server that could not wait (busy, or older)
    is polled every `POLL_INTERVAL` instead.
    """
    progress = Progress(sys.stderr) if show else None
    hold = POLL_INTERVAL if show else LONG_WAIT
    if progress and run["status"] not in LIVE:  # it ended while the submission waited
        progress.show(run)
    while run["status"] in LIVE:
        try:
            answer = session.get(f"{server}/runs/{run['id']}", params={"wait": hold}, timeout=HTTP_TIMEOUT + hold)
        except (requests.ConnectionError, requests.Timeout):
            raise ClientError(f"lost the L1 server at {server} while waiting; run {run['id']} goes on there "
                              "if the server does", EXIT_UNREACHABLE) from None
        check(answer, "reading the run")
        run = answer.json()
        if run["status"] in LIVE and answer.headers.get("L1-Waited") != "1":
            time.sleep(POLL_INTERVAL)
        if progress:
            progress.show(run)
    if progress:
        progress.finish()
    return run


class Progress:
    """Per-step states and an overall bar: redrawn in place on a terminal, else one line per change."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.drawn = 0
        self.last = ""

    def show(self, run: dict) -> None:
        steps = [s for s in run.get("steps") or [] if s.get("type") != "SOURCE"]
        done, total = sum(1 for s in steps if s.get("status") in DONE), len(steps)
        if self.tty:
            self._redraw(run, steps, done, total)
            return
        states = " ".join(f"{s['step_id']}:{s.get('status', 'pending')}{step_percent(s)}" for s in steps)
        line = f"[{run['status']}] {done}/{total} steps{run_percent(run)}  {states}".rstrip()
        if line != self.last:
            print(line, file=self.stream, flush=True)
            self.last = line

    def _redraw(self, run: dict, steps: list[dict], done: int, total: int) -> None:
        percent = (run.get("progress") or {}).get("percent")
        if percent is None:  # a server from before per-step progress: steps done
            percent = 100 * done / total if total else 0
        filled = min(int(BAR_WIDTH * percent / 100), BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        lines = [f"[{bar}] {done}/{total} steps{run_percent(run)}  {run['status']}"]
        lines += [f"  {step_mark(s.get('status'))} {s['step_id']:<24} {s.get('status', 'pending')}"
                  f"{step_percent(s)}" for s in steps]
        up = f"\x1b[{self.drawn}F" if self.drawn else ""
        self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self.stream.flush()
        self.drawn = len(lines)

    def finish(self) -> None:
        self.stream.flush()


def run_percent(run: dict) -> str:
    """` 42% ETA 13s` from the run's weighted progress, when the server gives one."""
    progress = run.get("progress") or {}
    if progress.get("percent") is None or run.get("status") not in LIVE:
        return ""
    eta = progress.get("eta")
    return f" {progress['percent']:.0f}%" + (f" ETA {eta:.0f}s" if eta else "")


def step_percent(step: dict) -> str:
    """` 42% 120fps ETA 3s` for a running step with live progress."""
    progress = step.get("progress") or {}
    if step.get("status") != "running" or progress.get("percent") is None:
        return ""
    text = f" {progress['percent']:.0f}%"
    if progress.get("fps"):
        text += f" {progress['fps']:.0f}fps"
    if progress.get("eta"):
        text += f" ETA {progress['eta']:.0f}s"
    return text


def step_mark(status: str | None) -> str:
    return {"completed": "✓", "cached": "✓", "failed": "✗", "skipped": "-", "running": "…"}.get(status or "", " ")


def failed_step_error(run: dict) -> str | None:
    for step in run.get("steps") or []:
        if step.get("status") == "failed" and step.get("error"):
            return f"step {step['step_id']}: {step['error']}"
    return None


# Results ------------------------------------------------------------------------------------------------
def download(session: requests.Session, server: str, digest: str, target: Path) -> None:
    """Stream the output to `target` (through a temporary file) and check its hash."""
    partial = target.with_name(f".{target.name}.part")
    hasher = hashlib.sha3_256()
    with session.get(f"{server}/cache/{digest}", stream=True, timeout=HTTP_TIMEOUT) as answer:
        check(answer, "downloading the output")
        with open(partial, "wb") as out:
            for chunk in answer.iter_content(1 << 20):
                hasher.update(chunk)
                out.write(chunk)
    if hasher.hexdigest() != digest:
        partial.unlink()
        raise ClientError(f"the download of {digest[:12]}… did not match its hash; try again")
    os.replace(partial, target)


def report(session: requests.Session, args: argparse.Namespace, run: dict) -> None:
    answer = session.get(f"{args.server}/runs/{run['id']}/provenance", timeout=HTTP_TIMEOUT)
    provenance = answer.json() if answer.ok else None
    if args.json:
        print(json.dumps({"run": run, "provenance": provenance, "output": args.output}, indent=2))
        return
    print(f"completed: {run['output_hash']}")
    print(f"  {args.server}/cache/{run['output_hash']}")
    if args.output:
        print(f"  saved to {args.output}")
    if provenance:
        print(json.dumps(provenance, indent=2))


def check(answer: requests.Response, doing: str) -> None:
    """Raise a ClientError naming what failed and why, with the exit status for its kind."""
    if answer.status_code < 400:
        return
    try:
        message = answer.json().get("message") or answer.text
    except ValueError:
        message = answer.text[:200].strip() or answer.reason
    status = {401: EXIT_AUTH, 403: EXIT_AUTH, 404: EXIT_NOT_FOUND}.get(answer.status_code, EXIT_REFUSED)
    if answer.status_code == 401:
        message += " — the token is missing, expired or revoked: get a new one on L2 and run render.py login"
    raise ClientError(f"{doing} failed ({answer.status_code}): {message}", status)


if __name__ == "__main__":
    sys.exit(main())
