"""Bar feeds: where the engine's bars come from, for backtests, warm-up and live polling.

Every feed implements ``BarFeed.history(symbols, start, end)``: the bars of those symbols with
``start <= timestamp < end`` (bar start times, aware UTC), in time order across symbols, ties
broken by symbol name, so every feed orders the same data the same way. ``poll(symbols)``
returns the bars completed since the previous poll (a bar starting at ``t`` is complete once
``clock.now() >= t + timeframe``), each bar once, for live loops.

- ``SyntheticFeed``: the simulator's seeded random walk (``prices.SyntheticPrices``).
- ``CsvFeed``: a CSV file (timestamp, open, high, low, close, volume[, symbol]) read by
  ``prices.read_bars_csv``; a malformed row is a ``UsageError`` naming the file and line.
- ``AlpacaBarsFeed``: Alpaca's ``GET /v2/stocks/bars`` (or ``mqd sim serve``'s copy), every
  page through the throttler's ``alpaca_data`` budget, following ``next_page_token``. The range
  is fetched in chunks so a long backtest streams in bounded memory.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mqd_cli.errors import UsageError
from mqd_cli.model import Bar

if TYPE_CHECKING:
    import httpx

    from mqd_cli.clock import Clock
    from mqd_cli.config.settings import Settings
    from mqd_cli.throttle import Throttler


@runtime_checkable
class BarFeed(Protocol):
    def history(self, symbols: Sequence[str], start: datetime, end: datetime) -> Iterator[Bar]: ...
    def close(self) -> None: ...


def merge_bars(per_symbol: Iterable[Iterable[Bar]]) -> Iterator[Bar]:
    """Merge per-symbol, time-ordered bar streams into one stream ordered by (time, symbol)."""
    return heapq.merge(*per_symbol, key=lambda b: (b.timestamp, b.symbol))


class _Poller:
    """``poll`` on top of ``history``: each completed bar once, in time order."""

    clock: Clock
    timeframe: timedelta

    def _init_poller(self, lookback: timedelta) -> None:
        # symbol -> earliest bar start not returned yet; set by the first poll to now - lookback
        self._cursor: dict[str, datetime] = {}
        self._lookback = lookback

    history: Callable[[Sequence[str], datetime, datetime], Iterator[Bar]]  # from the feed

    def close(self) -> None:
        """Release the feed's connection (nothing to release by default)."""

    def poll(self, symbols: Sequence[str]) -> list[Bar]:
        """Bars completed since the last poll (the first poll looks back ``lookback``)."""
        if not symbols:
            return []
        now = self.clock.now()
        for s in symbols:
            self._cursor.setdefault(s, now - self._lookback)
        # Only bars whose end has passed: start + timeframe <= now.
        end = now - self.timeframe + timedelta(microseconds=1)
        start = min(self._cursor[s] for s in symbols)
        if end <= start:
            return []
        out = []
        for bar in self.history(symbols, start, end):
            if bar.timestamp < self._cursor[bar.symbol]:
                continue
            self._cursor[bar.symbol] = bar.timestamp + timedelta(microseconds=1)
            out.append(bar)
        return out


def _check_range(start: datetime, end: datetime) -> None:
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise UsageError(f"feed {name} {value.isoformat()} has no time zone", "use UTC")


# -- synthetic ------------------------------------------------------------------------------------


class SyntheticFeed(_Poller):
    """The simulator's deterministic random walk: same seed, origin and prices, same bars.

    Start prices default to the simulated exchange's (``sim_assets.START_PRICES``), so with
    the exchange's seed and bar length these are the bars its orders fill on."""

    def __init__(
        self,
        *,
        seed: int,
        timeframe: timedelta,
        origin: datetime | None = None,
        start_prices: Mapping[str, Decimal] | None = None,
        clock: Clock | None = None,
        lookback: timedelta = timedelta(hours=1),
    ):
        from mqd_cli.brokers.sim.assets import START_PRICES
        from mqd_cli.brokers.sim.prices import DEFAULT_ORIGIN, SyntheticPrices

        self.timeframe = timeframe
        self.clock = clock  # type: ignore[assignment]  # only poll() needs it
        prices = dict(START_PRICES if start_prices is None else start_prices)
        self.prices = SyntheticPrices(seed, timeframe, origin or DEFAULT_ORIGIN, prices)
        self._init_poller(lookback)

    def history(self, symbols: Sequence[str], start: datetime, end: datetime) -> Iterator[Bar]:
        _check_range(start, end)
        return merge_bars(self.prices.bars(s, start, end) for s in symbols)


# -- CSV -----------------------------------------------------------------------------------------


class CsvFeed(_Poller):
    """Bars replayed from a CSV file. ``symbol`` names the bars of a file without a symbol
    column. The whole file is read (and validated) on construction."""

    def __init__(
        self,
        path: str | Path,
        *,
        symbol: str | None = None,
        timeframe: timedelta = timedelta(minutes=1),
        clock: Clock | None = None,
        lookback: timedelta = timedelta(days=3650),
    ):
        from mqd_cli.brokers.sim.prices import CsvError, read_bars_csv

        self.path = Path(path).expanduser()
        self.timeframe = timeframe
        self.clock = clock  # type: ignore[assignment]
        if not self.path.is_file():
            raise UsageError(f"bar file {self.path} not found", "check --data")
        try:
            raw = read_bars_csv(self.path, symbol)
        except CsvError as exc:
            raise UsageError(f"{exc.path}:{exc.line}: {exc.problem}", exc.fix) from exc
        except OSError as exc:
            raise UsageError(
                f"cannot read bar file {self.path}: {exc}", "check the --data path"
            ) from exc
        self.bars: dict[str, list[Bar]] = {
            s: sorted(bars, key=lambda b: b.timestamp) for s, bars in raw.items()
        }
        self._init_poller(lookback)

    @property
    def symbols(self) -> list[str]:
        return sorted(self.bars)

    def span(self) -> tuple[datetime, datetime] | None:
        """First bar start and last bar end over every symbol (None for an empty file)."""
        firsts = [b[0].timestamp for b in self.bars.values() if b]
        lasts = [b[-1].timestamp for b in self.bars.values() if b]
        if not firsts:
            return None
        return min(firsts), max(lasts) + self.timeframe

    def history(self, symbols: Sequence[str], start: datetime, end: datetime) -> Iterator[Bar]:
        _check_range(start, end)
        symbols = [s.upper() for s in symbols]
        missing = [s for s in symbols if s not in self.bars]
        if missing:
            raise UsageError(
                f"{self.path} has no bars for {', '.join(missing)}",
                f"it holds: {', '.join(self.symbols) or 'nothing'}",
            )
        import bisect

        lists = []
        for s in symbols:
            bars = self.bars[s]
            stamps = [b.timestamp for b in bars]
            lists.append(bars[bisect.bisect_left(stamps, start) : bisect.bisect_left(stamps, end)])
        return merge_bars(lists)


# -- Alpaca REST ----------------------------------------------------------------------------------

ALPACA_DATA_URL = "https://data.alpaca.markets"
LIMIT = "alpaca_data"


def alpaca_timeframe(tf: timedelta) -> str:
    """``timedelta(minutes=5)`` -> ``"5Min"``; UsageError for what Alpaca cannot aggregate."""
    secs = int(tf.total_seconds())
    if tf.total_seconds() != secs or secs <= 0:
        secs = -1
    if secs % 60 == 0 and 1 <= secs // 60 <= 59:
        return f"{secs // 60}Min"
    if secs % 3600 == 0 and 1 <= secs // 3600 <= 23:
        return f"{secs // 3600}Hour"
    if secs == 86400:
        return "1Day"
    if secs == 7 * 86400:
        return "1Week"
    raise UsageError(
        f"timeframe {tf} is not an Alpaca bar size",
        "use 1m-59m, 1h-23h, 1d or 7d in [strategy] timeframe",
    )


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AlpacaBarsFeed(_Poller):
    """Historical and polled bars from ``/v2/stocks/bars``, throttled, paginated, chunked.

    ``chunk`` bounds how much time one series of pages covers: bars are merged across symbols
    per chunk, so memory holds one chunk, not the whole backtest.
    """

    def __init__(
        self,
        *,
        base_url: str,
        key_id: str,
        secret_key: str,
        clock: Clock,
        timeframe: timedelta = timedelta(minutes=1),
        throttler: Throttler | None = None,
        feed: str = "iex",
        adjustment: str = "raw",
        page_limit: int = 10_000,
        chunk: timedelta = timedelta(days=7),
        timeout: float = 10.0,
        lookback: timedelta = timedelta(hours=1),
        transport: Any = None,
    ):
        self.base_url = (base_url or ALPACA_DATA_URL).rstrip("/")
        self._headers = {"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret_key}
        self.clock = clock
        self.timeframe = timeframe
        self._tf = alpaca_timeframe(timeframe)
        self._throttler = throttler
        self.feed = feed
        self.adjustment = adjustment
        self.page_limit = page_limit
        self.chunk = chunk
        self.timeout = timeout
        self._transport = transport
        self._client: httpx.Client | None = None
        self.pages_fetched = 0
        self._init_poller(lookback)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Clock, throttler: Throttler | None = None, **kw: Any
    ) -> AlpacaBarsFeed:
        """From ``[alpaca]`` (data_url, keys, data_feed, timeout) and ``[strategy] timeframe``.

        With ``broker = "sim"`` point ``[alpaca] data_url`` at ``mqd sim serve``.
        """
        a = settings.alpaca
        return cls(
            base_url=a.data_url,
            key_id=a.key_id.reveal(),
            secret_key=a.secret_key.reveal(),
            clock=clock,
            timeframe=settings.strategy.timeframe,
            throttler=throttler,
            feed=a.data_feed,
            timeout=a.timeout.total_seconds(),
            **kw,
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- history ----------------------------------------------------------------------------------

    def history(self, symbols: Sequence[str], start: datetime, end: datetime) -> Iterator[Bar]:
        _check_range(start, end)
        if not symbols:
            return iter(())
        return self._history(list(symbols), start, end)

    def _history(self, symbols: list[str], start: datetime, end: datetime) -> Iterator[Bar]:
        lo = start
        while lo < end:
            hi = min(end, lo + self.chunk)
            per_symbol = self.fetch(symbols, lo, hi)
            yield from merge_bars(per_symbol[s] for s in symbols)
            lo = hi

    def fetch(self, symbols: Sequence[str], start: datetime, end: datetime) -> dict[str, list[Bar]]:
        """Every page of ``[start, end)`` for ``symbols``: bars per symbol, time-ordered."""
        out: dict[str, list[Bar]] = {s: [] for s in symbols}
        params: dict[str, str] = {
            "symbols": ",".join(symbols),
            "timeframe": self._tf,
            "start": _rfc3339(start),
            # Alpaca's end is inclusive; ours is exclusive.
            "end": _rfc3339(end - timedelta(microseconds=1)),
            "limit": str(self.page_limit),
            "adjustment": self.adjustment,
            "feed": self.feed,
            "sort": "asc",
        }
        seen_tokens: set[str] = set()
        while True:
            body = self._throttle().call(
                LIMIT, functools.partial(self._get, dict(params)), idempotent=True
            )
            self.pages_fetched += 1
            token = parse_bars_page(body, out)
            if not token:
                break
            if token in seen_tokens:
                from mqd_cli.brokers.errors import BrokerCallError

                raise BrokerCallError(
                    f"bars pagination repeats page token {token!r}",
                    "the data server is misbehaving; retry later",
                )
            seen_tokens.add(token)
            params["page_token"] = token
        for s in out:
            out[s] = sorted(
                (b for b in out[s] if start <= b.timestamp < end), key=lambda b: b.timestamp
            )
        return out

    def _throttle(self) -> Throttler:
        if self._throttler is None:
            from mqd_cli.throttle import Throttler

            self._throttler = Throttler(self.clock)
        return self._throttler

    def _get(self, params: dict[str, str]) -> Any:
        import httpx

        from mqd_cli.brokers.errors import BrokerUnavailable

        if self._client is None:
            self._client = httpx.Client(
                base_url=self.base_url,
                headers=self._headers,
                timeout=self.timeout,
                transport=self._transport,
            )
        try:
            response = self._client.get("/v2/stocks/bars", params=params)
        except httpx.HTTPError as exc:
            raise BrokerUnavailable(
                f"market data unreachable at {self.base_url}: {type(exc).__name__}: {exc}",
                "check [alpaca] data_url and the network",
            ) from None
        return judge_data_response(response, self._throttle(), self.clock)


def judge_data_response(response: Any, throttler: Throttler, clock: Clock) -> Any:
    """The JSON body of a 200; typed errors otherwise (429 and 5xx for the throttler)."""
    from mqd_cli.brokers.errors import (
        AuthFailed,
        BrokerCallError,
        BrokerUnavailable,
        RateLimited,
    )
    from mqd_cli.throttle import from_us, parse_rate_headers, to_us

    status = response.status_code
    if status == 429:
        h = parse_rate_headers(response.headers, to_us(clock.now()))
        raise RateLimited(status=429, reset_at=from_us(h.reset_at), retry_after=h.retry_after)
    if status >= 500:
        raise BrokerUnavailable(f"market data answered {status}", status=status)
    throttler.observe(LIMIT, status, response.headers)
    try:
        body = response.json()
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    if status in (401, 403):
        raise AuthFailed(
            f"market data refused the request ({status}): {message or 'no message'}",
            "check [alpaca] key_id/secret_key and data_feed (the free plan has no recent SIP)",
            status=status,
        )
    if status != 200:
        raise BrokerCallError(
            f"market data answered {status}: {message or 'no message'}", status=status
        )
    if not isinstance(body, dict):
        raise BrokerCallError("market data answered 200 with a body that is not a JSON object")
    return body


def parse_bars_page(body: Mapping[str, Any], into: dict[str, list[Bar]]) -> str | None:
    """Add one ``/v2/stocks/bars`` page to ``into`` (symbols not asked for are ignored);
    return ``next_page_token``. A malformed page raises ``BrokerCallError`` naming the field."""
    from mqd_cli.brokers.errors import BrokerCallError
    from mqd_cli.wire.parse import PayloadError, parse_bar

    bars = body.get("bars")
    if bars is None:
        bars = {}
    if not isinstance(bars, dict):
        raise BrokerCallError(
            f"malformed bars page: 'bars' is {type(bars).__name__}, "
            "expected an object keyed by symbol"
        )
    for symbol, rows in bars.items():
        if symbol not in into:
            continue
        if not isinstance(rows, list):
            raise BrokerCallError(f"malformed bars page: bars.{symbol} is not a list")
        try:
            into[symbol].extend(parse_bar(symbol, row) for row in rows)
        except PayloadError as exc:
            raise BrokerCallError(f"malformed bars page: {symbol}: {exc}") from None
    token = body.get("next_page_token")
    if token is not None and not isinstance(token, str):
        raise BrokerCallError(f"malformed bars page: next_page_token is {token!r}")
    return token or None


def build_feed(
    settings: Settings,
    *,
    clock: Clock,
    data: str | Path | None = None,
    synthetic: bool = False,
    throttler_factory: Callable[[], Throttler] | None = None,
    origin: datetime | None = None,
) -> BarFeed:
    """The feed for a run or backtest: ``data`` (a CSV) > ``synthetic`` (or broker "sim")
    > Alpaca REST. ``origin`` anchors the random walk's bar grid (default: the simulator's)."""
    tf = settings.strategy.timeframe
    if data:
        return CsvFeed(
            data,
            timeframe=tf,
            clock=clock,
            symbol=settings.strategy.symbols[0] if len(settings.strategy.symbols) == 1 else None,
        )
    if synthetic or settings.broker == "sim":
        return SyntheticFeed(seed=settings.sim.seed, timeframe=tf, origin=origin, clock=clock)
    throttler = throttler_factory() if throttler_factory else None
    return AlpacaBarsFeed.from_settings(settings, clock=clock, throttler=throttler)
