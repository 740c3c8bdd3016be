"""`mqd protections status|unlock`: which circuit breakers are armed or tripped, and until when."""

from __future__ import annotations

from typing import Annotated

import typer

from mqd_cli.commands._common import ConfigOpt, JsonOpt, VerboseOpt, cli, exits
from mqd_cli.errors import ExitCode, UsageError


def _lock_doc(lock, now) -> dict:
    from mqd_cli.protections.manager import format_remaining

    active = lock.is_active(now)
    return {
        "id": lock.id,
        "protection": lock.protection,
        "scope": lock.scope,
        "symbol": lock.symbol,
        "side": lock.side,
        "target": lock.target,
        "reason": lock.reason,
        "start": lock.start,
        "end": lock.end,
        "active": active,
        "remaining_seconds": int(lock.remaining(now).total_seconds()),
        "remaining": format_remaining(lock.remaining(now).total_seconds()) if active else "",
        "evidence": lock.evidence,
        "unlocked_at": lock.unlocked_at,
        "unlocked_by": lock.unlocked_by,
        "unlock_reason": lock.unlock_reason,
    }


def _when(dt) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else ""


def _state(lock, now) -> str:
    if lock.unlocked_at is not None:
        return f"unlocked {_when(lock.unlocked_at)} by {lock.unlocked_by}: {lock.unlock_reason}"
    return "active" if lock.is_active(now) else "expired"


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Show and manage the circuit breakers (protections) and their locks.\n\n"
        "Example: mqd protections status",
        no_args_is_help=True,
    )

    @group.command("status")
    @exits(ok="shown (locks or not)")
    def status_cmd(
        history: Annotated[
            bool, typer.Option("--history", help="Also list past locks (expired or unlocked).")
        ] = False,
        limit: Annotated[
            int | None,
            typer.Option(
                "--limit", min=1, help="How many past locks --history shows [default: 20]."
            ),
        ] = None,
        session: Annotated[
            str | None,
            typer.Option(
                "--session",
                metavar="NAME",
                help='Read this kept sim session (default with broker = "sim": the latest).',
                show_default=False,
            ),
        ] = None,
        config: ConfigOpt = None,
        json_out: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Show each protection's measure against its threshold, and the active locks.

        Reads the store only (no broker call): closed trades, broker equity samples kept by
        `mqd run`, and the locks. A lock ends exactly at its end time. With broker = "sim"
        it reads the latest sim session that `mqd run` kept (--session NAME for another), as
        of that session's own time.

        Example: mqd protections status --history
        """
        with cli(config, json_out, verbose) as c:
            services = c.services.reading(session)
            if services.session_name is not None:
                c.out.info(
                    f"session: {services.session_name} (sim, as of {_when(services.clock.now())})"
                )
            manager = services.protections
            now = services.clock.now()
            limit = limit or 20
            statuses = manager.status()
            active = manager.active_locks()
            past = [lk for lk in manager.history(limit + len(active)) if not lk.is_active(now)]
            past = past[:limit]
            if json_out:
                doc = {
                    "now": now,
                    "protections": [
                        {
                            "name": st.name,
                            "enabled": st.enabled,
                            "tripped": st.tripped,
                            "measure": st.measure,
                            "value": st.value,
                            "threshold": st.threshold,
                            "config": st.config,
                            "locks": [_lock_doc(lk, now) for lk in st.locks],
                        }
                        for st in statuses
                    ],
                    "active_locks": [_lock_doc(lk, now) for lk in active],
                }
                if history:
                    doc["history"] = [_lock_doc(lk, now) for lk in past]
                c.out.json(doc)
                return
            from mqd_cli.protections.manager import format_remaining

            width = max(len(st.name) for st in statuses)
            for st in statuses:
                state = "off" if not st.enabled else ("LOCKED" if st.locks else "armed")
                if st.enabled and st.tripped and not st.locks:
                    state = "tripped"
                c.out.line(f"{st.name:<{width}}  {state:<7} {st.measure}")
                c.out.line(f"{'':<{width}}  {'':<7} config: {_config_text(st.config)}")
            c.out.line()
            if active:
                c.out.line(f"active locks ({len(active)}):")
                for lk in active:
                    left = format_remaining(lk.remaining(now).total_seconds())
                    c.out.line(
                        f"  #{lk.id} {lk.protection} on {lk.target} [{lk.scope}]  "
                        f"{_when(lk.start)} -> {_when(lk.end)}  ({left} left)"
                    )
                    c.out.line(f"      {lk.reason}")
            else:
                c.out.line("no active locks: every symbol may open positions")
            if history:
                c.out.line()
                if past:
                    c.out.line(f"lock history (newest first, up to {limit}):")
                    for lk in past:
                        c.out.line(
                            f"  #{lk.id} {lk.protection} on {lk.target} [{lk.scope}]  "
                            f"{_when(lk.start)} -> {_when(lk.end)}  {_state(lk, now)}"
                        )
                        c.out.line(f"      {lk.reason}")
                else:
                    c.out.line("no past locks")
        raise typer.Exit(int(ExitCode.OK))

    @group.command("unlock")
    @exits(ok="done (also when nothing was locked)")
    def unlock_cmd(
        symbol: Annotated[
            str | None, typer.Argument(help="Symbol whose locks to end (e.g. AAPL).")
        ] = None,
        all_: Annotated[
            bool, typer.Option("--all", help="End every active lock, global ones included.")
        ] = False,
        reason: Annotated[
            str | None, typer.Option("--reason", help="Why (kept in the lock history).")
        ] = None,
        config: ConfigOpt = None,
        json_out: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """End locks early, recording who (the OS user) and why.

        SYMBOL ends the locks placed on that symbol; --all ends every active lock, global ones
        included. A running `mqd run` sees it at once (it reads locks from the store). The
        same evidence never re-locks; a new qualifying trade does.

        Example: mqd protections unlock AAPL --reason "checked the feed, resuming"
        """
        if not symbol and not all_:
            raise UsageError(
                "name a SYMBOL to unlock, or pass --all",
                'mqd protections unlock AAPL --reason "..."  or  --all --reason "..."',
            )
        if symbol and all_:
            raise UsageError(
                "pass either SYMBOL or --all, not both",
                "mqd protections unlock AAPL --reason ..., or --all --reason ...",
            )
        reason = (reason or "").strip()
        if not reason:
            raise UsageError("--reason is required", "say why; it is kept with the lock's history")
        import getpass

        who = getpass.getuser()
        with cli(config, json_out, verbose) as c:
            manager = c.services.protections
            now = c.services.clock.now()
            sym = symbol.upper() if symbol else None
            lifted = manager.unlock(sym, all_, reason, who)
            blocking = [] if all_ else [lk for lk in manager.active_locks() if lk.symbol is None]
            if json_out:
                c.out.json(
                    {
                        "unlocked": [_lock_doc(lk, now) for lk in lifted],
                        "by": who,
                        "reason": reason,
                        "still_blocking": [_lock_doc(lk, now) for lk in blocking],
                    }
                )
            else:
                for lk in lifted:
                    c.out.line(
                        f"unlocked #{lk.id} {lk.protection} on {lk.target} "
                        f"(was until {_when(lk.end)})"
                    )
                if not lifted:
                    c.out.line(f"no active lock on {sym or 'any symbol'}")
            for lk in blocking:
                c.out.warn(
                    f"{sym} is still blocked by the global lock #{lk.id} ({lk.protection}, until "
                    f"{_when(lk.end)}); end it with --all"
                )
        raise typer.Exit(int(ExitCode.OK))

    app.add_typer(group, name="protections")


def _config_text(config: dict) -> str:
    return ", ".join(f"{k}={_plain(v)}" for k, v in config.items() if k != "enabled")


def _plain(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v) if v != "" else '""'
