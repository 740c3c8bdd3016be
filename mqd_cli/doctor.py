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
    """The broker's clock against ours (order times, day boundaries and stale-data checks)."""
    if services.settings.broker != "alpaca":
        return Check("clock_skew", "ok", f"{services.settings.broker}: {_SIM_NOTE}")
    broker = _alpaca(services)
    before = services.clock.now()
    clock = broker.get_clock()
    after = services.clock.now()
    local = before + (after - before) / 2
    skew = (clock.timestamp - local).total_seconds()
    market = "open" if clock.is_open else f"closed, opens {clock.next_open:%Y-%m-%d %H:%M} UTC"
    detail = f"broker clock {skew:+.2f}s from local (market {market})"
    hint = "sync the system clock with NTP (timedatectl set-ntp true, or chronyc makestep)"
    if abs(skew) > CLOCK_SKEW_FAIL:
        return Check("clock_skew", "fail", detail, hint)
    if abs(skew) > CLOCK_SKEW_WARN:
        return Check("clock_skew", "warn", detail, hint)
    return Check("clock_skew", "ok", detail)


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
