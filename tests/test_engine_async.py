"""The async driver: same semantics, bodies may be coroutines, waits do not block."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import RETRY_TWICE, Sleeps, chain_plan, final_context, make_engine, start_request

from nbflow.engine import RunPhase
from nbflow.model import FixedBackoff, RetryPolicy
from nbflow.store import Home


def test_async_bodies_run_in_order_and_are_checkpointed(home: Home) -> None:
    log: list[str] = []

    async def a(ctx: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        log.append("a")
        return {**ctx, "a": 1}

    def b(ctx: dict[str, Any]) -> dict[str, Any]:  # sync bodies work too
        log.append("b")
        return {**ctx, "b": 2}

    engine = make_engine(home, {"a": a, "b": b})
    result = asyncio.run(engine.start_async(start_request(home, chain_plan("a", "b"))))
    assert result.phase is RunPhase.COMPLETED
    assert log == ["a", "b"]
    assert final_context(engine, result) == {"a": 1, "b": 2}


def test_async_retry_waits_on_the_event_loop(home: Home) -> None:
    attempts = {"n": 0}
    ticks: list[int] = []

    async def flaky(ctx: dict[str, Any]) -> dict[str, Any]:
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise ConnectionError("try again")
        return {**ctx, "done": attempts["n"]}

    async def ticker() -> None:
        for index in range(100):
            ticks.append(index)
            await asyncio.sleep(0.005)

    sleeps = Sleeps()
    policy = RetryPolicy(max_attempts=3, backoff=FixedBackoff(delay_ms=60))
    engine = make_engine(home, {"a": flaky}, sleep=sleeps)

    async def main() -> Any:
        background = asyncio.create_task(ticker())
        result = await engine.start_async(start_request(home, chain_plan("a", retry=policy)))
        background.cancel()
        return result

    result = asyncio.run(main())
    assert result.phase is RunPhase.COMPLETED
    assert sleeps == []  # the blocking sleep was not used
    assert len(ticks) >= 5  # the loop kept running during the two 60 ms waits (blocked: ~1)


def test_async_interrupt_leaves_the_attempt_open(home: Home) -> None:
    async def interrupted(ctx: Any) -> Any:
        raise KeyboardInterrupt

    engine = make_engine(home, {"a": interrupted})
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(engine.start_async(start_request(home, chain_plan("a", retry=RETRY_TWICE))))
    run_id = home.events.runs()[0].run_id

    async def fine(ctx: Any) -> Any:
        return {"ok": True}

    result = asyncio.run(make_engine(home, {"a": fine}).resume_async(run_id))
    assert result.phase is RunPhase.COMPLETED
    entered = [e.event for e in home.events.read_range(run_id) if e.event.kind == "state_entered"]
    assert [e.attempt for e in entered] == [0, 1]
