"""`mqd config init|show|check`: write, inspect and validate the configuration."""

from __future__ import annotations

from typing import Annotated

import typer

from mqd_cli import config as cfg
from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli
from mqd_cli.errors import ExitCode, UsageError


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Write, show and validate the configuration.\n\nExample: mqd config check",
        no_args_is_help=True,
    )

    @group.command("init")
    def init_cmd(
        force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
        config: ConfigOpt = None,
        json_out: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Write a commented starting config (the user config dir, or --config PATH).

        Refuses to overwrite an existing file unless --force. Prints the path.

        Example: mqd config init
        """
        path = config or cfg.default_config_path()
        if path.exists() and not force:
            raise UsageError(f"{path} already exists", "pass --force to overwrite it")
        text = cfg.render_commented()
        cfg.loads(text)  # what we write must load: never leave a broken file behind
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        if json_out:
            from mqd_cli.output import Output

            Output(json_mode=True).json({"path": str(path)})
        else:
            typer.echo(str(path))

    @group.command("show")
    def show_cmd(config: ConfigOpt = None, json_out: JsonOpt = False,
                 verbose: VerboseOpt = False) -> None:
        """Show the effective configuration, where each value comes from, secrets redacted.

        Example: mqd config show --json
        """
        with cli(config, json_out, verbose) as c:
            loaded = c.services.loaded
            rows = [
                {
                    "key": dotted,
                    "value": cfg.plain(value),
                    "source": loaded.source_of(dotted, value),
                }
                for dotted, value, _f in cfg.iter_fields(c.settings)
            ]
            if json_out:
                c.out.json({
                    "file": str(loaded.path) if loaded.path else None,
                    "origin": loaded.origin,
                    "settings": cfg.plain(c.settings),
                    "sources": {r["key"]: r["source"] for r in rows},
                })
                return
            title = f"config: {loaded.path or 'built-in defaults'} ({loaded.origin})"
            c.out.table(title, ["key", "value", "source"],
                        [(r["key"], _text(r["value"]), r["source"]) for r in rows])

    @group.command("check")
    def check_cmd(config: ConfigOpt = None, json_out: JsonOpt = False,
                  verbose: VerboseOpt = False) -> None:
        """Validate the configuration: exit 0 when valid, 2 with one line per problem.

        Example: mqd config check --config config.example.toml
        """
        with cli(config, json_out, verbose) as c:
            loaded = c.services.loaded
            for w in loaded.warnings:
                c.out.warn(w)
            where = str(loaded.path) if loaded.path else "built-in defaults"
            if json_out:
                c.out.json({"valid": True, "file": where, "warnings": list(loaded.warnings)})
            else:
                c.out.line(f"ok: {where} is valid")
        raise typer.Exit(int(ExitCode.OK))

    app.add_typer(group, name="config")


def _text(value) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "[]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items()) or "{}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
