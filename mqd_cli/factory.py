"""One factory: every command builds the core services it needs from validated settings.

Each service is a lazily built attribute, so a command builds only what it touches and building
one service never imports another's dependencies (``mqd protections status`` never imports
alpaca-py, websockets or httpx). Services that need a wider world say so by building the
attributes they use (the broker builds the throttler, for example).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from mqd_cli.config.loading import LoadedConfig, load, store_path
from mqd_cli.config.settings import Settings

if TYPE_CHECKING:
    from mqd_cli.clock import Clock
    from mqd_cli.store import Store
    from mqd_cli.symbols.book import SymbolBook


class Services:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Clock | None = None,
        loaded: LoadedConfig | None = None,
    ):
        self.loaded = loaded
        self.settings = (
            settings if settings is not None else (loaded.settings if loaded else Settings())
        )
        self._clock = clock

    @classmethod
    def from_config(cls, cli_path: str | Path | None = None, **kwargs) -> Services:
        loaded = load(cli_path)
        return cls(loaded.settings, loaded=loaded, **kwargs)

    @cached_property
    def clock(self) -> Clock:
        from mqd_cli.clock import RealTimeClock

        return self._clock if self._clock is not None else RealTimeClock()

    @cached_property
    def store_path(self) -> Path:
        return store_path(self.settings)

    @cached_property
    def store(self) -> Store:
        from mqd_cli.store import Store

        return Store.open(
            self.store_path,
            busy_timeout_ms=int(self.settings.store.busy_timeout.total_seconds() * 1000),
        )

    @cached_property
    def throttler(self):
        """The Throttler every outbound request goes through (budget shared via the store)."""
        from mqd_cli.throttle import build

        return build(self)

    @cached_property
    def notifier(self):
        """DiscordNotifier from [notify.discord]; disabled (no network) without a webhook."""
        from mqd_cli.notify import build

        return build(self)

    @cached_property
    def protections(self):
        """ProtectionManager over the store; the run loop sets ``.notify`` and calls ``start()``."""
        from mqd_cli.protections.manager import ProtectionManager

        return ProtectionManager(self.settings.protections, self.store, self.clock)

    @cached_property
    def symbols(self) -> SymbolBook:
        """Symbol properties over the store (cache loaded on first lookup)."""
        from mqd_cli.symbols.book import SymbolBook

        return SymbolBook(self.store, self.clock, stale_after=self.settings.symbols.stale_after)

    @cached_property
    def tracker(self):
        """OrderTracker restored from the store's journal (strategy from [strategy] name)."""
        from mqd_cli.orders.tracker import OrderTracker

        return OrderTracker.restore(self.store, self.clock, strategy=self.settings.strategy.name)

    @cached_property
    def broker(self):
        """The Broker: SimBroker (in-memory, seeded from [sim], on this clock) for
        ``broker = "sim"``, the alpaca-py adapter for ``broker = "alpaca"``."""
        if self.settings.broker == "alpaca":
            from mqd_cli.brokers import alpaca

            return alpaca.build(self)
        from mqd_cli.brokers.sim.broker import SimBroker

        return SimBroker(self.settings.sim, self.clock)

    @cached_property
    def user_stream(self):
        """UserStreamTracker over [alpaca] with [stream] timing, feeding ``tracker`` and
        gap-filling through ``broker``; UsageError with broker = "sim" (no websocket)."""
        from mqd_cli.stream.client import build

        return build(self)

    def close(self) -> None:
        """Close what was built (only what was built): the broker's session before the store."""
        if "throttler" in self.__dict__:
            self.throttler.flush()  # stats are written at most once a second: keep the last
        if "broker" in self.__dict__:
            self.broker.close()
        if "store" in self.__dict__:
            self.store.close()
