"""`mqd sim serve`: the Alpaca-compatible emulator on loopback."""

from __future__ import annotations

from typing import Annotated

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli, exits


def _config_lines(urls: dict[str, str], key_id: str, secret: str) -> list[str]:
    return [
        'broker = "alpaca"',
        "",
        "[alpaca]",
        "paper = true",
        f'base_url = "{urls["base_url"]}"',
        f'stream_url = "{urls["stream_url"]}"',
        f'data_url = "{urls["data_url"]}"',
        "",
        "# the emulator's keys (local test values, not credentials):",
        f"export APCA_API_KEY_ID={key_id} APCA_API_SECRET_KEY={secret}",
    ]


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="The Alpaca-compatible emulator.\n\nExample: mqd sim serve --port 8765",
        no_args_is_help=True,
    )

    @group.command("serve")
    @exits(
        ok="stopped by SIGTERM", usage="bad option or port in use", interrupted="stopped by Ctrl-C"
    )
    def serve_cmd(
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[
            int, typer.Option(help="Port (0 = any free port).", min=0, max=65535)
        ] = 8765,
        seed: Annotated[
            int | None, typer.Option(help="Seed of prices and fills (default: [sim] seed).")
        ] = None,
        speed: Annotated[
            float,
            typer.Option(help="Simulated seconds per real second (1 = real time).", min=0.001),
        ] = 1.0,
        start: Annotated[
            str | None, typer.Option(help="Simulated time at start, RFC 3339 (default: now).")
        ] = None,
        rate_limit: Annotated[
            int, typer.Option(help="Trading requests per key per minute before 429.", min=1)
        ] = 200,
        data_rate_limit: Annotated[
            int, typer.Option(help="Data requests per key per minute before 429.", min=1)
        ] = 200,
        universe: Annotated[
            int,
            typer.Option(
                help="Serve a generated universe of N assets (0 = [sim] universe_size).", min=0
            ),
        ] = 0,
        drop_every: Annotated[
            int,
            typer.Option(help="Fault: close the stream after every N events (0 = never).", min=0),
        ] = 0,
        drop_after: Annotated[
            float,
            typer.Option(help="Fault: close the stream T seconds after auth (0 = never).", min=0),
        ] = 0.0,
        duplicate_rate: Annotated[
            float, typer.Option(help="Fault: share of stream events sent twice.", min=0, max=1)
        ] = 0.0,
        reorder_rate: Annotated[
            float,
            typer.Option(
                help="Fault: share of stream events sent after the next one.", min=0, max=1
            ),
        ] = 0.0,
        reap_delay: Annotated[
            float,
            typer.Option(
                help="Seconds a closed stream still holds the key's one connection.", min=0
            ),
        ] = 0.0,
        error_rate: Annotated[
            float,
            typer.Option(help="Fault: share of REST calls answered 500/502/503/504.", min=0, max=1),
        ] = 0.0,
        throttle_rate: Annotated[
            float, typer.Option(help="Fault: share of REST calls answered 429.", min=0, max=1)
        ] = 0.0,
        latency: Annotated[
            float, typer.Option(help="Fault: seconds added before every REST answer.", min=0)
        ] = 0.0,
        control: Annotated[
            bool, typer.Option(help="Serve the test control API under /_sim/.")
        ] = True,
        config: ConfigOpt = None,
        json_out: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Run an Alpaca-compatible paper exchange on loopback until Ctrl-C or SIGTERM.

        REST /v2 (account, orders, positions, assets, clock, calendar), the trade_updates
        stream at /stream, data bars at /v2/stocks/bars, Alpaca's error bodies and rate-limit
        headers, over the simulated exchange ([sim] settings). Prints the URLs and the config
        lines that point mqd at it. Fault options rehearse outages.

        Example: mqd sim serve --port 8765 --seed 7 --drop-every 20
        """
        import signal

        from mqd_cli.emulator.exchange import Emulator
        from mqd_cli.emulator.server import bind, serve, urls
        from mqd_cli.emulator.settings import EmulatorConfig, Faults
        from mqd_cli.errors import ExitCode, UsageError
        from mqd_cli.wire import format as wire_format
        from mqd_cli.wire import parse as wire_parse

        with cli(config, json_out, verbose, announce_defaults=False) as c:
            sim = c.settings.sim
            start_at = None
            if start:
                try:
                    start_at = wire_parse.req_ts(start, "--start")
                except wire_parse.PayloadError as exc:
                    raise UsageError(str(exc), "e.g. --start 2026-01-05T14:35:00Z") from None
            faults = Faults(
                stream_drop_every=drop_every,
                stream_drop_after=drop_after,
                stream_duplicate_rate=duplicate_rate,
                stream_reorder_rate=reorder_rate,
                stream_reap_delay=reap_delay,
                rest_429_rate=throttle_rate,
                rest_5xx_rate=error_rate,
                latency=latency,
            )
            emulator = Emulator(
                EmulatorConfig(
                    seed=sim.seed if seed is None else seed,
                    start=start_at,
                    speed=speed,
                    rate_limit=rate_limit,
                    data_rate_limit=data_rate_limit,
                    key_id=sim.api_key_id,
                    secret_key=sim.api_secret_key,
                    universe=universe,
                    control=control,
                    faults=faults,
                    sim=sim,
                )
            )
            try:
                sock = bind(host, port)
            except OSError as exc:
                raise UsageError(
                    f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                    "choose another --port (0 picks a free one)",
                ) from None
            where = urls(sock)
            if json_out:
                c.out.json_line(
                    {
                        **where,
                        "key_id": sim.api_key_id,
                        "seed": emulator.config.seed,
                        "speed": speed,
                        "sim_time": wire_format.stamp(emulator.clock.now()),
                    }
                )
            else:
                c.out.line(
                    f"mqd sim serve: Alpaca-compatible emulator, seed "
                    f"{emulator.config.seed}, speed {speed:g}x, sim time "
                    f"{wire_format.stamp(emulator.clock.now())}"
                )
                c.out.line(f"  base URL:   {where['base_url']}")
                c.out.line(f"  stream URL: {where['stream_url']}")
                c.out.line(f"  data URL:   {where['data_url']}")
                c.out.line("config lines:")
                for line in _config_lines(where, sim.api_key_id, sim.api_secret_key):
                    c.out.line(f"  {line}" if line else "")
                c.out.line("Ctrl-C or SIGTERM stops it.")
            stopped_by = serve(emulator, sock)
            c.out.info(
                f"mqd sim serve: stopped ({signal.Signals(stopped_by).name})"
                if stopped_by
                else "mqd sim serve: stopped"
            )
        if stopped_by == signal.SIGINT:
            raise typer.Exit(int(ExitCode.INTERRUPTED))

    app.add_typer(group, name="sim")
