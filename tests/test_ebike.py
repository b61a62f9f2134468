"""Elevator e-bike gate on the repo's real elevator CCTV frames, with the shipped detector:
what it finds, that people-only images never hold a car, the car region, confirmation, the hold
through the elevator state machine, and replay. The shipped yolox_nano_ebike (YOLOX-nano fine-tuned
by scripts/train_detector.py; the COCO original found only pic_1 and pic_4) still misses the
covered mopeds of two frames; those are strict xfails, so a better model makes them fail loudly
until the expectations are raised."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from gatectl.runtime.app import App, simulated_boards
from gatectl.config import parse_config
from gatectl.sources.media import read_image
from gatectl.core.paths import bundled_models_dir
from gatectl.vision.models import ModelError, ModelStore
from gatectl.vision.objects import open_detector
from tests.conftest import DATA, FACES, run_cli

EBIKE = DATA / "ebike"
MODELS = bundled_models_dir()
FOUND = ["paddle_elevator_det_test.jpg", "paddle_elevator_pic_1.png", "paddle_elevator_pic_4.png", "we0091234_moto.png"]
MISSED = ["paddle_elevator_pic_2.png", "paddle_elevator_pic_3.png"]  # quilt / basket + handlebar muff


def site(**gate) -> dict:
    return {"outputs": [{"name": "hold", "channel": 0, "max_on_s": 5}, {"name": "buzzer", "channel": 1}],
            "inputs": [{"name": "fire", "index": 7, "role": "fire_alarm"}],
            "elevators": [{"name": "car_a", "hold_output": "hold", "alarm_output": "buzzer"}],
            "cameras": [{"name": "car", "source": str(EBIKE), "kind": "images"}],
            "gates": [{"kind": "ebike", "name": "cam", "camera": "car", "elevator": "car_a", **gate}]}


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def rig(tmp_path):
    def make(**gate):
        cfg = parse_config(site(**gate))
        clock = Clock()
        boards = simulated_boards(cfg)
        boards["main"].clock = clock
        app = App(cfg, tmp_path, boards=boards, clock=clock)
        app.controls.clock = clock
        return app, app.gate(cfg.gates[0]), boards["main"], clock
    return make


@pytest.mark.parametrize("file", FOUND)
def test_ebikes_found(rig, file):
    _, gate, _, _ = rig()
    dets = gate.find(read_image(EBIKE / file))
    assert dets and dets[0].label == "motorcycle"


@pytest.mark.parametrize("file", MISSED)
@pytest.mark.xfail(strict=True, reason="yolox_nano_ebike scores these covered e-mopeds 0.07 (MANIFEST)")
def test_ebikes_the_shipped_model_misses(rig, file):
    _, gate, _, _ = rig()
    assert gate.find(read_image(EBIKE / file))


def test_no_detection_on_people_only_images(rig):
    _, gate, _, _ = rig()
    for photo in sorted(FACES.glob("*.jp*g")) + sorted(FACES.glob("*.png")):
        assert gate.find(read_image(photo)) == [], photo.name


def test_bicycles_count_only_where_they_are_not_allowed(rig):
    _, allowed, _, _ = rig()
    _, banned, _, _ = rig(bicycles_allowed=False)
    image = read_image(EBIKE / "yolox_dog_bicycle.jpg")
    assert allowed.find(image) == []
    assert {d.label for d in banned.find(image)} == {"bicycle"}


def test_car_region_ignores_the_landing(rig):
    image = read_image(EBIKE / "paddle_elevator_pic_1.png")  # moped at the lower middle of the car
    _, right_half, _, _ = rig(car_region=[(0.65, 0.0), (1.0, 0.0), (1.0, 1.0), (0.65, 1.0)])
    _, left_part, _, _ = rig(car_region=[(0.0, 0.0), (0.65, 0.0), (0.65, 1.0), (0.0, 1.0)])
    assert right_half.find(image) == []
    assert left_part.find(image)


def test_confirmed_ebike_holds_the_car_and_release_after_absence(rig):
    app, gate, relay, clock = rig()
    moped = read_image(EBIKE / "paddle_elevator_pic_1.png")
    people = read_image(FACES / "obama_01.jpg")
    assert gate.process(moped, 0.0) == [] and gate.process(people, 0.2) == []  # 1 of 3: not yet
    assert not relay.is_on(0)
    decided = gate.process(moped, 0.4) + gate.process(moped, 0.6)
    assert [d.decision for d in decided] == ["ebike"]
    assert relay.is_on(0) and relay.is_on(1)  # doors held, alarm sounding
    assert all(p.seconds == 3 for p in relay.history if p.channel == 0)  # pulses, never a latch
    alert, started = app.store.events()[-2:]
    assert (alert.kind, alert.reason.split(" ")[0], alert.reason.endswith("in the car")) == ("alert", "ebike_in_car:", True)
    assert alert.snapshot and started.reason.startswith("hold_started: motorcycle")
    assert [a["text"] for a in app.store.announcements()][0].startswith("电动车禁止进入电梯")
    for i in range(5):  # the e-bike is wheeled out
        clock.t += 1.0
        gate.process(people, 1.0 + i)
        app.controls.poll()
    clock.t += 1.0
    app.controls.poll()
    assert not relay.is_on(0)
    assert app.store.events()[-1].reason.startswith("hold_ended: e-bike gone")


def test_fire_alarm_prevents_the_hold(rig):
    app, gate, relay, clock = rig()
    app.controls.poll()
    relay.set_input(7, True)
    app.controls.poll()
    moped = read_image(EBIKE / "paddle_elevator_pic_1.png")
    for i in range(4):
        gate.process(moped, i * 0.2)
    assert not relay.is_on(0)


def car_config(tmp_path, detector: str = ""):
    """A config file for `gatectl` runs: one car camera on the test frames, its e-bike gate."""
    cfg = tmp_path / "car.toml"
    cfg.write_text(f"""
[[cameras]]
name = "car"
source = "{EBIKE}"

[[outputs]]
name = "hold"

[[elevators]]
name = "car_a"
hold_output = "hold"

[[gates]]
kind = "ebike"
name = "cam"
camera = "car"
elevator = "car_a"
{detector}""")
    return cfg


def test_replay_prints_ebike_decisions(tmp_path):
    cfg = car_config(tmp_path)
    r = run_cli("replay", "--json", str(EBIKE / "paddle_elevator_pic_1.png"), str(FACES / "obama_01.jpg"),
                config=cfg, data=tmp_path / "s")
    assert r.returncode == 0, r.stderr
    out = [json.loads(l) for l in r.stdout.splitlines()]
    assert [(o["source"].split("/")[-1], o["decision"]) for o in out] == [("paddle_elevator_pic_1.png", "ebike"),
                                                                           ("obama_01.jpg", "clear")]


@pytest.fixture(scope="module")
def yolov8_model(tmp_path_factory):
    from tests.yolov8_layout import build

    return build(MODELS / "yolox_nano" / "yolox_nano.onnx", tmp_path_factory.mktemp("v8") / "v8.onnx")


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


@pytest.mark.parametrize("file", ["we0091234_moto.png", "yolox_dog_bicycle.jpg"])
def test_yolov8_family_decodes_what_yolox_finds(yolov8_model, file):
    """Same weights in the two layouts (tests/yolov8_layout.py): each family's pre/post-processing
    must give the same objects; a wrong channel order, scale, letterbox offset or axis fails."""
    classes = {"bicycle": 1, "motorcycle": 3}
    models = ModelStore()
    yolox = open_detector(models.session("yolox_nano"), "yolox", 416, classes, 0.3, 1, "detector")
    v8 = open_detector(models.session_for_file(yolov8_model), "yolov8", 416, classes, 0.3, 1, "detector")
    image = read_image(EBIKE / file)
    # A square input fills the canvas in both letterboxes: the two must agree exactly.
    square = cv2.resize(image, (416, 416))
    a, b = yolox.detect(square), v8.detect(square)
    assert a and len(a) == len(b)
    for x, y in zip(a, b):
        assert x.label == y.label and abs(x.score - y.score) < 1e-3 and np.abs(x.box - y.box).max() < 0.5, (x, y)
    # The real frame: the letterboxes differ (top-left vs centred), the main object must not.
    x, y = yolox.detect(image)[0], v8.detect(image)[0]
    assert x.label == y.label and abs(x.score - y.score) < 0.1 and iou(x.box, y.box) > 0.8, (x, y)


def test_site_model_of_the_yolov8_family_through_the_gate(rig, yolov8_model):
    _, gate, _, _ = rig(detector={"file": str(yolov8_model), "family": "yolov8"})
    dets = gate.find(read_image(EBIKE / "paddle_elevator_pic_1.png"))
    assert dets and dets[0].label == "motorcycle"
    assert gate.find(read_image(FACES / "obama_01.jpg")) == []


@pytest.mark.parametrize("detector, message", [
    ({"classes": {"motorcycle": 80}, "ebike_classes": ["motorcycle"]},
     "gates[0].detector.classes {'motorcycle': 80}: the model has classes 0..79"),
    ({"input_size": 640}, "gates[0].detector.input_size = 640, but the model takes 416x416 images"),
    ({"family": "yolov8", "file": "YOLOX"},
     "gates[0].detector.family = 'yolov8' expects an output [1, 4 + C, A], but the model gives [1, 3549, 85]"),
])
def test_a_model_that_does_not_fit_its_config_fails_at_start_with_one_line(rig, detector, message):
    if detector.get("file") == "YOLOX":
        detector["file"] = str(MODELS / "yolox_nano" / "yolox_nano.onnx")
    with pytest.raises(ModelError) as exc:
        rig(detector=detector)
    assert str(exc.value) == message


def test_a_family_that_does_not_fit_a_registry_model_fails_at_start_with_one_line(rig):
    # family is the layout of whatever model is selected (a site-installed yolov8 one too), so a
    # bundled yolox model read as yolov8 is refused when the gate is built, not at the first frame
    with pytest.raises(ModelError) as exc:
        rig(detector={"family": "yolov8"})
    assert str(exc.value) == ("gates[0].detector.family = 'yolov8' expects an output [1, 4 + C, A], "
                              "but the model gives [1, 3549, 85]")


def test_doctor_reports_a_detector_that_does_not_fit_its_config(tmp_path):
    r = run_cli("doctor", "--camera-timeout", "1", config=car_config(tmp_path, "[gates.detector]\ninput_size = 640"),
                data=tmp_path / "s")
    assert r.returncode == 1
    assert "[FAIL] gate cam (ebike): gates[0].detector.input_size = 640, but the model takes 416x416 images" \
        in r.stdout.splitlines()
    r = run_cli("doctor", "--camera-timeout", "1", config=car_config(tmp_path, "[gates.detector]\ninput_size = 416"),
                data=tmp_path / "s")
    assert r.returncode == 0, r.stdout
    assert "[ok] gate cam (ebike): pipeline ready" in r.stdout.splitlines()
