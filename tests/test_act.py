"""`mqd cancel` and `mqd flatten` against `mqd sim serve` (the emulator on loopback), through the
factory's Alpaca adapter, on a real SQLite journal; and the desk itself (``trading/manual.py``)
on the in-process simulated exchange with scripted prices, where races are staged exactly.

The emulator's time stands still (``speed=0``) and fills are whole, so a market order fills at
the last price the moment it is sent. Orders of "ours" are sent the way `mqd run` sends them:
journaled by the order tracker first, then submitted through the adapter.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from mqd_cli.brokers.errors import BrokerUnavailable, OrderRejected
from mqd_cli.brokers.sim.broker import SimBroker
from mqd_cli.config.settings import SimSettings
from mqd_cli.factory import Services
from mqd_cli.model import OrderClass, OrderIntent, OrderStatus, OrderType, Side, TimeInForce
from mqd_cli.orders.tracker import OrderTracker
from mqd_cli.store import Store
from mqd_cli.store import orders as journal
from mqd_cli.trading.manual import FLATTEN, Desk
from tests.support import MINUTE, T0, Sim, scripted

D = Decimal
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def srv(emulator):
    return emulator(speed=0.0, sim=SimSettings(partial_fill_probability=0.0))


@pytest.fixture
def cfg(srv, config_file):
    return config_file(srv.config_toml())


def send(cfg: Path, intent: OrderIntent):
    """Send ``intent`` as ours: journaled by the tracker, then submitted through the adapter."""
    services = Services.from_config(cfg)
    try:
        tracker = services.session_tracker()
        intent = tracker.start(intent)
        report = services.broker.submit_order(intent)
        tracker.on_submitted(report)
        return report
    finally:
        services.close()


def price(srv, symbol: str = "AAPL") -> Decimal:
    return srv.emulator.broker.last_price(symbol)


def positions(cfg: Path) -> dict[str, Decimal]:
    services = Services.from_config(cfg)
    try:
        return {p.symbol: p.qty for p in services.broker.list_positions()}
    finally:
        services.close()


def open_orders(cfg: Path) -> list:
    services = Services.from_config(cfg)
    try:
        return services.broker.list_orders("open")
    finally:
        services.close()


def events(cfg: Path, client_order_id: str) -> list[tuple[str, str, str]]:
    """The journal's (source, event, outcome) rows of one order, oldest first."""
    services = Services.from_config(cfg)
    try:
        rows = journal.events(services.store, client_order_id)
        return [(r["source"], r["event"], r["outcome"]) for r in rows]
    finally:
        services.close()


def oto_buy(srv, cfg, qty: int = 10):
    """An entry with a broker-held stop 2 % below, as `[risk] protective_stop = "2%"` sends it."""
    stop = (price(srv) * D("0.98")).quantize(D("0.01"))
    return send(
        cfg,
        OrderIntent(
            "AAPL",
            Side.BUY,
            qty=D(qty),
            time_in_force=TimeInForce.GTC,
            order_class=OrderClass.OTO,
            stop_loss_stop_price=stop,
            strategy="sma_cross",
            reason="entry",
        ),
    )


def resting_buy(srv, cfg, symbol: str = "AAPL"):
    limit = (price(srv, symbol) * D("0.5")).quantize(D("0.01"))
    return send(
        cfg,
        OrderIntent(
            symbol,
            Side.BUY,
            qty=D(1),
            type=OrderType.LIMIT,
            limit_price=limit,
            strategy="sma_cross",
            reason="entry",
        ),
    )


# -- flatten against the emulator -----------------------------------------------------------------


def test_flatten_cancels_the_protective_stop_leg_first_then_closes_exactly_the_position(
    mqd, srv, cfg
):
    entry = oto_buy(srv, cfg)
    (leg,) = entry.legs
    assert positions(cfg) == {"AAPL": D(10)}

    r = mqd("flatten", "AAPL", "--yes", "--config", cfg)

    assert "stop sell 10" in r.stdout and f"leg of {entry.client_order_id}" in r.stdout
    assert "sell 10 market" in r.stdout  # the plan, before acting
    assert f"{leg.client_order_id} (stop sell 10 @ " in r.stdout and "): canceled" in r.stdout
    assert "AAPL: sold 10 @ " in r.stdout and "position now 0" in r.stdout
    assert positions(cfg) == {} and open_orders(cfg) == []
    # the cancel is journaled before it is sent, then its result; the closing order like any
    assert events(cfg, leg.client_order_id)[-2:] == [
        ("cancel", "cancel_requested", "recorded"),
        ("cancel", "canceled", "applied"),
    ]
    services = Services.from_config(cfg)
    try:
        tracker = services.session_tracker()
        (closing,) = [o for o in tracker.orders() if o.strategy == FLATTEN]
        assert closing.client_order_id == f"mqd-{tracker.namespace}-flatten-AAPL-1"
        assert (closing.side, closing.qty, closing.status) == (Side.SELL, D(10), OrderStatus.FILLED)
        assert tracker.position_qty("AAPL") == 0
    finally:
        services.close()
    assert [e for _s, e, _o in events(cfg, closing.client_order_id)][:2] == ["start", "new"]


def test_flatten_all_closes_a_crypto_pair_a_short_and_an_external_order_json(mqd, srv, cfg):
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import OrderSide
    from alpaca.trading.enums import TimeInForce as Tif
    from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

    client = TradingClient(srv.key_id, srv.secret_key, paper=True, url_override=srv.base_url)
    client._retry = 0
    client.submit_order(
        MarketOrderRequest(symbol="BTC/USD", qty=0.05, side=OrderSide.BUY, time_in_force=Tif.GTC)
    )
    client.submit_order(
        MarketOrderRequest(symbol="MSFT", qty=3, side=OrderSide.SELL, time_in_force=Tif.DAY)
    )
    below = round(float(price(srv, "MSFT")) * 0.5, 2)  # a resting buy, placed outside mqd
    external = client.submit_order(
        LimitOrderRequest(
            symbol="MSFT", qty=1, side=OrderSide.BUY, time_in_force=Tif.DAY, limit_price=below
        )
    )
    assert positions(cfg) == {"BTC/USD": D("0.05"), "MSFT": D(-3)}

    doc = mqd("flatten", "--all", "--yes", "--json", "--config", cfg).json

    by = {p["symbol"]: p for p in doc["positions"]}
    assert doc["closed"] == 2 and doc["failed"] == 0 and doc["confirmed"] is True
    assert by["BTC/USD"]["closing_order"]["side"] == "sell"
    assert by["BTC/USD"]["closing_order"]["filled_qty"] == "0.05"
    assert by["MSFT"]["closing_order"]["side"] == "buy"  # a short is bought back
    assert by["MSFT"]["closing_order"]["filled_qty"] == "3"
    (canceled,) = by["MSFT"]["canceled"]
    assert canceled["client_order_id"] == str(external.client_order_id)
    assert canceled["ours"] is False and canceled["status"] == "canceled" and canceled["ok"]
    assert positions(cfg) == {} and open_orders(cfg) == []


def test_flatten_finds_a_crypto_position_by_either_spelling(mqd, srv, cfg):
    send(
        cfg,
        OrderIntent(
            "BTC/USD", Side.BUY, qty=D("0.01"), time_in_force=TimeInForce.GTC, strategy="x"
        ),
    )
    r = mqd("flatten", "btcusd", "--yes", "--config", cfg)
    assert "BTC/USD 0.01 @ " in r.stdout and "BTC/USD: sold 0.01 @ " in r.stdout
    assert positions(cfg) == {}


def test_flatten_of_a_symbol_without_a_position_does_nothing_and_exits_0(mqd, srv, cfg):
    r = mqd("flatten", "TSLA", "--yes", "--config", cfg)
    assert "TSLA: no position" in r.stderr


def test_cancel_all_cancels_ours_and_external_orders_and_journals_each_request(mqd, srv, cfg):
    ours = resting_buy(srv, cfg)
    theirs = Services.from_config(cfg)
    try:  # an order mqd does not track: its id is not one of ours
        external = theirs.broker.submit_order(
            OrderIntent(
                "MSFT",
                Side.BUY,
                qty=D(1),
                type=OrderType.LIMIT,
                limit_price=(price(srv, "MSFT") / 2).quantize(D("0.01")),
                client_order_id="placed-by-hand-1",
            )
        )
    finally:
        theirs.close()

    r = mqd("cancel", "--all", "--yes", "--config", cfg)

    assert f"{ours.client_order_id} (AAPL limit buy 1 @ " in r.stdout
    assert "placed-by-hand-1" in r.stdout and "external" in r.stdout
    assert "2 of 2 orders canceled" in r.stdout
    assert open_orders(cfg) == []
    assert events(cfg, ours.client_order_id)[-2:] == [
        ("cancel", "cancel_requested", "recorded"),
        ("cancel", "canceled", "applied"),
    ]
    assert events(cfg, external.client_order_id) == [
        ("cancel", "cancel_requested", "recorded"),
        ("cancel", "cancel_confirmed", "recorded"),
    ]


def test_cancel_by_client_order_id_or_broker_id_and_exit_1_for_an_unknown_order(mqd, srv, cfg):
    a = resting_buy(srv, cfg)
    b = resting_buy(srv, cfg, "MSFT")

    doc = mqd("cancel", a.client_order_id, b.id, "--yes", "--json", "--config", cfg).json
    assert sorted(o["client_order_id"] for o in doc["orders"]) == sorted(
        [a.client_order_id, b.client_order_id]
    )
    assert doc["canceled"] == 2 and open_orders(cfg) == []

    again = mqd(
        "cancel", a.client_order_id, "nosuch-order", "--yes", "--json", "--config", cfg, expect=1
    )
    assert again.json["not_open"] == [
        {"target": a.client_order_id, "reason": "already canceled", "ok": True},
        {"target": "nosuch-order", "reason": "not found at the broker", "ok": False},
    ]


def test_cancel_of_an_order_that_filled_first_exits_1(mqd, srv, cfg):
    filled = send(cfg, OrderIntent("AAPL", Side.BUY, qty=D(1), strategy="sma_cross"))
    r = mqd("cancel", filled.client_order_id, "--yes", "--config", cfg, expect=1)
    assert f"{filled.client_order_id}: already filled" in r.stderr


# -- the guards -----------------------------------------------------------------------------------


def test_without_a_terminal_and_without_yes_they_refuse_with_exit_2_and_touch_nothing(
    mqd, srv, cfg
):
    order = resting_buy(srv, cfg)
    for args in (("cancel", "--all"), ("flatten", "--all")):
        if args[0] == "flatten":
            send(cfg, OrderIntent("AAPL", Side.BUY, qty=D(2), strategy="sma_cross"))
        r = mqd(*args, "--config", cfg, expect=2)
        assert "stdin is not a terminal" in r.stderr and "hint: add --yes" in r.stderr
    assert [o.id for o in open_orders(cfg)] == [order.id]
    assert positions(cfg) == {"AAPL": D(2)}


def test_they_refuse_while_a_run_holds_the_stream_lease_unless_force(mqd, srv, cfg):
    order = resting_buy(srv, cfg)
    services = Services.from_config(cfg)
    try:
        services.stream_lease.acquire()  # what a running `mqd run` holds
        r = mqd("cancel", "--all", "--yes", "--config", cfg, expect=4)
        assert "holds its stream lease" in r.stderr and "--force" in r.stderr
        assert [o.id for o in open_orders(cfg)] == [order.id]
        forced = mqd("cancel", "--all", "--yes", "--force", "--config", cfg)
        assert "warning: --force" in forced.stderr and open_orders(cfg) == []
    finally:
        services.stream_lease.release()
        services.close()


def test_with_the_in_process_simulator_they_refuse_with_a_hint(mqd, config_file):
    cfg = config_file('broker = "sim"\n')
    for args in (("cancel", "--all"), ("flatten", "AAPL")):
        r = mqd(*args, "--yes", "--config", cfg, expect=2)
        assert 'broker = "sim"' in r.stderr and "mqd sim serve" in r.stderr


@pytest.mark.parametrize(
    "args",
    [("cancel",), ("cancel", "X", "--all"), ("flatten",), ("flatten", "--wait", "1y")],
    ids=" ".join,
)
def test_bad_usage_exits_2_before_any_broker_call(mqd, args):
    r = mqd(*args, expect=2)
    assert r.stderr.startswith("error: ") and "hint: " in r.stderr


def _run_on_a_terminal(args: list[str], answer: bytes, home: Path) -> tuple[int, str, str]:
    """``mqd ARGS`` with stdin and stderr on a pseudo-terminal: waits for the question,
    answers it, returns (exit code, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqd_cli", *args],
        cwd=ROOT,
        env=env,
        stdin=slave,
        stderr=slave,
        stdout=subprocess.PIPE,
    )
    os.close(slave)
    shown = b""
    try:
        deadline = time.monotonic() + 60
        while b"[y/N]" not in shown and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                shown += os.read(master, 4096)
        assert b"[y/N]" in shown, shown
        os.write(master, answer)
        out, _ = proc.communicate(timeout=60)
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        proc.kill()
        os.close(master)
    return proc.returncode, out.decode(), shown.decode(errors="replace")


def test_on_a_terminal_they_ask_and_act_only_on_yes(srv, cfg, isolated_env):
    order = resting_buy(srv, cfg)
    args = ["cancel", "--all", "--config", str(cfg)]

    code, out, shown = _run_on_a_terminal(args, b"n\n", isolated_env)
    assert code == 1 and "Cancel 1 order? [y/N]" in shown and "nothing canceled" in shown
    assert order.client_order_id in out  # the plan was shown
    assert [o.id for o in open_orders(cfg)] == [order.id]

    code, out, _shown = _run_on_a_terminal(args, b"y\n", isolated_env)
    assert code == 0 and "1 of 1 order canceled" in out
    assert open_orders(cfg) == []


# -- the desk on the in-process exchange: races staged exactly ------------------------------------

QUIET = ("100", "100.2", "99.8", "100")  # a minute at 100
DROP = ("96", "96", "89", "90")  # through a stop at 95


class LateCancel(SimBroker):
    """The market moves before a cancel arrives: the stop leg fills, and the cancel is too
    late (Alpaca answers 422 "order is already in "filled" state")."""

    def cancel_order(self, order_id: str) -> None:
        self.clock.advance(2 * MINUTE)  # the minute of the drop completes
        self.step()
        super().cancel_order(order_id)


class StuckCancel(SimBroker):
    """A cancel the broker refuses while the order stays open (pending_replace at Alpaca)."""

    def cancel_order(self, order_id: str) -> None:
        raise OrderRejected("order is in pending_replace state", status=422)


class LostAnswer(SimBroker):
    """Once ``failures`` is set: submits reach the exchange but their answers are lost."""

    failures = 0

    def submit_order(self, intent: OrderIntent):
        report = super().submit_order(intent)
        if not self.failures:
            return report
        self.failures -= 1
        raise BrokerUnavailable("Alpaca did not answer within 10s")


class NeverArrives(SimBroker):
    """Once ``failures`` is set: submits fail before they reach the exchange."""

    failures = 0

    def submit_order(self, intent: OrderIntent):
        if self.failures:
            self.failures -= 1
            raise BrokerUnavailable("connection reset")
        return super().submit_order(intent)


def desk_on(cls: type[SimBroker], tmp_path: Path, bars: list) -> tuple[Desk, Sim, Store]:
    from mqd_cli.brokers.sim.prices import CsvPrices, SyntheticPrices
    from mqd_cli.clock import BacktestClock

    settings = SimSettings(partial_fill_probability=0.0, liquidity=D(0))
    clock = BacktestClock(T0)
    prices = CsvPrices(scripted("AAPL", bars), SyntheticPrices(settings.seed))
    broker = cls(settings, clock, prices=prices)
    store = Store.open(tmp_path / "mqd.db")
    tracker = OrderTracker.restore(store, clock, strategy="sma_cross")
    return Desk(broker, tracker, clock, wait=timedelta(seconds=5)), Sim(broker, clock), store


def enter_with_stop(desk: Desk) -> None:
    intent = desk.tracker.start(
        OrderIntent(
            "AAPL",
            Side.BUY,
            qty=D(10),
            time_in_force=TimeInForce.GTC,
            order_class=OrderClass.OTO,
            stop_loss_stop_price=D(95),
            reason="entry",
        )
    )
    desk.tracker.on_submitted(desk.broker.submit_order(intent))


def test_a_stop_leg_that_fills_before_its_cancel_leaves_the_position_flat_and_nothing_is_sent(
    tmp_path,
):
    desk, sim, store = desk_on(LateCancel, tmp_path, [QUIET, DROP, QUIET, QUIET])
    enter_with_stop(desk)
    plans, _ = desk.plan_flatten(["AAPL"])
    assert [o.report.stop_price for o in plans[0].orders] == [D(95)]

    (out,) = desk.flatten(plans)

    assert out.ok and out.client_order_id is None and out.qty_after == 0
    assert out.canceled[0].status is OrderStatus.FILLED  # too late: it filled
    assert sim.broker.list_positions() == []
    assert [o for o in desk.tracker.orders() if o.strategy == FLATTEN] == []  # never sent
    store.close()


def test_an_order_that_will_not_cancel_blocks_the_close_of_its_symbol(tmp_path):
    desk, sim, store = desk_on(StuckCancel, tmp_path, [QUIET] * 20)
    enter_with_stop(desk)
    plans, _ = desk.plan_flatten(None)

    (out,) = desk.flatten(plans)

    assert not out.ok and "still new after 5s" in out.canceled[0].detail
    assert "not closed" in out.detail and out.client_order_id is None
    assert {p.symbol: p.qty for p in sim.broker.list_positions()} == {"AAPL": D(10)}
    names = [r["event"] for r in journal.events(store, out.canceled[0].order.client_order_id)]
    assert names[-1] == "cancel_failed" and "cancel_requested" in names
    store.close()


def test_a_lost_submit_answer_is_never_resent_and_the_next_flatten_finds_the_position_flat(
    tmp_path,
):
    desk, sim, store = desk_on(LostAnswer, tmp_path, [QUIET] * 5)
    sim.broker.submit_order(OrderIntent("AAPL", Side.BUY, qty=D(4), client_order_id="entry-1"))
    sim.broker.failures = 1
    plans, _ = desk.plan_flatten(None)

    (out,) = desk.flatten(plans)

    assert not out.ok and "outcome unknown" in out.detail
    closing = desk.tracker.order(out.client_order_id or "")
    assert closing is not None and closing.submit_state == "uncertain"
    sells = [o for o in sim.broker.list_orders("all") if o.side is Side.SELL]
    assert len(sells) == 1  # sent once: the exchange has it and it filled
    again, _ = Desk(sim.broker, desk.tracker, sim.clock).plan_flatten(None)
    assert again == []  # nothing left to close: a second flatten sends nothing
    store.close()


def test_a_submit_that_never_arrived_is_sent_again_under_the_same_client_order_id(tmp_path):
    desk, sim, store = desk_on(NeverArrives, tmp_path, [QUIET] * 5)
    sim.broker.submit_order(OrderIntent("AAPL", Side.BUY, qty=D(4), client_order_id="entry-1"))
    sim.broker.failures = 1
    plans, _ = desk.plan_flatten(None)
    (first,) = desk.flatten(plans)
    assert not first.ok and sim.broker.list_positions() != []

    (second,) = desk.flatten(desk.plan_flatten(None)[0])

    assert second.ok and second.client_order_id == first.client_order_id
    assert sim.broker.list_positions() == []
    store.close()


def test_wait_deadline_counts_on_the_injected_clock(tmp_path):
    """No real sleeping: the desk waits on its clock (a backtest clock here: instantly)."""
    desk, sim, store = desk_on(StuckCancel, tmp_path, [QUIET] * 20)
    enter_with_stop(desk)
    started = sim.clock.now()
    real = time.monotonic()
    desk.cancel(desk.open_orders())
    assert sim.clock.now() - started >= timedelta(seconds=5)
    assert time.monotonic() - real < 5
    store.close()
