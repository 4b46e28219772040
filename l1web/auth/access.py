"""The admin check for routes; the signed-in check is `l1web.web.requests.signed_in`.

Who may see or use a record is `l1web.access`.
"""

from __future__ import annotations

from l1web.errors import Forbidden
from l1web.users import User
from l1web.web.current import signed_in


def require_admin() -> User:
    user = signed_in()
    if not user.is_admin:
        raise Forbidden("Only administrators may do this.")
    return user
