"""Failure handling of a worker: what is retried, for how long, and how a worker stops.

Two kinds of failure, two answers:

* **Transient** (Redis or Kafka unreachable, a timeout, a refused connection): the stage
  is retried with exponential backoff and full jitter, for at most ``retry_max_s``. The
  partition waits meanwhile (lag grows, ops are paged by the lag rule). Retrying is safe:
  scoring is idempotent given the stored state, and the outbox is re-published first.
* **Anything else** (a bug, a corrupt state blob): never retried as if nothing happened,
  and never acknowledged. The caller isolates the event that fails alone and dead-letters
  it, or the worker stops.

Stopping is :func:`stop_uncommitted`: the process exits at once, before Faust can
acknowledge the batch in hand or commit its offset, so the supervisor's restart
reprocesses it. Raising out of the agent instead would not do: Faust acknowledges a
``take_events`` batch when the agent leaves it, whatever the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

from aiokafka.errors import KafkaError
from redis.exceptions import RedisClusterException, RedisError

log = logging.getLogger("wardwatch.worker")
T = TypeVar("T")

TRANSIENT: tuple[type[BaseException], ...] = (
    TimeoutError,
    RedisError,
    RedisClusterException,  # a cluster unreachable, or slots uncovered during a failover
    KafkaError,
    OSError,
)
"""Failures of the services around the worker, retried with backoff."""

EXIT_UNCOMMITTED = 70  # EX_SOFTWARE: the supervisor restarts the worker


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT)


def stop_uncommitted(why: str) -> NoReturn:
    """Stop the process now, leaving the batch in hand unacknowledged and uncommitted."""
    log.critical("stopping without committing: %s", why)
    logging.shutdown()  # flush the log handlers; nothing else may run
    os._exit(EXIT_UNCOMMITTED)


async def keep_running(
    what: str,
    run: Callable[[], Awaitable[object]],
    on_failure: Callable[[str], None],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> NoReturn:
    """Run a long-lived reader (``run`` returns only by failing) for ever: a failure,
    Kafka away or a bug, is counted and logged, and ``run`` starts again after a pause
    doubling from 1 s to 30 s. Never a reason for the worker to stop scoring."""
    pause = 1.0
    while True:
        try:
            await run()
        except Exception as exc:  # noqa: BLE001 - the reader resumes where it committed
            on_failure(what)
            log.error("%s failed (%r); again in %.0f s", what, exc, pause)
            await sleep(pause)
            pause = min(pause * 2, 30.0)


def stop_for(what: str, exc: BaseException | None) -> NoReturn:
    """Stop uncommitted because of an unexpected ``exc`` while handling ``what``."""
    log.critical("unexpected failure handling a %s", what, exc_info=exc)
    stop_uncommitted(f"{type(exc).__name__} while handling a {what}")


async def guarded(what: str, work: Awaitable[None]) -> None:
    """Run the handling of consumed messages to its end.

    A rebalance cancels the agent, and Faust acknowledges the batch in hand when the
    agent leaves it: the work is shielded and finished first, so what is acknowledged
    was applied. An exception that escapes the handler (not a Redis or Kafka failure:
    those are retried) stops the worker before anything is acknowledged."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            log.info("finishing the %s in hand before giving up the partitions", what)
            await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            stop_for(what, task.exception())
        raise
    except Exception as exc:  # noqa: BLE001 - never acknowledged: the worker stops
        stop_for(what, exc)


async def in_background(
    what: str, work: Callable[[], Awaitable[None]], on_failure: Callable[[str], None]
) -> None:
    """A timer's run: a failure is logged and counted, and the next run tries again."""
    try:
        await work()
    except Exception as exc:  # noqa: BLE001 - a timer must not crash the worker
        on_failure(what)
        if is_transient(exc):
            log.error("%s failed (%s); next run retries", what, type(exc).__name__)
        else:
            log.exception("%s failed; next run retries", what)


class Retrier:
    """Runs a stage until it succeeds, retrying transient failures for ``max_s``."""

    def __init__(
        self,
        max_s: float,
        *,
        on_retry: Callable[[str], None],
        base_s: float = 0.5,
        cap_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        give_up: Callable[[str], NoReturn] = stop_uncommitted,
    ) -> None:
        self.max_s = max_s
        self.on_retry = on_retry  # counted per stage
        self.base_s = base_s
        self.cap_s = cap_s
        self.sleep = sleep
        self.clock = clock
        self.jitter = jitter
        self.give_up = give_up

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)] (never below 50 ms)."""
        return max(0.05, self.jitter() * min(self.cap_s, self.base_s * 2**attempt))

    async def run(
        self,
        stage: str,
        attempt: Callable[[], Awaitable[T]],
        before_retry: Callable[[], Awaitable[object]] | None = None,
    ) -> T:
        """``attempt()`` until it succeeds. Transient failures are retried (``before_retry``
        runs first, its own transient failures ignored); past ``max_s`` the worker stops
        uncommitted. Any other exception propagates to the caller."""
        start = self.clock()
        n = 0
        while True:
            try:
                return await attempt()
            except TRANSIENT as exc:
                elapsed = self.clock() - start
                if elapsed >= self.max_s:
                    self.give_up(f"{stage} still failing after {elapsed:.0f} s ({exc!r})")
                wait = self.delay(n)
                n += 1
                self.on_retry(stage)
                log.error("%s failed (%s); retrying in %.1f s", stage, type(exc).__name__, wait)
                await self.sleep(wait)
                if before_retry is not None:
                    with contextlib.suppress(*TRANSIENT):
                        await before_retry()
