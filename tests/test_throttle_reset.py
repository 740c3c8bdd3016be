"""A server's reset is obeyed in full: ``max_backoff`` caps only our own backoff.

The bug: a 429 carried ``X-Ratelimit-Reset`` 60.78 s ahead, the throttler held only 60 s
(``max_backoff = "1m"``) and three requests left before the advertised reset.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqd_cli.brokers.alpaca import AlpacaBroker
from mqd_cli.brokers.errors import RateLimited
from mqd_cli.clock import BacktestClock
from mqd_cli.store import Store
from mqd_cli.throttle import RateLimit, Throttler, parse_rate_headers, to_us
from mqd_cli.throttle.feedback import MAX_SERVER_HOLD, server_wait_us

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
ALPACA = {"alpaca_trading": RateLimit("alpaca_trading", 200, MINUTE)}


def epoch_s(when: datetime) -> str:
    return str(int(when.timestamp()))


@pytest.fixture(params=["memory", "shared"])
def budget(request, tmp_path):
    """``budget(clock, **policy) -> [throttler, ...]``: one throttler in memory, or two on one
    store file as two processes would have (the second only sees the store)."""

    def build(clock, limits=ALPACA, **kw):
        kw.setdefault("safety_margin", 0.0)
        kw.setdefault("rng", random.Random(3))
        if request.param == "memory":
            return [Throttler(clock, limits, **kw)]
        return [
            Throttler(clock, limits, store=Store.open(tmp_path / "mqd.db"), shared=True, **kw)
            for _ in range(2)
        ]

    return build


async def test_429_reset_beyond_max_backoff_holds_every_caller_until_the_reset(budget):
    clock = BacktestClock(T0 + timedelta(seconds=0.22))
    throttlers = budget(clock, max_backoff=60.0)
    th = throttlers[0]
    reset = T0 + timedelta(seconds=61)  # 60.78 s ahead, beyond max_backoff
    sent: list[datetime] = []

    async def caller(t: Throttler):
        await t.acquire_async("alpaca_trading")
        sent.append(clock.now())

    th.observe("alpaca_trading", 429, {"X-Ratelimit-Reset": epoch_s(reset)})
    await asyncio.gather(*(caller(throttlers[i % len(throttlers)]) for i in range(6)))
    assert sent == [reset] * 6  # not one before the reset, and none later than needed
    for t in throttlers:
        (s,) = t.stats()
        assert s.rate_limited == 1 and s.last_reset == reset


def test_a_hold_stored_for_other_processes_is_the_full_reset_not_max_backoff(tmp_path):
    clock = BacktestClock(T0)
    run, cron = (
        Throttler(clock, ALPACA, store=Store.open(tmp_path / "mqd.db"), shared=True, max_backoff=5)
        for _ in range(2)
    )
    reset = T0 + timedelta(seconds=90)
    run.observe("alpaca_trading", 429, {"X-Ratelimit-Reset": epoch_s(reset)})
    (s,) = cron.stats()
    assert s.hold_until == reset
    assert cron.acquire("alpaca_trading") == 90.0


def test_call_retries_a_rate_limited_order_only_at_a_reset_beyond_max_backoff(budget):
    clock = BacktestClock(T0)
    th = budget(clock, max_backoff=1.0)[0]
    reset = T0 + timedelta(seconds=75)
    attempts: list[datetime] = []

    def submit():
        attempts.append(clock.now())
        if len(attempts) == 1:
            raise RateLimited(status=429, reset_at=reset)
        return "order-1"

    assert th.call("alpaca_trading", submit, idempotent=False) == "order-1"
    assert attempts == [T0, reset]


def test_retry_after_in_seconds_beyond_max_backoff_is_held_in_full(budget):
    clock = BacktestClock(T0)
    throttlers = budget(clock, max_backoff=10.0)
    throttlers[0].observe("alpaca_trading", 429, {"Retry-After": "75"})
    assert throttlers[-1].acquire("alpaca_trading") == 75.0
    assert clock.now() == T0 + timedelta(seconds=75)


def test_retry_after_as_http_date_beyond_max_backoff_is_held_in_full(budget):
    clock = BacktestClock(T0)
    throttlers = budget(clock, max_backoff=10.0)
    until = T0 + timedelta(minutes=2)
    throttlers[0].observe("alpaca_trading", 429, {"Retry-After": format_datetime(until, True)})
    throttlers[-1].acquire("alpaca_trading")
    assert clock.now() == until


def test_the_later_of_reset_and_retry_after_is_obeyed(budget):
    clock = BacktestClock(T0)
    th = budget(clock, max_backoff=1.0)[0]
    reset = T0 + timedelta(seconds=70)
    th.observe("alpaca_trading", 429, {"X-Ratelimit-Reset": epoch_s(reset), "Retry-After": "80"})
    th.acquire("alpaca_trading")
    assert clock.now() == T0 + timedelta(seconds=80)


def test_max_backoff_still_caps_our_own_backoff_after_repeated_429s_without_a_reset(budget):
    clock = BacktestClock(T0)
    th = budget(clock, backoff_base=1.0, max_backoff=4.0)[0]
    waits = []
    for _ in range(8):
        th.observe("alpaca_trading", 429, {})
        waits.append(th.acquire("alpaca_trading"))
    assert all(0.5 <= w <= 4.0 for w in waits)
    assert max(waits[4:]) > 2.0  # it did grow to the cap's range


def test_a_reset_hours_ahead_is_cut_to_the_sanity_bound_with_a_warning(budget, caplog):
    clock = BacktestClock(T0)
    th = budget(clock, max_backoff=30.0)[0]
    bogus = T0 + timedelta(days=11)
    with caplog.at_level(logging.WARNING, logger="mqd.throttle"):
        th.observe("alpaca_trading", 429, {"X-Ratelimit-Reset": epoch_s(bogus)})
    th.acquire("alpaca_trading")
    assert clock.now() == T0 + MAX_SERVER_HOLD
    assert MAX_SERVER_HOLD >= 10 * MINUTE  # far above Alpaca's 60 s window
    (record,) = [r for r in caplog.records if r.name == "mqd.throttle"]
    assert "alpaca_trading" in record.getMessage() and "sanity bound" in record.getMessage()


def test_the_sanity_bound_never_cuts_a_reset_inside_a_long_budget_window(budget, caplog):
    clock = BacktestClock(T0)
    daily = {"vendor": RateLimit("vendor", 1000, timedelta(days=1))}
    th = budget(clock, daily, max_backoff=60.0)[0]
    reset = T0 + timedelta(hours=3)  # a daily quota's reset: longer than MAX_SERVER_HOLD, valid
    with caplog.at_level(logging.WARNING, logger="mqd.throttle"):
        th.observe("vendor", 429, {"X-Ratelimit-Reset": epoch_s(reset)})
    th.acquire("vendor")
    assert clock.now() == reset
    assert not [r for r in caplog.records if r.name == "mqd.throttle"]


@pytest.mark.parametrize("retry_after", [math.inf, math.nan, -5.0, 1e308])
def test_a_rate_limited_error_with_an_unusable_retry_after_never_crashes(retry_after):
    clock = BacktestClock(T0)
    th = Throttler(clock, ALPACA, backoff_base=1.0, max_backoff=4.0)
    attempts: list[datetime] = []

    def fetch():
        attempts.append(clock.now())
        if len(attempts) == 1:
            raise RateLimited(status=429, retry_after=retry_after)
        return "ok"

    assert th.call("alpaca_trading", fetch, idempotent=True) == "ok"
    waited = (attempts[1] - attempts[0]).total_seconds()
    if retry_after == 1e308:  # usable but absurd: the sanity bound
        assert waited == MAX_SERVER_HOLD.total_seconds()
    else:  # no usable hint: our own backoff, attempt 1 (0.5..1 s)
        assert 0.5 <= waited <= 1.0


# -- properties ---------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    reset_in=st.one_of(st.none(), st.integers(1, 900)),
    retry_after=st.one_of(st.none(), st.floats(0.001, 900.0)),
    offset_us=st.integers(0, 999_999),
    max_backoff=st.floats(1.0, 60.0),
)
def test_a_429_holds_exactly_the_later_server_reset_whatever_max_backoff(
    reset_in, retry_after, offset_us, max_backoff
):
    start = T0 + timedelta(microseconds=offset_us)
    clock = BacktestClock(start)
    th = Throttler(clock, ALPACA, max_backoff=max_backoff, backoff_base=0.5)
    headers = {}
    expected = start
    if reset_in is not None:  # Alpaca: whole epoch seconds, so up to 1 s less than reset_in
        headers["X-Ratelimit-Reset"] = epoch_s(T0 + timedelta(seconds=reset_in))
        expected = T0 + timedelta(seconds=reset_in)
    if retry_after is not None:
        headers["Retry-After"] = repr(retry_after)
        expected = max(expected, start + timedelta(microseconds=math.ceil(retry_after * 1e6)))
    th.observe("alpaca_trading", 429, headers)
    waited = th.acquire("alpaca_trading")
    if expected > start:
        assert clock.now() == expected
    else:  # no hint from the server: our own backoff, capped by max_backoff
        assert 0.25 <= waited <= min(0.5, max_backoff)


HEADER_VALUES = st.one_of(
    st.text(max_size=40),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: format_datetime(d, True)),
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["X-Ratelimit-Reset", "Retry-After", "X-Ratelimit-Remaining", "Other"]),
        HEADER_VALUES,
    )
)
def test_malformed_429_headers_never_crash_and_fall_back_to_our_own_backoff(headers):
    clock = BacktestClock(T0)
    th = Throttler(clock, ALPACA, backoff_base=1.0, max_backoff=4.0)
    th.observe("alpaca_trading", 429, headers)
    waited = th.acquire("alpaca_trading")
    now = to_us(T0)
    h = parse_rate_headers(headers, now)
    server = server_wait_us(h.reset_at, h.retry_after, now)
    if server == 0:
        assert 0.5 <= waited <= 1.0  # backoff of attempt 1
    else:
        assert waited == pytest.approx(min(server / 1e6, MAX_SERVER_HOLD.total_seconds()))


# -- against the real emulator ------------------------------------------------------------------


def test_emulator_429_reset_beyond_max_backoff_holds_the_budget_until_the_advertised_reset(
    emulator,
):
    srv = emulator(rate_limit=1)  # the emulator counts per 60 s of real time
    clock = BacktestClock(datetime.now(UTC))  # our time, driven forward without sleeping
    # A 1 s local window and a 1 s max_backoff: before the fix the hold was cut to 1 s.
    limits = {"alpaca_trading": RateLimit("alpaca_trading", 200, timedelta(seconds=1))}
    th = Throttler(clock, limits, safety_margin=0.0, max_backoff=1.0, max_attempts=1)
    broker = AlpacaBroker(srv.alpaca_settings(), throttler=th)
    broker.get_clock()
    with pytest.raises(RateLimited) as info:
        broker.get_clock()
    reset = info.value.reset_at
    assert reset is not None and reset - clock.now() > timedelta(seconds=30)
    th.acquire("alpaca_trading")
    assert clock.now() == reset
    assert srv.state()["requests"] == 2
