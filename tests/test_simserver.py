"""The emulator's wire protocol, checked with a plain HTTP client against a real server.

Shapes, status codes and error bodies follow alpaca-protocol.md §1-4 and §7. One server per
module (``emulator_module``); tests needing their own market or options start one.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def http(emulator_module):
    with httpx.Client(
        base_url=emulator_module.base_url, headers=emulator_module.headers, timeout=10
    ) as client:
        yield client


def order_body(**overrides):
    body = {
        "symbol": "AAPL",
        "qty": "1",
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
        "client_order_id": f"t-{uuid.uuid4()}",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


# -- authentication and rate limits ---------------------------------------------------------------


def test_missing_key_headers_get_403_forbidden(emulator_module):
    r = httpx.get(emulator_module.base_url + "/v2/account")
    assert r.status_code == 403
    assert r.json() == {"message": "forbidden."}


def test_wrong_keys_get_401_with_alpaca_code(emulator_module):
    r = httpx.get(
        emulator_module.base_url + "/v2/account",
        headers={"APCA-API-KEY-ID": "nope", "APCA-API-SECRET-KEY": "nope"},
    )
    assert r.status_code == 401
    assert r.json() == {"code": 40110000, "message": "request is not authorized"}


def test_every_answer_carries_rate_limit_headers_in_alpaca_casing(http):
    for r in (
        http.get("/v2/clock"),
        http.get("/v2/orders/" + str(uuid.uuid4())),
        http.post("/v2/orders", content=b"{"),
    ):
        assert int(r.headers["X-Ratelimit-Limit"]) > 0
        assert int(r.headers["X-Ratelimit-Remaining"]) >= 0
        assert int(r.headers["X-Ratelimit-Reset"]) > 1_600_000_000
    raw = http.get("/v2/clock").headers.raw
    assert b"X-Ratelimit-Remaining" in [name for name, _ in raw]


def test_budget_per_key_answers_429_beyond_the_limit_with_reset(emulator):
    srv = emulator(rate_limit=3)
    with httpx.Client(base_url=srv.base_url, headers=srv.headers) as client:
        answers = [client.get("/v2/clock") for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r.headers["X-Ratelimit-Remaining"] for r in answers] == ["2", "1", "0", "0"]
    assert answers[3].json() == {"code": 42910000, "message": "rate limit exceeded"}
    assert answers[3].headers["X-Ratelimit-Reset"] == answers[0].headers["X-Ratelimit-Reset"]


def test_data_api_has_its_own_budget(emulator):
    srv = emulator(rate_limit=1, data_rate_limit=5)
    with httpx.Client(base_url=srv.base_url, headers=srv.headers) as client:
        assert client.get("/v2/clock").status_code == 200
        assert client.get("/v2/clock").status_code == 429
        r = client.get("/v2/stocks/bars", params={"symbols": "AAPL", "timeframe": "1Min"})
    assert r.status_code == 200
    assert r.headers["X-Ratelimit-Limit"] == "5"


# -- orders ---------------------------------------------------------------------------------------


def test_submit_returns_200_with_the_order_in_alpaca_shape(http):
    r = http.post("/v2/orders", json=order_body(type="limit", limit_price=1.5, qty=2))
    assert r.status_code == 200
    order = r.json()
    assert order["qty"] == "2" and order["limit_price"] == "1.5"
    assert order["order_class"] == "" and order["order_type"] == "limit" == order["type"]
    for key in ("created_at", "updated_at", "submitted_at"):
        assert order[key] is not None
    assert order["filled_at"] is None and "replaced_by" in order


def test_submit_accepts_numbers_as_strings_or_json_numbers_and_any_bool_case(http):
    a = http.post(
        "/v2/orders",
        json=order_body(qty=3, type="limit", limit_price="1.25", extended_hours="False"),
    )
    b = http.post(
        "/v2/orders",
        content=json.dumps(order_body(qty="3")).replace('"3"', "3.0").encode(),
        headers={"Content-Type": "application/json"},
    )
    assert a.status_code == 200, a.text
    assert b.status_code == 200, b.text
    assert a.json()["qty"] == b.json()["qty"] == "3"


def test_get_by_client_order_id_uses_the_literal_colon_path(http):
    body = order_body()
    placed = http.post("/v2/orders", json=body).json()
    r = http.get(
        "/v2/orders:by_client_order_id", params={"client_order_id": body["client_order_id"]}
    )
    assert r.status_code == 200
    assert r.json()["id"] == placed["id"]
    missing = http.get("/v2/orders:by_client_order_id", params={"client_order_id": "nope"})
    assert missing.status_code == 404
    assert missing.json() == {"code": 40410000, "message": "order not found"}


def test_cancel_answers_204_with_an_empty_body_and_422_once_terminal(http):
    placed = http.post("/v2/orders", json=order_body(type="limit", limit_price="1.00")).json()
    r = http.delete(f"/v2/orders/{placed['id']}")
    assert r.status_code == 204
    assert r.content == b""
    assert http.get(f"/v2/orders/{placed['id']}").json()["status"] == "canceled"
    again = http.delete(f"/v2/orders/{placed['id']}")
    assert again.status_code == 422
    assert again.json()["code"] == 42210000


def test_cancel_all_answers_207_multi_status(http):
    ids = {
        http.post("/v2/orders", json=order_body(type="limit", limit_price="1.00")).json()["id"]
        for _ in range(2)
    }
    r = http.delete("/v2/orders")
    assert r.status_code == 207
    rows = r.json()
    assert ids <= {row["id"] for row in rows}
    assert all(row["status"] == 200 for row in rows)


def test_replace_returns_the_new_order_and_marks_the_old_one_replaced(http):
    old = http.post("/v2/orders", json=order_body(type="limit", limit_price="1.00")).json()
    r = http.patch(f"/v2/orders/{old['id']}", json={"limit_price": 1.01, "qty": "2"})
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["id"] != old["id"] and new["replaces"] == old["id"]
    assert new["limit_price"] == "1.01" and new["qty"] == "2"
    stale = http.get(f"/v2/orders/{old['id']}").json()
    assert stale["status"] == "replaced" and stale["replaced_by"] == new["id"]
    http.delete(f"/v2/orders/{new['id']}")


def test_list_orders_filters_orders_and_limits(http):
    body = order_body(symbol="MSFT", type="limit", limit_price="1.00")
    first = http.post("/v2/orders", json=body).json()
    second = http.post(
        "/v2/orders", json=order_body(symbol="MSFT", type="limit", limit_price="1.00")
    ).json()
    rows = http.get(
        "/v2/orders",
        params={
            "status": "open",
            "symbols": "MSFT,ZZZZ",
            "limit": 1,
            "direction": "desc",
            "nested": "True",
        },
    ).json()
    assert [o["id"] for o in rows] == [second["id"]]
    asc = http.get(
        "/v2/orders", params={"status": "all", "symbols": "MSFT", "direction": "asc"}
    ).json()
    assert asc.index(next(o for o in asc if o["id"] == first["id"])) < asc.index(
        next(o for o in asc if o["id"] == second["id"])
    )
    until = http.get(
        "/v2/orders", params={"status": "all", "symbols": "MSFT", "until": second["submitted_at"]}
    ).json()
    assert second["id"] not in {o["id"] for o in until}
    http.delete("/v2/orders")


def test_non_uuid_order_id_is_422_order_id_is_missing(http):
    r = http.get("/v2/orders/not-a-uuid")
    assert r.status_code == 422
    assert r.json() == {"code": 40010001, "message": "order_id is missing"}


def test_rejections_relay_the_engines_status_code_and_message(http):
    sub_penny = http.post("/v2/orders", json=order_body(type="limit", limit_price="1.005"))
    assert sub_penny.status_code == 422
    assert sub_penny.json() == {
        "code": 42210000,
        "message": "invalid limit_price 1.005. sub-penny increment does not fulfill minimum "
        "pricing criteria",
    }
    body = order_body(type="limit", limit_price="1.00")
    http.post("/v2/orders", json=body)
    dup = http.post("/v2/orders", json=body)
    assert dup.status_code == 422
    assert dup.json() == {"code": 40010001, "message": "client_order_id must be unique"}
    poor = http.post(
        "/v2/orders", json=order_body(qty="100000000", type="limit", limit_price="100")
    )
    assert poor.status_code == 403
    assert poor.json()["code"] == 40310000
    assert poor.json()["message"] == "insufficient buying power"
    unknown = http.post("/v2/orders", json=order_body(symbol="ZZZZZ"))
    assert unknown.status_code in (404, 422)
    assert isinstance(unknown.json()["code"], int)
    http.delete("/v2/orders")


# -- malformed requests never crash the server ----------------------------------------------------


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b"", 400),
        (b"\xff\xfe", 400),
        (
            json.dumps(
                {"qty": "1", "side": "buy", "type": "market", "time_in_force": "day"}
            ).encode(),
            422,
        ),
        (json.dumps(order_body(qty="abc")).encode(), 422),
        (json.dumps(order_body(qty=True)).encode(), 422),
        (json.dumps(order_body(qty=None, notional=None)).encode(), 422),
        (json.dumps(order_body(side="sideways")).encode(), 422),
        (json.dumps(order_body(type="limit")).encode(), 422),
        (json.dumps(order_body(symbol=["AAPL"])).encode(), 422),
        (json.dumps(order_body(extended_hours="maybe")).encode(), 422),
        (json.dumps(order_body(client_order_id="x" * 129)).encode(), 422),
        (json.dumps(order_body(qty="-1")).encode(), 422),
        (json.dumps(order_body(qty="NaN")).encode(), 422),
    ],
)
def test_malformed_order_bodies_get_alpaca_style_4xx(http, content, status):
    r = http.post("/v2/orders", content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body["code"], int) and body["message"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v2/orders", {"status": "weird"}),
        ("/v2/orders", {"limit": "ten"}),
        ("/v2/orders", {"after": "yesterday"}),
        ("/v2/orders", {"direction": "up"}),
        ("/v2/orders", {"nested": "perhaps"}),
        ("/v2/assets", {"asset_class": "bonds"}),
        ("/v2/calendar", {"start": "2026-13-45"}),
        ("/v2/positions/ZZZZ", {}),
        ("/v2/assets/ZZZZ", {}),
    ],
)
def test_bad_queries_get_4xx_json(http, path, params):
    r = http.get(path, params=params)
    assert 400 <= r.status_code < 500
    assert isinstance(r.json()["message"], str)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fields=st.dictionaries(
        st.sampled_from(
            [
                "symbol",
                "qty",
                "notional",
                "side",
                "type",
                "time_in_force",
                "limit_price",
                "stop_price",
                "trail_percent",
                "extended_hours",
                "client_order_id",
                "order_class",
            ]
        ),
        json_values,
        max_size=8,
    )
)
def test_random_order_bodies_never_get_a_5xx(http, fields):
    r = http.post("/v2/orders", json=fields)
    assert r.status_code < 500, r.text
    assert "message" in r.json() or "id" in r.json()


def test_unknown_endpoint_and_method_get_json_errors(http):
    assert http.get("/v2/nothing").json()["code"] == 40410000
    r = http.put("/v2/account")
    assert r.status_code == 405


# -- positions, assets, clock, calendar -----------------------------------------------------------


def test_position_appears_after_a_fill_and_404_otherwise(emulator):
    srv = emulator()
    with httpx.Client(base_url=srv.base_url, headers=srv.headers) as client:
        assert client.get("/v2/positions/MSFT").json() == {
            "code": 40410000,
            "message": "position does not exist",
        }
        client.post("/v2/orders", json=order_body(symbol="MSFT", qty="3"))
        srv.advance(120)
        positions = client.get("/v2/positions").json()
        assert [(p["symbol"], p["qty"], p["side"]) for p in positions] == [("MSFT", "3", "long")]
        one = client.get("/v2/positions/MSFT").json()
        assert one["avg_entry_price"] and one["cost_basis"]
        by_id = client.get(f"/v2/positions/{one['asset_id']}").json()
        assert by_id["symbol"] == "MSFT"
        closed = client.delete("/v2/positions/MSFT")
        assert closed.status_code == 200 and closed.json()["side"] == "sell"


def test_assets_list_filters_and_one_asset_404_text(http):
    equities = http.get("/v2/assets").json()
    assert equities and {a["class"] for a in equities} == {"us_equity"}
    crypto = http.get("/v2/assets", params={"asset_class": "crypto"}).json()
    assert crypto and all(a["min_order_size"] for a in crypto)
    active = http.get("/v2/assets", params={"status": "active"}).json()
    assert all(a["status"] == "active" for a in active)
    aapl = http.get("/v2/assets/AAPL").json()
    assert aapl["symbol"] == "AAPL" and aapl["class"] == "us_equity"
    assert http.get(f"/v2/assets/{aapl['id']}").json()["symbol"] == "AAPL"
    assert http.get("/v2/assets/BTC/USD").json()["symbol"] == "BTC/USD"
    missing = http.get("/v2/assets/ZZZZ")
    assert missing.status_code == 404
    assert missing.json() == {"code": 40410000, "message": "asset not found for ZZZZ"}


def test_clock_uses_new_york_offsets_and_calendar_hh_mm(http):
    clock = http.get("/v2/clock").json()
    assert clock["timestamp"].endswith(("-05:00", "-04:00"))
    assert isinstance(clock["is_open"], bool)
    days = http.get("/v2/calendar", params={"start": "2026-01-01", "end": "2026-01-09"}).json()
    assert [d["date"] for d in days][:2] == ["2026-01-02", "2026-01-05"]
    assert days[0]["open"] == "09:30" and days[0]["close"] == "16:00"


# -- data bars ------------------------------------------------------------------------------------


def test_multi_symbol_bars_paginate_with_a_base64_token_across_symbols(http):
    params = {
        "symbols": "MSFT,AAPL",
        "timeframe": "1Min",
        "start": "2026-01-05T14:00:00Z",
        "end": "2026-01-05T14:04:00Z",
        "limit": 3,
    }
    seen: dict[str, list[str]] = {}
    pages = 0
    token = None
    while True:
        r = http.get(
            "/v2/stocks/bars", params={**params, **({"page_token": token} if token else {})}
        )
        assert r.status_code == 200
        doc = r.json()
        assert sum(len(v) for v in doc["bars"].values()) <= 3
        for symbol, bars in doc["bars"].items():
            seen.setdefault(symbol, []).extend(b["t"] for b in bars)
        pages += 1
        token = doc["next_page_token"]
        if token is None:
            break
        assert base64.b64decode(token).decode().split("|")[1] == "M"
    assert pages >= 3
    for symbol in ("AAPL", "MSFT"):
        times = seen[symbol]
        assert times == sorted(set(times)) and len(times) == 5
        assert times[0] == "2026-01-05T14:00:00Z"
    bar = http.get("/v2/stocks/bars", params={**params, "limit": 1}).json()["bars"]["AAPL"][0]
    assert set(bar) == {"t", "o", "h", "l", "c", "v", "n", "vw"}


def test_single_symbol_bars_and_unknown_symbol_is_empty_200(http):
    one = http.get(
        "/v2/stocks/AAPL/bars",
        params={
            "timeframe": "5Min",
            "start": "2026-01-05T14:00:00Z",
            "end": "2026-01-05T14:30:00Z",
        },
    ).json()
    assert one["symbol"] == "AAPL" and one["next_page_token"] is None
    assert [datetime.fromisoformat(b["t"]).minute % 5 for b in one["bars"]] == [0] * len(
        one["bars"]
    )
    empty = http.get("/v2/stocks/bars", params={"symbols": "ZZZZ", "timeframe": "1Min"})
    assert empty.status_code == 200
    assert empty.json() == {"bars": {}, "next_page_token": None}


@pytest.mark.parametrize(
    "params",
    [
        {"symbols": "AAPL", "timeframe": "7Fortnights"},
        {"symbols": "AAPL"},
        {"timeframe": "1Min"},
        {"symbols": "AAPL", "timeframe": "1Min", "page_token": "@@"},
        {"symbols": "AAPL", "timeframe": "1Min", "limit": "x"},
    ],
)
def test_bad_bar_queries_get_400_with_a_message(http, params):
    r = http.get("/v2/stocks/bars", params=params)
    assert r.status_code == 400
    assert r.json()["message"]


# -- REST faults ----------------------------------------------------------------------------------


def test_fault_shares_answer_429_or_5xx_and_latency_delays(emulator):
    srv = emulator(rest_429_rate=1.0)
    with httpx.Client(base_url=srv.base_url, headers=srv.headers) as client:
        r = client.get("/v2/clock")
        assert r.status_code == 429 and r.json()["code"] == 42910000
        srv.set_faults(rest_429_rate=0, rest_5xx_rate=1.0)
        r = client.get("/v2/clock")
        assert r.status_code in (500, 502, 503, 504)
        assert r.json() == {"code": 50010000, "message": "internal server error"}
        srv.set_faults(rest_5xx_rate=0, latency=0.3)
        r = client.get("/v2/clock")
        assert r.status_code == 200 and r.elapsed.total_seconds() >= 0.3


def test_control_api_rejects_unknown_faults(emulator_module):
    r = httpx.post(emulator_module.base_url + "/_sim/faults", json={"melt_down": 1})
    assert r.status_code == 422
    r = httpx.post(emulator_module.base_url + "/_sim/faults", json={"rest_5xx_rate": 2})
    assert r.status_code == 422
