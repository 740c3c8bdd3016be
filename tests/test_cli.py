"""CLI conventions: help and examples everywhere, shared options, exit codes, the error boundary,
pure JSON on stdout, config and doctor commands, and secrets that never reach any output."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mqd_cli import __version__
from mqd_cli.app import _guard_all, walk_commands
from mqd_cli.errors import BrokerError, ConfigError, ExitCode, StateError, UsageError

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = walk_commands()
LEAVES = [path for path, _cmd, leaf in COMMANDS if leaf]


# -- help ---------------------------------------------------------------------------------------


def test_the_command_map_holds_every_group_from_the_start():
    top = {path for path, _c, _l in COMMANDS if " " not in path}
    assert {
        "run",
        "backtest",
        "reconcile",
        "protections",
        "symbols",
        "throttle",
        "stream",
        "sim",
        "config",
        "doctor",
    } <= top


def test_root_help_shows_summary_example_and_every_group(mqd):
    r = mqd("--help")
    assert "operate an Alpaca trading system" in r.stdout
    assert "Example: mqd " in r.stdout
    for path, _c, _l in COMMANDS:
        if " " not in path:
            assert path in r.stdout


@pytest.mark.parametrize("path", LEAVES)
def test_every_command_lists_its_exit_codes_from_the_one_table(path):
    from mqd_cli.errors import ALWAYS, EXIT_MEANINGS

    cmd = next(c for p, c, _l in COMMANDS if p == path)
    help_text = " ".join((cmd.help or "").split())
    m = re.search(r"Exit codes: (.*?)\.(?: Example:|$)", help_text)
    assert m, f"mqd {path} --help lists no exit codes"
    codes = [int(x) for x in re.findall(r"(?:^|, )(\d+) ", m.group(1))]
    assert codes == sorted(codes) and set(codes) <= {int(c) for c in ExitCode}
    assert {int(c) for c in ALWAYS} <= set(codes)  # every command can end with these
    assert f"70 {EXIT_MEANINGS[ExitCode.INTERNAL]}" in m.group(1)


def test_the_readme_exit_code_table_is_the_one_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Exit codes") :]
    rows = re.findall(r"^\| (\d+) \|", section[: section.index("\n\n###")], re.MULTILINE)
    assert [int(r) for r in rows] == sorted(int(c) for c in ExitCode)


@pytest.mark.parametrize("path", [p for p, _c, _l in COMMANDS])
def test_every_command_help_has_a_summary_and_an_example(mqd, path):
    cmd = next(c for p, c, _l in COMMANDS if p == path)
    summary = (cmd.help or "").strip().splitlines()[0] if cmd.help else ""
    assert summary, f"mqd {path} has no summary line"
    r = mqd(*path.split(), "--help")
    assert summary[:40] in " ".join(r.stdout.split()), r.stdout
    assert "Example: mqd " in r.stdout, f"mqd {path} --help has no 'Example: mqd ...'"


@pytest.mark.parametrize("path", LEAVES)
def test_every_leaf_command_accepts_config_json_and_verbose_after_its_name(path):
    cmd = next(c for p, c, _l in COMMANDS if p == path)
    opts = {o for param in cmd.params for o in param.opts}
    assert {"--config", "--json", "--verbose"} <= opts, f"mqd {path}: {sorted(opts)}"


# -- exit codes and the boundary ---------------------------------------------------------------


def test_exit_code_enum_values_are_the_documented_ones():
    assert [(c.name, int(c)) for c in ExitCode] == [
        ("OK", 0),
        ("FOUND", 1),
        ("USAGE", 2),
        ("BROKER", 3),
        ("STATE", 4),
        ("INTERNAL", 70),
        ("INTERRUPTED", 130),
    ]


def test_version_option_prints_the_version(mqd):
    assert mqd("--version").stdout == f"mqd {__version__}\n"


def test_python_dash_m_runs_the_same_cli():
    r = subprocess.run(
        [sys.executable, "-m", "mqd_cli", "--version"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert r.returncode == 0 and r.stdout == f"mqd {__version__}\n"


def test_no_arguments_prints_usage_with_exit_2(mqd):
    r = mqd(expect=2)
    assert "Usage: mqd" in r.stdout + r.stderr


def test_unknown_command_and_unknown_option_exit_2(mqd):
    assert "No such command" in mqd("frobnicate", expect=2).stderr
    assert "No such option" in mqd("config", "show", "--frob", expect=2).stderr


def _console(*args: str) -> subprocess.CompletedProcess:
    """``mqd`` as the console script runs it (``mqd_cli.app.main``), in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "mqd_cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "MQD_CONFIG": ""},
    )


@pytest.mark.parametrize(
    ("args", "error", "hint"),
    [
        (["run", "--bogus"], "error: No such option: --bogus", "hint: see `mqd run --help`"),
        (
            ["sim", "serve", "--port", "99999"],
            "error: Invalid value for '--port'",
            "hint: see `mqd sim serve --help`",
        ),
        (
            ["--config", "x.toml", "doctor"],
            "error: No such option: --config",
            "go after the command",
        ),
        (["frobnicate"], "error: No such command 'frobnicate'", "hint: see `mqd --help`"),
    ],
)
def test_option_errors_speak_with_error_and_hint_and_exit_2(args, error, hint):
    r = _console(*args)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(error) and hint in r.stderr
    assert "Usage:" not in r.stderr and "Traceback" not in r.stderr


def test_no_command_prints_the_help_and_exits_2():
    r = _console()
    assert r.returncode == 2 and r.stderr.startswith("Usage: mqd")


def _boundary_app(exc: BaseException) -> typer.Typer:
    app = typer.Typer()

    @app.command("boom")
    def boom(verbose: bool = typer.Option(False, "--verbose")) -> None:
        raise exc

    @app.command("fine")
    def fine(verbose: bool = typer.Option(False, "--verbose")) -> None:
        typer.echo("fine")

    _guard_all(app)
    return app


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (UsageError("bad usage", "do it right"), 2),
        (ConfigError(["a: one", "b: two"]), 2),
        (BrokerError("broker down", "retry later"), 3),
        (StateError("store gone", "restore"), 4),
        (KeyboardInterrupt(), 130),
        (ZeroDivisionError("bug"), 70),
    ],
)
def test_the_boundary_maps_each_error_to_its_exit_code_without_a_traceback(exc, code):
    r = CliRunner().invoke(_boundary_app(exc), ["boom"])
    assert r.exit_code == code
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    if code in (2, 3, 4):
        assert r.stderr.startswith("error: ")
    if isinstance(exc, ConfigError):
        assert r.stderr.splitlines()[:2] == ["error: a: one", "error: b: two"]
    if isinstance(exc, ZeroDivisionError):
        assert "error: internal error: ZeroDivisionError: bug" in r.stderr
        assert "--verbose" in r.stderr


def test_the_boundary_prints_the_hint_after_the_error():
    r = CliRunner().invoke(_boundary_app(StateError("store gone", "restore it")), ["boom"])
    assert r.stderr == "error: store gone\nhint: restore it\n"


def test_traceback_only_with_verbose():
    r = CliRunner().invoke(_boundary_app(StateError("store gone")), ["boom", "--verbose"])
    assert r.exit_code == 4
    assert "Traceback" in r.stderr and "error: store gone" in r.stderr


def test_the_boundary_scrubs_secrets_from_error_messages_and_tracebacks(monkeypatch):
    monkeypatch.setenv("APCA_API_SECRET_KEY", "sk-BOUNDARY-SECRET-77")
    exc = BrokerError("auth failed with sk-BOUNDARY-SECRET-77", "key sk-BOUNDARY-SECRET-77")
    r = CliRunner().invoke(_boundary_app(exc), ["boom", "--verbose"])
    assert r.exit_code == 3
    assert "sk-BOUNDARY-SECRET-77" not in r.stderr + r.stdout
    assert "***" in r.stderr


# -- config commands -----------------------------------------------------------------------------


def test_config_init_writes_a_commented_file_to_the_user_config_dir_and_refuses_overwrite(
    mqd, monkeypatch
):
    from mqd_cli.config.loading import default_config_path, loads

    monkeypatch.delenv("MQD_CONFIG")
    target = default_config_path()
    r = mqd("config", "init")
    assert r.stdout.strip() == str(target)
    text = target.read_text()
    assert text.startswith("# mqd configuration")
    assert loads(text).settings.broker == "sim"
    r = mqd("config", "init", expect=2)
    assert "already exists" in r.stderr and "--force" in r.stderr
    target.write_text("# edited\n")
    mqd("config", "init", "--force")
    assert target.read_text() == text
    r = mqd("config", "check")
    assert r.stdout == f"ok: {target} is valid\n"


def test_config_init_to_an_explicit_path_with_json(mqd, tmp_path):
    target = tmp_path / "sub" / "mine.toml"
    r = mqd("config", "init", "--config", target, "--json")
    assert r.json == {"path": str(target)}
    assert target.exists()


def test_commands_say_on_stderr_when_the_built_in_defaults_apply(mqd, monkeypatch):
    monkeypatch.delenv("MQD_CONFIG")
    r = mqd("config", "show", "--json")
    assert "no config file found; using built-in defaults" in r.stderr
    assert r.json["file"] is None and r.json["origin"] == "defaults"
    assert r.json["settings"]["broker"] == "sim"


def test_config_show_reports_values_and_their_sources(mqd, config_file, monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", "PKSHOWSOURCE0001")
    path = config_file('broker = "alpaca"\n[risk]\nmax_open_orders = 7\n')
    doc = mqd("config", "show", "--json", "--config", path).json
    assert doc["file"] == str(path) and doc["origin"] == "--config"
    assert doc["settings"]["risk"]["max_open_orders"] == 7
    assert doc["settings"]["alpaca"]["key_id"] == "env:APCA_API_KEY_ID (set)"
    assert doc["sources"]["broker"] == "file"
    assert doc["sources"]["alpaca.key_id"] == "env"
    assert doc["sources"]["sim.seed"] == "default"
    text = mqd("config", "show", "--config", path).stdout
    assert "max_open_orders" in text and "file" in text
    assert "PKSHOWSOURCE0001" not in text + json.dumps(doc)


def test_config_discovery_order_on_the_command_line(mqd, config_file, monkeypatch):
    from mqd_cli.config.loading import default_config_path

    user = default_config_path()
    user.parent.mkdir(parents=True, exist_ok=True)
    user.write_text('[strategy]\nname = "from-user-dir"\n')
    env_file = config_file('[strategy]\nname = "from-env"\n', name="env.toml")
    cli_file = config_file('[strategy]\nname = "from-cli"\n', name="cli.toml")
    monkeypatch.delenv("MQD_CONFIG")
    assert mqd("config", "show", "--json").json["settings"]["strategy"]["name"] == "from-user-dir"
    monkeypatch.setenv("MQD_CONFIG", str(env_file))
    assert mqd("config", "show", "--json").json["settings"]["strategy"]["name"] == "from-env"
    r = mqd("config", "show", "--json", "-c", cli_file)
    assert r.json["settings"]["strategy"]["name"] == "from-cli"


def test_config_check_exits_2_with_one_line_per_problem_and_no_traceback(mqd, config_file):
    path = config_file(
        'brokr = "sim"\n[alpaca]\ntimeout = "forever"\n[risk]\nmax_open_orders = -2\n'
    )
    r = mqd("config", "check", "--config", path, expect=2)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3
    assert "did you mean 'broker'?" in errors[0]
    assert "Traceback" not in r.stderr
    assert r.stdout == ""


def test_config_check_json_lists_the_problems_on_stdout(mqd, config_file):
    path = config_file("[risk]\nmax_open_orders = -2\n")
    r = mqd("config", "check", "--json", "--config", path, expect=2)
    assert r.json["valid"] is False
    assert r.json["problems"] == [f"{path}: risk.max_open_orders: must be at least 0, got -2"]


def test_config_check_on_a_toml_syntax_error_names_line_and_column(mqd, config_file):
    path = config_file('broker = "sim\n')
    r = mqd("config", "check", "-c", path, expect=2)
    assert f"error: {path}: TOML syntax error" in r.stderr
    assert "line 1" in r.stderr and "column" in r.stderr


def test_config_check_warns_about_a_literal_secret_but_passes(mqd, config_file):
    path = config_file('[alpaca]\nsecret_key = "LITERAL-SECRET-CHECK-9"\n')
    r = mqd("config", "check", "--config", path)
    assert "warning: alpaca.secret_key holds a literal secret" in r.stderr
    assert "LITERAL-SECRET-CHECK-9" not in r.stdout + r.stderr


def test_config_file_that_does_not_exist_exits_2(mqd, tmp_path):
    r = mqd("config", "show", "--config", tmp_path / "nope.toml", expect=2)
    assert "does not exist" in r.stderr and "mqd config init" in r.stderr


# -- doctor -------------------------------------------------------------------------------------


def test_doctor_passes_on_the_defaults_with_one_line_per_check(mqd):
    r = mqd("doctor")
    lines = r.stdout.splitlines()
    names = [line.split()[1] for line in lines]
    assert names[:3] == ["config", "credentials", "store"]
    assert all(line.split()[0] in ("ok", "warn") for line in lines)


def test_doctor_fails_with_exit_1_when_alpaca_credentials_are_missing(mqd, config_file):
    path = config_file('broker = "alpaca"\n[alpaca]\nbase_url = "http://127.0.0.1:9"\n')
    r = mqd("doctor", "--config", path, "--json", expect=1)
    checks = {c["name"]: c for c in r.json["checks"]}
    assert r.json["ok"] is False
    assert checks["credentials"]["status"] == "fail"
    assert "APCA_API_KEY_ID" in checks["credentials"]["hint"]
    assert checks["store"]["status"] == "ok"


def test_doctor_reports_an_invalid_config_as_a_failed_check(mqd, config_file):
    path = config_file("[risk]\nmax_open_orders = -2\n")
    r = mqd("doctor", "--config", path, expect=1)
    assert r.stdout.startswith("FAIL  config")
    assert "risk.max_open_orders" in r.stdout


def test_doctor_fails_the_store_check_on_a_database_from_a_newer_mqd(mqd, config_file, tmp_path):
    from mqd_cli.store import Store

    db = tmp_path / "future.db"
    store = Store.open(db)
    with store.write() as cur:
        cur.execute("UPDATE schema_version SET version = 99 WHERE component = 'core'")
    store.close()
    path = config_file(f'[store]\npath = "{db}"\n')
    r = mqd("doctor", "--json", "--config", path, expect=1)
    store_check = next(c for c in r.json["checks"] if c["name"] == "store")
    assert store_check["status"] == "fail"
    assert "newer mqd" in store_check["detail"]


def test_doctor_skips_checks_whose_prerequisite_failed():
    from mqd_cli import doctor
    from mqd_cli.factory import Services

    def check_first(services):
        return doctor.Check("first", "fail", "broken", "fix it")

    @doctor.requires("first")
    def check_second(services):
        raise AssertionError("must not run")

    def check_third(services):
        raise StateError("store gone", "restore")

    results = doctor.run_checks(Services(), [check_first, check_second, check_third])
    assert [(c.name, c.status) for c in results] == [
        ("first", "fail"),
        ("second", "skip"),
        ("third", "fail"),
    ]
    assert results[2].hint == "restore"


# -- JSON purity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [("config", "show"), ("config", "check"), ("doctor",)],
)
def test_with_json_stdout_holds_exactly_one_json_document(mqd, args, monkeypatch):
    monkeypatch.delenv("MQD_CONFIG")  # so the defaults note goes to stderr
    r = mqd(*args, "--json", "--verbose")
    json.loads(r.stdout)
    assert "note:" in r.stderr


# -- secrets never printed -----------------------------------------------------------------------

SECRETS = {
    "APCA_API_KEY_ID": "PKREDACTENVKEY7Q2Z9XW4",
    "APCA_API_SECRET_KEY": "skRedactEnvSecret8f3a9c2e7d1b",
    "MQD_TEST_WEBHOOK": "https://discord.com/api/webhooks/1/ENVWEBHOOKTOKENqq11",
}
LITERALS = ("PKLITERALKEY55AAZZ", "LiteralSecretBB77yy", "LITERALWEBHOOKTOKENzz99")


def _secret_configs(tmp_path: Path) -> list[Path]:
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens, connects fail fast
    common = (
        f'broker = "alpaca"\n[alpaca]\nbase_url = "{closed}"\nstream_url = "ws://127.0.0.1:9"\n'
        f'data_url = "{closed}"\ntimeout = "1s"\n[store]\npath = "{tmp_path / "s.db"}"\n'
    )
    env_file = tmp_path / "env-secrets.toml"
    env_file.write_text(common + '[notify.discord]\nwebhook_url = "env:MQD_TEST_WEBHOOK"\n')
    literal = tmp_path / "literal-secrets.toml"
    literal.write_text(
        common.replace(
            "[alpaca]\n", f'[alpaca]\nkey_id = "{LITERALS[0]}"\nsecret_key = "{LITERALS[1]}"\n'
        )
        + f'[notify.discord]\nwebhook_url = "https://discord.com/api/webhooks/2/{LITERALS[2]}"\n'
    )
    broken = tmp_path / "broken-secrets.toml"  # valid secrets next to invalid keys
    broken.write_text(literal.read_text() + "[risk]\nmax_open_orders = -1\nbogus = 1\n")
    return [env_file, literal, broken]


def _run_all_in_parallel(argvs: list[list[str]], env: dict[str, str], deadline: float) -> str:
    """Run every command at once as real processes; stop stragglers with SIGINT, then kill."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mqd_cli", *a],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for a in argvs
    ]
    end = time.monotonic() + deadline
    while time.monotonic() < end and any(p.poll() is None for p in procs):
        time.sleep(0.05)
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
    outputs = []
    for a, p in zip(argvs, procs, strict=True):
        try:
            out, _ = p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
        outputs.append(f"$ mqd {' '.join(a)}\n{out}")
    return "\n".join(outputs)


def test_no_command_ever_prints_a_secret_from_env_or_file(tmp_path, isolated_env):
    env = {
        **os.environ,
        **SECRETS,
        "HOME": str(isolated_env),
        "XDG_CONFIG_HOME": str(isolated_env / ".config"),
        "XDG_DATA_HOME": str(isolated_env / ".local" / "share"),
    }
    env.pop("MQD_CONFIG", None)
    argvs: list[list[str]] = []
    for cfg_path in _secret_configs(tmp_path):
        for path in LEAVES:
            if path == "config init":
                continue  # writes a file rather than reading one; run below
            # --verbose for tracebacks, --json for the machine output: both paths at once
            argvs.append([*path.split(), "--config", str(cfg_path), "--json", "--verbose"])
    argvs.append(["config", "init", "--config", str(tmp_path / "new.toml")])
    output = _run_all_in_parallel(argvs, env, deadline=20)
    assert "$ mqd config show" in output
    leaked = [s for s in (*SECRETS.values(), *LITERALS) if s in output]
    leaked += [s for s in ("ENVWEBHOOKTOKENqq11",) if s in output]
    assert leaked == [], f"secrets printed: {leaked}"
    written = (tmp_path / "new.toml").read_text()
    assert not any(s in written for s in (*SECRETS.values(), *LITERALS))


def test_console_entry_point_parses_given_and_omitted_options_alike(tmp_path, isolated_env):
    """main() skips typer's coercion for omitted options only; given ones still parse."""
    path = tmp_path / "given.toml"
    path.write_text('[strategy]\nname = "given"\n')
    env = {
        **os.environ,
        "HOME": str(isolated_env),
        "XDG_CONFIG_HOME": str(isolated_env / ".config"),
    }
    env.pop("MQD_CONFIG", None)

    def show(*extra):
        r = subprocess.run(
            [sys.executable, "-m", "mqd_cli", "config", "show", "--json", *extra],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    assert show()["origin"] == "defaults"
    given = show("--config", str(path))
    assert given["file"] == str(path) and given["settings"]["strategy"]["name"] == "given"


def test_the_entry_point_builds_the_same_command_a_full_app_has():
    """main() builds only the module a command line names; it must match the full app."""
    import typer.main

    from mqd_cli.app import _command_for, app

    full = typer.main.get_command(app)

    def shape(cmd):
        subs = getattr(cmd, "commands", None)
        opts = sorted(o for p in cmd.params for o in p.opts)
        return opts, {n: shape(c) for n, c in subs.items()} if subs is not None else None

    for name in full.commands:  # a module may register several (act: cancel, flatten)
        slim = _command_for([name, "--json"])
        assert set(slim.commands) < set(full.commands), name  # the slim app, not the whole
        assert shape(slim.commands[name]) == shape(full.commands[name]), name
    assert set(_command_for(["--help"]).commands) == set(full.commands)
    assert set(_command_for(["nosuchcommand"]).commands) == set(full.commands)


def test_help_shows_option_names_not_type_placeholders():
    for args in (["sim", "serve"], ["symbols", "show"], ["reconcile"], ["throttle", "stats"]):
        r = _console(*args, "--help")
        assert r.returncode == 0
        assert "<" not in r.stdout.replace("<=", ""), (args, r.stdout)
    assert "--port PORT" in _console("sim", "serve", "--help").stdout


def test_streaming_commands_say_json_lines_in_help():
    for args in (["run"], ["stream", "tail"]):
        assert "JSON lines" in " ".join(_console(*args, "--help").stdout.split())
