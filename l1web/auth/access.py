"""Sign-in and admin checks for routes. Who may see or use a record is `l1web.access`."""

from __future__ import annotations

from flask import g

from l1web.errors import Forbidden, Unauthorized
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
