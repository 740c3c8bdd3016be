"""UserStreamTracker: Alpaca's ``trade_updates`` stream, kept alive and made lossless.

Alpaca's stream never replays what was missed while disconnected and allows one connection per
account, so this client:

* authenticates, waits for the authorization reply, listens, waits for the listening reply;
* pings on a heartbeat and reconnects a connected-but-silent socket (the watchdog);
* reconnects at once after a healthy connection, then with exponential backoff and equal
  jitter; a 429 at the handshake (another holder, or a stale connection the server has not
  reaped yet) waits at least ``backoff_429``;
* after every (re)connect fills the gap over REST: the orders submitted since the last event
  seen, the ones still open, and a targeted lookup of each order we hold open that is in
  neither; each goes to the tracker as an order report whose cumulative ``filled_qty`` turns
  into exactly the fills that were missed (a failed gap fill is retried, never dropped);
* drops exact duplicate frames, logs and skips a malformed or unknown event; nothing in a
  frame can kill the loop;
* feeds every event to the OrderTracker (which journals it) and to subscribers.

The lease (``StreamLease``, ``run_leased``, in ``stream_lease.py`` and re-exported here) records
in the store which process holds the account's one connection. websockets is imported only when
the tracker runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from mqd_cli.clock import Clock
from mqd_cli.model import OrderReport, OrderStatus, TradeEvent, TradeUpdate
from mqd_cli.wire.parse import PayloadError, parse_trade_update

log = logging.getLogger("mqd.stream")
# websockets logs every frame at DEBUG, the auth message (with the secret) included: never below
# INFO, whatever the root level is.
_WS_LOG = logging.getLogger("mqd.stream.websocket")
_WS_LOG.setLevel(logging.INFO)

Subscriber = Callable[[TradeUpdate], None]

# An event timestamp further than this from our clock is not a latency (simulated time, skew).
_LATENCY_SANE = timedelta(minutes=10)
_DEDUP_WINDOW = 4096  # recent frames remembered to drop exact duplicates
_DUPLICATE: Any = object()  # what _parse_message returns for an exact repeat

# What a REST status means as an event, for subscribers told about a gap-filled change.
_STATUS_EVENT = {
    OrderStatus.FILLED: TradeEvent.FILL,
    OrderStatus.PARTIALLY_FILLED: TradeEvent.PARTIAL_FILL,
    OrderStatus.NEW: TradeEvent.NEW,
    OrderStatus.CANCELED: TradeEvent.CANCELED,
    OrderStatus.EXPIRED: TradeEvent.EXPIRED,
    OrderStatus.REJECTED: TradeEvent.REJECTED,
    OrderStatus.REPLACED: TradeEvent.REPLACED,
    OrderStatus.DONE_FOR_DAY: TradeEvent.DONE_FOR_DAY,
    OrderStatus.ACCEPTED: TradeEvent.ACCEPTED,
    OrderStatus.PENDING_NEW: TradeEvent.PENDING_NEW,
    OrderStatus.PENDING_CANCEL: TradeEvent.PENDING_CANCEL,
    OrderStatus.PENDING_REPLACE: TradeEvent.PENDING_REPLACE,
}


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

    @classmethod
    def from_settings(cls, s: Any) -> StreamOptions:
        """From ``[stream]`` (a ``StreamSettings``)."""
        return cls(
            heartbeat_interval=s.heartbeat_interval.total_seconds(),
            heartbeat_timeout=s.heartbeat_timeout.total_seconds(),
            reply_timeout=s.reply_timeout.total_seconds(),
            backoff_initial=s.backoff_initial.total_seconds(),
            backoff_max=s.backoff_max.total_seconds(),
            backoff_429=s.backoff_429.total_seconds(),
            gap_fill_margin=s.gap_fill_margin.total_seconds(),
        )


@dataclass
class StreamHealth:
    connected: bool = False
    connected_since: datetime | None = None
    connects: int = 0
    reconnects: int = 0  # connects after the first one
    failed_attempts: int = 0  # connections that never completed the handshake
    handshake_429s: int = 0
    auth_failures: int = 0
    last_event_at: datetime | None = None
    last_error: str = ""
    gap_fills: int = 0
    gap_fill_orders: int = 0
    gap_fill_fills: int = 0
    gap_fill_errors: int = 0
    gap_fill_activities: int = 0  # FILL activities that split gap-filled quantity into executions
    gap_fill_pending: bool = False
    malformed: int = 0
    duplicates: int = 0
    watchdog_trips: int = 0
    last_resume_ms: float | None = None  # from losing the connection to connected + gap-filled
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
            "failed_attempts": self.failed_attempts,
            "handshake_429s": self.handshake_429s,
            "auth_failures": self.auth_failures,
            "last_event_at": self.last_event_at.isoformat() if self.last_event_at else None,
            "last_error": self.last_error,
            "gap_fills": self.gap_fills,
            "gap_fill_orders": self.gap_fill_orders,
            "gap_fill_fills": self.gap_fill_fills,
            "gap_fill_errors": self.gap_fill_errors,
            "gap_fill_activities": self.gap_fill_activities,
            "gap_fill_pending": self.gap_fill_pending,
            "malformed": self.malformed,
            "duplicates": self.duplicates,
            "watchdog_trips": self.watchdog_trips,
            "last_resume_ms": self.last_resume_ms,
            "events": dict(self.events),
            "latency_p50_ms": self.latency_percentile(50),
            "latency_p99_ms": self.latency_percentile(99),
        }


def backoff_delay(
    failures: int, rng: random.Random, *, initial: float, cap: float, floor: float = 0.0
) -> float:
    """Exponential backoff with equal jitter: a delay in [c/2, c], c = min(cap, initial*2^(n-1)).

    With a ``floor`` (after a 429) c is at least twice the floor, so the delay never drops
    below it and concurrent clients still spread out.
    """
    ceiling = min(cap, initial * (2 ** max(0, failures - 1)))
    if floor > 0:
        ceiling = max(ceiling, 2 * floor)
    return rng.uniform(ceiling / 2, ceiling) if ceiling > 0 else 0.0


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
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws: Any = None
        self._on_health = on_health
        self._last_event_time: datetime | None = None
        self._gap_start_pending: datetime | None = None
        self._down_since: float | None = None
        self._received = False  # the current connection delivered events
        self._seen: set[tuple] = set()
        self._seen_order: deque[tuple] = deque()

    def __repr__(self) -> str:  # never show the credentials
        return f"UserStreamTracker(url={self.url!r})"

    # -- subscribers ---------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(update)`` after each event reached the tracker; returns unsubscribe.

        Gap-filled changes arrive as updates built from the REST status (no execution id);
        take quantities from the tracker, not by summing updates.
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    # -- life cycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop ``run()``; safe from any thread and before ``run()`` started."""
        self._stop_requested = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._stop_now()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stop_now)

    def _stop_now(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().create_task(self._ws.close())

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    async def run(self) -> None:
        """Connect and stay connected until ``stop()``; never raises on stream trouble."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested:
            return
        failures = 0
        while not self._stop.is_set():
            floor = 0.0
            self._received = False
            started = self.clock.monotonic()
            try:
                await self._session_until_stopped()
            except HandshakeRejected as exc:
                self.health.last_error = str(exc)
                self.health.failed_attempts += 1
                if exc.status == 429:
                    self.health.handshake_429s += 1
                    floor = self.options.backoff_429
                log.warning("trade_updates: %s", exc)
            except AuthRejected as exc:
                self.health.last_error = str(exc)
                self.health.auth_failures += 1
                self.health.failed_attempts += 1
                log.error("trade_updates: %s (check the API keys)", exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # network errors, protocol errors, closed sockets
                name = type(exc).__name__
                self.health.last_error = f"{name}: {exc}" if str(exc) else name
                log.warning("trade_updates connection lost: %s", self.health.last_error)
            finally:
                if self.health.connected:
                    self._down_since = self.clock.monotonic()
                    self._set_connected(False)
            if self._stop.is_set():
                break
            # A connection that delivered events (or lived long) was healthy: reconnect at once;
            # otherwise back off, longer and longer.
            # (a drop ends a session with an exception: what it received is kept aside)
            lived = self.clock.monotonic() - started
            if self._received or lived >= max(self.options.backoff_max, 1.0):
                failures = 0
            else:
                failures += 1
            if failures == 0 and not floor:
                delay = 0.0
            else:
                delay = backoff_delay(
                    max(failures, 1),
                    self._rng,
                    initial=self.options.backoff_initial,
                    cap=max(self.options.backoff_max, 2 * floor),
                    floor=floor,
                )
            if delay:
                await self._sleep_or_stop(delay)

    async def _session_until_stopped(self) -> bool:
        """``_session()``, cancelled (socket closed) as soon as ``stop()`` is called."""
        return bool(await self._until_stopped(self._session()))

    async def _sleep_or_stop(self, seconds: float) -> None:
        await self._until_stopped(self.clock.sleep_async(seconds))

    async def _until_stopped(self, work: Coroutine[Any, Any, Any]) -> Any:
        """``work``'s result, or None when ``stop()`` came first (``work`` is then cancelled);
        an exception of ``work`` propagates."""
        assert self._stop is not None
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return None if task.cancelled() else task.result()

    def _set_connected(self, connected: bool) -> None:
        self.health.connected = connected
        self.health.connected_since = self.clock.now() if connected else None
        if self._on_health:
            try:
                self._on_health(self.health)
            except Exception:
                log.exception("trade_updates health callback failed")

    # -- one connection ------------------------------------------------------------------------

    async def _session(self) -> bool:
        """One connection: handshake, gap fill, receive until it drops. True if events came."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosedOK, InvalidStatus

        try:
            ws = await connect(
                self.url,
                ping_interval=None,  # our own heartbeat below measures the pong time
                open_timeout=self.options.reply_timeout,
                close_timeout=2,
                max_queue=1024,
                compression=None,
                logger=_WS_LOG,
            )
        except InvalidStatus as exc:
            raise HandshakeRejected(exc.response.status_code) from None
        self._ws = ws
        received = False
        tasks: list[asyncio.Task] = []
        try:
            # The window starts before this connection's first event can move it forward.
            gap_start = self._gap_start()
            await self._handshake(ws)
            self.health.connects += 1
            if self.health.connects > 1:
                self.health.reconnects += 1
            self._set_connected(True)
            log.debug("trade_updates connected to %s; gap fill from %s", self.url, gap_start)
            if not await self._try_gap_fill(gap_start):
                tasks.append(asyncio.create_task(self._retry_gap_fill(gap_start)))
            elif self._down_since is not None:
                resumed = self.clock.monotonic() - self._down_since
                self.health.last_resume_ms = resumed * 1000
                self._down_since = None
            tasks.append(asyncio.create_task(self._heartbeat(ws)))
            with contextlib.suppress(ConnectionClosedOK):  # a clean close ends the session
                while self._stop is None or not self._stop.is_set():
                    frames = [await ws.recv()]
                    try:
                        # Frames websockets has already read need no wait: take the burst and
                        # apply it in one tracker transaction. (A close here keeps what came.)
                        while _buffered(ws):
                            frames.append(await ws.recv())
                    finally:
                        if self._handle_frames(frames):
                            received = self._received = True
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
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
        return self._handle_frames([frame])

    def _handle_frames(self, frames: list[bytes | str]) -> bool:
        """Parse a burst of frames and deliver its events in one tracker transaction; True if
        any was a trade update (duplicates included)."""
        updates: list[TradeUpdate] = []
        received = False
        for frame in frames:
            message = _decode(frame)
            if message is None:
                self.health.malformed += 1
                log.warning("trade_updates: skipped a frame that is not a JSON object")
                continue
            update = self._parse_message(message)
            if update is not None:
                received = True
                if update is not _DUPLICATE:
                    updates.append(update)
        if updates:
            self.deliver_many(updates, source="stream")
        return received

    def _dispatch_message(self, message: dict) -> bool:
        update = self._parse_message(message)
        if update is not None and update is not _DUPLICATE:
            self.deliver(update, source="stream")
        return update is not None

    def _parse_message(self, message: dict) -> TradeUpdate | None:
        """The event in ``message``; ``_DUPLICATE`` for a repeat, None for anything else."""
        if message.get("stream") != "trade_updates":
            if message.get("action") == "error" or message.get("stream") not in (
                "authorization",
                "listening",
            ):
                log.warning("trade_updates: control message %s", _short(message))
            return None
        try:
            update = parse_trade_update(message.get("data"))
        except (PayloadError, TypeError, ValueError) as exc:
            self.health.malformed += 1
            log.warning("trade_updates: skipped a malformed event: %s", exc)
            return None
        if self._is_duplicate(update):
            self.health.duplicates += 1
            return _DUPLICATE
        return update

    def _is_duplicate(self, update: TradeUpdate) -> bool:
        """An exact repeat of a recent event (the same order, event, execution, time, qty)."""
        key = (
            update.order.id,
            update.event_raw,
            update.execution_id,
            update.timestamp,
            update.order.filled_qty,
        )
        if key in self._seen:
            return True
        self._seen.add(key)
        self._seen_order.append(key)
        if len(self._seen_order) > _DEDUP_WINDOW:
            self._seen.discard(self._seen_order.popleft())
        return False

    def deliver(self, update: TradeUpdate, *, source: str) -> None:
        """Apply one event to the tracker, then tell the subscribers; a failing one is logged."""
        self.deliver_many([update], source=source)

    def deliver_many(self, updates: list[TradeUpdate], *, source: str) -> None:
        """Apply events in order, then tell the subscribers of each.

        Several events go to the tracker in one transaction when it can batch them (each
        journaled before its state, all committed together, subscribers told after the
        commit); otherwise one by one. Latency is stamped after the apply (or the batch's
        commit: an event waits for its whole batch).
        """
        batch = _own_batch(self.tracker) if len(updates) > 1 else None
        if batch is None:
            for update in updates:
                self._apply(update, source)
                self._applied([update])
            return
        with batch():
            for update in updates:
                self._apply(update, source)
        self._applied(updates)

    def _apply(self, update: TradeUpdate, source: str) -> None:
        self.health.events[update.event_raw or update.event.value] += 1
        if self.tracker is not None:
            self.tracker.apply(update, source=source)

    def _applied(self, updates: list[TradeUpdate]) -> None:
        now = self.clock.now()
        latencies = self.health.latencies_ms
        for update in updates:
            age = now - update.timestamp
            if -_LATENCY_SANE < age < _LATENCY_SANE:
                latencies.append(age.total_seconds() * 1000)
            if self._last_event_time is None or update.timestamp > self._last_event_time:
                self._last_event_time = update.timestamp
        self.health.last_event_at = now
        for update in updates:
            self._notify(update)

    def _notify(self, update: TradeUpdate) -> None:
        for callback in list(self._subscribers):
            try:
                callback(update)
            except Exception:
                log.exception("trade_updates subscriber failed")

    # -- gap fill ------------------------------------------------------------------------------

    def _gap_start(self) -> datetime | None:
        """Where the REST window starts: the last event seen (ours or the tracker's) less the
        margin; a window not yet filled by a failed gap fill is kept."""
        last = self._last_event_time
        if self.tracker is not None:
            tracked = self.tracker.last_event_time()
            if tracked is not None and (last is None or tracked > last):
                last = tracked
        start = None if last is None else last - timedelta(seconds=self.options.gap_fill_margin)
        pending = self._gap_start_pending
        if pending is not None and (start is None or pending < start):
            start = pending
        return start

    async def _try_gap_fill(self, start: datetime | None) -> bool:
        try:
            await self.gap_fill(start)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.health.gap_fill_errors += 1
            self.health.gap_fill_pending = True
            if start is not None:
                self._gap_start_pending = start
            self.health.last_error = f"gap fill failed: {type(exc).__name__}: {exc}"
            log.warning("trade_updates: %s (retrying)", self.health.last_error)
            return False
        self.health.gap_fill_pending = False
        self._gap_start_pending = None
        return True

    async def _retry_gap_fill(self, start: datetime | None) -> None:
        failures = 1
        while True:
            delay = backoff_delay(
                failures,
                self._rng,
                initial=self.options.backoff_initial,
                cap=self.options.backoff_max,
            )
            await self.clock.sleep_async(delay)
            if await self._try_gap_fill(start):
                return
            failures += 1

    async def _executions(
        self, reports: Iterable[OrderReport], start: datetime | None
    ) -> dict[str, list[Any]]:
        """The FILL activities of the orders whose filled quantity rose during the gap, by
        broker order id: each execution's own quantity, price and time, which an order snapshot
        (cumulative quantity and average price) does not carry. Without them (a broker with no
        activities, or an error) the gap fill uses the snapshots alone."""
        rising = [r for r in reports if _rose(self.tracker, r)]
        fetch = getattr(self.broker, "fill_activities", None)
        if not rising or fetch is None:
            return {}
        since = min(
            [r.submitted_at or r.created_at for r in rising] + ([start] if start else [])
        ) - timedelta(seconds=1)
        try:
            activities = await asyncio.to_thread(fetch, since)
        except Exception as exc:  # the snapshots are enough: never fail the gap fill on this
            log.warning("trade_updates gap fill: FILL activities unavailable (%s)", exc)
            return {}
        wanted = {r.id for r in rising}
        out: dict[str, list[Any]] = {}
        for activity in activities:
            if activity.order_id in wanted:
                out.setdefault(activity.order_id, []).append(activity)
        self.health.gap_fill_activities += sum(len(v) for v in out.values())
        return out

    async def gap_fill(self, start: datetime | None = None) -> int:
        """Send every order that may have changed during the gap to the tracker.

        Alpaca's ``after`` filters on submission time, so three sources together cover the
        gap: orders submitted since ``start`` (the last event seen, less the margin), the
        orders open now, and a targeted lookup of every order we hold open that is in neither
        (it closed while we were away). Reports that match what the tracker already holds are
        skipped; the tracker turns each other report's cumulative ``filled_qty`` into exactly
        the fills it has not counted. Returns the number of new fills.
        """
        if self.broker is None or self.tracker is None:
            return 0
        if start is None:
            start = self._gap_start()
        tracked_open = list(self.tracker.open_orders())
        if start is None and not tracked_open:
            return 0
        broker = self.broker
        reports: dict[str, OrderReport] = {}
        if start is not None:
            for report in await asyncio.to_thread(broker.list_orders, "all", after=start):
                reports[report.id] = report
        missing = [o for o in tracked_open if not o.broker_id or o.broker_id not in reports]
        if missing:
            for report in await asyncio.to_thread(broker.list_orders, "open"):
                reports.setdefault(report.id, report)
            for order in missing:
                if order.broker_id in reports:
                    continue
                report = await asyncio.to_thread(_lookup, broker, order)
                if report is not None:
                    reports[report.id] = report
        executions = await self._executions(reports.values(), start)
        fills = changed = 0
        for report in sorted(reports.values(), key=_report_order):
            known = self.tracker.order(report.client_order_id)
            if (
                known is not None
                and known.status is report.status
                and known.filled_qty == report.filled_qty
            ):
                continue
            result = self.tracker.apply_order_report(
                report, source="gap_fill", executions=executions.get(report.id, ())
            )
            new_fills = tuple(getattr(result, "new_fills", ()) or ())
            fills += len(new_fills)
            if getattr(result, "changed", True):
                changed += 1
                self._notify(_as_update(report, new_fills))
            stamp = report.updated_at or report.created_at
            if self._last_event_time is None or stamp > self._last_event_time:
                self._last_event_time = stamp
        self.health.gap_fills += 1
        self.health.gap_fill_orders += changed
        self.health.gap_fill_fills += fills
        if changed:
            log.info("trade_updates gap fill: %d orders changed, %d missed fills", changed, fills)
        return fills


def _rose(tracker: Any, report: OrderReport) -> bool:
    known = tracker.order(report.client_order_id)
    return report.filled_qty > (known.filled_qty if known is not None else Decimal(0))


def _lookup(broker: Any, order: Any) -> OrderReport | None:
    from mqd_cli.brokers.errors import NotFound

    try:
        if order.broker_id:
            return broker.get_order(order.broker_id)
        return broker.get_order_by_client_id(order.client_order_id)
    except NotFound:
        return None  # never reached the broker: reconcile resolves it


def _report_order(report: OrderReport) -> tuple:
    return (report.submitted_at or report.created_at, report.updated_at or report.created_at)


def _as_update(report: OrderReport, new_fills: tuple) -> TradeUpdate:
    qty = sum((f.qty for f in new_fills), Decimal(0)) if new_fills else None
    return TradeUpdate(
        event=_STATUS_EVENT.get(report.status, TradeEvent.UNKNOWN),
        event_raw=report.status.value,
        timestamp=report.updated_at or report.created_at,
        order=report,
        qty=qty,
        price=report.filled_avg_price if new_fills else None,
    )


def _own_batch(tracker: Any) -> Callable[[], Any] | None:
    """The tracker's ``batch()`` when its class defines one (an ``OrderTracker``), else None.

    A wrapper that only forwards ``batch()`` (the run loop's tap mirrors each ``apply()`` into
    the engine, which expects a closed trade to be reported inside the apply that closed it,
    while a batch reports it at the commit) gets its events one by one.
    """
    if tracker is None or not callable(getattr(type(tracker), "batch", None)):
        return None
    return tracker.batch


def _buffered(ws: Any) -> bool:
    """Whether websockets holds a received frame that ``recv()`` returns without waiting."""
    messages = getattr(ws, "recv_messages", None)
    return bool(len(getattr(messages, "frames", ()) or ()))


def _decode(frame: bytes | str) -> dict | None:
    try:
        message = json.loads(frame)
    except (ValueError, TypeError):
        return None
    return message if isinstance(message, dict) else None


def _short(message: dict) -> str:
    text = json.dumps(message)
    return text if len(text) < 200 else text[:197] + "..."
