"""The status server: uvicorn serving `StatusApp` in a thread of the daemon, on a socket bound
here (so a port in use is one line at start, and port 0 gives a free port to tests)."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import uvicorn
from prometheus_client.core import Metric

from gatectl.config.status import StatusConfig
from gatectl.core.errors import GatectlError
from gatectl.core.metrics import REGISTRY, HealthMetrics
from gatectl.web.app import StatusApp
from gatectl.web.view import StatusView

log = logging.getLogger("gatectl.web")

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 2
MAX_CONNECTIONS = 32  # beyond, 503 at once: a flood costs bounded work (a few pages are open)


class StatusError(GatectlError):
    """The page cannot be served: its port, certificate or key (one line naming the key)."""


class _Metrics(HealthMetrics):
    """gatectl's counters and histograms plus this view's health-derived series, so two servers
    in one process (tests) never register the same collector twice."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from super().collect()


class StatusServer:
    def __init__(self, cfg: StatusConfig, view: StatusView,
                 on_stop: Callable[[], None] | None = None):
        """``on_stop``: what the view holds open (its store connection), closed by `stop`."""
        from prometheus_client import CollectorRegistry

        self.cfg = cfg
        self.on_stop = on_stop
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Metrics(view.health))
        self.routes = StatusApp(cfg, view, registry)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = cfg.port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.cfg.bind == "localhost" else self.cfg.bind
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.cfg.protected else 'http'}://{host}:{self.port}"

    def _tls(self) -> dict[str, str]:
        if not self.cfg.protected:
            return {}
        cert, key = str(self.cfg.tls_cert), str(self.cfg.tls_key)
        try:  # uvicorn would fail inside its thread; here it is one line
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as exc:
            raise StatusError(f"status.tls_cert: cannot use {cert} with {key}: {exc}") from None
        return {"ssl_certfile": cert, "ssl_keyfile": key}

    def start(self) -> None:
        """Listen and serve; StatusError (one line) when the port or TLS files are unusable."""
        tls = self._tls()
        host = "127.0.0.1" if self.cfg.bind == "localhost" else self.cfg.bind
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY on accepted connections only when the
        # listening socket says TCP, and without it small responses wait for a delayed ACK (40 ms)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, self.cfg.port))
        except OSError as exc:
            sock.close()
            raise StatusError(
                f"status.port: cannot listen on {host}:{self.cfg.port} ({exc.strerror})"
            ) from None
        self.port = sock.getsockname()[1]
        # a page still loading must not hold up the daemon's stop (and the doors' locking)
        config = uvicorn.Config(self.routes.app, log_config=None, access_log=False,
                                lifespan="off", log_level="warning",
                                timeout_graceful_shutdown=STOP_TIMEOUT_S,
                                limit_concurrency=MAX_CONNECTIONS,
                                **tls)  # type: ignore[arg-type]
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                        name="status-page", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise StatusError(f"status: the page did not start on {self.url}")
            time.sleep(0.01)
        log.info("status page on %s", self.url)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=STOP_TIMEOUT_S + 3)
        if self.on_stop is not None:
            self.on_stop()
