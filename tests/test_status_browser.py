"""The status page of a real `gatectl run` (the runner with the real face gate on an image-folder
camera, uvicorn over HTTPS with the password): the HTTP endpoints, then the page in a real
headless Chromium - the login is enforced, the live view updates, and an event appears once a
resident walks past. A screenshot goes to artifacts/."""

from __future__ import annotations

import shutil
import threading

import httpx
import pytest

from gatectl.config import parse_config
from gatectl.hw.relay import SimulatedRelay
from gatectl.runtime.app import App
from gatectl.runtime.runner import Runner
from gatectl.web.auth import hash_password
from tests.conftest import FACES, NOFACE, REPO, enroll, wait_for
from tests.status_rig import PASSWORD, self_signed

ARTIFACTS = REPO / "artifacts"
SLOW = 180  # s: model loading and face analysis on a loaded 2-core machine


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """`Runner.run` in a thread: one face gate on a folder of photos with no face in them (a
    resident's photo is added by the test), the status page on every address."""
    tmp = tmp_path_factory.mktemp("status")
    camera = tmp / "camera"
    camera.mkdir()
    for photo in sorted(NOFACE.iterdir()):
        shutil.copy(photo, camera / photo.name)
    cert, key = self_signed(tmp / "tls")
    cfg = parse_config({
        "cameras": [{"name": "lobby", "source": str(camera), "loop": True, "fps": 4}],
        "outputs": [{"name": "door", "channel": 0}],
        "doors": [{"name": "door", "output": "door"}],
        "gates": [{"kind": "face", "name": "lobby", "camera": "lobby", "door": "door"}],
        "status": {"enabled": True, "host": "0.0.0.0", "port": 0,
                   "password_hash": hash_password(PASSWORD), "tls_cert": str(cert),
                   "tls_key": str(key), "frame_interval_ms": 250},
    })
    app = App(cfg, tmp / "state", boards={"main": SimulatedRelay()})
    enroll(app, "Rose Leslie", "rose_leslie_01.jpg")
    enroll(app, "Kit Harington", "kit_harington_01.jpeg")
    runner = Runner(app)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: runner.status is not None or not thread.is_alive(), timeout=SLOW,
                 what="the status page")
        assert runner.status is not None, "the runner stopped before serving the page"
        yield runner, camera, f"https://127.0.0.1:{runner.status.port}"
    finally:
        runner.stop.set()
        thread.join(timeout=60)
        app.close()
    assert not thread.is_alive()
    with pytest.raises(httpx.ConnectError):  # the page went with the daemon
        httpx.get(f"https://127.0.0.1:{runner.status.port}/healthz", verify=False, timeout=5)


def walk_past(camera, photo: str):
    """A resident in front of the camera: the folder source lists the photo on its next pass."""
    shutil.copy(FACES / photo, camera / f"zz_{photo}")


def sample(text: str, series: str) -> float:
    """The value of one series in a Prometheus exposition."""
    [value] = [line.split()[-1] for line in text.splitlines() if line.startswith(series + " ")]
    return float(value)


def test_endpoints_of_a_running_daemon(daemon):
    runner, camera, base = daemon
    auth = ("admin", PASSWORD)
    with httpx.Client(base_url=base, verify=False, timeout=30, auth=auth) as c:
        assert httpx.get(f"{base}/healthz", verify=False, timeout=30).status_code == 401
        h = wait_for(lambda: (r := c.get("/healthz")).status_code == 200 and r.json(),
                     timeout=SLOW, what="a healthy daemon", step=0.2)
        assert h["status"] == "ok" and h["health"]["cameras"]["lobby"]["state"] == "running"
        assert h["health"]["controls"] == {"door:door": "locked"}
        assert "cpu_percent" in h["health"] and "temperature_c" in h["health"]
        wait_for(lambda: c.get("/live/lobby").status_code == 200, timeout=SLOW,
                 what="the first analysed frame", step=0.2)
        assert c.get("/live/lobby").content[:2] == b"\xff\xd8"
        walk_past(camera, "rose_leslie_02.jpg")
        marks = wait_for(lambda: [m for m in c.get("/api/status").json()["cameras"][0]["marks"]
                                  if m["label"] == "Rose Leslie"], timeout=SLOW,
                         what="her face named on the live view", step=0.05)
        assert marks[0]["what"] == "face_known"

        def metrics_once_granted() -> str | None:
            text = c.get("/metrics").text
            return text if 'gatectl_decisions_total{kind="face",outcome="granted"}' in text else None

        text = wait_for(metrics_once_granted, timeout=SLOW, what="the grant counted", step=0.2)
        assert 'gatectl_inference_seconds_count{stage="face_detect"}' in text
        assert 'gatectl_relay_commands_total{board="main",command="pulse"}' in text
        assert sample(text, "gatectl_store_write_seconds_count") > 0
        assert sample(text, 'gatectl_frames_analysed_total{gate="lobby"}') > 0
        assert sample(text, 'gatectl_camera_up{camera="lobby"}') == 1
        runner.app.store.announce("lift 2 out of service", None, None)
        assert c.get("/api/status").json()["announcement"] == "lift 2 out of service"
        [granted] = [e for e in c.get("/api/status").json()["events"]
                     if e["decision"] == "granted"]
        assert granted["resident_id"] == 1 and c.get(granted["snapshot"]).content[:2] == b"\xff\xd8"


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium; skipped only where it is not installed (`.ci/run` installs
    chromium and chromium-driver)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("chromium / chromium-driver not installed (apt-get install chromium "
                    "chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-background-networking",
                "--disable-dev-shm-usage", "--ignore-certificate-errors", "--window-size=1280,1600"):
        opts.add_argument(arg)
    b = webdriver.Chrome(options=opts, service=Service(driver))
    b.set_page_load_timeout(60)
    yield b
    b.quit()


def test_the_page_in_chromium(daemon, browser):
    from selenium.webdriver.common.by import By

    runner, camera, base = daemon
    browser.get(base + "/")
    assert browser.current_url == base + "/login"  # no session: the login form
    browser.find_element(By.ID, "password").send_keys("not the password")
    browser.find_element(By.ID, "submit").click()
    wait_for(lambda: browser.find_elements(By.ID, "password"), timeout=30, what="the form again")
    browser.get(base + "/")
    assert browser.current_url == base + "/login"  # still refused
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "submit").click()
    wait_for(lambda: browser.current_url == base + "/", timeout=30, what="the page after login")

    def picture() -> bytes | None:
        imgs = browser.find_elements(By.CSS_SELECTOR, "#cam-lobby img")
        if not imgs or not browser.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0", imgs[0]):
            return None
        return imgs[0].screenshot_as_png

    first = wait_for(picture, timeout=SLOW, what="the live view", step=0.2)
    wait_for(lambda: (p := picture()) is not None and p != first, timeout=SLOW,
             what="the live view to change", step=0.2)
    assert "Log out" in browser.find_element(By.ID, "logout").text

    def granted_rows() -> list[tuple[str, str, int]]:
        """(event id, row text, snapshot width) of the granted rows, read in one script: the
        page re-renders the table every refresh."""
        rows = browser.execute_script(
            "return [...document.querySelectorAll('tr.event')].map(r => [r.dataset.id, "
            "r.textContent, (r.querySelector('img') || {naturalWidth: 0}).naturalWidth])")
        return [tuple(r) for r in rows if "granted" in r[1]]

    before = {r[0] for r in granted_rows()}
    walk_past(camera, "kit_harington_02.jpeg")
    new = wait_for(lambda: [r for r in granted_rows() if r[0] not in before and r[2] > 0],
                   timeout=SLOW, what="his pass on the page, with its snapshot", step=0.2)
    assert "resident #2" in new[0][1]
    assert "door:door" in browser.find_element(By.ID, "states").text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "status_page.png"))
    assert (ARTIFACTS / "status_page.png").stat().st_size > 10_000
