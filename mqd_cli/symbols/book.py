"""``SymbolBook``: the in-memory symbol properties the run loop checks every order against."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from mqd_cli.model import OrderIntent
from mqd_cli.symbols.properties import SymbolProperties, props_from_row
from mqd_cli.symbols.rounding import Adjustment, RoundingError, round_intent
from mqd_cli.symbols.rules import Problem, check_intent, class_problem
from mqd_cli.symbols.spelling import crypto_pair

if TYPE_CHECKING:
    from mqd_cli.clock import Clock
    from mqd_cli.store import Store

_ZERO = Decimal(0)


class SymbolBook:
    """In-memory symbol properties over the store; loads the whole table on first use."""

    def __init__(self, store: Store, clock: Clock, *, stale_after: timedelta = timedelta(days=1)):
        self.store = store
        self.clock = clock
        self.stale_after = stale_after
        self._rows: dict[str, str] | None = None
        self._props: dict[str, SymbolProperties] = {}
        self._decimals: dict[str, Decimal] = {}

    def load(self) -> int:
        """(Re)load the table; returns the number of assets."""
        return len(self._load())

    def _load(self) -> dict[str, str]:
        from mqd_cli.store import symbols as db

        rows = {line[: line.index("\t")]: line for line in db.snapshot_lines(self.store)}
        self._rows = rows
        self._props = {}
        return rows

    def _table(self) -> dict[str, str]:
        """The rows by symbol, loaded on first use."""
        return self._load() if self._rows is None else self._rows

    def reload(self) -> None:
        """Forget the cache (after a sync); the next lookup loads it again."""
        self._rows = None
        self._props = {}

    def __len__(self) -> int:
        return len(self._table())

    def symbols(self) -> list[str]:
        return list(self._table())

    def get(self, symbol: str) -> SymbolProperties | None:
        props = self._props.get(symbol)
        if props is not None:
            return props
        rows = self._table()
        row = rows.get(symbol)
        if row is None:
            alias = _alias(symbol)
            row = rows.get(alias) if alias else None
            if row is None:
                return None
        from mqd_cli.store.symbols import unpack

        props = self._props[symbol] = props_from_row(unpack(row), self._decimals)
        return props

    # -- freshness

    def last_sync(self) -> datetime | None:
        from mqd_cli.store import symbols as db

        run = db.last_sync(self.store)
        return datetime.fromisoformat(run["finished_at"]) if run else None

    def staleness(self) -> timedelta | None:
        last = self.last_sync()
        return None if last is None else self.clock.now() - last

    def is_stale(self) -> bool:
        age = self.staleness()
        return age is None or age > self.stale_after

    # -- orders

    def validate(
        self, intent: OrderIntent, *, price: Decimal | None = None, position_qty: Decimal = _ZERO
    ) -> list[Problem]:
        props = self.get(intent.symbol)
        if props is None:
            return [_unknown(intent.symbol)]
        return check_intent(props, intent, price=price, position_qty=position_qty)

    def round(self, intent: OrderIntent) -> tuple[OrderIntent, list[Adjustment]]:
        """Side-aware rounding; raises ``RoundingError`` when a size rounds to zero."""
        props = self.get(intent.symbol)
        if props is None or not props.supported:  # no rounding rules for an unknown class
            return intent, []
        return round_intent(props, intent)

    def prepare(
        self, intent: OrderIntent, *, price: Decimal | None = None, position_qty: Decimal = _ZERO
    ) -> tuple[OrderIntent | None, list[Adjustment], list[Problem]]:
        """Round, then validate: the order to send (None when any problem remains)."""
        props = self.get(intent.symbol)
        if props is None:
            return None, [], [_unknown(intent.symbol)]
        unsupported = class_problem(props)
        if unsupported is not None:
            return None, [], [unsupported]
        try:
            rounded, adjustments = round_intent(props, intent)
        except RoundingError as exc:
            return None, exc.adjustments, [exc.problem]
        problems = check_intent(props, rounded, price=price, position_qty=position_qty)
        return (None if problems else rounded), adjustments, problems

    def correct(
        self, intent: OrderIntent, *, price: Decimal | None = None, position_qty: Decimal = _ZERO
    ) -> tuple[OrderIntent | None, list[Problem]]:
        """Apply rounding and every fix the problems offer; None when it cannot be fixed.

        Returns the corrected order and the problems that were fixed (or the ones that remain
        when the order cannot be fixed). Used by ``mqd symbols validate --fix``.
        """
        fixed: list[Problem] = []
        current = intent
        for _ in range(8):
            props = self.get(current.symbol)
            if props is None:
                return None, [_unknown(current.symbol)]
            unsupported = class_problem(props)
            if unsupported is not None:
                return None, [unsupported]
            try:
                current, _ = round_intent(props, current)
            except RoundingError as exc:
                return None, [exc.problem]
            problems = check_intent(props, current, price=price, position_qty=position_qty)
            if not problems:
                return current, fixed
            fixable = next((p for p in problems if p.corrected is not None), None)
            if fixable is None or fixable.corrected is None:
                return None, problems
            fixed.append(fixable)
            current = fixable.corrected
        return None, problems


def _unknown(symbol: str) -> Problem:
    return Problem(
        "UNKNOWN_SYMBOL",
        f"{symbol} is not a known asset",
        "check the ticker, or run `mqd symbols sync` if it was listed recently",
    )


def _alias(symbol: str) -> str | None:
    """Other spellings Alpaca accepts: lower case, legacy crypto ``BTCUSD`` for ``BTC/USD``."""
    s = symbol.strip().upper()
    if "/" not in s:
        pair = crypto_pair(s)
        if pair is not None:
            return pair
    return s if s != symbol else None
