"""`mqd positions` online against the emulator (`mqd sim serve`) through the real alpaca-py
client and the shared throttle budget, beside what the journal holds; `--offline` never calls
the broker."""

from __future__ import annotations

from decimal import Decimal

import httpx


def buy(srv, symbol: str, qty: str) -> dict:
    """An order placed at the broker by hand (not by mqd), filled by moving time on."""
    r = httpx.post(
        srv.base_url + "/v2/orders",
        headers=srv.headers,
        json={
            "symbol": symbol,
            "qty": qty,
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
        },
        timeout=10,
    )
    r.raise_for_status()
    srv.advance(120)
    return r.json()


def trading_requests(mqd, cfg) -> int:
    limits = mqd("throttle", "stats", "-c", cfg, "--json").json["limits"]
    return next(lim["requests"] for lim in limits if lim["name"] == "alpaca_trading")


def test_positions_online_are_the_brokers_with_its_unrealized_pnl(emulator, mqd, config_file):
    srv = emulator()
    cfg = config_file(srv.config_toml())
    buy(srv, "AAPL", "5")
    buy(srv, "MSFT", "2")
    truth = {
        p["symbol"]: p
        for p in httpx.get(srv.base_url + "/v2/positions", headers=srv.headers, timeout=10).json()
    }
    before = trading_requests(mqd, cfg)

    got = mqd("positions", "-c", cfg, "--json").json
    assert got["online"] is True and got["session"] is None
    rows = {p["symbol"]: p for p in got["positions"]}
    assert set(rows) == {"AAPL", "MSFT"}
    for symbol, p in rows.items():
        broker = truth[symbol]
        assert Decimal(p["qty"]) == Decimal(broker["qty"])
        assert Decimal(p["avg_price"]) == Decimal(broker["avg_entry_price"])
        assert Decimal(p["price"]) == Decimal(broker["current_price"])
        assert Decimal(p["unrealized_pnl"]) == Decimal(broker["unrealized_pl"])
        assert p["price_source"] == "broker"
        assert Decimal(p["journal_qty"]) == 0  # placed by hand: not in our journal
    assert Decimal(got["unrealized_pnl"]) == sum(
        Decimal(b["unrealized_pl"]) for b in truth.values()
    )
    assert trading_requests(mqd, cfg) > before  # the call went through the shared budget

    only = mqd("positions", "-c", cfg, "--symbol", "MSFT", "--json").json
    assert [p["symbol"] for p in only["positions"]] == ["MSFT"]
    text = mqd("positions", "-c", cfg).stdout.splitlines()
    assert text[0] == "Positions at the broker"
    assert text[-1].startswith("unrealized ") and "at the broker's last prices" in text[-1]

    calls = trading_requests(mqd, cfg)
    offline = mqd("positions", "-c", cfg, "--offline", "--json").json
    assert offline["online"] is False and offline["positions"] == []
    assert trading_requests(mqd, cfg) == calls


def test_positions_exit_3_when_the_broker_cannot_be_reached(emulator, mqd, config_file):
    srv = emulator()
    cfg = config_file(srv.config_toml().replace(srv.base_url, "http://127.0.0.1:9"))
    r = mqd("positions", "-c", cfg, expect=3)
    assert r.stderr.startswith("error: ") and "hint: " in r.stderr
    assert mqd("positions", "-c", cfg, "--offline").exit_code == 0
