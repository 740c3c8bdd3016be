"""Start-up cost of the CLI against its floor (importing typer) and its ceiling (alpaca-py).

Runs each command as a fresh process, through the installed console script (the ``mqd`` that
``pip install -e .`` put next to the interpreter), many times, interleaved so that drift in the
machine's load hits every case alike, and prints median wall times and ratios. Targets: every
mqd command at most 1.5x ``python -c "import typer"`` and at least 4x cheaper than
``python -c "import alpaca.trading.client"``. Bytecode caching is on (in a temporary prefix), as
for an installed program, whatever ``PYTHONDONTWRITEBYTECODE`` says.

``protections status`` and ``throttle stats`` read a store: they run in a temporary directory
whose config (``--config``) puts the store there; the store is created once before timing, and
every timed run must exit 0. The median CPU time (user + sys) of each case is shown too: on a
loaded machine it is steadier than wall time.

Usage: .venv/bin/python bench/startup.py [--runs N] [--json] [--save]

``--save`` writes the README's rows to ``bench/results/startup.json`` (``bench/report.py``
prints the table from it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
TYPER = "import typer"
ALPACA = "import alpaca.trading.client"
COMMANDS = (  # (name, arguments); {config} is the benchmark's config file
    ("mqd --help", ["--help"]),
    ("mqd --version", ["--version"]),
    ("mqd config show --json", ["config", "show", "--json"]),
    ("mqd protections status", ["protections", "status", "--config", "{config}"]),
    ("mqd throttle stats", ["throttle", "stats", "--config", "{config}"]),
)
TARGET_VS_TYPER = 1.5
TARGET_VS_ALPACA = 4.0


def console_script() -> list[str]:
    """The installed ``mqd``, as an operator runs it; ``python -m mqd_cli`` when it is absent."""
    script = Path(sys.executable).parent / "mqd"
    if script.exists():
        return [str(script)]
    print(
        f"warning: no console script at {script} (run `pip install -e .`); "
        "timing `python -m mqd_cli` instead",
        file=sys.stderr,
    )
    return [PY, "-m", "mqd_cli"]


def cases(mqd: list[str], config: Path) -> dict[str, list[str]]:
    runs = {
        TYPER: [PY, "-c", TYPER],
        ALPACA: [PY, "-c", ALPACA],
    }
    for name, args in COMMANDS:
        runs[name] = [*mqd, *(a.format(config=config) for a in args)]
    return runs


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """One run: (wall seconds, CPU seconds of the child). A failing command stops the bench."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr.decode(errors='replace')}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="mqd-bench-startup-") as tmp:
        home = Path(tmp)
        config = home / "mqd.toml"
        config.write_text(f'[store]\npath = "{home / "mqd.db"}"\n', encoding="utf-8")
        env = {
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
        }
        env.pop("MQD_CONFIG", None)
        # Measure an installed program: bytecode cached (as after the first run), in a private
        # prefix so the tree stays clean and every case is treated alike.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
        mqd = console_script()
        todo = cases(mqd, config)
        for cmd in todo.values():  # warm the bytecode caches; creates the store
            run(cmd, env, home)
        wall: dict[str, list[float]] = {name: [] for name in todo}
        cpu: dict[str, list[float]] = {name: [] for name in todo}
        for _ in range(runs):  # interleaved so drift hits every case alike
            for name, cmd in todo.items():
                w, c = run(cmd, env, home)
                wall[name].append(w)
                cpu[name].append(c)
    med = {name: statistics.median(s) for name, s in wall.items()}
    med_cpu = {name: statistics.median(s) for name, s in cpu.items()}
    rows = []
    for name in todo:
        vs_typer = med[name] / med[TYPER]
        row = {
            "case": name,
            "median_ms": round(med[name] * 1000, 1),
            "cpu_ms": round(med_cpu[name] * 1000, 1),
            "vs_typer": round(vs_typer, 2),
            "cpu_vs_typer": round(med_cpu[name] / med_cpu[TYPER], 2),
        }
        if name.startswith("mqd "):
            row["alpaca_over_cmd"] = round(med[ALPACA] / med[name], 2)
            row["met"] = vs_typer <= TARGET_VS_TYPER and row["alpaca_over_cmd"] >= TARGET_VS_ALPACA
        rows.append(row)
    return {
        "runs": runs,
        "python": sys.version.split()[0],
        "entry": " ".join(mqd),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "targets": {"vs_typer_max": TARGET_VS_TYPER, "alpaca_over_cmd_min": TARGET_VS_ALPACA},
        "rows": rows,
    }


def report(result: dict) -> None:
    print(
        f"median over {result['runs']} runs (python {result['python']}, {result['entry']}, "
        f"load average {' '.join(map(str, result['load_average']))})"
    )
    head = f"  {'case':<30} {'wall ms':>8} {'x typer':>8} {'cpu ms':>8} {'x typer':>8}"
    print(head + f" {'alpaca/cmd':>11}  target")
    for row in result["rows"]:
        line = (
            f"  {row['case']:<30} {row['median_ms']:8.1f} {row['vs_typer']:7.2f}x"
            f" {row['cpu_ms']:8.1f} {row['cpu_vs_typer']:7.2f}x"
        )
        if "met" in row:
            line += f" {row['alpaca_over_cmd']:10.2f}x  {'met' if row['met'] else 'MISSED'}"
        print(line)
    print()
    print(
        f"targets: wall <= {TARGET_VS_TYPER}x import typer, >= {TARGET_VS_ALPACA}x cheaper than"
        " import alpaca.trading.client"
    )


def save_results(result: dict) -> None:
    """The README's rows (``bench/results/startup.json``): each command against ``import
    typer`` measured in the same run, and the slowest against alpaca-py."""
    from _results import Row, save

    rows = {row["case"]: row for row in result["rows"]}
    typer_ms, alpaca_ms = rows[TYPER]["median_ms"], rows[ALPACA]["median_ms"]
    out = [
        Row(
            f"`{name}` (installed script) vs `import typer`",
            f"{rows[name]['vs_typer']:.2f}x ({rows[name]['median_ms']:.0f} ms)",
            peer=f"{typer_ms:.0f} ms",
            target=f"<= {TARGET_VS_TYPER}x",
            met=rows[name]["vs_typer"] <= TARGET_VS_TYPER,
        )
        for name, _args in COMMANDS
    ]
    slowest = max((rows[name] for name, _args in COMMANDS), key=lambda r: r["median_ms"])
    out.append(
        Row(
            f"`import alpaca.trading.client` vs the slowest (`{slowest['case']}`)",
            f"{slowest['alpaca_over_cmd']:.1f}x cheaper",
            peer=f"{alpaca_ms:.0f} ms",
            target=f">= {TARGET_VS_ALPACA}x",
            met=slowest["alpaca_over_cmd"] >= TARGET_VS_ALPACA,
        )
    )
    save("startup", out, result)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25, help="runs per case (default 25)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document")
    parser.add_argument(
        "--save", action="store_true", help="write the README's rows to bench/results/startup.json"
    )
    args = parser.parse_args()
    result = measure(args.runs)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    if args.save:
        save_results(result)
    return 0 if all(row.get("met", True) for row in result["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
