"""Same seed, same calls, same clock times: the same ids, fills and events."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from mqd_cli.brokers.sim.broker import SimBroker
from mqd_cli.clock import BacktestClock
from mqd_cli.config.settings import SimSettings
from mqd_cli.model import OrderIntent, OrderType, Side, TimeInForce
from mqd_cli.wire.format import trade_update_to_wire
from tests.support import T0


def run(seed: int) -> tuple[list[dict], str]:
    clock = BacktestClock(T0)
    broker = SimBroker(
        SimSettings(seed=seed, partial_fill_probability=0.5, liquidity=Decimal(40)), clock
    )
    events = []
    broker.subscribe(lambda e: events.append(trade_update_to_wire(e)))
    for i, symbol in enumerate(["AAPL", "MSFT", "SPY", "NVDA"]):
        broker.submit_order(
            OrderIntent(symbol=symbol, side=Side.BUY, qty=Decimal(100), client_order_id=f"m{i}")
        )
        last = broker.last_price(symbol)
        held = broker.get_position(symbol).qty
        broker.submit_order(
            OrderIntent(
                symbol=symbol,
                side=Side.SELL,
                qty=min(held, Decimal(30)),
                type=OrderType.LIMIT,
                limit_price=(last * Decimal("1.002")).quantize(Decimal("0.01")),
                time_in_force=TimeInForce.GTC,
                client_order_id=f"l{i}",
            )
        )
        clock.advance(timedelta(minutes=3))
        broker.step()
    clock.advance(timedelta(hours=5))
    broker.step()
    return events, broker.account_id


def test_same_seed_gives_identical_event_streams():
    first, account = run(11)
    second, account2 = run(11)
    assert first == second and account == account2
    assert any(e["data"]["event"] == "partial_fill" for e in first)
    execs = [e["data"]["execution_id"] for e in first if "execution_id" in e["data"]]
    assert len(execs) == len(set(execs)) > 8


def test_another_seed_gives_other_ids():
    first, account = run(11)
    other, account2 = run(12)
    assert account != account2
    ids = {e["data"]["order"]["id"] for e in first}
    assert ids.isdisjoint({e["data"]["order"]["id"] for e in other})


def test_fill_events_serialize_with_strings_for_numbers_and_a_timestamp():
    events, _ = run(3)
    fill = next(e["data"] for e in events if e["data"]["event"] == "fill")
    assert set(fill) >= {"event", "timestamp", "order", "execution_id", "price", "qty"}
    assert all(isinstance(fill[k], str) for k in ("price", "qty", "position_qty"))
    assert fill["timestamp"].endswith("Z")
    assert fill["order"]["status"] == "filled"
