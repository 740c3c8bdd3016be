"""Symbols: what each asset allows, and every order checked against it.

* ``properties``: ``SymbolProperties`` (tick and size increments, margin), stored rows;
* ``rules``: ``check_intent``, every reason Alpaca would refuse an order (``Problem``);
  ``class_problem``, the refusal of an asset class mqd does not trade;
* ``rounding``: ``round_intent``, side-aware rounding that is never more aggressive;
* ``book``: ``SymbolBook``, the cache the run loop asks (``prepare(intent)``);
* ``sync``: ``sync``, the broker's asset list into the store, diffed (``SyncReport``).
"""
