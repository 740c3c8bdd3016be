"""`mqd sim serve` as a real process, and `mqd doctor`'s broker checks against it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
import pytest


def start_serve(*args: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqd_cli", "sim", "serve", "--port", "0", "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    return proc, json.loads(line)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_serve_prints_urls_serves_and_stops_cleanly_on_signals(sig, code):
    proc, info = start_serve("--seed", "7", "--start", "2026-01-05T14:35:00Z")
    try:
        assert info["base_url"].startswith("http://127.0.0.1:")
        assert info["stream_url"] == info["base_url"].replace("http", "ws") + "/stream"
        assert info["seed"] == 7 and info["sim_time"].startswith("2026-01-05T14:35")
        headers = {"APCA-API-KEY-ID": "mqd-sim-key", "APCA-API-SECRET-KEY": "mqd-sim-secret"}
        r = httpx.get(info["base_url"] + "/v2/clock", headers=headers, timeout=10)
        assert r.status_code == 200 and r.json()["is_open"] is True
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == code, err
    assert "stopped" in err and "Traceback" not in err


def test_serve_text_output_gives_the_config_lines(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqd_cli", "sim", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(16)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    text = "".join(lines)
    assert "base URL:   http://127.0.0.1:" in text
    assert 'broker = "alpaca"' in text and "stream_url = " in text
    assert "export APCA_API_KEY_ID=mqd-sim-key" in text


def test_serve_on_a_busy_port_is_a_usage_error(mqd):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = mqd("sim", "serve", "--port", port, expect=2)
    assert "cannot listen on 127.0.0.1" in result.stderr


def test_doctor_checks_broker_reachability_and_clock_skew(emulator, mqd, config_file, monkeypatch):
    srv = emulator()  # starts in January 2026: far from the real clock
    monkeypatch.setenv("MQD_CONFIG", str(config_file(srv.config_toml())))
    result = mqd("doctor", "--json")
    checks = {c["name"]: c for c in result.json["checks"]}
    assert checks["broker"]["status"] == "ok"
    assert srv.base_url in checks["broker"]["detail"] and " ms" in checks["broker"]["detail"]
    # the fixture starts in January 2026: a rehearsal's own time; the session follows it
    skew = checks["clock_skew"]
    assert skew["status"] == "ok", skew
    assert "session clock" in skew["detail"] and "a rehearsal's own time" in skew["detail"]


def test_clock_skew_judges_the_session_clock_and_a_remote_brokers_local_offset():
    from mqd_cli.doctor import judge_skew

    far = 8 * 30 * 86400.0  # eight months
    assert judge_skew(0.01, far, rehearsal=True, market="open").status == "ok"
    remote = judge_skew(0.01, far, rehearsal=False, market="open")
    assert remote.status == "fail" and "NTP" in remote.hint and "240d 0h00m" in remote.detail
    assert judge_skew(5.0, 0.0, rehearsal=True, market="open").status == "warn"
    assert judge_skew(45.0, 0.0, rehearsal=True, market="open").status == "fail"
    assert judge_skew(0.3, -0.5, rehearsal=False, market="open").status == "ok"


def test_doctor_clock_skew_ok_against_a_real_time_emulator(emulator, mqd, config_file, monkeypatch):
    from mqd_cli.clock import RealTimeClock

    srv = emulator(start=RealTimeClock().now())
    monkeypatch.setenv("MQD_CONFIG", str(config_file(srv.config_toml())))
    checks = {c["name"]: c for c in mqd("doctor", "--json").json["checks"]}
    assert checks["clock_skew"]["status"] == "ok", checks["clock_skew"]


def test_doctor_reports_wrong_keys_and_skips_the_clock_check(
    emulator, mqd, config_file, monkeypatch
):
    srv = emulator()
    text = srv.config_toml().replace(f'key_id = "{srv.key_id}"', 'key_id = "wrong-key"')
    monkeypatch.setenv("MQD_CONFIG", str(config_file(text)))
    result = mqd("doctor", "--json", expect=1)
    checks = {c["name"]: c for c in result.json["checks"]}
    assert checks["broker"]["status"] == "fail"
    assert "HTTP 401: request is not authorized" in checks["broker"]["detail"]
    assert checks["clock_skew"]["status"] == "skip"
    assert "wrong-key" not in result.stdout
