"""The strategy interface: what the engine calls, and what a strategy may read.

A strategy turns bars and fills into ``OrderIntent`` lists. It never places orders, never reads
the system time and never talks to the network: everything it knows comes from its arguments
and the ``StrategyContext`` (positions, cash, open orders, the injected clock). The engine then
sends each intent through protections, the risk gate and symbol validation, so a strategy may
ask for anything; the safety systems decide.

Write your own by subclassing ``BaseStrategy`` (or any class with the four hooks and a ``name``)
and point ``[strategy] name`` at it as ``"package.module:Class"`` or ``"path/to/file.py:Class"``.
Declare ``PARAMS`` to have ``[strategy.params]`` validated with errors naming the TOML path.

The contract (what the engine guarantees, in ``mqd run`` and ``mqd backtest`` alike):

* ``ctx.position(symbol)`` is the signed quantity of the fills delivered so far: every share the
  broker filled, counted once (a fill recovered after a stream outage included), nothing that is
  only ordered.
* ``ctx.open_orders(symbol)`` holds the orders sent and not yet final (filled, canceled,
  expired, rejected), including one whose submit is not answered yet. Intents a hook returned
  are *not* in it until they are sent.
* ``on_fill`` runs once per delivered fill; the quantities of the fills delivered for an order
  sum exactly to the broker's ``filled_qty`` (a real execution and the gap-fill fill that stood
  for it are never both delivered). When it runs, ``position`` already includes that fill.
* Intents are sent after the hook returns, each checked at the moment it goes out against the
  tracker's position and open orders, not against the state the hook saw:
  - identical intents waiting together (from several hooks or several fills before the loop
    sent any) are sent once; the copies are refused as ``engine:coalesced``;
  - an intent identical to an acknowledged open order is refused (``engine:duplicate_open_order``);
  - an intent that reduced the position the hook saw never opens or flips one: it is capped to
    the part of the position that open orders on its side do not already close, and refused
    (``engine:position_covered``) when nothing is left.

So a strategy may simply return "sell my position" from every hook that sees one: it is sent
once. It must not assume an intent was sent because it returned it: read ``open_orders``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mqd_cli.errors import ConfigError
from mqd_cli.model import Bar, FillReport, OrderIntent

if TYPE_CHECKING:
    from mqd_cli.clock import Clock


@runtime_checkable
class StrategyContext(Protocol):
    """What a strategy may read about the account. The engine provides it; tests use
    ``MemoryContext``. Quantities are signed (negative = short)."""

    params: dict[str, Any]

    @property
    def clock(self) -> Clock: ...
    @property
    def equity(self) -> Decimal: ...
    @property
    def cash(self) -> Decimal: ...

    def position(self, symbol: str) -> Decimal: ...
    def positions(self) -> dict[str, Decimal]: ...
    def avg_entry_price(self, symbol: str) -> Decimal | None: ...
    def open_orders(self, symbol: str | None = None) -> list: ...


@runtime_checkable
class Strategy(Protocol):
    """The four hooks the engine calls; each returns the order intents it wants sent.

    Optional: ``warm_up(bar)`` feeds a history bar before trading starts (indicators only, no
    orders). A strategy without it is warmed up through ``on_bar`` with its intents discarded.
    """

    name: str

    def on_start(self, ctx: StrategyContext) -> list[OrderIntent]: ...
    def on_bar(self, bar: Bar, ctx: StrategyContext) -> list[OrderIntent]: ...
    def on_fill(self, fill: FillReport, ctx: StrategyContext) -> list[OrderIntent]: ...
    def on_stop(self, ctx: StrategyContext) -> list[OrderIntent]: ...


# -- parameters -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One ``[strategy.params]`` key: its type (int, Decimal, float, bool or str), default,
    meaning, and inclusive bounds. ``default=None`` means "not set" (optional)."""

    type: type
    default: Any
    doc: str
    min: Any = None
    max: Any = None


_TYPE_NAMES = {
    int: "an integer",
    Decimal: "a decimal number or decimal string",
    float: "a number",
    bool: "true or false",
    str: "a string",
}


def _convert(p: Param, value: Any, path: str) -> tuple[Any, str | None]:
    bad = f"{path}: expected {_TYPE_NAMES.get(p.type, p.type.__name__)}, got {value!r}"
    if isinstance(value, bool) and p.type is not bool:
        return None, bad
    if p.type is bool or p.type is str:
        return (value, None) if isinstance(value, p.type) else (None, bad)
    if p.type is int:
        return (value, None) if isinstance(value, int) else (None, bad)
    if p.type is float:
        return (float(value), None) if isinstance(value, int | float) else (None, bad)
    if p.type is Decimal:
        if not isinstance(value, int | float | str | Decimal):
            return None, bad
        try:
            out = Decimal(str(value).strip())
        except InvalidOperation:
            return None, bad
        return (out, None) if out.is_finite() else (None, bad)
    return (value, None) if isinstance(value, p.type) else (None, bad)


def validate_params(
    spec: Mapping[str, Param],
    given: Mapping[str, Any],
    *,
    strategy: str,
    path: str = "strategy.params",
) -> dict[str, Any]:
    """Check ``given`` against ``spec`` and fill defaults; ``ConfigError`` lists every problem.

    Unknown keys suggest the nearest known one; types are never coerced (``"10"`` is not an int).
    """
    import difflib

    problems: list[str] = []
    out: dict[str, Any] = {name: p.default for name, p in spec.items()}
    for key, value in given.items():
        where = f"{path}.{key}"
        if key not in spec:
            near = difflib.get_close_matches(key, list(spec), n=1, cutoff=0.6)
            hint = f" (did you mean '{path}.{near[0]}'?)" if near else ""
            known = ", ".join(sorted(spec)) or "none"
            problems.append(f"{where}: unknown parameter of {strategy}{hint}; known: {known}")
            continue
        p = spec[key]
        converted, problem = _convert(p, value, where)
        if problem is None and p.min is not None and converted < p.min:
            problem = f"{where}: must be at least {p.min}, got {value!r}"
        if problem is None and p.max is not None and converted > p.max:
            problem = f"{where}: must be at most {p.max}, got {value!r}"
        if problem:
            problems.append(problem)
        else:
            out[key] = converted
    if problems:
        raise ConfigError(problems, f"see `{strategy}` in the README (Strategies) for its params")
    return out


def sizing_problems(params: Mapping[str, Any], path: str) -> list[str]:
    """The cross-field rules of the ``qty`` / ``notional`` sizing pair (at most one, both > 0)."""
    problems = []
    if params["qty"] is not None and params["notional"] is not None:
        problems.append(f"{path}: set either qty or notional, not both")
    for key in ("qty", "notional"):
        if params[key] is not None and params[key] <= 0:
            problems.append(f"{path}.{key}: must be greater than 0, got {params[key]}")
    return problems


# -- a convenient base class and a plain context ----------------------------------------------


class BaseStrategy:
    """No-op hooks, parameter storage and the symbols list; subclass and override ``on_bar``.

    The loader constructs strategies as ``cls(params=<validated dict>, symbols=<tuple>)``.
    ``check_params`` is called after ``PARAMS`` validation for cross-field rules; raise
    ``ConfigError`` naming the TOML path there.
    """

    name: str = ""
    PARAMS: Mapping[str, Param] = {}

    def __init__(self, params: Mapping[str, Any] | None = None, symbols: Sequence[str] = ()):
        self.params: dict[str, Any] = dict(params or {})
        self.symbols: tuple[str, ...] = tuple(symbols)
        if not self.name:
            self.name = type(self).__name__

    @classmethod
    def check_params(cls, params: dict[str, Any], path: str = "strategy.params") -> None:
        """Cross-field validation hook (nothing by default)."""

    def on_start(self, ctx: StrategyContext) -> list[OrderIntent]:
        return []

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> list[OrderIntent]:
        return []

    def on_fill(self, fill: FillReport, ctx: StrategyContext) -> list[OrderIntent]:
        return []

    def on_stop(self, ctx: StrategyContext) -> list[OrderIntent]:
        return []


class MemoryContext:
    """A ``StrategyContext`` over plain dicts: for tests, notebooks and simple loops.

    ``apply_fill`` keeps positions, average entry prices and cash in step with fills (average
    price resets when a position crosses zero, as a broker reports it).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        cash: Decimal = Decimal("100000"),
        params: Mapping[str, Any] | None = None,
        open_orders: Callable[[str | None], list] | None = None,
    ):
        self.clock = clock
        self.cash = cash
        self.params: dict[str, Any] = dict(params or {})
        self._positions: dict[str, Decimal] = {}
        self._avg: dict[str, Decimal] = {}
        self._last: dict[str, Decimal] = {}
        self._open_orders = open_orders

    @property
    def equity(self) -> Decimal:
        return self.cash + sum(
            (
                q * self._last.get(s, self._avg.get(s, Decimal(0)))
                for s, q in self._positions.items()
            ),
            Decimal(0),
        )

    def mark(self, symbol: str, price: Decimal) -> None:
        """Record the latest price of ``symbol`` (used by ``equity``)."""
        self._last[symbol] = price

    def position(self, symbol: str) -> Decimal:
        return self._positions.get(symbol, Decimal(0))

    def positions(self) -> dict[str, Decimal]:
        return {s: q for s, q in self._positions.items() if q}

    def avg_entry_price(self, symbol: str) -> Decimal | None:
        return self._avg.get(symbol) if self._positions.get(symbol) else None

    def open_orders(self, symbol: str | None = None) -> list:
        return self._open_orders(symbol) if self._open_orders else []

    def set_position(self, symbol: str, qty: Decimal, avg_entry_price: Decimal) -> None:
        self._positions[symbol] = qty
        self._avg[symbol] = avg_entry_price

    def apply_fill(self, fill: FillReport) -> None:
        signed = fill.qty if fill.side.value == "buy" else -fill.qty
        old = self._positions.get(fill.symbol, Decimal(0))
        new = old + signed
        if old == 0 or (old > 0) != (new > 0) and new != 0:
            self._avg[fill.symbol] = fill.price  # opened, or crossed zero
        elif abs(new) > abs(old):
            avg = self._avg.get(fill.symbol, fill.price)
            self._avg[fill.symbol] = (avg * abs(old) + fill.price * fill.qty) / abs(new)
        self._positions[fill.symbol] = new
        self.cash -= signed * fill.price + fill.fee
        self._last[fill.symbol] = fill.price
