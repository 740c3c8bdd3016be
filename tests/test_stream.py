"""UserStreamTracker against a real websocket server on loopback.

The server here is a small scripted trade_updates peer (so each test can misbehave exactly as
needed: refuse with 429, go silent, send garbage); the end-to-end tests against `mqd sim serve`
live in test_stream_emulator.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time

import pytest
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from mqd_cli.clock import RealTimeClock
from mqd_cli.stream.client import StreamOptions, UserStreamTracker, backoff_delay

KEY, SECRET = "stream-key-id", "stream-secret-value"

ORDER = {
    "id": "61e69015-8549-4bfd-b9c3-01e75843f47d",
    "client_order_id": "mqd-test-1",
    "created_at": "2026-09-16T14:02:11.48712Z",
    "updated_at": "2026-09-16T14:02:11.503118224Z",
    "submitted_at": "2026-09-16T14:02:11.482913Z",
    "symbol": "AAPL",
    "qty": "100",
    "filled_qty": "0",
    "filled_avg_price": None,
    "order_class": "",
    "type": "limit",
    "side": "buy",
    "time_in_force": "day",
    "limit_price": "178.5",
    "status": "new",
    "extended_hours": False,
    "legs": None,
}


def event(name: str, n: int = 0, **extra) -> dict:
    order = dict(
        ORDER, status={"fill": "filled", "partial_fill": "partially_filled"}.get(name, name)
    )
    data = {"event": name, "timestamp": f"2026-09-16T14:02:{10 + n:02d}.000000Z", "order": order}
    data.update(extra)
    return {"stream": "trade_updates", "data": data}


class ScriptedServer:
    """A trade_updates server: authorizes, acknowledges listen, then plays ``script``.

    ``script`` is a list of frames (dicts, raw str/bytes) sent after the listening reply;
    ``refuse_first`` connections are refused with HTTP 429; ``silent`` makes the server stop
    answering pings after the script (its event loop blocks, as a hung peer would).
    """

    def __init__(self, script=(), *, refuse_first=0, silent=False, close_after_script=False):
        self.script = list(script)
        self.refuse_first = refuse_first
        self.silent = silent
        self.close_after_script = close_after_script
        self.connections = 0
        self.auth_messages: list[dict] = []
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _process_request(self, connection, request):
        self.connections += 1
        if self.connections <= self.refuse_first:
            body = b'{"code":42910000,"message":"rate limit exceeded"}'
            return Response(
                429, "Too Many Requests", Headers([("Content-Length", str(len(body)))]), body
            )
        return None

    async def _handler(self, ws):
        auth = json.loads(await ws.recv())
        self.auth_messages.append(auth)
        ok = (auth.get("key"), auth.get("secret")) == (KEY, SECRET) or (
            (auth.get("data") or {}).get("key_id") == KEY
            and (auth.get("data") or {}).get("secret_key") == SECRET
        )
        status = "authorized" if ok else "unauthorized"
        await ws.send(
            json.dumps(
                {"stream": "authorization", "data": {"status": status, "action": "authenticate"}}
            ).encode()
        )
        if not ok:
            await ws.close()
            return
        await ws.recv()  # listen
        await ws.send(
            json.dumps({"stream": "listening", "data": {"streams": ["trade_updates"]}}).encode()
        )
        for frame in self.script:
            await ws.send(frame if isinstance(frame, str | bytes) else json.dumps(frame).encode())
        if self.silent:
            time.sleep(1.5)  # block the loop: pings go unanswered
            self.silent = False
        if self.close_after_script:
            await ws.close()
            return
        await ws.wait_closed()

    def _run(self):
        async def main():
            self._loop = asyncio.get_running_loop()
            self._stop = self._loop.create_future()
            async with serve(
                self._handler, "127.0.0.1", 0, process_request=self._process_request
            ) as server:
                self.port = server.sockets[0].getsockname()[1]
                self._ready.set()
                await self._stop

        asyncio.run(main())

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"


FAST = StreamOptions(
    heartbeat_interval=0.2,
    heartbeat_timeout=0.3,
    reply_timeout=2,
    backoff_initial=0.01,
    backoff_max=0.05,
    backoff_429=0.1,
)


async def collect(server: ScriptedServer, want: int, *, options=FAST, timeout=5.0, secret=SECRET):
    stream = UserStreamTracker(
        server.url, KEY, secret, clock=RealTimeClock(), options=options, seed=1
    )
    got = []
    stream.subscribe(got.append)
    task = asyncio.create_task(stream.run())
    try:
        async with asyncio.timeout(timeout):
            while len(got) < want:
                await asyncio.sleep(0.01)
    finally:
        stream.stop()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return stream, got


@pytest.mark.parametrize("form", ["auth", "authenticate"])
async def test_both_auth_forms_authorize_and_events_arrive_in_order(form):
    script = [
        event("new", 0),
        event("partial_fill", 1, execution_id="e1", price="178.48", qty="40", position_qty="40"),
        event("fill", 2, execution_id="e2", price="178.5", qty="60", position_qty="100"),
    ]
    with ScriptedServer(script) as server:
        options = StreamOptions(**{**FAST.__dict__, "auth_form": form})
        stream, got = await collect(server, 3, options=options)
    assert [u.event.value for u in got] == ["new", "partial_fill", "fill"]
    assert got[2].fill().execution_id == "e2"
    assert ("action" in server.auth_messages[0]) and server.auth_messages[0]["action"] == form
    assert stream.health.events == {"new": 1, "partial_fill": 1, "fill": 1}


async def test_malformed_frames_and_unknown_events_are_skipped_not_fatal():
    script = [
        b"\xff\xfe not json",
        "[1, 2, 3]",
        {"stream": "trade_updates", "data": {"event": "fill"}},
        event("fill", 1, price="1", qty="1", position_qty="1"),  # no execution_id: still an event
        event("brand_new_event", 2),
        event("new", 3),
    ]
    with ScriptedServer(script) as server:
        stream, got = await collect(server, 3)
    assert [u.event_raw for u in got] == ["fill", "brand_new_event", "new"]
    assert got[0].execution_id is None
    assert got[1].event.value == "unknown"
    assert stream.health.malformed == 3
    assert stream.health.connects == 1


async def test_handshake_429_is_retried_with_the_longer_backoff_floor():
    with ScriptedServer([event("new", 0)], refuse_first=2) as server:
        started = time.perf_counter()
        stream, got = await collect(server, 1)
        elapsed = time.perf_counter() - started
    assert stream.health.handshake_429s == 2
    assert len(got) == 1
    # two refusals, each followed by a delay in [floor/2, floor*2]: never a tight loop
    assert elapsed >= 0.1


async def test_silent_socket_trips_the_watchdog_and_reconnects():
    with ScriptedServer([event("new", 0)], silent=True) as server:
        # the first connection goes silent after one event; only the watchdog can notice
        stream = UserStreamTracker(
            server.url, KEY, SECRET, clock=RealTimeClock(), options=FAST, seed=1
        )
        got = []
        stream.subscribe(got.append)
        task = asyncio.create_task(stream.run())
        async with asyncio.timeout(8):
            while stream.health.duplicates < 1:
                await asyncio.sleep(0.01)
        stream.stop()
        await task
    assert stream.health.watchdog_trips >= 1
    assert stream.health.connects >= 2 and stream.health.reconnects >= 1
    # the scripted server replays its event on the new connection: dropped as a duplicate
    assert [u.event.value for u in got] == ["new"]


async def test_stop_ends_run_while_the_socket_is_quiet():
    with ScriptedServer([event("new", 0)]) as server:
        stream = UserStreamTracker(
            server.url, KEY, SECRET, clock=RealTimeClock(), options=FAST, seed=1
        )
        task = asyncio.create_task(stream.run())
        async with asyncio.timeout(5):
            while not stream.health.connected:
                await asyncio.sleep(0.01)
        stream.stop()
        async with asyncio.timeout(2):
            await task
    assert stream.health.connected is False


async def test_wrong_secret_is_refused_and_never_logged(caplog):
    with ScriptedServer([]) as server:
        stream = UserStreamTracker(
            server.url, KEY, "wrong-secret-zzz", clock=RealTimeClock(), options=FAST, seed=1
        )
        task = asyncio.create_task(stream.run())
        async with asyncio.timeout(5):
            while server.connections < 2:
                await asyncio.sleep(0.01)
        stream.stop()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert stream.health.connects == 0
    assert "authorization refused" in stream.health.last_error
    assert "wrong-secret-zzz" not in caplog.text and "wrong-secret-zzz" not in repr(stream)


def test_backoff_grows_exponentially_within_equal_jitter_bounds():
    rng = random.Random(7)
    for failures in range(1, 8):
        cap = min(30.0, 1.0 * 2 ** (failures - 1))
        for _ in range(50):
            delay = backoff_delay(failures, rng, initial=1.0, cap=30.0)
            assert cap / 2 <= delay <= cap


def test_backoff_after_429_never_drops_below_the_floor():
    rng = random.Random(3)
    for failures in range(1, 6):
        delay = backoff_delay(failures, rng, initial=1.0, cap=60.0, floor=15.0)
        assert delay >= 15.0


# -- bursts: frames websockets has already read --------------------------------------------------


class BatchingTracker:
    """A tracker with its own ``batch()`` (as OrderTracker has): records begin/apply/commit."""

    def __init__(self, log: list):
        self.log = log

    def apply(self, update, *, source="stream"):
        self.log.append(("apply", update.event_raw))

    @contextlib.contextmanager
    def batch(self):
        self.log.append(("begin",))
        yield
        self.log.append(("commit",))


class ForwardingTracker:
    """A wrapper that reacts to each apply and only forwards the rest (the run loop's tap)."""

    def __init__(self, inner):
        self._inner = inner

    def apply(self, update, *, source="stream"):
        return self._inner.apply(update, source=source)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _burst() -> list:
    frames = [
        event("new", 0),
        event("partial_fill", 1, execution_id="e1", price="178.48", qty="40", position_qty="40"),
        event("partial_fill", 1, execution_id="e1", price="178.48", qty="40", position_qty="40"),
        event("fill", 2, execution_id="e2", price="178.5", qty="60", position_qty="100"),
    ]
    return (
        [json.dumps(f).encode() for f in frames[:2]]
        + [b"not json"]
        + [json.dumps(f) for f in frames[2:]]
    )


def test_a_burst_is_applied_in_one_transaction_and_subscribers_hear_after_the_commit():
    log: list = []
    stream = UserStreamTracker("ws://unused", KEY, SECRET, clock=RealTimeClock())
    stream.tracker = BatchingTracker(log)
    stream.subscribe(lambda u: log.append(("notify", u.event_raw)))
    assert stream._handle_frames(_burst()) is True
    assert log == [
        ("begin",),
        ("apply", "new"),
        ("apply", "partial_fill"),
        ("apply", "fill"),
        ("commit",),
        ("notify", "new"),
        ("notify", "partial_fill"),
        ("notify", "fill"),
    ]
    assert stream.health.malformed == 1 and stream.health.duplicates == 1
    assert stream.health.events == {"new": 1, "partial_fill": 1, "fill": 1}


def test_a_tracker_wrapper_without_its_own_batch_gets_each_event_applied_then_notified():
    log: list = []
    stream = UserStreamTracker("ws://unused", KEY, SECRET, clock=RealTimeClock())
    stream.tracker = ForwardingTracker(BatchingTracker(log))
    stream.subscribe(lambda u: log.append(("notify", u.event_raw)))
    stream._handle_frames(_burst())
    assert log == [
        ("apply", "new"),
        ("notify", "new"),
        ("apply", "partial_fill"),
        ("notify", "partial_fill"),
        ("apply", "fill"),
        ("notify", "fill"),
    ]


async def test_a_burst_sent_at_once_arrives_complete_and_in_order():
    script = [event("new", 0)] + [
        event("partial_fill", 1 + i, execution_id=f"e{i}", price="1", qty="1", position_qty="1")
        for i in range(40)
    ]
    with ScriptedServer(script) as server:
        stream, got = await collect(server, 41)
    assert [u.execution_id for u in got] == [None] + [f"e{i}" for i in range(40)]
