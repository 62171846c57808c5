"""Property-based fuzzing of every operation from the service's own OpenAPI spec (schemathesis).

Against a real `userapi serve` on a database of its own, as a user and as an admin: no 5xx, every
response matches the documented status codes, content types and schemas, every error is a problem
document. Seeded (derandomized) and bounded, so it is repeatable and fast enough for CI. Run just
this part with: `uv run pytest tests/reliability/test_fuzz.py -v`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.fixtures.database import scratch_database
from tests.fixtures.helpers import API, PASSWORD, run_cli, running_server, server_env, unique_email
from userapi.core.config import to_async_url
from userapi.db import migrate

EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
async def fuzz_server(server_url: str) -> AsyncIterator[dict[str, Any]]:
    """A real server on a migrated database of its own, with a signed-in user and admin."""
    async with scratch_database(server_url, "userapi_fuzz") as url:
        await asyncio.to_thread(migrate.upgrade, to_async_url(url))
        high = "100000/minute"
        env = server_env(
            url,
            RATE_LIMIT_LOGIN_ACCOUNT=high,
            RATE_LIMIT_LOGIN_IP=high,
            RATE_LIMIT_REGISTER_IP=high,
            RATE_LIMIT_SECRET_ACCOUNT=high,
            RATE_LIMIT_SECRET_IP=high,
            # Mail on (.eml files in a temp DATA_DIR; this database is the fuzz's own), so the
            # mail flows are fuzzed too rather than all answering 503 mail_unavailable.
            MAIL_DELIVERY="auto",
            RATE_LIMIT_MAIL_ADDRESS=high,
            RATE_LIMIT_MAIL_IP=high,
        )
        with running_server(env) as base:
            accounts: dict[str, Any] = {"base": base}
            async with httpx.AsyncClient(base_url=base) as http:
                for role in ("user", "admin"):
                    email = unique_email(f"fuzz-{role}")
                    body = {"email": email, "password": PASSWORD}
                    assert (await http.post(f"{API}/auth/register", json=body)).status_code == 201
                    if role == "admin":
                        promoted = await asyncio.to_thread(run_cli, "create-admin", "--email", email, env=env)
                        assert promoted.returncode == 0, promoted.stderr
                    tokens = (await http.post(f"{API}/auth/login", json=body)).json()
                    accounts[role] = {"Authorization": f"Bearer {tokens['access_token']}"}
            yield accounts


def errors_are_problem_documents(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/problem+json"), content_type
        body = response.json()
        assert {"type", "title", "status", "detail", "code"} <= set(body), body
        assert body["status"] == response.status_code


def _fuzz(base: str, headers: dict[str, str], mode: schemathesis.GenerationMode) -> tuple[list[str], int]:
    """Run every operation's examples; returns one line per failing operation, and the cases run."""
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    failures: list[str] = []
    cases = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,  # a fixed seed: the same cases every run
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            phases=[Phase.explicit, Phase.generate],
        )
        def run(case: schemathesis.Case) -> None:
            nonlocal cases
            cases += 1
            # Schema-valid input may still be refused by rules a schema cannot express (a common
            # password, say): that is a 4xx answer, not a defect.
            case.call_and_validate(
                base_url=base,
                headers=headers,
                excluded_checks=[positive_data_acceptance],
                additional_checks=[errors_are_problem_documents],
            )

        try:
            run()
        except Unsatisfiable:
            # Negative mode on an operation with no input (GET /health/live): nothing to break.
            assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # collect every operation's failure, not just the first
            failures.append(f"{operation.label}: {str(exc).strip()[:2000]}")
    return failures, cases


@pytest.mark.parametrize("role", ["user", "admin"])
@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_fuzz_every_operation(
    fuzz_server: dict[str, Any], role: str, mode: schemathesis.GenerationMode
) -> None:
    failures, cases = _fuzz(fuzz_server["base"], fuzz_server[role], mode)
    print(f"fuzzed {cases} {mode.value} cases as {role}")
    assert cases > 100
    assert not failures, "\n\n".join(failures)
