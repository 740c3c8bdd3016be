"""The settings schema: one frozen dataclass per TOML table, every field documented.

Each field is declared with ``setting(default, doc, ...)``; the doc string gives the unit, the
default and the meaning, and ``config show``/``config init`` print it. Loading, strict
validation and rendering live in ``config.py``, which re-exports every name here.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal

from mqd_cli.config.fields import Secret, frozen_dataclass, setting, table
from mqd_cli.errors import ConfigError


@frozen_dataclass
class AlpacaSettings:
    """[alpaca] Connection to Alpaca (used when broker = "alpaca")."""

    paper: bool = setting(True, "Trade the paper account (true) or the live account (false).")
    key_id: Secret = setting(
        Secret("env:APCA_API_KEY_ID"),
        "API key id; 'env:NAME' reads the environment variable NAME. Never printed.",
        secret=True,
    )
    secret_key: Secret = setting(
        Secret("env:APCA_API_SECRET_KEY"),
        "API secret key; 'env:NAME' reads the environment variable NAME. Never printed.",
        secret=True,
    )
    base_url: str = setting(
        "", "Trading REST origin, no /v2 (empty = Alpaca's paper or live endpoint)."
    )
    stream_url: str = setting("", "trade_updates websocket URL (empty = Alpaca's endpoint).")
    data_url: str = setting("", "Market-data REST origin (empty = https://data.alpaca.markets).")
    data_feed: Literal["iex", "sip"] = setting("iex", "Bar feed: iex (free plan) or sip (paid).")
    timeout: timedelta = setting(
        timedelta(seconds=10),
        "Timeout of every REST request. Default 10s.",
        min=timedelta(milliseconds=100),
        max=timedelta(minutes=5),
    )


@frozen_dataclass
class StoreSettings:
    """[store] The SQLite database holding mqd's state."""

    path: str = setting("", "Database file (empty = the platform data dir, .../mqd/mqd.db).")
    busy_timeout: timedelta = setting(
        timedelta(seconds=10),
        "How long a writer waits for another process's transaction. Default 10s.",
        min=timedelta(milliseconds=10),
        max=timedelta(minutes=5),
    )


@frozen_dataclass
class RateLimitSettings:
    """[throttle.limits.NAME] One named request budget (a preset override or a new limit)."""

    limit: int = setting(
        0,
        "Requests (weight units) allowed per window; 0 = keep the preset. Default 0.",
        min=0,
        max=1_000_000,
    )
    window: timedelta = setting(
        timedelta(0),
        "Length of the sliding window; '0s' = keep the preset. Default 0s.",
        min=timedelta(0),
        max=timedelta(days=1),
    )
    pools: list[str] = setting(
        [],
        "Other limits every call of this one also draws on (added to the preset's pools).",
    )


@frozen_dataclass
class ThrottleSettings:
    """[throttle] Request budgets shared by every mqd process on this host."""

    shared: bool = setting(
        True, "Keep the budget in the store so run, reconcile and sync share it."
    )
    safety_margin: float = setting(
        0.03,
        "Fraction of each limit kept in reserve (0.03 = 3 %). Default 0.03.",
        min=0.0,
        max=0.5,
    )
    backoff_base: timedelta = setting(
        timedelta(milliseconds=500),
        "First retry delay after a 5xx/network error or a repeated 429; doubles per attempt."
        " Default 500ms.",
        min=timedelta(milliseconds=1),
        max=timedelta(minutes=1),
    )
    max_backoff: timedelta = setting(
        timedelta(seconds=60),
        "Upper bound of the exponential backoff after repeated 429/5xx. Default 60s.",
        min=timedelta(seconds=1),
        max=timedelta(hours=1),
    )
    max_attempts: int = setting(
        5,
        "Attempts of one idempotent request (first try included) before giving up. Default 5.",
        min=1,
        max=100,
    )
    send_guard: timedelta = setting(
        timedelta(milliseconds=50),
        "How late after its slot a woken waiter may still send (at least 5 ms, at most 1 % of"
        " the window); a send also stays counted this long after its window (at most 0.1 % of"
        " it). Default 50ms.",
        min=timedelta(0),
        max=timedelta(seconds=1),
    )
    limits: dict[str, RateLimitSettings] = setting(
        {},
        "Overrides of the presets (alpaca_trading, alpaca_data, polygon, finnhub,"
        " finnhub_burst, discord, discord_global, heartbeat) or extra limits.",
    )


@frozen_dataclass
class RiskSettings:
    """[risk] Pre-trade risk gate limits (money in account currency)."""

    max_order_notional: Decimal = setting(
        Decimal("10000"),
        "Largest single order value (0 = no limit). Default 10000.",
        min=Decimal(0),
    )
    max_position_notional: Decimal = setting(
        Decimal("25000"),
        "Largest position value per symbol, after the order (0 = no limit). Default 25000.",
        min=Decimal(0),
    )
    max_gross_exposure: Decimal = setting(
        Decimal("100000"),
        "Largest sum of absolute position values, after the order (0 = no limit). Default 100000.",
        min=Decimal(0),
    )
    max_open_orders: int = setting(
        20,
        "Most open orders at once, this one included (0 = no limit). Default 20.",
        min=0,
        max=10_000,
    )
    check_buying_power: bool = setting(True, "Refuse buys the account cannot pay for.")
    allowed_symbols: list[str] = setting(
        [], "Only these symbols may open or grow positions (empty = any). Exits always pass."
    )
    kill_switch_file: str = setting(
        "",
        "If this file exists, the gate halts all orders until restart (empty = off)."
        " Example: '~/mqd.halt'; `touch` it to stop trading at once.",
    )
    protective_stop: str = setting(
        "",
        "Send entries with a stop-loss leg the broker holds (an OTO order), so a crashed mqd"
        " still leaves a stop: a percentage of the entry price ('2%') or a multiple of the"
        " average true range ('1.5atr'). Empty = off.",
    )
    take_profit: str = setting(
        "",
        "With protective_stop: a take-profit leg too, making each entry a bracket ('4%',"
        " '3atr'). Empty = stop only.",
    )
    atr_bars: int = setting(
        14, "Bars the average true range of an 'atr' distance is taken over.", min=2, max=1000
    )

    def __post_init__(self) -> None:
        if not (self.protective_stop.strip() or self.take_profit.strip()):
            return  # no legs: nothing to parse (and the trading layer stays unimported)
        from mqd_cli.trading.protective import Distance

        for name in ("protective_stop", "take_profit"):
            try:
                Distance.parse(getattr(self, name))
            except ValueError as exc:
                raise ConfigError(
                    [f"risk.{name}: {exc}, got {getattr(self, name)!r}"],
                    "use a percentage like '2%' or an ATR multiple like '1.5atr', or ''",
                ) from None
        if self.take_profit.strip() and not self.protective_stop.strip():
            raise ConfigError(
                ["risk.take_profit needs risk.protective_stop (a bracket has both legs)"],
                "set protective_stop too, or leave take_profit empty",
            )


_UNLOCK_AT_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_UNLOCK_AT_DOC = (
    "End the lock at this HH:MM New York time on the next trading day instead of after "
    "stop_duration (empty = use stop_duration)."
)


def _check_unlock_at(value: str, path: str) -> None:
    """Strict HH:MM for the protections' unlock_at (the generic schema only checks the type)."""
    if value and not _UNLOCK_AT_RE.match(value):
        raise ConfigError(
            [f"{path}: expected HH:MM (24-hour, New York time) like '09:25', got {value!r}"],
            "use a time like '09:25', or leave it empty to use stop_duration",
        )


@frozen_dataclass
class StoplossGuardSettings:
    """[protections.stoploss_guard] Lock after repeated losing stop exits."""

    enabled: bool = setting(True, "Turn this protection on.")
    trade_limit: int = setting(
        3,
        "Losing stop exits (stop-loss, trailing stop, liquidation) within the lookback that "
        "trip it. Default 3.",
        min=1,
        max=10_000,
    )
    lookback: timedelta = setting(
        timedelta(hours=1),
        "Window the exits are counted in. Default 1h.",
        min=timedelta(seconds=1),
    )
    stop_duration: timedelta = setting(
        timedelta(hours=1),
        "Lock length after the exit that tripped it. Default 1h.",
        min=timedelta(seconds=1),
    )
    only_per_symbol: bool = setting(
        False, "Count and lock per symbol (false = count all symbols, lock everything)."
    )
    only_per_side: bool = setting(
        False, "Count and lock per side (long/short) instead of both sides."
    )
    unlock_at: str = setting("", _UNLOCK_AT_DOC)

    def __post_init__(self) -> None:
        _check_unlock_at(self.unlock_at, "protections.stoploss_guard.unlock_at")


@frozen_dataclass
class MaxDrawdownSettings:
    """[protections.max_drawdown] Stop everything after a deep equity drawdown."""

    enabled: bool = setting(True, "Turn this protection on.")
    max_drawdown: float = setting(
        0.15,
        "Peak-to-trough equity drop (0.15 = 15 %) within the lookback that trips it. Default 0.15.",
        min=0.001,
        max=1.0,
    )
    lookback: timedelta = setting(
        timedelta(days=2), "Equity window. Default 2d.", min=timedelta(seconds=1)
    )
    stop_duration: timedelta = setting(
        timedelta(hours=24),
        "Lock length after the trough. Default 24h.",
        min=timedelta(seconds=1),
    )
    starting_equity: Decimal = setting(
        Decimal("100000"),
        "Account equity before the first closed trade; used when no broker equity sample is "
        "stored (backtest, status from another process). Default 100000.",
        min=Decimal("0.01"),
    )
    unlock_at: str = setting("", _UNLOCK_AT_DOC)

    def __post_init__(self) -> None:
        _check_unlock_at(self.unlock_at, "protections.max_drawdown.unlock_at")


@frozen_dataclass
class CooldownSettings:
    """[protections.cooldown] Pause after a large losing trade."""

    enabled: bool = setting(True, "Turn this protection on.")
    loss_threshold: Decimal = setting(
        Decimal("500"),
        "Loss of one trade, after fees, that starts the pause (>=). Default 500.",
        min=Decimal(0),
    )
    after_any_exit: bool = setting(
        False, "Pause after every exit, whatever its result (ignores loss_threshold)."
    )
    stop_duration: timedelta = setting(
        timedelta(minutes=30),
        "Pause length after the exit. Default 30m.",
        min=timedelta(seconds=1),
    )
    only_per_symbol: bool = setting(True, "Pause only that symbol (false = every symbol).")
    unlock_at: str = setting("", _UNLOCK_AT_DOC)

    def __post_init__(self) -> None:
        _check_unlock_at(self.unlock_at, "protections.cooldown.unlock_at")


@frozen_dataclass
class LowProfitSettings:
    """[protections.low_profit] Lock symbols whose recent trades make too little."""

    enabled: bool = setting(False, "Turn this protection on.")
    trade_limit: int = setting(
        4,
        "Trades of the symbol within the lookback before it judges. Default 4.",
        min=1,
        max=10_000,
    )
    lookback: timedelta = setting(
        timedelta(days=1), "Window. Default 1d.", min=timedelta(seconds=1)
    )
    required_profit: float = setting(
        0.0,
        "Stake-weighted profit ratio (sum of PnL / sum of stakes) required; 0.0 = break even, "
        "0.01 = 1 %. Default 0.0.",
        min=-1.0,
        max=10.0,
    )
    stop_duration: timedelta = setting(
        timedelta(hours=1),
        "Lock length after the trade that tripped it. Default 1h.",
        min=timedelta(seconds=1),
    )
    unlock_at: str = setting("", _UNLOCK_AT_DOC)

    def __post_init__(self) -> None:
        _check_unlock_at(self.unlock_at, "protections.low_profit.unlock_at")


@frozen_dataclass
class ProtectionsSettings:
    """[protections] Circuit breakers checked before the risk gate."""

    check_interval: timedelta = setting(
        timedelta(minutes=1),
        "How often locks are re-evaluated without a new trade. Default 1m.",
        min=timedelta(seconds=1),
        max=timedelta(hours=1),
    )
    stoploss_guard: StoplossGuardSettings = table(StoplossGuardSettings)
    max_drawdown: MaxDrawdownSettings = table(MaxDrawdownSettings)
    cooldown: CooldownSettings = table(CooldownSettings)
    low_profit: LowProfitSettings = table(LowProfitSettings)


@frozen_dataclass
class StrategySettings:
    """[strategy] What the run loop trades."""

    name: str = setting(
        "sma_cross", "Built-in (sma_cross, buy_and_hold) or 'module:Class' for your own."
    )
    symbols: list[str] = setting(["AAPL", "MSFT"], "Symbols the strategy trades.")
    timeframe: timedelta = setting(
        timedelta(minutes=1), "Bar length. Default 1m.", min=timedelta(seconds=1)
    )
    params: dict[str, Any] = setting(
        {},
        "Strategy parameters, validated against the strategy's own list"
        " (sma_cross: fast, slow, qty or notional, stop_loss_pct, take_profit_pct, allow_short).",
    )


@frozen_dataclass
class DiscordSettings:
    """[notify.discord] Alerts posted to a Discord webhook."""

    webhook_url: Secret = setting(
        Secret(""), "Webhook URL (holds a token: never printed). Empty = off.", secret=True
    )
    events: list[str] = setting(
        ["fill", "protection", "reconcile", "error"],
        "Which events are posted: fill, order, risk, protection, reconcile, error, start, stop.",
    )
    username: str = setting("mqd", "Name the alerts are posted under.")


@frozen_dataclass
class NotifySettings:
    """[notify] Where alerts go, and the dead-man heartbeat of `mqd run`."""

    heartbeat_url: Secret = setting(
        Secret(""),
        "URL `mqd run` GETs every heartbeat_interval while its loop is healthy, for a cron-style"
        " monitor (healthchecks.io, Uptime Kuma push, Cronitor): pings stop when the run dies,"
        " hangs or loses its stream, and the monitor alerts. It may hold a token: never"
        " printed; 'env:NAME' reads a variable. Empty = off.",
        secret=True,
    )
    heartbeat_interval: timedelta = setting(
        timedelta(minutes=1),
        "Real time between two heartbeat pings; set the monitor's period to this and its grace"
        " to a few more. Default 1m.",
        min=timedelta(seconds=1),
        max=timedelta(hours=1),
    )
    discord: DiscordSettings = table(DiscordSettings)


@frozen_dataclass
class SimSettings:
    """[sim] The built-in simulated exchange (broker = "sim" and `mqd sim serve`)."""

    seed: int = setting(42, "Seed of the price walk and fills: same seed, same run.")
    speed: float = setting(
        60.0, "Simulated seconds per real second (1 = real time).", min=0.001, max=1e6
    )
    starting_cash: Decimal = setting(
        Decimal("100000"), "Cash of a fresh simulated account. Default 100000.", min=Decimal(0)
    )
    partial_fill_probability: float = setting(
        0.1, "Chance an order fills in parts (Alpaca paper: about 0.1).", min=0.0, max=1.0
    )
    liquidity: Decimal = setting(
        Decimal("1000"),
        "Most shares filled per order per price bar (0 = unlimited). Default 1000.",
        min=0,
    )
    fee_per_share: Decimal = setting(Decimal("0"), "Commission per share.", min=Decimal(0))
    slippage_bps: Decimal = setting(
        Decimal("0"), "Adverse slippage of market fills, basis points.", min=Decimal(0)
    )
    price_csv: str = setting(
        "",
        "Replay prices from this CSV (timestamp,open,high,low,close,volume[,symbol]) instead of "
        "the random walk; symbols missing from the file keep the random walk.",
    )
    bar_interval: timedelta = setting(
        timedelta(minutes=1),
        "Bar length of the synthetic random walk; orders are matched bar by bar. Default 1m.",
        min=timedelta(seconds=1),
        max=timedelta(days=1),
    )
    market_hours: Literal["always", "nyse"] = setting(
        "always",
        'When equities trade: "always" (24/7, so the offline demo works at any hour; day '
        'orders never expire) or "nyse" (regular session, NYSE holidays, day orders expire '
        "at the close, orders off-hours wait as accepted). Crypto always trades 24/7.",
    )
    multiplier: int = setting(
        2,
        "Account margin multiplier: 1 = cash account (buying power = cash, no shorting), "
        "2 = Reg T margin like Alpaca paper, 4 = day-trading margin. Default 2.",
        min=1,
        max=4,
    )
    universe_size: int = setting(
        0,
        "Assets the sim lists: 0 = the small built-in universe, N = a generated universe of N "
        "assets (the built-in ones first), for sync and load tests.",
        min=0,
        max=200_000,
    )
    api_key_id: str = setting("mqd-sim-key", "Key id `mqd sim serve` accepts.")
    api_secret_key: str = setting(
        "mqd-sim-secret", "Secret `mqd sim serve` accepts (a local test value, not a credential)."
    )


@frozen_dataclass
class SymbolsSettings:
    """[symbols] Symbol properties synced from the broker's asset list."""

    stale_after: timedelta = setting(
        timedelta(days=1),
        "Age of the last `mqd symbols sync` past which commands warn that the properties are"
        " stale. Default 1d.",
        min=timedelta(minutes=1),
        max=timedelta(days=365),
    )
    nominal_qty: Decimal = setting(
        Decimal("1"),
        "Order size (shares or coins) `mqd symbols validate` checks for each strategy symbol"
        " when no FILE is given. Default 1.",
        min=Decimal("0.000000001"),
    )


@frozen_dataclass
class StreamSettings:
    """[stream] The trade_updates stream client."""

    heartbeat_interval: timedelta = setting(
        timedelta(seconds=10),
        "Ping interval of the watchdog. Default 10s.",
        min=timedelta(milliseconds=50),
        max=timedelta(minutes=5),
    )
    heartbeat_timeout: timedelta = setting(
        timedelta(seconds=10),
        "A pong later than this reconnects the socket. Default 10s.",
        min=timedelta(milliseconds=50),
        max=timedelta(minutes=5),
    )
    reply_timeout: timedelta = setting(
        timedelta(seconds=10),
        "Wait for the authorization and listening replies. Default 10s.",
        min=timedelta(milliseconds=50),
        max=timedelta(minutes=5),
    )
    backoff_initial: timedelta = setting(
        timedelta(seconds=1),
        "First reconnect delay (doubles, with jitter). Default 1s.",
        min=timedelta(0),
        max=timedelta(minutes=5),
    )
    backoff_max: timedelta = setting(
        timedelta(seconds=30),
        "Longest reconnect delay. Default 30s.",
        min=timedelta(0),
        max=timedelta(hours=1),
    )
    backoff_429: timedelta = setting(
        timedelta(seconds=15),
        "Reconnect delay floor after a 429 handshake (a stale connection lingers ~90s). "
        "Default 15s.",
        min=timedelta(0),
        max=timedelta(hours=1),
    )
    lease_ttl: timedelta = setting(
        timedelta(seconds=30),
        "The stream lease dies this long after the holder's last heartbeat. Default 30s.",
        min=timedelta(seconds=1),
        max=timedelta(hours=1),
    )
    gap_fill_margin: timedelta = setting(
        timedelta(seconds=2),
        "Look back this much before the last event on gap fill. Default 2s.",
        min=timedelta(0),
        max=timedelta(hours=1),
    )
    tail_poll_interval: timedelta = setting(
        timedelta(milliseconds=200),
        "How often `mqd stream tail` reads new journal rows while another process holds the"
        " stream. Default 200ms.",
        min=timedelta(milliseconds=10),
        max=timedelta(minutes=1),
    )


@frozen_dataclass
class RunSettings:
    """[run] The trading loop (`mqd run`)."""

    duration: timedelta = setting(
        timedelta(0),
        'Stop by itself after this long (simulated time with broker = "sim"); 0s = run until'
        " Ctrl-C or SIGTERM. --duration overrides. Default 0s.",
        min=timedelta(0),
    )
    poll_interval: timedelta = setting(
        timedelta(seconds=1),
        "Real time between two passes of the loop (new bars, resting orders, dashboard)."
        " Default 1s.",
        min=timedelta(milliseconds=10),
        max=timedelta(minutes=5),
    )
    warmup_bars: int = setting(
        200,
        "History bars per symbol fed to the strategy's indicators before trading. Default 200.",
        min=0,
        max=1_000_000,
    )
    cancel_on_exit: bool = setting(
        False, "Cancel the open orders at shutdown (also --cancel-on-exit)."
    )
    sim_start: str = setting(
        "",
        'Simulated time `mqd run` starts at with broker = "sim" (RFC 3339, e.g.'
        " '2026-01-05T14:30:00Z'; empty = now). A fixed start makes a sim run repeatable.",
    )


@frozen_dataclass
class LogSettings:
    """[log] Log lines in a file besides stderr, rotated by size, secrets never written."""

    file: str = setting(
        "",
        "Log file, '~' expanded, its directory created (empty = no file). Example:"
        " '~/.local/state/mqd/mqd.log'. Processes running at once should each have their own.",
    )
    level: Literal["debug", "info", "warning", "error"] = setting(
        "info", "Lowest level written to the file; --log-level overrides it for one command."
    )
    json: bool = setting(
        False,
        "Write JSON lines (time, level, command, pid, logger, message, event) instead of text.",
    )
    max_bytes: int = setting(
        10_000_000,
        "Rotate the file when a line would take it past this size in bytes (0 = never rotate)."
        " Default 10000000.",
        min=0,
        max=1_000_000_000_000,
    )
    backups: int = setting(
        5,
        "Rotated files kept: file.1 (newest) ... file.N, at least 1. Default 5.",
        min=1,
        max=1000,
    )


@frozen_dataclass
class BacktestSettings:
    """[backtest] Defaults of `mqd backtest`."""

    start: str = setting(
        "",
        "First bar when --from is not given (RFC 3339; empty = the simulator's origin"
        " 2026-01-02T14:30:00Z, or the first bar of --data).",
    )
    period: timedelta = setting(
        timedelta(days=5),
        "Length of a synthetic backtest when --to is not given. Default 5d.",
        min=timedelta(minutes=1),
        max=timedelta(days=3650),
    )


@frozen_dataclass
class Settings:
    """The whole configuration file."""

    broker: Literal["sim", "alpaca"] = setting(
        "sim", 'Which broker: "sim" (built-in, offline, no keys) or "alpaca".'
    )
    alpaca: AlpacaSettings = table(AlpacaSettings)
    store: StoreSettings = table(StoreSettings)
    throttle: ThrottleSettings = table(ThrottleSettings)
    risk: RiskSettings = table(RiskSettings)
    protections: ProtectionsSettings = table(ProtectionsSettings)
    strategy: StrategySettings = table(StrategySettings)
    notify: NotifySettings = table(NotifySettings)
    sim: SimSettings = table(SimSettings)
    stream: StreamSettings = table(StreamSettings)
    symbols: SymbolsSettings = table(SymbolsSettings)
    run: RunSettings = table(RunSettings)
    backtest: BacktestSettings = table(BacktestSettings)
    log: LogSettings = table(LogSettings)
