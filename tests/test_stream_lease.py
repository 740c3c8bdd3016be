"""The stream lease: one holder per account, heartbeats with health, release, take-over."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from mqd_cli.clock import BacktestClock, RealTimeClock
from mqd_cli.config.settings import Settings
from mqd_cli.errors import UsageError
from mqd_cli.factory import Services
from mqd_cli.store import Store
from mqd_cli.store import stream as q
from mqd_cli.stream.client import StreamHealth, StreamOptions, UserStreamTracker
from mqd_cli.stream.lease import LeaseHeld, StreamLease, account_key, run_leased

T0 = datetime(2026, 1, 5, 14, 35, tzinfo=UTC)
TTL = timedelta(seconds=30)


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "mqd.db")
    yield s
    s.close()


def test_a_live_lease_refuses_another_holder_and_names_it(store):
    clock = BacktestClock(T0)
    StreamLease(store, "acct", clock, TTL, holder="run-a").acquire()
    with pytest.raises(LeaseHeld) as err:
        StreamLease(store, "acct", clock, TTL, holder="tail-b").acquire()
    assert "run-a" in err.value.message and err.value.exit_code == 4


def test_an_expired_lease_is_taken_over(store):
    clock = BacktestClock(T0)
    StreamLease(store, "acct", clock, TTL, holder="crashed").acquire()
    clock.advance(TTL + timedelta(seconds=1))
    lease = StreamLease(store, "acct", clock, TTL, holder="next").acquire()
    assert lease.holder == "next"


def test_heartbeat_extends_the_lease_and_publishes_health(store):
    clock = BacktestClock(T0)
    lease = StreamLease(store, "acct", clock, TTL, holder="run-a")
    lease.acquire()
    clock.advance(timedelta(seconds=20))
    health = StreamHealth(connected=True, connects=3, reconnects=2)
    assert lease.heartbeat(health)
    clock.advance(timedelta(seconds=20))  # 40 s after acquire, 20 s after the heartbeat
    live = q.live_lease(store, "acct", clock.now())
    assert live is not None and live.health["reconnects"] == 2 and live.health["connected"]


def test_a_lost_lease_reports_false_on_heartbeat(store):
    clock = BacktestClock(T0)
    mine = StreamLease(store, "acct", clock, TTL, holder="run-a")
    mine.acquire()
    clock.advance(TTL * 2)
    StreamLease(store, "acct", clock, TTL, holder="run-b").acquire()
    assert mine.heartbeat() is False and mine.held is False


def test_release_frees_the_account_at_once(store):
    clock = BacktestClock(T0)
    lease = StreamLease(store, "acct", clock, TTL, holder="run-a")
    lease.acquire()
    lease.release()
    assert q.current_lease(store, "acct") is None


def test_account_key_hashes_the_key_id_and_never_shows_it(emulator):
    srv = emulator()
    settings = Settings(broker="alpaca", alpaca=srv.alpaca_settings())
    key = account_key(settings)
    assert key.startswith("key-") and srv.key_id not in key
    assert key == account_key(Settings(broker="alpaca", alpaca=srv.alpaca_settings()))
    assert account_key(Settings()) == "sim"


async def test_run_leased_refuses_before_connecting_when_another_holds_it(emulator, store):
    srv = emulator()
    clock = RealTimeClock()
    StreamLease(store, "acct", clock, TTL, holder="someone-else").acquire()
    stream = UserStreamTracker(srv.stream_url, srv.key_id, srv.secret_key, clock=clock)
    with pytest.raises(LeaseHeld):
        await run_leased(stream, StreamLease(store, "acct", clock, TTL, holder="me"))
    assert stream.health.connects == 0 and stream.health.failed_attempts == 0
    assert srv.state()["stream_connections"] == 0


async def test_run_leased_heartbeats_health_while_connected_and_releases_on_stop(emulator, store):
    srv = emulator()
    clock = RealTimeClock()
    stream = UserStreamTracker(
        srv.stream_url, srv.key_id, srv.secret_key, clock=clock, options=StreamOptions()
    )
    lease = StreamLease(store, "acct", clock, timedelta(seconds=1.5), holder="me")
    task = asyncio.create_task(run_leased(stream, lease))
    async with asyncio.timeout(5):
        while not (q.current_lease(store, "acct") or None) or not q.current_lease(
            store, "acct"
        ).health.get("connected"):
            await asyncio.sleep(0.02)
    assert q.current_lease(store, "acct").holder == "me"
    stream.stop()
    await task
    assert q.current_lease(store, "acct") is None


def test_services_user_stream_needs_broker_alpaca():
    with pytest.raises(UsageError, match="sim"):
        Services(Settings()).user_stream  # noqa: B018


def test_services_user_stream_is_built_from_the_config(emulator, tmp_path):
    srv = emulator()
    from mqd_cli.config.settings import StoreSettings

    settings = Settings(
        broker="alpaca",
        alpaca=srv.alpaca_settings(),
        store=StoreSettings(path=str(tmp_path / "s.db")),
    )
    services = Services(settings)
    try:
        stream = services.user_stream
        assert stream.url == srv.stream_url
        assert stream.tracker is services.tracker and stream.broker is services.broker
        assert srv.secret_key not in repr(stream)
    finally:
        services.close()
