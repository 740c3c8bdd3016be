"""Strategies: the contract, the built-ins and the ``[strategy]`` loader.

* ``base``: ``Strategy`` (the protocol the engine calls), ``BaseStrategy`` (its docstring is the
  contract: hooks, context, what a strategy may assume), ``StrategyContext``, ``Param``;
* ``loader``: ``load_strategy`` (a built-in name or a file, params validated),
  ``builtin_strategies``;
* ``sma_cross``, ``buy_and_hold``: the built-ins.
"""
