"""The stream lease: which process holds the account's one trade_updates connection.

Alpaca allows one trade_updates connection per account, so a process records its claim in the
store (``StreamLease``) and keeps it alive with heartbeats that carry the stream's health
(``run_leased``); another process finds the live holder and reads its journal with
``mqd stream tail`` instead of opening a second connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from mqd_cli.clock import Clock
from mqd_cli.errors import StateError

if TYPE_CHECKING:
    from mqd_cli.store import Store
    from mqd_cli.store.stream import Lease

log = logging.getLogger("mqd.stream")


class LeaseHeld(StateError):
    """Another live process holds the account's trade_updates stream."""


def holder_id() -> str:
    """This process, as the lease names it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def account_key(settings: Any) -> str:
    """The lease's account: a hash of the API key id (no network; the same in every process).

    Alpaca limits the stream per account and a paper account has one key pair, so the key
    identifies it; ``broker = "sim"`` is the account ``sim``.
    """
    if getattr(settings, "broker", "sim") != "alpaca":
        return "sim"
    key = settings.alpaca.key_id.reveal() or ""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:16]


class StreamLease:
    """This process's claim on the account's one trade_updates connection, in the store."""

    def __init__(
        self,
        store: Store,
        account: str,
        clock: Clock,
        ttl: timedelta,
        holder: str | None = None,
    ):
        self.store = store
        self.account = account
        self.clock = clock
        self.ttl = ttl
        self.holder = holder or holder_id()
        self.held = False

    def acquire(self) -> Lease:
        """Take the lease; ``LeaseHeld`` names the live holder when another process has it."""
        from mqd_cli.store import stream as q

        now = self.clock.now()
        lease = q.acquire(self.store, self.account, self.holder, now, self.ttl)
        if lease is None:
            other = q.live_lease(self.store, self.account, now)
            who = other.holder if other else "another process"
            age = (now - other.heartbeat_at).total_seconds() if other else 0.0
            raise LeaseHeld(
                f"{who} holds this account's trade_updates stream (heartbeat {age:.0f}s ago)",
                "stop that process, or watch it with `mqd stream tail`; a dead holder's lease"
                f" expires {self.ttl.total_seconds():g}s after its last heartbeat",
            )
        self.held = True
        return lease

    def heartbeat(self, health: Health | None = None) -> bool:
        """Extend the lease (with the health for other processes); False when it was lost."""
        from mqd_cli.store import stream as q

        doc = health.as_dict() if health is not None else None
        self.held = q.heartbeat(
            self.store, self.account, self.holder, self.clock.now(), self.ttl, doc
        )
        return self.held

    def release(self) -> None:
        from mqd_cli.store import stream as q

        q.release(self.store, self.account, self.holder)
        self.held = False


class Health(Protocol):
    """The stream's health as other processes read it (``client.StreamHealth``)."""

    def as_dict(self) -> dict[str, Any]: ...


class LeasedStream(Protocol):
    """What ``run_leased`` runs (``client.UserStreamTracker``)."""

    @property
    def health(self) -> Health: ...

    async def run(self) -> None: ...

    def stop(self) -> None: ...


async def run_leased(stream: LeasedStream, lease: StreamLease) -> None:
    """Hold the lease while the stream runs: acquire (``LeaseHeld`` if another process is the
    live holder, before any connection), heartbeat every ttl/3 with the stream's health,
    release when the stream stops. A lease lost to another holder stops the stream and raises
    ``LeaseHeld``: two holders would fight for the one connection."""
    lease.acquire()
    lost: list[LeaseHeld] = []

    async def keep() -> None:
        interval = max(lease.ttl.total_seconds() / 3, 0.05)
        while True:
            await lease.clock.sleep_async(interval)
            try:
                if lease.heartbeat(stream.health):
                    continue
                log.warning("trade_updates lease lost; taking it back")
                lease.acquire()
            except LeaseHeld as exc:
                log.error("trade_updates: %s; stopping the stream", exc.message)
                lost.append(exc)
                stream.stop()
                return
            except Exception:  # a busy store: the next heartbeat tries again
                log.exception("trade_updates lease heartbeat failed")

    keeper = asyncio.create_task(keep())
    try:
        lease.heartbeat(stream.health)
        await stream.run()
    finally:
        keeper.cancel()
        with contextlib.suppress(BaseException):
            await keeper
        if lease.held:
            with contextlib.suppress(Exception):
                lease.release()
    if lost:
        raise lost[0]
