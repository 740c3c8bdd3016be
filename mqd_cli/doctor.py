"""Health checks behind `mqd doctor`: each returns ok / warn / fail with a fix hint."""

from __future__ import annotations

from dataclasses import dataclass

from mqd_cli.errors import MqdError
from mqd_cli.factory import Services


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail"
    detail: str
    hint: str = ""


def check_config(services: Services) -> Check:
    loaded = services.loaded
    if loaded is None or loaded.path is None:
        return Check("config", "ok", "no file; built-in defaults (broker = sim)")
    if loaded.warnings:
        return Check("config", "warn", f"{loaded.path}: " + "; ".join(loaded.warnings),
                     "use env:NAME for secrets")
    return Check("config", "ok", f"{loaded.path} is valid")


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
        return Check("credentials", "fail", "missing: " + ", ".join(missing),
                     "export APCA_API_KEY_ID and APCA_API_SECRET_KEY, or set [alpaca] keys")
    return Check("credentials", "ok", "key id and secret present")


def check_store(services: Services) -> Check:
    try:
        store = services.store
        versions = store.schema_versions()
    except MqdError as exc:
        return Check("store", "fail", exc.message, exc.hint)
    summary = ", ".join(f"{k} v{v}" for k, v in sorted(versions.items()))
    return Check("store", "ok", f"{store.path} (schema current: {summary})")


CHECKS = [check_config, check_credentials, check_store]


def run_checks(services: Services) -> list[Check]:
    results = []
    for check in CHECKS:
        result = check(services)
        results.append(result)
        if check is check_credentials and result.status == "fail":
            break
    return results
