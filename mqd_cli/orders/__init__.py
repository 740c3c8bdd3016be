"""Orders: mqd's memory of what it asked the broker and what happened.

* ``tracker``: ``OrderTracker``, fed by submits, the stream, gap fills and reconciles; it
  journals every event to the store and restores from it;
* ``tracked``: ``TrackedOrder`` (one order's terms, status and fills; ``fold`` applies one
  report), ``Fill``, ``ApplyResult``, ``intent_key``;
* ``states``: the explicit order state table (``next_status``, ``OrderEvent``);
* ``journal``: the journal's payloads and rows, and ``load`` (restore);
* ``positions``: ``TrackedPosition`` (average cost, round trips);
* ``trades``: ``ClosedTrade`` (one round trip with its realized PnL);
* ``files``: order-intent files (CSV or JSON) for ``mqd symbols validate``.
"""
