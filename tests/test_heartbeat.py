"""The dead-man heartbeat (`[notify] heartbeat_url`): a real HTTP server on loopback counts the
GETs. `mqd run` pings while healthy and never prints the URL; a hung or failing monitor never
holds the loop; no ping while unhealthy; the pings spend the throttler's `heartbeat` budget."""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mqd_cli.clock import RealTimeClock
from mqd_cli.config.fields import Secret
from mqd_cli.notify import Heartbeat
from mqd_cli.throttle import PRESETS, Throttler

TOKEN = "b7e3c2a1-hb-token-5f9d"


class Monitor(BaseHTTPRequestHandler):
    """healthchecks.io's ping endpoint, as far as mqd sees it: GET -> 200 "OK"."""

    paths: list[str] = []
    delay = 0.0
    status = 200

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).paths.append(self.path)
        if self.delay:
            time.sleep(self.delay)
        body = b"OK"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def monitor():
    Monitor.paths, Monitor.delay, Monitor.status = [], 0.0, 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Monitor)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ping/{TOKEN}", Monitor
    server.shutdown()
    server.server_close()


def heartbeat(url: str, interval: float, timeout: float = 2.0) -> tuple[Heartbeat, Throttler]:
    throttler = Throttler(RealTimeClock(), PRESETS)
    return Heartbeat(
        Secret(url), interval=interval, throttler=lambda: throttler, timeout=timeout
    ), throttler


async def loop_for(hb: Heartbeat, seconds: float, *, healthy: bool = True) -> float:
    """Call ``beat`` every 10 ms like the run loop; return the longest pass (seconds)."""
    clock = RealTimeClock()
    start = last = clock.monotonic()
    longest = 0.0
    while clock.monotonic() - start < seconds:
        hb.beat(clock.monotonic(), healthy=healthy)
        await asyncio.sleep(0.01)
        now = clock.monotonic()
        longest, last = max(longest, now - last), now
    return longest


def test_mqd_run_pings_while_healthy_and_never_prints_the_url(mqd, config_file, monitor, tmp_path):
    url, handler = monitor
    log = tmp_path / "mqd.log"
    cfg = config_file(
        '[sim]\nspeed = 3600.0\n[run]\nduration = "3h"\npoll_interval = "10ms"\n'
        f'[notify]\nheartbeat_url = "{url}"\nheartbeat_interval = "1s"\n'
        f'[log]\nfile = "{log}"\nlevel = "debug"\n'
    )
    r = mqd("run", "--config", cfg, "--json", "--verbose")
    assert len(handler.paths) >= 2  # one at start, then one a second for ~3 s
    assert set(handler.paths) == {f"/ping/{TOKEN}"}
    shown = r.stdout + r.stderr + log.read_text()
    assert TOKEN not in shown
    assert TOKEN not in mqd("config", "show", "--config", cfg).stdout


def test_a_hung_monitor_never_holds_the_loop_and_the_ping_times_out(monitor):
    url, handler = monitor
    handler.delay = 1.5
    hb, _ = heartbeat(url, interval=0.2, timeout=0.5)
    longest = asyncio.run(loop_for(hb, 1.2))
    assert longest < 0.2  # the loop ran on: 10 ms passes, the ping in the background
    assert hb.stats.failed >= 1 and hb.stats.sent == 0
    assert hb.stats.skipped >= 1  # never two pings at once


def test_no_ping_while_the_loop_is_unhealthy(monitor):
    url, handler = monitor
    hb, _ = heartbeat(url, interval=0.05)
    asyncio.run(loop_for(hb, 0.3, healthy=False))
    assert handler.paths == [] and hb.stats.sent == 0


def test_an_error_answer_is_counted_and_the_next_ping_still_goes(monitor):
    url, handler = monitor
    handler.status = 500
    hb, _ = heartbeat(url, interval=0.2)
    asyncio.run(loop_for(hb, 0.5))
    assert hb.stats.failed >= 2 and hb.stats.sent == 0 and len(handler.paths) >= 2


def test_pings_spend_the_heartbeat_budget_so_a_tiny_interval_cannot_hammer_the_monitor(monitor):
    url, handler = monitor
    hb, throttler = heartbeat(url, interval=0.01, timeout=0.3)
    asyncio.run(loop_for(hb, 1.0))
    budget = PRESETS["heartbeat"].budget(throttler.margin)  # 6/min less the 3 % margin: 5
    assert len(handler.paths) == budget == hb.stats.sent
    (stats,) = [s for s in throttler.stats() if s.name == "heartbeat"]
    assert stats.requests == budget
