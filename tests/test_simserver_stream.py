"""The emulator's /stream (trade_updates) with a plain websockets client: handshake, framing,
the one-connection rule and every stream fault."""

from __future__ import annotations

import json
import time
import uuid
from contextlib import contextmanager

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


def recv(ws, timeout=5.0):
    frame = ws.recv(timeout=timeout)
    assert isinstance(frame, bytes), "trade_updates frames are binary"
    return json.loads(frame)


@contextmanager
def authed(srv, form="auth"):
    with connect(srv.stream_url) as ws:
        handshake(ws, srv, form)
        yield ws


def handshake(ws, srv, form):
    if form == "auth":
        ws.send(json.dumps({"action": "auth", "key": srv.key_id, "secret": srv.secret_key}))
    else:
        ws.send(
            json.dumps(
                {
                    "action": "authenticate",
                    "data": {"key_id": srv.key_id, "secret_key": srv.secret_key},
                }
            )
        )
    assert recv(ws) == {
        "stream": "authorization",
        "data": {"status": "authorized", "action": "authenticate"},
    }
    ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
    assert recv(ws) == {"stream": "listening", "data": {"streams": ["trade_updates"]}}


def submit(srv, **fields):
    body = {
        "symbol": "AAPL",
        "qty": "1",
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
        "client_order_id": f"s-{uuid.uuid4()}",
        **fields,
    }
    r = httpx.post(srv.base_url + "/v2/orders", json=body, headers=srv.headers)
    assert r.status_code == 200, r.text
    return r.json()


def events(ws, n, timeout=5.0):
    out = []
    while len(out) < n:
        msg = recv(ws, timeout)
        assert msg["stream"] == "trade_updates"
        out.append(msg["data"])
    return out


@pytest.mark.parametrize("form", ["auth", "authenticate"])
def test_both_auth_forms_and_the_first_message_is_the_auth_reply(emulator, form):
    srv = emulator()
    with authed(srv, form):
        pass


def test_events_carry_timestamp_full_order_and_fill_fields_as_strings(emulator):
    srv = emulator()
    with authed(srv) as ws:
        order = submit(srv, qty="2")
        got = events(ws, 3)
    assert [e["event"] for e in got] == ["pending_new", "new", "fill"]
    assert all(e["timestamp"] and e["order"]["id"] == order["id"] for e in got)
    fill = got[-1]
    for key in ("price", "qty", "position_qty"):
        assert isinstance(fill[key], str)
    uuid.UUID(fill["execution_id"])
    assert fill["qty"] == "2" and fill["position_qty"] == "2"
    assert fill["order"]["status"] == "filled" and fill["order"]["filled_qty"] == "2"


def test_wrong_keys_and_listen_before_auth_are_unauthorized(emulator):
    srv = emulator()
    with connect(srv.stream_url) as ws:
        ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        assert recv(ws) == {
            "stream": "authorization",
            "data": {"status": "unauthorized", "action": "listen"},
        }
        ws.send(json.dumps({"action": "auth", "key": "x", "secret": "y"}))
        assert recv(ws)["data"]["status"] == "unauthorized"
        ws.send(b"not json at all")
        assert recv(ws)["stream"] == "error"


def test_listen_with_unknown_streams_lists_only_available_ones_and_empty_stops(emulator):
    srv = emulator()
    with authed(srv) as ws:
        ws.send(json.dumps({"action": "listen", "data": {"streams": ["nope", "trade_updates"]}}))
        assert recv(ws)["data"]["streams"] == ["trade_updates"]
        ws.send(json.dumps({"action": "listen", "data": {"streams": []}}))
        assert recv(ws) == {"stream": "listening", "data": {"streams": []}}
        submit(srv)
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)


def test_a_second_connection_is_refused_with_429_at_the_handshake(emulator):
    srv = emulator()
    with authed(srv):
        with pytest.raises(InvalidStatus) as info:
            connect(srv.stream_url).close()
        assert info.value.response.status_code == 429
    time.sleep(0.1)
    with authed(srv):
        pass  # the slot is free again once the first one closed


def test_reap_delay_keeps_the_slot_after_a_close(emulator):
    srv = emulator(stream_reap_delay=0.5)
    with authed(srv):
        pass
    time.sleep(0.05)
    with pytest.raises(InvalidStatus):
        connect(srv.stream_url).close()
    time.sleep(0.6)
    with authed(srv):
        pass


def test_drop_every_n_events_closes_the_connection(emulator):
    srv = emulator(stream_drop_every=2)
    with authed(srv) as ws:
        submit(srv)
        assert len(events(ws, 2)) == 2
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=2)


def test_drop_after_seconds_closes_the_connection(emulator):
    srv = emulator(stream_drop_after=0.2)
    with authed(srv) as ws, pytest.raises(ConnectionClosed):
        ws.recv(timeout=3)


def test_duplicate_fault_sends_every_event_twice(emulator):
    srv = emulator(stream_duplicate_rate=1.0)
    with authed(srv) as ws:
        submit(srv)
        got = events(ws, 6)
    assert [e["event"] for e in got] == ["pending_new", "pending_new", "new", "new", "fill", "fill"]


def test_reorder_fault_swaps_events_and_flushes_a_held_last_one(emulator):
    srv = emulator(stream_reorder_rate=1.0)
    with authed(srv) as ws:
        submit(srv)
        got = [e["event"] for e in events(ws, 3)]
    assert sorted(got) == ["fill", "new", "pending_new"]
    assert got != ["pending_new", "new", "fill"]


def test_control_drop_streams_closes_live_connections(emulator):
    srv = emulator()
    with authed(srv) as ws:
        assert srv.drop_streams() == 1
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=2)
