"""`python -m devl2 serve` runs the development L2; `python -m devl2 token alice --l1 URL` mints a token."""

from __future__ import annotations

import argparse
import sys

from devl2.config import Config
from devl2.issuer import Issuer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devl2", description="The development L2.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the development L2 (DEVL2_HOST, DEVL2_PORT)")
    token = commands.add_parser("token", help="print a token for a user, scoped to one L1")
    token.add_argument("username")
    token.add_argument("--l1", required=True, help="the L1's public URL, e.g. http://127.0.0.1:8100")
    token.add_argument("--ttl", type=int, help="seconds the token is valid (default DEVL2_TOKEN_TTL)")
    args = parser.parse_args(argv)
    config = Config.from_env()
    if args.command == "serve":
        return serve(config)
    if args.username not in config.users:
        print(f"unknown user {args.username!r}; users: {', '.join(sorted(config.users))}", file=sys.stderr)
        return 2
    if args.ttl is not None and args.ttl <= 0:
        parser.error("--ttl must be positive")
    issuer = Issuer(config.data_dir, config.public_url)
    print(issuer.mint(args.username, args.l1, args.ttl or config.token_ttl))
    return 0


def serve(config: Config) -> int:
    from waitress import serve as waitress_serve

    from devl2.app import create_app

    app = create_app(config)
    print(f"Development L2 listening on {config.public_url} (renderers: {', '.join(config.l1_urls)})",
          flush=True)
    waitress_serve(app, host=config.host, port=config.port, threads=4, ident="devl2")
    return 0


if __name__ == "__main__":
    sys.exit(main())
