"""The `mqd run` dashboard fits the terminal: a compact layout below 40 rows keeps every part
(the protections and the last refusal included) on an 80x24 screen."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rich.console import Console

from mqd_cli.commands.run import _dashboard
from mqd_cli.model import OrderIntent, OrderStatus, Side
from mqd_cli.orders.tracked import Fill
from mqd_cli.protections.base import Lock
from mqd_cli.trading.engine import EngineStats, Refusal

T = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
D = Decimal


class _Order:
    def __init__(self, i: int):
        self.client_order_id = f"mqd-host-1234-sma_cross-AAPL-{i}"
        self.side = Side.BUY
        self.qty = D(10)
        self.symbol = "AAPL"
        self.status = OrderStatus.NEW


class _Session:
    """What the dashboard reads: ``snapshot()`` (``LiveSession.snapshot``'s keys) and
    ``is_sim``; a busy session with more of everything than a small screen holds."""

    is_sim = False

    def snapshot(self) -> dict:
        stats = EngineStats(bars=1200, intents=80, submitted=70, fills=66, trades=30, wins=12)
        stats.refused["risk"] = 5
        stats.refused["protections"] = 3
        fills = [
            Fill(
                fill_id=f"x{i}",
                client_order_id=f"c{i}",
                symbol="MSFT",
                side=Side.SELL,
                qty=D(5),
                price=D("441.25"),
                timestamp=T + timedelta(minutes=i),
            )
            for i in range(6)
        ]
        lock = Lock(
            id=1,
            protection="stoploss_guard",
            scope="global",
            symbol=None,
            side=None,
            reason="3 stop-loss exits within 1h",
            start=T,
            end=T + timedelta(hours=1),
            evidence={},
        )
        intent = OrderIntent("AAPL", Side.BUY, qty=D(100000))
        refusal = Refusal(
            "risk", "max_order_notional", "order value 18,000,000.00 > 10,000", intent, T
        )
        return {
            "market_now": T,
            "equity": D("100123.45"),
            "pnl": D("123.45"),
            "risk_state": "ok",
            "dry_run": False,
            "stats": stats,
            "positions": {
                s: (D(10), D("180.10"), D("181.00"))
                for s in ("AAPL", "MSFT", "NVDA", "TSLA", "AMD")
            },
            "open_orders": [_Order(i) for i in range(8)],
            "fills": fills,
            "locks": [lock],
            "stream": {"connected": True, "reconnects": 2, "events": {"fill": 66}},
            "throttle": None,
            "refusals": [refusal],
        }


def _screen(height: int) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=80, height=height, color_system=None, force_terminal=False)
    console.print(_dashboard(_Session(), height))
    return out.getvalue().splitlines()


def test_the_dashboard_fits_80_by_24_with_the_protections_and_the_last_refusal():
    lines = _screen(24)
    assert len(lines) <= 24, "\n".join(lines)
    assert all(len(line) <= 80 for line in lines)
    text = "\n".join(lines)
    assert "protections: stoploss_guard" in text
    assert "last refusal: risk (max_order_notional)" in text
    assert "open orders +5" in text  # 8 open orders, 3 shown: the rest counted


def test_a_tall_terminal_gets_the_full_tables():
    text = "\n".join(_screen(60))
    assert "3 stop-loss exits within 1h" in text  # the lock's reason column
    assert text.count("mqd-host-1234-sma_cross-AAPL-") == 6
