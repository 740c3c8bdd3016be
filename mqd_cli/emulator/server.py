"""Serving an ``Emulator``: a bound socket, uvicorn in the foreground (`mqd sim serve`) or on
a background thread (``EmulatorServer``, for tests and benchmarks)."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from typing import Any

from mqd_cli.emulator.exchange import Emulator
from mqd_cli.emulator.settings import EmulatorConfig


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 = a free port), bound before the URLs are printed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets (else ~40 ms per answer
    # from Nagle + delayed ACK on loopback).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def urls(sock: socket.socket) -> dict[str, str]:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    return {"base_url": base, "stream_url": f"ws://{shown}:{port}/stream", "data_url": base}


class _DenialNoise(logging.Filter):
    """uvicorn's sans-io websocket protocol logs a refused handshake (our 429) as an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing handshake" not in record.getMessage()


def uvicorn_server(emulator: Emulator) -> Any:
    import signal

    import uvicorn

    error_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DenialNoise) for f in error_log.filters):
        error_log.addFilter(_DenialNoise())

    class Server(uvicorn.Server):
        """uvicorn's server without re-raising the stop signal: SIGINT/SIGTERM end serve()."""

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            stops = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in stops}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    config = uvicorn.Config(
        emulator.app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        ws="websockets-sansio",
        ws_ping_interval=None,
        timeout_graceful_shutdown=2,
    )
    return Server(config)


def serve(emulator: Emulator, sock: socket.socket) -> int | None:
    """Serve until Ctrl-C or SIGTERM; returns the signal that stopped it (shut down cleanly)."""
    import gc

    # The asset universe and price paths live as long as the server: keep them out of the
    # cyclic collector's generations so its pauses do not delay trade_updates events.
    gc.collect()
    gc.freeze()
    server = uvicorn_server(emulator)
    server.run(sockets=[sock])
    return server._captured_signals[0] if server._captured_signals else None


class EmulatorServer:
    """An emulator on a loopback port in a background thread (tests and benchmarks).

    ``with EmulatorServer(EmulatorConfig(...)) as srv:`` gives ``srv.base_url``,
    ``srv.stream_url``, ``srv.data_url`` and ``srv.emulator``.
    """

    def __init__(
        self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ):
        self.config = config or EmulatorConfig()
        self.host = host
        self.port = port
        self.emulator: Emulator | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.urls: dict[str, str] = {}

    @property
    def base_url(self) -> str:
        return self.urls["base_url"]

    @property
    def stream_url(self) -> str:
        return self.urls["stream_url"]

    @property
    def data_url(self) -> str:
        return self.urls["data_url"]

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        self.emulator = Emulator(self.config)
        sock = bind(self.host, self.port)
        self.urls = urls(sock)
        self._server = uvicorn_server(self.emulator)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="mqd-emulator", daemon=True
        )
        self._thread.start()
        ready = threading.Event()
        waited = 0.0
        while not self._server.started and waited < timeout and self._thread.is_alive():
            ready.wait(0.01)
            waited += 0.01
        if not self._server.started:
            self.stop()
            raise RuntimeError("the emulator did not start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
