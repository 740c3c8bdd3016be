"""Typed broker errors shared by every adapter, the throttler and the commands.

Control flow uses these types and the HTTP status, never Alpaca's 8-digit code (its first
digits do not always match the status).

``BrokerCallError``, ``RateLimited`` and ``BrokerUnavailable`` are defined in
``mqd_cli/errors.py`` (the throttle, which sits below the brokers, retries on them) and
re-exported here: ``mqd_cli.brokers.errors.RateLimited`` is the same class.
"""

from __future__ import annotations

from mqd_cli.errors import BrokerCallError, BrokerUnavailable, ExitCode, RateLimited

__all__ = [
    "AuthFailed",
    "BrokerCallError",
    "BrokerUnavailable",
    "DuplicateClientOrderId",
    "InsufficientFunds",
    "NotFound",
    "OrderRejected",
    "RateLimited",
]


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
