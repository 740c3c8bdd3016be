"""The Alpaca-compatible emulator behind `mqd sim serve`: REST, the trade_updates stream and
market data over one ``SimBroker``, with fault injection and a test-only control API.

* ``settings``: ``EmulatorConfig`` and the switchable ``Faults``;
* ``http``: answers and error bodies, API keys, the per-key rate budget and its headers;
* ``params``: query and body parameters parsed the way Alpaca does (422/400 on bad input);
* ``exchange``: ``Emulator``, the simulated market in time, the REST wrapper, the control API;
* ``trading``: the ``/v2`` trading routes (account, orders, positions, assets, clock, calendar);
* ``account``: ``/v2/account/configurations`` (GET, PATCH), ``/v2/account/portfolio/history``
  and ``/v2/account/activities[/{activity_type}]``; ``portfolio`` builds the history answer from
  the equity sampled each simulated minute (``brokers/sim/history.py``), ``activities`` keeps the
  FILL activities recorded from the broker's trade updates;
* ``market_data``: the stock and crypto data routes: bars with ``next_page_token`` paging,
  latest trades, quotes and bars, snapshots; ``quotes`` derives them from the price walk;
* ``stream``: the ``/stream`` trade_updates websocket and its faults;
* ``server``: binding a socket and serving with uvicorn, in the foreground or a thread.
"""
