"""The local status page, /healthz and /metrics: the routes (Starlette) and `StatusServer`, which
serves them on `server.HttpServer`. The handlers run on the server's event loop: what they
read (health counters, one SQLite query on the view's own connection) takes well under a
millisecond, and a hop to a worker thread would cost more than that under the GIL while a gate
analyses a frame; only scrypt and JPEG encoding go to worker threads.

Every request is hostile: paths are looked up, never joined; bodies are read up to a small
limit; logins are checked at a bounded rate; text from the device (names, plates, reasons)
reaches the page only as JSON that the page sets as text.

Bound to loopback the page is open (whoever is on the device is already in); bound elsewhere
every route but the login form needs a session cookie or HTTP Basic credentials (for a
Prometheus scraper), both against `[status].password_hash`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import CollectorRegistry
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from gatectl.config.status import StatusConfig
from gatectl.core.metrics import REGISTRY, HealthMetrics
from gatectl.core.refusals import Refusals, TokenBucket
from gatectl.web.auth import Sessions, verify_password
from gatectl.web.draw import annotate
from gatectl.web.server import HttpServer
from gatectl.web.view import StatusView

log = logging.getLogger("gatectl.web")

STATIC = Path(__file__).parent / "static"
PAGES = {name: (STATIC / name).read_bytes() for name in ("page.html", "login.html")}
ASSETS = {"page.js": "text/javascript", "page.css": "text/css"}
COOKIE = "gatectl_session"
MAX_FORM = 4096  # bytes of a login form
LOGINS_PER_S, LOGIN_BURST = 0.5, 5  # password checks (scrypt: CPU and memory) across all clients
EVENT_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")  # a ULID
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class StatusApp:
    """The routes over one view; ``registry`` holds what /metrics exposes."""

    def __init__(self, cfg: StatusConfig, view: StatusView, registry: CollectorRegistry):
        self.cfg = cfg
        self.view = view
        self.registry = registry
        self.sessions = Sessions(cfg.session_hours * 3600)
        self.logins = TokenBucket(LOGINS_PER_S, LOGIN_BURST)
        self.refusals = Refusals(per_s=0.2, burst=5)
        self._lock = threading.Lock()
        self._frames: dict[str, tuple[float, bytes]] = {}  # camera -> (view time, JPEG)
        self._basic_ok: bytes | None = None  # digest of the last Authorization header that passed
        routes = [
            Route("/", self.page),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/static/{name}", self.asset),
            Route("/api/status", self.status),
            Route("/live/{camera}", self.live),
            Route("/snapshot/{event_id}", self.snapshot),
            Route("/healthz", self.healthz),
            Route("/metrics", self.metrics),
        ]
        self.app = Starlette(routes=routes)

    # ---- access ----------------------------------------------------------------------------

    async def _authorised(self, request: Request) -> bool:
        if not self.cfg.protected:
            return True
        if self.sessions.valid(request.cookies.get(COOKIE)):
            return True
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic ") or len(header) > 2048:
            return False
        digest = hashlib.sha256(header.encode()).digest()
        with self._lock:
            if self._basic_ok is not None and hmac.compare_digest(digest, self._basic_ok):
                return True
        try:
            _, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except ValueError:
            return False
        if not await run_in_threadpool(self._check, password, self._client(request)):
            return False
        with self._lock:
            self._basic_ok = digest
        return True

    def _check(self, password: str, client: str) -> bool:
        """One password check within the shared budget; a refusal costs one counted line."""
        if not self.logins.take():
            self.refusals.refuse("status", "login rate", client)
            return False
        if self.cfg.password_hash is None or not verify_password(password, self.cfg.password_hash):
            self.refusals.refuse("status", "wrong password", client)
            return False
        return True

    @staticmethod
    def _client(request: Request) -> str:
        return request.client.host if request.client else "?"

    def _denied(self, request: Request, basic: bool = False) -> Response:
        if request.url.path == "/":
            return RedirectResponse("/login", status_code=303, headers=HEADERS)
        extra = {"WWW-Authenticate": 'Basic realm="gatectl"'} if basic else {}
        return PlainTextResponse("login required\n", 401, headers={**HEADERS, **extra})

    # ---- pages -----------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        if not await self._authorised(request):
            return self._denied(request)
        return Response(PAGES["page.html"], media_type="text/html", headers=HEADERS)

    async def login_form(self, request: Request) -> Response:
        return Response(PAGES["login.html"], media_type="text/html", headers=HEADERS)

    async def login(self, request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                self.refusals.refuse("status", "form too large", self._client(request))
                return PlainTextResponse("form too large\n", 413, headers=HEADERS)
        try:
            form = parse_qs(body.decode("utf-8"), max_num_fields=4)
        except (UnicodeDecodeError, ValueError):
            form = {}
        password = (form.get("password") or [""])[0]
        ok = self.cfg.protected and await run_in_threadpool(
            self._check, password, self._client(request))
        if not ok:
            return Response(PAGES["login.html"], 401, media_type="text/html", headers=HEADERS)
        response = RedirectResponse("/", status_code=303, headers=HEADERS)
        response.set_cookie(COOKIE, self.sessions.new(), max_age=round(self.sessions.lifetime_s),
                            secure=True, httponly=True, samesite="strict")
        return response

    async def logout(self, request: Request) -> Response:
        self.sessions.end(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303, headers=HEADERS)
        response.delete_cookie(COOKIE)
        return response

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return PlainTextResponse("not found\n", 404, headers=HEADERS)
        return FileResponse(STATIC / name, media_type=ASSETS[name], headers=HEADERS)

    # ---- data ------------------------------------------------------------------------------

    async def status(self, request: Request) -> Response:
        """Everything the page shows but the pictures, as JSON."""
        if not await self._authorised(request):
            return self._denied(request)
        v = self.view
        events = [
            {"id": e.id, "ts": e.ts, "gate": e.gate, "kind": e.kind, "decision": e.decision,
             "reason": e.reason, "resident_id": e.resident_id, "watchlist_id": e.watchlist_id,
             "score": e.score, "snapshot": f"/snapshot/{e.id}" if e.snapshot else None}
            for e in v.events(self.cfg.events_shown)
        ]
        cameras = []
        for name in v.cameras():
            frame = v.frame(name)
            marks = [{"label": m.label, "what": m.what} for m in frame.marks] if frame else []
            cameras.append({"name": name, "live": f"/live/{name}", "marks": marks})
        body = {"cameras": cameras, "states": v.states(), "events": events,
                "announcement": v.announcement(), "health": v.health(),
                "frame_interval_ms": self.cfg.frame_interval_ms, "protected": self.cfg.protected}
        return JSONResponse(body, headers=HEADERS)

    async def live(self, request: Request) -> Response:
        """The camera's last analysed frame, annotated; encoded once per new frame (in a worker
        thread: the other requests go on meanwhile)."""
        if not await self._authorised(request):
            return self._denied(request)
        camera = request.path_params["camera"]
        if camera not in self.view.cameras():
            return PlainTextResponse("no such camera\n", 404, headers=HEADERS)
        frame = self.view.frame(camera)
        if frame is None:
            return PlainTextResponse("no frame yet\n", 503, headers=HEADERS)
        with self._lock:
            cached = self._frames.get(camera)
        if cached is None or cached[0] != frame.t:
            cached = (frame.t, await run_in_threadpool(annotate, frame))
            with self._lock:
                self._frames[camera] = cached
        return Response(cached[1], media_type="image/jpeg", headers=HEADERS)

    async def snapshot(self, request: Request) -> Response:
        if not await self._authorised(request):
            return self._denied(request)
        event_id = request.path_params["event_id"]
        path = self.view.snapshot(event_id) if EVENT_ID.fullmatch(event_id) else None
        if path is None or not path.is_file():
            return PlainTextResponse("no such snapshot\n", 404, headers=HEADERS)
        return FileResponse(path, media_type="image/jpeg", headers=HEADERS)

    async def healthz(self, request: Request) -> Response:
        """The health as JSON, 200 when the device does its job, 503 with the problems if not
        (for `curl -f` and load balancers)."""
        if not await self._authorised(request):
            return self._denied(request, basic=True)
        h = self.view.health()
        problems = health_problems(h)
        body = {"status": "degraded" if problems else "ok", "problems": problems,
                "time": time.time(), "health": h}
        return JSONResponse(body, 503 if problems else 200, headers=HEADERS)

    async def metrics(self, request: Request) -> Response:
        if not await self._authorised(request):
            return self._denied(request, basic=True)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST,
                        headers=HEADERS)


def health_problems(h: dict[str, Any]) -> list[str]:
    """What in the health dict stops the device doing its job, one short line each."""
    out = [f"camera {n}: {c.get('state')}" for n, c in h.get("cameras", {}).items()
           if c.get("state") != "running"]
    out += [f"board {n}: {b.get('state')}" for n, b in h.get("boards", {}).items()
            if b.get("state") != "online"]
    out += [f"gate {n}: failing" for n, g in h.get("gates", {}).items() if g.get("failing")]
    if h.get("store_failing"):
        out.append(f"store: {h['store_failing']}")
    return out


class _Metrics(HealthMetrics):
    """gatectl's counters and histograms plus this view's health-derived series, so two servers
    in one process (tests) never register the same collector twice."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from super().collect()


class StatusServer:
    """The page over one view, served over HTTPS when `[status]` binds beyond loopback."""

    def __init__(self, cfg: StatusConfig, view: StatusView,
                 on_stop: Callable[[], None] | None = None):
        """``on_stop``: what the view holds open (its store connection), closed by `stop`."""
        self.cfg = cfg
        self.on_stop = on_stop
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Metrics(view.health))
        self.routes = StatusApp(cfg, view, registry)
        self._http: HttpServer | None = None
        self.port = cfg.port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.cfg.host == "localhost" else self.cfg.host
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.cfg.protected else 'http'}://{host}:{self.port}"

    def start(self) -> None:
        """Listen and serve; `server.ServeError` (one line naming the key) when the address is
        taken or the certificate unusable."""
        host = "127.0.0.1" if self.cfg.host == "localhost" else self.cfg.host
        tls = None
        if self.cfg.protected and self.cfg.tls_cert is not None and self.cfg.tls_key is not None:
            tls = (self.cfg.tls_cert, self.cfg.tls_key)
        self._http = HttpServer(self.routes.app, host, self.cfg.port, "status", tls)
        self.port = self._http.port
        self._http.start()
        log.info("status page on %s", self.url)

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
        if self.on_stop is not None:
            self.on_stop()
