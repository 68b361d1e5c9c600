"""The daemon's own stalls (repfs/backend/stalls.py): time the event loop did not run is
counted, and a deadline that passed during one is moved on by it. A stall is made by
blocking the event loop's thread, as a paused process or a starved machine would."""

from __future__ import annotations

import time

import pytest
import trio

from repfs.backend.stalls import LoopStalls


def block_the_loop(seconds: float) -> None:
    """Hold the event loop's thread (a sync call: nothing else runs meanwhile)."""
    time.sleep(seconds)


@pytest.mark.trio
async def test_a_blocked_loop_is_counted_as_lost_time() -> None:
    stalls = LoopStalls()
    async with trio.open_nursery() as nursery:
        await nursery.start(stalls.run)
        start = trio.current_time()
        await trio.sleep(0.2)
        assert stalls.lost_since(start) < 0.1  # the loop ran
        start = trio.current_time()
        block_the_loop(0.4)
        assert 0.3 < stalls.lost_since(start) < 1.0  # seen before the monitor wakes
        await trio.sleep(0.2)
        assert 0.3 < stalls.lost_since(start) < 1.0  # and once it has recorded it
        assert stalls.lost_since(trio.current_time()) == 0.0
        nursery.cancel_scope.cancel()
    assert stalls.lost_since(start) == 0.0  # not running: nothing is counted


@pytest.mark.trio
async def test_a_wait_whose_deadline_passes_in_a_stall_gets_the_time_back() -> None:
    stalls = LoopStalls()
    event = trio.Event()

    async def answer_soon() -> None:
        block_the_loop(0.5)  # the loop stalls with the wait's deadline inside the stall
        await trio.sleep(0.05)
        event.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(stalls.run)
        nursery.start_soon(answer_soon)
        assert await stalls.wait(event, 0.2)
        assert not await stalls.wait(trio.Event(), 0.2)  # no stall: the deadline stands
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_wait_without_the_monitor_keeps_its_deadline() -> None:
    stalls = LoopStalls()
    event = trio.Event()

    async def answer_soon() -> None:
        block_the_loop(0.5)
        await trio.sleep(0.05)
        event.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer_soon)
        assert not await stalls.wait(event, 0.2)


@pytest.mark.trio
async def test_a_call_cut_off_by_a_stall_is_asked_again() -> None:
    stalls = LoopStalls()
    calls = 0

    async def stalled_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            block_the_loop(0.5)
        await trio.sleep(0.05)
        return "answer"

    async def never() -> str:
        await trio.sleep_forever()
        raise AssertionError

    async with trio.open_nursery() as nursery:
        await nursery.start(stalls.run)
        assert await stalls.within(0.2, stalled_once) == "answer"
        assert calls == 2
        with pytest.raises(trio.TooSlowError):
            await stalls.within(0.2, never)
        nursery.cancel_scope.cancel()
