"""Liveness on real camera frames of every common aspect and face size (issue 13, issue 20).

The frames are cut from the project's real photos (tests/data/faces: genuine people;
tests/data/liveness: the MiniFASNet authors' printed-photo and screen-replay attacks and their
real face) at 16:9, 4:3, 1:1 and 3:4, the face at several positions and sizes, and run through
the analyzer a gate uses with the real models.
"""

from __future__ import annotations

import csv

import pytest

from gatectl.domain.access import SPOOF, TOO_CLOSE
from gatectl.gates.face.tracker import Track, Vote
from gatectl.people.enroll import EnrollmentError, Sample
from gatectl.sources.media import read_image
from gatectl.vision.face.liveness import (
    MARGIN_CONTEXT,
    MARGIN_P_REAL,
    MIN_CONTEXT,
    context_coverage,
)
from scripts.eval_liveness import ASPECTS, camera_framings
from tests.conftest import FACES, LIVENESS, enroll, wait_for


def samples() -> list[tuple[str, bool]]:
    """(path, genuine) for every single-face photo and every liveness sample."""
    with open(FACES / "ground_truth.csv", newline="") as f:
        out = [(str(FACES / r["file"]), True) for r in csv.DictReader(f) if r["n_faces"] == "1"]
    with open(LIVENESS / "ground_truth.csv", newline="") as f:
        out += [(str(LIVENESS / r["file"]), r["label"] == "real") for r in csv.DictReader(f)]
    return out


@pytest.fixture(scope="module")
def framed(tmp_path_factory):
    """(photo, aspect, variant, genuine, frame height, face box, observation) for every framing."""
    from gatectl.config import default_config
    from gatectl.runtime.app import App

    app = App(default_config(), tmp_path_factory.mktemp("framing"))
    gate = app.cfg.gates[0]
    analyzer = app.analyzer(gate.quality, gate.thresholds.detect, gate.detect_long_side, True,
                            gate.thresholds.liveness)
    rows = []
    for path, genuine in samples():
        img = read_image(path)
        [face] = analyzer.detector.detect(img)
        for aspect, variant, frame in camera_framings(img, face.box):
            observations = analyzer.analyze(frame)
            if not observations:
                continue
            obs = max(observations, key=lambda o: o.face.width * o.face.height)
            rows.append((path.rsplit("/", 1)[1], aspect, variant, genuine, frame.shape[:2], obs))
    yield analyzer, rows
    app.close()


def test_framings_cover_every_aspect_and_face_size(framed):
    _, rows = framed
    assert {r[1] for r in rows} == set(ASPECTS)
    for aspect in ASPECTS:
        genuine = [r for r in rows if r[1] == aspect and r[3]]
        attacks = [r for r in rows if r[1] == aspect and not r[3]]
        assert len(genuine) >= 15 and attacks, aspect
    assert len({r[2] for r in rows}) >= 20


def test_genuine_faces_pass_at_every_aspect_or_are_asked_to_step_back(framed):
    """Never refused as a spoof: a real face with its surroundings in the frame passes; one so
    near that the frame cannot show them is 'too close' (the gate asks to step back)."""
    analyzer, rows = framed
    refused = [(r[0], r[1], r[2], round(r[5].p_real, 3)) for r in rows
               if r[3] and not r[5].too_close and not analyzer.is_live(r[5])]
    assert refused == []
    decided = [r for r in rows if r[3] and not r[5].too_close]
    for aspect in ASPECTS:
        assert sum(r[1] == aspect for r in decided) >= 4, aspect


def test_only_faces_filling_the_frame_are_too_close(framed):
    """A face whose box is under half the frame height and clear of the side edges has room
    around it: it is decided, whatever the aspect."""
    _, rows = framed
    roomy = []
    for r in rows:
        (h, w), box = r[4], r[5].face.box
        cx = (box[0] + box[2]) / 2
        if (box[3] - box[1]) < 0.5 * h and 0.3 * w <= cx <= 0.7 * w and (box[2] - box[0]) < 0.5 * w:
            roomy.append(r)
    assert len(roomy) >= 30
    assert [(r[0], r[1], r[2]) for r in roomy if r[5].too_close] == []


def test_the_issue_13_frames_are_decided_where_the_frame_shows_enough(framed):
    """obama_02 at 16:9 and 4:3 and biden_02 at 4:3, each the widest frame of that aspect
    centred on the face, were refused as spoofs (p_real 0.04-0.16 on main). biden_02's face
    fills 70% of its 4:3 frame (context coverage 0.53, the margin band): it passes on a confident
    score. obama_02's fills 87% and 95% (coverage 0.43 and 0.39): no crop strategy kept tightly
    framed prints out at that size (models/MANIFEST.md), so the person is asked to step back
    rather than refused; the wider framings pass."""
    analyzer, rows = framed
    by_key = {(r[0], r[1], r[2]): r[5] for r in rows}
    obs = by_key[("biden_02.jpg", "4:3", "widest")]
    assert not obs.too_close and analyzer.is_live(obs), obs.p_real
    for aspect in ("16:9", "4:3"):
        assert by_key[("obama_02.jpg", aspect, "widest")].too_close, aspect
    for photo in ("obama_02.jpg", "biden_02.jpg"):
        for aspect in ("1:1", "3:4"):
            obs = by_key[(photo, aspect, "widest")]
            assert not obs.too_close and analyzer.is_live(obs), (photo, aspect, obs.p_real)


def test_faces_in_the_margin_band_are_passed_when_confident_and_never_called_spoofs(framed):
    """Between MARGIN_CONTEXT and MIN_CONTEXT of context coverage only a confident score
    decides: real faces there get a verdict (all were 'too close' before), an attack never
    passes, and a doubtful score asks to step back instead of calling anyone a spoof."""
    analyzer, rows = framed
    band = [r for r in rows if MARGIN_CONTEXT <= context_coverage(r[5].face.box, r[4]) < MIN_CONTEXT
            and r[5].quality.ok]
    genuine, attacks = [r for r in band if r[3]], [r for r in band if not r[3]]
    assert len(genuine) >= 20 and attacks
    passed = [r for r in genuine if not r[5].too_close and analyzer.is_live(r[5])]
    assert len(passed) >= len(genuine) // 2
    assert all(r[5].p_real >= MARGIN_P_REAL for r in passed)
    assert [r for r in band if not r[5].too_close and not analyzer.is_live(r[5])] == []
    accepted = [(r[0], r[1], r[2]) for r in attacks
                if analyzer.is_live(r[5]) and not r[5].too_close]
    assert accepted == []


def test_attacks_stay_refused_at_every_aspect(framed):
    analyzer, rows = framed
    attacks = [r for r in rows if not r[3]]
    accepted = [(r[0], r[1], r[2], round(r[5].p_real, 3)) for r in attacks if analyzer.is_live(r[5])]
    assert len(attacks) >= 30
    assert accepted == []


def test_a_photo_cropped_to_the_face_is_refused_at_enrollment_with_what_to_do(app):
    img = read_image(LIVENESS / "image_T1.jpg")
    faces = app.enrollment_analyzer().detector.detect(img)
    x1, y1, x2, y2 = (int(v) for v in faces[0].box)
    with pytest.raises(EnrollmentError, match="^T1 face: face too close"):
        app.enroller().enroll_resident("x", "1", [Sample("T1 face", img[y1:y2, x1:x2])])


def pass_frames(gate, image, t0, frames=3):
    out = []
    for i in range(frames):
        out += gate.process(image, t0 + i * 0.1)
    return out


def test_a_resident_refused_for_liveness_is_told_why_can_retry_and_is_counted(app, relay):
    enroll(app, "Obama", "obama_01.jpg")
    gate = app.gate(app.cfg.gates[0])
    img = read_image(FACES / "obama_02.jpg")
    [face] = gate.analyzer.detector.detect(img)
    [close_up] = [f for a, v, f in camera_framings(img, face.box) if (a, v) == ("16:9", "widest")]
    [d] = pass_frames(gate, close_up, 0.0)
    assert (d.decision, d.reason, d.resident) == ("denied", TOO_CLOSE.reason, None)
    assert gate.liveness_refused == 1
    # the next pass (the person stepped back) is decided on its own: no lock-out
    [d] = pass_frames(gate, img, 10.0)
    assert (d.decision, d.resident) == ("granted", "Obama")
    [d] = pass_frames(gate, read_image(LIVENESS / "image_F2.jpg"), 20.0)
    assert (d.decision, d.reason) == ("denied", SPOOF.reason)
    assert gate.liveness_refused == 2
    assert [e.reason for e in app.store.events()].count(TOO_CLOSE.reason) == 1
    assert len(relay.history) == 1


def test_a_liveness_refusal_can_be_upgraded_within_the_same_pass(app, relay):
    """A face first refused (too close, or a blurred first frame) and then seen live in the
    same track is granted: the refusal does not end the pass."""
    [resident] = [enroll(app, "Obama", "obama_01.jpg")]
    gate = app.gate(app.cfg.gates[0].model_copy(update={"fusion": "votes"}))  # per-frame votes, fed below
    img = read_image(FACES / "obama_02.jpg")
    track = Track(1, img[:1, :1], 0.0, gate.cfg.confirm_window)
    owner = ("resident", resident.id)
    track.votes.extend([Vote("too_close"), Vote("too_close")])
    d = gate._decide(track, img, 0.0)
    assert (d.decision, d.reason) == ("denied", TOO_CLOSE.reason)
    assert gate._decide(track, img, 0.1) is None  # one event per refusal, not one per frame
    track.votes.extend([Vote("spoof", None, 0.1)] * 2)
    d = gate._decide(track, img, 0.15)
    assert (d.decision, d.reason) == ("denied", SPOOF.reason)
    track.votes.extend([Vote("too_close")] * 2)
    assert gate._decide(track, img, 0.17) is None  # wavering: no second event for the same reason
    track.votes.extend([Vote("match", owner, 0.8), Vote("match", owner, 0.8)])
    d = gate._decide(track, img, 0.2)
    assert (d.decision, d.resident) == ("granted", "Obama")
    track.votes.extend([Vote("spoof", None, 0.1)] * 3)
    assert gate._decide(track, img, 0.3) is None  # a granted pass is over


def test_liveness_refusals_reach_the_health_report_of_a_real_run(tmp_path):
    """`Runner.health()` (the status topic's `health`) counts the passes each face gate refused
    for liveness: a screen replay shown to a real running gate raises it."""
    import shutil
    import threading

    from gatectl.config import default_config
    from gatectl.config.hardware import CameraConfig
    from gatectl.runtime.app import App
    from gatectl.runtime.runner import Runner

    frames = tmp_path / "camera"
    frames.mkdir()
    shutil.copy(LIVENESS / "image_F2.jpg", frames / "f.jpg")  # the authors' screen-replay attack
    camera = CameraConfig(name="cam0", source=str(frames), loop=True, fps=10)
    cfg = default_config().model_copy(update={"cameras": [camera]})
    app = App(cfg, tmp_path / "state")
    runner = Runner(app)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: runner.workers, timeout=120, what="the gate to start")
        wait_for(lambda: runner.health()["liveness_refused"].get("gate", 0) >= 1, timeout=120,
                 what="a liveness refusal in the health report", step=0.05)
        events = wait_for(lambda: app.store.events(kind="access"), timeout=30,
                          what="the refusal event")
        assert {(e.decision, e.reason) for e in events} == {("denied", SPOOF.reason)}
    finally:
        runner.stop.set()
        thread.join(timeout=30)
        app.close()


def test_the_evaluation_reports_every_aspect_attack_kind_and_coverage_band(framed):
    """eval_liveness (and eval_face --liveness) splits the framings by aspect and attack kind
    and by coverage band, and every decided frame lands in exactly one band."""
    from scripts.eval_liveness import COVERAGE_BANDS, evaluate

    analyzer, _ = framed
    r = evaluate(analyzer.detector, analyzer.liveness, analyzer.liveness_threshold, LIVENESS,
                 framings=True)
    assert set(r["per_attack_kind"]) == {"bona fide", "print", "replay"}
    f = r["framings"]
    assert set(f["per_aspect"]) == set(ASPECTS)
    assert all({"bona fide", "print", "replay"} <= set(kinds) for kinds in f["per_aspect"].values())
    assert set(f["per_coverage"]) <= {f"{lo:.2f}-{min(hi, 1.0):.2f}" for lo, hi in COVERAGE_BANDS}
    per_band = [t for kinds in f["per_coverage"].values() for t in kinds.values()]
    framed_samples = f["bona_fide"]["samples"] + f["attacks"]["samples"]
    assert sum(t["samples"] for t in per_band) == framed_samples
    assert f["attacks"]["accepted"] == 0 and f["bona_fide"]["samples"] >= 10


def test_a_resident_filling_most_of_a_4_3_frame_is_granted(app, relay):
    """biden_02 in the widest 4:3 frame (face 70% of its height) was asked to step back; with a
    confident liveness score in the margin band the gate grants the resident at that distance."""
    enroll(app, "Biden", "biden_01.jpg")
    gate = app.gate(app.cfg.gates[0])
    img = read_image(FACES / "biden_02.jpg")
    [face] = gate.analyzer.detector.detect(img)
    [frame] = [f for a, v, f in camera_framings(img, face.box) if (a, v) == ("4:3", "widest")]
    [d] = pass_frames(gate, frame, 0.0)
    assert (d.decision, d.resident) == ("granted", "Biden")
    assert gate.liveness_refused == 0 and len(relay.history) == 1
