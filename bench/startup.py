"""Start-up cost of the CLI against its floor (importing typer) and its ceiling (alpaca-py).

Runs each command as a fresh subprocess many times and prints medians and ratios. Targets:
every mqd command at most 1.5x ``python -c "import typer"`` and at least 4x cheaper than
``python -c "import alpaca.trading.client"``. Bytecode caching is on (in a temporary prefix), as
for an installed program, whatever ``PYTHONDONTWRITEBYTECODE`` says.

Usage: .venv/bin/python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

PY = sys.executable
MQD = [PY, "-m", "mqd_cli"]

CASES = {
    "import typer": [PY, "-c", "import typer"],
    "import alpaca.trading.client": [PY, "-c", "import alpaca.trading.client"],
    "mqd --help": [*MQD, "--help"],
    "mqd config show --json": [*MQD, "config", "show", "--json"],
    "mqd --version": [*MQD, "--version"],
}
MQD_CASES = ("mqd --help", "mqd config show --json", "mqd --version")


def wall(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25, help="runs per command (default 25)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "HOME": home,
            "XDG_CONFIG_HOME": f"{home}/.config",
            "XDG_DATA_HOME": f"{home}/.local/share",
        }
        env.pop("MQD_CONFIG", None)
        # Measure an installed program: bytecode cached (as after the first run), in a private
        # prefix so the tree stays clean and every case is treated alike.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = f"{home}/pycache"
        for cmd in CASES.values():  # warm the bytecode caches once
            wall(cmd, env)
        samples: dict[str, list[float]] = {name: [] for name in CASES}
        for _ in range(args.runs):  # interleaved so drift hits every case alike
            for name, cmd in CASES.items():
                samples[name].append(wall(cmd, env))
    med = {name: statistics.median(s) for name, s in samples.items()}
    typer_t, alpaca_t = med["import typer"], med["import alpaca.trading.client"]
    print(f"median wall time over {args.runs} runs (python {sys.version.split()[0]})")
    for name in CASES:
        print(f"  {name:<30} {med[name] * 1000:8.1f} ms")
    print()
    print(f"  {'command':<30} {'x import typer':>15} {'alpaca / cmd':>14}  target")
    ok = True
    for name in MQD_CASES:
        vs_typer = med[name] / typer_t
        vs_alpaca = alpaca_t / med[name]
        hit = vs_typer <= 1.5 and vs_alpaca >= 4.0
        ok &= hit
        print(f"  {name:<30} {vs_typer:14.2f}x {vs_alpaca:13.2f}x  {'met' if hit else 'MISSED'}")
    print()
    print("targets: <= 1.5x import typer, >= 4x cheaper than import alpaca.trading.client")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
