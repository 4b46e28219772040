"""What routes read from a request, one way each: the signed-in user and a JSON body."""

from __future__ import annotations

import json

from flask import request

from l1web.errors import BadRequest, PayloadTooLarge, Unauthorized
from l1web.users import User
from l1web.web import current

#: Largest JSON request body accepted, in bytes.
MAX_JSON_BYTES = 256 * 1024


def signed_in() -> User:
    """The signed-in user; anonymous requests are refused (401)."""
    user = current.user()
    if user is None:
        raise Unauthorized("Sign in to do this.")
    return user


def json_body() -> dict:
    """The request's JSON object; 413 when too large, 400 naming what is wrong otherwise."""
    if (request.content_length or 0) > MAX_JSON_BYTES:
        raise PayloadTooLarge(f"the request body is larger than {MAX_JSON_BYTES} bytes")
    try:
        body = request.get_json(force=True, silent=True)
    except RecursionError:  # `silent` covers ValueError only; "[[[[…" of 100 KB recurses in json
        raise BadRequest("the request body nests too deeply to be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    try:  # JSON may spell lone surrogates ("\ud800"); they cannot be stored or hashed as UTF-8
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("the request body contains text that is not valid Unicode (a lone surrogate)") from None
    return body
