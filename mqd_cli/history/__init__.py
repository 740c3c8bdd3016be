"""History: what runs did, read back from the store (``mqd orders``, ``fills``, ``trades``,
``positions``, ``pnl``, ``runs``).

* ``sessions``: sim sessions, one database per sim run under ``sim-sessions/`` next to the
  store, kept by name (the last ``KEEP_SESSIONS``);
* ``runs``: ``RunLog`` (what ``mqd run`` records: a runs row, equity samples, the summary),
  ``record_backtest``, ``RunView`` and the run lookups;
* ``query``: ``Filters``, ``HistorySource`` (one journal to read), ``Paged``, and the orders,
  fills, closed trades and positions of a journal;
* ``pnl``: realized and unrealized PnL by day or week, the equity curve and its chart.
"""
