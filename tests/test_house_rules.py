"""House rules that keep the codebase honest, checked on the source itself.

Each scan walks every module of ``mqd_cli`` (modules added later are covered automatically).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mqd_cli.app import walk_commands

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "mqd_cli"
MODULES = sorted(PKG.rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


# -- one clock -------------------------------------------------------------------------------------

# (module, function): reading the system time. Only mqd_cli/clock.py may do it.
SYSTEM_TIME = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "monotonic"),
    ("time", "monotonic_ns"),
}


def system_time_reads(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            owner = node.value
            name = (
                owner.id
                if isinstance(owner, ast.Name)
                else owner.attr
                if isinstance(owner, ast.Attribute)
                else None
            )
            if (name, node.attr) in SYSTEM_TIME:
                found.append(f"line {node.lineno}: {name}.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module in ("time", "datetime"):
            for alias in node.names:
                if (node.module, alias.name) in SYSTEM_TIME:
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
    return found


def test_the_scan_recognises_every_way_of_reading_the_system_time():
    src = (
        "import time, datetime as dt\nfrom datetime import datetime, date\n"
        "from time import monotonic\n"
        "a = datetime.now(); b = dt.datetime.utcnow(); c = date.today(); d = time.time()\n"
        "e = time.monotonic()\n"
    )
    assert len(system_time_reads(ast.parse(src))) == 6


@pytest.mark.parametrize(
    "path", [p for p in MODULES if p.name != "clock.py" or p.parent != PKG], ids=rel
)
def test_only_clock_py_reads_the_system_time(path):
    assert system_time_reads(parse(path)) == [], (
        f"{rel(path)} reads the system time; take a Clock (mqd_cli/clock.py) instead"
    )


# -- one store -------------------------------------------------------------------------------------

SQL_MARKERS = ("SELECT ", "INSERT INTO", "CREATE TABLE", "UPDATE ", "DELETE FROM")


def sql_literals(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and any(m in node.value for m in SQL_MARKERS)
        ):
            found.append(f"line {node.lineno}: {node.value.strip()[:60]!r}")
    return found


@pytest.mark.parametrize("path", [p for p in MODULES if (PKG / "store") not in p.parents], ids=rel)
def test_every_sql_statement_lives_under_mqd_cli_store(path):
    assert sql_literals(parse(path)) == [], f"{rel(path)} holds SQL; move it to mqd_cli/store/"


# -- core modules stay free of the CLI stack -------------------------------------------------------

CLI_ONLY = {"typer", "rich", "click"}


def is_core(path: Path) -> bool:
    r = path.relative_to(PKG).as_posix()
    return not (r.startswith("commands/") or r in ("app.py", "__main__.py"))


def imported_roots(tree: ast.Module) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", [p for p in MODULES if is_core(p)], ids=rel)
def test_core_modules_never_import_typer_or_rich(path):
    assert imported_roots(parse(path)) & CLI_ONLY == set(), (
        f"{rel(path)} imports the CLI stack; core modules return data, commands render it"
    )


# -- imports point down ----------------------------------------------------------------------------
#
# Every import counts: at module level, inside functions and under TYPE_CHECKING alike, since
# each is an arrow in the architecture (ARCHITECTURE.md, "Import rules").


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


NAMES = {module_name(p): p for p in MODULES}


def resolve(name: str) -> str | None:
    while name and name not in NAMES:
        name = name.rpartition(".")[0]
    return name or None


def mqd_imports(tree: ast.Module) -> set[str]:
    """The mqd_cli modules a module imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from pkg import mod`` is an arrow to pkg.mod; ``from mod import name`` to mod
            subs = [f"{node.module}.{a.name}" for a in node.names]
            targets = [t if t in NAMES else node.module for t in subs]
        else:
            continue
        for t in targets:
            if t.split(".")[0] == "mqd_cli" and (r := resolve(t)) and r != "mqd_cli":
                found.add(r)
    return found


GRAPH = {name: mqd_imports(parse(path)) - {name} for name, path in NAMES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_the_cycle_finder_finds_a_cycle_and_passes_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_import_scan_sees_function_level_and_type_checking_imports():
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from mqd_cli.factory import Services\n"
        "def f():\n    from mqd_cli.orders import tracker\n"
    )
    assert mqd_imports(tree) == {"mqd_cli.factory", "mqd_cli.orders.tracker"}


def test_there_are_no_import_cycles():
    assert cycles(GRAPH) == []


def test_the_store_imports_no_domain_module():
    bad = {
        (m, i)
        for m, deps in GRAPH.items()
        if m.startswith("mqd_cli.store")
        for i in deps
        if not i.startswith("mqd_cli.store") and i != "mqd_cli.errors"
    }
    assert bad == set(), "the store takes and returns rows; build domain objects above it"


# Who may import the factory: the CLI, and doctor (which checks what the factory builds).
FACTORY_USERS = ("mqd_cli.app", "mqd_cli.__main__", "mqd_cli.commands", "mqd_cli.doctor")


def test_only_the_cli_imports_the_factory():
    bad = sorted(
        m
        for m, deps in GRAPH.items()
        if "mqd_cli.factory" in deps and not m.startswith(FACTORY_USERS)
    )
    assert bad == [], "adapters and core take their collaborators; the factory builds them"


def test_core_never_imports_the_commands():
    bad = sorted(
        (m, i)
        for m, deps in GRAPH.items()
        if not m.startswith(("mqd_cli.commands", "mqd_cli.app", "mqd_cli.__main__"))
        for i in deps
        if i.startswith(("mqd_cli.commands", "mqd_cli.app"))
    )
    assert bad == []


def test_only_the_alpaca_adapter_imports_alpaca_py():
    users = sorted(rel(p) for p in MODULES if "alpaca" in imported_roots(parse(p)))
    assert users == ["mqd_cli/brokers/alpaca.py"]


LOW = ("mqd_cli.throttle", "mqd_cli.wire", "mqd_cli.model", "mqd_cli.clock", "mqd_cli.errors")
HIGH = ("mqd_cli.brokers", "mqd_cli.trading", "mqd_cli.orders", "mqd_cli.reconcile")


def test_low_layers_never_import_high_ones():
    bad = sorted(
        (m, i) for m, deps in GRAPH.items() if m.startswith(LOW) for i in deps if i.startswith(HIGH)
    )
    assert bad == [], "throttle, wire, model, clock and errors sit below brokers and trading"


# -- heavy dependencies are imported inside the functions that need them ---------------------------

HEAVY = {"alpaca", "pandas", "websockets", "httpx", "starlette", "uvicorn"}


def module_level_imports(tree: ast.Module) -> set[str]:
    roots: set[str] = set()

    def visit(stmts):
        for node in stmts:
            if isinstance(node, ast.Import):
                roots.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots.add(node.module.split(".")[0])
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)

    visit(tree.body)
    return roots


@pytest.mark.parametrize("path", MODULES, ids=rel)
def test_heavy_dependencies_are_never_imported_at_module_level(path):
    assert module_level_imports(parse(path)) & HEAVY == set(), (
        f"{rel(path)} imports {HEAVY & module_level_imports(parse(path))} at module level; "
        "import inside the function that needs it"
    )


# -- what a command imports at run time ------------------------------------------------------------

PROBE = """
import json, os, sys
sys.argv = ["mqd", *json.loads(sys.argv[1])]
from mqd_cli.app import main
try:
    main()
except SystemExit:
    pass
with open(os.environ["MQD_PROBE_OUT"], "w") as f:
    json.dump(sorted(sys.modules), f)
"""
FORBIDDEN = ("alpaca", "pandas", "websockets", "httpx")


@pytest.mark.parametrize(
    "args", [["--help"], ["config", "show"], ["protections", "status"]], ids=" ".join
)
def test_light_commands_never_import_alpaca_pandas_websockets_or_httpx(
    args, tmp_path, isolated_env
):
    out = tmp_path / "modules.json"
    config = tmp_path / "c.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "mqd.db"}"\n')
    env = {
        **os.environ,
        "MQD_PROBE_OUT": str(out),
        "MQD_CONFIG": str(config),
        "HOME": str(isolated_env),
        "XDG_CONFIG_HOME": str(isolated_env / ".config"),
        "XDG_DATA_HOME": str(isolated_env / ".local" / "share"),
    }
    r = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.exists(), r.stderr
    modules = json.loads(out.read_text())
    assert "mqd_cli.app" in modules
    heavy = sorted(m for m in modules if m.split(".")[0] in FORBIDDEN)
    assert heavy == [], f"mqd {' '.join(args)} imported {heavy[:8]}"


# -- docs cannot drift -----------------------------------------------------------------------------


def test_every_command_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [
        f"mqd {path}" for path, _c, leaf in walk_commands() if leaf and f"mqd {path}" not in readme
    ]
    assert missing == [], f"README.md does not document: {missing}"


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    line = next(x for x in ci.splitlines() if x.startswith("TEST_COMMAND="))
    command = line.split("=", 1)[1].strip().strip('"')
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = readme.split("```bash")
    assert len(blocks) >= 3, "README.md must open with the two set-up commands"
    first_two = [b.split("```")[0].strip() for b in blocks[1:3]]
    assert first_two[1] == command


# -- every error speaks with a hint ----------------------------------------------------------------

_ERRORS = {"UsageError", "StateError", "BrokerError", "ConfigError"}


def test_every_usage_state_broker_and_config_error_raised_has_a_hint():
    missing = []
    for path in MODULES:
        for node in ast.walk(parse(path)):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name in _ERRORS:
                given = len(node.args) + sum(1 for k in node.keywords if k.arg == "hint")
                if given < 2:
                    missing.append(f"{rel(path)}:{node.lineno}")
    assert missing == [], "error:/hint: — these raise without a hint"
