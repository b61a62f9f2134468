"""The status page (`gatectl.web`): its config, the password hash, the routes over a stand-in
view (Starlette's TestClient), and the real uvicorn server over HTTPS with the login enforced."""

from __future__ import annotations

import socket
import subprocess
import sys

import cv2
import httpx
import numpy as np
import pytest
from starlette.testclient import TestClient

from gatectl.config import parse_config
from gatectl.config.base import ConfigError
from gatectl.config.status import StatusConfig
from gatectl.core.metrics import DECISIONS
from gatectl.web.status import EVENT_ID, StatusServer
from gatectl.web.auth import hash_password, verify_password
from gatectl.web.server import ServeError
from tests.conftest import REPO, wait_for
from tests.status_rig import PASSWORD, StandInView, self_signed

HASH = hash_password(PASSWORD)


def errors_of(status: dict) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config({"status": status})
    return exc.value.lines


def test_off_by_default_and_local_only_by_default():
    cfg = parse_config({}).status
    assert (cfg.enabled, cfg.host, cfg.protected) == (False, "127.0.0.1", False)
    assert parse_config({"status": {"enabled": True, "host": "::1"}}).status.protected is False


def test_a_network_address_needs_a_password_hash_and_tls(tmp_path):
    assert errors_of({"enabled": True, "host": "0.0.0.0"}) == [
        f"status.{k}: required when status.host = '0.0.0.0' (not loopback)"
        for k in ("password_hash", "tls_cert", "tls_key")]
    assert errors_of({"enabled": True, "host": "0.0.0.0", "password_hash": HASH,
                      "tls_cert": "/c.pem"}) == [
        "status.tls_key: required when status.host = '0.0.0.0' (not loopback)"]
    cfg = parse_config({"status": {"enabled": True, "host": "0.0.0.0", "password_hash": HASH,
                                   "tls_cert": str(tmp_path / "c.pem"),
                                   "tls_key": str(tmp_path / "k.pem")}})
    assert [p.split(":")[0] for p in cfg.startup_problems() if p.startswith("status")] == [
        "status.tls_cert", "status.tls_key"]


@pytest.mark.parametrize("status, key", [
    ({"password_hash": PASSWORD}, "status.password_hash"),  # a clear password is refused
    ({"password_hash": HASH.replace("$14$", "$30$")}, "status.password_hash"),  # unbounded cost
    ({"host": "gate.example.org"}, "status.host"),
    ({"port": 70000}, "status.port"),
    ({"session_hours": 0}, "status.session_hours"),
])
def test_bad_values_are_one_line_naming_the_key(status, key):
    [line] = errors_of(status)
    assert line.startswith(f"{key}: "), line


def test_hash_password_prints_a_line_the_config_takes():
    r = subprocess.run([sys.executable, "-m", "gatectl", "status", "hash-password"], cwd=REPO,
                       input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith('password_hash = "scrypt$14$8$1$') and PASSWORD not in line
    stored = line.split('"')[1]
    cfg = parse_config({"status": {"password_hash": stored}}).status
    assert verify_password(PASSWORD, cfg.password_hash)
    assert not verify_password(PASSWORD + "x", cfg.password_hash)
    assert stored != hash_password(PASSWORD)  # salted
    r = subprocess.run([sys.executable, "-m", "gatectl", "status", "hash-password"], cwd=REPO,
                       input="\n", capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stderr.strip()) == (2, "gatectl: the password is empty")


@pytest.fixture
def local(tmp_path):
    snap = tmp_path / "snap.jpg"
    cv2.imwrite(str(snap), np.zeros((8, 8, 3), np.uint8))
    view = StandInView(snap)
    server = StatusServer(StatusConfig(enabled=True), view)
    return view, TestClient(server.routes.app)


def test_local_page_routes(local):
    view, client = local
    page = client.get("/")
    assert page.status_code == 200 and "/static/page.js" in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'self'
    assert client.get("/static/page.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/../app.py").status_code == 404
    s = client.get("/api/status").json()
    assert [c["name"] for c in s["cameras"]] == ["lobby"]
    assert s["cameras"][0]["marks"][0] == {"label": "Rosé 李", "what": "face_known"}
    assert s["states"] == {"door:door": "locked"} and s["announcement"] == "no e-bikes in the lift"
    [ev] = s["events"]
    assert ev["reason"] == "resident <b>ok</b>" and ev["snapshot"] == f"/snapshot/{ev['id']}"
    assert EVENT_ID.fullmatch(ev["id"])
    assert client.get(ev["snapshot"]).content[:2] == b"\xff\xd8"
    assert client.get("/snapshot/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert client.get("/snapshot/01JTESTEVENT0000000000000B").status_code == 404


def test_a_snapshot_id_with_anything_after_it_is_never_looked_up(local):
    """The whole path segment is the event id (Python's ``$`` alone also matches before a final
    newline, so "/snapshot/<id>%0A" reached the view's lookup)."""
    view, client = local
    for tail in ("%0A", "%0D%0A", "%20"):
        r = client.get(f"/snapshot/{view.event.id}{tail}")
        assert (r.status_code, r.text) == (404, "no such snapshot\n"), tail
    assert view.snapshots_asked == []


def test_live_view_is_an_annotated_jpeg_that_follows_the_frames(local):
    view, client = local
    first = client.get("/live/lobby")
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    assert client.get("/live/lobby").content == first.content  # same frame: encoded once
    view.step()
    second = client.get("/live/lobby").content
    assert second != first.content
    image = cv2.imdecode(np.frombuffer(second, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (240, 320, 3)
    assert abs(int(image[50, 10, 1]) - 200) < 40  # the known face's green box is drawn
    assert client.get("/live/nope").status_code == 404


def test_healthz_and_metrics(local):
    view, client = local
    h = client.get("/healthz")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    assert h.json()["health"]["gates"]["lobby"]["frames"] == 40
    DECISIONS.labels("face", "granted").inc()
    text = client.get("/metrics").text
    for line in ('gatectl_frames_analysed_total{gate="lobby"} 40.0',
                 'gatectl_frames_skipped_total{gate="lobby"} 3.0',
                 'gatectl_camera_outages_total{camera="lobby"} 2.0',
                 "gatectl_outbox_depth 4.0", "gatectl_outbox_oldest_age_seconds 12.5",
                 "gatectl_sync_connected 1.0"):
        assert line in text, line
    assert 'gatectl_decisions_total{kind="face",outcome="granted"}' in text
    assert "# TYPE gatectl_inference_seconds histogram" in text
    assert "process_cpu_seconds_total" not in text  # our own registry, not the global one
    view.health = lambda: {**StandInView().health(), "cameras": {"lobby": {"state": "reconnecting"}}}
    h = client.get("/healthz")
    assert h.status_code == 503 and h.json()["problems"] == ["camera lobby: reconnecting"]


@pytest.fixture
def protected(tmp_path):
    """The real uvicorn server bound to every address: HTTPS and the password."""
    cert, key = self_signed(tmp_path / "tls")
    cfg = StatusConfig(enabled=True, host="0.0.0.0", port=0, password_hash=HASH,
                       tls_cert=cert, tls_key=key)
    server = StatusServer(cfg, StandInView())
    server.start()
    yield server
    server.stop()


def test_real_server_enforces_the_login_over_https(protected):
    base = f"https://127.0.0.1:{protected.port}"
    with httpx.Client(base_url=base, verify=False, timeout=30) as c:
        assert c.get("/").status_code == 303 and c.get("/").headers["location"] == "/login"
        for path in ("/api/status", "/live/lobby", "/healthz", "/metrics"):
            assert c.get(path).status_code == 401, path
        assert c.get("/login").status_code == 200
        assert c.post("/login", data={"password": "wrong"}).status_code == 401
        assert c.post("/login", content=b"x" * 10_000,
                      headers={"content-type": "application/x-www-form-urlencoded"}
                      ).status_code == 413
        assert "gatectl_session" not in c.cookies
        r = c.post("/login", data={"password": PASSWORD})
        assert r.status_code == 303
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=strict" in cookie
        assert c.get("/api/status").status_code == 200
        assert c.get("/live/lobby").content[:2] == b"\xff\xd8"
        c.post("/logout")
        assert c.get("/api/status").status_code == 401
    with httpx.Client(base_url=base, verify=False, timeout=30) as scraper:
        assert scraper.get("/metrics", auth=("prometheus", "nope")).status_code == 401
        r = scraper.get("/metrics", auth=("prometheus", PASSWORD))
        assert r.status_code == 200 and "gatectl_frames_analysed_total" in r.text
    with pytest.raises(httpx.HTTPError):  # no plain HTTP on the protected port
        httpx.get(f"http://127.0.0.1:{protected.port}/healthz", timeout=10)


def test_password_checks_are_rate_limited(protected):
    base = f"https://127.0.0.1:{protected.port}"
    with httpx.Client(base_url=base, verify=False, timeout=30) as c:
        codes = [c.post("/login", data={"password": f"guess{i}"}).status_code for i in range(8)]
        assert codes.count(401) == 8
        # the budget is spent: even the right password waits for it to refill
        assert c.post("/login", data={"password": PASSWORD}).status_code == 401
    assert protected.routes.refusals.counts()["refused_status_login rate"] >= 3


def test_a_port_in_use_and_a_bad_certificate_are_one_line(protected, tmp_path):
    taken = StatusConfig(enabled=True, host="0.0.0.0", port=protected.port, password_hash=HASH,
                         tls_cert=protected.cfg.tls_cert, tls_key=protected.cfg.tls_key)
    with pytest.raises(ServeError, match=r"^status\.host/port: cannot listen on 0\.0\.0\.0:\d+: "):
        StatusServer(taken, StandInView()).start()
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    cfg = taken.model_copy(update={"port": 0, "tls_cert": bad})
    with pytest.raises(ServeError, match=r"^status\.tls_cert: cannot load certificate/key: "):
        StatusServer(cfg, StandInView()).start()


def test_a_page_that_cannot_start_is_one_line_and_the_run_goes_on(tmp_path, caplog):
    from gatectl.config import default_config
    from gatectl.runtime.app import App
    from gatectl.runtime.health import HealthCollector
    from gatectl.runtime.status_view import start_status

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        cfg = default_config().model_copy(update={"status": StatusConfig(enabled=True, port=port)})
        app = App(cfg, tmp_path / "state")
        try:
            assert start_status(app, HealthCollector, list, None) is None
        finally:
            app.close()
    assert [r.getMessage() for r in caplog.records if r.name == "gatectl.run"] == [
        f"status page not served: status.host/port: cannot listen on 127.0.0.1:{port}: "
        "Address already in use"]


def test_relay_commands_and_refusals_are_counted(tmp_path):
    """The counters bumped where things happen: a grant's pulse, a board refusing it."""
    from gatectl.config import default_config
    from gatectl.core.metrics import REGISTRY
    from gatectl.hw.relay import BoardError, SimulatedRelay
    from gatectl.runtime.app import App

    class Offline(SimulatedRelay):
        def pulse(self, channel: int, seconds: float) -> None:
            raise BoardError("/dev/ttyUSB0: board offline")

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    app = App(default_config(), tmp_path / "state", boards={"main": Offline()})
    try:
        sent, refused = (value("gatectl_relay_commands_total", board="main", command="pulse"),
                         value("gatectl_relay_errors_total", controller="door"))
        app.controls.grant("door", why="test")
        assert value("gatectl_relay_commands_total", board="main", command="pulse") == sent + 1
        assert value("gatectl_relay_errors_total", controller="door") == refused + 1
        assert [e.reason for e in app.store.events(kind="alert")] == [
            "output_failed: /dev/ttyUSB0: board offline"]
    finally:
        app.close()


def test_the_ebike_and_plate_gates_show_what_they_found(tmp_path):
    """Each kind's view(): the real detector's e-bike inside the car region, the plate as read."""
    from gatectl.runtime.app import App, simulated_boards
    from gatectl.sources.media import read_image
    from gatectl.web.draw import annotate
    from tests.test_ebike import EBIKE, site
    from tests.test_plates import PLATES, Lane

    region = [(0.0, 0.0), (0.65, 0.0), (0.65, 1.0), (0.0, 1.0)]
    cfg = parse_config(site(car_region=region))
    app = App(cfg, tmp_path / "ebike", boards=simulated_boards(cfg))
    try:
        gate = app.gate(cfg.gates[0])
        assert gate.view() is None  # nothing analysed yet
        moped = read_image(EBIKE / "paddle_elevator_pic_1.png")
        gate.process(moped, 0.0)
        v = gate.view()
        h, w = moped.shape[:2]
        assert v.image is moped and v.region == ((0, 0), (0.65 * w, 0), (0.65 * w, h), (0, h))
        [mark] = v.marks
        assert mark.what == "ebike" and mark.label.startswith("motorcycle 0.")
        assert cv2.imdecode(np.frombuffer(annotate(v), np.uint8), cv2.IMREAD_COLOR) is not None
    finally:
        app.close()
    lane = Lane(tmp_path / "plate")
    try:
        lane.lane.process(read_image(PLATES / "scenes" / "we0091234_Quicker_20220930_180856.png"), 0.0)
        [mark] = lane.lane.view().marks
        assert (mark.label, mark.what) == ("川A8H458", "plate")
    finally:
        lane.app.close()


def test_device_health_reads_the_thermal_zones_the_board_has(tmp_path):
    from gatectl.runtime.status_view import DeviceHealth

    for zone, kind, temp in (("thermal_zone0", "cpu-thermal", "48250\n"),
                             ("thermal_zone1", "gpu-thermal", None)):  # a zone without a reading
        (tmp_path / zone).mkdir()
        (tmp_path / zone / "type").write_text(kind + "\n")
        if temp is not None:
            (tmp_path / zone / "temp").write_text(temp)
    d = DeviceHealth(tmp_path)
    first = d.health()
    assert first["temperature_c"] == {"cpu-thermal": 48.2} and first["cpu_percent"] is None
    readings: list[float | None] = []
    wait_for(lambda: readings.append(d.health()["cpu_percent"]) or readings[-1] is not None,
             timeout=10, what="a CPU reading (the clock ticks between two)")
    assert 0 <= readings[-1] <= 100
    assert DeviceHealth(tmp_path / "none").health()["temperature_c"] == {}
