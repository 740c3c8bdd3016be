"""Price sources for the simulated exchange and backtests: a seeded random walk and CSV replay.

``SyntheticPrices`` is a deterministic log-normal random walk on a fixed bar grid (``origin`` +
k x ``timeframe``): the same (seed, symbol, timeframe, origin) always gives the same bars, and
any range can be asked for in any order (the walk is built in cached chunks of bars, each from
its own seeded generator). ``CsvPrices`` replays bars read by ``read_bars_csv`` and falls back to
a random walk for symbols the file does not hold.

Both answer the same three questions the matching engine asks: ``bars(symbol, start, end)``
(bars whose start is in [start, end)), ``price_at(symbol, t)`` (the last traded price at ``t``:
the open of the bar containing ``t``, so nothing after ``t`` leaks in) and
``timeframe_of(symbol)``. Prices are floats only while the walk is generated; every price that
leaves this module is a ``Decimal`` on a valid tick (0.01 at $1 and above, 0.0001 below).
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import math
import re
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mqd_cli.model import Bar
from mqd_cli.symbols.properties import US_EQUITY_TICKS
from mqd_cli.symbols.properties import equity_tick as tick_for

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "DEFAULT_ORIGIN",
    "CsvError",
    "CsvPrices",
    "PriceSource",
    "SyntheticPrices",
    "read_bars_csv",
    "tick_for",
    "to_tick",
]

DEFAULT_ORIGIN = datetime(2026, 1, 2, 14, 30, tzinfo=UTC)
# The tick rule lives in one place (symbol_properties.US_EQUITY_TICKS); ``tick_for`` is it.
CENT = US_EQUITY_TICKS[0][1]
SUB_CENT = US_EQUITY_TICKS[-1][1]


def to_tick(price: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """``price`` rounded to its valid tick (never below one tick)."""
    out = price.quantize(tick_for(price), rounding=rounding)
    if out >= 1:
        out = out.quantize(CENT, rounding=rounding)
    return max(out, SUB_CENT)


def _float_to_tick(value: float) -> Decimal:
    """A generated float price on its tick (the walk's hot path: formatting beats quantize)."""
    if value >= 0.995:
        return Decimal(f"{value:.2f}")
    return max(Decimal(f"{value:.4f}"), SUB_CENT)


def _aware(t: datetime, name: str) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name}: naive datetime {t.isoformat()}; pass an aware datetime (UTC)")
    return t.astimezone(UTC)


class PriceSource(Protocol):
    def bars(self, symbol: str, start: datetime, end: datetime) -> list[Bar]: ...
    def price_at(self, symbol: str, t: datetime) -> Decimal: ...
    def timeframe_of(self, symbol: str) -> timedelta: ...


# -- the random walk ------------------------------------------------------------------------------

_CHUNK = 4096  # bars generated together from one seeded generator


def default_start_price(symbol: str) -> Decimal:
    """A stable start price for a symbol without one: $5-$500 from a hash of the symbol."""
    h = int.from_bytes(hashlib.sha256(symbol.upper().encode()).digest()[:8], "big")
    return Decimal(5 + h % 49_500) / 100


class SyntheticPrices:
    """A seeded, deterministic random walk of OHLCV bars on the grid ``origin + k*timeframe``.

    The log price moves by a normal step per bar (about 0.06 % per minute, scaled with the
    square root of the bar length); highs and lows extend past open/close by a random wick.
    """

    def __init__(
        self,
        seed: int,
        timeframe: timedelta = timedelta(minutes=1),
        origin: datetime = DEFAULT_ORIGIN,
        start_prices: dict[str, Decimal] | None = None,
        volatility: float = 0.0006,
    ):
        if timeframe <= timedelta(0):
            raise ValueError(f"timeframe must be positive, got {timeframe}")
        self.seed = seed
        self.timeframe = timeframe
        self.origin = _aware(origin, "origin")
        self.start_prices = {k.upper(): Decimal(v) for k, v in (start_prices or {}).items()}
        minutes = timeframe.total_seconds() / 60
        self._sigma = volatility * math.sqrt(minutes)
        # per symbol: chunk index -> cumulative log return at the chunk's first open
        self._chunk_start: dict[str, dict[int, float]] = {}
        self._chunks: OrderedDict[tuple[str, int], tuple[NDArray[Any], ...]] = OrderedDict()
        self._at_time: datetime | None = None  # ``price_at``'s last instant and its bar index
        self._at_index = 0
        self._last_price: dict[str, tuple[int, Decimal]] = {}  # symbol -> (bar index, price)
        self._opens: dict[tuple[str, int], list[float]] = {}  # a chunk's opens, for price_at

    # -- public ---------------------------------------------------------------------------------

    def timeframe_of(self, symbol: str) -> timedelta:
        return self.timeframe

    def start_price(self, symbol: str) -> Decimal:
        return self.start_prices.get(symbol.upper()) or default_start_price(symbol)

    def index_of(self, t: datetime) -> int:
        """Index of the bar containing ``t``."""
        return (_aware(t, "t") - self.origin) // self.timeframe

    def bar_start(self, index: int) -> datetime:
        return self.origin + index * self.timeframe

    def bars(
        self, symbol: str, start: datetime, end: datetime, timeframe: timedelta | None = None
    ) -> list[Bar]:
        """Bars whose start is in [start, end), oldest first.

        ``timeframe`` (a whole multiple of the walk's bar length) aggregates the walk into
        longer bars aligned to the same grid; it is the same path, so a 1-hour bar's high is
        the highest of its 1-minute bars.
        """
        start, end = _aware(start, "start"), _aware(end, "end")
        if timeframe is None or timeframe == self.timeframe:
            first = -((self.origin - start) // self.timeframe)  # ceil
            last = -((self.origin - end) // self.timeframe)  # first index not included
            return self._range(symbol, first, last)
        if timeframe < self.timeframe or timeframe % self.timeframe:
            raise ValueError(
                f"timeframe {timeframe} is not a whole multiple of the walk's {self.timeframe}"
            )
        size = timeframe // self.timeframe
        first = -((self.origin - start) // timeframe)
        last = -((self.origin - end) // timeframe)
        return self._aggregate_range(symbol, first, last, size, timeframe)

    def bar_at(self, symbol: str, t: datetime) -> Bar:
        """The bar containing ``t`` (its close lies in the future of ``t`` unless t is its end)."""
        k = self.index_of(t)
        return self._range(symbol, k, k + 1)[0]

    def price_at(self, symbol: str, t: datetime) -> Decimal:
        """The last price at ``t``: the open of the bar containing it."""
        # Marking an account to market asks for every position's price at the same instant,
        # again and again within a bar: the bar index of the last instant and each symbol's
        # last price are kept (a price is a pure function of symbol and bar index).
        if t is not self._at_time:
            self._at_index = self.index_of(t)
            self._at_time = t
        k = self._at_index
        hit = self._last_price.get(symbol)
        if hit is not None and hit[0] == k:
            return hit[1]
        chunk, i = divmod(k, _CHUNK)
        opens = self._opens.get((symbol, chunk))
        if opens is None:
            if len(self._opens) >= 256:
                self._opens.clear()
            opens = self._opens[symbol, chunk] = self._chunk(symbol.upper(), chunk)[0].tolist()
        price = _float_to_tick(opens[i])
        self._last_price[symbol] = (k, price)
        return price

    # -- the walk -------------------------------------------------------------------------------
    # numpy (already installed with alpaca-py's pandas) is imported here, lazily: generating a
    # year of minute bars in pure Python takes seconds, with numpy milliseconds.

    def _rng(self, symbol: str, chunk: int, part: str):
        import numpy as np

        key = f"{self.seed}|{symbol.upper()}|{self.timeframe.total_seconds()}|"
        key += f"{self.origin.isoformat()}|{chunk}|{part}"
        digest = hashlib.sha256(key.encode()).digest()
        return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "big")))

    def _returns(self, symbol: str, chunk: int):
        return self._rng(symbol, chunk, "r").normal(0.0, self._sigma, _CHUNK)

    def _log_at_chunk(self, symbol: str, chunk: int) -> float:
        starts = self._chunk_start.setdefault(symbol, {0: 0.0})
        if chunk in starts:
            return starts[chunk]
        step = 1 if chunk > 0 else -1
        c = chunk - step
        while c not in starts:
            c -= step
        value = starts[c]
        while c != chunk:
            if step > 0:
                value += float(self._returns(symbol, c).sum())
                c += 1
            else:
                c -= 1
                value -= float(self._returns(symbol, c).sum())
            starts[c] = value
        return value

    def _chunk(self, symbol: str, chunk: int) -> tuple[NDArray[Any], ...]:
        import numpy as np

        key = (symbol, chunk)
        hit = self._chunks.get(key)
        if hit is not None:
            self._chunks.move_to_end(key)
            return hit
        base = math.log(float(self.start_price(symbol))) + self._log_at_chunk(symbol, chunk)
        levels = base + np.concatenate(([0.0], np.cumsum(self._returns(symbol, chunk))))
        prices = np.exp(levels)
        opens, closes = prices[:-1], prices[1:]
        rng = self._rng(symbol, chunk, "w")
        wick = self._sigma * 0.8
        highs = np.maximum(opens, closes) * np.exp(np.abs(rng.normal(0.0, wick, _CHUNK)))
        lows = np.minimum(opens, closes) * np.exp(-np.abs(rng.normal(0.0, wick, _CHUNK)))
        vols = rng.integers(100, 20_000, _CHUNK).astype(float)
        out = (opens, highs, lows, closes, vols)
        self._chunks[key] = out
        if len(self._chunks) > 256:
            self._chunks.popitem(last=False)
        return out

    def _arrays(self, symbol: str, k0: int, k1: int):
        """The walk's (open, high, low, close, volume) arrays for bar indices [k0, k1)."""
        import numpy as np

        parts: list[tuple] = []
        k = k0
        while k < k1:
            chunk, i = divmod(k, _CHUNK)
            n = min(_CHUNK - i, k1 - k)
            arrays = self._chunk(symbol.upper(), chunk)
            parts.append(tuple(a[i : i + n] for a in arrays))
            k += n
        if len(parts) == 1:
            return parts[0]
        return tuple(np.concatenate([p[j] for p in parts]) for j in range(5))

    def _make_bar(
        self, symbol: str, t: datetime, o: float, h: float, lo: float, c: float, v: float
    ) -> Bar:
        do, dc = _float_to_tick(o), _float_to_tick(c)
        dh = max(_float_to_tick(h), do, dc)
        dl = min(_float_to_tick(lo), do, dc)
        vwap = to_tick((do + dh + dl + dc) / 4)
        return Bar(
            symbol=symbol,
            timestamp=t,
            open=do,
            high=dh,
            low=dl,
            close=dc,
            volume=Decimal(int(v)),
            trade_count=max(1, int(v) // 50),
            vwap=vwap,
        )

    def _range(self, symbol: str, k0: int, k1: int) -> list[Bar]:
        if k1 <= k0:
            return []
        o, h, lo, c, v = (a.tolist() for a in self._arrays(symbol, k0, k1))
        step, t0 = self.timeframe, self.bar_start(k0)
        return [
            self._make_bar(symbol, t0 + i * step, o[i], h[i], lo[i], c[i], v[i])
            for i in range(k1 - k0)
        ]

    def _aggregate_range(
        self, symbol: str, g0: int, g1: int, size: int, tf: timedelta
    ) -> list[Bar]:
        if g1 <= g0:
            return []
        o, h, lo, c, v = self._arrays(symbol, g0 * size, g1 * size)
        n = g1 - g0
        opens = o.reshape(n, size)[:, 0].tolist()
        highs = h.reshape(n, size).max(axis=1).tolist()
        lows = lo.reshape(n, size).min(axis=1).tolist()
        closes = c.reshape(n, size)[:, -1].tolist()
        vols = v.reshape(n, size).sum(axis=1).tolist()
        t0 = self.bar_start(g0 * size)
        return [
            self._make_bar(symbol, t0 + i * tf, opens[i], highs[i], lows[i], closes[i], vols[i])
            for i in range(n)
        ]


# -- CSV ------------------------------------------------------------------------------------------


class CsvError(ValueError):
    """A malformed price CSV. ``line`` is 1-based (the header is line 1)."""

    def __init__(self, path: str | Path, line: int, problem: str, fix: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}:{line}: {problem}; {fix}")


_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
_ALIASES = {
    "t": "timestamp",
    "time": "timestamp",
    "date": "timestamp",
    "datetime": "timestamp",
    "o": "open",
    "h": "high",
    "l": "low",
    "c": "close",
    "v": "volume",
    "s": "symbol",
    "ticker": "symbol",
}
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _parse_time(text: str) -> datetime:
    from mqd_cli.wire.parse import PayloadError, ts

    text = text.strip()
    if _DATE_ONLY.match(text):
        text += "T00:00:00Z"
    try:
        out = ts(text)
    except PayloadError as exc:
        raise ValueError(str(exc)) from None
    if out is None:
        raise ValueError("empty timestamp")
    return out


def _parse_number(text: str, column: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        raise ValueError(f"{column} {text!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{column} {text!r} is not a finite number")
    return value


def read_bars_csv(path: str | Path, symbol: str | None = None) -> dict[str, list[Bar]]:
    """Bars per symbol from a CSV with a header row, oldest first.

    Columns: ``timestamp, open, high, low, close, volume`` and an optional ``symbol`` (any order,
    case-insensitive; Alpaca's ``t,o,h,l,c,v`` also work). Timestamps are RFC 3339, or
    ``YYYY-MM-DD HH:MM[:SS]`` / ``YYYY-MM-DD`` taken as UTC. Without a symbol column every row
    belongs to ``symbol`` (default: the file name without extension, upper-cased).
    Raises ``CsvError`` naming the file, the line, what is wrong and how to fix it.
    """
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise CsvError(
            path, 0, f"cannot open the file ({exc.strerror})", "check the path"
        ) from None
    with handle:
        return _read_rows(path, csv.reader(handle), symbol)


def _read_rows(path: Path, rows: Iterable[list[str]], symbol: str | None) -> dict[str, list[Bar]]:
    it = iter(rows)
    header: list[str] | None = None
    line = 0
    for raw in it:
        line += 1
        if any(cell.strip() for cell in raw):
            header = [_ALIASES.get(c.strip().lower(), c.strip().lower()) for c in raw]
            break
    if header is None:
        raise CsvError(
            path, max(line, 1), "the file is empty", f"add a header row: {','.join(_COLUMNS)}"
        )
    missing = [c for c in _COLUMNS if c not in header]
    if missing:
        raise CsvError(
            path,
            line,
            f"missing column(s) {', '.join(missing)} in the header {','.join(header)}",
            f"the header must name {','.join(_COLUMNS)} (and optionally symbol)",
        )
    dupes = sorted({c for c in header if header.count(c) > 1 and c})
    if dupes:
        raise CsvError(
            path, line, f"duplicate column(s) {', '.join(dupes)}", "name each column once"
        )
    pos = {name: header.index(name) for name in (*_COLUMNS, "symbol") if name in header}
    default_symbol = (symbol or path.stem).upper()
    out: dict[str, list[Bar]] = {}
    for raw in it:
        line += 1
        if not any(cell.strip() for cell in raw):
            continue
        if len(raw) != len(header):
            raise CsvError(
                path,
                line,
                f"expected {len(header)} fields, found {len(raw)}",
                "give every row the same columns as the header",
            )
        try:
            t = _parse_time(raw[pos["timestamp"]])
            o, h, lo, c = (_parse_number(raw[pos[k]], k) for k in ("open", "high", "low", "close"))
            v = _parse_number(raw[pos["volume"]], "volume")
        except ValueError as exc:
            raise CsvError(
                path,
                line,
                str(exc),
                "use RFC 3339 or 'YYYY-MM-DD HH:MM[:SS]' (UTC) times and plain decimal numbers",
            ) from None
        for name, value in (("open", o), ("high", h), ("low", lo), ("close", c)):
            if value <= 0:
                raise CsvError(path, line, f"{name} {value} is not positive", "prices must be > 0")
        if v < 0:
            raise CsvError(path, line, f"volume {v} is negative", "volume must be >= 0")
        if h < lo:
            raise CsvError(path, line, f"high {h} is below low {lo}", "swap or fix high and low")
        if h < max(o, c) or lo > min(o, c):
            raise CsvError(
                path,
                line,
                f"open {o} / close {c} lie outside low {lo} .. high {h}",
                "high must be >= open and close, low must be <= open and close",
            )
        sym = raw[pos["symbol"]].strip().upper() if "symbol" in pos else default_symbol
        if not sym:
            raise CsvError(path, line, "empty symbol", "fill in the symbol column")
        series = out.setdefault(sym, [])
        if series and t <= series[-1].timestamp:
            raise CsvError(
                path,
                line,
                f"time {t.isoformat()} of {sym} is not after the previous "
                f"{series[-1].timestamp.isoformat()}",
                "sort the rows by time, one row per bar",
            )
        series.append(Bar(symbol=sym, timestamp=t, open=o, high=h, low=lo, close=c, volume=v))
    return out


class CsvPrices:
    """Replays CSV bars; symbols the CSV lacks come from ``fallback`` (a random walk)."""

    def __init__(self, data: dict[str, list[Bar]], fallback: SyntheticPrices):
        self.fallback = fallback
        self._bars = {k.upper(): v for k, v in data.items() if v}
        self._starts = {k: [b.timestamp for b in v] for k, v in self._bars.items()}
        self._tf: dict[str, timedelta] = {}
        for sym, series in self._bars.items():
            gaps = [b.timestamp - a.timestamp for a, b in zip(series, series[1:], strict=False)]
            self._tf[sym] = min(gaps) if gaps else fallback.timeframe

    @classmethod
    def from_csv(cls, path: str | Path, fallback: SyntheticPrices) -> CsvPrices:
        return cls(read_bars_csv(path), fallback)

    @property
    def symbols(self) -> list[str]:
        return sorted(self._bars)

    def timeframe_of(self, symbol: str) -> timedelta:
        return self._tf.get(symbol.upper()) or self.fallback.timeframe

    def bars(self, symbol: str, start: datetime, end: datetime) -> list[Bar]:
        sym = symbol.upper()
        if sym not in self._bars:
            return self.fallback.bars(symbol, start, end)
        starts = self._starts[sym]
        lo = bisect.bisect_left(starts, _aware(start, "start"))
        hi = bisect.bisect_left(starts, _aware(end, "end"))
        return self._bars[sym][lo:hi]

    def price_at(self, symbol: str, t: datetime) -> Decimal:
        """The open of the bar containing ``t``; between bars, the last close; before the
        first bar, the first open."""
        sym = symbol.upper()
        if sym not in self._bars:
            return self.fallback.price_at(symbol, t)
        t = _aware(t, "t")
        series = self._bars[sym]
        i = bisect.bisect_right(self._starts[sym], t) - 1
        if i < 0:
            return series[0].open
        bar = series[i]
        return bar.open if t < bar.timestamp + self._tf[sym] else bar.close
