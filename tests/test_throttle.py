"""The Throttler on BacktestClock: exact windows, weights, pools, FIFO, 429s, retries, stats."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqd_cli.brokers.errors import BrokerUnavailable, OrderRejected, RateLimited
from mqd_cli.clock import BacktestClock
from mqd_cli.config.loading import loads
from mqd_cli.errors import ConfigError, UsageError
from mqd_cli.factory import Services
from mqd_cli.store import Store
from mqd_cli.throttle import (
    PRESETS,
    RateLimit,
    Throttler,
    UnknownLimit,
    backoff_delay,
    parse_rate_headers,
    read_stats,
    resolve_limits,
    to_us,
)

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
SEC = timedelta(seconds=1)


def limits(**defs) -> dict[str, RateLimit]:
    """``limits(a=(5, 1))`` -> {"a": RateLimit("a", 5, 1s)}; a third item names pools."""
    out = {}
    for name, spec in defs.items():
        out[name] = RateLimit(name, spec[0], timedelta(seconds=spec[1]), tuple(spec[2:]))
    return out


@pytest.fixture(params=["memory", "shared"])
def make(request, tmp_path):
    """Build a throttler in memory or over a real store file (margin 0 unless given)."""

    def build(clock, defs, **kw):
        kw.setdefault("safety_margin", 0.0)
        kw.setdefault("rng", random.Random(7))
        if request.param == "shared":
            store = Store.open(tmp_path / "mqd.db")
            return Throttler(clock, defs, store=store, shared=True, **kw)
        return Throttler(clock, defs, **kw)

    return build


def sends_of(clock, throttler, name, n, weight=1):
    out = []
    for _ in range(n):
        throttler.acquire(name, weight)
        out.append(clock.now())
    return out


def max_in_any_window(events: list[tuple[datetime, int]], window: timedelta) -> int:
    """Largest weight inside any half-open window [t, t + window) that starts at a send."""
    events = sorted(events)
    best = 0
    for i, (start, _w) in enumerate(events):
        total = sum(w for t, w in events[i:] if t < start + window)
        best = max(best, total)
    return best


# -- the window ---------------------------------------------------------------------------------


def test_sixth_call_at_five_per_second_waits_exactly_until_its_slot(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(5, 1)))
    waits = [th.acquire("api") for _ in range(6)]
    assert waits == [0, 0, 0, 0, 0, 1.0]
    assert clock.now() == T0 + SEC


def test_call_exactly_at_window_edge_passes_and_one_microsecond_earlier_waits(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(1, 1)))
    th.acquire("api")
    clock.advance(SEC - timedelta(microseconds=1))
    assert th.acquire("api") == pytest.approx(1e-6)
    assert clock.now() == T0 + SEC
    clock.advance(SEC)
    assert th.acquire("api") == 0.0  # the send at T0+1s left the window at exactly T0+2s


def test_weight_five_call_waits_where_weight_one_call_passes(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(5, 1)))
    th.acquire("api", weight=1)
    clock.advance(0.5)
    assert th.acquire("api", weight=1) == 0.0  # 2 of 5 used
    waited = th.acquire("api", weight=5)  # needs the whole budget: both sends must leave
    assert clock.now() == T0 + timedelta(seconds=1.5)
    assert waited == pytest.approx(1.0)


def test_weight_above_the_budget_is_a_usage_error_not_a_hang(make):
    th = make(BacktestClock(T0), limits(api=(5, 1)))
    with pytest.raises(UsageError, match="can never fit"):
        th.acquire("api", weight=6)
    with pytest.raises(UsageError, match="positive integer"):
        th.acquire("api", weight=0)


def test_pooled_limit_draws_on_both_budgets(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(quote=(10, 60, "burst"), burst=(3, 1)))
    times = sends_of(clock, th, "quote", 11)
    assert times[:3] == [T0] * 3
    assert times[3:6] == [T0 + SEC] * 3  # the 3/s pool paces the 10/min limit
    assert times[9] == T0 + 3 * SEC
    assert times[10] == T0 + timedelta(seconds=60)  # then the minute budget is spent
    stats = {s.name: s for s in th.stats()}
    assert stats["quote"].requests == 11 and stats["burst"].requests == 11


def test_safety_margin_lowers_the_admitted_weight(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(200, 60)), safety_margin=0.03)
    assert th.budget("api") == 194
    times = sends_of(clock, th, "api", 195)
    assert times[193] == T0 and times[194] == T0 + timedelta(seconds=60)


def test_saturating_load_never_exceeds_and_uses_the_whole_budget(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(200, 60)), safety_margin=0.03)  # budget 194 per minute
    events = []
    for _ in range(1000):
        th.acquire("api")
        events.append((clock.now(), 1))
    assert max_in_any_window(events, timedelta(minutes=1)) <= 194
    elapsed = (events[-1][0] - T0) / timedelta(minutes=1)
    # 1000 sends over 5 full windows plus the first send of a sixth: nothing is left idle.
    assert (len(events) - 1) / (194 * elapsed) >= 0.99


def test_mixed_weights_under_saturation_never_exceed_the_budget(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(20, 1)), safety_margin=0.05)  # budget 19
    rng = random.Random(3)
    events = []
    for _ in range(300):
        w = rng.choice([1, 1, 1, 2, 3])
        th.acquire("api", w)
        events.append((clock.now(), w))
    assert max_in_any_window(events, SEC) <= 19
    # FIFO: a weight-3 call that does not fit waits with everyone behind it, so a window may
    # end up to 2 units short; never more.
    per_window: dict[datetime, int] = {}
    for t, w in events:
        per_window[t] = per_window.get(t, 0) + w
    assert min(list(per_window.values())[:-1]) >= 17


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 700_000), st.integers(1, 4)),  # (gap in us, weight)
        min_size=1,
        max_size=60,
    ),
    st.integers(4, 12),
)
def test_random_arrivals_never_put_more_than_the_budget_in_any_window(arrivals, limit):
    clock = BacktestClock(T0)
    th = Throttler(clock, limits(api=(limit, 1)), safety_margin=0.0)
    events = []
    for gap, w in arrivals:
        clock.advance(timedelta(microseconds=gap))
        th.acquire("api", w)
        events.append((clock.now(), w))
    assert max_in_any_window(events, SEC) <= limit


class CountingClock(BacktestClock):
    """Counts every read of the time."""

    reads = 0

    def now(self):
        self.reads += 1
        return super().now()

    def monotonic(self):
        self.reads += 1
        return super().monotonic()


class SteppedClock(BacktestClock):
    """A wall clock that an operator (or NTP) steps, beside a monotonic clock that never jumps."""

    step = timedelta(0)

    def now(self):
        return super().now() + self.step


async def test_an_uncontended_acquire_reads_the_clock_once():
    clock = CountingClock(T0)
    th = Throttler(clock, limits(api=(100, 1), quote=(50, 1, "api")))
    th.acquire("api")
    th.acquire("quote")
    clock.reads = 0
    for _ in range(5):
        th.acquire("api")
        await th.acquire_async("quote", 2)
    assert clock.reads == 10


def test_a_wall_clock_step_neither_reopens_nor_stretches_an_in_memory_window():
    clock = SteppedClock(T0)
    th = Throttler(clock, limits(api=(1, 1)), safety_margin=0.0)
    th.acquire("api")
    clock.step = timedelta(hours=1)  # forward: the send must not look an hour old
    assert th.acquire("api") == 1.0
    clock.step = -timedelta(hours=1)  # backward: the window must not last an extra hour
    clock.advance(SEC)
    assert th.acquire("api") == 0.0


# -- FIFO and async -----------------------------------------------------------------------------


async def test_waiters_are_served_first_come_first_served(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(5, 1)))
    order: list[tuple[int, datetime]] = []
    weights = [1, 1, 5, 1, 2, 1, 3, 1, 1, 4, 1]

    async def worker(i, w):
        await th.acquire_async("api", w)
        order.append((i, clock.now()))

    await asyncio.gather(*(worker(i, w) for i, w in enumerate(weights)))
    assert [i for i, _t in order] == list(range(len(weights)))  # the weight-5 call is not starved
    sends = [(t, weights[i]) for i, t in order]
    assert max_in_any_window(sends, SEC) <= 5
    assert order[2][1] == T0 + SEC  # waits for both weight-1 sends to leave


async def test_a_call_that_fits_now_still_queues_behind_an_earlier_waiter(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(2, 1)))
    th.acquire("api")  # 1 of 2 used
    whole = asyncio.ensure_future(th.acquire_async("api", 2))  # queued for T0+1s
    await asyncio.sleep(0)
    clock.advance(0.5)
    # 1 more would fit right now, but the weight-2 waiter came first: its slot, then ours. This
    # call blocks the loop, so the waiter is not let through at its slot; it may still go up to
    # its tolerance (5 ms) later and counts as sent then: ours waits a window after that.
    assert th.acquire("api") == 1.505
    assert clock.now() == T0 + 2 * SEC + timedelta(milliseconds=5)
    await whole


async def test_cancelled_waiter_gives_its_slot_back(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(1, 1)))
    await th.acquire_async("api")
    doomed = asyncio.ensure_future(th.acquire_async("api"))  # slot T0+1s
    await asyncio.sleep(0)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await th.acquire_async("api")
    assert clock.now() == T0 + SEC  # took the cancelled caller's slot, not T0+2s


# -- server feedback ----------------------------------------------------------------------------


async def test_429_with_reset_in_20s_holds_every_caller_until_then_and_counts_it(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(5, 1)))
    sent: list[datetime] = []

    async def caller():
        await th.acquire_async("api")
        sent.append(clock.now())

    first = [asyncio.ensure_future(caller()) for _ in range(8)]  # 5 now, 3 queued for T0+1s
    for _ in range(3):
        await asyncio.sleep(0)
    reset = T0 + timedelta(seconds=20)
    th.observe("api", 429, {"X-RateLimit-Reset": str(int(reset.timestamp()))})
    late = [asyncio.ensure_future(caller()) for _ in range(4)]
    await asyncio.gather(*first, *late)
    assert sent[:5] == [T0] * 5
    assert all(t >= reset for t in sent[5:]) and len(sent) == 12
    assert max_in_any_window([(t, 1) for t in sent], SEC) <= 5
    (s,) = th.stats()
    assert s.rate_limited == 1 and s.last_429 == T0 and s.last_reset == reset


def test_call_holds_after_rate_limited_then_retries_once_the_reset_passes(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(5, 1)))
    attempts: list[datetime] = []
    reset = T0 + timedelta(seconds=20)

    def submit():
        attempts.append(clock.now())
        if len(attempts) == 1:
            raise RateLimited(status=429, reset_at=reset)
        return "order-1"

    # A 429 means the server refused the order: resending it is safe, even when not idempotent.
    assert th.call("api", submit, idempotent=False) == "order-1"
    assert attempts == [T0, reset]
    (s,) = th.stats()
    assert s.rate_limited == 1 and s.requests == 2


def test_retry_after_holds_and_repeated_429s_back_off_further(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(100, 60)), backoff_base=1.0)
    attempts: list[datetime] = []

    def fetch():
        attempts.append(clock.now())
        if len(attempts) < 3:
            raise RateLimited(status=429, retry_after=2.0)
        return 1

    th.call("api", fetch, idempotent=True)
    assert attempts[1] == T0 + 2 * SEC
    # second 429 in a row: at least the Retry-After, and the backoff of attempt 2 (1..2 s)
    gap = (attempts[2] - attempts[1]).total_seconds()
    assert 2.0 <= gap <= 2.0 + 1e-6 or 1.0 <= gap <= 2.0
    (s,) = th.stats()
    assert s.rate_limited == 2 and s.backoffs == 1


def test_unavailable_is_retried_with_growing_backoff_only_when_idempotent(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(100, 60)), backoff_base=1.0, max_backoff=5.0, max_attempts=5)
    attempts: list[datetime] = []

    def flaky():
        attempts.append(clock.now())
        raise BrokerUnavailable("502 bad gateway", status=502)

    with pytest.raises(BrokerUnavailable):
        th.call("api", flaky, idempotent=True)
    assert len(attempts) == 5
    gaps = [(b - a).total_seconds() for a, b in zip(attempts, attempts[1:], strict=False)]
    for n, gap in enumerate(gaps, start=1):
        d = min(5.0, 2.0 ** (n - 1))
        assert d / 2 <= gap <= d + 1e-6
    assert th.stats()[0].backoffs == 4


def test_order_submit_is_never_retried_after_an_ambiguous_failure(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(100, 60)))
    calls = []

    def submit():
        calls.append(1)
        raise BrokerUnavailable("timeout")

    with pytest.raises(BrokerUnavailable):
        th.call("api", submit, idempotent=False)
    assert calls == [1] and clock.now() == T0


def test_other_broker_errors_pass_through_untouched(make):
    th = make(BacktestClock(T0), limits(api=(100, 60)))
    calls = []

    def submit():
        calls.append(1)
        raise OrderRejected("insufficient buying power", status=403)

    with pytest.raises(OrderRejected):
        th.call("api", submit, idempotent=True)
    assert calls == [1]


async def test_call_async_retries_idempotent_requests_on_the_clock(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(100, 60)), backoff_base=1.0)
    attempts = []

    async def fetch():
        attempts.append(clock.now())
        if len(attempts) == 1:
            raise BrokerUnavailable("reset by peer")
        return "bars"

    assert await th.call_async("api", fetch, idempotent=True) == "bars"
    assert 0.5 <= (attempts[1] - attempts[0]).total_seconds() <= 1.0


def test_remaining_header_tightens_the_local_window(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(10, 1)))
    th.acquire("api")
    reset = T0 + timedelta(milliseconds=500)
    # Another client on the account spent 7 more: only 2 left until the server's reset.
    th.observe("api", 200, {"x-ratelimit-remaining": "2", "x-ratelimit-reset": "0.5"})
    times = sends_of(clock, th, "api", 3)
    assert times[:2] == [T0, T0]
    assert times[2] == reset
    assert th.stats()[0].last_reset == reset


def test_generous_remaining_header_changes_nothing(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(10, 1)))
    th.observe("api", 200, {"X-Ratelimit-Remaining": "10", "X-Ratelimit-Limit": "10"})
    assert sends_of(clock, th, "api", 10) == [T0] * 10


# -- names, headers, backoff --------------------------------------------------------------------


def test_unknown_limit_name_raises_and_never_runs_the_request(make):
    th = make(BacktestClock(T0), limits(api=(5, 1)))
    ran = []
    for bad in ("nope", ["api", "nope"], []):
        with pytest.raises(UnknownLimit):
            th.acquire(bad)
        with pytest.raises(UnknownLimit):
            th.call(bad, lambda: ran.append(1), idempotent=True)
    with pytest.raises(UnknownLimit, match="unknown rate limit 'nope'") as err:
        th.observe("nope", 200, {})
    assert "known limits: api" in err.value.hint
    assert ran == []


def test_presets_cover_every_named_api():
    assert {n: (p.limit, p.window.total_seconds()) for n, p in PRESETS.items()} == {
        "alpaca_trading": (200, 60),
        "alpaca_data": (200, 60),
        "polygon": (5, 60),
        "finnhub": (60, 60),
        "finnhub_burst": (30, 1),
        "discord": (5, 2),
        "discord_global": (50, 1),
        "heartbeat": (6, 60),
    }
    assert PRESETS["finnhub"].pools == ("finnhub_burst",)
    assert PRESETS["discord"].pools == ("discord_global",)


def test_config_overrides_presets_and_adds_limits():
    cfg = loads(
        """
        [throttle.limits.alpaca_data]
        limit = 10000
        [throttle.limits.polygon]
        window = "1s"
        [throttle.limits.vendor]
        limit = 7
        window = "10s"
        pools = ["polygon"]
        """
    ).settings
    lims = resolve_limits(cfg.throttle)
    assert lims["alpaca_data"].limit == 10000 and lims["alpaca_data"].window == timedelta(minutes=1)
    assert lims["polygon"].limit == 5 and lims["polygon"].window == SEC
    assert lims["vendor"].pools == ("polygon",)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[throttle.limits.vendor]\nlimit = 7\n", "needs both limit and window"),
        ('[throttle.limits.polygon]\npools = ["nope"]\n', "unknown limit 'nope'"),
        ('[throttle.limits.polygon]\npools = ["polygon"]\n', "cannot pool itself"),
    ],
)
def test_incomplete_limit_config_is_a_config_error(toml, message):
    with pytest.raises(ConfigError, match=message):
        resolve_limits(loads(toml).settings.throttle)


def test_rate_headers_parse_epoch_delta_and_http_date():
    now = to_us(T0)
    h = parse_rate_headers({"X-RateLimit-Reset": str(int(T0.timestamp()) + 20)}, now)
    assert h.reset_at == now + 20_000_000
    assert parse_rate_headers({"x-ratelimit-reset": "1.5"}, now).reset_at == now + 1_500_000
    date = "Mon, 05 Jan 2026 14:30:30 GMT"
    assert parse_rate_headers({"Retry-After": date}, now).retry_after == 30.0
    assert parse_rate_headers({"Retry-After": "7"}, now).retry_after == 7.0
    junk = {
        "X-Ratelimit-Remaining": "-3",
        "X-Ratelimit-Reset": "soon",
        "Retry-After": "nan",
        "X-Ratelimit-Limit": "1e3",
    }
    assert parse_rate_headers(junk, now) == parse_rate_headers({}, now)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "X-Ratelimit-Remaining",
                "X-Ratelimit-Reset",
                "X-Ratelimit-Limit",
                "Retry-After",
                "Other",
            ]
        ),
        st.text(max_size=40),
    ),
    st.sampled_from([200, 429, 500]),
)
def test_malformed_headers_never_crash_observe(headers, status):
    th = Throttler(BacktestClock(T0), limits(api=(5, 1)))
    th.observe("api", status, headers)
    th.acquire("api")  # and the throttler still works (a hold is bounded)


@given(st.integers(1, 30), st.integers(0, 2**32))
def test_backoff_grows_exponentially_within_jitter_bounds(attempt, seed):
    d = min(60.0, 0.5 * 2 ** (attempt - 1))
    delay = backoff_delay(attempt, 0.5, 60.0, random.Random(seed))
    assert d / 2 <= delay <= d


def test_backoff_jitter_spreads_retries():
    rng = random.Random(1)
    delays = {round(backoff_delay(3, 1.0, 60.0, rng), 6) for _ in range(50)}
    assert len(delays) > 40 and min(delays) >= 2.0 and max(delays) <= 4.0


# -- stats and sharing --------------------------------------------------------------------------


def test_stats_count_every_call_key_on_each_limit_it_draws_on(make):
    th = make(BacktestClock(T0), limits(quote=(10, 60, "burst"), burst=(30, 1)))
    th.acquire("quote")
    th.acquire(["quote"])
    th.acquire("burst", 2)
    th.acquire(("burst",))
    for _ in range(2):  # reading the stats does not count anything twice
        got = {s.name: (s.requests, s.weight, s.used) for s in th.stats()}
    assert got == {"quote": (2, 2, 2), "burst": (4, 5, 5)}


def test_stats_show_a_hold_as_wall_clock_time(make):
    clock = BacktestClock(T0)
    th = make(clock, limits(api=(5, 1)))
    th.observe("api", 429, {"Retry-After": "5"})
    (s,) = th.stats()
    assert (s.hold_until, s.remaining, s.last_429) == (T0 + 5 * SEC, 0, T0)


def test_stats_count_waits_and_persist_for_another_process(tmp_path):
    clock = BacktestClock(T0)
    store = Store.open(tmp_path / "mqd.db")
    th = Throttler(clock, limits(api=(2, 1)), store=store, shared=False, safety_margin=0.0)
    for _ in range(5):
        th.acquire("api")
    th.flush()
    other = Store.open(tmp_path / "mqd.db")
    (s,) = read_stats(other, limits(api=(2, 1)), 0.0, clock.now())
    assert (s.requests, s.waits, s.wait_total, s.wait_max) == (5, 2, 2.0, 1.0)
    assert s.wait_mean == 1.0
    assert len(s.processes) == 1 and s.processes[0].requests == 5


def test_two_throttlers_on_one_store_share_the_budget_and_the_totals(tmp_path):
    clock = BacktestClock(T0)
    a = Throttler(
        clock,
        limits(api=(4, 1)),
        store=Store.open(tmp_path / "m.db"),
        shared=True,
        safety_margin=0.0,
        label="run",
    )
    b = Throttler(
        clock,
        limits(api=(4, 1)),
        store=Store.open(tmp_path / "m.db"),
        shared=True,
        safety_margin=0.0,
        label="reconcile",
    )
    assert sends_of(clock, a, "api", 3) == [T0] * 3
    assert sends_of(clock, b, "api", 2) == [T0, T0 + SEC]
    a.flush()
    (s,) = b.stats()
    assert s.requests == 5 and s.used == 1 and s.remaining == 3  # the T0 sends left
    assert sorted(p.label for p in s.processes) == ["reconcile", "run"]


def test_hold_from_one_process_holds_the_other(tmp_path):
    clock = BacktestClock(T0)
    a = Throttler(clock, limits(api=(4, 1)), store=Store.open(tmp_path / "m.db"), shared=True)
    b = Throttler(clock, limits(api=(4, 1)), store=Store.open(tmp_path / "m.db"), shared=True)
    a.observe("api", 429, {"Retry-After": "5"})
    assert b.acquire("api") == 5.0


def test_factory_builds_the_throttler_lazily_from_settings(tmp_path):
    cfg = loads(
        f'[store]\npath = "{tmp_path / "mqd.db"}"\n'
        "[throttle]\nshared = false\nsafety_margin = 0.1\n"
    ).settings
    clock = BacktestClock(T0)
    services = Services(cfg, clock=clock)
    assert "throttler" not in services.__dict__
    th = services.throttler
    assert th is services.throttler and th.clock is clock and not th.shared
    assert th.budget("alpaca_trading") == 180
    services.close()


# -- leases of a shared budget ------------------------------------------------------------------


def shared_pair(tmp_path, clock, defs, **kw):
    """Two throttlers on one store file, as two processes would have."""
    kw.setdefault("safety_margin", 0.0)
    return [
        Throttler(clock, defs, store=Store.open(tmp_path / "m.db"), shared=True, **kw)
        for _ in range(2)
    ]


def count_transactions(store: Store) -> list[int]:
    """Count the write transactions of ``store`` from now on."""
    seen = [0]
    write = store.write

    def counted():
        seen[0] += 1
        return write()

    store.write = counted
    return seen


def test_a_burst_on_a_roomy_shared_budget_spends_leased_slots_without_the_store(tmp_path):
    clock = BacktestClock(T0)
    (th,) = shared_pair(tmp_path, clock, limits(api=(10_000, 60)))[:1]
    writes = count_transactions(th.store)
    for _ in range(1000):
        assert th.acquire("api") == 0.0
    assert writes[0] < 30  # batches of 1, 2, 4, ... 256: a handful of transactions
    th.flush()
    (s,) = th.stats()
    assert (s.requests, s.used) == (1000, 1000)  # what was spent, not what was leased


def test_a_lone_request_books_exactly_its_own_slot(tmp_path):
    clock = BacktestClock(T0)
    a, b = shared_pair(tmp_path, clock, limits(api=(64, 1)))
    a.acquire("api")
    clock.advance(0.5)  # longer than a lease is valid: no demand, no batch
    a.acquire("api")
    assert sends_of(clock, b, "api", 62) == [T0 + timedelta(seconds=0.5)] * 62
    assert b.acquire("api") == 0.5  # the 64th waits for a's first send to leave


def test_leftover_leased_slots_go_back_on_flush_for_another_process(tmp_path):
    clock = BacktestClock(T0)
    a, b = shared_pair(tmp_path, clock, limits(api=(64, 1)))  # batches up to 2 (1/32)
    for _ in range(3):
        a.acquire("api")  # batches of 1 and 2, then a lease of 2 with 1 left over
    a.flush()
    assert sends_of(clock, b, "api", 61) == [T0] * 61  # 64 - 3: the leftover came back
    assert b.acquire("api") == 1.0


def test_a_hold_from_another_process_stops_a_lease_at_once(tmp_path):
    clock = BacktestClock(T0)
    a, b = shared_pair(tmp_path, clock, limits(api=(640, 60)))
    for _ in range(8):
        b.acquire("api")  # b now holds leased slots it has not spent
    a.observe("api", 429, {"Retry-After": "5"})
    assert b.acquire("api") == 5.0


def test_an_expired_lease_is_not_spent(tmp_path):
    clock = BacktestClock(T0)
    a, b = shared_pair(tmp_path, clock, limits(api=(640, 1)))
    for _ in range(8):
        a.acquire("api")
    writes = count_transactions(a.store)
    clock.advance(timedelta(milliseconds=11))  # past the lease's 10 ms (1 % of the window)
    a.acquire("api")
    assert writes[0] == 1  # went to the store, and handed the stale rest back there
    a.flush()
    assert [s.used for s in b.stats()] == [9]


@pytest.mark.parametrize("written_back", [False, True])
def test_a_leased_slot_spent_late_keeps_its_own_window_counted(tmp_path, written_back):
    clock = BacktestClock(T0)
    a, b = shared_pair(tmp_path, clock, limits(api=(64, 1)))
    sends = []
    for _ in range(2):  # a batch of 1, then of 2: one slot leased until T0 + 10 ms
        a.acquire("api")
        sends.append((clock.now(), 1))
    late = T0 + timedelta(milliseconds=9)
    clock.advance_to(late)
    a.acquire("api")  # spent from the lease, 9 ms after it was booked
    sends.append((late, 1))
    if written_back:
        a.flush()
    for _ in range(64):  # b takes every slot that frees
        b.acquire("api")
        sends.append((clock.now(), 1))
    # The late slot stays counted a window after it was (or could have been) sent, so b's
    # last slots wait for its own sends at ``late`` to leave rather than for a's at T0.
    assert max_in_any_window(sends, SEC) <= 64
    assert sends[-1][0] == late + SEC


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 30_000), st.integers(1, 3)),
        min_size=1,
        max_size=150,
    ),
    st.integers(64, 200),
)
def test_two_processes_with_leases_never_put_more_than_the_budget_in_any_window(
    tmp_path_factory, arrivals, limit
):
    clock = BacktestClock(T0)
    pair = shared_pair(tmp_path_factory.mktemp("lease"), clock, limits(api=(limit, 1)))
    events = []
    for who, gap, w in arrivals:
        clock.advance(timedelta(microseconds=gap))
        pair[who].acquire("api", w)
        events.append((clock.now(), w))
    assert max_in_any_window(events, SEC) <= limit
