"""`mqd stream tail` through the real CLI: journal of a lease holder, direct connection, sim."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from mqd_cli.brokers.alpaca import AlpacaBroker
from mqd_cli.clock import RealTimeClock
from mqd_cli.config.settings import SimSettings
from mqd_cli.model import OrderIntent, OrderType, Side, TimeInForce
from mqd_cli.orders.tracker import OrderTracker
from mqd_cli.store import Store
from mqd_cli.store import orders as journal
from mqd_cli.store import stream as leases
from mqd_cli.stream.tail import TailEvent, event_from_row, first_row_since, parse_events
from mqd_cli.wire.parse import parse_trade_update

FAST_STREAM = """
[stream]
backoff_initial = "20ms"
backoff_max = "100ms"
backoff_429 = "100ms"
lease_ttl = "3s"
tail_poll_interval = "50ms"
"""
_ids = itertools.count(1)


def buy(qty: str = "1") -> OrderIntent:
    return OrderIntent(
        symbol="AAPL",
        side=Side.BUY,
        qty=Decimal(qty),
        type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        client_order_id=f"tail-{next(_ids)}",
    )


@pytest.fixture
def emu_config(emulator, config_file):
    def make(**faults):
        srv = emulator(**faults)
        return srv, config_file(srv.config_toml() + FAST_STREAM, name="emu.toml")

    return make


class Holder:
    """Another `mqd run`: holds the lease and the stream in its own thread, store and loop."""

    def __init__(self, config_path):
        self.config_path = config_path
        self.ready = threading.Event()
        self.stream = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        from mqd_cli.factory import Services
        from mqd_cli.stream.lease import run_leased

        services = Services.from_config(self.config_path)
        try:
            self.stream = services.user_stream
            self.stream.subscribe(lambda u: None)
            self.ready.set()
            asyncio.run(run_leased(self.stream, services.stream_lease))
        finally:
            services.close()

    def __enter__(self):
        self._thread.start()
        assert self.ready.wait(10)
        deadline = time.monotonic() + 10
        while not self.stream.health.connected:
            assert time.monotonic() < deadline, "holder never connected"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.stream.stop()
        self._thread.join(10)


def later(seconds, fn, *args):
    t = threading.Timer(seconds, fn, args)
    t.daemon = True
    t.start()
    return t


def submit_when_connected(srv, intents, connections=1):
    """Place orders once the emulator has the expected stream connections."""

    def run():
        deadline = time.monotonic() + 10
        while srv.state()["stream_connections"] < connections and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        broker = AlpacaBroker(srv.alpaca_settings())
        try:
            for intent in intents:
                broker.submit_order(intent)
        finally:
            broker.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def count_connections(monkeypatch) -> list:
    import websockets.asyncio.client as client

    calls = []
    real = client.connect

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(client, "connect", counting)
    return calls


def test_tail_follows_the_holders_journal_and_never_opens_a_second_connection(
    emu_config, mqd, monkeypatch
):
    srv, cfg = emu_config()
    with Holder(cfg) as holder:
        broker = AlpacaBroker(srv.alpaca_settings())
        for _ in range(3):
            broker.submit_order(buy())
        broker.close()
        connects = count_connections(monkeypatch)
        # replay what the holder journaled, then follow it live
        replay = mqd(
            "stream", "tail", "-c", cfg, "--since", "10m", "--events", "fill", "--count", "3",
            "--json",
        )  # fmt: skip
        submit_when_connected(srv, [buy(), buy()])
        live = mqd("stream", "tail", "-c", cfg, "--events", "fill", "--count", "2", "--json")
        assert srv.state()["stream_connections"] == 1
        assert holder.stream.health.connects == 1
    assert connects == []  # tail never dialled the stream
    for result, n in ((replay, 3), (live, 2)):
        docs = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(docs) == n and {d["event"] for d in docs} == {"fill"}
        assert all(d["source"] == "stream" and d["symbol"] == "AAPL" for d in docs)
        assert "source: journal of the running `mqd run`" in result.stderr
        assert "tail: " in result.stderr.splitlines()[-1]


def test_direct_tail_prints_json_lines_and_writes_nothing(emu_config, mqd, tmp_path):
    srv, cfg = emu_config()
    submit_when_connected(srv, [buy("1") for _ in range(3)])
    result = mqd("stream", "tail", "-c", cfg, "--count", "3", "--events", "fill", "--json")
    docs = [json.loads(line) for line in result.stdout.splitlines()]  # stdout: JSON only
    assert [d["event"] for d in docs] == ["fill"] * 3
    assert all(d["filled_qty"] == d["order_qty"] == "1" for d in docs)
    assert all(d["source"] == "direct" and d["execution_id"] for d in docs)
    assert "source: direct connection to ws://" in result.stderr
    assert "3 events (3 executions: 3 fills, 0 partial fills)" in result.stderr
    store = Store.open(tmp_path / "mqd.db")
    assert journal.last_event_id(store) == 0  # a viewer journals nothing
    store.close()


def test_direct_tail_lines_show_time_event_symbol_side_quantities_price_and_order(emu_config, mqd):
    srv, cfg = emu_config()
    submit_when_connected(srv, [buy("1")])
    result = mqd("stream", "tail", "-c", cfg, "--count", "3")
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    fill = lines[-1]
    assert "FILL" in fill and "AAPL" in fill and "buy" in fill and "1/1" in fill and "@ " in fill


def test_sim_broker_without_a_holder_says_there_is_no_websocket(mqd):
    result = mqd("stream", "tail", expect=2)
    assert 'broker = "sim"' in result.stderr and "mqd sim serve" in result.stderr
    assert "--journal" in result.stderr and result.stdout == ""


def test_journal_mode_replays_applied_events_and_skips_duplicates(mqd, tmp_path):
    from tests.test_stream import event

    store = Store.open(tmp_path / "mqd.db")
    tracker = OrderTracker(store, RealTimeClock())
    partial = event("partial_fill", 1, execution_id="e1", price="178.48", qty="40")
    partial["data"]["order"]["filled_qty"] = "40"
    full = event("fill", 2, execution_id="e2", price="178.5", qty="60")
    full["data"]["order"]["filled_qty"] = "100"
    for message in (event("new", 0), partial, partial, full):
        tracker.apply(parse_trade_update(message["data"]), source="stream")
    store.close()
    result = mqd("stream", "tail", "--journal", "--since", "1h", "--count", "3", "--json")
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["event"] for d in docs] == ["new", "partial_fill", "fill"]
    assert docs[1]["qty"] == "40" and docs[1]["price"] == "178.48"
    assert docs[2]["filled_qty"] == "100" and docs[2]["order_qty"] == "100"
    text = mqd("stream", "tail", "--journal", "--since", "1h", "--count", "3").stdout
    partial_line, fill_line = text.splitlines()[1:]
    assert "partial_fill" in partial_line and "40/100" in partial_line and "+40" in partial_line
    assert "FILL" in fill_line and "FILL" not in partial_line


def test_bad_options_exit_2_with_a_hint(mqd):
    bad = mqd("stream", "tail", "--events", "fil", expect=2)
    assert "did you mean 'fill'" in bad.stderr
    assert "exclude" in mqd("stream", "tail", "--direct", "--journal", expect=2).stderr
    assert "--since" in mqd("stream", "tail", "--since", "soon", expect=2).stderr


def test_event_from_row_skips_unchanged_rows_and_malformed_payloads():
    base = {"id": 1, "recorded_at": "2026-01-05T14:35:00.000000+00:00", "source": "stream"}
    assert event_from_row({**base, "outcome": "unchanged", "payload": "{}"}) is None
    assert event_from_row({**base, "outcome": "applied", "payload": "not json"}) is None
    assert event_from_row({**base, "outcome": "applied", "payload": "[1]"}) is None
    assert event_from_row({**base, "outcome": "applied", "payload": '{"intent": {}}'}) is None
    odd = {"order": {"symbol": "AAPL", "qty": "x", "filled_qty": None}, "price": "NaN"}
    ev = event_from_row({**base, "outcome": "applied", "event": "fill", "payload": json.dumps(odd)})
    assert isinstance(ev, TailEvent) and ev.order_qty is None and ev.price is None


def test_parse_events_accepts_known_names():
    assert parse_events("fill, partial_fill") == {"fill", "partial_fill"}
    assert parse_events(None) == frozenset()


def test_first_row_since_finds_the_first_row_recorded_after_the_cutoff(tmp_path):
    from mqd_cli.clock import BacktestClock

    store = Store.open(tmp_path / "mqd.db")
    clock = BacktestClock(datetime(2026, 1, 5, 14, 0, tzinfo=UTC))
    tracker = OrderTracker(store, clock)
    from tests.test_stream import event

    for n in range(20):
        message = event("new", 0)
        message["data"]["order"] = dict(
            message["data"]["order"], id=f"id-{n}", client_order_id=f"c-{n}"
        )
        tracker.apply(parse_trade_update(message["data"]))
        clock.advance(60)
    cutoff = datetime(2026, 1, 5, 14, 7, 30, tzinfo=UTC)
    after = first_row_since(store, cutoff)
    rows = journal.events(store, after_id=after)
    assert rows[0]["recorded_at"] >= "2026-01-05T14:07:30" and len(rows) == 12
    assert first_row_since(store, datetime(2030, 1, 1, tzinfo=UTC)) == journal.last_event_id(store)
    assert leases.current_lease(store, "sim") is None
    store.close()


def test_direct_tail_hands_the_connection_to_a_holder_that_takes_the_lease(emu_config, mqd):
    srv, cfg = emu_config()
    holders = []

    def start_holder_then_trade():
        deadline = time.monotonic() + 10
        while srv.state()["stream_connections"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        holder = Holder(cfg).__enter__()  # 429 until the tail lets go, then connects
        holders.append(holder)
        broker = AlpacaBroker(srv.alpaca_settings())
        broker.submit_order(buy())
        broker.close()

    threading.Thread(target=start_holder_then_trade, daemon=True).start()
    result = mqd("stream", "tail", "-c", cfg, "--events", "fill", "--count", "1", "--json")
    try:
        assert "took the stream lease; following its journal" in result.stderr
        assert json.loads(result.stdout)["source"] == "stream"  # a journal row of the holder
        assert "from direct then journal" in result.stderr
        assert holders[0].stream.health.handshake_429s >= 1
    finally:
        for holder in holders:
            holder.__exit__()


# -- the direct tail misses nothing and shows each execution once --------------------------------


def test_direct_tail_recovers_fills_that_only_rest_can_fill_after_a_drop(emu_config, mqd):
    # every connection closes after one event: the rest of each burst (the fills) is lost
    # on the stream, and only the gap fill over REST after the reconnect can show it
    srv, cfg = emu_config(stream_drop_every=1, sim=SimSettings(partial_fill_probability=0.0))
    submit_when_connected(srv, [buy("2") for _ in range(3)])
    result = mqd("stream", "tail", "-c", cfg, "--count", "3", "--events", "fill", "--json")
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["event"] for d in docs] == ["fill"] * 3
    assert len({d["order_id"] for d in docs}) == 3  # each order's fill once
    assert all(d["qty"] == d["filled_qty"] == "2" for d in docs)
    gap = [d for d in docs if d["source"] == "gap_fill"]
    assert gap, "the fills were lost on the stream; REST must have shown them"
    assert all(d["execution_id"] is None and d["price"] for d in gap)
    assert "recovered by gap fill" in result.stderr
    assert "reconnect" in result.stderr


def test_direct_tail_shows_a_duplicated_execution_once_and_counts_it_once(emu_config, mqd):
    srv, cfg = emu_config(stream_duplicate_rate=1.0, sim=SimSettings(partial_fill_probability=0.0))
    submit_when_connected(srv, [buy("1") for _ in range(3)])
    result = mqd("stream", "tail", "-c", cfg, "--count", "3", "--events", "fill", "--json")
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(docs) == 3 and len({d["execution_id"] for d in docs}) == 3
    assert "3 events (3 executions: 3 fills, 0 partial fills" in result.stderr
    assert "repeats skipped" in result.stderr


def _fill_update(order, execution_id, qty, filled, at, event="partial_fill"):
    from dataclasses import replace

    from mqd_cli.model import OrderStatus, TradeEvent, TradeUpdate

    status = OrderStatus.FILLED if event == "fill" else OrderStatus.PARTIALLY_FILLED
    report = replace(order, filled_qty=Decimal(filled), status=status, updated_at=at)
    return TradeUpdate(
        event=TradeEvent(event),
        event_raw=event,
        timestamp=at,
        order=report,
        execution_id=execution_id,
        qty=Decimal(qty),
        price=Decimal("180"),
    )


def test_the_direct_ledger_counts_an_execution_once_whatever_repeats_it():
    from dataclasses import replace
    from datetime import timedelta

    from mqd_cli.clock import BacktestClock
    from mqd_cli.model import OrderStatus
    from mqd_cli.stream.tail import DirectLedger
    from tests.support import make_sim

    sim = make_sim()
    order = sim.submit(qty="3", type="limit", limit_price="1")  # rests: we script its fills
    shown: list[TailEvent] = []
    ledger = DirectLedger(BacktestClock(sim.clock.now()), shown.append)
    t = sim.clock.now()
    first = _fill_update(order, "x-1", "1", "1", t)
    ledger.apply(first)
    # the same execution again, stamped later (a resend): not shown, not counted
    ledger.apply(replace(first, timestamp=t + timedelta(seconds=1)))
    # a drop: the gap fill finds the order at 2 of 3 (one execution missed)
    missed = replace(order, filled_qty=Decimal(2), status=OrderStatus.PARTIALLY_FILLED)
    ledger.apply_order_report(
        replace(missed, updated_at=t + timedelta(seconds=2)), source="gap_fill"
    )
    # then the stream delivers that missed execution late: the gap fill counted it already
    ledger.apply(_fill_update(order, "x-2", "1", "2", t + timedelta(seconds=2)))
    ledger.apply(_fill_update(order, "x-3", "1", "3", t + timedelta(seconds=3), event="fill"))
    assert [(e.qty, e.source) for e in shown] == [
        (Decimal(1), "direct"),
        (Decimal(1), "gap_fill"),
        (Decimal(1), "direct"),
    ]
    assert ledger.executions == 3 == sum(e.qty for e in shown)
    assert ledger.gap_filled == 1 and ledger.skipped == 2


def test_direct_tail_keeps_saying_it_is_not_connected_while_the_broker_is_down(
    config_file, monkeypatch
):
    from mqd_cli.factory import Services
    from mqd_cli.stream import tail as tail_module
    from mqd_cli.stream.tail import StreamTail

    monkeypatch.setattr(tail_module, "_DOWN_STATUS_EVERY", 0.3)
    with socket.socket() as probe:  # a port nothing listens on: the broker is down
        probe.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{probe.getsockname()[1]}"
    cfg = config_file(
        'broker = "alpaca"\n[alpaca]\nkey_id = "k"\nsecret_key = "s"\n'
        f'base_url = "http://{down}"\nstream_url = "ws://{down}/stream"\n' + FAST_STREAM
    )
    services = Services.from_config(cfg)
    said: list[str] = []
    tail = StreamTail(services, emit=lambda ev: None, status=said.append, direct=True)

    async def watch():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tail.run(), 2.0)

    try:
        asyncio.run(watch())
    finally:
        services.close()
    waiting = [line for line in said if line.startswith("still not connected after")]
    assert len(waiting) >= 2, said
    assert "retrying" in waiting[-1] and "last error" in waiting[-1]


def test_fills_recovered_over_rest_are_the_executions_of_the_fill_activities(emu_config, mqd):
    import httpx

    # every event after the first of each connection is lost, and orders fill in parts: the
    # gap fill must recover each execution with its own quantity and price (FILL activities),
    # not one lump at the average price
    srv, cfg = emu_config(
        stream_drop_every=1, speed=60.0, sim=SimSettings(partial_fill_probability=1.0)
    )
    submit_when_connected(srv, [buy("40") for _ in range(2)])
    result = mqd(
        "stream", "tail", "-c", cfg, "--events", "fill,partial_fill", "--json", "--count", "4"
    )
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    acts = httpx.get(
        srv.base_url + "/v2/account/activities/FILL", headers=srv.headers, timeout=10
    ).json()
    executions = {(a["order_id"], Decimal(a["qty"]), Decimal(a["price"])) for a in acts}
    gap = [d for d in docs if d["source"] == "gap_fill"]
    assert gap, result.stderr
    for d in gap:
        assert (d["order_id"], Decimal(d["qty"]), Decimal(d["price"])) in executions, d
