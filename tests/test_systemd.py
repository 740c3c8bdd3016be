"""systemd's notify protocol over a real unix datagram socket: the notifier, and `mqd run`
saying READY=1, WATCHDOG=1 while healthy and STOPPING=1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mqd_cli.systemd import SystemdNotify

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def _drain(sock: socket.socket) -> list[str]:
    out = []
    sock.settimeout(0.2)
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except (TimeoutError, BlockingIOError):
            return out


def test_nothing_is_sent_outside_a_notify_service():
    assert SystemdNotify.from_env({}) is None


def test_ready_watchdog_at_half_the_interval_and_stopping(listener):
    sock, path = listener
    notify = SystemdNotify.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    assert notify is not None and notify.watchdog_seconds == 2.0
    notify.ready("trading AAPL")
    notify.watchdog(100.0)
    notify.watchdog(100.5)  # within half the interval: nothing
    notify.watchdog(101.0)
    notify.watchdog(103.0, healthy=False)  # an unhealthy loop is not vouched for
    notify.stopping("duration 1h reached")
    assert _drain(sock) == [
        "READY=1\nSTATUS=trading AAPL",
        "WATCHDOG=1",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=duration 1h reached",
    ]


def test_a_watchdog_meant_for_another_process_is_not_pinged(listener):
    _, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    notify = SystemdNotify.from_env(env)
    assert notify is not None and notify.watchdog_seconds is None


def test_an_abstract_socket_address_is_used_as_such():
    name = f"mqd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notify = SystemdNotify(f"@{name}")
        notify.ready()
        assert sock.recv(100) == b"READY=1"


def test_a_missing_socket_is_logged_not_fatal(tmp_path):
    notify = SystemdNotify(str(tmp_path / "gone.sock"))
    notify.ready()
    assert notify.sent == []


def test_mqd_run_says_ready_pings_the_watchdog_and_says_stopping(listener, tmp_path):
    sock, path = listener
    cfg = tmp_path / "mqd.toml"
    cfg.write_text(
        f'[store]\npath = "{tmp_path / "mqd.db"}"\n'
        "[sim]\nspeed = 3600.0\n"
        '[run]\nduration = "20m"\npoll_interval = "50ms"\nsim_start = "2026-01-05T14:30:00Z"\n'
    )
    env = {
        **os.environ,
        "NOTIFY_SOCKET": path,
        "WATCHDOG_USEC": "200000",  # 0.2 s: a ping every 0.1 s
        "HOME": str(tmp_path),
    }
    env.pop("WATCHDOG_PID", None)
    r = subprocess.run(
        [sys.executable, "-m", "mqd_cli", "run", "--config", str(cfg), "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    messages = _drain(sock)
    assert messages[0].startswith("READY=1\nSTATUS=trading")
    assert messages[-1].startswith("STOPPING=1\nSTATUS=duration 20m reached")
    assert messages.count("WATCHDOG=1") >= 1


def test_a_manager_that_never_reads_cannot_stall_the_sender(listener):
    _, path = listener
    notify = SystemdNotify(path)
    results = [notify.send("WATCHDOG=1") for _ in range(5000)]  # far beyond the buffer
    assert results[0] and not all(results)  # the full buffer refuses, nothing blocks


def test_the_contrib_units_run_commands_and_options_that_exist():
    import shlex

    contrib = ROOT / "contrib"
    for unit in ("mqd-run.service", "mqd-reconcile.service"):
        text = (contrib / unit).read_text()
        [line] = [x for x in text.splitlines() if x.startswith("ExecStart=")]
        words = shlex.split(line.removeprefix("ExecStart="))[1:]  # after the mqd path
        command = [w for w in words if not w.startswith("-") and "%h" not in w][:1]
        options = [w for w in words if w.startswith("--")]
        r = subprocess.run(
            [sys.executable, "-m", "mqd_cli", *command, "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, (unit, r.stderr)
        for option in options:
            assert option in r.stdout, (unit, option)
    assert "Type=notify" in (contrib / "mqd-run.service").read_text()
    assert "OnCalendar=" in (contrib / "mqd-reconcile.timer").read_text()
    assert 'ENTRYPOINT ["mqd"]' in (contrib / "Dockerfile").read_text()
