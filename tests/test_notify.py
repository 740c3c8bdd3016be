"""Discord notifier against a real loopback webhook: 204, 429 retry_after, 500, 404, network
errors. It never raises, never stalls on a long rate limit, and never shows the webhook URL."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mqd_cli.clock import BacktestClock
from mqd_cli.config.fields import Secret
from mqd_cli.config.settings import DiscordSettings
from mqd_cli.notify import DiscordNotifier, scrub
from mqd_cli.throttle import Throttler

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
TOKEN = "sEcReTwEbHoOkToKeN-abc123XYZ"


class Webhook:
    """A loopback Discord webhook answering from a script of (status, body, headers)."""

    def __init__(self):
        self.script: list[tuple[int, object, dict]] = []
        self.posts: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                outer.posts.append(json.loads(self.rfile.read(length)))
                status, body, headers = (
                    outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                )
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{port}/api/webhooks/1234567890/{TOKEN}"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def answer(self, status, body=None, headers=None):
        self.script.append((status, body, headers or {}))

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hook():
    h = Webhook()
    yield h
    h.close()


def notifier(url, *, events=("fill", "error", "protection"), **kw):
    clock = BacktestClock(T0)
    throttler = Throttler(clock)
    settings = DiscordSettings(webhook_url=Secret(url), events=list(events), username="mqd-test")
    return DiscordNotifier(settings, clock=clock, throttler=throttler, **kw), throttler, clock


def discord_stats(throttler):
    return next(s for s in throttler.stats() if s.name == "discord")


def test_204_posts_the_alert_through_the_discord_budget(hook):
    hook.answer(204)
    n, throttler, _ = notifier(hook.url)
    assert n.send("fill", "BUY 10 AAPL @ 187.20") is True
    assert hook.posts == [
        {
            "content": "**fill** BUY 10 AAPL @ 187.20",
            "username": "mqd-test",
            "allowed_mentions": {"parse": []},
        }
    ]
    assert n.stats.sent == 1
    assert discord_stats(throttler).requests == 1


def test_429_waits_retry_after_on_the_clock_then_posts(hook):
    hook.answer(
        429, {"message": "You are being rate limited.", "retry_after": 1.5, "global": False}
    )
    hook.answer(204)
    n, throttler, clock = notifier(hook.url)
    assert n.send("error", "broker unreachable") is True
    assert len(hook.posts) == 2
    assert clock.now() - T0 >= timedelta(seconds=1.5)
    assert n.stats.rate_limited == 1 and n.stats.sent == 1
    assert discord_stats(throttler).rate_limited == 1


def test_429_with_a_long_retry_after_drops_the_alert_instead_of_stalling(hook):
    hook.answer(429, {"message": "You are being rate limited.", "retry_after": 3600})
    n, _, clock = notifier(hook.url, max_retry_after=30)
    assert n.send("fill", "x") is False
    assert len(hook.posts) == 1 and n.stats.dropped == 1
    assert clock.now() - T0 < timedelta(seconds=31)


def test_500_is_not_retried_and_never_raises(hook):
    hook.answer(500, {"message": "oops"})
    n, _, _ = notifier(hook.url)
    assert n.send("fill", "x") is False
    assert len(hook.posts) == 1  # a resend could post the alert twice
    assert n.stats.failed == 1
    hook.script[:] = [(204, None, {})]
    assert n.send("fill", "y") is True  # a failure does not switch alerts off


def test_404_switches_alerts_off_with_one_warning(hook, caplog):
    hook.answer(404, {"message": "Unknown Webhook", "code": 10015})
    n, _, _ = notifier(hook.url)
    with caplog.at_level(logging.WARNING, logger="mqd.notify"):
        assert n.send("fill", "x") is False
        assert n.send("fill", "y") is False
    assert len(hook.posts) == 1
    assert not n.enabled and "404" in n.disabled_reason
    assert "Unknown Webhook" in caplog.text


def test_unreachable_webhook_never_raises():
    n, _, _ = notifier(f"http://127.0.0.1:9/api/webhooks/1/{TOKEN}", timeout=1.0)
    assert n.send("fill", "x") is False
    assert n.stats.failed == 1


def test_events_not_configured_and_missing_url_post_nothing(hook):
    hook.answer(204)
    n, _, _ = notifier(hook.url, events=("fill",))
    assert n.send("protection", "locked") is False
    assert hook.posts == []
    off = DiscordNotifier(DiscordSettings(), clock=BacktestClock(T0))
    assert not off.enabled and off.send("fill", "x") is False
    assert off.disabled_reason == "no webhook_url configured"
    assert notifier(hook.url, events=("fil",))[0].unknown_events == ["fil"]


def test_long_messages_are_cut_to_discords_limit(hook):
    hook.answer(204)
    n, _, _ = notifier(hook.url)
    n.send("error", "x" * 5000)
    assert len(hook.posts[0]["content"]) == 2000


def test_webhook_url_never_reaches_logs_or_output(hook, caplog, capsys):
    hook.answer(204)
    hook.answer(500, {"message": "oops"})
    hook.answer(404, {"message": "Unknown Webhook"})
    n, _, _ = notifier(hook.url)
    with caplog.at_level(logging.DEBUG):  # httpx logs every request URL at INFO/DEBUG
        n.send("fill", "a")
        n.send("fill", "b")
        n.send("fill", "c")
        bad, _, _ = notifier(f"http://127.0.0.1:9/api/webhooks/1/{TOKEN}", timeout=0.5)
        bad.send("fill", "d")
    out = capsys.readouterr()
    everything = caplog.text + out.out + out.err + repr(n) + repr(n.settings) + str(n.stats)
    assert "POST" in caplog.text  # httpx did log its request lines...
    assert TOKEN not in everything  # ...scrubbed
    assert "/api/webhooks/1234567890/" not in caplog.text.replace("***", "")
    assert scrub(f"see {hook.url}") == "see ***"


async def test_async_dispatch_and_drain_post_without_blocking(hook):
    hook.answer(204)
    n, _, _ = notifier(hook.url)
    n.dispatch("fill", "one")
    n.dispatch("fill", "two")
    n.dispatch("order", "not configured")
    await n.drain()
    assert sorted(p["content"] for p in hook.posts) == ["**fill** one", "**fill** two"]
    assert await n.send_async("error", "three") is True
    hook.script[:] = [(500, None, {})]
    assert await n.send_async("error", "four") is False
    await n.aclose()


def test_protection_events_adapter(hook):
    hook.answer(204)
    n, _, _ = notifier(hook.url)

    class Event:
        message = "StoplossGuard locked all trading until 15:30 UTC"

    n.on_protection(Event())
    assert hook.posts[0]["content"] == "**protection** " + Event.message
