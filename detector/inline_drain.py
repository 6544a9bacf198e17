"""faust's consumer drain loop without four asyncio tasks per message.

faust (0.15.3) hands every fetched message to its conductor with
``await self.wait_first(callback(message), self.suspend_flow.wait())``: a rebalance that sets
``suspend_flow`` may interrupt a delivery that is stuck (a full stream buffer, paused flow). mode's
``wait_first`` wraps the callback, ``suspend_flow.wait()``, ``stopped.wait()`` and ``crashed.wait()`` in
four tasks, waits for the first and cancels the rest: about 0.1 ms of CPU per message here (the worker's
shell went from 0.211 to 0.091 ms per message without them), whereas the delivery itself, when the
stream's buffer has room, finishes without ever waiting.

:func:`run_inline` starts the delivery in the drain loop's own task. If it finishes without waiting
(the usual case) there is no task at all; if it has to wait, the rest of it is raced against
``suspend_flow`` exactly as faust does, from the point where it stopped. So a stuck delivery can still be
interrupted by a rebalance, and nothing else changes: same order, same offsets, same acks.

>>> import asyncio
>>> async def quick():
...     return 42
>>> async def slow():
...     await asyncio.sleep(0)
...     return 43
>>> async def race(rest):          # what the drain loop does with a delivery that must wait
...     return ("raced", await rest)
>>> asyncio.run(run_inline(quick(), race))
42
>>> asyncio.run(run_inline(slow(), race))
('raced', 43)
"""
from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from typing import Any, Awaitable, Callable, Coroutine, Generator

from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)

# sha256 of faust 0.15.3's Consumer._drain_messages, the loop InlineDrainConsumer copies
COPIED_DRAIN_LOOP_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"


def faust_drain_loop_sha256() -> str | None:
    """The installed faust's drain loop, hashed (None when its source cannot be read)."""
    try:
        return hashlib.sha256(inspect.getsource(Consumer._drain_messages).encode()).hexdigest()
    except (OSError, TypeError):
        return None


class _Resume:
    """Awaitable that drives a coroutine on from the first value it yielded (the future it waits on).

    Awaited inside a task, it yields that future to the event loop as the coroutine would have, and passes
    every result, exception and cancellation back into the coroutine.
    """

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine, first: Any):
        self._coro, self._first = coro, first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self._coro, self._first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:       # cancellation included: the coroutine decides what to do
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _rest(coro: Coroutine, first: Any) -> Any:
    return await _Resume(coro, first)


async def run_inline(coro: Coroutine, race: Callable[[Awaitable], Awaitable]) -> Any:
    """Run ``coro`` in the current task up to its first wait; only if it waits, ``race`` the rest.

    Returns the coroutine's result when it finishes without waiting, else whatever ``race`` returns.
    """
    try:
        first = coro.send(None)
    except StopIteration as stop:
        return stop.value
    except BaseException:
        coro.close()
        raise
    return await race(_rest(coro, first))


class InlineDrainConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, whose drain loop delivers messages with :func:`run_inline`.

    The loop is faust 0.15.3's ``Consumer._drain_messages`` with one line changed (marked below);
    the worker's tests (rebalances, kill -9, broker outages) run through it. With any other faust loop
    (an upgrade) it runs faust's own, and says so once: a copy of an older loop could miss a fix.
    """

    async def _drain_messages(self, fetcher) -> None:
        if faust_drain_loop_sha256() != COPIED_DRAIN_LOOP_SHA256:
            log.warning("faust's consumer drain loop is not the one detector.inline_drain copied; "
                        "running faust's own (slower: four tasks per message)")
            return await super()._drain_messages(fetcher)
        return await self._inline_drain_messages(fetcher)

    async def _inline_drain_messages(self, fetcher) -> None:  # pragma: no cover - exercised by the stream tests
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set

        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspend_flow = self.suspend_flow
        wait_first = self.wait_first

        def race(rest: Awaitable) -> Awaitable:
            return wait_first(rest, suspend_flow.wait())

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset:
                                if acks_enabled_for(message.topic):
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None:
                                if self._n_acked >= commit_every:
                                    self._n_acked = 0
                                    await self.commit()
                            # changed: faust awaits wait_first(callback(message), suspend_flow.wait())
                            if suspend_flow.is_set():
                                await race(callback(message))
                            else:
                                await run_inline(callback(message), race)
                            set_read_offset(tp, offset)
                    unset_flag(flag_consumer_fetching)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)
