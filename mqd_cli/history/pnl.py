"""Realized and unrealized PnL by UTC day or ISO week, and the equity curve.

Realized PnL is the sum of the trades closed in the period (net of fees, as each trade keeps
it). Unrealized PnL and equity are the period's last equity sample of the runs that traded on
the journal (``mqd run`` keeps one every few minutes of market time, with each position's
unrealized PnL at the engine's last price): what was open at the end of the period. A period
without a sample (no run was going) shows no unrealized PnL or equity. Filtered by symbol, the
unrealized PnL is those symbols' and equity (the account's) is not shown; filtered by strategy,
neither is (positions are per symbol, not per strategy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from mqd_cli.history.query import Filters, HistorySource, Paged, page_of
from mqd_cli.store import history as q
from mqd_cli.store import runs as runs_q

ZERO = Decimal(0)
PERIODS = ("day", "week")


def bucket(at: datetime, by: str) -> tuple[str, datetime, datetime]:
    """The period holding ``at``: its label and [start, end) in UTC. A week starts on Monday
    and is labelled by its ISO year and number (``2026-W02``)."""
    t = at.astimezone(UTC)
    day = datetime(t.year, t.month, t.day, tzinfo=UTC)
    if by == "day":
        return f"{day:%Y-%m-%d}", day, day + timedelta(days=1)
    if by == "week":
        start = day - timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}", start, start + timedelta(days=7)
    raise ValueError(f"unknown period {by!r}: expected one of {', '.join(PERIODS)}")


@dataclass(frozen=True)
class Period:
    label: str
    start: datetime
    end: datetime
    trades: int
    wins: int
    realized_pnl: Decimal
    unrealized_pnl: Decimal | None  # at the period's last sample
    equity: Decimal | None  # the account's, at the period's last sample
    sampled_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.label,
            "start": self.start,
            "end": self.end,
            "trades": self.trades,
            "wins": self.wins,
            "realized_pnl": self.realized_pnl,
            "unrealized_pnl": self.unrealized_pnl,
            "equity": self.equity,
            "sampled_at": self.sampled_at,
        }


@dataclass(frozen=True)
class CurvePoint:
    at: datetime
    equity: Decimal | None
    unrealized_pnl: Decimal | None
    realized_pnl: Decimal  # cumulative over the matching trades closed by then

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "equity": self.equity,
            "unrealized_pnl": self.unrealized_pnl,
            "realized_pnl": self.realized_pnl,
        }


@dataclass(frozen=True)
class PnlReport:
    by: str
    periods: Paged[Period]
    trades: int  # every matching trade, not only the page's
    realized_pnl: Decimal
    curve: list[CurvePoint]  # the equity curve over the periods shown
    account_wide: bool  # no symbol or strategy filter: equity is shown

    @property
    def unrealized_pnl(self) -> Decimal | None:
        """At the last sample of the periods shown."""
        for p in reversed(self.periods.items):
            if p.sampled_at is not None:
                return p.unrealized_pnl
        return None


def _unrealized(sample: dict[str, Any], f: Filters) -> Decimal | None:
    if f.strategy is not None:
        return None
    if not f.symbols:
        return Decimal(sample["unrealized"])
    marks = json.loads(sample["marks"])
    return sum((Decimal(m["unrealized_pnl"]) for s, m in marks.items() if s in f.symbols), ZERO)


def pnl(src: HistorySource, f: Filters, *, by: str, limit: int, offset: int) -> PnlReport:
    if by not in PERIODS:
        raise ValueError(f"unknown period {by!r}: expected one of {', '.join(PERIODS)}")
    f = src.narrow(f)
    account_wide = not f.symbols and f.strategy is None
    trades = q.trade_results(src.store, **f.store_args())
    samples = runs_q.equity_rows(src.runs_store, src.run_ids, f.since, f.until)
    agg: dict[str, dict[str, Any]] = {}

    def slot(at: datetime) -> dict[str, Any]:
        label, start, end = bucket(at, by)
        if label not in agg:
            agg[label] = {
                "start": start,
                "end": end,
                "trades": 0,
                "wins": 0,
                "realized": ZERO,
                "sample": None,
            }
        return agg[label]

    total = ZERO
    for t in trades:
        pnl_ = Decimal(t["pnl"])
        s = slot(datetime.fromisoformat(t["closed_at"]))
        s["trades"] += 1
        s["wins"] += pnl_ > 0
        s["realized"] += pnl_
        total += pnl_
    for sample in samples:  # oldest first: the last one of a period stays
        slot(datetime.fromisoformat(sample["at"]))["sample"] = sample
    periods = []
    for label, s in sorted(agg.items(), key=lambda kv: kv[1]["start"]):
        sample = s["sample"]
        periods.append(
            Period(
                label=label,
                start=s["start"],
                end=s["end"],
                trades=s["trades"],
                wins=s["wins"],
                realized_pnl=s["realized"],
                unrealized_pnl=_unrealized(sample, f) if sample else None,
                equity=Decimal(sample["equity"]) if sample and account_wide else None,
                sampled_at=datetime.fromisoformat(sample["at"]) if sample else None,
            )
        )
    page = page_of(periods, limit, offset)
    curve: list[CurvePoint] = []
    if page.items:
        lo, hi = page.items[0].start, page.items[-1].end
        closes = [(datetime.fromisoformat(t["closed_at"]), Decimal(t["pnl"])) for t in trades]
        i, realized = 0, ZERO
        for sample in samples:
            at = datetime.fromisoformat(sample["at"])
            while i < len(closes) and closes[i][0] <= at:
                realized += closes[i][1]
                i += 1
            if lo <= at < hi:
                curve.append(
                    CurvePoint(
                        at=at,
                        equity=Decimal(sample["equity"]) if account_wide else None,
                        unrealized_pnl=_unrealized(sample, f),
                        realized_pnl=realized,
                    )
                )
    return PnlReport(
        by=by,
        periods=page,
        trades=len(trades),
        realized_pnl=total,
        curve=curve,
        account_wide=account_wide,
    )


def write_plot(report: PnlReport, path: str | Path, title: str) -> Path:
    """The equity curve (or, filtered, the unrealized PnL) above the realized PnL of each
    period, as a PNG (matplotlib: the optional 'plot' extra; check the target first with
    ``trading.backtest.check_plot_target``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = Path(path).expanduser()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), gridspec_kw={"height_ratios": [3, 2]})
    try:
        times = [p.at for p in report.curve]
        if report.account_wide:
            top.plot(
                times,
                [float(p.equity or 0) for p in report.curve],  # floats only to draw
                color="tab:blue",
                linewidth=1,
                label="equity",
            )
            top.set_ylabel("equity")
        else:
            top.plot(
                times,
                [float(p.unrealized_pnl or 0) for p in report.curve],
                color="tab:orange",
                linewidth=1,
                label="unrealized PnL",
            )
            top.set_ylabel("PnL")
        if not report.curve:
            top.text(
                0.5,
                0.5,
                "no equity samples in these periods",
                ha="center",
                va="center",
                transform=top.transAxes,
            )
        top.legend(loc="upper left")
        top.set_title(title)
        periods = report.periods.items
        labels = [p.label for p in periods]
        values = [float(p.realized_pnl) for p in periods]
        bottom.bar(
            labels,
            values,
            color=["tab:green" if v >= 0 else "tab:red" for v in values],
            label=f"realized PnL by {report.by}",
        )
        bottom.axhline(0, color="grey", linewidth=0.6)
        bottom.legend(loc="upper left")
        if len(labels) > 12:
            bottom.set_xticks(range(0, len(labels), max(1, len(labels) // 12)))
        top.ticklabel_format(axis="y", useOffset=False, style="plain")
        for axis in (top, bottom):
            axis.tick_params(axis="x", labelrotation=20)
        fig.tight_layout()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(target, dpi=100)
        except OSError as exc:
            from mqd_cli.errors import StateError

            raise StateError(
                f"cannot write the chart to {target}: {exc.strerror}",
                "pick a writable path for --plot",
            ) from None
    finally:
        plt.close(fig)
    return target
