"""The Alpaca-compatible emulator behind `mqd sim serve`: REST, the trade_updates stream and
market data over one ``SimBroker``, with fault injection and a test-only control API.

* ``settings``: ``EmulatorConfig`` and the switchable ``Faults``;
* ``http``: answers and error bodies, API keys, the per-key rate budget and its headers;
* ``params``: query and body parameters parsed the way Alpaca does (422/400 on bad input);
* ``exchange``: ``Emulator``, the simulated market in time, the REST wrapper, the control API;
* ``trading``: the ``/v2`` trading routes (account, orders, positions, assets, clock, calendar);
* ``market_data``: the bars routes with ``next_page_token`` paging;
* ``stream``: the ``/stream`` trade_updates websocket and its faults;
* ``server``: binding a socket and serving with uvicorn, in the foreground or a thread.
"""
