"""Token buckets: rate and burst, per key, bounded, refusals that say which limit and when."""

from __future__ import annotations

import asyncio
import time

import pytest

from rmm_common.errors import ConfigError
from rmm_server.ratelimit import (
    ENROLL_RATE,
    OPERATOR_RATE,
    Rate,
    RateLimited,
    RateLimits,
    TokenBuckets,
    peer_address,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_parse_rates() -> None:
    assert Rate.parse("10/min:20", "--x") == Rate(10 / 60, 20, "10/min:20")
    assert Rate.parse("20/s:100", "--x") == Rate(20.0, 100, "20/s:100")
    assert Rate.parse(" 5 / hour ", "--x") == Rate(5 / 3600, 5, "5 / hour")  # burst = count
    assert Rate.parse("0.5/s", "--x") == Rate(0.5, 1, "0.5/s")
    assert Rate.parse("off", "--x") is None
    assert str(Rate.parse("10/min:20", "--x")) == "10/min:20 (bursts of 20)"
    for bad in ("10", "10/fortnight", "ten/min", "10/min:", "-1/s", "10/min:0"):
        with pytest.raises(ConfigError, match="--enroll-rate"):
            Rate.parse(bad, "--enroll-rate")
    assert ENROLL_RATE is not None and OPERATOR_RATE is not None


def test_burst_then_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(Rate(2.0, 5), clock=clock)
    assert [buckets.take("a") for _ in range(5)] == [0.0] * 5
    assert buckets.take("a") == pytest.approx(0.5)  # empty: the next token comes in 1/rate
    assert buckets.take("a") == pytest.approx(0.5)  # a refusal takes nothing
    clock.now += 0.25
    assert buckets.take("a") == pytest.approx(0.25)
    clock.now += 0.25
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    clock.now += 100  # refills, but never above the burst
    assert [buckets.take("a") for _ in range(5)] == [0.0] * 5
    assert buckets.take("a") > 0


def test_keys_are_independent() -> None:
    clock = Clock()
    buckets = TokenBuckets(Rate(1.0, 2), clock=clock)
    assert buckets.take("flood") == buckets.take("flood") == 0.0
    assert buckets.take("flood") > 0
    assert buckets.take("other") == 0.0


def test_keys_are_bounded_least_recently_used_first() -> None:
    clock = Clock()
    buckets = TokenBuckets(Rate(1.0, 1), max_keys=3, clock=clock)
    for key in ("a", "b", "c"):
        assert buckets.take(key) == 0.0
    assert buckets.take("a") > 0  # "a" is now the most recently used
    assert buckets.take("d") == 0.0  # evicts "b", the least recently used
    assert len(buckets) == 3
    assert buckets.take("a") > 0  # kept: still empty
    assert buckets.take("b") == 0.0  # forgotten: a full bucket again (only ever more lenient)


def test_reserve_goes_into_debt_and_says_how_long_to_wait() -> None:
    clock = Clock()
    buckets = TokenBuckets(Rate(10.0, 2), clock=clock)
    assert buckets.reserve("a") == 0.0
    assert buckets.reserve("a") == 0.0
    assert buckets.reserve("a") == pytest.approx(0.1)
    assert buckets.reserve("a") == pytest.approx(0.2)
    clock.now += 0.2
    assert buckets.reserve("a") == pytest.approx(0.1)


def test_refusals_name_the_limit_and_the_wait() -> None:
    clock = Clock()
    limits = RateLimits(
        enroll=Rate.parse("6/min:2", "--enroll-rate"),
        operator=Rate.parse("1/s:1", "--operator-rate"),
        clock=clock,
    )
    limits.check_enrollment("10.0.0.1", "tok1")
    limits.check_enrollment("10.0.0.1", "tok2")
    with pytest.raises(RateLimited) as caught:
        limits.check_enrollment("10.0.0.1", "tok3")
    assert str(caught.value) == (
        "too many enrollments from 10.0.0.1: this server allows 6/min:2 (bursts of 2) per "
        "source address; retry in 10 s (server option --enroll-rate)"
    )
    assert caught.value.retry_after == pytest.approx(10.0)
    # Another address with a token used up elsewhere is refused by the token's bucket.
    limits.check_enrollment("10.0.0.2", "tok1")
    with pytest.raises(RateLimited, match="too many enrollments with token tok1"):
        limits.check_enrollment("10.0.0.3", "tok1")
    limits.check_operator("alice")
    with pytest.raises(RateLimited, match=r"operator 'alice' made too many calls.*retry in 1\.0 s"):
        limits.check_operator("alice")
    limits.check_operator("bob")  # other operators keep being served
    refused = {
        sample.labels["limit"]: sample.value
        for metric in limits.refused.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }
    assert refused == {"enroll_address": 1.0, "enroll_token": 1.0, "operator": 1.0}


def test_no_rate_is_no_limit() -> None:
    limits = RateLimits()
    for _ in range(1000):
        limits.check_enrollment("10.0.0.1", "tok")
        limits.check_operator("alice")
    asyncio.run(limits.pace_report("agent"))


def test_pace_report_slows_a_flood_down() -> None:
    limits = RateLimits(reports=Rate(100.0, 5))

    async def send(count: int) -> float:
        started = time.monotonic()
        for _ in range(count):
            await limits.pace_report("agent")
        return time.monotonic() - started

    assert asyncio.run(send(5)) < 0.05  # the burst goes at once
    assert asyncio.run(send(20)) >= 0.15  # then 100 a second


def test_peer_address() -> None:
    assert peer_address("ipv4:127.0.0.1:53412") == "127.0.0.1"
    assert peer_address("ipv6:[::1]:53412") == "::1"
    assert peer_address("ipv6:%5B2001:db8::7%5D:443") == "2001:db8::7"
    assert peer_address("unix:/run/rmm.sock") == "unix"
    assert peer_address("") == "unknown"
