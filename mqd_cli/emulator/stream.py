"""The emulator's ``/stream`` websocket: Alpaca's trade_updates, one connection per key.

No welcome message, both auth forms, the listen reply, JSON in binary frames; a second
connection gets HTTP 429 at the handshake. ``Faults`` drop, duplicate and reorder events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from typing import TYPE_CHECKING, Any

from mqd_cli.wire import format as wire_format

if TYPE_CHECKING:
    from mqd_cli.clock import RealTimeClock
    from mqd_cli.emulator.settings import EmulatorConfig, Faults

log = logging.getLogger("mqd.simserver")


class StreamConnection:
    """One client of ``/stream``: its queue of events and how far its handshake has come."""

    def __init__(self, websocket: Any):
        self.ws = websocket
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()  # encoded trade_updates frames
        self.authorized = False
        self.listening = False
        self.sent = 0
        self.closed = False

    async def send(self, message: dict) -> None:
        await self.ws.send_bytes(_encode(message))

    async def close(self, code: int = 1011) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                await self.ws.close(code)


def _encode(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def _stream_error(message: str) -> dict:
    return {"stream": "error", "data": {"error_message": message}}


def _authorization(status: str, action: str) -> dict:
    return {"stream": "authorization", "data": {"status": status, "action": action}}


class TradeUpdatesStream:
    """The stream handlers of ``Emulator`` (a part of it: they use its config, faults and rng)."""

    config: EmulatorConfig
    faults: Faults
    rng: random.Random
    real: RealTimeClock
    streams: set[StreamConnection]
    _slot_free_at: float
    events_emitted: int

    def _on_event(self, update: Any) -> None:
        # Runs inside the REST handler or market step that made the event: encode it once for
        # every listener (and not at all without one), then let each pump send it.
        self.events_emitted += 1
        listeners = [c for c in self.streams if c.listening and not c.closed]
        if not listeners:
            return
        frame = _encode(wire_format.trade_update_to_wire(update))
        for conn in listeners:
            conn.queue.put_nowait(frame)

    async def close_streams(self, code: int = 1011) -> int:
        """Close every stream connection; returns how many there were."""
        conns = list(self.streams)
        for conn in conns:
            await conn.close(code)
        return len(conns)

    async def stream(self, websocket: Any) -> None:
        now = self.real.monotonic()
        if self.streams or now < self._slot_free_at:
            from starlette.responses import Response

            body = json.dumps(
                wire_format.error_body(42910000, "connection limit exceeded")
            ).encode()
            await websocket.send_denial_response(Response(body, 429, media_type="application/json"))
            return
        conn = StreamConnection(websocket)
        self.streams.add(conn)  # taken before the first await: no race for the one slot
        pump: asyncio.Task | None = None
        timer: asyncio.Task | None = None
        try:
            await websocket.accept()
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                raw = (
                    message.get("text") if message.get("text") is not None else message.get("bytes")
                )
                try:
                    data = json.loads(raw or b"")
                except (ValueError, UnicodeDecodeError):
                    data = None
                if not isinstance(data, dict):
                    await conn.send(_stream_error("invalid syntax"))
                    continue
                action = data.get("action")
                if action in ("auth", "authenticate"):
                    conn.authorized = self._stream_auth(data)
                    status = "authorized" if conn.authorized else "unauthorized"
                    await conn.send(_authorization(status, "authenticate"))
                    if conn.authorized and pump is None:
                        pump = asyncio.create_task(self._pump(conn))
                        if self.faults.stream_drop_after:
                            timer = asyncio.create_task(
                                self._drop_later(conn, self.faults.stream_drop_after)
                            )
                elif action == "listen":
                    if not conn.authorized:
                        await conn.send(_authorization("unauthorized", "listen"))
                        continue
                    streams = (
                        (data.get("data") or {}).get("streams")
                        if isinstance(data.get("data"), dict)
                        else None
                    )
                    wanted = (
                        [s for s in streams or [] if s == "trade_updates"]
                        if isinstance(streams, list)
                        else []
                    )
                    conn.listening = bool(wanted)
                    await conn.send({"stream": "listening", "data": {"streams": wanted}})
                else:
                    await conn.send(_stream_error(f"invalid action: {action}"))
        except Exception as exc:  # a client vanishing mid-send is normal
            log.debug("stream connection ended: %r", exc)
        finally:
            conn.closed = True
            for task in (pump, timer):
                if task is not None:
                    task.cancel()
            self.streams.discard(conn)
            self._slot_free_at = self.real.monotonic() + self.faults.stream_reap_delay

    def _stream_auth(self, data: dict) -> bool:
        nested = data.get("data")
        inner = nested if isinstance(nested, dict) else {}
        key = data.get("key", inner.get("key_id"))
        secret = data.get("secret", inner.get("secret_key"))
        return (key, secret) == (self.config.key_id, self.config.secret_key)

    async def _drop_later(self, conn: StreamConnection, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await conn.close()

    async def _pump(self, conn: StreamConnection) -> None:
        """Send queued events, applying the duplicate / reorder / drop-every faults.

        A burst already queued is written back to back (the sends do not suspend while the
        transport is writable), so one wake-up of the pump serves every event of a REST call
        or market step.
        """
        held: bytes | None = None
        queue = conn.queue
        try:
            while not conn.closed:
                try:
                    first = await (asyncio.wait_for(queue.get(), 0.2) if held else queue.get())
                except TimeoutError:
                    batch, held = [held], None  # nothing came after the held event: flush it
                else:
                    burst = [first]
                    while not queue.empty():
                        burst.append(queue.get_nowait())
                    batch, held = self._with_faults(burst, held)
                for frame in batch:
                    await conn.ws.send_bytes(frame)
                    conn.sent += 1
                    every = self.faults.stream_drop_every
                    if every and conn.sent % every == 0:
                        await conn.close()
                        return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("stream pump ended: %r", exc)
            await conn.close()

    def _with_faults(self, burst: list[bytes], held: bytes | None) -> tuple[list, bytes | None]:
        """The frames to send for ``burst`` (duplicates, reorders), and the one held back."""
        faults = self.faults
        batch: list[bytes] = []
        for frame in burst:
            if held is not None:
                batch += [frame, held]  # the held event goes out after the next one
                held = None
            elif faults.stream_reorder_rate and self.rng.random() < faults.stream_reorder_rate:
                held = frame
                continue
            else:
                batch.append(frame)
            if faults.stream_duplicate_rate and self.rng.random() < faults.stream_duplicate_rate:
                batch.append(frame)
        return batch, held
