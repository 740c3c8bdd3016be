"""`mqd config init|show|check`: write, inspect and validate the configuration."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli, exits
from mqd_cli.errors import ConfigError, ExitCode, UsageError


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Write, show and validate the configuration.\n\nExample: mqd config check",
        no_args_is_help=True,
    )

    @group.command("init")
    @exits(ok="written", usage="the file exists (use --force) or bad options")
    def init_cmd(
        force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
        config: ConfigOpt = None,
        json_out: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Write a commented starting config (the user config dir, or --config PATH).

        Every key is written with its default and a comment giving its unit and meaning;
        secrets are written as env:NAME references only. Refuses to overwrite an existing
        file unless --force. Prints the path.

        Example: mqd config init
        """
        from mqd_cli.commands.output import Output
        from mqd_cli.config import loading as cfg_loading

        out = Output(json_mode=json_out, verbose=verbose)
        path = config or cfg_loading.default_config_path()
        if path.exists() and not force:
            raise UsageError(f"{path} already exists", "pass --force to overwrite it")
        text = cfg_loading.render_commented()
        cfg_loading.loads(text)  # what we write must load: never leave a broken file behind
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        env = os.environ.get(cfg_loading.ENV_CONFIG)
        if config is None and env:
            out.warn(f"${cfg_loading.ENV_CONFIG} is set ({env}); mqd reads that file, not this one")
        if json_out:
            out.json({"path": str(path)})
        else:
            out.line(str(path))

    @group.command("show")
    @exits(ok="shown", usage="invalid configuration")
    def show_cmd(
        config: ConfigOpt = None, json_out: JsonOpt = False, verbose: VerboseOpt = False
    ) -> None:
        """Show the effective configuration, where each value comes from, secrets redacted.

        Each key's source is "file" (set in the config file), "env" (a secret read from an
        environment variable) or "default". Secrets show only where they come from.
        Example: mqd config show --json
        """
        from mqd_cli.config import loading as cfg_loading

        with cli(config, json_out, verbose) as c:
            loaded = c.services.loaded
            assert loaded is not None  # cli() loads the configuration
            rows = [
                (dotted, cfg_loading.plain(value), loaded.source_of(dotted, value))
                for dotted, value, _f in cfg_loading.iter_fields(c.settings)
            ]
            if json_out:
                c.out.json(
                    {
                        "file": str(loaded.path) if loaded.path else None,
                        "origin": loaded.origin,
                        "settings": cfg_loading.plain(c.settings),
                        "sources": {key: source for key, _v, source in rows},
                    }
                )
                return
            title = f"config: {loaded.path or 'built-in defaults'} ({loaded.origin})"
            c.out.table(
                title,
                ["key", "value", "source"],
                [(key, _text(value), source) for key, value, source in rows],
            )

    @group.command("check")
    @exits(ok="valid", usage="invalid (one line per problem)")
    def check_cmd(
        config: ConfigOpt = None, json_out: JsonOpt = False, verbose: VerboseOpt = False
    ) -> None:
        """Validate the configuration: exit 0 when valid, 2 with one line per problem.

        Every problem is reported at once with its TOML path: unknown keys (with the
        nearest known key), wrong types, bad durations, out-of-range numbers, TOML syntax
        errors (file, line, column). The strategy is loaded as `mqd run` loads it: an
        unknown name, an unknown parameter or a failed parameter check (fast >= slow) is a
        problem too. A literal secret in the file is valid but warned about.
        Example: mqd config check --config config.example.toml
        """
        try:
            with cli(config, json_out, verbose) as c:
                loaded = c.services.loaded
                assert loaded is not None  # cli() loads the configuration
                _check_strategy(c.settings, loaded)
                for w in loaded.warnings:
                    c.out.warn(w)
                where = str(loaded.path) if loaded.path else "built-in defaults"
                if json_out:
                    c.out.json(
                        {
                            "valid": True,
                            "file": where,
                            "problems": [],
                            "warnings": list(loaded.warnings),
                        }
                    )
                else:
                    c.out.line(f"ok: {where} is valid")
        except ConfigError as exc:
            if json_out:
                from mqd_cli.commands.output import Output
                from mqd_cli.config.loading import redact

                problems = [redact(p) for p in exc.problems]
                Output(json_mode=True).json({"valid": False, "problems": problems})
            raise
        raise typer.Exit(int(ExitCode.OK))

    app.add_typer(group, name="config")


def _check_strategy(settings, loaded) -> None:
    """Load [strategy] exactly as `mqd run` and `mqd backtest` do: its name, its parameters
    and their checks (ConfigError, reported like any other configuration problem)."""
    from mqd_cli.strategies.loader import load_strategy

    base_dir = loaded.path.parent if loaded.path else None
    load_strategy(settings.strategy, base_dir=base_dir)


def _text(value) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "[]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items()) or "{}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
