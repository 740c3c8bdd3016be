"""Torture benchmark: `mqd run` against `mqd sim serve` under kill -9 and faults, then an
independent check that nothing was doubled, lost or over-reported.

    .venv/bin/python bench/torture.py [--orders 300] [--mode realtime|shifted|both] [--seed 7]
        [--max-seconds 240] [--kill-every 1.5:5] [--aim 0.5] [--drop-every 8]
        [--duplicate-rate 0.05] [--reorder-rate 0.05] [--throttle-rate 0.002]
        [--error-rate 0.02] [--qty 3] [--liquidity 2] [--bar-interval 1m]
        [--hooks start,fill[,bar]] [--json] [--keep | --workdir DIR]

Per mode it starts `mqd sim serve` on 127.0.0.1 (a free port, fault flags on), points a temp
config at it (``broker = "alpaca"``, the emulator's fake keys), syncs symbols, then runs
`mqd run --json` with a strategy that buys ``--qty`` shares, sells the position, and repeats,
reacting in ``on_start``, ``on_fill`` and (``--hooks ...,bar``) ``on_bar``. ``[sim] liquidity``
below ``--qty`` makes orders fill in parts. The run is killed with SIGKILL at seeded random
moments (``--kill-every MIN:MAX`` seconds after each start; a share ``--aim`` of the kills then
waits for the next submit and lands 0-0.4 s after it, with the order in flight) and restarted,
until ``--orders`` orders were submitted or ``--max-seconds`` passed; the last run stops with
SIGTERM.

Modes: ``realtime`` (emulator ``--speed 1``, clock = now) and ``shifted`` (``--speed 60
--start 2026-01-05T14:35:00Z``: the broker's clock is far from the local one and runs fast).

Then, with the emulator's faults switched off: wait until the broker has no open order, a
settle run (``mqd run --halt``: start-up reconcile applies what the last run missed, no new
orders), a final ``mqd reconcile --json``, and the check. The checker never uses mqd's
OrderTracker: it reads the broker's full order history with plain httpx (``status=all``,
paged by submission time), the broker's positions, the store through ``mqd_cli.store``'s read
functions, and the ``fill`` events every run printed. It counts:

* doubled: broker orders beyond one per intent: a repeated client_order_id, an id mqd did not
  generate, or two orders of the same side in a row (this strategy alternates buy / sell);
* lost: broker orders whose filled_qty is above the journal's;
* over-reported: orders whose journaled filled qty, real executions, or delivered ``fill``
  events sum above the broker's filled_qty;
* position diffs: symbols whose broker position differs from the store's position or from the
  net of the store's orders;
* unjournaled: broker orders with an mqd id the journal does not hold (journal-first broken);
* the exit code of the final ``mqd reconcile`` (0 = in sync).

For information: partially filled orders, events recovered by gap fills and start-up
reconciles (fault exposure), uncertain submits, refused intents, and ``wrong_qty`` (an order
sized from a wrong position).

Exit code 0 when every count is 0 and every final reconcile exited 0, else 1 (130 on Ctrl-C).
Every child process is stopped on exit, Ctrl-C and SIGTERM included; on Linux children also
die with the harness (PR_SET_PDEATHSIG). A 429's reset is obeyed in full by mqd (up to the
emulator's 60 s window, shared by restarts through the store), so each 429 can stall a mode
for up to a minute: keep ``--throttle-rate`` small.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
KEY_ID = "mqd-sim-key"  # the emulator's default test keys ([sim] api_key_id): not credentials
SECRET = "mqd-sim-secret"
STRATEGY = "torture"
SYMBOL = "AAPL"
LEASE_TTL = 1.0  # [stream] lease_ttl in the generated config: a killed run's lease expires soon
SHIFTED_START = "2026-01-05T14:35:00Z"
ZERO = Decimal(0)


@dataclass(frozen=True)
class ModeSpec:
    speed: float
    start: str | None  # None = now
    bar_interval: str  # [sim] bar_interval: how fast a resting remainder fills


MODES = {
    "realtime": ModeSpec(speed=1.0, start=None, bar_interval="1s"),
    "shifted": ModeSpec(speed=60.0, start=SHIFTED_START, bar_interval="10s"),
}


@dataclass
class Options:
    orders: int = 300  # per mode: stop once this many orders were submitted
    seed: int = 7
    max_seconds: float = 240.0  # per mode, the trading phase (the settle and checks add ~10 s)
    kill_min: float = 1.5  # a run is killed this long (seeded, uniform) after it starts
    kill_max: float = 5.0
    aim: float = 0.5  # share of kills aimed at an order in flight (0-0.4 s after a submit)
    drop_every: int = 8  # stream events per connection before the emulator drops it
    duplicate_rate: float = 0.05
    reorder_rate: float = 0.05
    throttle_rate: float = 0.002  # each 429 holds mqd's trading budget until the window reset
    error_rate: float = 0.02
    qty: int = 3
    hooks: tuple[str, ...] = ("start", "fill")
    liquidity: int = 2  # [sim] liquidity: below qty, so every order fills in parts
    bar_interval: str = ""  # [sim] bar_interval; empty = the mode's (realtime 1s, shifted 10s)
    partial_fill_probability: float = 0.1
    on_refused: str = "adopt"  # a restart refused for drift: "adopt" (restart --adopt) or "stop"
    page_size: int = 500  # GET /v2/orders page size for the checker
    workdir: Path | None = None  # None = a temp dir, removed afterwards unless keep
    keep: bool = False
    verbose: bool = True


# -- child processes ------------------------------------------------------------------------------

_CHILDREN: list[subprocess.Popen] = []
_CHILDREN_LOCK = threading.Lock()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGKILL when the harness dies, even by kill -9."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def spawn(args: list[str], env: dict[str, str], **kw: Any) -> subprocess.Popen:
    """Start ``python -m mqd_cli ARGS`` in its own session (Ctrl-C reaches only the harness,
    which then stops the children itself), registered for cleanup."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqd_cli", *args],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        **kw,
    )
    with _CHILDREN_LOCK:
        _CHILDREN.append(proc)
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
    """Signal ``proc`` and wait (SIGKILL after ``timeout``); its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=10)
    with _CHILDREN_LOCK:
        if proc in _CHILDREN:
            _CHILDREN.remove(proc)
    return proc.returncode


def cleanup_children() -> None:
    """Stop every child still running: SIGTERM, then SIGKILL after 5 s."""
    with _CHILDREN_LOCK:
        procs = list(_CHILDREN)
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
    deadline = time.monotonic() + 5
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
    with _CHILDREN_LOCK:
        _CHILDREN.clear()


def child_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MQD_CONFIG", "APCA_API_KEY_ID", "APCA_API_SECRET_KEY")
        and not k.endswith("_PROXY")
        and not k.endswith("_proxy")
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        PYTHONPATH=str(ROOT),
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    return env


# -- the strategy and the config ------------------------------------------------------------------

STRATEGY_SOURCE = '''"""Torture strategy: buy qty, sell the position, repeat; one order at once."""

from decimal import Decimal

from mqd_cli.model import OrderIntent, Side
from mqd_cli.strategies.base import BaseStrategy, Param


class Torture(BaseStrategy):
    name = "torture"
    PARAMS = {
        "qty": Param(Decimal, Decimal(3), "shares per buy", min=Decimal(1)),
        "hooks": Param(str, "start,fill", "hooks that may send: start, fill, bar"),
    }

    def _next(self, hook, ctx):
        if hook not in self.params["hooks"].split(","):
            return []
        symbol = self.symbols[0]
        if ctx.open_orders(symbol):
            return []
        position = ctx.position(symbol)
        if position > 0:
            return [OrderIntent(symbol, Side.SELL, qty=position, reason="signal")]
        if position < 0:
            return [OrderIntent(symbol, Side.BUY, qty=-position, reason="signal")]
        return [OrderIntent(symbol, Side.BUY, qty=self.params["qty"], reason="entry")]

    def on_start(self, ctx):
        return self._next("start", ctx)

    def on_bar(self, bar, ctx):
        return self._next("bar", ctx)

    def on_fill(self, fill, ctx):
        return self._next("fill", ctx)
'''


def config_text(urls: dict[str, str], work: Path, mode: ModeSpec, opts: Options) -> str:
    return f"""broker = "alpaca"

[alpaca]
paper = true
base_url = "{urls["base_url"]}"
stream_url = "{urls["stream_url"]}"
data_url = "{urls["data_url"]}"
key_id = "{KEY_ID}"
secret_key = "{SECRET}"
timeout = "5s"

[store]
path = "{work / "mqd.db"}"

[strategy]
name = "{work / "torture_strategy.py"}:Torture"
symbols = ["{SYMBOL}"]

[strategy.params]
qty = {opts.qty}
hooks = "{",".join(opts.hooks)}"

[run]
warmup_bars = 0
poll_interval = "50ms"

[stream]
lease_ttl = "{LEASE_TTL:g}s"

[sim]
seed = {opts.seed}
liquidity = {opts.liquidity}
partial_fill_probability = {opts.partial_fill_probability}
bar_interval = "{mode.bar_interval}"

[throttle.limits.alpaca_trading]
limit = 100000

[throttle.limits.alpaca_data]
limit = 100000

[protections.stoploss_guard]
enabled = false

[protections.cooldown]
enabled = false

[protections.max_drawdown]
enabled = false
"""


# -- reading the runs' output ---------------------------------------------------------------------


class RunOutput:
    """Reads one `mqd run --json` stdout on a thread: keeps the raw lines in a file, counts
    ``submitted`` events, sums ``fill`` events per client_order_id into ``delivered``."""

    def __init__(self, proc: subprocess.Popen, path: Path, tally: Tally):
        self.proc = proc
        self.path = path
        self.tally = tally
        self.summary: dict[str, Any] | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with open(self.path, "w", encoding="utf-8") as out:
            for line in self.proc.stdout:
                out.write(line)
                self.tally.feed(line, self)

    def join(self, timeout: float = 10.0) -> None:
        self.thread.join(timeout)


@dataclass
class Tally:
    """What every run printed, summed over the runs of one mode."""

    submitted: int = 0
    fills: int = 0
    delivered: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    delivered_events: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[str] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    uncertain: int = 0

    def feed(self, line: str, run: RunOutput | None = None) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        kind = event.get("event")
        if kind == "submitted":
            self.submitted += 1
        elif kind == "fill":
            fill = event.get("fill") or {}
            cid = fill.get("client_order_id")
            if cid:
                self.fills += 1
                self.delivered[cid] += Decimal(str(fill.get("qty", "0")))
                self.delivered_events[cid] += 1
        elif kind == "refused":
            self.refused[str(event.get("stage", "?"))] += 1
        elif kind == "submit_uncertain":
            self.uncertain += 1
        elif kind == "error" and len(self.errors) < 50:
            self.errors.append(str(event.get("message", ""))[:300])
        elif kind == "summary" and run is not None:
            run.summary = event


# -- the emulator ---------------------------------------------------------------------------------


class Emulator:
    """`mqd sim serve` on 127.0.0.1 (a free port) with the fault flags."""

    def __init__(self, work: Path, env: dict[str, str], mode: ModeSpec, opts: Options):
        args = [
            "sim",
            "serve",
            "--config",
            str(work / "torture.toml"),
            "--host",
            HOST,
            "--port",
            "0",
            "--json",
            "--seed",
            str(opts.seed),
            "--speed",
            f"{mode.speed:g}",
            "--rate-limit",
            "100000",
            "--data-rate-limit",
            "100000",
            "--drop-every",
            str(opts.drop_every),
            "--duplicate-rate",
            str(opts.duplicate_rate),
            "--reorder-rate",
            str(opts.reorder_rate),
            "--throttle-rate",
            str(opts.throttle_rate),
            "--error-rate",
            str(opts.error_rate),
        ]
        if mode.start:
            args += ["--start", mode.start]
        self.stderr = open(work / "sim-serve.err", "w", encoding="utf-8")  # noqa: SIM115
        self.proc = spawn(
            args, env, stdout=subprocess.PIPE, stderr=self.stderr, text=True, bufsize=1
        )
        line = _readline(self.proc, 30)
        if not line:
            raise RuntimeError(f"mqd sim serve did not start: {_tail(work / 'sim-serve.err')}")
        self.urls = json.loads(line)
        if not self.urls["base_url"].startswith(f"http://{HOST}:"):
            raise RuntimeError(f"emulator not on loopback: {self.urls['base_url']}")
        self.base_url = self.urls["base_url"]
        self.headers = {"APCA-API-KEY-ID": KEY_ID, "APCA-API-SECRET-KEY": SECRET}

    def healthy(self) -> None:
        """Every fault off (before the settle run, the reconcile and the check)."""
        import httpx

        body = {
            "stream_drop_every": 0,
            "stream_drop_after": 0,
            "stream_duplicate_rate": 0,
            "stream_reorder_rate": 0,
            "rest_429_rate": 0,
            "rest_5xx_rate": 0,
            "latency": 0,
        }
        httpx.post(f"{self.base_url}/_sim/faults", json=body, timeout=10).raise_for_status()

    def state(self) -> dict[str, Any]:
        import httpx

        return httpx.get(f"{self.base_url}/_sim/state", timeout=10).json()

    def close(self) -> None:
        stop(self.proc, signal.SIGTERM, 10)
        self.stderr.close()


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return box[0] if box else ""


def _tail(path: Path, n: int = 1500) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-n:]
    except OSError:
        return ""


# -- reading the broker (plain httpx, no mqd code) ------------------------------------------------


def _get(client: Any, path: str, params: dict[str, Any] | None = None) -> Any:
    """GET with a few retries on 429 / 5xx / connection errors (faults may still be on)."""
    import httpx

    last = None
    for attempt in range(8):
        try:
            r = client.get(path, params=params)
        except httpx.TransportError as exc:
            last = exc
        else:
            if r.status_code == 200:
                return r.json()
            if r.status_code != 429 and r.status_code < 500:
                r.raise_for_status()
            last = RuntimeError(f"GET {path}: HTTP {r.status_code} {r.text[:200]}")
        time.sleep(min(2.0, 0.1 * 2**attempt))
    raise RuntimeError(f"GET {path} kept failing: {last}")


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_ts(text: str | None) -> datetime | None:
    """RFC 3339 with up to nanoseconds (Alpaca's form) -> aware datetime."""
    if not text:
        return None
    return datetime.fromisoformat(_FRACTION.sub(r"\1", text).replace("Z", "+00:00"))


def _rfc3339(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def broker_orders(client: Any, page_size: int = 500, max_pages: int = 10_000) -> list[dict]:
    """Every order the broker has (``status=all``), oldest first.

    Pages of ``page_size`` (2-500) in ascending submission time. ``after`` is exclusive, so the
    next page starts 1 µs before the last submission time seen: orders sharing that time are
    fetched again (deduplicated by id) rather than skipped. A full page of orders that all
    share one submission time cannot be paged past safely: that raises."""
    if not 2 <= page_size <= 500:
        raise ValueError("page_size must be 2-500")
    seen: dict[str, dict] = {}
    after: str | None = None
    for _ in range(max_pages):
        params: dict[str, Any] = {
            "status": "all",
            "limit": page_size,
            "direction": "asc",
            "nested": "false",
        }
        if after is not None:
            params["after"] = after
        page = _get(client, "/v2/orders", params)
        for o in page:
            seen[o["id"]] = o
        if len(page) < page_size:
            break
        times = [parse_ts(o.get("submitted_at") or o["created_at"]) for o in page]
        if min(times) == max(times):
            raise RuntimeError(
                f"order paging stuck: {page_size} orders share one submission time; "
                "use a larger page size"
            )
        after = _rfc3339(max(times) - timedelta(microseconds=1))
    else:
        raise RuntimeError(f"more than {max_pages} pages of orders")
    return sorted(seen.values(), key=_order_key)


def _order_key(o: dict) -> tuple:
    return (
        parse_ts(o.get("submitted_at") or o.get("created_at")),
        o.get("created_at") or "",
        o["id"],
    )


def broker_positions(client: Any) -> list[dict]:
    return _get(client, "/v2/positions")


def read_broker(base_url: str, page_size: int = 500) -> tuple[list[dict], list[dict]]:
    import httpx

    headers = {"APCA-API-KEY-ID": KEY_ID, "APCA-API-SECRET-KEY": SECRET}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30, trust_env=False) as c:
        return broker_orders(c, page_size), broker_positions(c)


# -- reading the journal (the store's read functions, not the tracker) ----------------------------


@dataclass
class Local:
    namespace: str
    orders: list[dict[str, Any]]
    fills: list[dict[str, Any]]
    positions: list[dict[str, Any]]
    journal: dict[str, int] = field(default_factory=dict)  # "source event outcome" -> rows


def read_local(db: Path) -> Local:
    sys.path.insert(0, str(ROOT))
    from mqd_cli.store import Store
    from mqd_cli.store import orders as store_orders

    store = Store.open(db)
    try:
        journal: dict[str, int] = defaultdict(int)
        for row in store_orders.events(store):
            journal[f"{row['source']} {row['event']} {row['outcome']}"] += 1
        return Local(
            namespace=store_orders.namespace(store),
            orders=store_orders.order_states(store),
            fills=[dict(r) for r in store_orders.fill_rows(store)],
            positions=store_orders.position_states(store),
            journal=dict(sorted(journal.items(), key=lambda kv: -kv[1])),
        )
    finally:
        store.close()


def journal_lines(db: Path, client_order_ids: list[str], limit: int = 40) -> dict[str, list[str]]:
    """The journal rows of a few orders, as evidence."""
    sys.path.insert(0, str(ROOT))
    from mqd_cli.store import Store
    from mqd_cli.store import orders as store_orders

    out: dict[str, list[str]] = {}
    store = Store.open(db)
    try:
        for cid in client_order_ids:
            rows = store_orders.events(store, cid, limit=limit)
            out[cid] = [
                f"#{r['id']} {r['recorded_at']} {r['source']} {r['event']} -> {r['outcome']}"
                + (f" ({r['detail']})" if r["detail"] else "")
                + f" {_short_payload(r['payload'])}"
                for r in rows
            ]
    finally:
        store.close()
    return out


def _short_payload(payload: str) -> str:
    try:
        d = json.loads(payload)
    except ValueError:
        return payload[:120]
    if not isinstance(d, dict):
        return ""
    order = d.get("order") if isinstance(d.get("order"), dict) else d
    keep = {k: order.get(k) for k in ("status", "filled_qty", "qty", "side") if k in order}
    for k in ("event", "execution_id", "qty", "price"):
        if k in d and d[k] is not None and k not in keep:
            keep[k] = d[k]
    return json.dumps(keep, separators=(",", ":")) if keep else ""


# -- the checker (pure) ---------------------------------------------------------------------------


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else ZERO


def check(
    orders: list[dict],
    positions: list[dict],
    local: Local,
    delivered: dict[str, Decimal] | None = None,
    *,
    strategy: str = STRATEGY,
    qty: Decimal | None = None,
) -> dict[str, Any]:
    """Count doubled, lost and over-reported orders and position differences.

    ``orders`` / ``positions`` are the broker's wire dicts (``/v2/orders?status=all``,
    ``/v2/positions``); ``local`` is what the store holds; ``delivered`` sums the quantity of
    the ``fill`` events `mqd run --json` printed, per client_order_id. Independent of mqd's
    tracker: nothing here but the broker's numbers, the stored rows and the printed events.
    With ``qty`` (the strategy's buy size) it also counts orders whose size shows mqd saw a
    wrong position when it sent them (a buy from flat of another size, a sell of other than
    the broker's position): ``wrong_qty``, for information.
    """
    delivered = delivered or {}
    evidence: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_cid: dict[str, list[dict]] = defaultdict(list)
    for o in orders:
        by_cid[o.get("client_order_id") or ""].append(o)
    local_by_cid = {o["client_order_id"]: o for o in local.orders}
    pattern = re.compile(
        rf"^mqd-{re.escape(local.namespace)}-{re.escape(strategy)}-[A-Za-z0-9]+-\d+$"
    )

    # -- doubled: each broker order is exactly one intent --------------------------------------
    duplicate_ids = 0
    for cid, group in by_cid.items():
        if len(group) > 1:
            duplicate_ids += len(group) - 1
            evidence["doubled"].append(
                {"why": "client_order_id repeated", "client_order_id": cid, "count": len(group)}
            )
    foreign = 0
    unjournaled = 0
    for o in orders:
        cid = o.get("client_order_id") or ""
        if not pattern.match(cid):
            foreign += 1
            evidence["doubled"].append(
                {"why": "client_order_id not generated by mqd", "client_order_id": cid}
            )
        elif cid not in local_by_cid:
            unjournaled += 1
            evidence["unjournaled"].append(
                {"why": "broker order missing from the journal", "client_order_id": cid}
            )
    # This strategy alternates buy and sell per symbol, one order at a time: two orders of the
    # same side in a row are one intent sent twice (a doubled sell of the whole position is
    # refused by the broker and never listed; a doubled buy shows here).
    repeated_side = 0
    overlaps = 0
    wrong_qty = 0
    last: dict[str, dict] = {}
    held: dict[str, Decimal] = defaultdict(Decimal)  # the broker's position before each order
    for o in orders:
        if o.get("status") in ("rejected",) and _dec(o.get("filled_qty")) == 0:
            continue
        symbol = o["symbol"]
        want = held[symbol] if o["side"] == "sell" else (qty if held[symbol] == 0 else None)
        if qty is not None and want is not None and _dec(o.get("qty")) != want:
            wrong_qty += 1
            evidence["wrong_qty"].append(
                {
                    "client_order_id": o.get("client_order_id"),
                    "side": o["side"],
                    "qty": o.get("qty"),
                    "broker_position_before": str(held[symbol]),
                }
            )
        filled = _dec(o.get("filled_qty"))
        held[symbol] += filled if o["side"] == "buy" else -filled
        prev = last.get(o["symbol"])
        if prev is not None:
            if prev["side"] == o["side"]:
                repeated_side += 1
                evidence["doubled"].append(
                    {
                        "why": f"two {o['side']} orders in a row",
                        "client_order_id": o.get("client_order_id"),
                        "previous": prev.get("client_order_id"),
                        "submitted_at": o.get("submitted_at"),
                        "previous_submitted_at": prev.get("submitted_at"),
                        "previous_filled_at": prev.get("filled_at"),
                        "qty": o.get("qty"),
                        "filled_qty": o.get("filled_qty"),
                        "status": o.get("status"),
                    }
                )
            done = parse_ts(prev.get("filled_at") or prev.get("canceled_at"))
            sent = parse_ts(o.get("submitted_at"))
            if done is None or (sent is not None and sent < done):
                overlaps += 1
        last[o["symbol"]] = o

    # -- lost and over-reported, per order -----------------------------------------------------
    real_qty: dict[str, Decimal] = defaultdict(Decimal)
    fill_rows: dict[str, int] = defaultdict(int)
    for f in local.fills:
        if not f.get("synthetic"):
            real_qty[f["client_order_id"]] += _dec(f["qty"])
            fill_rows[f["client_order_id"]] += 1
    lost = 0
    lost_qty = ZERO
    over: set[str] = set()
    over_kinds: dict[str, int] = defaultdict(int)
    broker_filled: dict[str, Decimal] = {}
    for o in orders:
        cid = o.get("client_order_id") or ""
        b = _dec(o.get("filled_qty"))
        broker_filled[cid] = broker_filled.get(cid, ZERO) + b
    for cid, b in broker_filled.items():
        mine = local_by_cid.get(cid)
        q = _dec(mine["filled_qty"]) if mine is not None else ZERO
        if q < b:
            lost += 1
            lost_qty += b - q
            evidence["lost"].append(
                {
                    "client_order_id": cid,
                    "broker_filled_qty": str(b),
                    "local_filled_qty": str(q) if mine is not None else None,
                    "local_status": mine["status"] if mine is not None else None,
                }
            )
        for kind, value in (
            ("journal", q),
            ("real_fills", real_qty.get(cid, ZERO)),
            ("delivered", delivered.get(cid, ZERO)),
        ):
            if value > b:
                over.add(cid)
                over_kinds[kind] += 1
                evidence["over_reported"].append(
                    {
                        "client_order_id": cid,
                        "source": kind,
                        "qty": str(value),
                        "broker_filled_qty": str(b),
                    }
                )
    # Fills for orders the broker does not have at all.
    for cid in set(local_by_cid) | set(delivered) | set(real_qty):
        if cid in broker_filled:
            continue
        mine = local_by_cid.get(cid)
        values = {
            "journal": _dec(mine["filled_qty"]) if mine is not None else ZERO,
            "real_fills": real_qty.get(cid, ZERO),
            "delivered": delivered.get(cid, ZERO),
        }
        for kind, value in values.items():
            if value > 0:
                over.add(cid)
                over_kinds[kind] += 1
                evidence["over_reported"].append(
                    {"client_order_id": cid, "source": kind, "qty": str(value), "broker": None}
                )

    # -- positions -----------------------------------------------------------------------------
    broker_pos: dict[str, Decimal] = defaultdict(Decimal)
    for p in positions:
        qty = _dec(p.get("qty"))
        if p.get("side") == "short" and qty > 0:
            qty = -qty
        broker_pos[p["symbol"]] += qty
    stored_pos = {p["symbol"]: _dec(p["qty"]) for p in local.positions}
    net: dict[str, Decimal] = defaultdict(Decimal)
    for o in local.orders:
        q = _dec(o["filled_qty"])
        net[o["symbol"]] += q if o["side"] == "buy" else -q
    position_diffs = 0
    for symbol in sorted(set(broker_pos) | set(stored_pos) | set(net)):
        b = broker_pos.get(symbol, ZERO)
        s = stored_pos.get(symbol, ZERO)
        n = net.get(symbol, ZERO)
        if not (b == s == n):
            position_diffs += 1
            evidence["positions"].append(
                {
                    "symbol": symbol,
                    "broker": str(b),
                    "stored_position": str(s),
                    "net_of_stored_orders": str(n),
                }
            )

    filled_orders = sum(1 for o in orders if _dec(o.get("filled_qty")) > 0)
    return {
        "broker_orders": len(orders),
        "filled_orders": filled_orders,
        "partially_filled_orders": sum(1 for n in fill_rows.values() if n > 1),
        "local_orders": len(local.orders),
        "doubled": duplicate_ids + foreign + repeated_side,
        "doubled_detail": {
            "repeated_client_order_id": duplicate_ids,
            "not_generated_by_mqd": foreign,
            "same_side_in_a_row": repeated_side,
        },
        "unjournaled": unjournaled,
        "overlapping_orders": overlaps,
        "wrong_qty": wrong_qty,
        "lost": lost,
        "lost_qty": str(lost_qty),
        "over_reported": len(over),
        "over_reported_detail": dict(over_kinds),
        "position_diffs": position_diffs,
        "evidence": {k: v[:20] for k, v in evidence.items()},
    }


# -- one mode -------------------------------------------------------------------------------------


def _log(opts: Options, msg: str) -> None:
    if opts.verbose:
        print(f"[torture {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _mqd(
    args: list[str], env: dict[str, str], timeout: float
) -> tuple[int, str, str]:  # exit code, stdout, stderr
    proc = spawn(args, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc, signal.SIGKILL)
        out, err = proc.communicate()
        return -1, out or "", (err or "") + f"\n(timed out after {timeout:g}s)"
    stop(proc)
    return proc.returncode, out, err


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith(("error:", "hint:"))]
    return " / ".join(lines)[:600] or stderr.strip()[-600:]


def run_mode(name: str, opts: Options) -> dict[str, Any]:
    """Run one mode end to end; the result dict (counts, kills, evidence, ...)."""
    mode = MODES[name]
    if opts.bar_interval:
        mode = ModeSpec(mode.speed, mode.start, opts.bar_interval)
    rng = random.Random(f"{opts.seed}:{name}")
    t_start = time.monotonic()
    own_dir = opts.workdir is None
    work = (
        Path(tempfile.mkdtemp(prefix=f"mqd-torture-{name}-"))
        if own_dir
        else Path(opts.workdir) / name
    )
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    home.mkdir(exist_ok=True)
    env = child_env(home)
    (work / "torture_strategy.py").write_text(STRATEGY_SOURCE, encoding="utf-8")
    cfg = work / "torture.toml"
    # The emulator reads [sim] from the same file: write it once without the URLs first.
    cfg.write_text(
        config_text({"base_url": "", "stream_url": "", "data_url": ""}, work, mode, opts),
        encoding="utf-8",
    )
    result: dict[str, Any] = {
        "mode": name,
        "speed": mode.speed,
        "start": mode.start or "now",
        "bar_interval": mode.bar_interval,
        "workdir": str(work),
        "kills": 0,
        "restarts": 0,
        "refused_restarts": 0,
        "adopted_restarts": 0,
        "lease_waits": 0,
        "failed_starts": 0,
        "aborted": "",
        "refusals": [],
        "failures": [],
    }
    tally = Tally()
    emulator = None
    runs: list[RunOutput] = []
    try:
        emulator = Emulator(work, env, mode, opts)
        cfg.write_text(config_text(emulator.urls, work, mode, opts), encoding="utf-8")
        _log(opts, f"{name}: emulator at {emulator.base_url} (speed {mode.speed:g})")
        for attempt in range(6):
            code, _, err = _mqd(["symbols", "sync", "--config", str(cfg), "--json"], env, 120)
            if code == 0:
                break
            _log(opts, f"{name}: symbols sync exited {code} ({_error_line(err)}), again")
            time.sleep(0.5 * (attempt + 1))
        else:
            raise RuntimeError(f"symbols sync failed: {_error_line(err)}")

        deadline = t_start + opts.max_seconds
        adopt_next = False
        consecutive_failures = 0
        n = 0
        while tally.submitted < opts.orders and time.monotonic() < deadline:
            n += 1
            args = ["run", "--config", str(cfg), "--json", "--keep-orders"]
            if adopt_next:
                args.append("--adopt")
                result["adopted_restarts"] += 1
                adopt_next = False
            err_path = work / f"run-{n:04d}.err"
            with open(err_path, "w", encoding="utf-8") as err_file:
                proc = spawn(
                    args, env, stdout=subprocess.PIPE, stderr=err_file, text=True, bufsize=1
                )
            if n > 1:
                result["restarts"] += 1
            run = RunOutput(proc, work / f"run-{n:04d}.jsonl", tally)
            runs.append(run)
            kill_at = time.monotonic() + rng.uniform(opts.kill_min, opts.kill_max)
            # An aimed kill waits past kill_at for the next submit, then lands 0-0.4 s after it
            # (the order is in flight: sent, maybe answered, its fills streaming).
            aim = rng.random() < opts.aim
            aim_delay = rng.uniform(0.0, 0.4)
            aim_seen: int | None = None
            outcome = "exited"
            while proc.poll() is None:
                now = time.monotonic()
                if tally.submitted >= opts.orders or now >= deadline:
                    outcome = "done"
                    break
                if now >= kill_at:
                    if not aim or now >= kill_at + 10:
                        outcome = "killed"
                        break
                    if aim_seen is None:
                        aim_seen = tally.submitted
                    elif tally.submitted > aim_seen:
                        kill_at, aim = now + aim_delay, False
                time.sleep(0.005)
            if outcome == "killed":
                stop(proc, signal.SIGKILL)
                result["kills"] += 1
                run.join()
                time.sleep(LEASE_TTL + 0.05)  # the dead run's stream lease expires
                consecutive_failures = 0
                continue
            if outcome == "done":
                code = stop(proc, signal.SIGTERM, 30)
                run.join()
                result["last_run_exit"] = code
                break
            code = proc.wait()
            run.join()
            stderr = _tail(err_path, 4000)
            line = _error_line(stderr)
            if code == 4 and "lease" in stderr.lower():
                result["lease_waits"] += 1
                time.sleep(LEASE_TTL)
                continue
            if code == 4:  # refused to start: unexplained drift
                result["refused_restarts"] += 1
                result["refusals"].append({"run": n, "error": line})
                _log(opts, f"{name}: restart refused (exit 4): {line}")
                if opts.on_refused != "adopt":
                    result["aborted"] = f"restart refused: {line}"
                    break
                adopt_next = True
                continue
            result["failed_starts"] += 1
            result["failures"].append({"run": n, "exit": code, "error": line})
            _log(opts, f"{name}: mqd run exited {code}: {line}")
            consecutive_failures += 1
            if consecutive_failures >= 10:
                result["aborted"] = f"mqd run failed 10 times in a row: {line}"
                break
            time.sleep(0.5)
        result["trading_seconds"] = round(time.monotonic() - t_start, 1)
        _log(
            opts,
            f"{name}: trading done: {tally.submitted} submitted, {result['kills']} kills, "
            f"{result['refused_restarts']} refused restarts",
        )

        # -- settle: faults off, nothing open at the broker, a halted run catches up ------------
        emulator.healthy()
        wait_until = time.monotonic() + 30
        while time.monotonic() < wait_until:
            orders_open, _ = _open_orders(emulator.base_url)
            if not orders_open:
                break
            time.sleep(0.2)
        settle = ["run", "--config", str(cfg), "--json", "--halt", "--duration", "2s"]
        code, out, err = _mqd(settle, env, 90)
        for line in out.splitlines():
            tally.feed(line)
        result["settle_exit"] = code
        if code != 0:
            result["settle_error"] = _error_line(err)
            _log(opts, f"{name}: settle run exited {code}: {result['settle_error']}")
            if code == 4 and opts.on_refused == "adopt":
                code, out, err = _mqd([*settle, "--adopt"], env, 90)
                for line in out.splitlines():
                    tally.feed(line)
                result["settle_adopt_exit"] = code
        time.sleep(0.3)
        code, out, err = _mqd(
            ["reconcile", "--config", str(cfg), "--json", "--grace", "0s", "--lookback", "30d"],
            env,
            120,
        )
        result["reconcile_exit"] = code
        try:
            report = json.loads(out)
            result["reconcile_findings"] = report.get("findings", [])[:20]
        except ValueError:
            result["reconcile_findings"] = [{"error": _error_line(err)}]

        # -- the check ------------------------------------------------------------------------
        orders, positions = read_broker(emulator.base_url, opts.page_size)
        local = read_local(work / "mqd.db")
        counts = check(orders, positions, local, tally.delivered, qty=Decimal(opts.qty))
        result.update(counts)
        # Fault exposure, from the journal: events recovered by gap fills after stream drops,
        # by start-up reconciles after kills, duplicates ignored, illegal transitions kept.
        j = local.journal
        result["journal"] = j
        result["gap_fill_events"] = sum(v for k, v in j.items() if k.startswith("gap_fill "))
        result["reconcile_events"] = sum(v for k, v in j.items() if k.startswith("reconcile "))
        suspects = [
            e.get("client_order_id")
            for kind in ("doubled", "lost", "over_reported", "unjournaled")
            for e in counts["evidence"].get(kind, [])
            if e.get("client_order_id")
        ]
        for e in counts["evidence"].get("doubled", []):
            if e.get("previous"):
                suspects.append(e["previous"])
        suspects = list(dict.fromkeys(suspects))[:6]
        if suspects:
            result["suspect_journal"] = journal_lines(work / "mqd.db", suspects)
        state = emulator.state()
        result["emulator"] = {k: state.get(k) for k in ("sim_time", "events_emitted", "requests")}
    except Exception as exc:
        result["aborted"] = result["aborted"] or f"{type(exc).__name__}: {exc}"
        _log(opts, f"{name}: aborted: {result['aborted']}")
    finally:
        for run in runs:
            stop(run.proc, signal.SIGKILL)
        if emulator is not None:
            emulator.close()
        result["submitted_events"] = tally.submitted
        result["refused_intents"] = dict(tally.refused)
        result["broker_refusals"] = tally.refused.get("broker", 0)
        result["uncertain_submits"] = tally.uncertain
        result["fill_events"] = tally.fills
        result["run_errors"] = tally.errors[:10]
        result["duration_s"] = round(time.monotonic() - t_start, 1)
        if own_dir and not opts.keep and not result.get("aborted") and passed(result):
            shutil.rmtree(work, ignore_errors=True)
            result["workdir"] = "(removed)"
    return result


def _open_orders(base_url: str) -> tuple[list[dict], None]:
    import httpx

    headers = {"APCA-API-KEY-ID": KEY_ID, "APCA-API-SECRET-KEY": SECRET}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10, trust_env=False) as c:
        return _get(c, "/v2/orders", {"status": "open", "limit": 500}), None


def passed(result: dict[str, Any]) -> bool:
    return (
        not result.get("aborted")
        and result.get("doubled") == 0
        and result.get("lost") == 0
        and result.get("over_reported") == 0
        and result.get("position_diffs") == 0
        and result.get("unjournaled") == 0
        and result.get("reconcile_exit") == 0
    )


# -- report ---------------------------------------------------------------------------------------

ROWS = [
    ("orders (broker)", "broker_orders"),
    ("filled orders", "filled_orders"),
    ("partially filled", "partially_filled_orders"),
    ("submitted events", "submitted_events"),
    ("kills (-9)", "kills"),
    ("restarts", "restarts"),
    ("restarts refused", "refused_restarts"),
    ("failed starts", "failed_starts"),
    ("gap-fill events", "gap_fill_events"),
    ("reconcile events", "reconcile_events"),
    ("uncertain submits", "uncertain_submits"),
    ("broker refusals", "broker_refusals"),
    ("doubled", "doubled"),
    ("lost", "lost"),
    ("over-reported", "over_reported"),
    ("position diffs", "position_diffs"),
    ("unjournaled", "unjournaled"),
    ("wrong qty", "wrong_qty"),
    ("settle run exit", "settle_exit"),
    ("reconcile exit", "reconcile_exit"),
    ("duration (s)", "duration_s"),
]


def render(results: list[dict[str, Any]]) -> str:
    width = max(len(label) for label, _ in ROWS) + 2
    head = "".join(f"{r['mode']:>12}" for r in results)
    lines = [f"{'':<{width}}{head}"]
    for label, key in ROWS:
        cells = "".join(f"{str(r.get(key, '-')):>12}" for r in results)
        lines.append(f"{label:<{width}}{cells}")
    for r in results:
        verdict = "PASS" if passed(r) else "FAIL"
        lines.append(
            f"{r['mode']}: {verdict}" + (f" (aborted: {r['aborted']})" if r.get("aborted") else "")
        )
        for kind in ("doubled", "lost", "over_reported", "unjournaled", "positions", "wrong_qty"):
            for e in r.get("evidence", {}).get(kind, [])[:5]:
                lines.append(f"  {kind}: {json.dumps(e)}")
        for f in r.get("reconcile_findings", [])[:5]:
            lines.append(f"  reconcile: {json.dumps(f, default=str)[:300]}")
        for refusal in r.get("refusals", [])[:3]:
            lines.append(f"  refused restart (run {refusal['run']}): {refusal['error']}")
        for cid, rows in r.get("suspect_journal", {}).items():
            lines.append(f"  journal {cid}:")
            lines.extend(f"    {row[:220]}" for row in rows[:25])
        if r.get("workdir") and r["workdir"] != "(removed)":
            lines.append(f"  files: {r['workdir']}")
    return "\n".join(lines)


def run(modes: list[str], opts: Options) -> dict[str, Any]:
    """Run the given modes one after the other; the JSON summary."""
    results = [run_mode(m, opts) for m in modes]
    options = asdict(opts)
    options["workdir"] = str(opts.workdir) if opts.workdir else None
    return {
        "ok": all(passed(r) for r in results),
        "options": options,
        "modes": {r["mode"]: r for r in results},
    }


def _interval(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(":")
    a, b = float(lo), float(hi or lo)
    if not 0 < a <= b:
        raise argparse.ArgumentTypeError("expected MIN:MAX seconds with 0 < MIN <= MAX")
    return a, b


def parse_args(argv: list[str] | None = None) -> tuple[list[str], Options, bool]:
    d = Options()
    p = argparse.ArgumentParser(
        description="kill -9 and fault torture of `mqd run` against `mqd sim serve`",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--orders", type=int, default=d.orders, help="orders per mode")
    p.add_argument("--mode", choices=["realtime", "shifted", "both"], default="both")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds kills, prices, fills, faults")
    p.add_argument("--max-seconds", type=float, default=d.max_seconds, help="trading time per mode")
    p.add_argument(
        "--kill-every",
        type=_interval,
        default=(d.kill_min, d.kill_max),
        metavar="MIN:MAX",
        help="seconds after each start until its kill -9 (uniform, seeded)",
    )
    p.add_argument(
        "--aim", type=float, default=d.aim, help="share of kills aimed at an order in flight"
    )
    p.add_argument("--drop-every", type=int, default=d.drop_every)
    p.add_argument("--duplicate-rate", type=float, default=d.duplicate_rate)
    p.add_argument("--reorder-rate", type=float, default=d.reorder_rate)
    p.add_argument("--throttle-rate", type=float, default=d.throttle_rate, help="share of 429s")
    p.add_argument("--error-rate", type=float, default=d.error_rate, help="share of 5xx")
    p.add_argument("--qty", type=int, default=d.qty, help="shares per buy")
    p.add_argument("--liquidity", type=int, default=d.liquidity, help="[sim] liquidity")
    p.add_argument(
        "--bar-interval",
        default=d.bar_interval,
        help="[sim] bar_interval, e.g. 1m (default: realtime 1s, shifted 10s)",
    )
    p.add_argument("--partial-fill-probability", type=float, default=d.partial_fill_probability)
    p.add_argument("--hooks", default=",".join(d.hooks), help="start,fill[,bar]")
    p.add_argument("--on-refused", choices=["adopt", "stop"], default=d.on_refused)
    p.add_argument("--page-size", type=int, default=d.page_size)
    p.add_argument("--workdir", type=Path, default=None, help="keep every file here")
    p.add_argument("--keep", action="store_true", help="keep the temp dirs")
    p.add_argument("--json", action="store_true", help="print the JSON summary on stdout")
    a = p.parse_args(argv)
    hooks = tuple(h.strip() for h in a.hooks.split(",") if h.strip())
    if not set(hooks) <= {"start", "fill", "bar"} or not hooks:
        p.error("--hooks: a comma list of start, fill, bar")
    opts = Options(
        orders=a.orders,
        seed=a.seed,
        max_seconds=a.max_seconds,
        kill_min=a.kill_every[0],
        kill_max=a.kill_every[1],
        aim=a.aim,
        drop_every=a.drop_every,
        duplicate_rate=a.duplicate_rate,
        reorder_rate=a.reorder_rate,
        throttle_rate=a.throttle_rate,
        error_rate=a.error_rate,
        qty=a.qty,
        hooks=hooks,
        liquidity=a.liquidity,
        bar_interval=a.bar_interval,
        partial_fill_probability=a.partial_fill_probability,
        on_refused=a.on_refused,
        page_size=a.page_size,
        workdir=a.workdir,
        keep=a.keep,
    )
    modes = ["realtime", "shifted"] if a.mode == "both" else [a.mode]
    return modes, opts, a.json


def main(argv: list[str] | None = None) -> int:
    modes, opts, as_json = parse_args(argv)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored (nohup, &)
    try:
        summary = run(modes, opts)
    except KeyboardInterrupt:
        print("torture: interrupted; child processes stopped", file=sys.stderr)
        return 130
    finally:
        cleanup_children()
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(render(list(summary["modes"].values())))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
