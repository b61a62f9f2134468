"""Announcements: the reply says whether the display really showed them. Against a real local
HTTP server (http.server in a thread) and a real command."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from gatectl.runtime.app import App, simulated_boards
from gatectl.config import parse_config
from gatectl.config.base import ConfigError
from gatectl.hw.display import Display
from gatectl.gates.ebike.gate import EbikeGate
from gatectl.sync.signing import generate_private_key, public_key_b64, sign_command
from gatectl.vision.objects import Detection
from tests.conftest import wait_for


class Panel:
    """A door panel's announcement endpoint: records what it was sent; answers ``status``."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.status = 200
        panel = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", 0))
                panel.received.append({"path": self.path, "type": self.headers.get("Content-Type"),
                                       "body": json.loads(self.rfile.read(n))})
                self.send_response(panel.status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/announce"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def panel():
    p = Panel()
    yield p
    p.close()


def device(tmp_path, display: dict | None):
    key = generate_private_key()
    cfg = {"sync": {"enabled": True, "command_keys": {"k1": public_key_b64(key)}},
           "outputs": [{"name": "door"}], "doors": [{"name": "front", "output": "door"}]}
    if display is not None:
        cfg["display"] = display
    cfg = parse_config(cfg)
    app = App(cfg, tmp_path / "state", boards=simulated_boards(cfg))
    client = app.sync_client(dict, lambda: "no reload")  # not started: commands fed directly

    def announce(args: dict) -> dict:
        body = sign_command(key, "k1", cfg.device.id, "display.announce", args, now=time.time())
        return client.on_command(json.dumps(body).encode())

    return app, announce


def test_announcement_is_shown_only_when_the_http_display_accepted_it(tmp_path, panel):
    app, announce = device(tmp_path, {"kind": "http", "url": panel.url})
    try:
        resp = announce({"text": "Water off 9-12 tomorrow", "door": "front", "seconds": 3600})
        assert resp["ok"] and resp["result"] == f"announcement 1 shown on {panel.url}", resp
        [got] = panel.received
        assert got["path"] == "/announce" and got["type"].startswith("application/json")
        assert got["body"]["text"] == "Water off 9-12 tomorrow" and got["body"]["door"] == "front"
        assert got["body"]["until"] > time.time() + 3500
        panel.status = 503
        resp = announce({"text": "Lift 2 out of service"})
        assert resp["result"] == f"announcement 2 stored, not shown: display {panel.url} answered HTTP 503"
        panel.close()
        resp = announce({"text": "again"})
        assert resp["result"].startswith(f"announcement 3 stored, not shown: display {panel.url} unreachable")
        assert [a["text"] for a in app.store.announcements()] == ["again", "Lift 2 out of service",
                                                                  "Water off 9-12 tomorrow"]
    finally:
        app.close()


def test_without_a_display_the_reply_does_not_say_shown(tmp_path):
    app, announce = device(tmp_path, None)
    try:
        resp = announce({"text": "Water off"})
        assert resp["ok"] and resp["result"] == ("announcement 1 stored, not shown: no display configured "
                                                 "([display] kind in the config)")
    finally:
        app.close()


def test_command_display_gets_the_announcement_on_stdin(tmp_path):
    out = tmp_path / "shown.json"
    script = f"import sys; open({str(out)!r}, 'wb').write(sys.stdin.buffer.read())"
    app, announce = device(tmp_path, {"kind": "command", "command": [sys.executable, "-c", script]})
    try:
        resp = announce({"text": "电梯维修 Lift maintenance"})
        assert resp["result"] == f"announcement 1 shown by {sys.executable}"
        assert json.loads(out.read_text("utf-8"))["text"] == "电梯维修 Lift maintenance"
    finally:
        app.close()
    app, announce = device(tmp_path / "b", {"kind": "command",
                                            "command": [sys.executable, "-c", "import sys; sys.exit('no panel')"]})
    try:
        assert announce({"text": "x"})["result"] == (f"announcement 1 stored, not shown: display command "
                                                     f"{sys.executable} exited 1: no panel")
    finally:
        app.close()


def test_ebike_announcement_goes_to_the_display(tmp_path, panel):
    """The e-bike gate's announcement is queued to the display (a gate worker never waits)."""
    cfg = parse_config({"outputs": [{"name": "hold"}], "elevators": [{"name": "car", "hold_output": "hold"}],
                        "cameras": [{"name": "c", "source": "0"}],
                        "gates": [{"kind": "ebike", "name": "e", "camera": "c", "elevator": "car",
                                   "confirm_frames": 1, "confirm_window": 1}],
                        "display": {"kind": "http", "url": panel.url}})
    app = App(cfg, tmp_path / "state", boards=simulated_boards(cfg))
    try:
        # decide() is the step after the detector, so no model is needed for this
        gate = EbikeGate(cfg.gates[0], None, app.controls, app.store, 120, time.time, display=Display(cfg.display))
        det = Detection(np.array([0, 0, 10, 10], np.float32), 0.9, "motorcycle")
        assert [d.decision for d in gate.decide([det], np.zeros((20, 20, 3), np.uint8), 0.0)] == ["ebike"]
        wait_for(lambda: panel.received, 5, "the announcement on the panel")
        assert panel.received[0]["body"]["text"].startswith("电动车禁止进入电梯")
        assert panel.received[0]["body"]["door"] == "car"
    finally:
        app.close()


@pytest.mark.parametrize("display,message", [
    ({"kind": "http"}, 'display: kind = "http" needs url'),
    ({"kind": "http", "url": "file:///etc/passwd"}, "display.url:"),
    ({"kind": "command"}, 'display: kind = "command" needs command'),
    ({"url": "http://panel/"}, "display: url and command need kind"),
    ({"kind": "http", "url": "http://panel/", "timeout_s": 600}, "display.timeout_s:"),
])
def test_display_config_is_checked(display, message):
    with pytest.raises(ConfigError) as exc:
        parse_config({"display": display})
    assert exc.value.lines[0].startswith(message), exc.value.lines
