"""Print the README's benchmark table from what the benchmarks measured last.

Each benchmark writes ``bench/results/NAME.json`` at the end of a complete run (see
``bench/_results.py``). This script turns those files into the Markdown table of the README's
"Benchmarks" section, so no figure there is typed by hand:

    .venv/bin/python bench/report.py            # print the table
    .venv/bin/python bench/report.py --write    # put it in README.md, between the markers
    .venv/bin/python bench/report.py --check    # exit 1 when README.md shows another table

``tests/test_bench_report.py`` runs the check, so a benchmark run that changed a figure fails
the tests until the README shows it.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
START = "<!-- bench-table: written by bench/report.py from bench/results/*.json -->"
END = "<!-- /bench-table -->"
# The order of the table; a results file of another name comes after these.
ORDER = (
    "startup",
    "emulator",
    "throttle",
    "orders",
    "stream",
    "symbols",
    "protections",
    "backtest",
    "torture",
)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def load(directory: Path = RESULTS) -> list[dict]:
    docs = []
    for path in sorted(directory.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("bench") != path.stem or not isinstance(doc.get("rows"), list):
            raise SystemExit(
                f"error: {path} is not a benchmark result\nhint: rerun bench/{path.stem}.py"
            )
        docs.append(doc)
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(docs, key=lambda d: (rank.get(d["bench"], len(ORDER)), d["bench"]))


def table(docs: list[dict]) -> str:
    lines = [
        "| bench | measure | result | peer, same run | target | measured |",
        "|---|---|---|---|---|---|",
    ]
    for doc in docs:
        machine = doc.get("machine", {})
        when = f"{doc['measured_at'][:10]}, load {machine.get('load_1m', '?')}"
        for i, row in enumerate(doc["rows"]):
            target = row.get("target", "")
            met = row.get("met")
            if target and met is not None:
                target = f"{target} ({'met' if met else 'not met'})"
            cells = [
                f"`{doc['bench']}.py`" if i == 0 else "",
                row["measure"],
                row["result"],
                row.get("peer", ""),
                target,
                when if i == 0 else "",
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _split(readme: str) -> tuple[str, str, str]:
    if START not in readme or END not in readme:
        raise SystemExit(
            f"error: README.md has no benchmark table markers\nhint: put {START} and {END} "
            "around the table in the Benchmarks section"
        )
    head, rest = readme.split(START, 1)
    body, tail = rest.split(END, 1)
    return head, body, tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="put the table in README.md")
    mode.add_argument("--check", action="store_true", help="exit 1 if README.md differs")
    args = ap.parse_args(argv)
    text = table(load())
    if not (args.write or args.check):
        sys.stdout.write(text)
        return 0
    readme = README.read_text(encoding="utf-8")
    head, body, tail = _split(readme)
    if args.check:
        if body.strip("\n") == text.strip("\n"):
            return 0
        diff = difflib.unified_diff(
            body.strip("\n").splitlines(),
            text.strip("\n").splitlines(),
            "README.md",
            "results",
            lineterm="",
        )
        print("\n".join(diff))
        print("error: README.md's benchmark table is not what bench/results/ holds")
        print("hint: .venv/bin/python bench/report.py --write")
        return 1
    README.write_text(head + START + "\n" + text + END + tail, encoding="utf-8")
    print(f"README.md: benchmark table written ({len(text.splitlines()) - 2} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
