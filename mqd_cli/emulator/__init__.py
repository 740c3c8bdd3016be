"""The Alpaca-compatible emulator behind `mqd sim serve` (``mqd_cli.simserver`` is its face).

* ``settings``: ``EmulatorConfig`` and the switchable ``Faults``;
* ``http``: answers and error bodies, API keys, the per-key rate budget and its headers;
* ``params``: query and body parameters parsed the way Alpaca does (422/400 on bad input);
* ``exchange``: ``Emulator``, the simulated market in time, the REST wrapper, the control API;
* ``trading``: the ``/v2`` trading routes (account, orders, positions, assets, clock, calendar);
* ``market_data``: the bars routes with ``next_page_token`` paging;
* ``stream``: the ``/stream`` trade_updates websocket and its faults;
* ``server``: binding a socket and serving with uvicorn, in the foreground or a thread.
"""
