"""UserStreamTracker: Alpaca's ``trade_updates`` stream, kept alive and made lossless.

Alpaca's stream never replays what was missed while disconnected and allows one connection per
account, so this client:

* authenticates, waits for the authorization reply, listens, waits for the listening reply;
* pings on a heartbeat and reconnects a connected-but-silent socket (the watchdog);
* reconnects with exponential backoff and equal jitter; a 429 at the handshake (another holder,
  or a stale connection the server has not reaped yet) backs off from a longer floor;
* after every (re)connect fills the gap over REST: every order changed since the last event (and
  every order we still hold open) goes to the tracker as an order report, whose cumulative
  ``filled_qty`` turns into exactly the fills that were missed;
* logs and skips a malformed or unknown event; nothing in a frame can kill the loop;
* feeds every event to the OrderTracker (which journals it) and to subscribers.

websockets is imported only when the tracker runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mqd_cli.clock import Clock
from mqd_cli.model import OrderReport, TradeUpdate
from mqd_cli.wire import PayloadError, parse_trade_update

log = logging.getLogger("mqd.stream")

Subscriber = Callable[[TradeUpdate], None]


class HandshakeRejected(Exception):
    """The server refused the websocket upgrade with an HTTP status (429: connection limit)."""

    def __init__(self, status: int):
        super().__init__(f"websocket handshake refused with HTTP {status}")
        self.status = status


class AuthRejected(Exception):
    """The server answered the auth message with ``unauthorized``."""


@dataclass(frozen=True)
class StreamOptions:
    """Timing of the stream client (see ``[stream]`` in the config)."""

    heartbeat_interval: float = 10.0  # seconds between pings
    heartbeat_timeout: float = 10.0  # a pong later than this means a dead socket
    reply_timeout: float = 10.0  # wait for the authorization / listening replies
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    backoff_429: float = 15.0  # floor after a 429 handshake: the old connection may linger ~90 s
    gap_fill_margin: float = 2.0  # seconds before the last event to look back on gap fill
    auth_form: str = "auth"  # "auth" (current docs) or "authenticate" (legacy, alpaca-py)


@dataclass
class StreamHealth:
    connected: bool = False
    connected_since: datetime | None = None
    connects: int = 0
    reconnects: int = 0
    handshake_429s: int = 0
    last_event_at: datetime | None = None
    last_error: str = ""
    gap_fills: int = 0
    gap_fill_orders: int = 0
    gap_fill_fills: int = 0
    malformed: int = 0
    watchdog_trips: int = 0
    events: Counter = field(default_factory=Counter)
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))

    def latency_percentile(self, pct: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
        return ordered[index]

    def as_dict(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "connected_since": self.connected_since.isoformat() if self.connected_since else None,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "handshake_429s": self.handshake_429s,
            "last_event_at": self.last_event_at.isoformat() if self.last_event_at else None,
            "last_error": self.last_error,
            "gap_fills": self.gap_fills,
            "gap_fill_orders": self.gap_fill_orders,
            "gap_fill_fills": self.gap_fill_fills,
            "malformed": self.malformed,
            "watchdog_trips": self.watchdog_trips,
            "events": dict(self.events),
            "latency_p50_ms": self.latency_percentile(50),
            "latency_p99_ms": self.latency_percentile(99),
        }


def backoff_delay(
    failures: int, rng: random.Random, *, initial: float, cap: float, floor: float = 0.0
) -> float:
    """Exponential backoff with equal jitter: a delay in [c/2, c], c = min(cap, initial*2^n)."""
    ceiling = min(cap, max(initial, floor) * (2 ** max(0, failures - 1)))
    ceiling = max(ceiling, floor)
    return rng.uniform(ceiling / 2, ceiling) if ceiling > 0 else 0.0


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class UserStreamTracker:
    """One trade_updates connection, reconnected and gap-filled, feeding the tracker."""

    def __init__(
        self,
        url: str,
        key_id: str,
        secret_key: str,
        *,
        clock: Clock,
        tracker: Any = None,
        broker: Any = None,
        options: StreamOptions | None = None,
        seed: int | None = None,
        on_health: Callable[[StreamHealth], None] | None = None,
    ):
        self.url = url
        self._key_id = key_id
        self._secret_key = secret_key
        self.clock = clock
        self.tracker = tracker
        self.broker = broker
        self.options = options or StreamOptions()
        self.health = StreamHealth()
        self._rng = random.Random(seed)
        self._subscribers: list[Subscriber] = []
        self._stop = asyncio.Event()
        self._ws: Any = None
        self._on_health = on_health
        self._last_event_time: datetime | None = None

    def __repr__(self) -> str:  # never show the credentials
        return f"UserStreamTracker(url={self.url!r})"

    # -- subscribers ---------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    # -- life cycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().create_task(self._ws.close())

    async def run(self) -> None:
        """Connect and stay connected until ``stop()``; never raises on stream trouble."""
        failures = 0
        while not self._stop.is_set():
            floor = 0.0
            received = False
            try:
                received = await self._session()
            except HandshakeRejected as exc:
                self.health.last_error = str(exc)
                if exc.status == 429:
                    self.health.handshake_429s += 1
                    floor = self.options.backoff_429
                log.warning("trade_updates: %s", exc)
            except AuthRejected as exc:
                self.health.last_error = str(exc)
                log.error("trade_updates: %s (check the API keys)", exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # network errors, protocol errors, closed sockets
                self.health.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("trade_updates connection lost: %s", self.health.last_error)
            finally:
                self._set_connected(False)
            if self._stop.is_set():
                break
            # A connection that delivered events was healthy: start the backoff over.
            failures = 1 if received else failures + 1
            delay = backoff_delay(
                failures,
                self._rng,
                initial=self.options.backoff_initial,
                cap=max(self.options.backoff_max, floor),
                floor=floor,
            )
            self.health.reconnects += 1
            await self._sleep_or_stop(delay)

    async def _sleep_or_stop(self, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep_async(seconds))
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                task.cancel()

    def _set_connected(self, connected: bool) -> None:
        self.health.connected = connected
        self.health.connected_since = self.clock.now() if connected else None
        if self._on_health:
            self._on_health(self.health)

    # -- one connection ------------------------------------------------------------------------

    async def _session(self) -> bool:
        """One connection: handshake, gap fill, receive until it drops. True if events came."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        try:
            ws = await connect(
                self.url,
                ping_interval=None,  # our own heartbeat below measures the pong time
                open_timeout=self.options.reply_timeout,
                close_timeout=2,
                max_queue=1024,
                compression=None,
            )
        except InvalidStatus as exc:
            raise HandshakeRejected(exc.response.status_code) from None
        self._ws = ws
        received = False
        heartbeat: asyncio.Task | None = None
        try:
            await self._handshake(ws)
            self.health.connects += 1
            self._set_connected(True)
            await self.gap_fill()
            heartbeat = asyncio.create_task(self._heartbeat(ws))
            async for frame in ws:
                if self._handle_frame(frame):
                    received = True
                if self._stop.is_set():
                    break
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
                with contextlib.suppress(BaseException):
                    await heartbeat
            self._ws = None
            with contextlib.suppress(Exception):
                await ws.close()
        return received

    async def _handshake(self, ws: Any) -> None:
        if self.options.auth_form == "authenticate":
            auth = {
                "action": "authenticate",
                "data": {"key_id": self._key_id, "secret_key": self._secret_key},
            }
        else:
            auth = {"action": "auth", "key": self._key_id, "secret": self._secret_key}
        await ws.send(json.dumps(auth))
        reply = await self._reply(ws, "authorization")
        if (reply.get("data") or {}).get("status") != "authorized":
            raise AuthRejected("trade_updates authorization refused")
        await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        reply = await self._reply(ws, "listening")
        streams = (reply.get("data") or {}).get("streams") or []
        if "trade_updates" not in streams:
            raise AuthRejected(f"listen refused: streams {streams!r}")

    async def _reply(self, ws: Any, stream: str) -> dict:
        """Wait for the control reply on ``stream``; anything else before it is handled."""
        async with asyncio.timeout(self.options.reply_timeout):
            while True:
                message = _decode(await ws.recv())
                if message is None:
                    self.health.malformed += 1
                    continue
                if message.get("stream") == stream:
                    return message
                if message.get("stream") == "authorization":
                    raise AuthRejected("trade_updates authorization refused")
                self._dispatch_message(message)

    async def _heartbeat(self, ws: Any) -> None:
        """The watchdog: a pong that does not come back in time closes the socket."""
        while True:
            await self.clock.sleep_async(self.options.heartbeat_interval)
            pong = await ws.ping()
            try:
                async with asyncio.timeout(self.options.heartbeat_timeout):
                    await pong
            except TimeoutError:
                self.health.watchdog_trips += 1
                self.health.last_error = "watchdog: no pong, reconnecting"
                log.warning("trade_updates: %s", self.health.last_error)
                ws.transport.abort()
                return

    # -- frames --------------------------------------------------------------------------------

    def _handle_frame(self, frame: bytes | str) -> bool:
        message = _decode(frame)
        if message is None:
            self.health.malformed += 1
            log.warning("trade_updates: skipped a frame that is not a JSON object")
            return False
        return self._dispatch_message(message)

    def _dispatch_message(self, message: dict) -> bool:
        if message.get("stream") != "trade_updates":
            if message.get("action") == "error" or message.get("stream") not in (
                "authorization",
                "listening",
            ):
                log.warning("trade_updates: control message %s", _short(message))
            return False
        try:
            update = parse_trade_update(message.get("data"))
        except (PayloadError, TypeError, ValueError) as exc:
            self.health.malformed += 1
            log.warning("trade_updates: skipped a malformed event: %s", exc)
            return False
        self.deliver(update, source="stream")
        return True

    def deliver(self, update: TradeUpdate, *, source: str) -> None:
        """Apply one event to the tracker, then tell the subscribers; a failing one is logged."""
        self.health.events[update.event_raw or update.event.value] += 1
        if self.tracker is not None:
            self.tracker.apply(update, source=source)
        now = self.clock.now()
        self.health.latencies_ms.append((now - update.timestamp).total_seconds() * 1000)
        self.health.last_event_at = now
        if self._last_event_time is None or update.timestamp > self._last_event_time:
            self._last_event_time = update.timestamp
        for callback in list(self._subscribers):
            try:
                callback(update)
            except Exception:
                log.exception("trade_updates subscriber failed")

    # -- gap fill ------------------------------------------------------------------------------

    def _gap_start(self) -> datetime | None:
        candidates = []
        last = self._last_event_time
        if self.tracker is not None:
            tracked = self.tracker.last_event_time()
            if tracked is not None and (last is None or tracked > last):
                last = tracked
            for order in self.tracker.open_orders():
                submitted = getattr(order, "submitted_at", None) or getattr(
                    order, "created_at", None
                )
                if submitted is not None:
                    candidates.append(submitted)
        if last is not None:
            candidates.append(last)
        if not candidates:
            return None
        return min(candidates) - timedelta(seconds=self.options.gap_fill_margin)

    async def gap_fill(self) -> int:
        """Send every order changed during the gap to the tracker; returns new fills applied.

        Alpaca's ``after`` filters on submission time, so the window starts at the oldest order
        we still hold open (or the last event seen, if earlier) and the tracker turns each
        report's cumulative ``filled_qty`` into exactly the fills it has not counted.
        """
        if self.broker is None or self.tracker is None:
            return 0
        start = self._gap_start()
        if start is None:
            return 0
        reports: list[OrderReport] = await asyncio.to_thread(
            self.broker.list_orders, "all", after=start
        )
        fills = 0
        for report in sorted(reports, key=lambda r: r.updated_at or r.created_at):
            result = self.tracker.apply_order_report(report, source="gap_fill")
            new_fills = list(getattr(result, "new_fills", ()) or ())
            fills += len(new_fills)
        self.health.gap_fills += 1
        self.health.gap_fill_orders += len(reports)
        self.health.gap_fill_fills += fills
        if fills:
            log.info("trade_updates gap fill: %d orders, %d missed fills", len(reports), fills)
        return fills


def _decode(frame: bytes | str) -> dict | None:
    try:
        message = json.loads(frame)
    except (ValueError, TypeError):
        return None
    return message if isinstance(message, dict) else None


def _short(message: dict) -> str:
    text = json.dumps(message)
    return text if len(text) < 200 else text[:197] + "..."
