"""Circuit breakers: StoplossGuard, MaxDrawdown, Cooldown, LowProfit and their manager.

Importing this package is cheap (standard library only); the manager is built by
``Services.protections``.
"""

from __future__ import annotations

from mqd_cli.protections.base import (
    EquityPoint,
    EvalContext,
    Lock,
    LockRequest,
    Protection,
    ProtectionEvent,
    ProtectionStatus,
)

__all__ = [
    "EquityPoint",
    "EvalContext",
    "Lock",
    "LockRequest",
    "Protection",
    "ProtectionEvent",
    "ProtectionStatus",
]
