"""Bar feeds: CSV errors with line numbers, synthetic determinism, Alpaca REST pagination over a
real loopback server (and the emulator), throttling, errors and live polling."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from mqd_cli.brokers.errors import AuthFailed, BrokerCallError
from mqd_cli.clock import BacktestClock
from mqd_cli.config.settings import Settings
from mqd_cli.errors import UsageError
from mqd_cli.throttle import Throttler
from mqd_cli.trading.feeds import (
    AlpacaBarsFeed,
    BarFeed,
    CsvFeed,
    SyntheticFeed,
    alpaca_timeframe,
    build_feed,
    parse_bars_page,
)

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
MIN = timedelta(minutes=1)


def wbar(i: int, close: float = 100.0) -> dict:
    t = (T0 + i * MIN).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "t": t,
        "o": close,
        "h": close + 1,
        "l": close - 1,
        "c": close,
        "v": 10,
        "n": 1,
        "vw": close,
    }


# -- a scripted loopback data server --------------------------------------------------------------


class DataServer:
    """Serves ``/v2/stocks/bars`` from a script: page_token -> (status, headers, body)."""

    def __init__(self):
        self.pages: dict[str | None, list[tuple[int, dict, object]]] = {}
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                outer.requests.append(
                    {"path": url.path, "query": query, "headers": dict(self.headers)}
                )
                script = outer.pages.get(query.get("page_token"), [])
                status, headers, body = script.pop(0) if len(script) > 1 else script[0]
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def page(self, token, body, status=200, headers=None):
        self.pages.setdefault(token, []).append((status, headers or {}, body))

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = DataServer()
    yield srv
    srv.close()


def make_feed(server, clock=None, **kw):
    clock = clock or BacktestClock(T0 + timedelta(days=1))
    throttler = Throttler(clock)
    feed = AlpacaBarsFeed(
        base_url=server.url,
        key_id="KEYID123",
        secret_key="SECRETVALUE123",
        clock=clock,
        throttler=throttler,
        **kw,
    )
    return feed, throttler, clock


def data_stats(throttler):
    return next(s for s in throttler.stats() if s.name == "alpaca_data")


# -- Alpaca REST ----------------------------------------------------------------------------------


def test_alpaca_history_follows_next_page_token_and_merges_symbols_in_time_order(server):
    # Pages cut AAPL part-way, as the real API does (limit counts points across symbols).
    server.page(None, {"bars": {"AAPL": [wbar(0, 100), wbar(1, 101)]}, "next_page_token": "p2"})
    server.page(
        "p2", {"bars": {"AAPL": [wbar(2, 102)], "MSFT": [wbar(0, 400)]}, "next_page_token": "p3"}
    )
    server.page("p3", {"bars": {"MSFT": [wbar(1, 401), wbar(2, 402)]}, "next_page_token": None})
    feed, throttler, _ = make_feed(server, page_limit=2)
    bars = list(feed.history(["AAPL", "MSFT"], T0, T0 + 3 * MIN))
    assert [(b.symbol, b.timestamp - T0, b.close) for b in bars] == [
        ("AAPL", 0 * MIN, Decimal(100)),
        ("MSFT", 0 * MIN, Decimal(400)),
        ("AAPL", 1 * MIN, Decimal(101)),
        ("MSFT", 1 * MIN, Decimal(401)),
        ("AAPL", 2 * MIN, Decimal(102)),
        ("MSFT", 2 * MIN, Decimal(402)),
    ]
    assert [r["query"].get("page_token") for r in server.requests] == [None, "p2", "p3"]
    q = server.requests[0]["query"]
    assert q == {
        "symbols": "AAPL,MSFT",
        "timeframe": "1Min",
        "start": "2026-01-05T14:30:00.000000Z",
        "end": "2026-01-05T14:32:59.999999Z",
        "limit": "2",
        "adjustment": "raw",
        "feed": "iex",
        "sort": "asc",
    }
    assert server.requests[0]["headers"]["APCA-API-KEY-ID"] == "KEYID123"
    assert data_stats(throttler).requests == 3  # every page went through the throttler
    assert feed.pages_fetched == 3
    assert isinstance(feed, BarFeed)


def test_alpaca_history_is_fetched_in_chunks_of_time(server):
    server.page(
        None, {"bars": {"AAPL": [wbar(0), wbar(1), wbar(2), wbar(3)]}, "next_page_token": None}
    )
    feed, _, _ = make_feed(server, chunk=2 * MIN)
    bars = list(feed.history(["AAPL"], T0, T0 + 4 * MIN))
    # The server ignores the range; the feed keeps each chunk's own bars, each bar once.
    assert [b.timestamp - T0 for b in bars] == [0 * MIN, 1 * MIN, 2 * MIN, 3 * MIN]
    assert [(r["query"]["start"], r["query"]["end"]) for r in server.requests] == [
        ("2026-01-05T14:30:00.000000Z", "2026-01-05T14:31:59.999999Z"),
        ("2026-01-05T14:32:00.000000Z", "2026-01-05T14:33:59.999999Z"),
    ]


def test_alpaca_429_holds_until_retry_after_then_retries(server):
    server.page(
        None,
        {"code": 42910000, "message": "rate limit exceeded"},
        status=429,
        headers={"Retry-After": "7"},
    )
    server.page(None, {"bars": {"AAPL": [wbar(0)]}, "next_page_token": None})
    feed, throttler, clock = make_feed(server)
    before = clock.now()
    bars = list(feed.history(["AAPL"], T0, T0 + MIN))
    assert len(bars) == 1
    assert clock.now() - before >= timedelta(seconds=7)  # waited on the clock, not for real
    assert data_stats(throttler).rate_limited == 1


def test_alpaca_5xx_is_retried_with_backoff(server):
    server.page(None, {"message": "internal"}, status=500)
    server.page(None, {"bars": {"AAPL": [wbar(0)]}, "next_page_token": None})
    feed, throttler, _ = make_feed(server)
    assert len(list(feed.history(["AAPL"], T0, T0 + MIN))) == 1
    assert len(server.requests) == 2 and data_stats(throttler).backoffs >= 1


def test_alpaca_auth_failure_is_a_broker_error_without_the_secret(server):
    server.page(None, {"code": 40110000, "message": "access key verification failed"}, status=401)
    feed, _, _ = make_feed(server)
    with pytest.raises(AuthFailed) as err:
        list(feed.history(["AAPL"], T0, T0 + MIN))
    assert "access key verification failed" in err.value.message
    assert "SECRETVALUE123" not in err.value.message + err.value.hint
    assert err.value.exit_code == 3


def test_unreachable_data_server_is_a_broker_error():
    clock = BacktestClock(T0)
    feed = AlpacaBarsFeed(
        base_url="http://127.0.0.1:9",
        key_id="k",
        secret_key="s",
        clock=clock,
        throttler=Throttler(clock, max_attempts=2),
        timeout=1.0,
    )
    with pytest.raises(BrokerCallError, match="market data unreachable"):
        list(feed.history(["AAPL"], T0, T0 + MIN))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"bars": [], "next_page_token": None}, "'bars' is list"),
        ({"bars": {"AAPL": {}}}, "bars.AAPL is not a list"),
        (
            {"bars": {"AAPL": [{"t": "2026-01-05T14:30:00Z", "o": 1, "h": 1, "l": 1}]}},
            "bar.c: required number is missing",
        ),
        (
            {"bars": {"AAPL": [{"t": "yesterday", "o": 1, "h": 1, "l": 1, "c": 1}]}},
            "bar.t: expected an RFC 3339 timestamp",
        ),
        (
            {"bars": {"AAPL": [{"t": "2026-01-05T14:30:00Z", "o": "x", "h": 1, "l": 1, "c": 1}]}},
            "bar.o: expected a number",
        ),
        ({"bars": {}, "next_page_token": 5}, "next_page_token is 5"),
    ],
)
def test_malformed_bars_pages_name_the_field(body, message):
    with pytest.raises(BrokerCallError, match="malformed bars page") as err:
        parse_bars_page(body, {"AAPL": []})
    assert message in err.value.message


def test_non_json_200_is_a_broker_error(server):
    server.page(None, b"<html>proxy</html>")
    feed, _, _ = make_feed(server)
    with pytest.raises(BrokerCallError, match="not a JSON object"):
        list(feed.history(["AAPL"], T0, T0 + MIN))


def test_unknown_symbol_gives_no_bars_not_an_error(server):
    server.page(None, {"bars": {}, "next_page_token": None})
    feed, _, _ = make_feed(server)
    assert list(feed.history(["NOPE"], T0, T0 + MIN)) == []


def test_repeated_page_token_stops_instead_of_looping(server):
    server.page(None, {"bars": {}, "next_page_token": "same"})
    server.page("same", {"bars": {}, "next_page_token": "same"})
    feed, _, _ = make_feed(server)
    with pytest.raises(BrokerCallError, match="repeats page token"):
        list(feed.history(["AAPL"], T0, T0 + MIN))


def test_poll_returns_each_completed_bar_once(server):
    server.page(None, {"bars": {"AAPL": [wbar(0), wbar(1), wbar(2)]}, "next_page_token": None})
    clock = BacktestClock(T0 + 2 * MIN + timedelta(seconds=5))  # bar 2 is still forming
    feed, _, _ = make_feed(server, clock=clock, lookback=timedelta(minutes=10))
    assert [b.timestamp - T0 for b in feed.poll(["AAPL"])] == [0 * MIN, 1 * MIN]
    clock.advance(60)
    assert [b.timestamp - T0 for b in feed.poll(["AAPL"])] == [2 * MIN]
    assert feed.poll(["AAPL"]) == []  # nothing new has completed


@pytest.mark.parametrize(
    ("tf", "text"),
    [
        (MIN, "1Min"),
        (15 * MIN, "15Min"),
        (timedelta(hours=2), "2Hour"),
        (timedelta(days=1), "1Day"),
        (timedelta(days=7), "1Week"),
    ],
)
def test_alpaca_timeframes(tf, text):
    assert alpaca_timeframe(tf) == text


@pytest.mark.parametrize("tf", [timedelta(seconds=30), timedelta(minutes=90), timedelta(days=2)])
def test_unsupported_timeframes_are_usage_errors(tf):
    with pytest.raises(UsageError, match="not an Alpaca bar size"):
        alpaca_timeframe(tf)


def test_alpaca_history_against_the_emulator_matches_one_big_page(emulator):
    srv = emulator()
    clock = BacktestClock(T0)
    start = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
    end = start + timedelta(minutes=30)

    def feed(limit):
        return AlpacaBarsFeed(
            base_url=srv.data_url,
            key_id=srv.key_id,
            secret_key=srv.secret_key,
            clock=clock,
            throttler=Throttler(clock),
            page_limit=limit,
        )

    small = feed(7)
    paged = list(small.history(["AAPL", "MSFT"], start, end))
    whole = list(feed(10_000).history(["AAPL", "MSFT"], start, end))
    assert small.pages_fetched > 5
    assert paged == whole and len(paged) == 60
    assert paged == sorted(paged, key=lambda b: (b.timestamp, b.symbol))


# -- CSV ------------------------------------------------------------------------------------------


def write_csv(tmp_path, text, name="aapl.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_feed_reads_bars_and_filters_the_range(tmp_path):
    path = write_csv(
        tmp_path,
        "timestamp,open,high,low,close,volume,symbol\n"
        "2026-01-05T14:30:00Z,10,11,9,10.5,100,AAPL\n"
        "2026-01-05T14:30:00Z,20,21,19,20.5,100,MSFT\n"
        "2026-01-05T14:31:00Z,10.5,11,10,10.8,50,AAPL\n"
        "2026-01-05T14:32:00Z,10.8,11,10,10.9,50,AAPL\n",
    )
    feed = CsvFeed(path)
    bars = list(feed.history(["AAPL", "MSFT"], T0, T0 + 2 * MIN))
    assert [(b.symbol, b.timestamp - T0, b.close) for b in bars] == [
        ("AAPL", 0 * MIN, Decimal("10.5")),
        ("MSFT", 0 * MIN, Decimal("20.5")),
        ("AAPL", 1 * MIN, Decimal("10.8")),
    ]
    assert feed.span() == (T0, T0 + 3 * MIN)


def test_csv_without_symbol_column_uses_the_given_symbol(tmp_path):
    path = write_csv(
        tmp_path,
        "timestamp,open,high,low,close,volume\n2026-01-05 14:30,10,11,9,10.5,100\n",
        name="prices.csv",
    )
    assert [b.symbol for b in CsvFeed(path, symbol="SPY").history(["SPY"], T0, T0 + MIN)] == ["SPY"]


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        ("2026-01-05T14:30:00Z,10,11,9,10.5\n", 2, "expected 6 fields, found 5"),
        (
            "2026-01-05T14:30:00Z,10,11,9,10.5,100\nnot-a-time,10,11,9,10,1\n",
            3,
            "expected an RFC 3339 timestamp",
        ),
        ("2026-01-05T14:30:00Z,10,11,9,abc,100\n", 2, "close 'abc' is not a number"),
        ("2026-01-05T14:30:00Z,10,9,11,10,100\n", 2, "high 9 is below low 11"),
        (
            "2026-01-05T14:31:00Z,10,11,9,10,1\n2026-01-05T14:30:00Z,10,11,9,10,1\n",
            3,
            "is not after the previous",
        ),
        ("2026-01-05T14:30:00Z,10,11,9,10,-5\n", 2, "volume -5 is negative"),
    ],
)
def test_csv_malformed_rows_name_the_file_and_line(tmp_path, rows, line, message):
    path = write_csv(tmp_path, "timestamp,open,high,low,close,volume\n" + rows)
    with pytest.raises(UsageError) as err:
        CsvFeed(path)
    assert err.value.message.startswith(f"{path}:{line}: ")
    assert message in err.value.message
    assert err.value.hint  # says how to fix it


def test_csv_missing_file_and_missing_symbol_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        CsvFeed(tmp_path / "nope.csv")
    path = write_csv(
        tmp_path, "timestamp,open,high,low,close,volume\n2026-01-05T14:30:00Z,10,11,9,10,1\n"
    )
    with pytest.raises(UsageError, match="has no bars for MSFT") as err:
        list(CsvFeed(path).history(["MSFT"], T0, T0 + MIN))
    assert err.value.hint == "it holds: AAPL"


# -- synthetic ------------------------------------------------------------------------------------


def test_synthetic_feed_is_deterministic_and_time_ordered():
    a = SyntheticFeed(seed=7, timeframe=MIN)
    b = SyntheticFeed(seed=7, timeframe=MIN)
    bars = list(a.history(["AAPL", "MSFT"], T0, T0 + 30 * MIN))
    assert bars == list(b.history(["AAPL", "MSFT"], T0, T0 + 30 * MIN))
    assert len(bars) == 60
    assert [(x.timestamp, x.symbol) for x in bars] == sorted((x.timestamp, x.symbol) for x in bars)
    assert bars != list(
        SyntheticFeed(seed=8, timeframe=MIN).history(["AAPL", "MSFT"], T0, T0 + 30 * MIN)
    )


def test_synthetic_feed_bars_are_the_bars_the_simulated_exchange_fills_on():
    from mqd_cli.brokers.sim.broker import SimBroker

    settings = Settings()
    broker = SimBroker(settings.sim, BacktestClock(T0), auto_step=False)
    feed = build_feed(settings, clock=BacktestClock(T0), synthetic=True)
    for symbol in ("AAPL", "BTC/USD"):
        bars = list(feed.history([symbol], T0, T0 + 30 * MIN))
        assert bars == broker.bars(symbol, T0, T0 + 30 * MIN, MIN)
        assert abs(bars[0].open / broker.prices.start_price(symbol) - 1) < Decimal("0.05")


def test_synthetic_feed_polls_completed_bars_on_the_clock():
    clock = BacktestClock(T0)
    feed = SyntheticFeed(seed=1, timeframe=MIN, clock=clock, lookback=timedelta(0))
    assert feed.poll(["AAPL"]) == []
    clock.advance(150)
    assert [b.timestamp - T0 for b in feed.poll(["AAPL"])] == [0 * MIN, 1 * MIN]
    clock.advance(30)
    assert [b.timestamp - T0 for b in feed.poll(["AAPL"])] == [2 * MIN]


def test_build_feed_picks_csv_then_synthetic_then_alpaca(tmp_path):
    clock = BacktestClock(T0)
    path = write_csv(
        tmp_path, "timestamp,open,high,low,close,volume\n2026-01-05T14:30:00Z,10,11,9,10,1\n"
    )
    assert isinstance(build_feed(Settings(), clock=clock, data=path), CsvFeed)
    assert isinstance(build_feed(Settings(), clock=clock), SyntheticFeed)
    alpaca = build_feed(
        Settings(broker="alpaca"), clock=clock, throttler_factory=lambda: Throttler(clock)
    )
    assert isinstance(alpaca, AlpacaBarsFeed)
    assert alpaca.base_url == "https://data.alpaca.markets"
