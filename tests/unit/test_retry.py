"""The worker's retry policy: transient failures retried with capped, jittered backoff for
a bounded time, then the worker stops; any other failure is the caller's."""

from __future__ import annotations

from typing import NoReturn

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from agents.retry import Retrier, is_transient


class Stopped(Exception):
    pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def retrier(clock: Clock, max_s: float = 60.0, jitter: float = 1.0) -> tuple[Retrier, list[str]]:
    retried: list[str] = []

    def give_up(why: str) -> NoReturn:
        raise Stopped(why)

    r = Retrier(
        max_s,
        on_retry=retried.append,
        sleep=clock.sleep,
        clock=clock,
        jitter=lambda: jitter,
        give_up=give_up,
    )
    return r, retried


async def test_transient_failures_are_retried_until_success() -> None:
    clock = Clock()
    r, retried = retrier(clock)
    failures = [RedisConnectionError("down"), TimeoutError(), OSError("refused")]
    flushed: list[int] = []

    async def attempt() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    async def flush() -> None:
        flushed.append(1)

    assert await r.run("score", attempt, before_retry=flush) == "ok"
    assert retried == ["score"] * 3 and len(flushed) == 3
    assert clock.sleeps == [0.5, 1.0, 2.0]  # exponential at full jitter 1.0


async def test_backoff_is_capped_jittered_and_never_zero() -> None:
    r, _ = retrier(Clock())
    assert r.delay(20) == 10.0
    r0, _ = retrier(Clock(), jitter=0.0)
    assert r0.delay(3) == 0.05
    half, _ = retrier(Clock(), jitter=0.5)
    assert half.delay(2) == 1.0


async def test_past_the_bound_the_worker_stops() -> None:
    clock = Clock()
    r, retried = retrier(clock, max_s=30.0)

    async def attempt() -> None:
        raise RedisConnectionError("still down")

    with pytest.raises(Stopped, match="score still failing after"):
        await r.run("score", attempt)
    assert clock.now >= 30.0 and len(retried) >= 3


async def test_other_failures_are_not_retried() -> None:
    r, retried = retrier(Clock())

    async def attempt() -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        await r.run("score", attempt)
    assert retried == []
    assert not is_transient(KeyError()) and is_transient(RedisConnectionError())


async def test_a_failing_flush_before_a_retry_does_not_stop_the_retry() -> None:
    clock = Clock()
    r, _ = retrier(clock)
    calls = iter([RedisConnectionError("down"), None])

    async def attempt() -> str:
        exc = next(calls)
        if exc:
            raise exc
        return "ok"

    async def flush() -> None:
        raise RedisConnectionError("also down")

    assert await r.run("publish", attempt, before_retry=flush) == "ok"
