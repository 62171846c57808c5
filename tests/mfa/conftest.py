"""MFA test plumbing: a controllable clock injected into the app, and an account with TOTP on."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI

from tests.fixtures.app import Account, make_account
from tests.fixtures.helpers import API
from userapi.core.clock import Clock, get_clock

PERIOD = 30


@dataclass
class FakeClock:
    """Seconds since the epoch, set by the test; starts at the middle of a real 30-second step."""

    now: float = field(default_factory=lambda: (int(time.time()) // PERIOD) * PERIOD + 15.0)

    def __call__(self) -> float:
        return self.now

    @property
    def step(self) -> int:
        return int(self.now) // PERIOD

    def advance_steps(self, steps: int) -> None:
        self.now += steps * PERIOD


@pytest.fixture
def clock(app: FastAPI) -> FakeClock:
    fake = FakeClock()

    async def override() -> Clock:
        return fake

    app.dependency_overrides[get_clock] = override
    return fake


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).at(step * PERIOD)


class MfaAccount(Account):
    @property
    def secret(self) -> str:
        return str(self["mfa_secret"])

    @property
    def recovery_codes(self) -> list[str]:
        return list(self["recovery_codes"])


async def enable_totp(client: httpx.AsyncClient, account: Account, clock: FakeClock) -> MfaAccount:
    """Enrol and confirm through the API with a code computed from the returned secret."""
    enrol = await client.post(
        f"{API}/users/me/mfa/totp", json={"current_password": account["password"]}, headers=account.headers
    )
    assert enrol.status_code == 201, enrol.text
    secret = enrol.json()["secret"]
    confirm = await client.post(
        f"{API}/users/me/mfa/totp/confirm",
        json={"code": code_at(secret, clock.step)},
        headers=account.headers,
    )
    assert confirm.status_code == 200, confirm.text
    result = MfaAccount(account)
    result["mfa_secret"] = secret
    result["recovery_codes"] = confirm.json()["recovery_codes"]
    # Later codes must be of a later step than the one just used (replay protection).
    clock.advance_steps(1)
    return result


async def start_login(client: httpx.AsyncClient, account: Account, **headers: Any) -> dict[str, Any]:
    response = await client.post(
        f"{API}/auth/login",
        json={"email": account["email"], "password": account["password"]},
        headers=headers,
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


@pytest.fixture
async def mfa_user(client: httpx.AsyncClient, clock: FakeClock) -> MfaAccount:
    return await enable_totp(client, await make_account(client), clock)
