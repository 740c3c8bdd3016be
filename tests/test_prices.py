"""Price sources: the seeded random walk and the CSV reader (malformed rows, hypothesis)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqd_cli.brokers.sim.prices import (
    DEFAULT_ORIGIN,
    CsvError,
    CsvPrices,
    SyntheticPrices,
    read_bars_csv,
    tick_for,
    to_tick,
)

D = Decimal
MIN = timedelta(minutes=1)


# -- synthetic walk -------------------------------------------------------------------------------


def test_same_seed_symbol_timeframe_and_start_give_the_same_bars():
    start = DEFAULT_ORIGIN + timedelta(days=3)
    a = SyntheticPrices(7).bars("AAPL", start, start + timedelta(hours=1))
    b = SyntheticPrices(7).bars("AAPL", start, start + timedelta(hours=1))
    assert a == b and len(a) == 60
    assert SyntheticPrices(8).bars("AAPL", start, start + timedelta(hours=1)) != a


def test_bars_do_not_depend_on_the_order_or_range_they_are_asked_in():
    late = DEFAULT_ORIGIN + timedelta(days=9)
    fresh = SyntheticPrices(3).bars("MSFT", late, late + 5 * MIN)
    walk = SyntheticPrices(3)
    walk.bars("MSFT", DEFAULT_ORIGIN - timedelta(days=2), DEFAULT_ORIGIN)
    assert walk.bars("MSFT", late - 5 * MIN, late + 5 * MIN)[5:] == fresh


def test_bars_are_aligned_to_the_grid_and_cover_start_inclusive_end_exclusive():
    walk = SyntheticPrices(1, timeframe=timedelta(minutes=5))
    start = DEFAULT_ORIGIN + timedelta(minutes=7)
    bars = walk.bars("SPY", start, start + timedelta(minutes=20))
    assert [b.timestamp for b in bars] == [
        DEFAULT_ORIGIN + timedelta(minutes=m) for m in (10, 15, 20, 25)
    ]
    assert walk.bar_at("SPY", start).timestamp == DEFAULT_ORIGIN + timedelta(minutes=5)


def test_each_open_is_the_previous_close_and_price_at_is_the_open():
    walk = SyntheticPrices(5)
    bars = walk.bars("AAPL", DEFAULT_ORIGIN, DEFAULT_ORIGIN + 30 * MIN)
    assert all(a.close == b.open for a, b in zip(bars, bars[1:], strict=False))
    assert walk.price_at("AAPL", bars[3].timestamp + timedelta(seconds=59)) == bars[3].open


def test_walk_extends_before_the_origin():
    walk = SyntheticPrices(5)
    bars = walk.bars("AAPL", DEFAULT_ORIGIN - 3 * MIN, DEFAULT_ORIGIN + MIN)
    assert len(bars) == 4 and bars[2].close == bars[3].open


def test_aggregated_bars_are_the_same_path():
    walk = SyntheticPrices(9)
    minutes = walk.bars("NVDA", DEFAULT_ORIGIN, DEFAULT_ORIGIN + timedelta(hours=1))
    (hour,) = walk.bars(
        "NVDA", DEFAULT_ORIGIN, DEFAULT_ORIGIN + timedelta(hours=1), timeframe=timedelta(hours=1)
    )
    assert hour.open == minutes[0].open and hour.close == minutes[-1].close
    assert hour.high == max(b.high for b in minutes)
    assert hour.low == min(b.low for b in minutes)
    assert hour.volume == sum(b.volume for b in minutes)
    with pytest.raises(ValueError, match="whole multiple"):
        walk.bars("NVDA", DEFAULT_ORIGIN, DEFAULT_ORIGIN + MIN, timeframe=timedelta(seconds=90))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    symbol=st.sampled_from(["AAPL", "ZOM", "BRK.A", "BTC/USD", "X"]),
    offset=st.integers(-500_000, 500_000),
    start_price=st.sampled_from([None, D("0.0123"), D("0.999"), D("1.00"), D("45000")]),
)
def test_every_bar_is_on_valid_ticks_and_consistent(seed, symbol, offset, start_price):
    prices = {symbol: start_price} if start_price is not None else None
    walk = SyntheticPrices(seed, start_prices=prices)
    start = DEFAULT_ORIGIN + offset * MIN
    for bar in walk.bars(symbol, start, start + 20 * MIN):
        for p in (bar.open, bar.high, bar.low, bar.close):
            assert p > 0 and p == p.quantize(tick_for(p))
        assert bar.high >= max(bar.open, bar.close) >= min(bar.open, bar.close) >= bar.low
        assert bar.volume > 0


@given(st.decimals(min_value=D("0.00001"), max_value=D("100000"), places=6))
def test_to_tick_lands_on_a_valid_tick_within_one_tick(price):
    out = to_tick(price)
    assert out == out.quantize(tick_for(out))
    assert abs(out - price) <= tick_for(price) or out == D("0.0001")


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="naive"):
        SyntheticPrices(1).bars("AAPL", datetime(2026, 1, 2), datetime(2026, 1, 3))


# -- CSV ------------------------------------------------------------------------------------------

GOOD = """timestamp,open,high,low,close,volume
2026-01-05T14:30:00Z,100,101,99.5,100.5,1200
2026-01-05 14:31,100.5,100.9,100.1,100.2,800
2026-01-05 14:32:00,100.2,100.4,99.9,100,0
"""


def write(tmp_path, text: str, name: str = "aapl.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_a_csv_with_mixed_timestamp_forms_symbol_from_the_file_name(tmp_path):
    out = read_bars_csv(write(tmp_path, GOOD))
    (bars,) = out.values()
    assert list(out) == ["AAPL"]
    assert [b.timestamp.minute for b in bars] == [30, 31, 32]
    assert bars[0].timestamp.tzinfo is UTC
    assert bars[1].open == D("100.5") and bars[2].volume == 0


def test_reads_a_symbol_column_in_any_order_and_alpaca_short_names(tmp_path):
    text = "S,t,c,o,h,l,v\nmsft,2026-01-05,10,10,11,9,5\nAAPL,2026-01-05,20,20,21,19,5\n"
    out = read_bars_csv(write(tmp_path, text, "multi.csv"))
    assert sorted(out) == ["AAPL", "MSFT"]
    assert out["MSFT"][0].timestamp == datetime(2026, 1, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", 1, "the file is empty"),
        ("timestamp,open,high,low,close\n", 1, "missing column(s) volume"),
        ("timestamp,open,open,high,low,close,volume\n", 1, "duplicate column(s) open"),
        (GOOD + "2026-01-05 14:33,1,2,0.5\n", 5, "expected 6 fields, found 4"),
        (GOOD + "2026-01-05 14:33,abc,2,1,1,1\n", 5, "open 'abc' is not a number"),
        (GOOD + "2026-01-05 14:33,1,2,1,1,NaN\n", 5, "volume 'NaN' is not a finite number"),
        (GOOD + "yesterday,1,2,1,1,1\n", 5, "expected an RFC 3339 timestamp"),
        (GOOD + "2026-01-05 14:33,1,1,2,1,1\n", 5, "high 1 is below low 2"),
        (GOOD + "2026-01-05 14:33,3,2,1,1,1\n", 5, "lie outside low 1 .. high 2"),
        (GOOD + "2026-01-05 14:33,0,2,1,1,1\n", 5, "open 0 is not positive"),
        (GOOD + "2026-01-05 14:33,1,2,1,1,-4\n", 5, "volume -4 is negative"),
        (GOOD + "2026-01-05 14:32,1,2,1,1,1\n", 5, "is not after the previous"),
        (GOOD + "2026-01-05 14:20,1,2,1,1,1\n", 5, "sort the rows by time"),
    ],
)
def test_malformed_rows_name_the_file_line_problem_and_fix(tmp_path, text, line, fragment):
    path = write(tmp_path, text)
    with pytest.raises(CsvError) as caught:
        read_bars_csv(path)
    err = caught.value
    assert err.line == line
    assert fragment in str(err)
    assert str(err).startswith(f"{path}:{line}: ")
    assert "; " in str(err)  # problem; how to fix it


def test_missing_file_is_a_csv_error(tmp_path):
    with pytest.raises(CsvError, match="cannot open the file"):
        read_bars_csv(tmp_path / "nope.csv")


def test_blank_lines_are_skipped(tmp_path):
    out = read_bars_csv(write(tmp_path, "\n" + GOOD.replace("\n2026", "\n\n2026")))
    assert len(out["AAPL"]) == 3


_cell = st.text(alphabet='0123456789.-:TZ ,abc"', max_size=12)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.lists(_cell, min_size=0, max_size=8), max_size=6))
def test_any_garbage_gives_bars_or_a_csv_error_never_another_exception(tmp_path, rows):
    path = tmp_path / "garbage.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "open", "high", "low", "close", "volume"])
        writer.writerows(rows)
    try:
        out = read_bars_csv(path)
    except CsvError as err:
        assert err.line >= 2
        return
    for bars in out.values():
        assert all(b.high >= b.low for b in bars)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 30))
def test_walk_bars_written_as_csv_read_back_identically(tmp_path, seed, n):
    bars = SyntheticPrices(seed).bars("QQQ", DEFAULT_ORIGIN, DEFAULT_ORIGIN + n * MIN)
    path = tmp_path / "qqq.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "open", "high", "low", "close", "volume"])
        for b in bars:
            writer.writerow([b.timestamp.isoformat(), b.open, b.high, b.low, b.close, b.volume])
    back = read_bars_csv(path)["QQQ"]
    assert [(b.timestamp, b.open, b.high, b.low, b.close, b.volume) for b in back] == [
        (b.timestamp, b.open, b.high, b.low, b.close, b.volume) for b in bars
    ]


def test_csv_prices_replay_and_fall_back_to_the_walk(tmp_path):
    walk = SyntheticPrices(2)
    source = CsvPrices.from_csv(write(tmp_path, GOOD), walk)
    t = datetime(2026, 1, 5, 14, 31, 20, tzinfo=UTC)
    assert source.price_at("AAPL", t) == D("100.5")
    assert source.price_at("AAPL", t + timedelta(hours=1)) == D("100")  # after: last close
    assert source.price_at("AAPL", t - timedelta(hours=1)) == D("100")  # before: first open
    assert source.timeframe_of("AAPL") == MIN
    assert len(source.bars("AAPL", t - MIN, t + MIN)) == 2
    assert source.price_at("MSFT", t) == walk.price_at("MSFT", t)
