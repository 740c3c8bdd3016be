"""The emulator's data routes, from the price walk the orders fill on (``quotes.LatestData``).

* stocks: ``/v2/stocks/bars`` and ``/v2/stocks/{symbol}/bars`` (paged with ``next_page_token``),
  ``/v2/stocks/{trades,quotes,bars}/latest`` and ``/v2/stocks/snapshots``, and the one-symbol
  forms ``/v2/stocks/{symbol}/{trades,quotes,bars}/latest`` and ``/v2/stocks/{symbol}/snapshot``;
* crypto (``BTC/USD`` symbols): ``/v1beta3/crypto/{loc}/bars``,
  ``/v1beta3/crypto/{loc}/latest/{trades,quotes,bars}`` and ``/v1beta3/crypto/{loc}/snapshots``.

All times are simulated time. Alpaca's answers: a map keyed by symbol under ``trades``,
``quotes``, ``bars`` or ``snapshots`` (the stock snapshots map is the body itself); a symbol the
exchange does not list, or of the other asset class, is left out of a map (alpaca-py's tests:
``{"trades": {}}``); a one-symbol form answers 404 ``{"message": "no data found for ZZZZ"}`` for
it (inferred: Alpaca documents no answer for that case). ``feed`` (iex, sip, delayed_sip, boats,
overnight, otc) is accepted and only changes the exchange codes; a bad parameter is a 400 with
a bare ``{"message": ...}``, as the data API answers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mqd_cli.brokers.errors import NotFound
from mqd_cli.emulator.http import Reply, bad_data_request, json_response
from mqd_cli.emulator.params import (
    page_token,
    parse_int,
    parse_list,
    parse_time,
    parse_timeframe,
    read_page_token,
)
from mqd_cli.emulator.quotes import LatestData
from mqd_cli.market_calendar import EXCHANGE_TZ
from mqd_cli.model import AssetClass, AssetInfo
from mqd_cli.wire import format as wire_format

if TYPE_CHECKING:
    from mqd_cli.brokers.sim.broker import SimBroker
    from mqd_cli.clock import BacktestClock


FEEDS = ("iex", "sip", "delayed_sip", "boats", "overnight", "otc")
CRYPTO_LOCATIONS = ("us", "us-1", "eu-1")
# latest kind -> (the map's key, the one-symbol form's key)
LATEST = {"trades": ("trades", "trade"), "quotes": ("quotes", "quote"), "bars": ("bars", "bar")}


def _feed(value: str | None) -> str:
    feed = (value or "iex").strip().lower()
    if feed not in FEEDS:
        raise bad_data_request(f"invalid feed: {value}")
    return feed


class MarketDataRoutes:
    """The data handlers of ``Emulator`` (a part of it: they use its broker and clock)."""

    broker: SimBroker
    clock: BacktestClock

    # -- latest trades, quotes, bars and snapshots --------------------------------------------

    def _latest_data(self) -> LatestData:
        return LatestData(self.broker, self.clock.now(), self.broker.settings.seed)

    def _asset(self, symbol: str, crypto: bool) -> AssetInfo | None:
        """The listed asset ``symbol`` names, when it is of the route's class."""
        try:
            asset = self.broker.get_asset(symbol)
        except NotFound:
            return None
        return asset if (asset.asset_class is AssetClass.CRYPTO) == crypto else None

    def _symbols(self, request: Any, crypto: bool) -> list[tuple[str, AssetInfo]]:
        """The ``symbols`` asked for (as spelled) that the exchange lists; 400 without any."""
        symbols = parse_list(request.query_params.get("symbols"))
        if not symbols:
            raise bad_data_request("symbols is required")
        out = []
        for symbol in dict.fromkeys(symbols):
            asset = self._asset(symbol, crypto)
            if asset is not None:
                out.append((symbol, asset))
        return out

    @staticmethod
    def _one(data: LatestData, kind: str, asset: AssetInfo, feed: str) -> dict | None:
        if kind == "trades":
            return data.trade(asset, feed)
        if kind == "quotes":
            return data.quote(asset, feed)
        if kind == "bars":
            bar = data.minute_bar(asset)
            return wire_format.bar_to_wire(bar) if bar else None
        return data.snapshot(asset, feed)

    def _latest_map(self, request: Any, kind: str, crypto: bool) -> dict[str, Any]:
        feed = "iex" if crypto else _feed(request.query_params.get("feed"))
        data = self._latest_data()
        out = {}
        for symbol, asset in self._symbols(request, crypto):
            row = self._one(data, kind, asset, feed)
            if row is not None:
                out[symbol] = row
        return out

    def _latest_single(self, request: Any, kind: str) -> dict[str, Any]:
        symbol = request.path_params["symbol"]
        feed = _feed(request.query_params.get("feed"))
        asset = self._asset(symbol, crypto=False)
        row = self._one(self._latest_data(), kind, asset, feed) if asset else None
        if row is None:
            raise Reply(404, {"message": f"no data found for {symbol}"})
        if kind == "snapshots":
            return {"symbol": symbol, **row}
        return {"symbol": symbol, LATEST[kind][1]: row}

    async def latest_trades(self, request: Any) -> Any:
        return json_response({"trades": self._latest_map(request, "trades", crypto=False)})

    async def latest_quotes(self, request: Any) -> Any:
        return json_response({"quotes": self._latest_map(request, "quotes", crypto=False)})

    async def latest_bars(self, request: Any) -> Any:
        return json_response({"bars": self._latest_map(request, "bars", crypto=False)})

    async def snapshots(self, request: Any) -> Any:
        return json_response(self._latest_map(request, "snapshots", crypto=False))

    async def latest_trade_single(self, request: Any) -> Any:
        return json_response(self._latest_single(request, "trades"))

    async def latest_quote_single(self, request: Any) -> Any:
        return json_response(self._latest_single(request, "quotes"))

    async def latest_bar_single(self, request: Any) -> Any:
        return json_response(self._latest_single(request, "bars"))

    async def snapshot_single(self, request: Any) -> Any:
        return json_response(self._latest_single(request, "snapshots"))

    # -- crypto ---------------------------------------------------------------------------------

    @staticmethod
    def _crypto_location(request: Any) -> None:
        loc = request.path_params["loc"]
        if loc not in CRYPTO_LOCATIONS:
            raise bad_data_request(f"invalid location: {loc}")

    async def crypto_bars(self, request: Any) -> Any:
        self._crypto_location(request)
        symbols = [s for s, _ in self._symbols(request, crypto=True)]
        bars, token = self._bars_query(request, symbols)
        return json_response({"bars": bars, "next_page_token": token})

    async def crypto_latest(self, request: Any) -> Any:
        self._crypto_location(request)
        kind = request.path_params["kind"]
        if kind not in LATEST:
            raise Reply(404, {"message": "endpoint not found"})
        return json_response({kind: self._latest_map(request, kind, crypto=True)})

    async def crypto_snapshots(self, request: Any) -> Any:
        self._crypto_location(request)
        return json_response({"snapshots": self._latest_map(request, "snapshots", crypto=True)})

    # -- historical bars --------------------------------------------------------------------------

    def _bars_query(self, request: Any, symbols: list[str]) -> tuple[dict, str | None]:
        q = request.query_params
        timeframe = parse_timeframe(q.get("timeframe"))
        now = self.clock.now()
        try:
            start = parse_time(q.get("start"), "start")
            end = parse_time(q.get("end"), "end")
            limit = parse_int(q.get("limit"), "limit", 1000, 1, 10_000)
        except Reply as reply:
            raise bad_data_request(reply.body["message"]) from None
        if start is None:
            local = now.astimezone(EXCHANGE_TZ)
            start = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
        end = min(end or now, now)
        sort = (q.get("sort") or "asc").lower()
        if sort not in ("asc", "desc"):
            raise bad_data_request(f"invalid sort: {sort}")
        _feed(q.get("feed"))
        resume: tuple[str, datetime] | None = None
        if q.get("page_token"):
            resume = read_page_token(q["page_token"])
        out: dict[str, list] = {}
        taken = 0
        more_after: tuple[str, datetime] | None = None
        last: tuple[str, datetime] | None = None
        for symbol in sorted(set(symbols)):
            if resume and symbol < resume[0]:
                continue
            try:
                # Alpaca's end is inclusive; the engine's is exclusive.
                bars = (
                    self.broker.bars(symbol, start, end + timedelta(microseconds=1), timeframe)
                    if start <= end
                    else []
                )
            except NotFound:
                bars = []
            bars = [b for b in bars if start <= b.timestamp <= end]
            bars.sort(key=lambda b: b.timestamp, reverse=sort == "desc")
            if resume and symbol == resume[0]:
                t = resume[1]
                bars = [b for b in bars if (b.timestamp > t if sort == "asc" else b.timestamp < t)]
            for bar in bars:
                if taken >= limit:
                    more_after = more_after or (symbol, bar.timestamp)
                    break
                out.setdefault(symbol, []).append(wire_format.bar_to_wire(bar))
                taken += 1
                last = (symbol, bar.timestamp)
            if more_after:
                break
        token = page_token(*last) if more_after and last else None
        return out, token

    async def bars_multi(self, request: Any) -> Any:
        symbols = parse_list(request.query_params.get("symbols"))
        if not symbols:
            raise bad_data_request("symbols is required")
        bars, token = self._bars_query(request, symbols)
        return json_response({"bars": bars, "next_page_token": token})

    async def bars_single(self, request: Any) -> Any:
        symbol = request.path_params["symbol"]
        bars, token = self._bars_query(request, [symbol])
        return json_response(
            {"bars": bars.get(symbol, []), "symbol": symbol, "next_page_token": token}
        )
