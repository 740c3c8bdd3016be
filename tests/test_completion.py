"""Shell completion: `mqd --show-completion` / `--install-completion` and the protocol the
installed script speaks (`_MQD_COMPLETE`), through the real console entry point; the slim apps
of `mqd --version` and of a named command skip the completion options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def mqd(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        # typer detects the shell from the parent process; a test names it instead
        "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "mqd_cli", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def complete(line: str, home: Path) -> list[str]:
    """What bash completion offers for the last word of ``line`` (as the installed script asks)."""
    words = line.split(" ")
    r = mqd(
        home=home,
        _MQD_COMPLETE="complete_bash",
        COMP_WORDS=line,
        COMP_CWORD=str(len(words) - 1),
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_show_completion_prints_the_bash_script_for_mqd(isolated_env):
    r = mqd("--show-completion", "bash", home=isolated_env)
    assert r.returncode == 0, r.stderr
    assert "_MQD_COMPLETE=complete_bash" in r.stdout
    assert "complete -o default -F _mqd_completion mqd" in r.stdout


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("mqd fla", ["flatten"]),
        ("mqd ca", ["cancel"]),
        ("mqd flatten --a", ["--all"]),
        ("mqd run --dur", ["--duration"]),
        ("mqd symbols s", ["sync", "show"]),
        ("mqd run --log-l", ["--log-level"]),
    ],
)
def test_the_completion_protocol_offers_commands_and_options(line, offered, isolated_env):
    assert sorted(complete(line, isolated_env)) == sorted(offered)


def test_install_completion_writes_the_script_and_sources_it_from_bashrc(isolated_env):
    r = mqd("--install-completion", "bash", home=isolated_env)
    assert r.returncode == 0, r.stderr
    assert "bash completion installed in" in r.stdout
    script = isolated_env / ".bash_completions" / "mqd.sh"
    assert "_MQD_COMPLETE=complete_bash" in script.read_text()
    assert str(script) in (isolated_env / ".bashrc").read_text()


def test_root_help_lists_the_completion_options(isolated_env):
    r = mqd("--help", home=isolated_env)
    assert "--install-completion" in r.stdout and "--show-completion" in r.stdout


def test_the_slim_apps_of_the_fast_paths_skip_the_completion_options():
    """`mqd --version` and a named command build only what they need (bench/startup.py)."""
    import typer.main

    from mqd_cli.app import _command_for, app

    def root_options(cmd) -> set[str]:
        return {o for p in cmd.params for o in p.opts}

    assert "--install-completion" in root_options(typer.main.get_command(app))
    for argv in (["--version"], ["config", "show"], ["flatten", "--all"]):
        assert "--install-completion" not in root_options(_command_for(argv)), argv
