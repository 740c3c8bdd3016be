"""What a benchmark leaves behind: ``bench/results/NAME.json``, the rows of the README's table.

Every benchmark ends a complete run with :func:`save`: its rows (what was measured, the
result, the peer's figure from the same run, the target) and the raw medians behind them, with
the machine's load. ``bench/report.py`` prints the README's table from these files, and
``tests/test_bench_report.py`` checks that the README shows exactly that table, so a figure in
the README is always the last one a benchmark measured.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Row:
    measure: str
    result: str
    peer: str = ""  # the peer's figure, measured in the same run
    target: str = ""
    met: bool | None = None  # None: no target


def save(bench: str, rows: list[Row], raw: dict[str, Any], *, directory: Path = RESULTS) -> Path:
    """Write ``directory/<bench>.json`` (atomically) and say where."""
    directory.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    doc = {
        "bench": bench,
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["bench/" + Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "load_1m": round(load[0], 2),
            "python": platform.python_version(),
        },
        "rows": [asdict(r) for r in rows],
        "raw": raw,
    }
    path = directory / f"{bench}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    print(f"results: {path} (bench/report.py --write puts them in the README)")
    return path


def ratio(ours: float, theirs: float) -> str:
    """``2.3x``: how many times ``ours`` is ``theirs``."""
    return f"{ours / theirs:.1f}x" if theirs else "-"


def main(argv: list[str]) -> int:
    """``bench/NAME.py --json | .venv/bin/python bench/_results.py NAME``: save a bench's JSON
    document (its ``rows``; everything else is kept as the raw figures)."""
    if len(argv) != 1:
        print("error: usage: bench/NAME.py --json | bench/_results.py NAME", file=sys.stderr)
        return 2
    doc = json.loads(sys.stdin.read())
    fields = set(Row.__dataclass_fields__)
    rows = [Row(**{k: v for k, v in r.items() if k in fields}) for r in doc.get("rows", [])]
    if not rows:
        print("error: the document has no rows\nhint: run the bench with --json", file=sys.stderr)
        return 2
    save(argv[0], rows, {k: v for k, v in doc.items() if k != "rows"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
