"""Trading: the engine and what runs it, live and on simulated time.

* ``engine``: ``Engine``, one loop for ``mqd run`` and ``mqd backtest`` (strategy ->
  protections -> risk gate -> symbols -> throttled broker -> tracker); ``EngineEvent``;
* ``risk``: ``RiskGate``, the pre-trade risk check; ``BuyingPower`` (Reg T or cash-only);
* ``feeds``: bar feeds (synthetic, CSV, Alpaca's data API) and ``build_feed``;
* ``live``: ``LiveSession`` (start-up checks, the loop, a clean shutdown) and ``RunOptions``;
* ``backtest``: ``run_backtest`` and ``BacktestResult``;
* ``manual``: ``Desk``, what ``mqd cancel`` and ``mqd flatten`` do (cancel orders, close
  positions, journaled like any order).
"""
