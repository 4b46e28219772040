"""Who may see what: sign-in and admin checks, and ownership with one 404 for "not yours".

Routes call `owned_or_404(owner, "run")` after looking a record up (owner None when there is
no such record): an unknown id and another user's id then give byte-identical 404 answers, so
ids are no existence oracle. Listings filter with `can_see(owner)`.
"""

from __future__ import annotations

from flask import g

from l1web.errors import Forbidden, NotFound, Unauthorized
from l1web.users import User


def require_user() -> User:
    user = g.get("user")
    if user is None:
        raise Unauthorized("Sign in to do this.")
    return user


def require_admin() -> User:
    user = require_user()
    if not user.is_admin:
        raise Forbidden("Only administrators may do this.")
    return user


def can_see(owner: str | None) -> bool:
    """True when the current user owns the record, or is an admin; False for no record."""
    user = g.get("user")
    return owner is not None and user is not None and (user.is_admin or owner == user.name)


def owned_or_404(owner: str | None, what: str) -> None:
    """404 unless the current user may see a record owned by `owner` (None: no such record)."""
    if not can_see(owner):
        raise NotFound(f"No such {what}.")
