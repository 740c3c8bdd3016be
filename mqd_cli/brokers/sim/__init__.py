"""The simulated exchange: a deterministic, seeded matching engine behind the Broker protocol.

* ``broker``: ``SimBroker``;
* ``account``, ``orders``: the account (cash, positions, buying power) and order records;
* ``admission``: which orders it accepts, and how it refuses (Alpaca's codes);
* ``matching``: when a working order fills, at what price, how much;
* ``legs``: the groups of bracket, oco and oto orders (held legs, one-cancels-other);
* ``hours``: always open, or NYSE sessions;
* ``assets``: the asset universe; ``bars``: bars for the data API;
* ``history``: ``EquityHistory``, the account's equity each minute (the portfolio history);
* ``prices``: price sources (a seeded random walk, CSV replay), shared with backtests.
"""
