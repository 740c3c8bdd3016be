"""`mqd doctor`: is this installation ready to trade?"""

from __future__ import annotations

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli, exits
from mqd_cli.errors import ConfigError, ExitCode

_MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "skip"}


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    @exits(ok="all checks passed (warnings allowed)", found="a check failed")
    def doctor_cmd(
        config: ConfigOpt = None, json_out: JsonOpt = False, verbose: VerboseOpt = False
    ) -> None:
        """Check config, credentials, store, broker reachability and clock skew.

        One line per check with ok/warn/fail/skip and a fix hint. A check that depends on a
        failed one is skipped.

        Example: mqd doctor --json
        """
        from mqd_cli import doctor
        from mqd_cli.commands.output import Output

        out = Output(json_mode=json_out, verbose=verbose)
        try:
            with cli(config, json_out, verbose) as c:
                checks = doctor.run_checks(c.services)
        except ConfigError as exc:
            from mqd_cli.config.loading import redact

            bad = doctor.config_failure(exc)
            checks = [doctor.Check(bad.name, bad.status, redact(bad.detail), bad.hint)]
        failed = any(ch.status == "fail" for ch in checks)
        if json_out:
            out.json({"ok": not failed, "checks": checks})
        else:
            for ch in checks:
                hint = f"  (fix: {ch.hint})" if ch.hint and ch.status != "ok" else ""
                out.line(f"{_MARKS[ch.status]}  {ch.name:<12} {ch.detail}{hint}")
        raise typer.Exit(int(ExitCode.FOUND if failed else ExitCode.OK))
