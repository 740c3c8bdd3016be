"""Reconciliation: our orders, fills and positions against the broker's truth.

The check runs collect -> diff (pure) -> confirm -> apply -> record; ``mqd reconcile`` only
renders. Modules and their public surface:

* ``model``: ``LocalOrder``, ``LocalState``, ``BrokerSnapshot``, ``Lookup``, ``Finding``,
  ``ReconcileReport`` and the defaults (grace, lookback, tolerances, looks);
* ``diff``: ``diff``, ``confirm`` and one helper per kind of finding (pure);
* ``collect``: ``check`` (looks beside a running loop), ``take_look``, ``collect``,
  ``look_up``, ``read_local``;
* ``apply``: ``apply_confirmed``, ``apply_findings``, ``Action``;
* ``record``: ``reconcile`` (the whole run: baseline, check, apply, record, alert) and the
  JSON documents (``report_doc``).

``diff(local, broker, lookups, ...)`` is a pure function of two snapshots plus the answers of
targeted lookups; each kind of finding has its own small helper with a direct unit test.
``collect`` (not pure) fetches the broker snapshots and performs the targeted lookups, and
``apply_findings`` (not pure) performs the repairs an operator asked for.

Rules that matter at 3 a.m.:

* a *shadow* (we hold an order open, the broker does not) is only ever confirmed by a targeted
  lookup by id or client_order_id answering 404. A network error, timeout or 429 makes the
  order *unverified*, never a shadow. Orders younger than the grace period are skipped;
* fill drift (broker ``filled_qty`` above ours) is repaired by a synthetic fill whose id is a
  hash of (client_order_id, broker cumulative qty) and whose price makes our average equal the
  broker's, so two runs in a row produce the same id and the second changes nothing;
* position drift is reported only when the fills the findings would add do not explain it.

Beside a running ``mqd run`` (``check``; what `mqd reconcile` uses) the two sides move while
they are read, so one look alone would report orders and fills that are merely in flight:

* a *look* (``take_look``) reads the broker first and the store after. The orders are listed
  between two readings of the positions and the account (*before* and *after*). The store is
  read after, as of one moment (``read_local``);
* an order with a journal row written after the look began (id above the journal's last id
  before the first broker call) is *in flight*: it is judged in no way (no status, fill, orphan
  or shadow finding); positions and cash count it at the broker's figure instead of ours;
* positions and cash are compared with the reading the orders in flight agree with
  (``readings``): an order in flight listed unfilled and open cannot have filled before the
  *before* reading; one listed closed cannot fill after the listing, so it agrees with *after*.
  A symbol whose orders in flight agree with neither (or that moved while no order of ours was
  in flight) is not judged in that look, and is listed as unchecked;
* every finding is confirmed by a second look after a short pause (``confirm``): only a
  discrepancy present in every look, the same one (kind, subject and values; for positions
  and cash the same difference), is reported. One that vanished was in flight.
"""
