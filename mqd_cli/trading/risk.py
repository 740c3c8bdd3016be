"""The pre-trade risk gate: the last check of an order intent before symbol validation.

``RiskGate.check`` is a pure function of the intent, the current price, positions and prices,
the number of open orders and the buying power (plus the kill-switch file), and every refusal
says which rule refused and why, with the numbers::

    max_order_notional: order 12,500.00 > limit 10,000.00

Rules, in the order they are checked:

1. kill switch: if ``[risk] kill_switch_file`` exists the gate becomes HALTED (checked on every
   call; deleting the file does not resume a running loop: ``resume()`` or a restart does).
2. state: HALTED refuses everything, exits included. REDUCING allows only reducing orders.
3. invalid intent: no positive qty or notional, an unknown side, no usable price.
4. A *reducing* order (it moves an existing position toward zero and never past it) passes the
   remaining rules: limits cap risk, and blocking an exit would add risk.
5. ``allowed_symbols`` (empty = any symbol).
6. ``max_open_orders``: allowed while open orders + this one <= the limit.
7. ``max_order_notional``: allowed when the order's value <= the limit.
8. ``max_position_notional``: allowed when |position after the fill| x price <= the limit.
9. ``max_gross_exposure``: allowed when the sum of |position| x price over all symbols, after
   the fill, <= the limit.
10. buying power (buys only, with ``check_buying_power``): allowed when value <= the buying
    power that applies to the asset. Given the account's ``BuyingPower``, a marginable buy
    (equities) is checked against Reg T buying power (``regt_buying_power``, else
    ``buying_power``), a buy paid in cash (crypto, non-marginable assets: Alpaca does not lend on
    them) against ``non_marginable_buying_power``. A plain number is used as it is.

A limit of 0 switches its rule off. Values use the most conservative price: a limit or stop
price above the market for a buy, the market price otherwise; notional intents use their
notional.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from mqd_cli.config.settings import RiskSettings
from mqd_cli.model import AccountReport, OrderIntent, Side

if TYPE_CHECKING:
    from mqd_cli.symbols.properties import SymbolProperties

_ZERO = Decimal(0)


class RiskState(Enum):
    ACTIVE = "active"
    REDUCING = "reducing"  # only orders that shrink a position toward zero
    HALTED = "halted"  # no orders at all

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RiskDecision:
    """The gate's answer. ``rule`` is the refusing rule's name ("" when allowed)."""

    allowed: bool
    reason: str
    rule: str = ""

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True)
class BuyingPower:
    """The two buying powers of an account the gate chooses between.

    ``regt``: Reg T buying power, for marginable buys (equities). ``non_marginable``: the cash
    buying power, for what Alpaca does not lend on (crypto, non-marginable assets).
    """

    regt: Decimal
    non_marginable: Decimal

    @classmethod
    def of(cls, account: AccountReport) -> BuyingPower:
        """From ``GET /v2/account``. A payload without ``regt_buying_power`` falls back to
        ``buying_power``; without ``non_marginable_buying_power`` to the cash, never above the
        buying power (the conservative reading)."""
        regt = account.regt_buying_power
        cash_only = account.non_marginable_buying_power
        if cash_only is None:
            cash_only = min(max(_ZERO, account.cash), account.buying_power)
        return cls(
            regt=account.buying_power if regt is None else regt,
            non_marginable=cash_only,
        )

    def applicable(self, *, marginable: bool) -> tuple[Decimal, str]:
        """The power that pays for a buy, and its name for a refusal."""
        if marginable:
            return self.regt, "Reg T buying power"
        return self.non_marginable, "non-marginable buying power"


def marginable(props: SymbolProperties | None, symbol: str) -> bool:
    """Whether a buy of ``symbol`` may use margin: not for crypto or a non-marginable asset.
    Without stored properties a pair (``BTC/USD``) counts as crypto, anything else as equity."""
    if props is not None:
        return props.marginable_buy
    return "/" not in symbol


def money(value: Decimal) -> str:
    """``12500`` -> ``"12,500.00"``: amounts as an operator reads them."""
    return f"{value:,.2f}"


def _qty(value: Decimal) -> str:
    text = format(value.normalize(), "f") if value else "0"
    return text


class RiskGate:
    """Pre-trade limits from ``[risk]``, with ACTIVE / REDUCING / HALTED states."""

    def __init__(self, settings: RiskSettings, *, halted: bool = False):
        self.settings = settings
        self._allowed = frozenset(s.upper() for s in settings.allowed_symbols)
        self._kill_file = (
            Path(settings.kill_switch_file).expanduser() if (settings.kill_switch_file) else None
        )
        self._state = RiskState.ACTIVE
        self._state_reason = ""
        if halted:
            self.halt("halted at start (--halt)")

    # -- state ------------------------------------------------------------------------------------

    @property
    def state(self) -> RiskState:
        self._check_kill_switch()
        return self._state

    def halt(self, reason: str) -> None:
        """Refuse every order until ``resume()``."""
        self._state, self._state_reason = RiskState.HALTED, reason

    def reduce_only(self, reason: str) -> None:
        """Allow only orders that reduce a position until ``resume()``."""
        if self._state is not RiskState.HALTED:
            self._state, self._state_reason = RiskState.REDUCING, reason

    def resume(self) -> None:
        """Back to ACTIVE (stays HALTED while the kill-switch file exists)."""
        self._state, self._state_reason = RiskState.ACTIVE, ""
        self._check_kill_switch()

    def _check_kill_switch(self) -> None:
        if (
            self._kill_file is not None
            and self._state is not RiskState.HALTED
            and (self._kill_file.exists())
        ):
            self.halt(f"kill switch file {self._kill_file} exists")

    # -- the check --------------------------------------------------------------------------------

    def check(
        self,
        intent: OrderIntent,
        *,
        price: Decimal,
        positions: dict[str, Decimal],
        prices: dict[str, Decimal],
        open_orders: int,
        buying_power: Decimal | BuyingPower,
        marginable: bool = True,
    ) -> RiskDecision:
        """Allow or refuse ``intent``. ``price`` is the symbol's current price; ``positions``
        are signed quantities by symbol and ``prices`` their current prices (used for gross
        exposure); ``open_orders`` counts orders open now, before this one. ``marginable``
        says whether a buy of the symbol may use margin (see ``marginable``): it picks the
        power of a ``BuyingPower``."""
        s = self.settings
        state = self.state
        if state is RiskState.HALTED:
            return _refuse("halted", f"halted: {self._state_reason}; no orders are sent")

        if intent.side not in (Side.BUY, Side.SELL):
            return _refuse("invalid_intent", f"invalid_intent: unknown side {intent.side!r}")
        ref_price = self._reference_price(intent, price)
        if ref_price is None:
            return _refuse(
                "invalid_intent",
                f"invalid_intent: no usable price for {intent.symbol} (got {price})",
            )
        if intent.qty is not None and intent.qty > 0:
            qty, value = intent.qty, intent.qty * ref_price
        elif intent.qty is None and intent.notional is not None and intent.notional > 0:
            qty, value = intent.notional / ref_price, intent.notional
        else:
            return _refuse(
                "invalid_intent",
                "invalid_intent: an order needs a positive qty "
                f"or notional (qty={intent.qty}, notional={intent.notional})",
            )

        current = positions.get(intent.symbol, _ZERO)
        signed = qty if intent.side is Side.BUY else -qty
        after = current + signed
        reducing = (
            current != 0
            and abs(after) <= abs(current)
            and (after == 0 or ((after > 0) == (current > 0)))
        )
        if reducing:
            return RiskDecision(
                True, f"reduces {intent.symbol} position {_qty(current)} -> {_qty(after)}"
            )
        if state is RiskState.REDUCING:
            return _refuse(
                "reducing",
                f"reducing: only exits are allowed "
                f"({self._state_reason}); {intent.side} {intent.symbol} would move "
                f"the position {_qty(current)} -> {_qty(after)}",
            )

        if self._allowed and intent.symbol.upper() not in self._allowed:
            return _refuse(
                "allowed_symbols",
                f"allowed_symbols: {intent.symbol} is not in "
                f"[risk] allowed_symbols ({', '.join(sorted(self._allowed))})",
            )
        if s.max_open_orders and open_orders + 1 > s.max_open_orders:
            return _refuse(
                "max_open_orders",
                f"max_open_orders: {open_orders} orders open, limit {s.max_open_orders}",
            )
        if s.max_order_notional and value > s.max_order_notional:
            return _refuse(
                "max_order_notional",
                f"max_order_notional: order {money(value)} > limit {money(s.max_order_notional)}",
            )
        position_value = abs(after) * ref_price
        if s.max_position_notional and position_value > s.max_position_notional:
            return _refuse(
                "max_position_notional",
                f"max_position_notional: {intent.symbol} "
                f"position would be {money(position_value)} > limit "
                f"{money(s.max_position_notional)}",
            )
        if s.max_gross_exposure:
            gross = position_value
            symbol, price_of = intent.symbol, prices.get
            for sym, q in positions.items():
                if sym == symbol or not q:
                    continue
                p = price_of(sym)
                if p is None:
                    return _refuse(
                        "max_gross_exposure",
                        f"max_gross_exposure: no price for "
                        f"held symbol {sym}, cannot compute exposure",
                    )
                gross += abs(q) * p
            if gross > s.max_gross_exposure:
                return _refuse(
                    "max_gross_exposure",
                    f"max_gross_exposure: gross exposure "
                    f"would be {money(gross)} > limit {money(s.max_gross_exposure)}",
                )
        if s.check_buying_power and intent.side is Side.BUY:
            if isinstance(buying_power, BuyingPower):
                available, name = buying_power.applicable(marginable=marginable)
                why = "" if marginable else f" ({intent.symbol} is paid in cash, not on margin)"
            else:
                available, name, why = buying_power, "buying power", ""
            if value > available:
                return _refuse(
                    "buying_power",
                    f"buying_power: order {money(value)} > {name} {money(available)}{why}",
                )
        return RiskDecision(True, "within limits")

    @staticmethod
    def _reference_price(intent: OrderIntent, price: Decimal) -> Decimal | None:
        candidates = [
            p for p in (price, intent.limit_price, intent.stop_price) if p is not None and p > 0
        ]
        if not candidates:
            return None
        # A buy may pay up to its limit/stop; a sell is valued at the market.
        return (
            max(candidates)
            if intent.side is Side.BUY
            else (price if price is not None and price > 0 else candidates[0])
        )


def _refuse(rule: str, reason: str) -> RiskDecision:
    return RiskDecision(False, reason, rule)
