"""The emulator's account configurations, portfolio history, account activities and latest
market data, read by the real, unmodified alpaca-py clients (and httpx for the raw shapes).

Simulated time stands still in these tests (``speed=0``) and moves only by ``srv.advance``, so
two requests see the same market. Payload shapes follow alpaca-py's models and its fixtures
(github:alpacahq/alpaca-py tests/trading/trading_client/test_account_routes.py,
tests/broker/broker_client/test_account_activities_routes.py and test_trading_routes.py,
tests/data/test_historical_stock_data.py) and Alpaca's OpenAPI (getaccountconfig,
getaccountportfoliohistory, getaccountactivities, the data API's latest/snapshot endpoints).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest

pytest.importorskip("alpaca")

from alpaca.common.exceptions import APIError  # noqa: E402
from alpaca.data.historical import (  # noqa: E402
    CryptoHistoricalDataClient,
    StockHistoricalDataClient,
)
from alpaca.data.requests import (  # noqa: E402
    CryptoBarsRequest,
    CryptoLatestBarRequest,
    CryptoLatestQuoteRequest,
    CryptoLatestTradeRequest,
    CryptoSnapshotRequest,
    StockBarsRequest,
    StockLatestBarRequest,
    StockLatestQuoteRequest,
    StockLatestTradeRequest,
    StockSnapshotRequest,
)
from alpaca.data.timeframe import TimeFrame  # noqa: E402
from alpaca.trading.client import TradingClient  # noqa: E402
from alpaca.trading.enums import OrderSide, PDTCheck, TimeInForce  # noqa: E402
from alpaca.trading.models import AccountConfiguration, TradeActivity  # noqa: E402
from alpaca.trading.requests import GetPortfolioHistoryRequest, MarketOrderRequest  # noqa: E402

from mqd_cli.config.settings import SimSettings  # noqa: E402

NEW_YORK = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")
START = datetime(2026, 1, 5, 14, 35, tzinfo=UTC)  # Monday 09:35 New York


@pytest.fixture
def srv(emulator):
    return emulator(speed=0)


def trading(srv) -> TradingClient:
    c = TradingClient(srv.key_id, srv.secret_key, paper=True, url_override=srv.base_url)
    c._retry = 0  # its default retry sleeps 3 s per 429/504
    return c


def stocks(srv) -> StockHistoricalDataClient:
    c = StockHistoricalDataClient(srv.key_id, srv.secret_key, url_override=srv.data_url)
    c._retry = 0
    return c


def http(srv) -> httpx.Client:
    return httpx.Client(base_url=srv.base_url, headers=srv.headers, timeout=10)


def buy(client: TradingClient, symbol: str = "AAPL", qty: float = 5, side=OrderSide.BUY):
    return client.submit_order(
        MarketOrderRequest(
            symbol=symbol,
            qty=qty,
            side=side,
            time_in_force=TimeInForce.GTC if "/" in symbol else TimeInForce.DAY,
            client_order_id=f"t-{uuid.uuid4()}",
        )
    )


def activities(client: TradingClient, path: str = "/account/activities", **params) -> list:
    return client.get(path, params)


# -- account configurations -----------------------------------------------------------------------


def test_configurations_parse_into_alpaca_py_and_a_set_round_trips_and_persists(srv):
    client = trading(srv)
    config = client.get_account_configurations()
    assert isinstance(config, AccountConfiguration)
    assert (config.no_shorting, config.suspend_trade, config.fractional_trading) == (
        False,
        False,
        True,
    )
    assert config.trade_confirm_email.value == "all"
    assert config.max_margin_multiplier == "2"  # the sim account's multiplier
    assert config.pdt_check is None and config.dtbp_check is None  # removed by Alpaca
    # alpaca-py sends the whole model, nulls included (model_dump()).
    changed = config.model_copy(
        update={"no_shorting": True, "max_margin_multiplier": "1", "pdt_check": PDTCheck.ENTRY}
    )
    answer = client.set_account_configurations(changed)
    assert (answer.no_shorting, answer.max_margin_multiplier, answer.pdt_check) == (
        True,
        "1",
        None,
    )
    again = client.get_account_configurations()
    assert again == answer and again.suspend_trade is False


@pytest.mark.parametrize(
    "body",
    [
        {"max_margin_multiplier": "3"},
        {"max_margin_multiplier": True},
        {"trade_confirm_email": "sometimes"},
        {"suspend_trade": 1},
        {"suspend_trade": "maybe"},
        {"max_options_trading_level": 4},
        {"pdt_check": "never"},
        {"no_shorting": True, "shorting": False},
    ],
)
def test_bad_configuration_values_get_422_in_alpaca_shape_and_change_nothing(srv, body):
    with http(srv) as c:
        before = c.get("/v2/account/configurations").json()
        r = c.patch("/v2/account/configurations", json=body)
        assert r.status_code == 422
        assert r.json()["code"] == 40010001 and r.json()["message"]
        assert c.get("/v2/account/configurations").json() == before


def test_a_configuration_body_that_is_not_an_object_is_a_400(srv):
    with http(srv) as c:
        r = c.patch("/v2/account/configurations", content=b"[1, 2]")
        assert r.status_code == 400 and r.json()["code"] == 40010000


def test_a_reset_market_starts_with_default_configurations(srv):
    with http(srv) as c:
        c.patch("/v2/account/configurations", json={"suspend_trade": True})
        srv.reset()
        assert c.get("/v2/account/configurations").json()["suspend_trade"] is False


# -- account activities ----------------------------------------------------------------------------


def test_fill_activity_parses_as_trade_activity_and_matches_the_fill(srv):
    client = trading(srv)
    order = buy(client, qty=5)
    srv.advance(60)
    filled = client.get_order_by_id(order.id)
    rows = activities(client)
    assert len(rows) == 1
    activity = TradeActivity(**rows[0])
    assert activity.activity_type.value == "FILL" and activity.type.value == "fill"
    assert str(activity.order_id) == str(order.id)
    assert (activity.symbol, activity.side.value, activity.order_status.value) == (
        "AAPL",
        "buy",
        "filled",
    )
    assert activity.qty == 5 and activity.cum_qty == 5 and activity.leaves_qty == 0
    assert Decimal(rows[0]["price"]) == Decimal(filled.filled_avg_price)
    assert activity.transaction_time == filled.filled_at
    # <New York time to the millisecond>::<the broker's execution id>
    stamp, _, execution_id = activity.id.partition("::")
    local = filled.filled_at.astimezone(NEW_YORK)
    assert stamp == f"{local:%Y%m%d%H%M%S}{local.microsecond // 1000:03d}"
    fills = [f for f in srv.emulator.broker.fills if f.order_id == str(order.id)]
    assert [f.execution_id for f in fills] == [execution_id]
    assert activities(client, "/account/activities/FILL") == rows
    assert activities(client, activity_types="FILL,DIV") == rows


def test_partial_fills_are_activities_whose_quantities_add_up_to_the_order(emulator):
    srv = emulator(speed=0, sim=SimSettings(liquidity=Decimal(3)))
    client = trading(srv)
    order = buy(client, qty=10)
    for _ in range(6):
        srv.advance(60)
    filled = client.get_order_by_id(order.id)
    assert filled.status.value == "filled"
    rows = activities(client, direction="asc")
    parsed = [TradeActivity(**r) for r in rows]
    assert len(parsed) >= 2
    assert [a.type.value for a in parsed] == ["partial_fill"] * (len(parsed) - 1) + ["fill"]
    assert sum(Decimal(r["qty"]) for r in rows) == Decimal(filled.filled_qty)
    cum = Decimal(0)
    for row in rows:
        cum += Decimal(row["qty"])
        assert Decimal(row["cum_qty"]) == cum
        assert Decimal(row["leaves_qty"]) == Decimal(10) - cum
    value = sum(Decimal(r["qty"]) * Decimal(r["price"]) for r in rows)
    assert value / cum == pytest.approx(Decimal(filled.filled_avg_price))
    executions = [f.execution_id for f in srv.emulator.broker.fills]
    assert [r["id"].split("::")[1] for r in rows] == executions


def test_activities_page_by_token_in_both_directions_and_filter_by_time(emulator):
    srv = emulator(speed=0, sim=SimSettings(partial_fill_probability=0.0))
    client = trading(srv)
    for i in range(5):
        buy(client, qty=1 + i)
        srv.advance(120)
    everything = activities(client)
    assert len(everything) == 5
    times = [r["transaction_time"] for r in everything]
    assert times == sorted(times, reverse=True)  # newest first by default
    for direction in ("desc", "asc"):
        pages, token = [], None
        for _ in range(10):  # bounded: 5 rows in pages of 2 take 3 pages
            extra = {"page_token": token} if token else {}
            page = activities(client, page_size=2, direction=direction, **extra)
            if not page:
                break
            pages.append(page)
            token = page[-1]["id"]
        ids = [r["id"] for page in pages for r in page]
        assert [len(p) for p in pages] == [2, 2, 1]
        expected = [r["id"] for r in everything]
        assert ids == (expected if direction == "desc" else expected[::-1])
    middle = datetime.fromisoformat(everything[2]["transaction_time"])
    after = activities(client, after=middle.isoformat())
    until = activities(client, until=middle.isoformat())
    assert [r["id"] for r in after] == [r["id"] for r in everything[:2]]
    assert [r["id"] for r in until] == [r["id"] for r in everything[3:]]
    assert len(activities(client, date="2026-01-05")) == 5
    assert activities(client, date="2026-01-06") == []


def test_unsimulated_activity_types_are_empty_lists_not_404(srv):
    client = trading(srv)
    buy(client)
    srv.advance(60)
    assert activities(client, "/account/activities/DIV") == []
    assert activities(client, "/account/activities/CSD") == []
    assert activities(client, activity_types="DIV,JNLC") == []
    assert activities(client, category="non_trade_activity") == []
    assert len(activities(client, category="trade_activity")) == 1


@pytest.mark.parametrize(
    "path, params",
    [
        ("/v2/account/activities/NOPE", {}),
        ("/v2/account/activities", {"activity_types": "FILL,NOPE"}),
        ("/v2/account/activities", {"direction": "sideways"}),
        ("/v2/account/activities", {"page_size": "0"}),
        ("/v2/account/activities", {"page_size": "ten"}),
        ("/v2/account/activities", {"page_token": "not-an-id"}),
        ("/v2/account/activities", {"date": "2026-01-05", "after": "2026-01-04"}),
        ("/v2/account/activities", {"category": "gossip"}),
        ("/v2/account/activities", {"category": "trade_activity", "activity_types": "FILL"}),
        ("/v2/account/activities", {"until": "yesterday"}),
    ],
)
def test_bad_activity_queries_get_422_with_alpaca_error_body(srv, path, params):
    with http(srv) as c:
        r = c.get(path, params=params)
        assert r.status_code == 422
        assert r.json()["code"] == 40010001 and r.json()["message"]


# -- portfolio history -----------------------------------------------------------------------------


def test_portfolio_history_equity_reflects_a_fill_at_every_minute(srv):
    client = trading(srv)
    order = buy(client, qty=10)
    srv.advance(15 * 60)
    filled = client.get_order_by_id(order.id)
    account = client.get_account()
    history = client.get_portfolio_history(
        GetPortfolioHistoryRequest(period="1D", timeframe="1Min")
    )
    assert history.timeframe == "1Min"
    assert len(history.timestamp) == len(history.equity) == len(history.profit_loss)
    labels = [datetime.fromtimestamp(t, UTC) for t in history.timestamp]
    assert labels[0] == START - timedelta(minutes=1)  # its window ends when the account opened
    assert all(b - a == timedelta(minutes=1) for a, b in zip(labels, labels[1:], strict=False))
    assert history.equity[0] == 100_000.0  # before the fill
    assert history.equity[-1] == pytest.approx(float(account.equity), abs=0.005)
    # After the fill: cash + 10 x the walk's price at each window's end (the bar's open).
    bars = stocks(srv).get_stock_bars(
        StockBarsRequest(
            symbol_or_symbols="AAPL",
            timeframe=TimeFrame.Minute,
            start=START,
            end=START + timedelta(minutes=20),
        )
    )
    opens = {b.timestamp: Decimal(str(b.open)) for b in bars.data["AAPL"]}
    cash = Decimal(account.cash)
    assert cash == Decimal(100_000) - 10 * Decimal(filled.filled_avg_price)
    checked = 0
    for label, equity in zip(labels, history.equity, strict=True):
        end = label + timedelta(minutes=1)
        if end > filled.filled_at and end in opens and end < START + timedelta(minutes=15):
            assert Decimal(str(equity)) == (cash + 10 * opens[end]).quantize(Decimal("0.01"))
            checked += 1
    assert checked >= 10
    # No previous close (the account opened today): the base is the first point.
    assert history.base_value == history.equity[0]
    assert history.profit_loss[-1] == pytest.approx(history.equity[-1] - history.base_value)


def test_portfolio_history_days_use_the_previous_close_as_base(srv):
    client = trading(srv)
    buy(client, qty=10)
    srv.advance(2 * 24 * 3600)  # to Wednesday 09:35 New York
    with http(srv) as c:
        daily = c.get("/v2/account/portfolio/history", params={"timeframe": "1D"}).json()
        assert [
            datetime.fromtimestamp(t, NEW_YORK).date().isoformat() for t in daily["timestamp"]
        ] == [
            "2026-01-05",
            "2026-01-06",
            "2026-01-07",
        ]
        assert all(datetime.fromtimestamp(t, NEW_YORK).hour == 20 for t in daily["timestamp"])
        assert daily["base_value"] == daily["equity"][0] and "base_value_asof" not in daily
        today = c.get(
            "/v2/account/portfolio/history",
            params={"start": "2026-01-07T05:00:00Z", "timeframe": "15Min"},
        ).json()
        assert today["base_value_asof"] == "2026-01-06"
        assert today["base_value"] == daily["equity"][1]
        first = datetime.fromtimestamp(today["timestamp"][0], NEW_YORK)
        assert (first.hour, first.minute) == (9, 30)  # market hours by default
        # period=1D from Wednesday 09:35 starts Tuesday 09:35, inside Tuesday's session, which
        # then counts whole (Alpaca's rule); P/L resets per day to the previous close.
        two = c.get(
            "/v2/account/portfolio/history", params={"period": "1D", "timeframe": "15Min"}
        ).json()
        assert two["base_value_asof"] == "2026-01-05"
        days = [datetime.fromtimestamp(t, NEW_YORK).day for t in two["timestamp"]]
        assert days.count(6) == 27 and days.count(7) == 1  # 09:30..16:00, then 09:30
        for day, equity, pl in zip(days, two["equity"], two["profit_loss"], strict=True):
            base = daily["equity"][0] if day == 6 else daily["equity"][1]
            assert pl == pytest.approx(equity - base, abs=0.011)
        two_days = c.get(
            "/v2/account/portfolio/history",
            params={"period": "2D", "timeframe": "1H", "intraday_reporting": "extended_hours"},
        ).json()
        hours = [datetime.fromtimestamp(t, NEW_YORK) for t in two_days["timestamp"]]
        # Monday from the account's opening (the 09:00 window ends after 09:35), Tuesday's
        # 04:00-20:00 whole, Wednesday up to now.
        assert hours[0] == datetime(2026, 1, 5, 9, tzinfo=NEW_YORK)
        assert [h.hour for h in hours if h.day == 6] == list(range(4, 21))
        assert [h.hour for h in hours if h.day == 7] == list(range(4, 10))
        assert "base_value_asof" not in two_days  # no close before the account's first day
        assert two_days["base_value"] == two_days["equity"][0]
        continuous = c.get(
            "/v2/account/portfolio/history",
            params={
                "period": "1D",
                "timeframe": "1H",
                "intraday_reporting": "continuous",
                "pnl_reset": "no_reset",
            },
        ).json()
        assert len(continuous["timestamp"]) == 25  # Tuesday 09:00 .. Wednesday 09:00 hourly
        base = continuous["base_value"]
        for equity, pl in zip(continuous["equity"], continuous["profit_loss"], strict=True):
            assert pl == pytest.approx(equity - base, abs=0.011)
        with_cashflow = c.get(
            "/v2/account/portfolio/history", params={"cashflow_types": "ALL"}
        ).json()
        assert with_cashflow["cashflow"] == {}


@pytest.mark.parametrize(
    "params",
    [
        {"period": "1X"},
        {"period": "0D"},
        {"timeframe": "2H"},
        {"intraday_reporting": "sometimes"},
        {"pnl_reset": "weekly"},
        {"period": "1D", "start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"},
        {"period": "3M", "timeframe": "1Min"},
        {"start": "2026-01-05T15:00:00Z", "end": "2026-01-05T14:00:00Z"},
        {"end": "2026-01-05T15:00:00Z", "date_end": "2026-01-05"},
        {"start": "soon"},
        {"extended_hours": "perhaps"},
        {"cashflow_types": "ALL,DIV"},
    ],
)
def test_bad_portfolio_history_queries_get_422(srv, params):
    with http(srv) as c:
        r = c.get("/v2/account/portfolio/history", params=params)
        assert r.status_code == 422
        assert r.json()["code"] == 40010001 and r.json()["message"]


def test_portfolio_history_through_alpaca_py_with_its_date_end_and_extended_hours(srv):
    client = trading(srv)
    srv.advance(600)
    history = client.get_portfolio_history(
        GetPortfolioHistoryRequest(
            period="1W", timeframe="15Min", date_end=START.date(), extended_hours=True
        )
    )
    labels = [datetime.fromtimestamp(t, NEW_YORK) for t in history.timestamp]
    assert labels and all(t.date() == START.date() for t in labels)
    assert labels[-1] <= START.astimezone(NEW_YORK) + timedelta(minutes=10)


# -- market data -----------------------------------------------------------------------------------


def test_latest_trade_quote_bar_and_snapshot_agree_with_the_walk_and_a_fill(srv):
    data = stocks(srv)
    trade = data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols="AAPL"))["AAPL"]
    quote = data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="AAPL"))["AAPL"]
    bar = data.get_stock_latest_bar(StockLatestBarRequest(symbol_or_symbols="AAPL"))["AAPL"]
    snap = data.get_stock_snapshot(StockSnapshotRequest(symbol_or_symbols="AAPL"))["AAPL"]
    order = buy(trading(srv), qty=1)  # a market order fills at the walk's price now
    filled = trading(srv).get_order_by_id(order.id)
    assert Decimal(str(trade.price)) == Decimal(filled.filled_avg_price)
    assert trade.timestamp == START and quote.timestamp == START
    assert quote.bid_price < trade.price < quote.ask_price
    assert quote.ask_price - quote.bid_price == pytest.approx(0.04)  # 1 bp either side of ~$177
    assert bar.timestamp == START - timedelta(minutes=1)  # the last complete minute
    assert bar.close == trade.price  # the walk: a bar closes where the next one opens
    bars = data.get_stock_bars(
        StockBarsRequest(
            symbol_or_symbols="AAPL",
            timeframe=TimeFrame.Minute,
            start=START - timedelta(minutes=5),
            end=START - timedelta(minutes=1),
        )
    ).data["AAPL"]
    assert bars[-1] == bar
    assert snap.latest_trade == trade and snap.latest_quote == quote
    assert snap.minute_bar == bar
    midnight = datetime(2026, 1, 5, tzinfo=NEW_YORK)
    assert snap.daily_bar.timestamp == midnight
    assert snap.previous_daily_bar.timestamp == midnight - timedelta(days=1)
    assert snap.daily_bar.close == bar.close
    assert snap.daily_bar.high >= max(b.high for b in bars)
    day = data.get_stock_bars(
        StockBarsRequest(
            symbol_or_symbols="AAPL",
            timeframe=TimeFrame.Minute,
            start=midnight,
            end=START - timedelta(minutes=1),
        )
    ).data["AAPL"]
    assert snap.daily_bar.open == day[0].open
    assert snap.daily_bar.low == min(b.low for b in day)
    assert snap.daily_bar.volume == sum(b.volume for b in day)


def test_latest_maps_leave_out_unknown_symbols_and_other_asset_classes(srv):
    data = stocks(srv)
    trades = data.get_stock_latest_trade(
        StockLatestTradeRequest(symbol_or_symbols=["AAPL", "ZZZZ", "BTC/USD", "MSFT"])
    )
    assert sorted(trades) == ["AAPL", "MSFT"]
    assert data.get_stock_snapshot(StockSnapshotRequest(symbol_or_symbols="ZZZZ")) == {}
    with http(srv) as c:
        assert c.get("/v2/stocks/quotes/latest", params={"symbols": "ZZZZ"}).json() == {
            "quotes": {}
        }


def test_one_symbol_forms_answer_the_alpaca_shapes_and_404_for_an_unknown_symbol(srv):
    with http(srv) as c:
        multi = c.get("/v2/stocks/snapshots", params={"symbols": "MSFT", "feed": "sip"}).json()
        for path, key in (("trades", "trade"), ("quotes", "quote"), ("bars", "bar")):
            one = c.get(f"/v2/stocks/MSFT/{path}/latest", params={"feed": "sip"}).json()
            assert set(one) == {"symbol", key} and one["symbol"] == "MSFT"
            many = c.get(f"/v2/stocks/{path}/latest", params={"symbols": "MSFT"}).json()
            assert many[path]["MSFT"]["t"] == one[key]["t"]
        assert set(one["bar"]) == {"t", "o", "h", "l", "c", "v", "n", "vw"}
        trade = c.get("/v2/stocks/MSFT/trades/latest").json()["trade"]
        assert set(trade) == {"t", "x", "p", "s", "c", "i", "z"} and trade["z"] == "C"
        quote = c.get("/v2/stocks/MSFT/quotes/latest").json()["quote"]
        assert set(quote) == {"t", "ax", "ap", "as", "bx", "bp", "bs", "c", "z"}
        snap = c.get("/v2/stocks/MSFT/snapshot").json()
        assert snap["symbol"] == "MSFT"
        assert {k: v for k, v in snap.items() if k != "symbol"}.keys() == multi["MSFT"].keys()
        r = c.get("/v2/stocks/ZZZZ/trades/latest")
        assert r.status_code == 404 and r.json() == {"message": "no data found for ZZZZ"}


@pytest.mark.parametrize(
    "path, params",
    [
        ("/v2/stocks/trades/latest", {}),
        ("/v2/stocks/quotes/latest", {"symbols": "AAPL", "feed": "nyse"}),
        ("/v2/stocks/snapshots", {"symbols": ""}),
        ("/v2/stocks/AAPL/bars/latest", {"feed": "bogus"}),
        ("/v1beta3/crypto/mars/latest/trades", {"symbols": "BTC/USD"}),
        ("/v1beta3/crypto/us/latest/quotes", {}),
        ("/v1beta3/crypto/us/bars", {"symbols": "BTC/USD", "timeframe": "7Fortnights"}),
        ("/v1beta3/crypto/us/bars", {"symbols": "ZZZ/USD", "timeframe": "1Eon"}),
    ],
)
def test_bad_data_queries_get_400_with_a_bare_message(srv, path, params):
    with http(srv) as c:
        r = c.get(path, params=params)
        assert r.status_code == 400
        assert set(r.json()) == {"message"} and r.json()["message"]


def test_crypto_client_reads_bars_latest_data_and_snapshot_for_btc_usd(srv):
    client = CryptoHistoricalDataClient(srv.key_id, srv.secret_key, url_override=srv.data_url)
    client._retry = 0
    symbol = "BTC/USD"
    trade = client.get_crypto_latest_trade(CryptoLatestTradeRequest(symbol_or_symbols=symbol))
    quote = client.get_crypto_latest_quote(CryptoLatestQuoteRequest(symbol_or_symbols=symbol))
    bar = client.get_crypto_latest_bar(CryptoLatestBarRequest(symbol_or_symbols=symbol))
    snap = client.get_crypto_snapshot(CryptoSnapshotRequest(symbol_or_symbols=[symbol, "AAPL"]))
    bars = client.get_crypto_bars(
        CryptoBarsRequest(
            symbol_or_symbols=symbol,
            timeframe=TimeFrame.Minute,
            start=START - timedelta(minutes=30),
            end=START - timedelta(minutes=1),
        )
    ).data[symbol]
    trade, quote, bar = trade[symbol], quote[symbol], bar[symbol]
    assert quote.bid_price < trade.price < quote.ask_price
    assert bars[-1] == bar and bar.close == trade.price and len(bars) == 30
    assert sorted(snap) == [symbol]  # a stock is not a crypto symbol
    assert snap[symbol].latest_trade == trade and snap[symbol].minute_bar == bar
    assert snap[symbol].daily_bar.timestamp == datetime(2026, 1, 5, tzinfo=CHICAGO)
    order = buy(trading(srv), symbol=symbol, qty=0.01)
    filled = trading(srv).get_order_by_id(order.id)
    assert Decimal(str(trade.price)) == Decimal(filled.filled_avg_price)
    with http(srv) as c:
        raw = c.get("/v1beta3/crypto/us/latest/trades", params={"symbols": symbol}).json()
        assert set(raw["trades"][symbol]) == {"t", "p", "s", "tks", "i"}
        raw = c.get("/v1beta3/crypto/us/latest/quotes", params={"symbols": symbol}).json()
        assert set(raw["quotes"][symbol]) == {"t", "bp", "bs", "ap", "as"}


def test_latest_data_moves_with_simulated_time(srv):
    data = stocks(srv)
    before = data.get_stock_latest_bar(StockLatestBarRequest(symbol_or_symbols="NVDA"))["NVDA"]
    srv.advance(300)
    after = data.get_stock_latest_bar(StockLatestBarRequest(symbol_or_symbols="NVDA"))["NVDA"]
    assert after.timestamp - before.timestamp == timedelta(minutes=5)
    trade = data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols="NVDA"))
    assert trade["NVDA"].timestamp == START + timedelta(minutes=5)
    assert trade["NVDA"].price == after.close


def test_data_routes_draw_on_the_data_budget(emulator):
    srv = emulator(speed=0, data_rate_limit=1)
    data = stocks(srv)
    data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols="AAPL"))
    with pytest.raises(APIError) as info:
        data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="AAPL"))
    assert info.value.status_code == 429
    trading(srv).get_account_configurations()  # the trading budget is separate


def test_under_nyse_hours_a_weekend_shows_fridays_last_trade_and_daily_bars(emulator):
    saturday = datetime(2026, 1, 10, 15, 0, tzinfo=UTC)
    srv = emulator(speed=0, start=saturday, sim=SimSettings(market_hours="nyse"))
    data = stocks(srv)
    trade = data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols="AAPL"))["AAPL"]
    bar = data.get_stock_latest_bar(StockLatestBarRequest(symbol_or_symbols="AAPL"))["AAPL"]
    snap = data.get_stock_snapshot(StockSnapshotRequest(symbol_or_symbols="AAPL"))["AAPL"]
    assert bar.timestamp == datetime(2026, 1, 9, 19, 59, tzinfo=NEW_YORK)  # extended close
    assert (trade.price, trade.timestamp) == (bar.close, bar.timestamp)
    assert snap.daily_bar.timestamp == datetime(2026, 1, 9, tzinfo=NEW_YORK)
    assert snap.previous_daily_bar.timestamp == datetime(2026, 1, 8, tzinfo=NEW_YORK)
    assert snap.daily_bar.close == bar.close
    crypto = CryptoHistoricalDataClient(srv.key_id, srv.secret_key, url_override=srv.data_url)
    btc = crypto.get_crypto_latest_trade(CryptoLatestTradeRequest(symbol_or_symbols="BTC/USD"))
    assert btc["BTC/USD"].timestamp == saturday  # crypto trades around the clock
