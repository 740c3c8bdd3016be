"""Strict TOML configuration: discovery, validation (every error class), secrets, durations."""

from __future__ import annotations

import contextlib
import dataclasses
import tomllib
import typing
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqd_cli import durations
from mqd_cli.config import loading as cfg_loading
from mqd_cli.config.fields import Secret
from mqd_cli.config.loading import ConfigError, loads
from mqd_cli.config.settings import Settings
from mqd_cli.durations import parse_duration
from mqd_cli.errors import ExitCode

ROOT = Path(__file__).resolve().parents[1]


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads(text)
    assert info.value.exit_code == ExitCode.USAGE
    return info.value.problems


def schema_leaves(cls: type = Settings, prefix: str = "") -> list[tuple[str, Any, dict]]:
    """(dotted path, type, field metadata) of every leaf setting, from the schema itself."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.extend(schema_leaves(tp, f"{prefix}{f.name}."))
        else:
            out.append((f"{prefix}{f.name}", tp, dict(f.metadata)))
    return out


def nest(dotted: str, value: Any) -> dict:
    *tables, key = dotted.split(".")
    doc: dict = {key: value}
    for t in reversed(tables):
        doc = {t: doc}
    return doc


# -- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("250ms", timedelta(milliseconds=250)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_parse_duration_accepts_number_plus_unit(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["90", "1 hour", "-5m", "1w", "", "m", "1h30m", "1e3s"])
def test_parse_duration_rejects_anything_without_a_known_unit(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**7), st.sampled_from(["ms", "s", "m", "h", "d"]))
def test_format_duration_round_trips_through_parse(n, unit):
    td = parse_duration(f"{n}{unit}")
    assert parse_duration(durations.format_duration(td)) == td


# -- the defaults and the example file ------------------------------------------------------------


def test_empty_file_gives_the_built_in_defaults_with_broker_sim():
    loaded = loads("")
    assert loaded.settings == Settings()
    assert loaded.settings.broker == "sim"
    assert loaded.settings.alpaca.key_id.from_env == "APCA_API_KEY_ID"
    assert loaded.settings.alpaca.secret_key.from_env == "APCA_API_SECRET_KEY"


def test_config_example_toml_loads_and_mentions_every_schema_key():
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    loaded = loads(text)
    assert loaded.warnings == ()
    data = tomllib.loads(text)

    def present(dotted: str) -> bool:
        node: Any = data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    missing = [
        dotted
        for dotted, _tp, _meta in schema_leaves()
        if not present(dotted) and f"[{dotted}]" not in text  # empty tables: a comment
    ]
    assert missing == [], f"config.example.toml lacks: {missing}"


def test_rendered_starting_config_loads_to_the_defaults_and_documents_every_key():
    text = cfg_loading.render_commented()
    assert loads(text).settings == Settings()
    lines = text.splitlines()
    for dotted, _tp, meta in schema_leaves():
        assert meta["doc"], f"{dotted} has no documentation"
        assert f"# {meta['doc']}" in lines, f"{dotted}: doc comment missing"


# -- every error class ----------------------------------------------------------------------------


def test_unknown_top_level_key_names_the_nearest_known_key():
    (p,) = problems_of('brokr = "sim"\n')
    assert p.startswith("brokr: unknown key")
    assert "did you mean 'broker'?" in p


def test_unknown_nested_key_names_its_full_toml_path_and_the_nearest_key():
    (p,) = problems_of('[protections.stoploss_guard]\nlookbak = "1h"\n')
    assert p.startswith("protections.stoploss_guard.lookbak: unknown key")
    assert "did you mean 'protections.stoploss_guard.lookback'?" in p


def test_unknown_table_is_reported():
    (p,) = problems_of("[notfiy.discord]\nusername = 'x'\n")
    assert p.startswith("notfiy: unknown key")
    assert "'notify'" in p


def test_wrong_type_states_expected_and_given_value():
    (p,) = problems_of("[risk]\nmax_open_orders = 3.5\n")
    assert p == "risk.max_open_orders: expected an integer, got 3.5"


def test_boolean_is_not_accepted_as_a_number_nor_a_number_as_boolean():
    ps = problems_of("[risk]\nmax_open_orders = true\ncheck_buying_power = 1\n")
    assert any(p.startswith("risk.max_open_orders: expected an integer") for p in ps)
    assert any(p.startswith("risk.check_buying_power: expected true or false") for p in ps)


def test_bad_duration_names_the_accepted_forms():
    (p,) = problems_of('[alpaca]\ntimeout = "10 minutes"\n')
    assert p.startswith("alpaca.timeout: expected a duration string like '90s'")
    assert "'10 minutes'" in p


def test_duration_given_as_a_bare_number_is_refused():
    (p,) = problems_of("[store]\nbusy_timeout = 10\n")
    assert p.startswith("store.busy_timeout: expected a duration")


def test_negative_number_is_out_of_range():
    (p,) = problems_of("[throttle]\nsafety_margin = -0.1\n")
    assert p == "throttle.safety_margin: must be at least 0.0, got -0.1"


def test_number_above_its_maximum_is_out_of_range():
    (p,) = problems_of("[protections.max_drawdown]\nmax_drawdown = 1.5\n")
    assert p == "protections.max_drawdown.max_drawdown: must be at most 1.0, got 1.5"


def test_duration_above_its_maximum_is_out_of_range():
    (p,) = problems_of('[alpaca]\ntimeout = "2h"\n')
    assert p == "alpaca.timeout: must be at most 5m, got '2h'"


def test_negative_money_is_out_of_range():
    (p,) = problems_of('[risk]\nmax_order_notional = "-5"\n')
    assert p.startswith("risk.max_order_notional: must be at least 0")


def test_choice_outside_the_allowed_values_suggests_the_nearest():
    (p,) = problems_of('broker = "alpacca"\n')
    assert p.startswith("broker: expected one of 'sim', 'alpaca', got 'alpacca'")
    assert "did you mean 'alpaca'?" in p


def test_list_item_of_the_wrong_type_names_its_index():
    (p,) = problems_of('[strategy]\nsymbols = ["AAPL", 7]\n')
    assert p == "strategy.symbols[1]: expected a string, got 7"


def test_scalar_where_a_table_belongs_is_reported():
    (p,) = problems_of("alpaca = 5\n")
    assert p.startswith("alpaca: expected a table")


def test_nested_named_table_values_are_validated():
    ps = problems_of('[throttle.limits.polygon]\nlimit = -1\nwindow = "1x"\nburst = 3\n')
    assert any(p.startswith("throttle.limits.polygon.limit: must be at least") for p in ps)
    assert any(p.startswith("throttle.limits.polygon.window: expected a duration") for p in ps)
    assert any(p.startswith("throttle.limits.polygon.burst: unknown key") for p in ps)


def test_toml_syntax_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('broker = "sim"\n[risk\nmax_open_orders = 3\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        cfg_loading.load(path)
    (p,) = info.value.problems
    assert str(path) in p
    assert "TOML syntax error" in p
    assert "line 2" in p and "column" in p


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        cfg_loading.load(tmp_path / "nope.toml")


def test_every_problem_is_reported_at_once_one_line_each(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        'brokr = "sim"\n'
        '[alpaca]\ntimeout = "soon"\n'
        '[risk]\nmax_open_orders = -1\nmax_order_notional = "lots"\n'
        '[protections.cooldown]\nstop_duraton = "1h"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        cfg_loading.load(path)
    problems = info.value.problems
    assert len(problems) == 5
    assert all("\n" not in p and p.startswith(f"{path}: ") for p in problems)
    assert info.value.lines() == problems


# -- hypothesis: values of the wrong type or range are refused with their path ------------------

LEAVES = schema_leaves()

_not_str = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2)
)
_text = st.text(alphabet="abcxyz 01-_:", max_size=12)


def _bad_values(tp: Any) -> st.SearchStrategy:
    origin = typing.get_origin(tp)
    if tp is bool:
        return st.one_of(st.integers(), _text, st.floats(allow_nan=False))
    if tp is int:
        return st.one_of(
            st.booleans(),
            _text,
            st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)),
        )
    if tp is float:
        return st.one_of(st.booleans(), _text, st.lists(st.integers(), max_size=2))
    if tp is Decimal:
        return st.one_of(
            st.booleans(),
            st.lists(st.integers(), max_size=2),
            st.text(alphabet="abcxyz -_", min_size=1, max_size=8),
        )
    if tp is timedelta:
        return st.one_of(
            st.integers(),
            st.booleans(),
            st.floats(allow_nan=False),
            _text.filter(lambda s: not durations._DURATION_RE.match(s)),
        )
    if tp in (str, Secret):
        return _not_str
    if origin is Literal:
        return st.one_of(_text.filter(lambda s: s not in typing.get_args(tp)), st.integers())
    if origin is list:
        return st.one_of(st.integers(), _text, st.lists(st.integers(), min_size=1, max_size=3))
    if origin is dict:
        return st.one_of(st.integers(), _text, st.lists(st.integers(), max_size=2))
    raise AssertionError(f"no bad-value strategy for {tp!r}")


@st.composite
def bad_assignment(draw):
    dotted, tp, _meta = draw(st.sampled_from(LEAVES))
    # a dict of Any takes any table; only non-tables are wrong there
    return dotted, draw(_bad_values(tp))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(bad_assignment())
def test_any_wrongly_typed_value_is_refused_with_its_toml_path(assignment):
    dotted, value = assignment
    text = tomli_w.dumps(nest(dotted, value))
    problems = problems_of(text)
    assert any(p.startswith(f"{dotted}") for p in problems), problems
    assert all("\n" not in p for p in problems)


BOUNDED = [(d, tp, m) for d, tp, m in LEAVES if m.get("min") is not None]


@settings(max_examples=150)
@given(st.sampled_from(BOUNDED), st.integers(min_value=1, max_value=10**6))
def test_any_value_below_its_minimum_is_refused(leaf, excess):
    dotted, tp, meta = leaf
    lo = meta["min"]
    if tp is timedelta:
        below = lo - timedelta(milliseconds=excess)
        if below < timedelta(0):
            value: Any = "-1s"  # no unit form for negative durations: a bad duration
        else:
            value = f"{int(below.total_seconds() * 1000)}ms"
    elif tp is Decimal:
        value = str(Decimal(lo) - Decimal(excess) / 100)
    elif tp is int:
        value = int(lo) - excess
    else:
        value = float(lo) - excess / 100
    problems = problems_of(tomli_w.dumps(nest(dotted, value)))
    assert any(p.startswith(f"{dotted}: ") for p in problems), problems


@settings(max_examples=100)
@given(
    st.sampled_from([(d, tp, m) for d, tp, m in LEAVES if m.get("max") is not None]),
    st.integers(min_value=1, max_value=10**6),
)
def test_any_value_above_its_maximum_is_refused(leaf, excess):
    dotted, tp, meta = leaf
    hi = meta["max"]
    if tp is timedelta:
        value: Any = f"{int(hi.total_seconds() * 1000) + excess}ms"
    elif tp is Decimal:
        value = str(Decimal(hi) + excess)
    elif tp is int:
        value = int(hi) + excess
    else:
        value = float(hi) + excess
    problems = problems_of(tomli_w.dumps(nest(dotted, value)))
    assert any(p.startswith(f"{dotted}: must be at most") for p in problems), problems


@given(st.text(min_size=1, max_size=40))
def test_arbitrary_text_never_raises_anything_but_config_error(text):
    with contextlib.suppress(ConfigError):
        loads(text)


# -- secrets ------------------------------------------------------------------------------------


def test_env_reference_reads_the_named_variable(monkeypatch):
    monkeypatch.setenv("MY_KEY_VAR", "PKFROMENV123")
    s = loads('[alpaca]\nkey_id = "env:MY_KEY_VAR"\n').settings
    assert s.alpaca.key_id.reveal() == "PKFROMENV123"
    assert s.alpaca.key_id.describe() == "env:MY_KEY_VAR (set)"


def test_secret_of_digits_stays_a_string():
    s = loads('[alpaca]\nkey_id = "0012345"\n').settings
    assert s.alpaca.key_id.reveal() == "0012345"
    assert isinstance(s.alpaca.key_id.reveal(), str)


def test_secret_given_as_a_number_is_refused_without_echoing_it():
    (p,) = problems_of("[alpaca]\nsecret_key = 987654321\n")
    assert p.startswith("alpaca.secret_key: expected a string")
    assert "987654321" not in p


def test_env_prefix_without_a_variable_name_is_refused():
    (p,) = problems_of('[alpaca]\nkey_id = "env:"\n')
    assert p == "alpaca.key_id: 'env:' must be followed by a variable name"


def test_secret_str_and_repr_never_show_the_value():
    secret = Secret("LITERALVALUE999")
    assert "LITERALVALUE999" not in str(secret)
    assert "LITERALVALUE999" not in repr(secret)
    assert "LITERALVALUE999" not in secret.describe()
    assert "LITERALVALUE999" not in repr(loads('[alpaca]\nkey_id = "LITERALVALUE999"\n'))


def test_literal_secret_in_the_file_loads_with_a_warning():
    loaded = loads(
        '[alpaca]\nkey_id = "PKLITERAL77"\n[notify.discord]\nwebhook_url = "https://x/y"\n'
    )
    assert loaded.settings.alpaca.key_id.reveal() == "PKLITERAL77"
    assert any(w.startswith("alpaca.key_id holds a literal secret") for w in loaded.warnings)
    assert any(w.startswith("notify.discord.webhook_url") for w in loaded.warnings)
    assert all("PKLITERAL77" not in w for w in loaded.warnings)


def test_redact_scrubs_env_and_literal_secrets(monkeypatch):
    monkeypatch.setenv("APCA_API_SECRET_KEY", "sk-ENVSECRET-4242")
    loads('[alpaca]\nkey_id = "PKLIT-REDACT-1"\n')
    text = "boom sk-ENVSECRET-4242 and PKLIT-REDACT-1 here"
    assert cfg_loading.redact(text) == "boom *** and *** here"


def test_to_toml_value_writes_only_env_references_for_secrets():
    s = loads('[alpaca]\nkey_id = "PKLIT-NOT-WRITTEN"\n').settings
    assert cfg_loading.to_toml_value(s.alpaca.key_id) == ""
    assert cfg_loading.to_toml_value(Settings().alpaca.key_id) == "env:APCA_API_KEY_ID"


# -- discovery ----------------------------------------------------------------------------------


def test_discovery_prefers_cli_path_then_env_then_user_config_dir(tmp_path, monkeypatch):
    user = cfg_loading.default_config_path()
    user.parent.mkdir(parents=True)
    user.write_text('broker = "sim"\n')
    env_file = tmp_path / "env.toml"
    env_file.write_text("")
    cli_file = tmp_path / "cli.toml"
    cli_file.write_text("")
    assert cfg_loading.discover(None) == (user, "user config dir")
    monkeypatch.setenv("MQD_CONFIG", str(env_file))
    assert cfg_loading.discover(None) == (env_file, "$MQD_CONFIG")
    assert cfg_loading.discover(cli_file) == (cli_file, "--config")


def test_no_config_anywhere_means_built_in_defaults():
    assert cfg_loading.discover(None) == (None, "defaults")
    loaded = cfg_loading.load(None)
    assert loaded.path is None and loaded.origin == "defaults"
    assert loaded.settings == Settings()


def test_mqd_config_pointing_at_a_missing_file_is_an_error_not_the_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("MQD_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"from \$MQD_CONFIG\) does not exist"):
        cfg_loading.load(None)


def test_sources_distinguish_file_env_and_default():
    loaded = loads('broker = "alpaca"\n[alpaca]\nsecret_key = "LITERAL-SRC-1"\n')
    s = loaded.settings
    assert loaded.source_of("broker", s.broker) == "file"
    assert loaded.source_of("alpaca.key_id", s.alpaca.key_id) == "env"
    assert loaded.source_of("alpaca.secret_key", s.alpaca.secret_key) == "file"
    assert loaded.source_of("risk.max_open_orders", s.risk.max_open_orders) == "default"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[strategy]\nname = "sma_crosss"\n', "unknown strategy 'sma_crosss'"),
        ('[strategy]\nname = "sma_cross"\n[strategy.params]\nfastt = 3\n', "unknown parameter"),
        (
            '[strategy]\nname = "sma_cross"\n[strategy.params]\nfast = 30\nslow = 10\n',
            "must be less than strategy.params.slow",
        ),
    ],
)
def test_config_check_and_doctor_refuse_the_strategy_errors_run_refuses(
    mqd, config_file, text, says
):
    cfg = config_file(text)
    r = mqd("config", "check", "--config", cfg, expect=2)
    assert says in r.stderr
    doc = mqd("config", "check", "--config", cfg, "--json", expect=2).json
    assert doc["valid"] is False and says in doc["problems"][0]
    checks = {
        c["name"]: c for c in mqd("doctor", "--config", cfg, "--json", expect=1).json["checks"]
    }
    assert checks["config"]["status"] == "fail" and says in checks["config"]["detail"]
    # and run refuses the same configuration with the same words
    assert says in mqd("run", "--config", cfg, "--duration", "1s", expect=2).stderr
