"""``buy_and_hold``: buy each symbol once, then hold until the end.

The buy is sent on the first bar of each symbol rather than in ``on_start``: by then the engine
has a price for the risk gate and the simulated fill. A symbol already held (a restart, or a
position opened by hand) is not bought again, and a symbol is bought at most once per run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from mqd_cli.errors import ConfigError
from mqd_cli.model import Bar, OrderIntent, Side
from mqd_cli.strategies.base import BaseStrategy, Param, StrategyContext, sizing_problems


class BuyAndHold(BaseStrategy):
    """One buy per symbol (``qty`` shares or ``notional`` dollars), never sells."""

    name = "buy_and_hold"
    PARAMS: Mapping[str, Param] = {
        "qty": Param(
            Decimal,
            None,
            "Shares to buy per symbol (default 10 when notional is unset).",
            min=Decimal(0),
        ),
        "notional": Param(
            Decimal, None, "Dollars to buy per symbol instead of qty.", min=Decimal(0)
        ),
    }

    @classmethod
    def check_params(cls, params: dict[str, Any], path: str = "strategy.params") -> None:
        if problems := sizing_problems(params, path):
            raise ConfigError(problems, "see buy_and_hold in the README (Strategies)")

    def __init__(self, params: Mapping[str, Any] | None = None, symbols: Sequence[str] = ()):
        full = {name: p.default for name, p in self.PARAMS.items()}
        full.update(params or {})
        super().__init__(full, symbols)
        self.notional: Decimal | None = full["notional"]
        self.qty: Decimal | None = full["qty"]
        if self.qty is None and self.notional is None:
            self.qty = Decimal(10)
        self.bought: set[str] = set()

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> list[OrderIntent]:
        symbol = bar.symbol
        if symbol in self.bought:
            return []
        if self.symbols and symbol not in self.symbols:
            return []
        self.bought.add(symbol)
        if ctx.position(symbol) or ctx.open_orders(symbol):
            return []  # already held or being bought: hold what is there
        if self.notional is not None:
            return [
                OrderIntent(
                    symbol, Side.BUY, notional=self.notional, strategy=self.name, reason="entry"
                )
            ]
        return [OrderIntent(symbol, Side.BUY, qty=self.qty, strategy=self.name, reason="entry")]
