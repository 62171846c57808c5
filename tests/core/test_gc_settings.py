"""The app's start-up moves what it made out of the collector's way and collects the young
generation less often (issue 17: collections walked every request in flight)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from userapi.core.config import Settings
from userapi.main import GC_GEN0_THRESHOLD, create_app


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_gc")
async def test_start_up_freezes_and_raises_the_young_generation_threshold(settings: Settings) -> None:
    gc.set_threshold(700, 10, 10)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, 10, 10)
        assert gc.get_freeze_count() > 0
    assert GC_GEN0_THRESHOLD > 700
