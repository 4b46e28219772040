"""Where to send a user after signing in: only ever a path on this server."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

#: Longest `next` kept, in characters.
MAX_NEXT_LENGTH = 2000


def _plain_path(value: str) -> bool:
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return False
    # Browsers drop tabs and newlines from URLs, so "/\t/evil" would become "//evil".
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return False
    parts = urlsplit(value)
    return not parts.scheme and not parts.netloc


def safe_next(value: str | None) -> str:
    """`value` when it is a plain local path (also once percent-decoded); otherwise `/`."""
    if not value or len(value) > MAX_NEXT_LENGTH:
        return "/"
    return value if _plain_path(value) and _plain_path(unquote(value)) else "/"
