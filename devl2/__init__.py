"""A development L2: users, the "Attach" button, scoped tokens, `/auth/verify` and logout.

A small separate Flask app so that sign-in works on a fresh machine and in the tests; it
implements the L1 ↔ L2 contract in `docs/l2-contract.md`. Not for production use.
"""

from devl2.app import create_app
from devl2.config import Config

__all__ = ["Config", "create_app"]
