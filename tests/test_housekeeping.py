"""The apply path's housekeeping: checkpoints off the event loop, start-up objects frozen."""

from __future__ import annotations

import asyncio
import gc

from mqd_cli.store import Store
from mqd_cli.stream.housekeeping import Housekeeping


def test_checkpoints_run_on_a_worker_thread_and_start_up_objects_are_frozen(tmp_path):
    store = Store.open(tmp_path / "mqd.db")

    async def session() -> Housekeeping:
        keeper = Housekeeping(store, every=0.01)
        keeper.start()
        assert gc.get_freeze_count() > 0
        loop_thread_busy = 0
        for _ in range(50):  # the loop keeps turning while checkpoints run beside it
            keeper.tick()
            await asyncio.sleep(0.005)
            loop_thread_busy += 1
        await keeper.stop()
        assert loop_thread_busy == 50
        return keeper

    try:
        keeper = asyncio.run(session())
    finally:
        store.close()
    assert keeper.checkpoints >= 2
    assert gc.get_freeze_count() == 0
    # the store's own connection no longer checkpoints inside commits
    store = Store.open(tmp_path / "mqd.db")
    try:
        store.defer_checkpoints()
        assert store.query_one("PRAGMA wal_autocheckpoint")[0] == 0
    finally:
        store.close()
