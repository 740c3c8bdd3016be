"""History on a real store written by the tracker and the run log: PnL by day and by week with
unrealized PnL from equity samples, the chart, effective fills (a gap fill's synthetic fill
replaced by the real execution is listed once), runs on the configured store; and the pure
parts (periods, pages, session names and pruning) with Hypothesis."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqd_cli.factory import Services
from mqd_cli.history import sessions
from mqd_cli.history.pnl import bucket
from mqd_cli.history.query import Filters, page_of
from mqd_cli.orders.trades import ClosedTrade
from mqd_cli.store import runs as runs_db
from mqd_cli.store.trades import insert_closed_trade
from tests.orders_support import fill, report

MON = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)  # Monday of ISO week 2026-W02


def trade(n: int, symbol: str, closed: datetime, pnl: str, strategy: str = "sma_cross"):
    return ClosedTrade(
        trade_id=f"t-{n}",
        symbol=symbol,
        side="long",
        qty=Decimal(10),
        entry_price=Decimal(100),
        exit_price=Decimal(100) + Decimal(pnl) / 10,
        opened_at=closed - timedelta(minutes=30),
        closed_at=closed,
        pnl=Decimal(pnl),
        fees=Decimal(0),
        exit_reason="signal",
        strategy=strategy,
    )


@pytest.fixture
def desk(config_file):
    """A configured store with four trades over two weeks and one run's equity samples."""
    cfg = config_file("")
    services = Services.from_config(cfg)
    store = services.store
    for n, (symbol, closed, pnl) in enumerate(
        [
            ("AAPL", MON, "10"),
            ("MSFT", MON + timedelta(days=1), "-4"),
            ("AAPL", MON + timedelta(days=4), "2.5"),
            ("AAPL", MON + timedelta(days=7), "-1"),  # Monday of 2026-W03
        ]
    ):
        insert_closed_trade(store, trade(n, symbol, closed, pnl))
    run_id = runs_db.insert_run(
        store,
        kind="run",
        broker="alpaca",
        session=None,
        journal=str(services.store_path),
        strategy="sma_cross",
        symbols='["AAPL", "MSFT"]',
        recorded_at=MON,
        started_at=MON - timedelta(hours=1),
        status="stopped",
        stopped_at=MON + timedelta(days=7, hours=2),
        finished_at=MON + timedelta(days=7, hours=2),
    )
    samples = [  # (at, equity, unrealized AAPL, unrealized MSFT)
        (MON - timedelta(hours=1), "100000", "0", "0"),
        (MON + timedelta(hours=2), "100012", "1", "1"),
        (MON + timedelta(days=1, hours=3), "100003", "-2", "-1"),
        (MON + timedelta(days=7, hours=1), "100010", "3", "0"),
    ]
    for at, equity, aapl, msft in samples:
        marks = {
            "AAPL": {"qty": "10", "avg_price": "100", "price": "1", "unrealized_pnl": aapl},
            "MSFT": {"qty": "5", "avg_price": "100", "price": "1", "unrealized_pnl": msft},
        }
        total = str(Decimal(aapl) + Decimal(msft))
        runs_db.add_equity(store, run_id, at, equity, total, json.dumps(marks))
    services.close()
    return cfg


def test_pnl_by_week_sums_realized_and_takes_the_weeks_last_sample(mqd, desk):
    got = mqd("pnl", "-c", desk, "--by", "week", "--json").json
    weeks = {p["period"]: p for p in got["periods"]}
    assert list(weeks) == ["2026-W02", "2026-W03"]
    w2, w3 = weeks["2026-W02"], weeks["2026-W03"]
    assert (w2["trades"], w2["wins"], Decimal(w2["realized_pnl"])) == (3, 2, Decimal("8.5"))
    assert (w3["trades"], Decimal(w3["realized_pnl"])) == (1, Decimal(-1))
    assert Decimal(w2["equity"]) == 100003 and Decimal(w2["unrealized_pnl"]) == -3
    assert Decimal(w3["equity"]) == 100010 and Decimal(w3["unrealized_pnl"]) == 3
    assert w2["start"].startswith("2026-01-05") and w3["start"].startswith("2026-01-12")
    assert Decimal(got["realized_pnl"]) == Decimal("7.5") and got["trades"] == 4
    assert len(got["equity_curve"]) == 4
    assert [Decimal(p["realized_pnl"]) for p in got["equity_curve"]] == [0, 10, 6, Decimal("7.5")]


def test_pnl_by_day_pages_back_and_filters_by_symbol_and_strategy(mqd, desk):
    days = mqd("pnl", "-c", desk, "--json").json
    assert [p["period"] for p in days["periods"]] == [
        "2026-01-05",
        "2026-01-06",
        "2026-01-09",
        "2026-01-12",
    ]
    assert days["periods"][2]["equity"] is None  # no run sampled that day
    last2 = mqd("pnl", "-c", desk, "--limit", "2", "--offset", "1", "--json").json
    assert [p["period"] for p in last2["periods"]] == ["2026-01-06", "2026-01-09"]
    assert last2["next_offset"] == 3 and last2["total"] == 4
    aapl = mqd("pnl", "-c", desk, "--symbol", "AAPL", "--json").json
    assert aapl["account_wide"] is False
    assert [Decimal(p["realized_pnl"]) for p in aapl["periods"]] == [10, 0, Decimal("2.5"), -1]
    first = aapl["periods"][0]
    assert first["equity"] is None and Decimal(first["unrealized_pnl"]) == 1
    other = mqd("pnl", "-c", desk, "--strategy", "other", "--json").json
    assert other["trades"] == 0 and all(p["unrealized_pnl"] is None for p in other["periods"])
    text = mqd("pnl", "-c", desk, "--by", "week").stdout.splitlines()
    assert text[0] == "PnL by week"
    assert text[2].split() == ["2026-W02", "3", "2", "8.50", "-3.00", "100,003.00"]
    assert text[-1] == "realized 7.50 in the 2 weeks shown; unrealized 3.00 at 2026-01-12 16:00:00"


def test_pnl_plot_writes_a_png(mqd, desk, tmp_path):
    out = tmp_path / "pnl.png"
    got = mqd("pnl", "-c", desk, "--by", "week", "--plot", out, "--json").json
    assert got["plot"] == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_runs_on_the_configured_store_own_its_equity_samples(mqd, desk):
    runs = mqd("runs", "-c", desk, "--json").json["runs"]
    assert [(r["kind"], r["broker"], r["session"]) for r in runs] == [("run", "alpaca", None)]
    by_run = mqd("pnl", "-c", desk, "--run", str(runs[0]["id"]), "--json").json
    assert by_run["run"] == runs[0]["id"] and by_run["trades"] == 4
    assert mqd("runs", "-c", desk, "--symbol", "TSLA", "--json").json["total"] == 0
    assert mqd("runs", "-c", desk, "--symbol", "msft", "--json").json["total"] == 1


def test_a_synthetic_fill_replaced_by_its_real_execution_is_listed_once(mqd, config_file):
    cfg = config_file("")
    services = Services.from_config(cfg)
    tracker = services.tracker
    # c1: the gap fill saw it filled, then the stream's execution arrived: x1 replaces it
    tracker.apply_order_report(report("c1", status="filled", filled="100", avg="10"))
    tracker.apply(fill("c1", "x1", "100", "10", "100", "10"))
    # c2: the gap fill saw 100, then only the first execution (40) arrived
    tracker.apply_order_report(report("c2", status="filled", filled="100", avg="20"))
    tracker.apply(fill("c2", "x2", "40", "20", "40", "20", final=False))
    stored = len(services.store.query("SELECT fill_id FROM order_fills"))
    services.close()
    assert stored == 4  # every fill is kept as evidence

    got = mqd("fills", "-c", cfg, "--json").json
    rows = [(f["client_order_id"], f["fill_id"], Decimal(f["qty"])) for f in got["fills"]]
    by_order: dict[str, Decimal] = {}
    for cid, _fid, qty in rows:
        by_order[cid] = by_order.get(cid, Decimal(0)) + qty
    assert by_order == {"c1": 100, "c2": 100}
    assert ("c1", "x1", 100) in rows and ("c2", "x2", 40) in rows
    assert got["total"] == 3
    (syn,) = [f for f in got["fills"] if f["synthetic"]]
    assert syn["client_order_id"] == "c2" and Decimal(syn["qty"]) == 60


# -- the pure parts -------------------------------------------------------------------------------

times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(times)
def test_a_time_falls_in_its_day_and_in_a_week_from_monday(at):
    label, start, end = bucket(at, "day")
    assert start <= at < end and end - start == timedelta(days=1) and label == f"{at:%Y-%m-%d}"
    label, start, end = bucket(at, "week")
    assert start <= at < end and end - start == timedelta(days=7) and start.weekday() == 0
    year, week, _ = at.isocalendar()
    assert label == f"{year}-W{week:02d}"


@given(st.integers(0, 60), st.integers(1, 13))
def test_paging_back_from_the_newest_covers_every_row_once(total, limit):
    rows = list(range(total))
    seen: list[int] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        page = page_of(rows, limit, offset)
        assert page.items == sorted(page.items) and len(page.items) <= limit
        assert page.cut == (len(page.items) < total)
        seen = page.items + seen
        offset = page.next_offset
        pages += 1
        assert pages <= total + 1
    assert seen == rows


def test_a_page_label_says_last_n_of_m_only_when_cut():
    assert page_of(list(range(5)), 10, 0).label() == ""
    assert page_of(list(range(50)), 10, 0).label() == "last 10 of 50"
    assert page_of(list(range(50)), 10, 20).label() == "10 of 50, before the newest 20"


def test_a_crypto_symbol_matches_both_of_alpacas_spellings():
    assert Filters.of(["btcusd", "AAPL"]).symbols == ("BTCUSD", "BTC/USD", "AAPL")


@pytest.mark.parametrize("name", ["", "a b", "../x", "-x", "x" * 65, "a/b"])
def test_a_session_name_must_be_a_plain_file_name(name):
    from mqd_cli.errors import UsageError

    with pytest.raises(UsageError) as e:
        sessions.check_name(name)
    assert e.value.hint


def test_new_sessions_never_overwrite_and_pruning_keeps_the_newest(tmp_path):
    store = tmp_path / "mqd.db"
    now = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    names = [sessions.create(store, None, now)[0] for _ in range(3)]
    assert names == ["20260105T143000Z", "20260105T143000Z-2", "20260105T143000Z-3"]
    named, path = sessions.create(store, "demo", now)
    assert path == tmp_path / "sim-sessions" / "demo.db" and path.is_file()
    from mqd_cli.errors import UsageError

    with pytest.raises(UsageError):
        sessions.create(store, "demo", now)
    by_runs = [*names, "demo"]  # the order their runs were recorded in
    assert sessions.latest(store, by_runs) == "demo"
    removed = sessions.prune(store, by_runs, keep=2, protect={names[0]})
    assert removed == names[1:]  # the oldest is protected (its run is still going)
    assert sessions.on_disk(store) == sorted([names[0], "demo"])
    Path(sessions.session_path(store, "loose")).write_bytes(b"")
    assert sessions.ordered(store, by_runs)[0] == "loose"  # a file no run wrote goes first
