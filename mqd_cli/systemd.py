"""systemd's notify protocol, without a dependency: ``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``.

When systemd starts ``mqd run`` as a ``Type=notify`` service it sets ``NOTIFY_SOCKET`` (a unix
datagram socket; a leading ``@`` names an abstract one) and, with ``WatchdogSec=``,
``WATCHDOG_USEC``. mqd then says READY=1 once it trades, WATCHDOG=1 at half the watchdog
interval while the loop is healthy (so a hung or unhealthy loop is restarted), and STOPPING=1
when it shuts down. Without ``NOTIFY_SOCKET`` nothing is sent. A failed send is logged, never
fatal: the service manager is a helper, not a dependency of trading.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("mqd.systemd")


class SystemdNotify:
    """Messages to the service manager over ``address`` (see the module doc)."""

    def __init__(self, address: str, watchdog_seconds: float | None = None):
        self.address = address
        self.watchdog_seconds = watchdog_seconds
        self._next_ping = 0.0
        self.sent: list[str] = []  # what was sent (for the run summary and tests)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SystemdNotify | None:
        """The notifier systemd asked for, or None outside a notify service."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        watchdog = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(usec) / 1_000_000
        return cls(address, watchdog)

    def send(self, message: str) -> bool:
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]  # an abstract socket
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)  # a manager that does not read must never stall trading
                sock.sendto(message.encode(), target)
        except OSError as exc:
            log.warning("systemd notify %r failed: %s", message.split("\n")[0], exc)
            return False
        self.sent.append(message)
        return True

    def ready(self, status: str = "") -> None:
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self, status: str = "") -> None:
        self.send("STOPPING=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self, now: float, healthy: bool = True) -> None:
        """``WATCHDOG=1`` at half the interval, only while ``healthy`` (``now``: monotonic s)."""
        if self.watchdog_seconds is None or not healthy or now < self._next_ping:
            return
        self._next_ping = now + self.watchdog_seconds / 2
        self.send("WATCHDOG=1")
