"""One factory: every command builds the core services it needs from validated settings.

Each service is a lazily built attribute, so a command builds only what it touches and building
one service never imports another's dependencies (``mqd protections status`` never imports
alpaca-py, websockets or httpx). Services that need a wider world say so by building the
attributes they use (the broker builds the throttler, for example).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from mqd_cli.clock import BacktestClock, Clock, RealTimeClock
from mqd_cli.config import LoadedConfig, Settings, load, store_path
from mqd_cli.store import Store


class Services:
    def __init__(self, settings: Settings | None = None, *, clock: Clock | None = None,
                 loaded: LoadedConfig | None = None):
        self.loaded = loaded
        self.settings = settings if settings is not None else (
            loaded.settings if loaded else Settings()
        )
        self._clock = clock

    @classmethod
    def from_config(cls, cli_path: str | Path | None = None, **kwargs) -> Services:
        loaded = load(cli_path)
        return cls(loaded.settings, loaded=loaded, **kwargs)

    @cached_property
    def clock(self) -> Clock:
        return self._clock if self._clock is not None else RealTimeClock()

    @property
    def is_backtest(self) -> bool:
        return isinstance(self.clock, BacktestClock)

    @cached_property
    def store_path(self) -> Path:
        return store_path(self.settings)

    @cached_property
    def store(self) -> Store:
        return Store.open(
            self.store_path,
            busy_timeout_ms=int(self.settings.store.busy_timeout.total_seconds() * 1000),
        )

    def close(self) -> None:
        """Close what was built (only what was built)."""
        if "store" in self.__dict__:
            self.store.close()
