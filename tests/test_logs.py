"""Logs: `[log] file` with rotation on real files, JSON lines, `--log-level` on any command, the
run's events in the file, stderr kept quiet during `mqd run`, and secrets never written."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mqd_cli.config.loading import loads
from mqd_cli.config.settings import LogSettings
from mqd_cli.logs import LogSetup

FAST_RUN = """
[sim]
speed = 36000.0
partial_fill_probability = 0.0
[run]
duration = "1h"
poll_interval = "10ms"
sim_start = "2026-01-05T14:30:00Z"
[strategy.params]
fast = 5
slow = 20
stop_loss_pct = 0.1
take_profit_pct = 0.5
"""


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_the_file_rotates_at_max_bytes_and_keeps_exactly_backups_old_files(tmp_path):
    path = tmp_path / "logs" / "mqd.log"  # the directory is created
    setup = LogSetup(LogSettings(file=str(path), max_bytes=2000, backups=2), stderr_level=None)
    log = logging.getLogger("mqd.test.rotation")
    try:
        for i in range(200):
            log.info("line %03d of the rotation test", i)
    finally:
        setup.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["mqd.log", "mqd.log.1", "mqd.log.2"]
    assert all(p.stat().st_size <= 2000 for p in path.parent.iterdir())
    kept = lines_of(path.with_name("mqd.log.2")) + lines_of(path.with_name("mqd.log.1"))
    kept += lines_of(path)
    numbers = [int(line.split("line ")[1][:3]) for line in kept]
    assert numbers == list(range(200 - len(numbers), 200))  # the newest, in order, none lost
    assert " INFO mqd[" in kept[-1] and "] mqd.test.rotation: " in kept[-1]
    assert kept[-1].endswith("line 199 of the rotation test")


def test_json_lines_carry_time_level_logger_pid_event_and_the_exception(tmp_path):
    path = tmp_path / "mqd.jsonl"
    setup = LogSetup(
        LogSettings(file=str(path), json=True, level="debug"),
        stderr_level=None,
        command="symbols sync",
    )
    log = logging.getLogger("mqd.test.json")
    try:
        log.debug("quiet detail")
        log.info("fill buy 1 AAPL", extra={"event": "fill"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("it failed")
    finally:
        setup.close()
    docs = [json.loads(line) for line in lines_of(path)]
    assert [d["level"] for d in docs] == ["debug", "info", "error"]
    assert {d["logger"] for d in docs} == {"mqd.test.json"}
    assert {d["command"] for d in docs} == {"symbols sync"}
    assert docs[1]["event"] == "fill" and "event" not in docs[0]
    assert "ValueError: boom" in docs[2]["exception"] and docs[2]["time"].endswith("+00:00")
    assert all(isinstance(d["pid"], int) for d in docs)


def test_the_file_level_filters_and_the_handlers_are_gone_after_close(tmp_path):
    path = tmp_path / "mqd.log"
    setup = LogSetup(LogSettings(file=str(path), level="warning"), stderr_level=None)
    log = logging.getLogger("mqd_cli.test.level")
    log.info("not written")
    log.warning("written")
    setup.close()
    log.warning("after close")
    assert [line.split(": ", 1)[1] for line in lines_of(path)] == ["written"]
    assert not logging.getLogger("mqd_cli").handlers


def test_secrets_never_reach_the_file_or_stderr_even_in_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MQD_TEST_HB", "https://hc-ping.com/ENVTOKEN1234abcd")
    loads(
        '[alpaca]\nkey_id = "PKLITERALLOGKEY99"\nsecret_key = "LogSecretZZ88"\n'
        '[notify]\nheartbeat_url = "env:MQD_TEST_HB"\n'
    ).settings.notify.heartbeat_url.reveal()  # built Secrets are what redact() knows
    path = tmp_path / "mqd.log"
    setup = LogSetup(LogSettings(file=str(path)), stderr_level=logging.INFO)
    log = logging.getLogger("mqd.test.secrets")
    try:
        log.info("keys %s / %s", "PKLITERALLOGKEY99", "LogSecretZZ88")
        try:
            raise RuntimeError("GET https://hc-ping.com/ENVTOKEN1234abcd failed")
        except RuntimeError:
            log.exception("heartbeat")
    finally:
        setup.close()
    written = path.read_text() + capsys.readouterr().err
    assert "***" in written and "RuntimeError" in written
    for secret in ("PKLITERALLOGKEY99", "LogSecretZZ88", "ENVTOKEN1234abcd"):
        assert secret not in written


def test_stderr_speaks_like_mqd_warning_message(capsys):
    setup = LogSetup(LogSettings(), stderr_level=logging.WARNING)
    try:
        logging.getLogger("mqd.test.stderr").info("hidden")
        logging.getLogger("mqd.test.stderr").warning("symbol properties are stale")
    finally:
        setup.close()
    assert capsys.readouterr().err == "warning: symbol properties are stale\n"


# -- through the CLI -----------------------------------------------------------------------------


def test_mqd_run_writes_its_events_to_the_log_file_and_keeps_them_off_stderr(
    mqd, config_file, tmp_path
):
    log_path = tmp_path / "state" / "mqd.log"
    cfg = config_file(FAST_RUN + f'\n[log]\nfile = "{log_path}"\n')
    r = mqd("run", "--config", cfg, "--json")
    text = log_path.read_text()
    assert " INFO mqd run[" in text and "] mqd.run: simulated exchange (offline)" in text
    assert "] mqd.run.events: sent buy " in text and "] mqd.run.events: fill buy " in text
    assert "INFO" not in r.stderr and "mqd.run" not in r.stderr  # the dashboard's job


def test_log_level_on_the_command_line_shows_records_on_stderr_too(mqd, config_file, tmp_path):
    cfg = config_file(FAST_RUN)
    r = mqd("run", "--config", cfg, "--json", "--log-level", "info")
    assert "INFO mqd.run: simulated exchange (offline)" in r.stderr
    assert "INFO mqd.run.events: fill buy " in r.stderr


def test_every_leaf_command_takes_log_level():
    from mqd_cli.app import walk_commands

    lacking = [
        path
        for path, cmd, leaf in walk_commands()
        if leaf and "--log-level" not in {o for param in cmd.params for o in param.opts}
    ]
    assert lacking == []


@pytest.mark.parametrize("level", ["loud", "", "5"])
def test_an_unknown_log_level_is_a_usage_error(mqd, level):
    r = mqd("protections", "status", "--log-level", level, expect=2)
    assert "--log-level" in r.stderr and "hint: use one of debug, info, warning, error" in r.stderr


def test_a_log_file_that_cannot_be_written_exits_4_naming_it(mqd, config_file, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    cfg = config_file(f'[log]\nfile = "{blocker / "mqd.log"}"\n')
    r = mqd("protections", "status", "--config", cfg, expect=4)
    assert "a-file" in r.stderr and "hint:" in r.stderr


def test_log_settings_are_validated_strictly(tmp_path):
    from mqd_cli.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        loads('[log]\nlevel = "verbose"\nbackups = 0\nmax_bytes = -1\nfiles = "x"\n')
    text = "\n".join(err.value.problems)
    assert "log.level" in text and "log.backups" in text and "log.max_bytes" in text
    assert "log.files: unknown key (did you mean 'log.file'?)" in text
