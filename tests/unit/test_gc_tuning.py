"""The served worker's garbage-collector settings (server/gc_tuning.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

import server.app
from bench.baseline import app as baseline_app
from server.gc_tuning import COLLECTOR_THRESHOLDS, tune_collector


@pytest.fixture
def collector_restored() -> Iterator[None]:
    """Leave the test process's collector as it was found."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector_restored")
def test_tune_collector_freezes_survivors_and_raises_thresholds() -> None:
    gc.unfreeze()
    survivor = [object()]  # a container alive at tuning time: frozen, never scanned again

    tune_collector()

    assert gc.get_threshold() == COLLECTOR_THRESHOLDS
    assert gc.get_freeze_count() > 0
    assert not any(item is survivor for item in gc.get_objects(generation=2))
    young = [object()]  # allocated after freezing: still collected
    assert any(item is young for item in gc.get_objects(generation=0))


@pytest.mark.usefixtures("collector_restored")
def test_young_collections_wait_for_many_more_allocations() -> None:
    tune_collector()
    assert COLLECTOR_THRESHOLDS[0] >= 10 * 700
    collections_before = gc.get_stats()[0]["collections"]
    garbage = [[index] for index in range(5_000)]  # 5,000 tracked containers: under the young threshold
    del garbage
    assert gc.get_stats()[0]["collections"] == collections_before


@pytest.mark.usefixtures("collector_restored")
@pytest.mark.parametrize(("module", "factory", "builder"), [
    (server.app, "create_app_from_env", "create_app"),
    (baseline_app, "create_served_app", "create_app"),
])
def test_served_factories_tune_the_collector_after_building_the_app(
    monkeypatch: pytest.MonkeyPatch, module: Any, factory: str, builder: str
) -> None:
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    built = object()
    thresholds_while_building: list[tuple[int, int, int]] = []

    def build(*_args: Any) -> object:
        thresholds_while_building.append(gc.get_threshold())
        return built

    monkeypatch.setattr(module, builder, build)
    if module is server.app:
        monkeypatch.setattr(module, "get_settings", lambda: None)

    assert getattr(module, factory)() is built
    assert thresholds_while_building == [(700, 10, 10)]
    assert gc.get_threshold() == COLLECTOR_THRESHOLDS
    assert gc.get_freeze_count() > 0
