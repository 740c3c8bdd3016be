"""The README's command examples that run offline are run, and their output must keep its shape.

A README example is a fenced block of ``$ mqd ...`` lines, each followed by what it printed;
``$ cat FILE`` lines show the files the commands read. Every example whose files are all shown
(or are in the repository, like ``config.example.toml``) and that needs no network or earlier
state is run here in a fresh directory, and its output is compared with the README's line for
line. Numbers are compared too, except on lines that measure the machine (``bars/s``), where
only the shape is kept. So the README cannot drift from the program.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
REPO_FILES = {"config.example.toml"}
# Commands that run offline with no state from an earlier command of the README.
OFFLINE = (("config", "check"), ("backtest", "--synthetic"))
_VOLATILE = re.compile(r"bars/s")


@dataclass
class Example:
    line: int  # where the command is in README.md
    args: list[str]
    output: list[str]
    files: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None

    @property
    def name(self) -> str:
        return f"README.md:{self.line}: mqd {' '.join(self.args)}"


def _examples() -> list[Example]:
    out: list[Example] = []
    lines = README.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("```"):
            i += 1
            continue
        files: dict[str, str] = {}
        current: Example | None = None
        capture: list[str] | None = None
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            text = lines[i]
            if text.startswith("$ "):
                try:
                    words = shlex.split(text[2:], comments=True)
                except ValueError:  # shell we do not model (a line continuation, ...)
                    words = []
                if words[:1] == ["cat"] and len(words) == 2:
                    files[words[1]] = ""
                    capture = []
                    files_key = words[1]
                    current = None
                elif words[:1] == ["mqd"]:
                    current = Example(i + 1, words[1:], [], dict(files))
                    out.append(current)
                    capture = current.output
                    files_key = ""
                elif words == ["echo", "$?"] and current is not None:
                    current.exit_code = int(lines[i + 1])
                    i += 1
                    capture = None
                else:
                    capture = None
            elif capture is not None:
                capture.append(text)
                if current is None and files_key:
                    files[files_key] = "\n".join(capture) + "\n"
            i += 1
        i += 1
    return out


def _runnable(ex: Example) -> bool:
    if tuple(ex.args[:2]) not in OFFLINE or "--config" not in ex.args:
        return False
    path = ex.args[ex.args.index("--config") + 1]
    return path in ex.files or path in REPO_FILES


EXAMPLES = [ex for ex in _examples() if _runnable(ex)]


def _shape(line: str) -> str:
    line = line.rstrip()
    if not _VOLATILE.search(line):
        return line
    # a measured figure: its digits, and the padding that its width moves, are not compared
    return re.sub(r" +", " ", re.sub(r"\d[\d,]*(\.\d+)?", "9", line))


def test_the_readme_has_offline_examples_to_check():
    assert len(EXAMPLES) >= 3, [ex.name for ex in EXAMPLES]


@pytest.mark.parametrize("ex", EXAMPLES, ids=lambda ex: ex.name)
def test_a_readme_example_prints_what_the_readme_shows(ex, tmp_path):
    for name, text in ex.files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    for name in REPO_FILES:
        (tmp_path / name).write_text((ROOT / name).read_text(encoding="utf-8"), encoding="utf-8")
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT), "COLUMNS": "80"}
    env.pop("MQD_CONFIG", None)
    r = subprocess.run(
        [sys.executable, "-m", "mqd_cli", *ex.args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    got = (r.stdout + r.stderr).splitlines()
    if ex.output and ex.output[-1] == "...":  # the README shows the beginning only
        got, want = got[: len(ex.output) - 1], ex.output[:-1]
    else:
        want = ex.output
    assert [_shape(x) for x in got] == [_shape(x) for x in want], ex.name
    if ex.exit_code is not None:
        assert r.returncode == ex.exit_code, ex.name
