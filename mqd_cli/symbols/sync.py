"""``sync``: copy the broker's asset list (``/v2/assets``) into the store, diffed against the last.

The upsert, the removals and the sync record are one transaction; the report says what was
added, removed and changed.
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

from mqd_cli.symbols.properties import asset_row

if TYPE_CHECKING:
    from mqd_cli.brokers.base import Broker
    from mqd_cli.clock import Clock
    from mqd_cli.store import Store

SYNC_CLASSES = ("us_equity", "crypto")
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
    by_class: dict[str, int] = field(default_factory=dict)

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
    """Fetch every asset of ``asset_class`` (default: us_equity and crypto) and store them.

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

    classes = (asset_class,) if asset_class else SYNC_CLASSES
    started = clock.now()
    t0 = clock.monotonic()
    first = db.last_sync(store) is None
    if progress:
        progress(0, 0)
    fetched: dict[str, tuple] = {}
    by_class: dict[str, int] = {}
    texts: dict[Decimal, str] = {}  # the same few margin values repeat 35,000 times
    for cls in classes:
        assets = broker.list_assets(asset_class=cls)
        by_class[cls] = len(assets)
        for a in assets:
            fetched[a.symbol] = asset_row(a, texts)
    finished = clock.now()
    stamp = finished.isoformat()
    total = len(fetched)
    if progress:
        progress(0, total)
    # The previous state from the snapshot: packed cores compare as plain strings.
    lines: list[str] = []  # the new snapshot; other classes' lines are kept as they are
    previous: dict[str, tuple[str, str]] = {}  # symbol -> (core, changed_at)
    for line in db.snapshot_lines(store):
        core, changed_at, _ = line.rsplit("\t", 2)
        sym, _, cls, _ = core.split("\t", 3)
        if cls in classes:
            previous[sym] = (core, changed_at)
        else:
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
    report = SyncReport(
        sync_id=0,  # known once recorded
        asset_classes=tuple(classes),
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
    )
    sync_id = db.record_sync(
        store,
        asset_classes=classes,
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
