"""Runs and backtests as the operator sees them: recorded as they happen, listed afterwards.

``RunLog`` is what ``mqd run`` records through (``LiveSession`` calls it at start, at every
equity sample and at stop): a row in the configured store's ``runs`` table, equity samples with
the unrealized PnL of each position at the engine's last prices (at most one every
``EQUITY_EVERY`` of market time, plus the first and the last), and the summary. A run killed
with ``kill -9`` keeps ``status = 'running'`` with no summary; ``RunView.state`` tells it from a
live one by its process id. ``record_backtest`` keeps a backtest's result summary.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mqd_cli.store import runs as q

if TYPE_CHECKING:
    from mqd_cli.clock import Clock
    from mqd_cli.config.settings import Settings
    from mqd_cli.store import Store
    from mqd_cli.trading.backtest import BacktestResult
    from mqd_cli.trading.live import LiveSession, RunSummary

ZERO = Decimal(0)
EQUITY_EVERY = timedelta(minutes=5)  # market time between two kept equity samples of a run


def plain(value: Any) -> Any:
    """A value as JSON-ready data: Decimal as exact text, times as ISO-8601, spans as "1h"."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        from mqd_cli.durations import format_duration

        return format_duration(value)
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(plain(value), separators=(",", ":"))


def this_host() -> str:
    import socket  # only when a run is recorded

    return socket.gethostname()


def process_alive(pid: int | None, host: str) -> bool | None:
    """Whether the process that wrote a run is alive: True/False on this host, None when it
    ran on another host (cannot tell)."""
    if not pid:
        return False
    if host and host != this_host():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:
        return False
    return True


# -- recording a live run -------------------------------------------------------------------------


class RunLog:
    """Records one ``mqd run`` in the runs table of ``store`` (the configured store).

    ``clock`` is the local clock (when the operator ran it); market times come from the
    session. Failures are the caller's to contain: recording must never stop trading.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        session: str | None,
        journal: Path,
        broker: str,
        speed: float = 1.0,
    ):
        self.store = store
        self.clock = clock
        self.session = session
        self.journal = journal
        self.broker = broker
        self.speed = speed
        self.run_id: int | None = None
        self._last_sample: datetime | None = None

    def started(self, session: LiveSession) -> None:
        s = session.settings
        started = session.started_at or session.clock.now()
        self.run_id = q.insert_run(
            self.store,
            kind="run",
            broker=self.broker,
            session=self.session,
            journal=str(self.journal),
            strategy=s.strategy.name,
            symbols=_dumps([x.upper() for x in s.strategy.symbols]),
            recorded_at=self.clock.now(),
            started_at=started,
            status="running",
            dry_run=session.options.dry_run,
            speed=self.speed,
            pid=os.getpid(),
            host=this_host(),
        )
        self.sampled(session, session.equity_start, force=True)

    def sampled(self, session: LiveSession, equity: Decimal, *, force: bool = False) -> None:
        """An equity sample of the broker's account, with each position's unrealized PnL at
        the engine's last price; kept at most every ``EQUITY_EVERY`` unless ``force``."""
        if self.run_id is None:
            return
        at = session.clock.now()
        last = self._last_sample
        if not force and last is not None and at - last < EQUITY_EVERY:
            return
        unrealized, marks = open_pnl(session)
        q.add_equity(self.store, self.run_id, at, str(equity), str(unrealized), _dumps(marks))
        self._last_sample = at

    def stopped(self, session: LiveSession, summary: RunSummary) -> None:
        if self.run_id is None:
            return
        unrealized, marks = open_pnl(session)
        q.add_equity(
            self.store,
            self.run_id,
            summary.stopped_at,
            str(summary.equity_end),
            str(unrealized),
            _dumps(marks),
        )
        doc = summary.as_dict()
        doc["unrealized_pnl"] = unrealized
        doc["marks"] = marks
        q.finish_run(
            self.store,
            self.run_id,
            stopped_at=summary.stopped_at,
            finished_at=self.clock.now(),
            status="stopped",
            reason=summary.reason,
            summary=_dumps(doc),
        )


def open_pnl(session: LiveSession) -> tuple[Decimal, dict[str, dict[str, Any]]]:
    """The unrealized PnL of the session's open positions at the engine's last prices: the
    total and, per symbol, quantity, average entry, price and unrealized PnL."""
    engine = session.engine
    if engine is None:
        return ZERO, {}
    total = ZERO
    marks: dict[str, dict[str, Any]] = {}
    for symbol, qty in sorted(engine.positions().items()):
        avg = engine.ctx.avg_entry_price(symbol)
        price = engine.last_price(symbol)
        if avg is None or price is None:
            continue
        pnl = qty * (price - avg)
        total += pnl
        marks[symbol] = {"qty": qty, "avg_price": avg, "price": price, "unrealized_pnl": pnl}
    return total, marks


# -- recording a backtest -------------------------------------------------------------------------


def record_backtest(
    store: Store,
    *,
    result: BacktestResult,
    settings: Settings,
    recorded_at: datetime,
    finished_at: datetime,
) -> int:
    """Keep a backtest's result summary (not its trades) as a run of kind ``backtest``."""
    summary = result.as_dict(trades=False)
    summary["seed"] = result.seed
    return q.insert_run(
        store,
        kind="backtest",
        broker="sim",
        session=None,
        journal="",
        strategy=result.strategy or settings.strategy.name,
        symbols=_dumps(list(result.symbols)),
        recorded_at=recorded_at,
        finished_at=finished_at,
        started_at=result.start,
        stopped_at=result.interrupted_at or result.end,
        status="interrupted" if result.interrupted_at is not None else "done",
        reason="interrupted" if result.interrupted_at is not None else "",
        summary=_dumps(summary),
    )


# -- reading --------------------------------------------------------------------------------------


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True)
class RunView:
    """One row of ``mqd runs``: what ran, when, on what, and how it ended."""

    id: int
    kind: str  # run | backtest
    broker: str
    session: str | None
    journal: str
    strategy: str
    symbols: tuple[str, ...]
    recorded_at: datetime  # local clock: when it was started
    finished_at: datetime | None
    started_at: datetime  # market time
    stopped_at: datetime | None
    status: str  # as stored: running | stopped | done | interrupted
    reason: str
    dry_run: bool
    speed: float
    pid: int | None
    host: str
    summary: dict[str, Any]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunView:
        return cls(
            id=int(row["id"]),
            kind=row["kind"],
            broker=row["broker"],
            session=row["session"],
            journal=row["journal"],
            strategy=row["strategy"],
            symbols=tuple(json.loads(row["symbols"])),
            recorded_at=datetime.fromisoformat(row["recorded_at"]),
            finished_at=_dt(row["finished_at"]),
            started_at=datetime.fromisoformat(row["started_at"]),
            stopped_at=_dt(row["stopped_at"]),
            status=row["status"],
            reason=row["reason"],
            dry_run=bool(row["dry_run"]),
            speed=float(row["speed"]),
            pid=row["pid"],
            host=row["host"],
            summary=json.loads(row["summary"] or "{}"),
        )

    @property
    def state(self) -> str:
        """``running``, ``running elsewhere`` (another host), ``ended without a summary``
        (killed), or the stored status."""
        if self.status != "running":
            return self.status
        alive = process_alive(self.pid, self.host)
        if alive is None:
            return f"running on {self.host}?"
        return "running" if alive else "ended without a summary"

    @property
    def journal_kept(self) -> bool:
        return bool(self.journal) and Path(self.journal).exists()

    def figure(self, key: str) -> Decimal | None:
        """A money figure of the summary, exact (runs and backtests name some differently)."""
        names = {
            "trades": ("trades", "trades_count"),
            "realized_pnl": ("realized_pnl",),
            "pnl": ("pnl", "net_pnl"),
            "equity_end": ("equity_end", "final_equity"),
        }[key]
        for name in names:
            value = self.summary.get(name)
            if value is not None:
                return Decimal(str(value))
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "broker": self.broker,
            "session": self.session,
            "journal": self.journal or None,
            "journal_kept": self.journal_kept if self.kind == "run" else None,
            "strategy": self.strategy,
            "symbols": list(self.symbols),
            "recorded_at": self.recorded_at,
            "finished_at": self.finished_at,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "reason": self.reason,
            "dry_run": self.dry_run,
            "trades": self.figure("trades"),
            "realized_pnl": self.figure("realized_pnl"),
            "pnl": self.figure("pnl"),
            "equity_end": self.figure("equity_end"),
            "summary": self.summary,
        }


def get(store: Store, run_id: int) -> RunView | None:
    row = q.get_run(store, run_id)
    return RunView.from_row(row) if row else None


def views(store: Store, *, limit: int, offset: int, **filters: Any) -> tuple[int, list[RunView]]:
    """(how many match, the page): the ``limit`` newest after skipping ``offset``, oldest first."""
    total = q.count_runs(store, **filters)
    rows = q.run_rows(store, limit=limit, offset=offset, **filters)
    return total, [RunView.from_row(r) for r in reversed(rows)]


def session_runs(store: Store, session: str) -> list[RunView]:
    """The runs of a sim session, newest first."""
    return [RunView.from_row(r) for r in q.run_rows(store, session=session)]


def journal_runs(store: Store, journal: Path) -> list[RunView]:
    """The runs that traded on the journal at ``journal`` (not in a sim session), newest
    first."""
    return [
        RunView.from_row(r)
        for r in q.run_rows(store, kind="run", sessions_only=False, journal=str(journal))
    ]


def session_names(store: Store) -> list[str]:
    """Sessions named by runs, oldest run first."""
    return q.session_names(store)


def running_sessions(store: Store) -> set[str]:
    """Sessions whose run may still be going (its process is alive, or on another host)."""
    out = set()
    for row in q.run_rows(store, kind="run", sessions_only=True):
        view = RunView.from_row(row)
        alive = process_alive(view.pid, view.host) is not False
        if view.session and view.status == "running" and alive:
            out.add(view.session)
    return out


def window_end(store: Store, run: RunView) -> datetime | None:
    """Where a run's window ends in market time: its stop, else when the next run on the same
    journal started (it was killed), else open (still running)."""
    if run.stopped_at is not None:
        return run.stopped_at
    nxt = q.next_run_start(store, run.id, run.journal)
    return datetime.fromisoformat(nxt) if nxt else None


def as_of(runs: Sequence[RunView], last_activity: datetime | None, real_now: datetime) -> datetime:
    """The "now" of a sim session (newest run first): when its run stopped; while it runs,
    its simulated time now; after a kill, the last thing its journal recorded."""
    if not runs:
        return last_activity or real_now
    run = runs[0]
    if run.stopped_at is not None:
        return run.stopped_at
    if run.state == "running":
        return run.started_at + (real_now - run.recorded_at) * run.speed
    return max(filter(None, (last_activity, run.started_at)))
