"""Start-up: what the fast paths of `mqd` import and build, and that they change nothing an
operator sees. bench/startup.py times them; these tests check behaviour, never time."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mqd_cli.config.fields import frozen_dataclass

ROOT = Path(__file__).resolve().parents[1]

# Runs the installed console script (or, without one, what it runs) and lists the modules the
# process ended with. The script is executed as written, so its own imports count too.
PROBE = """
import json, os, runpy, sys
script = sys.argv[1]
sys.argv = ["mqd", *json.loads(sys.argv[2])]
try:
    if script:
        runpy.run_path(script, run_name="__main__")
    else:
        from mqd_cli.app import main
        main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
with open(os.environ["MQD_PROBE_OUT"], "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""
NEVER = ("alpaca", "httpx", "websockets", "pandas", "numpy", "pydantic", "starlette", "uvicorn")


def console_script() -> str:
    script = Path(sys.executable).parent / "mqd"
    return str(script) if script.exists() else ""


def imported_by(args: list[str], tmp_path: Path, home: Path) -> tuple[int, list[str]]:
    out = tmp_path / "probe.json"
    env = {
        **os.environ,
        "MQD_PROBE_OUT": str(out),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
    }
    env.pop("MQD_CONFIG", None)
    r = subprocess.run(
        [sys.executable, "-c", PROBE, console_script(), json.dumps(args)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.exists(), r.stderr
    doc = json.loads(out.read_text())
    return doc["code"], doc["modules"]


def heavy(modules: list[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in roots)


def commands_built(modules: list[str]) -> list[str]:
    return sorted(
        m.rsplit(".", 1)[1]
        for m in modules
        if m.startswith("mqd_cli.commands.") and not m.rsplit(".", 1)[1].startswith("_")
    )


@pytest.fixture
def store_config(tmp_path):
    config = tmp_path / "mqd.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "mqd.db"}"\n', encoding="utf-8")
    return config


def test_version_answers_before_typer_or_any_command_is_imported(tmp_path, isolated_env):
    code, modules = imported_by(["--version"], tmp_path, isolated_env)
    assert code == 0
    assert heavy(modules, ("typer", "click", "rich", *NEVER)) == []
    assert commands_built(modules) == []


def test_root_help_imports_no_command_module(tmp_path, isolated_env):
    code, modules = imported_by(["--help"], tmp_path, isolated_env)
    assert code == 0
    assert commands_built(modules) == []
    assert heavy(modules, ("rich", "sqlite3", "decimal", *NEVER)) == []


def test_config_show_json_imports_only_its_command_and_no_store(tmp_path, isolated_env):
    code, modules = imported_by(["config", "show", "--json"], tmp_path, isolated_env)
    assert code == 0
    assert commands_built(modules) == ["config", "output"]
    assert heavy(modules, ("rich", "sqlite3", *NEVER)) == []
    assert "mqd_cli.store" not in modules and "mqd_cli.trading.protective" not in modules


@pytest.mark.parametrize(
    ("args", "module"),
    [
        pytest.param(["protections", "status"], "protections", id="protections status"),
        pytest.param(["throttle", "stats"], "throttle", id="throttle stats"),
    ],
)
def test_store_readers_import_only_their_command_and_no_broker_or_pydantic(
    args, module, tmp_path, isolated_env, store_config
):
    """`--config PATH` is a given value: typer's pydantic coercion stays unimported for it."""
    code, modules = imported_by([*args, "--config", str(store_config)], tmp_path, isolated_env)
    assert code == 0
    assert commands_built(modules) == sorted([module, "output"])
    assert heavy(modules, NEVER) == []
    if module == "protections":  # throttle stats draws a rich table; status prints lines
        assert heavy(modules, ("rich",)) == []


def test_throttle_stats_json_draws_no_rich_table(tmp_path, isolated_env, store_config):
    args = ["throttle", "stats", "--json", "--config", str(store_config)]
    code, modules = imported_by(args, tmp_path, isolated_env)
    assert code == 0
    assert heavy(modules, ("rich", *NEVER)) == []


# -- the root help is drawn from ROOT_COMMANDS: it must say what the full app says ----------------


def test_root_commands_table_lists_what_the_modules_register_in_help_order():
    import typer.main

    from mqd_cli.app import ROOT_COMMANDS, full_app

    full = typer.main.get_command(full_app())
    expected = []
    for name, cmd in full.commands.items():
        help_text = cmd.help or ""
        end = help_text.find("\n\n")
        summary = " ".join((help_text if end == -1 else help_text[:end]).split())
        expected.append((name, summary))
    assert [(name, summary) for name, _module, summary in ROOT_COMMANDS] == expected, (
        "ROOT_COMMANDS in mqd_cli/app.py must list every root command with the first "
        "paragraph of its help, in this order"
    )


def test_each_root_command_is_registered_by_the_module_the_table_names():
    import typer.main

    from mqd_cli.app import ROOT_COMMANDS, build_app

    for name, module, _summary in ROOT_COMMANDS:
        assert name in typer.main.get_command(build_app((module,))).commands, (name, module)


@pytest.mark.parametrize("width", [50, 80, 120])
def test_root_help_is_word_for_word_the_help_of_the_full_app(width):
    import typer.main

    from mqd_cli.app import _root_listing, full_app

    def help_of(cmd) -> str:
        ctx = cmd.make_context("mqd", [], resilient_parsing=True, terminal_width=width)
        return cmd.get_help(ctx)

    assert help_of(_root_listing()) == help_of(typer.main.get_command(full_app()))


def test_root_help_through_main_lists_every_command(capsys, monkeypatch):
    from mqd_cli.app import ROOT_COMMANDS, main

    monkeypatch.setattr(sys, "argv", ["mqd", "--help"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--install-completion" in out
    assert all(f"  {name} " in out for name, _module, _summary in ROOT_COMMANDS)


# -- a named group command builds only that command ------------------------------------------------


def test_group_command_line_builds_only_the_command_named_and_the_same_one():
    import typer.main

    from mqd_cli.app import _command_for, full_app

    full = typer.main.get_command(full_app())

    def shape(cmd):
        subs = getattr(cmd, "commands", None)
        opts = sorted(o for p in cmd.params for o in p.opts)
        return opts, {n: shape(c) for n, c in subs.items()} if subs is not None else None

    for group, sub in (("config", "show"), ("protections", "status"), ("throttle", "stats")):
        slim = _command_for([group, sub, "--json"]).commands[group]
        assert list(slim.commands) == [sub]
        assert shape(slim.commands[sub]) == shape(full.commands[group].commands[sub])
        # the group's own help, or a word that is no command of it: the whole group
        assert set(_command_for([group, "--help", sub]).commands[group].commands) == set(
            full.commands[group].commands
        )
        assert set(_command_for([group, "nosuch"]).commands[group].commands) == set(
            full.commands[group].commands
        )


def test_a_mistyped_group_command_still_suggests_the_right_one(capsys, monkeypatch):
    from mqd_cli.app import main

    monkeypatch.setattr(sys, "argv", ["mqd", "config", "shwo"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert "Did you mean 'show'?" in capsys.readouterr().err


# -- typer's coercion without pydantic gives the values typer gives -------------------------------


def test_main_reads_a_given_config_path_and_rejects_a_bad_number_as_typer_does(
    capsys, monkeypatch, tmp_path, store_config
):
    from mqd_cli.app import main

    monkeypatch.chdir(tmp_path)
    for path in (str(store_config), store_config.name, f"./{store_config.name}"):
        monkeypatch.setattr(sys, "argv", ["mqd", "config", "show", "--json", "--config", path])
        with pytest.raises(SystemExit) as exit_:
            main()
        assert exit_.value.code == 0, capsys.readouterr().err
        assert json.loads(capsys.readouterr().out)["file"] == path.removeprefix("./")
    monkeypatch.setattr(sys, "argv", ["mqd", "protections", "status", "--limit", "0"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert "--limit" in capsys.readouterr().err


# -- frozen_dataclass behaves as @dataclass(frozen=True) ------------------------------------------


@frozen_dataclass
class Fast:
    """A table."""

    name: str
    size: int = 3
    tags: list[str] = dataclasses.field(default_factory=list)
    note: str = dataclasses.field(default="", compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class Fast_:  # noqa: N801 - the twin of Fast, made by dataclass itself
    """A table."""

    name: str
    size: int = 3
    tags: list[str] = dataclasses.field(default_factory=list)
    note: str = dataclasses.field(default="", compare=False, repr=False)


def outcome(action):
    try:
        return "ok", repr(action()).replace("Fast_", "Fast")
    except Exception as exc:  # the error and its message are part of the behaviour
        return type(exc).__name__, str(exc).replace("Fast_", "Fast")


@pytest.mark.parametrize(
    "action",
    [
        lambda cls: cls("a"),
        lambda cls: cls("a", 4, ["x"], "n"),
        lambda cls: cls(name="a", tags=["x"]),
        lambda cls: cls(),
        lambda cls: cls("a", 1, [], "", "extra"),
        lambda cls: cls("a", name="b"),
        lambda cls: cls("a", colour="red"),
        lambda cls: cls("a") == cls("a", note="other"),
        lambda cls: cls("a") == cls("b"),
        lambda cls: cls("a").__eq__("a"),
        lambda cls: hash(cls("a")),
        lambda cls: setattr(cls("a"), "size", 5),
        lambda cls: setattr(cls("a"), "other", 5),
        lambda cls: delattr(cls("a"), "size"),
        lambda cls: dataclasses.replace(cls("a"), size=9),
        lambda cls: dataclasses.asdict(cls("a", tags=["t"])),
        lambda cls: cls("a").tags is cls("a").tags,
        lambda cls: [f.name for f in dataclasses.fields(cls)],
        lambda cls: cls.__match_args__,
    ],
)
def test_frozen_dataclass_behaves_as_a_frozen_dataclass(action):
    assert outcome(lambda: action(Fast)) == outcome(lambda: action(Fast_))


def test_frozen_dataclass_hashes_as_a_frozen_dataclass():
    assert hash(Fast("a", tags=())) == hash(Fast_("a", tags=()))  # type: ignore[arg-type]


def test_the_settings_schema_keeps_its_checks_and_stays_frozen():
    from mqd_cli.config.settings import RiskSettings, Settings
    from mqd_cli.errors import ConfigError

    assert Settings() == Settings() and Settings().risk == RiskSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().risk = RiskSettings()  # type: ignore[misc]
    with pytest.raises(ConfigError, match="needs risk.protective_stop"):
        RiskSettings(take_profit="4%")
    assert str(RiskSettings(protective_stop="2%").protective_stop) == "2%"
