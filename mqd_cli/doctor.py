"""Health checks behind `mqd doctor`: each returns ok / warn / fail with a fix hint.

A check is a function ``(services) -> Check`` in ``CHECKS``; append yours (the broker adds
reachability and clock skew). ``@requires("credentials")`` skips a check when a check it
depends on failed, so one root cause gives one failure, not a cascade. A check that raises an
``MqdError`` is reported as failed with the error's message and hint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mqd_cli.errors import ConfigError, MqdError

if TYPE_CHECKING:
    from mqd_cli.factory import Services


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail" | "skip"
    detail: str
    hint: str = ""


CheckFn = Callable[["Services"], Check]


def requires(*names: str) -> Callable[[CheckFn], CheckFn]:
    """Skip the decorated check when any of the named checks failed or was skipped."""

    def mark(fn: CheckFn) -> CheckFn:
        fn.requires = tuple(names)  # type: ignore[attr-defined]
        return fn

    return mark


def check_name(fn: CheckFn) -> str:
    return getattr(fn, "check_name", fn.__name__.removeprefix("check_"))


def check_config(services: Services) -> Check:
    loaded = services.loaded
    if loaded is None or loaded.path is None:
        return Check(
            "config",
            "ok",
            "no file; built-in defaults (broker = sim)",
            "create one with `mqd config init`",
        )
    from mqd_cli.strategies.loader import load_strategy

    try:  # exactly as `mqd run` loads it
        load_strategy(services.settings.strategy, base_dir=loaded.path.parent)
    except ConfigError as exc:
        return config_failure(exc)
    if loaded.warnings:
        return Check(
            "config",
            "warn",
            f"{loaded.path}: " + "; ".join(loaded.warnings),
            "use env:NAME for secrets",
        )
    return Check("config", "ok", f"{loaded.path} is valid ({loaded.origin})")


def config_failure(exc: ConfigError) -> Check:
    """The config check when the configuration does not load (nothing else can run)."""
    return Check(
        "config",
        "fail",
        "; ".join(exc.problems),
        exc.hint or "run `mqd config check` and fix each line",
    )


@requires("config")
def check_credentials(services: Services) -> Check:
    s = services.settings
    if s.broker != "alpaca":
        return Check("credentials", "ok", f"not needed for broker = {s.broker}")
    missing = [
        f"alpaca.{name} ({secret.describe()})"
        for name, secret in (("key_id", s.alpaca.key_id), ("secret_key", s.alpaca.secret_key))
        if not secret.is_set()
    ]
    if missing:
        return Check(
            "credentials",
            "fail",
            "missing: " + ", ".join(missing),
            "export APCA_API_KEY_ID and APCA_API_SECRET_KEY, or set [alpaca] keys",
        )
    return Check("credentials", "ok", "key id and secret present")


@requires("config")
def check_store(services: Services) -> Check:
    store = services.store  # opening applies pending migrations or refuses a newer schema
    versions = store.schema_versions()
    summary = ", ".join(f"{k} v{v}" for k, v in sorted(versions.items()))
    detail = f"{store.path} (schema current: {summary})"
    if store.applied:
        done = ", ".join(f"{k} v{a}->v{b}" for k, (a, b) in sorted(store.applied.items()))
        detail += f"; migrated {done}"
    return Check("store", "ok", detail)


CHECKS: list[CheckFn] = [check_config, check_credentials, check_store]


# -- broker checks (brokers/alpaca.py) ------------------------------------------------------------

CLOCK_SKEW_WARN = 2.0  # seconds
CLOCK_SKEW_FAIL = 30.0
_SIM_NOTE = "in-process simulated exchange; nothing to reach"
_doctor_brokers: dict[int, object] = {}


class _OneAttempt:
    """Spend the shared budget like every request, but report the first failure at once."""

    def __init__(self, throttler):
        self.throttler = throttler

    def call(self, limits, fn, *, idempotent: bool, weight: int = 1):
        self.throttler.acquire(limits, weight)
        return fn()

    def observe(self, limit, status, headers) -> None:
        self.throttler.observe(limit, status, headers)


def _alpaca(services: Services):
    broker = _doctor_brokers.get(id(services))
    if broker is None or broker.services is not services:  # type: ignore[attr-defined]
        from mqd_cli.brokers.alpaca import AlpacaBroker

        broker = AlpacaBroker(services.settings.alpaca, throttler=_OneAttempt(services.throttler))
        broker.services = services  # type: ignore[attr-defined]
        _doctor_brokers.clear()
        _doctor_brokers[id(services)] = broker
    return broker


@requires("credentials", "store")
def check_broker(services: Services) -> Check:
    """Reachable and authenticated: one GET /v2/account, with its latency."""
    from mqd_cli.brokers.errors import AuthFailed, BrokerCallError

    if services.settings.broker != "alpaca":
        return Check("broker", "ok", f"{services.settings.broker}: {_SIM_NOTE}")
    broker = _alpaca(services)
    where = broker.base_url
    started = services.clock.monotonic()
    try:
        account = broker.get_account()
    except AuthFailed as exc:
        return Check(
            "broker",
            "fail",
            f"{where}: HTTP {exc.status}: {exc.message}",
            "check the API keys; paper keys need [alpaca] paper = true",
        )
    except BrokerCallError as exc:
        status = f"HTTP {exc.status}: " if exc.status else ""
        return Check(
            "broker",
            "fail",
            f"{where}: {status}{exc.message}",
            "check [alpaca] base_url and the network (is `mqd sim serve` running?)",
        )
    ms = (services.clock.monotonic() - started) * 1000
    detail = f"{where}: account {account.account_number} {account.status}, {ms:.0f} ms"
    if account.trading_blocked or account.account_blocked:
        return Check(
            "broker",
            "warn",
            detail + ", trading blocked",
            "see the account's status on the Alpaca dashboard",
        )
    if ms > 2000:
        return Check("broker", "warn", detail + " (slow)", "check the network path to Alpaca")
    return Check("broker", "ok", detail)


@requires("broker")
def check_clock_skew(services: Services) -> Check:
    """The clock the session runs on against the broker's (order times, day boundaries and
    stale-data checks).

    A session against Alpaca runs on the broker's time (``BrokerTimeClock``, synced from
    ``GET /v2/clock``), so that is the clock measured: synced once, then read against a second
    answer. The local clock's own offset is reported too; against a loopback emulator (a
    rehearsal that starts in another month on purpose) it is information, against a remote
    broker a local clock far off is a broken clock worth fixing (logs, cron, TLS)."""
    if services.settings.broker != "alpaca":
        return Check("clock_skew", "ok", f"{services.settings.broker}: {_SIM_NOTE}")
    from mqd_cli.clock import BrokerTimeClock

    broker = _alpaca(services)
    session = BrokerTimeClock(services.clock)
    session.sync(broker)
    offset = session.offset.total_seconds()  # broker time less local time
    start = session.now()
    clock = broker.get_clock()
    end = session.now()
    residual = (clock.timestamp - (start + (end - start) / 2)).total_seconds()
    market = "open" if clock.is_open else f"closed, opens {clock.next_open:%Y-%m-%d %H:%M} UTC"
    return judge_skew(residual, offset, rehearsal=_loopback(broker.base_url), market=market)


def _loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def judge_skew(residual: float, offset: float, *, rehearsal: bool, market: str) -> Check:
    """The clock_skew verdict: the session clock's ``residual`` against the broker decides;
    a local ``offset`` beyond the limits fails too unless the broker is a loopback emulator."""
    detail = (
        f"session clock {residual:+.2f}s from the broker's (it follows the broker's time);"
        f" local clock {_span(offset)} {'behind' if offset > 0 else 'ahead of'} the broker"
        f" (market {market})"
    )
    if rehearsal and abs(offset) > CLOCK_SKEW_WARN:
        detail += "; a loopback emulator: a rehearsal's own time, not a clock fault"
    worst = abs(residual) if rehearsal else max(abs(residual), abs(offset))
    hint = "sync the system clock with NTP (timedatectl set-ntp true, or chronyc makestep)"
    if worst > CLOCK_SKEW_FAIL:
        return Check("clock_skew", "fail", detail, hint)
    if worst > CLOCK_SKEW_WARN:
        return Check("clock_skew", "warn", detail, hint)
    return Check("clock_skew", "ok", detail)


def _span(seconds: float) -> str:
    from datetime import timedelta

    from mqd_cli.durations import format_span

    return format_span(timedelta(seconds=seconds))


CHECKS += [check_broker, check_clock_skew]


def run_checks(services: Services, checks: list[CheckFn] | None = None) -> list[Check]:
    """Run every check in order; dependants of a failed check are skipped."""
    results: dict[str, Check] = {}
    for fn in CHECKS if checks is None else checks:
        name = check_name(fn)
        blocked = [
            n
            for n in getattr(fn, "requires", ())
            if n in results and results[n].status in ("fail", "skip")
        ]
        if blocked:
            why = [
                f"{n} {'failed' if results[n].status == 'fail' else 'was skipped'}" for n in blocked
            ]
            result = Check(name, "skip", "skipped: " + ", ".join(why))
        else:
            try:
                result = fn(services)
            except MqdError as exc:
                result = Check(name, "fail", exc.message, exc.hint)
        results[result.name] = result
    return list(results.values())
