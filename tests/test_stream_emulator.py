"""UserStreamTracker end to end against `mqd sim serve` on loopback: a real OrderTracker over a
real SQLite store, orders placed through the emulator's REST API with the alpaca-py adapter,
fault injection (drops, duplicates, reordering, 429s) through its control API."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from decimal import Decimal

import pytest

from mqd_cli.brokers.alpaca import AlpacaBroker
from mqd_cli.clock import RealTimeClock
from mqd_cli.model import OrderIntent, OrderStatus, OrderType, Side, TimeInForce
from mqd_cli.orders.tracker import OrderTracker
from mqd_cli.store import Store
from mqd_cli.stream.client import StreamOptions, UserStreamTracker

FAST = StreamOptions(
    heartbeat_interval=0.5,
    heartbeat_timeout=1.0,
    reply_timeout=3,
    backoff_initial=0.02,
    backoff_max=0.1,
    backoff_429=0.1,
)
_ids = itertools.count(1)


def market(symbol: str = "AAPL", qty: str = "10", side: Side = Side.BUY) -> OrderIntent:
    return OrderIntent(
        symbol=symbol,
        side=side,
        qty=Decimal(qty),
        type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        client_order_id=f"e2e-{next(_ids)}",
    )


@pytest.fixture
def world(emulator, tmp_path):
    """A fresh emulator, an adapter on it, and a tracker over a real store."""

    def make(**faults):
        srv = emulator(**faults)
        broker = AlpacaBroker(srv.alpaca_settings())
        store = Store.open(tmp_path / "mqd.db")
        clock = RealTimeClock()
        tracker = OrderTracker(store, clock)
        stream = UserStreamTracker(
            srv.stream_url,
            srv.key_id,
            srv.secret_key,
            clock=clock,
            tracker=tracker,
            broker=broker,
            options=FAST,
            seed=5,
        )
        made.append((broker, store))
        return srv, broker, tracker, stream

    made: list = []
    yield make
    for broker, store in made:
        broker.close()
        store.close()


@contextlib.asynccontextmanager
async def running(stream: UserStreamTracker):
    task = asyncio.create_task(stream.run())
    try:
        async with asyncio.timeout(10):
            while not stream.health.connected:
                await asyncio.sleep(0.01)
        yield stream
    finally:
        stream.stop()
        async with asyncio.timeout(5):
            await task


async def submit(broker: AlpacaBroker, intents) -> list:
    return [await asyncio.to_thread(broker.submit_order, i) for i in intents]


async def settled(srv, broker, tracker, cids, timeout: float = 20.0) -> list:
    """Wait until every order is final at the broker and the tracker agrees on its fills
    (moving simulated time a bar on when a partial fill waits for the next bar)."""
    async with asyncio.timeout(timeout):
        while True:
            reports = [await asyncio.to_thread(broker.get_order_by_client_id, c) for c in cids]
            if any(r.status is OrderStatus.PARTIALLY_FILLED for r in reports):
                await asyncio.to_thread(srv.advance, 60)
                continue
            done = all(r.status is OrderStatus.FILLED for r in reports) and all(
                tracker.order(r.client_order_id) is not None
                and tracker.order(r.client_order_id).filled_qty == r.filled_qty
                for r in reports
            )
            if done:
                return reports
            await asyncio.sleep(0.05)


def assert_each_fill_once(tracker, reports) -> None:
    for r in reports:
        o = tracker.order(r.client_order_id)
        fills = o.fills
        assert sum(f.qty for f in fills) == r.filled_qty, r.client_order_id
        assert len({f.fill_id for f in fills}) == len(fills)
        assert o.status is OrderStatus.FILLED


async def test_fills_reach_the_tracker_in_order_and_are_journaled(world, tmp_path):
    srv, broker, tracker, stream = world()
    seen = []
    stream.subscribe(seen.append)
    async with running(stream):
        placed = await submit(broker, [market() for _ in range(6)])
        reports = await settled(srv, broker, tracker, [p.client_order_id for p in placed])
    assert_each_fill_once(tracker, reports)
    stamps = [u.timestamp for u in seen]
    assert stamps == sorted(stamps)  # delivered in the order the exchange emitted them
    for p in placed:  # per order: new, then fills with a rising cumulative quantity, fill last
        mine = [u for u in seen if u.order.client_order_id == p.client_order_id]
        names = [u.event_raw for u in mine]
        assert names.index("new") < names.index("fill") == len(names) - 1
        cumulative = [u.order.filled_qty for u in mine]
        assert cumulative == sorted(cumulative)
        assert sum(u.qty for u in mine if u.event.is_fill) == Decimal("10")
    assert stream.health.connects == 1 and stream.health.malformed == 0
    # the journal holds it all: a tracker restored from the store agrees
    restored = OrderTracker.restore(Store.open(tmp_path / "mqd.db"), RealTimeClock())
    assert_each_fill_once(restored, reports)


async def test_drop_mid_burst_then_gap_fill_leaves_every_fill_exactly_once(world):
    srv, broker, tracker, stream = world()
    async with running(stream):
        srv.set_faults(stream_drop_every=7)
        placed = await submit(broker, [market(qty="25") for _ in range(30)])
        reports = await settled(srv, broker, tracker, [p.client_order_id for p in placed])
        srv.set_faults(stream_drop_every=0)
    assert stream.health.reconnects >= 2
    assert stream.health.gap_fills >= 2
    assert_each_fill_once(tracker, reports)
    position = tracker.positions()["AAPL"]
    assert position.qty == sum(r.filled_qty for r in reports)


async def test_duplicate_and_reordered_events_change_nothing_twice(world):
    srv, broker, tracker, stream = world(stream_duplicate_rate=0.5, stream_reorder_rate=0.3)
    async with running(stream):
        placed = await submit(broker, [market(qty="20") for _ in range(20)])
        reports = await settled(srv, broker, tracker, [p.client_order_id for p in placed])
    assert stream.health.duplicates > 0
    assert_each_fill_once(tracker, reports)
    assert tracker.positions()["AAPL"].qty == sum(r.filled_qty for r in reports)


async def test_events_missed_while_down_are_gap_filled_on_reconnect(world):
    srv, broker, tracker, stream = world()
    async with running(stream):
        first = await submit(broker, [market()])
        await settled(srv, broker, tracker, [first[0].client_order_id])
    # the client is down; orders fill without it
    missed = await submit(broker, [market(qty="7") for _ in range(4)])
    assert all(tracker.order(m.client_order_id) is None for m in missed)
    stream2 = UserStreamTracker(
        srv.stream_url,
        srv.key_id,
        srv.secret_key,
        clock=RealTimeClock(),
        tracker=tracker,
        broker=broker,
        options=FAST,
    )
    got = []
    stream2.subscribe(got.append)
    async with running(stream2):
        reports = await settled(srv, broker, tracker, [m.client_order_id for m in missed])
    assert_each_fill_once(tracker, reports)
    assert stream2.health.gap_fill_fills >= 4
    # subscribers hear about the missed fills too (built from the REST status)
    assert {u.order.client_order_id for u in got} >= {m.client_order_id for m in missed}


async def test_a_second_connection_is_refused_429_and_backs_off_until_the_first_leaves(world):
    srv, broker, tracker, first = world()
    second = UserStreamTracker(
        srv.stream_url, srv.key_id, srv.secret_key, clock=RealTimeClock(), options=FAST, seed=2
    )
    async with running(first):
        task = asyncio.create_task(second.run())
        async with asyncio.timeout(5):
            while second.health.handshake_429s < 2:
                await asyncio.sleep(0.01)
        assert second.health.connects == 0
        assert srv.state()["stream_connections"] == 1
    async with asyncio.timeout(5):  # the slot is free: the second gets in
        while not second.health.connected:
            await asyncio.sleep(0.01)
    second.stop()
    await task
    assert "429" in second.health.last_error


async def test_gap_fill_failure_is_retried_without_dropping_the_connection(world, monkeypatch):
    srv, broker, tracker, stream = world()
    async with running(stream):
        first = await submit(broker, [market()])
        await settled(srv, broker, tracker, [first[0].client_order_id])
        calls = {"n": 0}
        real = broker.list_orders

        def flaky(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 1:
                raise OSError("REST down")
            return real(*args, **kwargs)

        monkeypatch.setattr(broker, "list_orders", flaky)
        srv.set_faults(stream_drop_every=1)
        srv.drop_streams()
        missed = await submit(broker, [market(qty="3") for _ in range(3)])
        srv.set_faults(stream_drop_every=0)
        reports = await settled(srv, broker, tracker, [m.client_order_id for m in missed])
    assert stream.health.gap_fill_errors >= 1
    assert_each_fill_once(tracker, reports)


async def test_a_drop_after_events_reconnects_at_once_not_after_a_backoff(world):
    # bug: a session that ended with an exception (every server drop does) lost its
    # "received events" flag, so each drop waited a growing backoff before reconnecting
    srv, broker, tracker, _ = world()
    slow = StreamOptions(**{**FAST.__dict__, "backoff_initial": 60.0, "backoff_max": 60.0})
    stream = UserStreamTracker(
        srv.stream_url, srv.key_id, srv.secret_key, clock=RealTimeClock(),
        tracker=tracker, broker=broker, options=slow,
    )  # fmt: skip
    async with running(stream):
        placed = await submit(broker, [market(qty="1")])
        await settled(srv, broker, tracker, [placed[0].client_order_id])
        # the fill may reach the tracker by the connect-time gap fill first: wait until this
        # connection has itself delivered the order's frames, so it counts as healthy
        async with asyncio.timeout(10):
            while not stream.health.events and not stream.health.duplicates:
                await asyncio.sleep(0.01)
        srv.drop_streams()
        async with asyncio.timeout(5):  # a backoff would wait 30-60 s
            while stream.health.connects < 2 or not stream.health.connected:
                await asyncio.sleep(0.01)
    assert stream.health.last_resume_ms is not None


def test_the_emulator_encodes_each_event_once_for_its_listeners_and_not_without_one(monkeypatch):
    from datetime import datetime

    from mqd_cli.emulator.exchange import Emulator
    from mqd_cli.emulator.settings import EmulatorConfig
    from mqd_cli.emulator.stream import StreamConnection
    from mqd_cli.wire import format as wire_format

    emulator = Emulator(EmulatorConfig(start=datetime.fromisoformat("2026-01-05T14:35:00+00:00")))
    encoded = []
    to_wire = wire_format.trade_update_to_wire
    monkeypatch.setattr(
        wire_format, "trade_update_to_wire", lambda u: encoded.append(u) or to_wire(u)
    )
    emulator.broker.submit_order(market())
    assert emulator.events_emitted > 0 and encoded == []  # nobody listens: nothing encoded

    listeners = [StreamConnection(None), StreamConnection(None)]
    for conn in listeners:
        conn.listening = True
        emulator.streams.add(conn)
    before = emulator.events_emitted
    emulator.broker.submit_order(market())
    emitted = emulator.events_emitted - before
    assert emitted > 0 and len(encoded) == emitted
    frames = [[c.queue.get_nowait() for _ in range(c.queue.qsize())] for c in listeners]
    assert frames[0] == frames[1] and len(frames[0]) == emitted
    assert all(isinstance(f, bytes) and b'"trade_updates"' in f for f in frames[0])
