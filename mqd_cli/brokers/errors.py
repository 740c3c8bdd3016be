"""Typed broker errors shared by every adapter, the throttler and the commands.

Control flow uses these types and the HTTP status, never Alpaca's 8-digit code (its first
digits do not always match the status).
"""

from __future__ import annotations

from datetime import datetime

from mqd_cli.errors import BrokerError, ExitCode


class BrokerCallError(BrokerError):
    """Base of every broker failure. ``status`` is the HTTP status when there was one."""

    def __init__(
        self,
        message: str,
        hint: str = "",
        *,
        status: int | None = None,
        code: int | None = None,
        body: dict | None = None,
    ):
        super().__init__(message, hint)
        self.status = status
        self.code = code
        self.body = body or {}


class OrderRejected(BrokerCallError):
    """The broker refused the order (422/403 with Alpaca's code and message)."""

    exit_code = ExitCode.FOUND


class DuplicateClientOrderId(OrderRejected):
    """422 "client_order_id must be unique": the broker already holds an order with this id
    (a restart re-sent an intent whose first submit did reach it). Look the order up by its
    client_order_id; never send it under another id."""

    MESSAGE = "client_order_id must be unique"


class InsufficientFunds(OrderRejected):
    """403 40310000: insufficient buying power or insufficient qty available."""


class NotFound(BrokerCallError):
    """404 40410000: no such order, position or asset."""

    exit_code = ExitCode.FOUND


class AuthFailed(BrokerCallError):
    """401/403 on authentication: wrong or missing keys."""


class RateLimited(BrokerCallError):
    """429: the budget is spent. ``reset_at`` (from X-Ratelimit-Reset) or ``retry_after`` (s)."""

    def __init__(
        self,
        message: str = "rate limit exceeded",
        hint: str = "",
        *,
        reset_at: datetime | None = None,
        retry_after: float | None = None,
        **kw,
    ):
        super().__init__(message, hint or "wait for the rate-limit window to reset", **kw)
        self.reset_at = reset_at
        self.retry_after = retry_after


class BrokerUnavailable(BrokerCallError):
    """Network error, timeout or 5xx: the outcome of the request is unknown."""
