"""Strategies: sma_cross signals and exits, incremental averages, buy_and_hold, the loader."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqd_cli.clock import BacktestClock
from mqd_cli.config.settings import StrategySettings
from mqd_cli.errors import ConfigError, UsageError
from mqd_cli.model import Bar, FillReport, Side
from mqd_cli.strategies.base import MemoryContext, Strategy
from mqd_cli.strategies.buy_and_hold import BuyAndHold
from mqd_cli.strategies.loader import load_strategy
from mqd_cli.strategies.sma_cross import MovingAverages, SmaCross

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def bar(i: int, close: str | Decimal, symbol: str = "AAPL") -> Bar:
    c = Decimal(close)
    return Bar(symbol, T0 + timedelta(minutes=i), c, c, c, c, Decimal(100))


def fill_all(ctx: MemoryContext, intents, price: Decimal, i: int) -> None:
    for n, intent in enumerate(intents):
        qty = intent.qty if intent.qty is not None else intent.notional / price
        ctx.apply_fill(
            FillReport(
                f"o{i}-{n}",
                f"c{i}-{n}",
                intent.symbol,
                intent.side,
                qty,
                price,
                T0 + timedelta(minutes=i),
                execution_id=f"e{i}-{n}",
            )
        )


def run(strategy, closes, ctx=None, symbol="AAPL"):
    """Feed closes; fill every intent at the bar's close; return [(bar index, intent)]."""
    ctx = ctx or MemoryContext(BacktestClock(T0))
    out = []
    for i, c in enumerate(closes):
        b = bar(i, c, symbol)
        intents = strategy.on_bar(b, ctx)
        out.extend((i, x) for x in intents)
        fill_all(ctx, intents, b.close, i)
    return out, ctx


def sma(**params) -> SmaCross:
    base = {
        "fast": 2,
        "slow": 3,
        "qty": Decimal(5),
        "stop_loss_pct": Decimal(0),
        "take_profit_pct": Decimal(0),
    }
    base.update(params)
    return SmaCross(base, ("AAPL",))


# -- sma_cross ------------------------------------------------------------------------------------


def test_sma_cross_enters_on_cross_up_and_exits_on_cross_down_with_reason_signal():
    s = sma()
    closes = ["10", "9", "8", "7", "9", "11", "12", "10", "8", "7"]
    intents, ctx = run(s, closes)
    assert [(i, x.side, x.qty, x.reason) for i, x in intents] == [
        (5, Side.BUY, Decimal(5), "entry"),
        (8, Side.SELL, Decimal(5), "signal"),
    ]
    assert ctx.position("AAPL") == 0
    assert [(sig.direction, sig.close) for sig in s.signals] == [(1, Decimal(11)), (-1, Decimal(8))]
    assert all(x.strategy == "sma_cross" for _, x in intents)


def test_sma_cross_stop_loss_exit_is_tagged_stop_loss():
    s = sma(stop_loss_pct=Decimal(5))
    # Enters at 11 (bar 5); 10.45 is exactly 5 % down: the stop triggers at the boundary.
    closes = ["10", "9", "8", "7", "9", "11", "10.46", "10.45"]
    intents, ctx = run(s, closes)
    assert [(i, x.side, x.reason) for i, x in intents] == [
        (5, Side.BUY, "entry"),
        (7, Side.SELL, "stop_loss"),
    ]
    assert ctx.position("AAPL") == 0


def test_sma_cross_take_profit_exit_is_tagged_take_profit():
    s = sma(take_profit_pct=Decimal(10))
    closes = ["10", "9", "8", "7", "9", "11", "12.09", "12.10"]
    intents, _ = run(s, closes)
    assert [(i, x.side, x.reason) for i, x in intents] == [
        (5, Side.BUY, "entry"),
        (7, Side.SELL, "take_profit"),
    ]


def test_sma_cross_no_reentry_after_stop_until_the_next_cross_up():
    s = sma(stop_loss_pct=Decimal(1))
    closes = ["10", "9", "8", "7", "9", "11", "10.8", "13", "14"]  # trend holds after the stop
    intents, _ = run(s, closes)
    assert [x.reason for _, x in intents] == ["entry", "stop_loss"]


def test_sma_cross_short_side_enters_on_cross_down_and_stops_out_upward():
    s = sma(allow_short=True, stop_loss_pct=Decimal(5))
    closes = ["7", "8", "9", "10", "8", "6", "6.29", "6.30"]
    intents, ctx = run(s, closes)
    assert [(i, x.side, x.reason) for i, x in intents] == [
        (5, Side.SELL, "entry"),
        (7, Side.BUY, "stop_loss"),
    ]
    assert ctx.position("AAPL") == 0


def test_sma_cross_reverses_long_to_short_over_two_bars_when_shorting_is_allowed():
    s = sma(allow_short=True)
    closes = ["10", "9", "8", "7", "9", "11", "12", "10", "8", "7"]
    intents, ctx = run(s, closes)
    assert [(i, x.side, x.reason) for i, x in intents] == [
        (5, Side.BUY, "entry"),
        (8, Side.SELL, "signal"),
        (9, Side.SELL, "entry"),
    ]
    assert ctx.position("AAPL") == -5


def test_sma_cross_waits_while_an_order_for_the_symbol_is_open():
    s = sma()
    ctx = MemoryContext(BacktestClock(T0), open_orders=lambda symbol: ["pending"])
    intents, _ = run(s, ["10", "9", "8", "7", "9", "11"], ctx)
    assert intents == []
    assert [sig.direction for sig in s.signals] == [1]  # the signal is still recorded


def test_sma_cross_notional_entry_and_whole_share_short():
    s = sma(qty=None, notional=Decimal(1000), allow_short=True)
    intents, _ = run(s, ["7", "8", "9", "10", "8", "6"])
    ((_, short),) = intents
    assert short.side is Side.SELL and short.qty == Decimal(166) and short.notional is None
    s = sma(qty=None, notional=Decimal(1000))
    intents, _ = run(s, ["10", "9", "8", "7", "9", "11"])
    ((_, entry),) = intents
    assert entry.notional == Decimal(1000) and entry.qty is None


def test_sma_cross_equal_averages_are_not_a_cross():
    ma = MovingAverages(1, 2)
    seq = [Decimal(x) for x in ("1", "2", "2", "2", "1")]
    assert [ma.update(x) for x in seq] == [0, 0, 0, 0, -1]


def test_sma_cross_symbols_are_independent():
    s = sma()
    ctx = MemoryContext(BacktestClock(T0))
    for i, c in enumerate(["10", "9", "8", "7", "9", "11"]):
        assert s.on_bar(bar(i, "50", "MSFT"), ctx) == []
        intents = s.on_bar(bar(i, c), ctx)
    assert [x.symbol for x in intents] == ["AAPL"]


def test_warm_up_updates_averages_without_orders():
    s = sma()
    for i, c in enumerate(["10", "9", "8", "7", "9", "11"]):
        s.warm_up(bar(i, c))
    assert [sig.direction for sig in s.signals] == [1]
    assert s.averages("AAPL").fast_average == Decimal(10)


decimals = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("10000"), places=4)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(decimals, min_size=1, max_size=80),
    fast=st.integers(1, 10),
    extra=st.integers(1, 15),
)
def test_incremental_averages_equal_naive_averages(values, fast, extra):
    slow = fast + extra
    ma = MovingAverages(fast, slow)
    last_sign = 0
    for n, v in enumerate(values, 1):
        signal = ma.update(v)
        seen = values[:n]
        naive_fast = sum(seen[-fast:]) / fast if n >= fast else None
        naive_slow = sum(seen[-slow:]) / slow if n >= slow else None
        assert ma.fast_average == naive_fast
        assert ma.slow_average == naive_slow
        # The cross is the change of sign of the last non-zero difference (backtrader's rule).
        expected = 0
        if naive_slow is not None and naive_fast != naive_slow:
            sign = 1 if naive_fast > naive_slow else -1
            expected = sign if last_sign and sign != last_sign else 0
            last_sign = sign
        assert signal == expected


# -- buy_and_hold ---------------------------------------------------------------------------------


def test_buy_and_hold_buys_each_symbol_once_then_holds():
    s = BuyAndHold({"qty": Decimal(3)}, ("AAPL", "MSFT"))
    ctx = MemoryContext(BacktestClock(T0))
    out = []
    for i in range(3):
        for sym in ("AAPL", "MSFT", "TSLA"):
            intents = s.on_bar(bar(i, "100", sym), ctx)
            fill_all(ctx, intents, Decimal(100), i)
            out += intents
    assert [(x.symbol, x.side, x.qty, x.reason) for x in out] == [
        ("AAPL", Side.BUY, Decimal(3), "entry"),
        ("MSFT", Side.BUY, Decimal(3), "entry"),
    ]
    assert s.on_start(ctx) == [] and s.on_stop(ctx) == []


def test_buy_and_hold_does_not_buy_a_symbol_already_held():
    s = BuyAndHold({}, ("AAPL",))
    ctx = MemoryContext(BacktestClock(T0))
    ctx.set_position("AAPL", Decimal(7), Decimal(90))
    assert s.on_bar(bar(0, "100"), ctx) == []


# -- loader ---------------------------------------------------------------------------------------


def test_load_builtin_with_validated_params():
    s = load_strategy(
        StrategySettings(
            name="sma_cross", symbols=["AAPL"], params={"fast": 5, "slow": 20, "notional": "2500"}
        )
    )
    assert isinstance(s, SmaCross) and isinstance(s, Strategy)
    assert (s.fast, s.slow, s.notional, s.qty) == (5, 20, Decimal("2500"), None)
    assert s.symbols == ("AAPL",)


def test_unknown_builtin_name_suggests_the_nearest():
    with pytest.raises(UsageError) as err:
        load_strategy(StrategySettings(name="sma_crossover"))
    assert "strategy.name: unknown strategy 'sma_crossover' (did you mean 'sma_cross'?)" in (
        err.value.message
    )
    assert isinstance(err.value, ConfigError)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"fst": 5},
            "strategy.params.fst: unknown parameter of sma_cross "
            "(did you mean 'strategy.params.fast'?)",
        ),
        ({"fast": "5"}, "strategy.params.fast: expected an integer, got '5'"),
        ({"fast": 0}, "strategy.params.fast: must be at least 1, got 0"),
        ({"allow_short": 1}, "strategy.params.allow_short: expected true or false, got 1"),
        ({"qty": "ten"}, "strategy.params.qty: expected a decimal number"),
        ({"fast": 30, "slow": 10}, "strategy.params.fast: must be less than strategy.params.slow"),
        ({"qty": 1, "notional": 100}, "strategy.params: set either qty or notional, not both"),
        ({"qty": 0}, "strategy.params.qty: must be greater than 0"),
    ],
)
def test_bad_params_name_the_toml_path(params, message):
    with pytest.raises(ConfigError) as err:
        load_strategy(StrategySettings(name="sma_cross", params=params))
    assert any(message in p for p in err.value.problems), err.value.problems


USER_STRATEGY = textwrap.dedent(
    """
    from decimal import Decimal

    from mqd_cli.model import OrderIntent, Side
    from mqd_cli.strategies.base import BaseStrategy, Param


    class BuyDips(BaseStrategy):
        name = "buy_dips"
        PARAMS = {"threshold": Param(Decimal, Decimal("95"), "Buy below this close.")}

        def on_bar(self, bar, ctx):
            if bar.close < self.params["threshold"] and not ctx.position(bar.symbol):
                return [OrderIntent(bar.symbol, Side.BUY, qty=Decimal(1), reason="entry")]
            return []
    """
)


def test_user_strategy_loads_from_a_python_file(tmp_path):
    path = tmp_path / "strats" / "dips.py"
    path.parent.mkdir()
    path.write_text(USER_STRATEGY)
    s = load_strategy(StrategySettings(name=f"{path}:BuyDips", params={"threshold": 50}))
    assert s.name == "buy_dips" and s.params["threshold"] == Decimal(50)
    ctx = MemoryContext(BacktestClock(T0))
    assert s.on_bar(bar(0, "60"), ctx) == []
    assert [x.side for x in s.on_bar(bar(1, "40"), ctx)] == [Side.BUY]
    # Relative to base_dir (the config file's directory).
    s2 = load_strategy(StrategySettings(name="strats/dips.py:BuyDips"), base_dir=tmp_path)
    assert s2.params["threshold"] == Decimal(95)


def test_user_strategy_param_errors_name_the_toml_path(tmp_path):
    path = tmp_path / "dips.py"
    path.write_text(USER_STRATEGY)
    with pytest.raises(
        ConfigError,
        match=r"strategy.params.treshold: unknown parameter of "
        r"buy_dips \(did you mean 'strategy.params.threshold'\?\)",
    ):
        load_strategy(StrategySettings(name=f"{path}:BuyDips", params={"treshold": 50}))


def test_user_strategy_from_a_module_path(tmp_path, monkeypatch):
    (tmp_path / "mystrats.py").write_text(USER_STRATEGY)
    monkeypatch.syspath_prepend(str(tmp_path))
    s = load_strategy(StrategySettings(name="mystrats:BuyDips"))
    assert s.name == "buy_dips"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.py:X", None, "strategy file 'missing.py' not found"),
        ("bad.py:X", "def broken(:\n", "SyntaxError at line 1"),
        ("boom.py:X", "1 / 0\n", "ZeroDivisionError"),
        ("empty.py:Nope", "class Other:\n    pass\n", "has no class 'Nope'"),
        (
            "half.py:Half",
            "class Half:\n    def on_bar(self, b, c):\n        return []\n",
            "Half is not a strategy: it lacks on_start, on_fill, on_stop",
        ),
        ("no_such_module_xyz:Thing", None, "module 'no_such_module_xyz' not found"),
        ("path.py:", None, "is not 'module:Class'"),
    ],
)
def test_bad_user_strategy_gives_a_clear_usage_error(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name.split(":")[0]).write_text(content)
    with pytest.raises(UsageError) as err:
        load_strategy(StrategySettings(name=name), base_dir=tmp_path)
    assert message in " ".join(err.value.lines())
    assert err.value.lines()[0].startswith("strategy.name:")


def test_strategy_errors_exit_2_through_the_cli_boundary():
    assert ConfigError(["x"]).exit_code == 2
