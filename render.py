#!/usr/bin/env python3
"""L1 command-line client: render media through an effect or recipe on an L1 server.

    python render.py dog cat --sync                 # the sample cat through the dog effect, and wait
    python render.py my-recipe --input image=photo.jpg --sync --output out.png
    python render.py invert 3f2a…(hash) --json      # submit and print the run as JSON

Inputs are asset names, content hashes, or local files (hashed here, uploaded only when the
server lacks them). Needs only `requests` and the standard library, so it runs as one file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import requests

#: Server used when neither --server nor L1_SERVER says otherwise (`/download/client` fills it in).
DEFAULT_SERVER = "http://127.0.0.1:8100"
#: Seconds between status polls while waiting.
POLL_INTERVAL = 1.0
#: Seconds one HTTP request may take.
HTTP_TIMEOUT = 30
LIVE = ("pending", "running")


class ClientError(Exception):
    """A failure to report to the user (exit status 1)."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    session = requests.Session()
    token = args.token or os.environ.get("L1_TOKEN") or read_token_file()
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    session.headers["Accept"] = "application/json"
    try:
        inputs = resolve_inputs(session, args)
        run = submit(session, args, inputs)
        if not args.sync:
            print(json.dumps(run, indent=2) if args.json else run["id"])
            return 0
        run = wait(session, args.server, run, quiet=args.json)
        if args.output and run.get("output_hash"):
            download(session, args.server, run["output_hash"], Path(args.output))
        report(session, args, run)
        return 0 if run["status"] == "completed" else 1
    except ClientError as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 1
    except requests.ConnectionError:
        print(f"render.py: cannot reach the L1 server at {args.server}", file=sys.stderr)
        return 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Render media on an L1 server.")
    parser.add_argument("recipe", help="effect name (dog, invert, …), recipe name or recipe id")
    parser.add_argument("inputs", nargs="*", help="asset names, content hashes or local files, in order")
    parser.add_argument("--input", action="append", default=[], metavar="NAME=VALUE",
                        help="a named input of a recipe (asset name, hash or local file)")
    parser.add_argument("--sync", action="store_true", help="wait for the run to finish")
    parser.add_argument("--output", help="download the result to this file (with --sync)")
    parser.add_argument("--output-name", help="a name for the output")
    parser.add_argument("--force", action="store_true", help="render again even if this run exists")
    parser.add_argument("--server", default=os.environ.get("L1_SERVER", DEFAULT_SERVER))
    parser.add_argument("--token", help="an L2 token for this server (or L1_TOKEN, or ~/.config/l1/token)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    args.server = args.server.rstrip("/")
    if args.inputs and args.input:
        parser.error("give inputs either in order or as --input NAME=VALUE, not both")
    return args


def read_token_file() -> str | None:
    path = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "l1" / "token"
    return path.read_text().strip() if path.is_file() else None


def resolve_inputs(session: requests.Session, args: argparse.Namespace) -> list[str] | dict[str, str]:
    if args.input:
        pairs = [item.split("=", 1) for item in args.input]
        if any(len(pair) != 2 or not pair[0] for pair in pairs):
            raise ClientError("--input takes NAME=VALUE")
        return {name: resolve_one(session, args.server, value) for name, value in pairs}
    return [resolve_one(session, args.server, value) for value in args.inputs]


def resolve_one(session: requests.Session, server: str, value: str) -> str:
    path = Path(value)
    if not path.is_file():
        return value  # an asset name or a hash: the server resolves it
    digest = sha3_file(path)
    if session.head(f"{server}/cache/{digest}", timeout=HTTP_TIMEOUT).status_code == 200:
        return digest
    with open(path, "rb") as body:
        answer = session.post(f"{server}/cache/upload", data=body, timeout=None,
                              headers={"Content-Type": "application/octet-stream"})
    check(answer, f"uploading {path}")
    return digest


def sha3_file(path: Path) -> str:
    digest = hashlib.sha3_256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def submit(session: requests.Session, args: argparse.Namespace, inputs) -> dict:
    body = {"recipe": args.recipe, "inputs": inputs, "force": args.force}
    if args.output_name:
        body["output_name"] = args.output_name
    answer = session.post(f"{args.server}/runs", json=body, timeout=HTTP_TIMEOUT)
    check(answer, "starting the run")
    return answer.json()


def wait(session: requests.Session, server: str, run: dict, *, quiet: bool) -> dict:
    shown = ""
    while run["status"] in LIVE:
        time.sleep(POLL_INTERVAL)
        answer = session.get(f"{server}/runs/{run['id']}", timeout=HTTP_TIMEOUT)
        check(answer, "reading the run")
        run = answer.json()
        line = progress_line(run)
        if not quiet and line != shown:
            print(line, file=sys.stderr, flush=True)
            shown = line
    return run


def progress_line(run: dict) -> str:
    steps = run.get("steps") or []
    done = sum(1 for s in steps if s.get("status") in ("cached", "completed"))
    states = " ".join(f"{s['step_id']}:{s.get('status')}" for s in steps if s.get("type") != "SOURCE")
    return f"[{run['status']}] {done}/{len(steps)} steps  {states}"


def download(session: requests.Session, server: str, digest: str, target: Path) -> None:
    with session.get(f"{server}/cache/{digest}", stream=True, timeout=HTTP_TIMEOUT) as answer:
        check(answer, "downloading the output")
        with open(target, "wb") as out:
            for chunk in answer.iter_content(1 << 20):
                out.write(chunk)


def report(session: requests.Session, args: argparse.Namespace, run: dict) -> None:
    if run["status"] != "completed":
        if args.json:
            print(json.dumps(run, indent=2))
        raise ClientError(f"run {run['id'][:12]} {run['status']}: {run.get('error') or 'no reason given'}")
    answer = session.get(f"{args.server}/runs/{run['id']}/provenance", timeout=HTTP_TIMEOUT)
    provenance = answer.json() if answer.ok else None
    if args.json:
        print(json.dumps({"run": run, "provenance": provenance}, indent=2))
        return
    print(f"completed: {run['output_hash']}")
    print(f"  {args.server}/cache/{run['output_hash']}")
    if provenance:
        print(json.dumps(provenance, indent=2))


def check(answer: requests.Response, doing: str) -> None:
    if answer.status_code < 400:
        return
    try:
        message = answer.json().get("message") or answer.text
    except ValueError:
        message = answer.text[:200]
    if answer.status_code == 401:
        message += " (pass --token, set L1_TOKEN, or sign in on L2 and copy a token)"
    raise ClientError(f"{doing} failed ({answer.status_code}): {message}")


if __name__ == "__main__":
    sys.exit(main())
