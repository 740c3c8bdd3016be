"""The README's benchmark table is printed from bench/results/*.json, never typed by hand."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return module


report = _module("report")
results = _module("_results")


def test_the_readme_shows_exactly_the_table_the_last_benchmark_runs_measured(capsys):
    code = report.main(["--check"])
    assert code == 0, capsys.readouterr().out


def test_every_results_file_names_its_bench_and_every_row_has_a_result():
    docs = report.load()
    assert docs, "bench/results/ holds no results"
    for doc in docs:
        assert (ROOT / "bench" / f"{doc['bench']}.py").is_file()
        assert doc["measured_at"] and doc["machine"]["cpus"]
        for row in doc["rows"]:
            assert row["measure"] and row["result"]


def test_the_table_follows_the_bench_order_and_says_whether_each_target_was_met(tmp_path):
    Row = results.Row
    results.save(
        "backtest",
        [Row("50 symbols", "3.7x", "16.6k bars/s", ">= 5x", False)],
        {},
        directory=tmp_path,
    )
    results.save(
        "startup",
        [Row("a | b", "1.2x", target="<= 1.5x", met=True), Row("c", "d")],
        {},
        directory=tmp_path,
    )
    text = report.table(report.load(tmp_path))
    lines = text.splitlines()
    assert lines[0].startswith("| bench | measure | result | peer, same run | target |")
    assert lines[2].startswith("| `startup.py` | a \\| b | 1.2x |  | <= 1.5x (met) |")
    assert lines[3].startswith("|  | c | d |  |  |  |")
    assert lines[4].startswith(
        "| `backtest.py` | 50 symbols | 3.7x | 16.6k bars/s | >= 5x (not met) |"
    )


def test_a_file_that_is_not_a_benchmark_result_is_refused_with_a_hint(tmp_path):
    (tmp_path / "stream.json").write_text(json.dumps({"bench": "other", "rows": []}))
    with pytest.raises(SystemExit) as exc:
        report.load(tmp_path)
    assert "error:" in str(exc.value) and "hint: rerun bench/stream.py" in str(exc.value)


def test_a_stale_readme_table_fails_the_check_and_write_fixes_it(tmp_path, monkeypatch, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{report.START}\n| old |\n{report.END}\n\nafter\n")
    monkeypatch.setattr(report, "README", readme)
    assert report.main(["--check"]) == 1
    assert "hint: .venv/bin/python bench/report.py --write" in capsys.readouterr().out
    assert report.main(["--write"]) == 0
    assert report.main(["--check"]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n\n") and text.endswith(f"{report.END}\n\nafter\n")
    assert "| old |" not in text
