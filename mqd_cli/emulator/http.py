"""The emulator's HTTP answers: Alpaca's error bodies, API keys and the per-key rate budget."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from mqd_cli.brokers.errors import BrokerCallError
from mqd_cli.wire import format as wire_format

FORBIDDEN = {"message": "forbidden."}
UNAUTHORIZED = wire_format.error_body(40110000, "request is not authorized")
RATE_LIMITED = wire_format.error_body(42910000, "rate limit exceeded")
INTERNAL = wire_format.error_body(50010000, "internal server error")
BAD_BODY = wire_format.error_body(40010000, "request body format is invalid")
SERVER_ERRORS = (500, 502, 503, 504)


class Reply(Exception):
    """An error answer raised by a handler: HTTP status and JSON body."""

    def __init__(self, status: int, body: Any):
        super().__init__(body)
        self.status = status
        self.body = body


def invalid(message: str, code: int = 40010001, status: int = 422) -> Reply:
    return Reply(status, wire_format.error_body(code, message))


def bad_data_request(message: str) -> Reply:
    """The data API's 400: a bare ``{"message": ...}`` body, no code."""
    return Reply(400, {"message": message})


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Any:
    """A JSON answer; ``body`` already encoded (bytes) is sent as it is."""
    from starlette.responses import Response

    content = (
        body
        if isinstance(body, bytes)
        else json.dumps(body, separators=(",", ":"), default=str).encode()
    )
    return Response(content, status, headers=dict(headers or {}), media_type="application/json")


def broker_error_body(exc: BrokerCallError) -> dict:
    """Alpaca's error body for a broker refusal: the broker's own body, code and message kept."""
    body = dict(exc.body or {})
    body.setdefault("code", exc.code if exc.code is not None else 50010000)
    body.setdefault("message", exc.message)
    return body


async def read_json_body(request: Any) -> dict:
    """The request's JSON object (numbers as Decimal); anything else is a 400."""
    raw = await request.body()
    try:
        data = json.loads(raw, parse_float=Decimal) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        raise Reply(400, BAD_BODY) from None
    if not isinstance(data, dict):
        raise Reply(400, BAD_BODY)
    return data


def credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """The API key pair: ``APCA-API-KEY-ID``/``-SECRET-KEY`` headers or HTTP basic auth."""
    key, secret = headers.get("apca-api-key-id"), headers.get("apca-api-secret-key")
    if key is not None and secret is not None:
        return key, secret
    auth = headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            key, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            return key, secret
        except ValueError:
            return None
    return None


# -- rate limiting --------------------------------------------------------------------------------


class RateBudget:
    """A fixed window per key: ``limit`` requests per ``window`` seconds (real time)."""

    def __init__(self, limit: int, window: float):
        self.limit = limit
        self.window = window
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (window start epoch, count)

    def take(self, key: str, now: float) -> tuple[bool, dict[str, str]]:
        start, count = self._windows.get(key, (now, 0))
        if now >= start + self.window:
            start, count = now, 0
        allowed = count < self.limit
        if allowed:
            count += 1
        self._windows[key] = (start, count)
        return allowed, self.headers(self.limit - count, start + self.window)

    def peek(self, key: str, now: float) -> dict[str, str]:
        start, count = self._windows.get(key, (now, 0))
        if now >= start + self.window:
            start, count = now, 0
        return self.headers(self.limit - count, start + self.window)

    def headers(self, remaining: int, reset: float) -> dict[str, str]:
        return {
            "X-Ratelimit-Limit": str(self.limit),
            "X-Ratelimit-Remaining": str(max(0, remaining)),
            "X-Ratelimit-Reset": str(int(reset + 0.999)),
        }

    def clear(self) -> None:
        self._windows.clear()


_HEADER_CASE = {
    name.lower().encode(): name.encode()
    for name in ("X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset")
}


def real_header_case(app: Any) -> Any:
    """Starlette lowercases header names; Alpaca sends ``X-Ratelimit-*`` in this casing."""

    async def cased(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_cased(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [(_HEADER_CASE.get(k, k), v) for k, v in message["headers"]]
            await send(message)

        await app(scope, receive, send_cased)

    return cased
