"""The simulated account: positions, cash, equity, margin and buying power, in Decimal.

Positions are signed (short < 0) with a signed cost basis (qty x average entry) and realized
P&L on every reduction; cash is net of the per-share fee. Equity = cash + long + short market
value at the price feed's price now; buying power is Reg T style by ``multiplier``
(2: (equity - initial margin) x 2; 1: cash; 4: (equity - maintenance margin) x 4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING

from mqd_cli.brokers.sim.orders import ZERO
from mqd_cli.model import AccountReport, AssetClass, AssetInfo, PositionReport, PositionSide, Side

if TYPE_CHECKING:
    from mqd_cli.config.settings import SimSettings

__all__ = ["SimAccount", "SimPosition"]


@dataclass
class SimPosition:
    asset: AssetInfo
    qty: Decimal = ZERO  # signed
    cost: Decimal = ZERO  # signed cost basis: qty x average entry


class SimAccount:
    """Cash, positions and what they are worth. ``price_at(symbol, t)`` is the price feed."""

    def __init__(
        self,
        settings: SimSettings,
        price_at: Callable[[str, datetime], Decimal],
        *,
        account_id: str,
        account_number: str,
    ):
        self.settings = settings
        self.price_at = price_at
        self.account_id = account_id
        self.account_number = account_number
        self.cash = Decimal(settings.starting_cash)
        self.realized_pl = ZERO
        self.fees_paid = ZERO
        self.last_equity = self.cash
        self.positions: dict[str, SimPosition] = {}
        self._equity_day: date | None = None
        self._day_at: datetime | None = None  # ``roll_day``'s last instant
        # What the positions are worth at one instant, kept while the clock stands still (a
        # backtest asks for the account several times per order at the same moment): the
        # instant (by identity: a moving clock never hands out the same object twice), the
        # positions' version, and (long mv, short mv, initial margin, maintenance margin).
        self._version = 0
        # symbol -> (its asset, maintenance margin rate or None when paid in full)
        self._rates: dict[str, tuple[AssetInfo, Decimal | None]] = {}
        self._marked: tuple[datetime, int, tuple[Decimal, Decimal, Decimal, Decimal]] | None = None

    def position_qty(self, symbol: str) -> Decimal:
        """The signed position in ``symbol`` (zero when flat)."""
        pos = self.positions.get(symbol)
        return pos.qty if pos else ZERO

    def settle(
        self, asset: AssetInfo, side: Side, qty: Decimal, price: Decimal
    ) -> tuple[Decimal, Decimal]:
        """Book a fill: cash, fee, position and realized P&L. Returns (fee, position qty)."""
        signed = qty if side is Side.BUY else -qty
        fee = qty * Decimal(self.settings.fee_per_share)
        self.cash -= signed * price + fee
        self.fees_paid += fee
        symbol = asset.symbol
        pos = self.positions.get(symbol) or SimPosition(asset)
        old = pos.qty
        if old == 0 or (old > 0) == (signed > 0):
            pos.cost += signed * price
        else:
            closing = min(abs(signed), abs(old))
            avg = pos.cost / old
            direction = 1 if old > 0 else -1
            self.realized_pl += (price - avg) * closing * direction
            if abs(signed) >= abs(old):
                pos.cost = (signed + old) * price  # flipped: the rest opens at this price
            else:
                pos.cost -= avg * closing * direction
        pos.qty = old + signed
        self._version += 1
        if pos.qty == 0:
            self.positions.pop(symbol, None)
        else:
            self.positions[symbol] = pos
        return fee, pos.qty

    def roll_day(self, now: datetime) -> None:
        """On the first moment of a new exchange day, keep yesterday's equity as last_equity."""
        from mqd_cli.market_calendar import EXCHANGE_TZ

        if now is self._day_at:
            return  # the same instant as the last call (a backtest's clock standing still)
        self._day_at = now
        day = now.astimezone(EXCHANGE_TZ).date()
        if day != self._equity_day:
            if self._equity_day is not None:
                self.last_equity = self.totals(now)[0]
            self._equity_day = day

    def changed(self) -> None:
        """Positions or their price source changed outside ``settle``: value them again."""
        self._version += 1
        self._marked = None

    def totals(self, now: datetime) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
        """(equity, long mv, short mv, initial margin, maintenance margin) at ``now``."""
        marked = self._marked
        if marked is not None and marked[0] is now and marked[1] == self._version:
            lmv, smv, im, mm = marked[2]
        else:
            lmv = smv = im = mm = ZERO
            price_at, rates = self.price_at, self._rates
            for sym, pos in self.positions.items():
                mv = pos.qty * price_at(sym, now)
                if mv > 0:
                    lmv += mv
                else:
                    smv += mv
                rate = rates.get(sym)
                if rate is None or rate[0] is not pos.asset:
                    rate = rates[sym] = (pos.asset, _maintenance_rate(pos.asset))
                value = abs(mv)
                if rate[1] is None:  # paid in full: the whole value is margin
                    im += value
                    mm += value
                else:
                    im += value / 2
                    mm += value * rate[1]
            self._marked = (now, self._version, (lmv, smv, im, mm))
        return self.cash + lmv + smv, lmv, smv, im, mm

    def buying_power(self, now: datetime) -> Decimal:
        equity, _, _, im, mm = self.totals(now)
        return self._buying_power(equity, im, mm)

    def _buying_power(self, equity: Decimal, im: Decimal, mm: Decimal) -> Decimal:
        mult = self.settings.multiplier
        if mult <= 1:
            return max(ZERO, self.cash)
        if mult >= 4:
            return max(ZERO, (equity - mm) * 4)
        return max(ZERO, (equity - im) * mult)

    def report(self, now: datetime) -> AccountReport:
        """The account at ``now`` with Alpaca's buying powers.

        ``buying_power`` is by multiplier (see the module docstring); Reg T buying power is the
        overnight one, (equity - initial margin) x 2 on a margin account, the cash on a cash
        account; non-marginable buying power, what crypto and non-marginable assets may use, is
        the cash not needed as margin: min(cash, equity - initial margin), never below zero.
        """
        from mqd_cli.market_calendar import EXCHANGE_TZ, previous_trading_day

        equity, lmv, smv, im, mm = self.totals(now)
        mult = self.settings.multiplier
        excess = max(ZERO, equity - im)
        cash_only = max(ZERO, self.cash)
        margin = mult >= 2
        buying_power = self._buying_power(equity, im, mm)
        return AccountReport(
            id=self.account_id,
            account_number=self.account_number,
            status="ACTIVE",
            currency="USD",
            cash=self.cash,
            equity=equity,
            buying_power=buying_power,
            portfolio_value=equity,
            long_market_value=lmv,
            short_market_value=smv,
            initial_margin=im,
            maintenance_margin=mm,
            last_equity=self.last_equity,
            multiplier=Decimal(mult),
            shorting_enabled=margin,
            crypto_status="ACTIVE",
            regt_buying_power=excess * 2 if margin else cash_only,
            non_marginable_buying_power=min(cash_only, excess) if margin else cash_only,
            options_buying_power=excess if margin else cash_only,
            effective_buying_power=buying_power,
            sma=equity,
            accrued_fees=ZERO,
            pending_transfer_in=ZERO,
            pending_transfer_out=ZERO,
            last_maintenance_margin=mm,
            position_market_value=lmv + abs(smv),
            intraday_adjustments=ZERO,
            pending_reg_taf_fees=ZERO,
            options_approved_level=0,
            options_trading_level=0,
            crypto_tier=0,
            balance_asof=previous_trading_day(now.astimezone(EXCHANGE_TZ).date()),
        )

    def position_report(self, pos: SimPosition, now: datetime, held: Decimal) -> PositionReport:
        """``pos`` at ``now``; ``held`` is the qty working sell orders hold (not available)."""
        from mqd_cli.market_calendar import EXCHANGE_TZ

        sym = pos.asset.symbol
        price = self.price_at(sym, now)
        avg = (pos.cost / pos.qty).quantize(Decimal("0.000001")).normalize()
        available = pos.qty - held if pos.qty > 0 else pos.qty
        day_start = datetime.combine(now.astimezone(EXCHANGE_TZ).date(), time(0), EXCHANGE_TZ)
        return PositionReport(
            symbol=sym,
            qty=pos.qty,
            avg_entry_price=avg,
            side=PositionSide.LONG if pos.qty > 0 else PositionSide.SHORT,
            asset_class=pos.asset.asset_class,
            asset_id=pos.asset.id,
            exchange=pos.asset.exchange,
            qty_available=max(ZERO, available) if pos.qty > 0 else available,
            market_value=pos.qty * price,
            cost_basis=pos.cost,
            unrealized_pl=pos.qty * price - pos.cost,
            current_price=price,
            lastday_price=self.price_at(sym, day_start),
        )


def _maintenance_rate(asset: AssetInfo) -> Decimal | None:
    """The maintenance margin rate of a position in ``asset`` (its initial margin is half its
    value); None when it is paid in full (crypto, non-marginable): both margins are its value."""
    if asset.asset_class is AssetClass.CRYPTO or not asset.marginable:
        return None
    return (asset.margin_requirement_long or Decimal(30)) / 100
