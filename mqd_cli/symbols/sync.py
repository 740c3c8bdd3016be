"""``sync``: copy the broker's asset list (``/v2/assets``) into the store, diffed against the last.

The upsert, the removals and the sync record are one transaction; the report says what was
added, removed and changed.

Which classes are fetched: without ``asset_class`` every asset the broker lists. Alpaca's
reference says ``/v2/assets`` defaults to ``asset_class=us_equity``, but the live service answers
a request without the parameter with every class (alpaca-py#624: a ``crypto_perp`` asset at index
32187 of an unfiltered ``get_all_assets()``; Alpaca-API#280; alpaca-py#277: crypto assets in it),
so the sync asks once without a class and then, by name, for each class mqd trades
(``TRADED_CLASSES``) that the answer lacked: one request against Alpaca, two against a server that
applies the documented default (``mqd sim serve``). Nothing served is dropped: an asset of a class
mqd does not trade (``crypto_perp``, ``us_option``, a class the enum does not know) is stored with
its class as the broker wrote it and counted in ``SyncReport.unsupported``; ``mqd symbols
validate`` refuses orders for it. Two assets under one symbol keep the first and are reported in
``SyncReport.duplicates``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from mqd_cli.model import SUPPORTED_ASSET_CLASSES, AssetClass, AssetInfo
from mqd_cli.symbols.properties import asset_row

if TYPE_CHECKING:
    from mqd_cli.brokers.base import Broker
    from mqd_cli.clock import Clock
    from mqd_cli.store import Store

# The classes mqd trades: always in a full sync, asked for by name when the unfiltered answer
# lacks them.
TRADED_CLASSES = tuple(sorted(c.value for c in SUPPORTED_ASSET_CLASSES))
# What ``--asset-class`` accepts: every class the model knows.
SYNC_CLASSES = tuple(c.value for c in AssetClass if c is not AssetClass.UNKNOWN)
_CHUNK = 2000


@dataclass(frozen=True)
class SyncReport:
    """What one sync fetched and how it differs from the previous one."""

    sync_id: int
    asset_classes: tuple[str, ...]
    started_at: datetime
    finished_at: datetime
    seconds: float
    fetched: int
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    unchanged: int = 0
    first_sync: bool = False
    by_class: dict[str, int] = field(default_factory=dict)  # by the class as the broker wrote it
    unsupported: dict[str, int] = field(default_factory=dict)  # kept, classes mqd does not trade
    duplicates: list[str] = field(default_factory=list)  # symbols served twice (first one kept)

    def counts(self) -> dict[str, int]:
        return {
            "fetched": self.fetched,
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
            "unchanged": self.unchanged,
        }


@contextlib.contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Pause the cyclic garbage collector (reference counting still frees everything).

    A sync allocates ~35,000 decoded dicts, assets and rows that live until it ends; each
    automatic collection rescans all of them, which cost a third of the parse time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _shown(field_name: str, value: Any) -> Any:
    from mqd_cli.store.symbols import ASSET_FIELDS

    if field_name in ASSET_FIELDS[6:11]:
        return bool(value)
    return value


def sync(
    store: Store,
    broker: Broker,
    clock: Clock,
    *,
    asset_class: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SyncReport:
    """Fetch every asset of ``asset_class`` (default: every class, see the module docstring)
    and store them.

    The upsert, the removals and the sync record are ONE transaction. ``progress(done, total)``
    is called with total 0 while fetching, then as assets are compared.
    """
    with _without_cycle_collection():
        return _sync(store, broker, clock, asset_class=asset_class, progress=progress)


def _sync(
    store: Store,
    broker: Broker,
    clock: Clock,
    *,
    asset_class: str | None,
    progress: Callable[[int, int], None] | None,
) -> SyncReport:
    from mqd_cli.store import symbols as db

    started = clock.now()
    t0 = clock.monotonic()
    first = db.last_sync(store) is None
    if progress:
        progress(0, 0)
    fetched: dict[str, tuple] = {}
    ids: dict[str, str] = {}
    by_class: dict[str, int] = {}
    duplicates: list[str] = []
    texts: dict[Decimal, str] = {}  # the same few margin values repeat 35,000 times
    for a in _fetch(broker, asset_class):
        seen = ids.get(a.symbol)
        if seen is not None:
            if seen != a.id:
                duplicates.append(a.symbol)
            continue
        ids[a.symbol] = a.id
        row = asset_row(a, texts)
        fetched[a.symbol] = row
        by_class[row[2]] = by_class.get(row[2], 0) + 1
    finished = clock.now()
    stamp = finished.isoformat()
    total = len(fetched)
    if progress:
        progress(0, total)
    # The previous state from the snapshot: packed cores compare as plain strings. A full sync
    # compares every stored asset; a one-class sync keeps the other classes' lines as they are.
    lines: list[str] = []  # the new snapshot
    previous: dict[str, tuple[str, str]] = {}  # symbol -> (core, changed_at)
    for line in db.snapshot_lines(store):
        core, changed_at, _ = line.rsplit("\t", 2)
        sym, _, cls, _ = core.split("\t", 3)
        if asset_class is None or cls == asset_class:
            previous[sym] = (core, changed_at)
        elif sym not in fetched:
            lines.append(line)
    fields = db.ASSET_FIELDS
    added: list[str] = []
    changed: dict[str, dict[str, list[Any]]] = {}
    upserts: list[tuple] = []
    for i, (symbol, row) in enumerate(fetched.items(), 1):
        core = db.pack_core(row)
        old = previous.get(symbol)
        changed_at = stamp
        if old is None:
            added.append(symbol)
            upserts.append(row)
        elif old[0] != core:
            changed[symbol] = {
                f: [_shown(f, a), _shown(f, b)]
                for f, a, b in zip(fields, db.unpack(old[0]), row, strict=True)
                if a != b
            }
            upserts.append(row)
        else:
            changed_at = old[1]
        lines.append(f"{core}\t{changed_at}\t{stamp}")
        if progress and i % _CHUNK == 0:
            progress(i, total)
    removed = sorted(s for s in previous if s not in fetched)
    added.sort()
    classes = (asset_class,) if asset_class else tuple(sorted(by_class))
    supported = {c.value for c in SUPPORTED_ASSET_CLASSES}
    report = SyncReport(
        sync_id=0,  # known once recorded
        asset_classes=classes,
        started_at=started,
        finished_at=finished,
        seconds=0.0,
        fetched=total,
        added=added,
        removed=removed,
        changed=changed,
        unchanged=total - len(added) - len(changed),
        first_sync=first,
        by_class=by_class,
        unsupported={c: n for c, n in sorted(by_class.items()) if c not in supported},
        duplicates=sorted(set(duplicates)),
    )
    sync_id = db.record_sync(
        store,
        asset_classes=classes,
        every_class=asset_class is None,
        broker=getattr(broker, "name", type(broker).__name__),
        started_at=started.isoformat(),
        finished_at=stamp,
        upserts=upserts,
        removed=removed,
        counts=report.counts(),
        diff={"added": added, "removed": removed, "changed": changed},
        snapshot="\n".join(lines),
    )
    if progress:
        progress(total, total)
    return dataclasses.replace(report, sync_id=sync_id, seconds=clock.monotonic() - t0)


def _fetch(broker: Broker, asset_class: str | None) -> list[AssetInfo]:
    """The assets to store: one class, or everything the broker lists plus, by name, each
    class mqd trades that the unfiltered answer lacked (see the module docstring)."""
    if asset_class:
        return list(broker.list_assets(asset_class=asset_class))
    assets = list(broker.list_assets())
    served = {a.class_text for a in assets}
    for cls in TRADED_CLASSES:
        if cls not in served:
            assets.extend(broker.list_assets(asset_class=cls))
    return assets
