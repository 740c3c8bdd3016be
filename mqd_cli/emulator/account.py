"""The emulator's account routes next to ``/v2/account``: configurations, portfolio history and
activities, in Alpaca's shapes (OpenAPI ``AccountConfigurations``, ``PortfolioHistory`` and
``AccountTradingActivities``; alpaca-py ``AccountConfiguration``, ``PortfolioHistory``,
``TradeActivity``).

* ``GET``/``PATCH /v2/account/configurations``: ``AccountConfigurations``, one per market (a
  ``/_sim/reset`` starts a fresh one). PATCH changes the fields it names (``null`` leaves one as it
  is) and answers the whole configuration; a bad value or an unknown field is a 422 and changes
  nothing. Alpaca removed ``dtbp_check`` and ``pdt_check`` on 2026-07-06: they are accepted
  (``both``/``entry``/``exit``) so older clients work, and not shown. The settings are recorded,
  not enforced: ``suspend_trade`` or ``no_shorting`` do not stop orders.
* ``GET /v2/account/portfolio/history``: ``portfolio.py`` over the market's ``EquityHistory``.
* ``GET /v2/account/activities`` and ``/v2/account/activities/{activity_type}``:
  ``activities.py``, FILL activities recorded from the broker's trade updates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mqd_cli.emulator.http import invalid, json_response, read_json_body
from mqd_cli.emulator.params import parse_bool

if TYPE_CHECKING:
    from mqd_cli.brokers.sim.broker import SimBroker
    from mqd_cli.brokers.sim.history import EquityHistory
    from mqd_cli.clock import BacktestClock
    from mqd_cli.emulator.activities import FillActivities

__all__ = ["AccountConfigurations", "AccountRoutes"]

_BOOLEANS = (
    "suspend_trade",
    "no_shorting",
    "fractional_trading",
    "ptp_no_exception_entry",
    "disable_overnight_trading",
)
_REMOVED_CHECKS = ("dtbp_check", "pdt_check")  # removed by Alpaca on 2026-07-06
_CHECK_VALUES = ("both", "entry", "exit")
_MULTIPLIERS = ("1", "2", "4")


@dataclass(kw_only=True)
class AccountConfigurations:
    """``/v2/account/configurations``: what the account holder set (all fields Alpaca lists but
    the removed PDT checks)."""

    trade_confirm_email: str = "all"
    suspend_trade: bool = False
    no_shorting: bool = False
    fractional_trading: bool = True
    max_margin_multiplier: str = "2"
    max_options_trading_level: int = 0
    ptp_no_exception_entry: bool = False
    disable_overnight_trading: bool = False

    def to_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def update(self, body: Mapping[str, Any]) -> None:
        """Apply a PATCH body; raises a 422 ``Reply`` naming the first bad field (then nothing
        has changed)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(k for k in body if k not in known and k not in _REMOVED_CHECKS)
        if unknown:
            raise invalid(f"unknown configuration field(s): {', '.join(unknown)}")
        staged: dict[str, Any] = {}
        for name, value in body.items():
            if value is None:
                continue
            if name in _REMOVED_CHECKS:
                if value not in _CHECK_VALUES:
                    raise invalid(f"invalid {name}: {value!r} (one of both, entry, exit)")
            elif name in _BOOLEANS:
                if not isinstance(value, bool | str):
                    raise invalid(f"invalid {name}: {value!r} (true or false)")
                staged[name] = parse_bool(value, name)
            elif name == "trade_confirm_email":
                if value not in ("all", "none"):
                    raise invalid(f"invalid trade_confirm_email: {value!r} (all or none)")
                staged[name] = value
            elif name == "max_margin_multiplier":
                text = str(value).strip() if isinstance(value, int | str) else ""
                if isinstance(value, bool) or text not in _MULTIPLIERS:
                    raise invalid(f"invalid max_margin_multiplier: {value!r} (1, 2 or 4)")
                staged[name] = text
            elif name == "max_options_trading_level":
                if isinstance(value, bool) or value not in (0, 1, 2, 3):
                    raise invalid(f"invalid max_options_trading_level: {value!r} (0 to 3)")
                staged[name] = int(value)
        for name, value in staged.items():
            setattr(self, name, value)


class AccountRoutes:
    """The account handlers of ``Emulator`` (a part of it: they use its broker and clock)."""

    broker: SimBroker
    clock: BacktestClock
    account_config: AccountConfigurations
    history: EquityHistory
    activities: FillActivities
    _stop_activities: Callable[[], None]

    def _open_account(self) -> None:
        """The account state of a new market: configuration, equity history, activities."""
        from mqd_cli.brokers.sim.history import EquityHistory
        from mqd_cli.emulator.activities import FillActivities

        multiplier = str(self.broker.settings.multiplier)
        self.account_config = AccountConfigurations(
            max_margin_multiplier=multiplier if multiplier in _MULTIPLIERS else "2"
        )
        self.history = EquityHistory(self.broker)
        self.activities = FillActivities(self.broker.account.account_id)
        self._stop_activities = self.broker.subscribe(self.activities.record)

    def _close_account(self) -> None:
        self._stop_activities()

    async def get_account_configurations(self, request: Any) -> Any:
        return json_response(self.account_config.to_wire())

    async def patch_account_configurations(self, request: Any) -> Any:
        self.account_config.update(await read_json_body(request))
        return json_response(self.account_config.to_wire())

    async def get_portfolio_history(self, request: Any) -> Any:
        from mqd_cli.emulator.portfolio import portfolio_history

        now = self.clock.now()
        equity = self.broker.get_account().equity
        return json_response(portfolio_history(request.query_params, self.history, now, equity))

    async def list_activities(self, request: Any) -> Any:
        return json_response(self.activities.query(request.query_params))

    async def list_activities_of_type(self, request: Any) -> Any:
        kind = request.path_params["activity_type"]
        return json_response(self.activities.query(request.query_params, kind))
