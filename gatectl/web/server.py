"""An ASGI app served by uvicorn on a thread of its own, inside the daemon.

The daemon's loop is threads, not asyncio, so each HTTP listener gets one thread running its own
event loop. The socket is bound here, before uvicorn starts, so an address in use or not
allowed is one line naming the config key - uvicorn itself would log and exit the process.
Signals stay with the daemon (uvicorn only takes them on the main thread).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from gatectl.core.errors import GatectlError

START_TIMEOUT_S = 10.0


class ServeError(GatectlError):
    """A listener that cannot start (address in use, not allowed, bad certificate)."""


class HttpServer:
    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        where: str,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """``where``: the config section, for errors (``push``); ``tls``: certificate and key
        files to serve HTTPS."""
        self.app = app
        self.where = where
        self.tls = tls
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise ServeError(f"{where}.host/port: cannot listen on {host}:{port}: "
                             f"{exc.strerror or exc}") from None
        self.port = int(self.sock.getsockname()[1])
        self.scheme = "https" if tls else "http"
        if tls:
            try:  # a bad certificate is a config error here, not a thread dying later
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(*map(str, tls))
            except (OSError, ssl.SSLError) as exc:
                self.sock.close()
                raise ServeError(f"{where}.tls_cert: cannot load certificate/key: {exc}") from None
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            ssl_certfile=str(tls[0]) if tls else None,
            ssl_keyfile=str(tls[1]) if tls else None,
            timeout_keep_alive=5,
            limit_concurrency=64,  # bounded: a flood of connections is refused, not queued
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name=f"http-{where}", daemon=True)

    def _run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self) -> None:
        """Serve; returns once the listener accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ServeError(f"{self.where}: the HTTP listener did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        self.sock.close()
