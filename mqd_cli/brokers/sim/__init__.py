"""The simulated exchange: a deterministic, seeded matching engine behind the Broker protocol.

* ``broker``: ``SimBroker``;
* ``account``, ``orders``: the account (cash, positions, buying power) and order records;
* ``admission``: which orders it accepts, and how it refuses (Alpaca's codes);
* ``matching``: when a working order fills, at what price, how much;
* ``hours``: always open, or NYSE sessions;
* ``assets``: the asset universe; ``bars``: bars for the data API;
* ``prices``: price sources (a seeded random walk, CSV replay), shared with backtests.
"""
