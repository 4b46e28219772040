"""Schemathesis against `/openapi.json`: requests generated from the document — valid ones and,
for operations with inputs, ones that break it (negative mode) — sent to the app (WSGI, signed
in as alice by Bearer token), never get a 5xx, and every answer conforms to the document
(documented status, content type, body schema and headers).

Examples are bounded and derandomized so the run is reproducible and takes well under a minute.
Operations that would end alice's own sign-in mid-run (revoking her token) are left out: they
have their own tests in tests/test_auth.py and tests/test_hostile.py.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from l1web.settings import Settings

#: Generated examples per operation: enough to reach every parameter, bounded for time.
EXAMPLES = 12
#: Paths whose operations would sign alice out (each call revokes the token it is given).
SIGN_OUT_PATHS = ("/auth/revoke", "/auth/revoke-user", "/logout")
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]

# tus PATCH bodies (`application/offset+octet-stream`) are raw bytes, like application/octet-stream.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")


@pytest.fixture()
def settings(settings: Settings) -> Settings:
    """High rate limits: fuzzing is a burst of requests from one user, which is not the point here."""
    return settings.with_changes(run_rate_limit=100_000, auth_rate_limit=100_000, max_upload_bytes=1024 * 1024)


def _call(case, token: str) -> None:
    response = case.call(headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    if case.path == "/readyz" and response.status_code == 503:  # no worker runs in this test: documented
        assert response.json()["ready"] is False
    else:
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]!r}")
    case.validate_response(response, checks=CHECKS)


def _has_inputs(operation) -> bool:
    return any(len(part) for part in (operation.path_parameters, operation.query, operation.body))


def test_generated_requests_get_no_5xx_and_documented_answers(app, alice_client, subtests):
    # Operations are walked here rather than with `schema.parametrize()`: the lazy-fixture form
    # of schemathesis 4.32 does not run under pytest 9 (it reads a node attribute pytest removed).
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app).exclude(path=list(SIGN_OUT_PATHS))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20  # the document lists the API, not a stub
    for operation in operations:
        # Negative cases (values the document forbids) exist only where there are inputs to spoil.
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if _has_inputs(operation) else [])
        for mode in modes:
            with subtests.test(msg=f"{operation.label} ({mode.value})"):
                fuzz = given(case=operation.as_strategy(mode))(lambda case: _call(case, alice_client.token))
                hypothesis_settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                                    suppress_health_check=list(HealthCheck))(fuzz)()
