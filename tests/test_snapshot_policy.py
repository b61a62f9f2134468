"""Which snapshots leave the device, and what they show, through the real Mosquitto
(tests/broker.py) to the reference centre: only the event kinds `[sync] snapshot_kinds` names
(default alerts and denials), and with `blur_others` every face but the subject's blurred."""

from __future__ import annotations

import cv2
import numpy as np

from gatectl.sources.media import read_image
from gatectl.vision.face.detect import FaceDetector
from tests.conftest import FACES, wait_for
from tests.test_sync import Device, central, sync_cfg  # noqa: F401 - central is a fixture

GATE = {"cameras": [{"name": "cam", "source": "0"}], "outputs": [{"name": "door"}],
        "doors": [{"name": "door", "output": "door"}],
        "gates": [{"kind": "face", "name": "lobby", "camera": "cam", "door": "door"}]}


def frame() -> np.ndarray:
    return np.full((120, 160, 3), 90, np.uint8)


def test_only_alerts_and_denials_are_uploaded_by_default(tmp_path, broker, central):
    dev = Device(tmp_path / "d", sync_cfg(broker, "dev-s"))
    try:
        rec = dev.app.recorder
        granted = rec.record("lobby", "access", "granted", "resident", frame(), resident_id=None)
        denied = rec.record("lobby", "access", "denied", "unknown face", frame())
        alert = rec.record("lobby", "alert", "alert", "watchlist #1", frame())
        control = rec.record("lobby", "control", None, "door.open", frame())
        wait_for(lambda: {denied.id, alert.id} <= set(central.snapshots), 30, "the two snapshots")
        wait_for(lambda: {granted.id, control.id, denied.id, alert.id} <= set(central.events), 30,
                 "all four events")
        assert granted.id not in central.snapshots and control.id not in central.snapshots
        assert all(e.snapshot for e in (granted, denied, alert, control))  # all kept locally
        wait_for(lambda: dev.app.store.outbox_stats()["pending"] == 0, 30, "every row confirmed")
        assert granted.id not in central.snapshots  # nothing was waiting to send it
    finally:
        dev.close()


def test_granted_snapshots_go_when_configured(tmp_path, broker, central):
    dev = Device(tmp_path / "d", sync_cfg(broker, "dev-g", snapshot_kinds=["granted"]))
    try:
        granted = dev.app.recorder.record("lobby", "access", "granted", "resident", frame())
        denied = dev.app.recorder.record("lobby", "access", "denied", "unknown face", frame())
        wait_for(lambda: granted.id in central.snapshots, 30, "the granted snapshot")
        wait_for(lambda: denied.id in central.events, 30, "the denial's event")
        assert denied.id not in central.snapshots
    finally:
        dev.close()


def two_faces() -> np.ndarray:
    """A door frame: the subject large in front, a bystander small behind."""
    canvas = np.full((720, 1280, 3), 120, np.uint8)
    subject = cv2.resize(read_image(FACES / "obama_01.jpg"), (560, 640))
    canvas[40:680, 100:660] = subject
    bystander = cv2.resize(read_image(FACES / "biden_01.jpg"), (280, 320))
    canvas[200:520, 900:1180] = bystander
    return canvas


def test_blur_others_leaves_only_the_subjects_face_in_the_upload(tmp_path, broker, central):
    cfg = sync_cfg(broker, "dev-b", blur_others=True) | GATE
    dev = Device(tmp_path / "d", cfg)
    try:
        image = two_faces()
        detector = FaceDetector(dev.app.models, 960, 0.5)
        assert len(detector.detect(image)) == 2  # the test frame really shows two faces
        ev = dev.app.recorder.record("lobby", "access", "denied", "unknown face", image)
        plate = dev.app.recorder.record("lane", "alert", "alert", "plate on watchlist", image)
        wait_for(lambda: {ev.id, plate.id} <= set(central.snapshots), 60, "the uploads")
        up = cv2.imdecode(np.frombuffer(central.snapshots[ev.id], np.uint8), cv2.IMREAD_COLOR)
        faces = detector.detect(up)
        assert len(faces) == 1 and faces[0].box[2] < 700  # the subject's, on the left
        stored = read_image(dev.app.snapshot_dir / ev.snapshot)
        assert len(detector.detect(stored)) == 2  # the device's own copy is unchanged
        [bystander] = [f for f in detector.detect(stored) if f.box[0] > 700]
        x1, y1, x2, y2 = bystander.box.astype(int)

        def detail(img: np.ndarray) -> float:
            return float(cv2.Laplacian(cv2.cvtColor(img[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY),
                                       cv2.CV_64F).var())

        assert detail(up) < detail(stored) / 20  # the bystander's face is a smear
        # not a face gate's event: no subject, every face blurred
        other = cv2.imdecode(np.frombuffer(central.snapshots[plate.id], np.uint8),
                             cv2.IMREAD_COLOR)
        assert detector.detect(other) == []
    finally:
        dev.close()
