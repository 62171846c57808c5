"""The wall clock as an injectable dependency: time rules (TOTP steps) are tested without sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends

Clock = Callable[[], float]


async def get_clock() -> Clock:
    """Seconds since the epoch, as `time.time` gives them; tests override this dependency."""
    return time.time


ClockDep = Annotated[Clock, Depends(get_clock)]
