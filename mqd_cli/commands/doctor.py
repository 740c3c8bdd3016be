"""`mqd doctor`: is this installation ready to trade?"""

from __future__ import annotations

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli
from mqd_cli.doctor import run_checks
from mqd_cli.errors import ExitCode


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor_cmd(config: ConfigOpt = None, json_out: JsonOpt = False,
                   verbose: VerboseOpt = False) -> None:
        """Check config, credentials, store, broker reachability and clock skew.

        One line per check with ok/warn/fail and a fix hint; exit 1 when a check fails.

        Example: mqd doctor --json
        """
        with cli(config, json_out, verbose) as c:
            checks = run_checks(c.services)
            failed = any(ch.status == "fail" for ch in checks)
            if json_out:
                c.out.json({"ok": not failed, "checks": checks})
            else:
                marks = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
                for ch in checks:
                    hint = f"  (fix: {ch.hint})" if ch.hint and ch.status != "ok" else ""
                    c.out.line(f"{marks[ch.status]}  {ch.name:<12} {ch.detail}{hint}")
        raise typer.Exit(int(ExitCode.FOUND if failed else ExitCode.OK))
