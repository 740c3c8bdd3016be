"""The emulator's data routes: ``/v2/stocks/bars`` and ``/v2/stocks/{symbol}/bars``, paged."""

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
from mqd_cli.market_calendar import EXCHANGE_TZ
from mqd_cli.wire import format as wire_format

if TYPE_CHECKING:
    from mqd_cli.brokers.sim.broker import SimBroker
    from mqd_cli.clock import BacktestClock


class MarketDataRoutes:
    """The bars handlers of ``Emulator`` (a part of it: they use its broker and clock)."""

    broker: SimBroker
    clock: BacktestClock

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
        feed = (q.get("feed") or "iex").lower()
        if feed not in ("iex", "sip", "otc", "boats", "delayed_sip"):
            raise bad_data_request(f"invalid feed: {feed}")
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
