"""Shared fixtures: an isolated environment and a CLI runner that looks like the CLI.

``mqd("protections", "status", "--json")`` runs the real Typer app in-process against a config
file and store under ``tmp_path`` and returns a result with ``.exit_code``, ``.stdout``,
``.stderr`` and ``.json``. It fails the test on an unexpected exit code (``expect=`` to change).
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

# `emulator` / `emulator_module`: `mqd sim serve` as a real loopback server (tests/emulator.py).
pytest_plugins = ["tests.emulator"]


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def json(self):
        return json.loads(self.stdout)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No test reads the real user config or data dir, or real credentials."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    for var in ("MQD_CONFIG", "APCA_API_KEY_ID", "APCA_API_SECRET_KEY"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def config_file(tmp_path):
    """Write a config (TOML text) to a temp file whose store lives in tmp_path; returns the path.

    The store path is added to ``[store]`` unless the text sets one.
    """

    def write(text: str = "", name: str = "config.toml") -> Path:
        body = textwrap.dedent(text)
        if "[store]" not in body:
            body += f'\n[store]\npath = "{tmp_path / "mqd.db"}"\n'
        path = tmp_path / name
        path.write_text(body, encoding="utf-8")
        return path

    return write


@pytest.fixture
def mqd(config_file, monkeypatch):
    """Run the CLI in-process; ``MQD_CONFIG`` points at a temp config unless one is given."""
    from mqd_cli.app import app

    default = config_file("")
    monkeypatch.setenv("MQD_CONFIG", str(default))

    def run(*args: str, expect: int | None = 0, input: str | None = None) -> CliResult:
        result = CliRunner().invoke(app, [str(a) for a in args], input=input)
        out = CliResult(result.exit_code, result.stdout, result.stderr)
        if expect is not None and result.exit_code != expect:
            raise AssertionError(
                f"mqd {' '.join(map(str, args))} exited {result.exit_code}, expected {expect}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{result.exception!r}"
            )
        return out

    return run
