"""Strategies: the ``Strategy`` protocol, built-ins and the ``[strategy]`` loader.

See ``base.py`` for the interface, ``sma_cross.py`` and ``buy_and_hold.py`` for the built-ins.
"""

from mqd_cli.strategies.base import (
    BaseStrategy,
    MemoryContext,
    Param,
    Strategy,
    StrategyContext,
    validate_params,
)
from mqd_cli.strategies.loader import builtin_strategies, load_strategy, resolve_strategy_class

__all__ = [
    "BaseStrategy",
    "MemoryContext",
    "Param",
    "Strategy",
    "StrategyContext",
    "builtin_strategies",
    "load_strategy",
    "resolve_strategy_class",
    "validate_params",
]
