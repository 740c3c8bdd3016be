"""The engine's pipeline on the in-process simulated exchange: every stage in order, refusals
named by stage and rule, fills mirrored into the strategy's context. The engine is built by the
factory, as a backtest session builds it (``Services.backtest_session``)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from mqd_cli.config.loading import loads
from mqd_cli.config.settings import Settings
from mqd_cli.factory import Services
from mqd_cli.model import Bar, OrderIntent, OrderType, Side
from mqd_cli.store.trades import insert_closed_trade
from mqd_cli.strategies.base import BaseStrategy
from mqd_cli.symbols.sync import sync

START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
D = Decimal


class Scripted(BaseStrategy):
    """Sends the intents queued in ``plan`` on the next bar; records fills."""

    name = "scripted"

    def __init__(self, params=None, symbols=()):
        super().__init__(params, symbols)
        self.plan: list[OrderIntent] = []
        self.fills = []

    def on_bar(self, bar, ctx):
        out, self.plan = self.plan, []
        return out

    def on_fill(self, fill, ctx):
        self.fills.append((fill, ctx.position(fill.symbol)))
        return []


NO_PARTIALS = "[sim]\npartial_fill_probability = 0.0\n"


def settings_of(text: str = "") -> Settings:
    """Settings with whole fills (the sim's partial fills are random by design)."""
    if "[sim]" in text:
        return loads(text.replace("[sim]\n", NO_PARTIALS, 1)).settings
    return loads(text + "\n" + NO_PARTIALS).settings


def build(settings: Settings | None = None, *, events=None):
    """The engine of a backtest session at ``START``, wired as ``run_backtest`` wires it: the
    simulated exchange (stepped by the engine, its symbols synced into the session's store),
    the risk gate, symbol checks and protections of ``settings``, closed trades stored."""
    services = Services(settings or settings_of()).backtest_session(START)
    clock, broker, store = services.clock, services.sim_broker, services.store
    sync(store, broker, clock)
    strategy = Scripted()
    protections = services.session_protections()
    engine = services.engine(
        strategy,
        tracker=services.session_tracker(strategy.name),
        protections=protections,
        listener=(events.append if events is not None else None),
        trade_sink=lambda trade: insert_closed_trade(store, trade),
    )
    protections.notify = engine.on_protection
    broker.subscribe(engine.on_trade_update)
    return engine, strategy, broker, clock, store


def bar(symbol: str, at: datetime, close: str) -> Bar:
    c = D(close)
    return Bar(symbol, at, c, c, c, c, D(1000))


def step(engine, clock, strategy, intents, close="180.00", symbol="AAPL"):
    strategy.plan = list(intents)
    clock.advance(60)
    engine.on_bar(bar(symbol, clock.now() - timedelta(minutes=1), close))


def test_an_entry_is_sent_filled_and_mirrored_into_the_strategy_context():
    events = []
    engine, strategy, broker, clock, store = build(events=events)
    step(engine, clock, strategy, [OrderIntent("AAPL", Side.BUY, qty=D(10), reason="entry")])
    assert engine.stats.submitted == 1
    assert engine.ctx.position("AAPL") == D(10)
    assert engine.ctx.open_orders("AAPL") == []
    assert engine.ctx.avg_entry_price("AAPL") == broker.get_position("AAPL").avg_entry_price
    fill, position_seen = strategy.fills[0]
    assert fill.qty == D(10) and position_seen == D(10)
    assert engine.cash == broker.get_account().cash
    kinds = [e.kind for e in events]
    assert kinds.index("submitted") < kinds.index("fill")
    # the order is tracked with its deterministic id
    order = engine.tracker.orders()[0]
    assert order.client_order_id.endswith("-scripted-AAPL-1")
    assert order.status.value == "filled"


def test_an_exit_closes_a_trade_with_the_exit_reason_of_its_intent():
    engine, strategy, broker, clock, store = build()
    step(engine, clock, strategy, [OrderIntent("AAPL", Side.BUY, qty=D(5), reason="entry")])
    step(engine, clock, strategy, [OrderIntent("AAPL", Side.SELL, qty=D(5), reason="stop_loss")])
    assert engine.stats.trades == 1 and engine.stats.stop_losses == 1
    assert engine.ctx.position("AAPL") == 0
    from mqd_cli.orders.trades import closed_trades

    (trade,) = closed_trades(store)
    assert trade.exit_reason == "stop_loss"


def test_the_risk_gate_refuses_an_order_above_the_notional_limit_before_anything_is_sent():
    settings = settings_of('[risk]\nmax_order_notional = "1000"\n')
    engine, strategy, broker, clock, store = build(settings)
    step(engine, clock, strategy, [OrderIntent("AAPL", Side.BUY, qty=D(100), reason="entry")])
    assert engine.stats.submitted == 0
    assert broker.list_orders("all") == []
    assert engine.tracker.orders() == []  # nothing tracked for a refused intent
    (refusal,) = engine.refusals
    assert (refusal.stage, refusal.rule) == ("risk", "max_order_notional")
    assert "max_order_notional" in refusal.reason


def test_an_unknown_symbol_is_refused_by_symbol_validation():
    engine, strategy, broker, clock, store = build()
    step(
        engine,
        clock,
        strategy,
        [OrderIntent("ZZZZQ", Side.BUY, qty=D(1), reason="entry")],
        symbol="ZZZZQ",
    )  # a price, so the risk gate passes it on
    (refusal,) = engine.refusals
    assert refusal.stage == "symbols" and refusal.rule == "UNKNOWN_SYMBOL"
    assert broker.list_orders("all") == []


def test_a_sub_penny_limit_is_rounded_down_for_a_buy_before_submission():
    events = []
    engine, strategy, broker, clock, store = build(events=events)
    intent = OrderIntent(
        "AAPL",
        Side.BUY,
        qty=D(1),
        type=OrderType.LIMIT,
        limit_price=D("150.0567"),
        reason="entry",
    )
    step(engine, clock, strategy, [intent])
    (order,) = broker.list_orders("all")
    assert order.limit_price == D("150.05")  # never more aggressive: a buy rounds down
    assert engine.stats.adjusted == 1
    assert any(e.kind == "adjusted" and "150.0567" in e.message for e in events)


def test_a_fractional_qty_of_a_whole_share_asset_is_rounded_down():
    engine, strategy, broker, clock, store = build()
    asset = next(
        a
        for a in broker.list_assets("us_equity")
        if not a.fractionable and a.tradable and broker.last_price(a.symbol) < 500
    )
    price = broker.last_price(asset.symbol)
    step(
        engine,
        clock,
        strategy,
        [OrderIntent(asset.symbol, Side.BUY, qty=D("3.7"), reason="entry")],
        close=str(price),
        symbol=asset.symbol,
    )
    (order,) = broker.list_orders("all")
    assert order.qty == D(3)


def test_a_protection_lock_refuses_entries_but_lets_exits_through():
    text = """
    [protections.stoploss_guard]
    trade_limit = 2
    lookback = "1h"
    stop_duration = "30m"
    [sim]
    slippage_bps = "20"
    """
    settings = settings_of(text.replace("    ", ""))
    events = []
    engine, strategy, broker, clock, store = build(settings, events=events)
    for _ in range(2):  # two losing stop-loss round trips (slippage makes each lose)
        step(engine, clock, strategy, [OrderIntent("AAPL", Side.BUY, qty=D(5), reason="entry")])
        step(
            engine, clock, strategy, [OrderIntent("AAPL", Side.SELL, qty=D(5), reason="stop_loss")]
        )
    assert engine.stats.locks == 1
    assert any(e.kind == "protection" for e in events)
    sent = len(broker.list_orders("all"))
    step(engine, clock, strategy, [OrderIntent("MSFT", Side.BUY, qty=D(1), reason="entry")])
    assert len(broker.list_orders("all")) == sent  # nothing sent during the lock
    assert engine.refusals[-1].stage == "protections"
    assert engine.refusals[-1].rule == "stoploss_guard"
    clock.advance(timedelta(minutes=31))
    step(engine, clock, strategy, [OrderIntent("MSFT", Side.BUY, qty=D(1), reason="entry")])
    assert len(broker.list_orders("all")) == sent + 1  # the lock ended


def test_dry_run_shows_the_order_but_sends_and_journals_nothing():
    events = []
    engine, strategy, broker, clock, store = build(events=events)
    engine.dry_run = True
    step(engine, clock, strategy, [OrderIntent("AAPL", Side.BUY, qty=D(10), reason="entry")])
    assert engine.stats.would_submit == 1 and engine.stats.submitted == 0
    assert broker.list_orders("all") == [] and engine.tracker.orders() == []
    assert [e.kind for e in events] == ["would_submit"]


def test_a_broker_rejection_is_journaled_and_counted_as_a_broker_refusal():
    settings = settings_of(
        '[risk]\ncheck_buying_power = false\nmax_order_notional = "0"\n'
        'max_position_notional = "0"\nmax_gross_exposure = "0"\n'
    )
    engine, strategy, broker, clock, store = build(settings)
    step(engine, clock, strategy, [OrderIntent("AAPL", Side.BUY, qty=D(100_000), reason="entry")])
    (refusal,) = engine.refusals
    assert refusal.stage == "broker" and "buying power" in refusal.reason
    (order,) = engine.tracker.orders()
    assert order.status.value == "rejected"
    assert engine.open_order_count == 0


def test_after_shutdown_begins_new_intents_are_refused():
    engine, strategy, broker, clock, store = build()
    engine.stop()
    step(engine, clock, strategy, [OrderIntent("AAPL", Side.BUY, qty=D(1), reason="entry")])
    assert engine.refusals[0].stage == "engine"
    assert broker.list_orders("all") == []


def test_a_resting_limit_order_fills_when_the_market_reaches_it():
    engine, strategy, broker, clock, store = build()
    price = broker.last_price("AAPL")
    limit = (price * D("0.999")).quantize(D("0.01"))
    step(
        engine,
        clock,
        strategy,
        [
            OrderIntent(
                "AAPL", Side.BUY, qty=D(1), type=OrderType.LIMIT, limit_price=limit, reason="entry"
            )
        ],
    )
    filled_at = None
    for _ in range(600):
        step(engine, clock, strategy, [])
        if engine.ctx.position("AAPL"):
            filled_at = clock.now()
            break
    assert filled_at is not None
    assert engine.open_order_count == 0
    assert broker.get_position("AAPL").avg_entry_price <= limit


@pytest.mark.parametrize("speed", [60.0, 3600.0])
def test_the_accelerated_clock_runs_speed_times_faster_than_the_wall(speed):
    from mqd_cli.clock import AcceleratedClock

    clock = AcceleratedClock(speed, START)
    assert clock.now() >= START
    before = clock.monotonic()
    clock.sleep(0.02 * speed)
    assert clock.monotonic() - before >= 0.02 * speed
    assert clock.now() - START < timedelta(seconds=60 * speed)


def test_settings_are_frozen_and_the_engine_does_not_mutate_them():
    settings = settings_of()
    engine, *_ = build(settings)
    assert dataclasses.asdict(settings) == dataclasses.asdict(settings_of())


def test_a_partial_fill_leaves_the_order_open_until_the_rest_fills():
    settings = loads("[sim]\npartial_fill_probability = 1.0\n").settings
    engine, strategy, broker, clock, store = build(settings)
    step(engine, clock, strategy, [OrderIntent("AAPL", Side.BUY, qty=D(50), reason="entry")])
    assert 0 < engine.ctx.position("AAPL") < 50
    assert len(engine.ctx.open_orders("AAPL")) == 1
    for _ in range(50):
        if not engine.open_order_count:
            break
        step(engine, clock, strategy, [])
    assert engine.ctx.position("AAPL") == 50
    assert engine.ctx.open_orders() == []
    assert engine.cash == broker.get_account().cash
