"""Keep the event apply path free of pauses that are not its own work.

Two pauses dominate the tail latency of applying a stream event and committing it:

* a **WAL checkpoint** that SQLite runs inside the commit which crosses 1,000 WAL pages: the
  writer waits while pages are copied and the database is synced;
* a **full pass of the cyclic garbage collector** over every object alive, most of them built
  at start-up and alive for the whole run.

``Housekeeping`` moves the first off the apply path (``Store.defer_checkpoints``, then a PASSIVE
checkpoint on a worker thread every ``every`` seconds, on a connection of its own) and shrinks
the second (``gc.freeze`` after start-up). ``mqd run`` uses it, and so does ``bench/stream.py``,
so the benchmark measures what the run does.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from typing import Any

from mqd_cli.clock import RealTimeClock

log = logging.getLogger("mqd.stream")

CHECKPOINT_EVERY = 5.0  # s between WAL checkpoints, off the event loop


class Housekeeping:
    """WAL checkpoints on a worker thread and frozen start-up objects (see the module doc)."""

    def __init__(self, store: Any, every: float = CHECKPOINT_EVERY):
        self.store = store
        self.every = every
        self._clock = RealTimeClock()  # real seconds, whatever the session's clock
        self.checkpoints = 0
        self._next = 0.0
        self._task: asyncio.Task[Any] | None = None
        self._frozen = False

    def start(self) -> None:
        """Call once start-up is done (its objects are what gets frozen)."""
        self.store.defer_checkpoints()
        gc.collect()
        gc.freeze()
        self._frozen = True
        self._next = self._clock.monotonic() + self.every

    def tick(self) -> None:
        """From the event loop, as often as convenient: starts a due checkpoint in a thread."""
        now = self._clock.monotonic()
        if now < self._next or (self._task is not None and not self._task.done()):
            return
        self._next = now + self.every
        self._task = asyncio.create_task(asyncio.to_thread(self._checkpoint))

    def _checkpoint(self) -> None:
        try:
            self.store.checkpoint()
            self.checkpoints += 1
        except Exception as exc:  # a busy or vanished file: the next one will do
            log.debug("WAL checkpoint skipped: %s", exc)

    async def run(self) -> None:
        """Tick forever (for a loop that has no tick of its own); cancel to stop."""
        while True:
            self.tick()
            await asyncio.sleep(min(1.0, self.every))

    async def stop(self) -> None:
        """Wait for a running checkpoint, unfreeze, and leave a short WAL behind."""
        if self._frozen:
            gc.unfreeze()
            self._frozen = False
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        await asyncio.to_thread(self._checkpoint)
