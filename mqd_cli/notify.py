"""Discord webhook alerts that can never hurt trading.

``DiscordNotifier.send(event, message)`` posts one message when ``event`` is listed in
``[notify.discord] events`` and a webhook URL is configured. Every post goes through the
throttler's ``discord`` budget (Discord allows about 5 posts per 2 s per webhook). A 429 is
honoured: its ``retry_after`` holds the budget and the post is retried after it, unless the
wait is longer than ``max_retry_after`` (then the alert is dropped rather than stalling the
caller). A 5xx, a timeout or a network error drops the alert (a webhook post is not idempotent:
a resend could post it twice). 401/403/404 mean the webhook is gone: the notifier switches
itself off with one warning. Nothing here raises into the caller; failures are logged and
counted in ``stats``.

The webhook URL holds a token, so it is a ``Secret``: it is never logged, never part of an
error message, and httpx's own request log lines are scrubbed of it.

In async code call ``dispatch`` (fire and forget on the running loop) or ``await send_async``;
``await drain()`` at shutdown waits for alerts still in flight.

``Heartbeat`` is the dead-man switch of ``mqd run``: an HTTP GET of ``[notify] heartbeat_url``
every ``heartbeat_interval`` while the loop is healthy, for a cron-style monitor that alerts when
the pings stop. The loop calls ``beat`` on every pass; a due ping runs as a task on the loop
through the throttler's ``heartbeat`` budget, bounded by a timeout, one at a time, so a slow or
dead monitor never holds the loop. The URL is a ``Secret`` like the webhook's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mqd_cli.config.loading import redact
from mqd_cli.config.settings import DiscordSettings

if TYPE_CHECKING:
    import asyncio
    import ssl

    import httpx

    from mqd_cli.clock import Clock
    from mqd_cli.config.fields import Secret
    from mqd_cli.throttle import Throttler

log = logging.getLogger("mqd.notify")

EVENTS = frozenset({"fill", "order", "risk", "protection", "reconcile", "error", "start", "stop"})
MAX_CONTENT = 2000  # Discord's limit on a message's content
LIMIT = "discord"


@dataclass
class NotifyStats:
    sent: int = 0
    failed: int = 0  # 5xx, network, timeout, rejected webhook
    dropped: int = 0  # not posted on purpose: too long a 429 wait, or the webhook is off
    rate_limited: int = 0  # 429 answers received


class _Drop(Exception):
    """Internal: this alert will not be posted; the message says why (no secret in it)."""


class _Scrubber(logging.Filter):
    """Removes webhook URLs (and their tokens) from every record of the loggers it sits on."""

    secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a broken record is not ours to fix
            return True
        cleaned = scrub(text)
        if cleaned != text:
            record.msg, record.args = cleaned, ()
        return True


_SCRUBBER = _Scrubber()
for _name in ("httpx", "httpcore", "mqd.notify"):
    logging.getLogger(_name).addFilter(_SCRUBBER)


def scrub(text: str) -> str:
    """``text`` with every known webhook URL and token replaced by ``***``."""
    for secret in sorted(_Scrubber.secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return redact(text)


def _register_secret(url: str) -> None:
    if not url:
        return
    _Scrubber.secrets.add(url)
    path = url.split("?", 1)[0].rstrip("/")
    token = path.rsplit("/", 1)[-1]
    if len(token) >= 8:
        _Scrubber.secrets.add(token)


class DiscordNotifier:
    """Posts alerts to a Discord webhook through the throttler; never raises."""

    def __init__(
        self,
        settings: DiscordSettings,
        *,
        clock: Clock,
        throttler: Throttler | None = None,
        timeout: float = 5.0,
        max_retry_after: float = 30.0,
        transport: Any = None,
    ):
        self.settings = settings
        self.clock = clock
        self._throttler = throttler
        self.timeout = timeout
        self.max_retry_after = max_retry_after
        self._transport = transport
        self._url = settings.webhook_url.reveal()
        _register_secret(self._url)
        self._events = frozenset(settings.events)
        self._off_reason = ""
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None
        self._aloop: Any = None
        self._tasks: set[Any] = set()
        self.stats = NotifyStats()

    # -- what is posted ---------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return bool(self._url) and not self._off_reason

    @property
    def disabled_reason(self) -> str:
        """Why posting stopped ("" while enabled): no URL, or the webhook was rejected."""
        if not self._url:
            return "no webhook_url configured"
        return self._off_reason

    @property
    def unknown_events(self) -> list[str]:
        """Names in ``[notify.discord] events`` that mqd never sends (likely typos)."""
        return sorted(self._events - EVENTS)

    def wants(self, event: str) -> bool:
        return self.enabled and event in self._events

    def _payload(self, event: str, message: str) -> dict[str, Any]:
        content = f"**{event}** {message}"
        if len(content) > MAX_CONTENT:
            content = content[: MAX_CONTENT - 1] + "…"
        return {
            "content": content,
            "username": self.settings.username,
            "allowed_mentions": {"parse": []},  # an alert never pings @everyone
        }

    # -- sync -------------------------------------------------------------------------------------

    def send(self, event: str, message: str) -> bool:
        """Post one alert now (blocking); True when Discord accepted it. Never raises."""
        if not self.wants(event):
            return False
        payload = self._payload(event, message)
        try:
            self._throttle().call(LIMIT, lambda: self._post(payload), idempotent=False)
        except Exception as exc:
            self._failed(event, exc)
            return False
        self.stats.sent += 1
        return True

    def _post(self, payload: dict[str, Any]) -> None:
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout, transport=self._transport)
        try:
            response = self._client.post(self._url, json=payload)
        except httpx.HTTPError as exc:
            raise self._network_error(exc) from None
        self._judge(response)

    # -- async ------------------------------------------------------------------------------------

    async def send_async(self, event: str, message: str) -> bool:
        """``send`` for coroutines: waits on the clock, never blocks the event loop."""
        if not self.wants(event):
            return False
        payload = self._payload(event, message)
        try:
            await self._throttle().call_async(LIMIT, lambda: self._apost(payload), idempotent=False)
        except Exception as exc:
            self._failed(event, exc)
            return False
        self.stats.sent += 1
        return True

    async def _apost(self, payload: dict[str, Any]) -> None:
        import asyncio

        import httpx

        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aloop is not loop:
            self._aclient = httpx.AsyncClient(timeout=self.timeout, transport=self._transport)
            self._aloop = loop
        try:
            response = await self._aclient.post(self._url, json=payload)
        except httpx.HTTPError as exc:
            raise self._network_error(exc) from None
        self._judge(response)

    def dispatch(self, event: str, message: str) -> None:
        """Fire and forget: a task on the running loop, or a blocking ``send`` without one."""
        if not self.wants(event):
            return
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.send(event, message)
            return
        task = loop.create_task(self.send_async(event, message), name=f"discord {event}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for every dispatched alert (each one is bounded by timeouts and retries)."""
        import asyncio

        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def on_protection(self, event: Any) -> None:
        """Adapter for ``ProtectionManager.notify``: posts the event's message."""
        self.dispatch("protection", getattr(event, "message", str(event)))

    # -- shared -----------------------------------------------------------------------------------

    def _throttle(self) -> Throttler:
        if self._throttler is None:
            from mqd_cli.throttle import Throttler

            self._throttler = Throttler(self.clock)
        return self._throttler

    def _judge(self, response: httpx.Response) -> None:
        """Map Discord's answer: 2xx ok, 429 retry (or drop), 5xx/4xx raise."""
        from mqd_cli.brokers.errors import BrokerCallError, BrokerUnavailable, RateLimited

        status = response.status_code
        if status < 300:
            self._throttle().observe(LIMIT, status, response.headers)
            return
        if status == 429:
            self.stats.rate_limited += 1
            retry_after = _retry_after(response)
            if retry_after is not None and retry_after > self.max_retry_after:
                self._throttle().observe(LIMIT, status, response.headers)
                raise _Drop(f"rate limited for {retry_after:g}s (> {self.max_retry_after:g}s)")
            raise RateLimited("discord rate limit", retry_after=retry_after, status=429)
        if status >= 500:
            raise BrokerUnavailable(f"discord answered {status}", status=status)
        if status in (401, 403, 404):
            self._off_reason = f"webhook rejected with {status}; alerts are off until restart"
        raise BrokerCallError(f"discord answered {status}: {_message(response)}", status=status)

    def _network_error(self, exc: Exception) -> Exception:
        from mqd_cli.brokers.errors import BrokerUnavailable

        # httpx messages can carry the URL: keep the type and a scrubbed text only.
        return BrokerUnavailable(f"discord unreachable: {type(exc).__name__}: {scrub(str(exc))}")

    def _failed(self, event: str, exc: Exception) -> None:
        from mqd_cli.brokers.errors import RateLimited

        if isinstance(exc, _Drop):
            self.stats.dropped += 1
        else:
            self.stats.failed += 1
        what = "still rate limited" if isinstance(exc, RateLimited) else scrub(str(exc))
        log.warning("discord alert (%s) not posted: %s", event, what)
        if self._off_reason and not isinstance(exc, _Drop):
            log.warning("discord alerts switched off: %s", self._off_reason)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        await self.drain()
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None
        self.close()


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait: the JSON body's ``retry_after`` (Discord), else ``Retry-After``."""
    try:
        body = response.json()
        value = body.get("retry_after") if isinstance(body, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    except ValueError:
        pass
    try:
        value = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return scrub(response.text[:200])
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return scrub(body["message"][:200])
    return "no message"


def build(services: Any) -> DiscordNotifier:
    """The notifier of ``services`` (the throttler is built only when a webhook is set)."""
    settings = services.settings.notify.discord
    throttler = services.throttler if settings.webhook_url.is_set() else None
    return DiscordNotifier(settings, clock=services.clock, throttler=throttler)


# -- the dead-man heartbeat -----------------------------------------------------------------------

HEARTBEAT_LIMIT = "heartbeat"


@dataclass
class HeartbeatStats:
    sent: int = 0  # pings the monitor answered with 2xx/3xx
    failed: int = 0  # an error answer, no answer within the timeout, or no connection
    skipped: int = 0  # due while the previous ping was still in flight


class Heartbeat:
    """Pings ``url`` (HTTP GET) every ``interval`` seconds while the caller says it is healthy.

    ``beat(now, healthy=...)`` is called on every pass of the run loop with a monotonic time in
    real seconds. It never blocks and never raises: a due ping is a task on the running loop
    that waits for the throttler's ``heartbeat`` budget and the answer, both within
    ``timeout``; failures are counted and logged (the URL scrubbed), and the next ping is due
    an interval after this one was started, whatever came of it.
    """

    def __init__(
        self,
        url: Secret,
        *,
        interval: float,
        throttler: Callable[[], Throttler],
        timeout: float = 10.0,
        transport: Any = None,
    ):
        import httpx  # here, before the loop runs: importing it later would hold the loop

        self._url = url.reveal()
        _register_secret(self._url)
        self.interval = interval
        self.timeout = timeout
        self._throttler_of = throttler
        self._throttler: Throttler | None = None
        self._transport = transport
        # Building a TLS context costs ~20 ms: once, here, not on every ping.
        self._ssl: ssl.SSLContext = httpx.create_ssl_context()
        self._task: asyncio.Task[None] | None = None
        self._last: float | None = None
        self.stats = HeartbeatStats()

    @classmethod
    def of(cls, services: Any) -> Heartbeat | None:
        """The heartbeat of ``services``' ``[notify]`` settings; None when no URL is set (the
        throttler is built at the first ping)."""
        notify = services.settings.notify
        if not notify.heartbeat_url.is_set():
            return None
        return cls(
            notify.heartbeat_url,
            interval=notify.heartbeat_interval.total_seconds(),
            throttler=lambda: services.throttler,
        )

    def beat(self, now: float, *, healthy: bool) -> None:
        """Start a ping when one is due (``interval`` since the last) and ``healthy``."""
        if not healthy or (self._last is not None and now - self._last < self.interval):
            return
        self._last = now
        if self._task is not None and not self._task.done():
            self.stats.skipped += 1  # never two at once: a hung monitor must not pile them up
            return
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not in the run loop: nothing to run the ping on
            return
        self._task = loop.create_task(self._ping(), name="heartbeat")

    async def _ping(self) -> None:
        import asyncio

        try:
            throttler = self._throttler
            if throttler is None:
                throttler = self._throttler = self._throttler_of()
            await asyncio.wait_for(
                # not retried on a 5xx or a network error: the next ping is the retry
                throttler.call_async(HEARTBEAT_LIMIT, self._get, idempotent=False),
                self.timeout,
            )
        except Exception as exc:
            self.stats.failed += 1
            what = f"no answer within {self.timeout:g}s" if isinstance(exc, TimeoutError) else exc
            log.warning("heartbeat ping failed: %s", scrub(str(what)))
            return
        self.stats.sent += 1

    async def _get(self) -> None:
        import httpx

        from mqd_cli.brokers.errors import BrokerCallError, BrokerUnavailable, RateLimited

        try:
            async with httpx.AsyncClient(
                verify=self._ssl, timeout=self.timeout, transport=self._transport
            ) as client:
                response = await client.get(self._url)
        except httpx.HTTPError as exc:
            raise BrokerUnavailable(
                f"heartbeat unreachable: {type(exc).__name__}: {scrub(str(exc))}"
            ) from None
        status = response.status_code
        if status == 429:
            raise RateLimited(
                "heartbeat rate limit", retry_after=_retry_after(response), status=429
            )
        if status >= 500:
            raise BrokerUnavailable(f"heartbeat answered {status}", status=status)
        if status >= 400:
            raise BrokerCallError(f"heartbeat answered {status}", status=status)
        if self._throttler is not None:
            self._throttler.observe(HEARTBEAT_LIMIT, status, response.headers)
