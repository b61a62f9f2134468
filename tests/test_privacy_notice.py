"""The face-recognition notice the 2025 Measures require, on the doors' display (a real
command display: a process that gets the JSON on stdin), and the runner's wiring of it."""

from __future__ import annotations

import json
import sys

from gatectl.config.hardware import DisplayConfig
from gatectl.config.readers import PrivacyConfig
from gatectl.hw.display import Display, PrivacyNotice
from tests.conftest import FakeClock, wait_for

SCRIPT = "import sys; open(sys.argv[1], 'a').write(sys.stdin.read() + '\\n')"


def test_the_notice_is_shown_on_every_face_door_at_start_and_again_when_due(tmp_path):
    out = tmp_path / "shown.jsonl"
    display = Display(DisplayConfig(kind="command", command=[sys.executable, "-c", SCRIPT,
                                                             str(out)]))
    clock = FakeClock()
    cfg = PrivacyConfig(notice_text="人脸识别使用中 / Face recognition in use: card or PIN "
                                    "at the reader instead", notice_every_s=600)
    notice = PrivacyNotice(display, cfg, ["lobby", "garage"], clock.monotonic)
    assert notice.tick() == 2
    lines = wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 2 and
                     out.read_text().splitlines(), 20, "two notices shown")
    shown = [json.loads(line) for line in lines]
    assert sorted(s["door"] for s in shown) == ["garage", "lobby"]
    assert {s["text"] for s in shown} == {cfg.notice_text}
    assert notice.tick() == 0  # not due yet
    clock.advance(601)
    assert notice.tick() == 2
    assert PrivacyNotice(display, PrivacyConfig(notice=False), ["lobby"], clock.monotonic
                         ).tick() == 0


def test_the_default_notice_names_the_alternative_and_the_runner_shows_it_for_face_doors(app):
    from gatectl.runtime.runner import Runner

    text = PrivacyConfig().notice_text
    assert "Face recognition is in use" in text and "card, PIN" in text
    runner = Runner(app)
    assert runner.notice.doors == ["door"]  # the default config's one face gate
    assert runner.notice.tick() == 0  # no display configured: nothing to show it on
