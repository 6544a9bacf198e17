"""run_inline: a delivery that does not wait costs no task; one that waits is raced as faust races it."""
from __future__ import annotations

import asyncio

import pytest
from faust.transport.consumer import Consumer

from detector.inline_drain import (COPIED_DRAIN_LOOP_SHA256, InlineDrainConsumer, faust_drain_loop_sha256,
                                   run_inline)
from detector.worker import KafkaTransport


async def _never_raced(rest):
    rest.close()
    raise AssertionError("a delivery that never waits must not be raced")


async def _race_like_faust(rest, interrupt: asyncio.Event):
    """mode's wait_first, reduced: the first of the delivery and the interrupt wins, the other is cancelled."""
    tasks = [asyncio.ensure_future(rest), asyncio.ensure_future(interrupt.wait())]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return "delivered" if tasks[0] in done else "interrupted"


async def test_a_delivery_that_does_not_wait_runs_in_the_callers_task_and_creates_none():
    ran_in = []

    async def deliver():
        ran_in.append(asyncio.current_task())
        return "done"

    before = len(asyncio.all_tasks())
    assert await run_inline(deliver(), _never_raced) == "done"
    assert ran_in == [asyncio.current_task()]
    assert len(asyncio.all_tasks()) == before


async def test_a_delivery_that_waits_is_resumed_where_it_stopped_with_the_values_it_awaits():
    queue: asyncio.Queue = asyncio.Queue(maxsize=1)
    queue.put_nowait("first")
    steps = []

    async def deliver():
        steps.append("before")
        await queue.put("second")          # full: waits until the consumer below takes "first"
        steps.append("after")
        return await asyncio.sleep(0, result="value")

    interrupt = asyncio.Event()
    pending = asyncio.ensure_future(run_inline(deliver(), lambda rest: _race_like_faust(rest, interrupt)))
    await asyncio.sleep(0)
    assert steps == ["before"]              # the first step ran once, not again in the raced task
    assert queue.get_nowait() == "first"
    assert await pending == "delivered"
    assert steps == ["before", "after"] and queue.get_nowait() == "second"


async def test_an_interrupt_cancels_a_waiting_delivery_and_its_cleanup_runs():
    cleaned = []
    release = asyncio.Event()

    async def deliver():
        try:
            await release.wait()            # a full stream buffer, say: stuck until the interrupt
        finally:
            cleaned.append(True)

    interrupt = asyncio.Event()
    pending = asyncio.ensure_future(run_inline(deliver(), lambda rest: _race_like_faust(rest, interrupt)))
    await asyncio.sleep(0)
    interrupt.set()                         # faust's suspend_flow: a rebalance begins
    assert await pending == "interrupted"
    assert cleaned == [True]


async def test_errors_come_out_whether_raised_before_or_after_the_first_wait():
    async def fails_at_once():
        raise ValueError("at once")

    async def fails_later():
        await asyncio.sleep(0)
        raise KeyError("later")

    with pytest.raises(ValueError, match="at once"):
        await run_inline(fails_at_once(), _never_raced)

    async def race(rest):
        return await rest

    with pytest.raises(KeyError, match="later"):
        await run_inline(fails_later(), race)


async def test_a_waiting_delivery_sees_the_exception_its_future_is_given():
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    seen = []

    async def deliver():
        try:
            await future
        except RuntimeError as exc:
            seen.append(str(exc))
            return "handled"

    async def race(rest):
        return await rest

    pending = asyncio.ensure_future(run_inline(deliver(), race))
    await asyncio.sleep(0)
    future.set_exception(RuntimeError("broker gone"))
    assert await pending == "handled" and seen == ["broker gone"]


def test_the_worker_consumer_drains_inline():
    assert issubclass(KafkaTransport.Consumer, InlineDrainConsumer)


def test_faust_drain_loop_is_still_the_one_this_copy_was_made_from():
    """InlineDrainConsumer's loop is faust 0.15.3's with one line changed. If faust changes its loop, the
    worker falls back to faust's own and this fails, so that somebody carries the change over on purpose."""
    assert faust_drain_loop_sha256() == COPIED_DRAIN_LOOP_SHA256


async def test_with_another_faust_loop_the_consumer_runs_faust_own(monkeypatch, caplog):
    import detector.inline_drain as inline_drain

    ran = []

    async def fausts_own(self, fetcher):
        ran.append("faust")

    async def copied(self, fetcher):
        ran.append("copy")

    monkeypatch.setattr(Consumer, "_drain_messages", fausts_own)
    monkeypatch.setattr(InlineDrainConsumer, "_inline_drain_messages", copied)
    consumer = object.__new__(InlineDrainConsumer)          # the loop choice needs no started consumer
    await consumer._drain_messages(None)
    assert ran == ["faust"] and "not the one detector.inline_drain copied" in caplog.text
    monkeypatch.setattr(inline_drain, "faust_drain_loop_sha256", lambda: inline_drain.COPIED_DRAIN_LOOP_SHA256)
    await consumer._drain_messages(None)
    assert ran == ["faust", "copy"]
