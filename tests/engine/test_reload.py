"""Hot reload: a valid change is swapped in whole; an invalid one is refused and logged."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from engine.reload import FlowHolder, FlowSetInvalid

FLOWS = Path(__file__).resolve().parents[2] / "flows"


def _edit(flows: Path, old: str, new: str) -> None:
    path = flows / "main.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")


async def test_a_valid_change_is_swapped_in(flows: Path) -> None:
    holder = FlowHolder([flows])
    first = holder.load()
    _edit(flows, "Главное меню IT-поддержки РАНХиГС.", "Меню поддержки.")
    result = await holder.reload()
    assert result.flow_set is holder.current and holder.current is not first
    assert holder.current.version != first.version
    assert "Меню поддержки." in holder.current.states["main.menu"].say[0].template.source


async def test_an_invalid_change_is_refused_and_the_old_set_keeps_serving(
        flows: Path, caplog: pytest.LogCaptureFixture) -> None:
    holder = FlowHolder([flows])
    first = holder.load()
    _edit(flows, "  sign_out:\n", "  broken:\n    on: {menu: auth.nowhere}\n  sign_out:\n")
    with caplog.at_level(logging.ERROR, logger="engine.reload"):
        result = await holder.reload()
    assert result.flow_set is None and holder.current is first and holder.refusals == 1
    assert any("F010" in r.getMessage() and "main.yaml" in r.getMessage() for r in caplog.records)


def test_an_invalid_set_at_start_is_fatal_with_every_error(flows: Path) -> None:
    (flows / "catalog.yaml").write_text("catalog: [", encoding="utf-8")
    with pytest.raises(FlowSetInvalid) as info:
        FlowHolder([flows]).load()
    assert "catalog.yaml:" in str(info.value) and "F001" in str(info.value)


async def test_the_watcher_reloads_on_change(flows: Path) -> None:
    holder = FlowHolder([flows])
    first = holder.load()
    watcher = asyncio.create_task(holder.watch(interval=0.05))
    try:
        await asyncio.sleep(0.1)
        _edit(flows, "Выберите, что нужно сделать:", "Что нужно сделать?")
        for _ in range(100):
            await asyncio.sleep(0.05)
            if holder.current is not first:
                break
        assert holder.current is not first
    finally:
        watcher.cancel()
