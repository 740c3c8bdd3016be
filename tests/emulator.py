"""Fixtures: the Alpaca-compatible emulator (`mqd sim serve`) as a real loopback server.

Registered for every test module by ``pytest_plugins`` in conftest.py. Two fixtures:

``emulator`` - a factory; each call starts a fresh server (uvicorn in a background thread on a
free loopback port) and stops it at teardown::

    def test_reconnect(emulator):
        srv = emulator(stream_drop_every=3, rate_limit=50)   # Faults or EmulatorConfig fields
        srv.base_url, srv.stream_url, srv.data_url, srv.key_id, srv.secret_key
        srv.alpaca_settings()        # an AlpacaSettings pointing at it (literal keys)
        srv.config_toml()            # `broker = "alpaca"` + [alpaca] lines for config_file()
        srv.set_faults(stream_drop_every=0, rest_5xx_rate=0.5)   # at run time
        srv.advance(60)              # move simulated time 60 s (resting orders may fill)
        srv.drop_streams(); srv.reset(); srv.state()

``emulator_module`` - one server per test module (default options), for suites that do not
need a fresh market: call ``srv.reset()`` where a clean account matters.

Defaults differ from `mqd sim serve` only where tests need it: simulated time starts on a
trading Monday at 09:35 New York time (the market is open) and the rate limit is 100,000/min
(pass ``rate_limit=`` to test the real 200).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

MARKET_OPEN_START = datetime(2026, 1, 5, 14, 35, tzinfo=UTC)  # Mon 09:35 New York
TEST_RATE_LIMIT = 100_000


class RunningEmulator:
    """A started emulator and helpers to steer it through its /_sim control API."""

    def __init__(self, server: Any):
        self.server = server
        self.emulator = server.emulator  # read-only inspection; steer through the methods
        self.base_url: str = server.base_url
        self.stream_url: str = server.stream_url
        self.data_url: str = server.data_url
        self.key_id: str = server.config.key_id
        self.secret_key: str = server.config.secret_key
        self.headers = {"APCA-API-KEY-ID": self.key_id, "APCA-API-SECRET-KEY": self.secret_key}

    def _post(self, path: str, body: dict | None = None) -> dict:
        import httpx

        response = httpx.post(self.base_url + path, json=body or {}, timeout=10)
        response.raise_for_status()
        return response.json()

    def state(self) -> dict:
        import httpx

        return httpx.get(self.base_url + "/_sim/state", timeout=10).json()

    def set_faults(self, **faults: float) -> dict:
        return self._post("/_sim/faults", faults)

    def advance(self, seconds: float) -> dict:
        return self._post("/_sim/advance", {"seconds": seconds})

    def drop_streams(self) -> int:
        return self._post("/_sim/drop_streams")["dropped"]

    def reset(self) -> dict:
        return self._post("/_sim/reset")

    def alpaca_settings(self, **overrides: Any):
        from mqd_cli.config.fields import Secret
        from mqd_cli.config.settings import AlpacaSettings

        values = {
            "base_url": self.base_url,
            "stream_url": self.stream_url,
            "data_url": self.data_url,
            "key_id": Secret(self.key_id),
            "secret_key": Secret(self.secret_key),
            "timeout": timedelta(seconds=5),
            **overrides,
        }
        return AlpacaSettings(**values)

    def config_toml(self) -> str:
        """Config text pointing mqd at this emulator (keys as literals: test values only)."""
        return (
            'broker = "alpaca"\n[alpaca]\n'
            f'base_url = "{self.base_url}"\nstream_url = "{self.stream_url}"\n'
            f'data_url = "{self.data_url}"\nkey_id = "{self.key_id}"\n'
            f'secret_key = "{self.secret_key}"\ntimeout = "5s"\n'
        )


def start_emulator(**options: Any) -> Any:
    """Start an ``EmulatorServer``; ``options`` are EmulatorConfig or Faults field names."""
    from mqd_cli.emulator.server import EmulatorServer
    from mqd_cli.emulator.settings import EmulatorConfig, Faults

    fault_names = {f.name for f in dataclasses.fields(Faults)}
    faults = Faults(**{k: v for k, v in options.items() if k in fault_names})
    config_opts = {k: v for k, v in options.items() if k not in fault_names}
    config_opts.setdefault("start", MARKET_OPEN_START)
    config_opts.setdefault("rate_limit", TEST_RATE_LIMIT)
    config_opts.setdefault("data_rate_limit", TEST_RATE_LIMIT)
    config = EmulatorConfig(faults=faults, **config_opts)
    return EmulatorServer(config).start()


@pytest.fixture
def emulator():
    """Factory: ``emulator(**options) -> RunningEmulator``; every server stops at teardown."""
    servers = []

    def start(**options: Any) -> RunningEmulator:
        server = start_emulator(**options)
        servers.append(server)
        return RunningEmulator(server)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def emulator_module():
    """One emulator (default test options) shared by the tests of a module."""
    server = start_emulator()
    yield RunningEmulator(server)
    server.stop()
