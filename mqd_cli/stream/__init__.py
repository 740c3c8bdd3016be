"""The ``trade_updates`` stream: the client, the lease on the one connection, the tail.

* ``client``: ``UserStreamTracker`` (auth, listen, reconnect, watchdog, gap fill) and
  ``build`` (from settings, through the factory);
* ``lease``: ``StreamLease``, which process holds the account's one connection, and
  ``run_leased``;
* ``tail``: ``StreamTail`` and ``TailEvent``, what ``mqd stream tail`` shows.
"""
