"""What an emulator is told at start: ``EmulatorConfig`` and the fault switches ``Faults``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from mqd_cli.config.settings import SimSettings


@dataclass
class Faults:
    """Fault injection, switchable at start (CLI flags) or at run time (``POST /_sim/faults``).

    Rates are shares of calls in [0, 1]; times are seconds. All zero = a healthy exchange.
    """

    stream_drop_every: int = 0  # close a stream connection after every N events sent
    stream_drop_after: float = 0.0  # close a stream connection T s after it authenticated
    stream_duplicate_rate: float = 0.0  # share of events sent twice
    stream_reorder_rate: float = 0.0  # share of events held back and sent after the next one
    stream_reap_delay: float = 0.0  # s a closed connection still counts as the key's one stream
    rest_429_rate: float = 0.0  # share of REST calls answered 429 (budget or not)
    rest_5xx_rate: float = 0.0  # share of REST calls answered 500/502/503/504
    latency: float = 0.0  # s added before every REST answer

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply ``changes``; ValueError names an unknown field or a bad value."""
        known = {f.name: f for f in dataclasses.fields(self)}
        staged = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault {name!r} (known: {', '.join(known)})")
            if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
                raise ValueError(f"fault {name}: expected a number, got {value!r}")
            if value < 0 or (name.endswith("_rate") and value > 1):
                raise ValueError(f"fault {name}: {value!r} is out of range")
            staged[name] = int(value) if known[name].type in (int, "int") else float(value)
            if name == "stream_drop_every" and staged[name] != value:
                raise ValueError(f"fault {name}: expected a whole number, got {value!r}")
        for name, value in staged.items():
            setattr(self, name, value)


@dataclass
class EmulatorConfig:
    """Everything `mqd sim serve` can be told; tests build one directly."""

    seed: int = 42
    start: datetime | None = None  # simulated time at start (None = now)
    speed: float = 1.0  # simulated seconds per real second
    tick: float = 0.05  # s between market steps
    rate_limit: int = 200  # trading requests per key per window
    data_rate_limit: int = 200  # data requests per key per window
    rate_window: float = 60.0  # s
    key_id: str = "mqd-sim-key"
    secret_key: str = "mqd-sim-secret"
    universe: int = 0  # >0: a generated universe of this many assets (default: [sim])
    control: bool = True  # serve /_sim/...
    faults: Faults = field(default_factory=Faults)
    sim: SimSettings = field(default_factory=SimSettings)
