"""The endpoint AI cameras post their e-bike detections to: ``POST /v1/ebike/<camera>``.

The body is JSON ``{"t": <unix seconds>, "nonce": "<8-64 of A-Z a-z 0-9 _ ->", "ebike": true}``
(``false``: the e-bike is gone), signed with the camera's secret: header
``X-Signature: sha256=<hex HMAC-SHA256 of the exact body>``. What a report can do is hold a car,
so nothing unauthenticated gets that far, and each check costs bounded work, in this order: the
camera is known, the body is at most ``push.max_body`` bytes (read no further), the signature
matches, the JSON is a report, its time is within ``push.max_skew_s`` of the device clock and
its nonce is new (a captured report replayed is refused), the camera is within its rate. Every
refusal is counted and logged within the refusal budget (`core.refusals`); an accepted report
goes to `Controls.camera_report`, where the same confirmation, cap and fire-alarm override
apply as for a wired ``ebike_detected`` contact.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated

from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gatectl.config.push import PushConfig
from gatectl.core.refusals import Refusals, TokenBucket
from gatectl.sync.inbound import InboundModel, Refused, load_json, validated

REPORTS_PER_S = 10.0  # a camera reporting faster than this is misconfigured or not a camera
REPORT_BURST = 20


class Report(InboundModel):
    t: float = Field(ge=0, le=1e10)
    nonce: Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    ebike: bool


class PushEndpoint:
    """The checks, apart from HTTP (so they are tested on their own as well as over a socket)."""

    def __init__(
        self,
        cfg: PushConfig,
        report: Callable[[str, bool], None],
        wall_clock: Callable[[], float],
        refusals: Refusals,
    ) -> None:
        self.cfg = cfg
        self.report = report
        self.wall_clock = wall_clock
        self.refusals = refusals
        self.secrets = {c.name: bytes.fromhex(c.secret) for c in cfg.cameras}
        self.nonces: dict[str, OrderedDict[str, float]] = {
            c.name: OrderedDict() for c in cfg.cameras
        }
        self.rates = {c.name: TokenBucket(REPORTS_PER_S, REPORT_BURST) for c in cfg.cameras}
        self.accepted = 0

    def handle(self, camera: str, body: bytes, signature: str | None) -> tuple[int, str]:
        """(HTTP status, reason): 204 "accepted" or the refusal."""
        try:
            self._check(camera, body, signature)
        except Refused as exc:
            status = {"unknown_camera": 404, "too_large": 413, "unsigned": 401,
                      "bad_signature": 401, "stale": 401, "replayed": 409,
                      "rate": 429}.get(exc.reason, 400)
            self.refusals.refuse("push", exc.reason, exc.detail)
            return status, exc.reason
        self.accepted += 1
        return 204, "accepted"

    def _check(self, camera: str, body: bytes, signature: str | None) -> None:
        secret = self.secrets.get(camera)
        if secret is None:
            raise Refused("unknown_camera", f"camera {camera!r}")
        if len(body) > self.cfg.max_body:
            raise Refused("too_large", f"camera {camera}: body over {self.cfg.max_body} bytes")
        if not signature or not signature.startswith("sha256="):
            raise Refused("unsigned", f"camera {camera}: no X-Signature: sha256=...")
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature[7:].strip().lower()):
            raise Refused("bad_signature", f"camera {camera}")
        report = validated(Report, load_json(body), "report")
        now = self.wall_clock()
        if abs(now - report.t) > self.cfg.max_skew_s:
            raise Refused("stale", f"camera {camera}: report time {report.t:.0f}, "
                                   f"device clock {now:.0f}")
        seen = self.nonces[camera]
        while seen and next(iter(seen.values())) < now - 2 * self.cfg.max_skew_s:
            seen.popitem(last=False)  # older than any report still in time: forget it
        if report.nonce in seen:
            raise Refused("replayed", f"camera {camera}: nonce seen before")
        if not self.rates[camera].take():
            raise Refused("rate", f"camera {camera}: over {REPORTS_PER_S:g} reports/s")
        seen[report.nonce] = now  # bounded: the rate limit times the expiry window
        self.report(camera, report.ebike)

    def app(self) -> Starlette:
        async def push(request: Request) -> Response:
            camera = request.path_params["camera"]
            body = bytearray()
            async for chunk in request.stream():  # never more than max_body + one chunk
                body += chunk
                if len(body) > self.cfg.max_body:
                    break
            status, reason = self.handle(camera, bytes(body), request.headers.get("x-signature"))
            if status == 204:
                return Response(status_code=204)
            return JSONResponse({"refused": reason}, status_code=status)

        app = Starlette(routes=[Route("/v1/ebike/{camera}", push, methods=["POST"])])
        app.state.endpoint = self  # its counters, for health and tests
        return app
