"""Tailgating on the door camera: the bundled COCO YOLOX-nano's person class on clips composed
from real photos of people (tests/tailgate_clips.py), a real store, a real door controller on a
simulated board and a fed clock. Alerts on every two-person pass on one grant, none on single
passes, none when the door closed in between, none for two people on two grants."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gatectl.analysis.tailgate import (
    DoorLine,
    PassCounter,
    PersonTracker,
    Sighting,
    crossings,
    foot,
    person_boxes,
)
from gatectl.config import parse_config
from gatectl.config.analysis import TailgateConfig
from gatectl.config.base import ConfigError
from gatectl.store.recorder import clip_of
from tests.tailgate_clips import (
    DETECTABLE,
    FACES,
    GROUPS,
    SITE,
    SITE_LINE,
    VIEWS,
    Rig,
    clips,
    group_clips,
    walk,
)

COCO = "yolox_nano"  # the bundled COCO detector: the person model before yolox_nano_person


def seen(*boxes: object) -> list[Sighting]:
    """Person boxes as the tracker is handed them."""
    return [Sighting(np.array(b, np.float32)) for b in boxes]


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.app.close()


def test_tailgates_alert_and_other_passes_do_not(rig):
    results = {c.name: (c.tailgate, rig.play(c)) for c in clips(DETECTABLE[:3])}
    missed = [n for n, (truth, a) in results.items() if truth and len(a) != 1]
    false = [n for n, (truth, a) in results.items() if not truth and a]
    assert missed == [] and false == []
    alerts = [e for e in rig.app.store.events(kind="alert") if e.reason.startswith("tailgating")]
    assert len(alerts) == 3
    assert {e.reason for e in alerts} == {"tailgating: 2 people crossed on 1 grant(s) at door door"}
    queued = {r[0] for r in rig.app.store.db.execute("SELECT ref FROM outbox WHERE kind = 'event'")}
    for e in alerts:
        assert e.id in queued and e.snapshot
        snap = rig.app.snapshot_dir / e.snapshot
        assert cv2.imread(str(snap)) is not None
        video = cv2.VideoCapture(str(rig.app.snapshot_dir / clip_of(e.snapshot)))
        n = 0
        while video.read()[0]:
            n += 1
        video.release()
        assert n >= 10  # 2 s before and after at 5 frames a second, bar the ends
    assert rig.watch.health()["alerts"] == 3


@pytest.mark.parametrize("view", ["side", "approach"])
def test_two_through_side_by_side_on_one_grant_is_a_tailgate(tmp_path, view):
    """The shared set's group photos (two people standing together) walked through the door
    as one: on one grant an alert, on two grants none."""
    rig = Rig(tmp_path, **VIEWS[view])
    try:
        got = {c.name: len(rig.play(c)) for c in group_clips(GROUPS, view)}
    finally:
        rig.app.close()
    assert got == {f"{kind}:{g}": int(kind == "together")
                   for g in GROUPS for kind in ("together", "together_two_grants")}


def test_a_follower_the_person_class_misses_is_seen_by_their_face(tmp_path):
    """person_12 (masked, a pale coat on a pale wall) scores under 0.1 as a COCO person even in
    her own CCTV frame; walking towards the door camera behind someone, her face is what shows
    she went in too. Without faces (as before) that tailgate is missed. (The COCO model here:
    the default person model finds her, see the next test.)"""
    named = {c.name: c for c in clips(["person_08", "person_12"], "approach")}
    rig = Rig(tmp_path / "faces", model=COCO, **VIEWS["approach"])
    try:
        alerts = {n: len(rig.play(named[n])) for n in
                  ("single:person_12", "tailgate:person_08+person_12",
                   "closed_between:person_08+person_12", "two_grants:person_08+person_12")}
    finally:
        rig.app.close()
    assert alerts == {"single:person_12": 0, "tailgate:person_08+person_12": 1,
                      "closed_between:person_08+person_12": 0,
                      "two_grants:person_08+person_12": 0}
    blind = Rig(tmp_path / "no_faces", model=COCO, faces=False, **VIEWS["approach"])
    try:
        assert blind.watch.faces is None
        assert blind.play(named["tailgate:person_08+person_12"]) == []
    finally:
        blind.app.close()


def test_the_default_person_model_sees_the_people_the_coco_class_misses(tmp_path):
    """yolox_nano_person (models/MANIFEST.md) finds person_12 (masked, pale on pale) and
    person_13 (the photo cuts off his head; a pot hides his legs), whom the COCO class misses in
    the side view at any size: their tailgates alert without faces, their single passes and the
    pass with the door closed in between do not."""
    want = {"single:person_13": 0, "tailgate:person_12+person_13": 1,
            "tailgate:person_13+person_00": 1, "closed_between:person_12+person_13": 0}
    named = {c.name: c for c in clips(["person_12", "person_13", "person_00"]) if c.name in want}
    rig = Rig(tmp_path / "person", faces=False)
    coco = Rig(tmp_path / "coco", model=COCO, faces=False)
    try:
        assert rig.watch.cfg.model == "yolox_nano_person"
        assert {n: len(rig.play(named[n])) for n in want} == want
        assert [len(coco.play(named[n])) for n in want if want[n]] == [0, 0]
    finally:
        rig.app.close()
        coco.app.close()


def test_the_detector_runs_only_while_the_door_is_unlocked_or_open(rig):
    [single] = [c for c in clips(DETECTABLE[:1]) if c.name.startswith("single")]
    start = rig.clock.t
    for step in single.steps:  # someone walks by a locked, closed door
        rig.clock.t = start + step.t
        rig.controls.poll()
        rig.watch.process(step.image, rig.clock.t)
    assert rig.watch.runs == 0
    rig.play(single)
    assert 0 < rig.watch.runs <= len(single.steps)


def test_the_detector_rate_is_bounded_by_its_fps(rig):
    steps = walk([(DETECTABLE[0], 250, 460, 0.2)], 0, 2.0, {})
    rig.controls.grant("door", None)
    rig.controls.poll()
    start = rig.clock.t
    for i in range(40):  # 20 frames a second for 2 s, at fps = 5
        rig.clock.t = start + i * 0.05
        rig.watch.process(steps[min(i // 4, len(steps) - 1)].image, rig.clock.t)
    assert rig.watch.runs == 10


def line() -> DoorLine:
    return DoorLine(TailgateConfig(door="d", camera="c", **SITE_LINE), 640, 480)


def test_door_line_sides_and_one_crossing_per_person():
    ln = line()
    assert ln.side(np.array([100, 400])) == -1 and ln.side(np.array([600, 400])) == 1
    assert ln.side(np.array([322, 400])) == 0  # within the dead band
    tracker = PersonTracker()
    counted = []
    for i, x in enumerate([200, 260, 330, 380, 300, 380, 440]):  # in, back out, in again
        tracks = tracker.update(seen([x - 50, 150, x + 50, 450]), i * 0.2)
        counted += crossings(tracks, ln)
    assert len(counted) == 1 and len(tracker.tracks) == 1


def test_the_one_behind_does_not_inherit_the_crossing_of_the_one_in_front():
    """Walking towards the camera: the first goes in and out of the frame under it, large; the
    second, farther off and smaller, shows where the first just was."""
    ln = DoorLine(TailgateConfig(door="d", camera="c", **VIEWS["approach"]), 640, 480)
    tracker = PersonTracker()
    frames = [[[250, 140, 330, 380]], [[240, 140, 340, 430]],  # the first crosses (y 408)
              [[300, 130, 360, 300]],  # gone under the camera; the second, 170 px high
              [[296, 130, 368, 360]], [[290, 128, 376, 440]]]  # the second crosses
    counted = []
    for i, boxes in enumerate(frames):
        counted += crossings(tracker.update(seen(*boxes), i * 0.2),
                             ln)
    assert [tr.id for tr in counted] == [1, 2]


def test_feet_that_jump_across_the_line_in_one_frame_are_no_crossing():
    """A detector's one-frame box that stretches someone down past the line (seen: the box of one
    far off reaching the feet of the one in front) moves their feet further than anyone walks in
    a frame: not a crossing. When they really cross later, they count once."""
    ln = DoorLine(TailgateConfig(door="d", camera="c", **VIEWS["approach"]), 640, 480)
    tracker = PersonTracker()
    frames = [[252, 137, 306, 273], [251, 139, 303, 277],
              [239, 128, 323, 473],  # one frame: feet 196 px lower, past the line (y 408)
              [246, 131, 316, 300], [245, 132, 316, 308]]
    frames += [[244 - 4 * i, 133, 321 + 4 * i, 324 + 16 * i] for i in range(1, 10)]  # walks in
    counted, first = [], None
    for i, b in enumerate(frames):
        got = crossings(tracker.update(seen(b), i * 0.2), ln)
        counted += got
        if got and first is None:
            first = i
    assert len(counted) == 1 and first is not None and frames[first][3] > 408


def test_a_face_seen_without_its_box_puts_the_feet_where_that_persons_own_were():
    """Seen on a head-and-shoulders photo: the person box ends at the chest, some 4 faces under
    the brow (3.6 here); on the frames the box was missed, the face taken as an average adult's
    (7 faces to the feet) stood them past the line (y 408) they had not reached - one person,
    two crossings, a single pass taken for a tailgate. The track's own measure places them."""
    ln = DoorLine(TailgateConfig(door="d", camera="c", **VIEWS["approach"]), 640, 480)
    tracker = PersonTracker()
    box = np.array([234, 141, 307, 272], np.float32)
    face = np.array([258, 149, 292, 183], np.float32)
    [s] = person_boxes([(box, 0.9)], [face])
    counted = crossings(tracker.update([s], 0.0), ln)
    assert tracker.tracks[0].feet_per_face == pytest.approx(123 / 34)
    for i in range(1, 4):  # the box missed: the face alone, nearing
        f = face + np.array([-2 * i, 2 * i, 2 * i, 10 * i], np.float32)
        [s] = person_boxes([], [f])
        assert foot(s.box)[1] > 420  # as anyone: past the line
        counted += crossings(tracker.update([s], i * 0.2), ln)
    assert counted == [] and tracker.tracks[0].box[3] < 400 and len(tracker.tracks) == 1
    for i in range(4, 12):  # boxes again, and the chest does cross
        b = box + np.array([-6 * i, 5 * i, 6 * i, 25 * i], np.float32)
        counted += crossings(tracker.update(seen(b), i * 0.2), ln)
    assert len(counted) == 1


def test_one_hidden_behind_another_while_going_through_is_still_counted():
    ln = DoorLine(TailgateConfig(door="d", camera="c", **VIEWS["approach"]), 640, 480)
    tracker = PersonTracker(hidden_s=TailgateConfig(door="d", camera="c").hidden_s)
    counted = crossings(tracker.update(seen([330, 150, 390, 300]), 0.0), ln)
    for i in range(1, 11):  # hidden for 2 s behind the one in front (not tracked here)
        counted += crossings(tracker.update([], i * 0.2), ln)
    counted += crossings(tracker.update(seen([300, 140, 420, 450]), 2.2), ln)
    assert len(counted) == 1 and counted[0].id == 1
    gone = PersonTracker(hidden_s=3.0)  # but one counted already, or inside, is not waited for
    gone.update(seen([300, 140, 420, 450]), 0.0)
    gone.tracks[0].side = 1
    assert gone.update([], 2.0) == [] and gone.tracks == []


def test_a_face_outside_every_person_box_is_a_person_standing_under_it():
    body = np.array([100, 100, 200, 400], np.float32)
    own = np.array([135, 110, 165, 145], np.float32)  # the head of that body
    cut = np.array([135, 80, 165, 115], np.float32)  # a box cut at the brow: still its head
    other = np.array([300, 120, 330, 160], np.float32)  # someone the person class missed
    low = np.array([135, 300, 165, 340], np.float32)  # within the width, but at the knees
    # a box cut at the shoulder: the head beside it, its centre 5 px out (seen: that face's
    # body then carried a track left by a spurious box over the line, a closed door's second
    # pass taken for a tailgate)
    edge = np.array([190, 110, 220, 150], np.float32)
    got = person_boxes([(body, 0.9)], [own, cut, other, low, edge])
    assert [s.face_only for s in got] == [False, True, True] and np.array_equal(got[0].box, body)
    assert np.array_equal(got[0].face, own)  # its own face, measured with it
    f = foot(got[1].box)
    assert f[0] == 315 and 120 + 40 * 6 < f[1] < 120 + 40 * 8  # under the face, some 7 faces down
    assert person_boxes([], []) == []


def test_a_box_inside_a_taller_one_is_part_of_that_person_not_another():
    """The detector gives one walker two boxes at times - the whole body and the upper body, or
    a leg - each of which would cross the line: one person is then two crossings and a single
    pass a tailgate (seen on people cut from the held-aside photos)."""
    body = np.array([295, 200, 380, 463], np.float32)
    upper = np.array([305, 206, 357, 314], np.float32)
    leg = np.array([335, 370, 354, 458], np.float32)
    beside = np.array([340, 210, 430, 470], np.float32)  # someone half behind them: a person
    assert [s.box.tolist() for s in person_boxes([(upper, 1), (body, 1), (leg, 1)], [])] == [
        body.tolist()]
    assert len(person_boxes([(body, 1), (beside, 1)], [])) == 2
    # a box 0.6 inside with its feet where the walker's are: their side (seen: a weak one,
    # tracked over the line as a third person on two grants); as far inside but standing
    # higher in the frame: someone behind them
    side = np.array([350, 230, 400, 458], np.float32)
    behind = np.array([350, 190, 400, 400], np.float32)
    assert [s.box.tolist() for s in person_boxes([(body, 1), (side, 0.4)], [])] == [body.tolist()]
    assert len(person_boxes([(body, 1), (behind, 0.4)], [])) == 2
    ln = line()
    tracker, counted = PersonTracker(), []
    for i, x in enumerate(range(200, 480, 40)):  # walking in with both boxes on every frame
        shift = np.array([x - 300, 0, x - 300, 0], np.float32)
        counted += crossings(tracker.update(person_boxes([(body + shift, 1), (leg + shift, 1)], []),
                                            i * 0.2), ln)
    assert len(counted) == 1


def test_a_weak_box_carries_someone_followed_but_starts_no_one():
    ln = line()
    tracker, counted = PersonTracker(), []
    walker = [np.array([x - 50, 150, x + 50, 450], np.float32) for x in (200, 260, 330, 380, 440)]
    ghost = [np.array([x - 40, 200, x + 40, 440], np.float32) for x in (250, 300, 360, 420, 470)]
    for i, (w, g) in enumerate(zip(walker, ghost)):
        # the walker's box is weak after the first frame; the ghost's (between people) always
        counted += crossings(tracker.update([Sighting(w, starts=i == 0), Sighting(g, starts=False)],
                                            i * 0.2), ln)
    assert len(counted) == 1 and len(tracker.tracks) == 1
    everyone = PersonTracker()
    counted = []
    for i, (w, g) in enumerate(zip(walker, ghost)):
        counted += crossings(everyone.update([Sighting(w), Sighting(g)], i * 0.2), ln)
    assert len(counted) == 2  # without the rule the ghost is a second person through the door


def test_the_watch_starts_people_only_from_boxes_over_its_start_threshold(tmp_path):
    """person_12 and person_13 score 0.5 and under as people: a start threshold over that
    follows neither, so their tailgate goes unseen (what a site trades for fewer false ones)."""
    clip = next(c for c in clips(["person_12", "person_13", "person_00"])
                if c.name == "tailgate:person_12+person_13")
    strict = Rig(tmp_path / "strict", faces=False, start_threshold=0.9)
    try:
        assert strict.play(clip) == []
    finally:
        strict.app.close()
    usual = Rig(tmp_path / "usual", faces=False)
    try:
        assert usual.watch.cfg.start_threshold is None and len(usual.play(clip)) == 1
    finally:
        usual.app.close()


def test_pass_counter_rules():
    c = PassCounter(grace_s=3)
    c.door(0, "locked", 0)
    assert not c.watching(0) and not c.crossing(0)
    c.door(1, "unlocked", 1)
    c.door(2, "open", 1)
    assert c.crossing(2) is None and c.crossing(3) is not None  # two through on one grant
    assert c.crossing(3.5) is None  # alerted once a pass
    c.door(4, "locked", 1)  # closed (and relocked): a new pass on the same grants
    c.door(4.5, "open", 1)  # opened again within the grace
    assert not c.crossing(5)
    c.door(20, "locked", 1)  # long after: the grants are spent
    assert not c.watching(20) and not c.crossing(20)
    c.door(30, "unlocked", 1)  # the exit button opens without a grant: nobody counted
    assert c.watching(30) and c.granted == 0 and not c.crossing(30)


def test_someone_first_seen_inside_while_the_leaf_is_shut_went_through_before_it_shut():
    """At 5 frames a second the detector can miss a walker from before the line until the door
    has closed behind them (seen: a blue-tinted doorbell photo's walker, first seen inside after
    the close): they went through on the pass that ended, and the next one, through the door
    opened again, is no tailgater on the same grant."""
    c = PassCounter(grace_s=3)
    c.door(0, "unlocked", 1)
    c.door(0.5, "open", 1)
    c.door(2, "unlocked", 1)  # the leaf shut behind the first one, unseen so far
    assert c.crossing(2.2) is None  # seen inside now: the pass that just ended
    c.door(3, "open", 1)  # opened again (the door's own door_forced alert is another rule's)
    assert c.crossing(3.5) is None and c.tally.crossed == 1
    c.door(10, "locked", 1)
    c.door(20, "unlocked", 2)  # another pass: one let in, two through, the second seen late
    c.door(20.5, "open", 2)
    assert c.crossing(21) is None
    c.door(22, "unlocked", 2)
    tailgated = c.crossing(22.2)
    assert tailgated is not None and tailgated.crossed == 2 and c.crossing(22.4) is None


@pytest.mark.parametrize("change, line_", [
    ({"camera": "nope"}, "analysis.tailgate[0].camera: unknown camera 'nope'"),
    ({"door": "nope"}, "analysis.tailgate[0].door: unknown door 'nope'"),
    ({"inside_x": 0.5}, "analysis.tailgate[0]: the inside point lies on the door line"),
    ({"start_threshold": 0.3}, ("analysis.tailgate[0]: start_threshold 0.3 is under threshold "
                                "0.35: a box it drops cannot start anyone")),
])
def test_tailgate_config_mistakes_are_one_line(change, line_):
    site = {**SITE, "analysis": {"tailgate": [{**SITE["analysis"]["tailgate"][0], **change}]}}
    with pytest.raises(ConfigError) as exc:
        parse_config(site)
    assert exc.value.lines == [line_]


def test_a_clip_is_kept_and_deleted_with_its_snapshot(tmp_path):
    from gatectl.store import Store
    from gatectl.store.recorder import EventRecorder

    store = Store(tmp_path / "g.db")
    rec = EventRecorder(store, tmp_path / "snaps")
    try:
        ev = rec.record("door", "alert", "alert", "tailgating: t", np.zeros((40, 40, 3), np.uint8))
        clip = tmp_path / "snaps" / clip_of(ev.snapshot)
        clip.write_bytes(b"RIFF")
        orphan = clip.with_name("01ORPHANORPHANORPHANORPHAN.clip.avi")  # its event never stored
        orphan.write_bytes(b"RIFF")
        assert rec.sweep_orphans(older_than=4e9) == 1
        assert clip.exists() and not orphan.exists()
        rec.delete_files([clip_of(ev.snapshot).with_name(clip.name.replace(".clip.avi", ".jpg"))])
        assert not clip.exists() and not (tmp_path / "snaps" / ev.snapshot).exists()
    finally:
        store.close()


def test_without_a_door_contact_a_pass_is_the_unlock_and_its_grace():
    c = PassCounter(grace_s=3)
    c.door(0, "locked", 0)
    for i in range(1, 51):  # a frame every 0.1 s while the door is unlocked
        c.door(i / 10, "unlocked", 1)
    assert not c.crossing(5.0)
    c.door(5.1, "locked", 1)  # the pulse ended; no contact to say the door closed
    assert c.crossing(7.0)  # still within the grace: the second person is a tailgate
    c.door(9.0, "locked", 1)
    assert not c.watching(9.0)


def test_a_counter_whose_first_reading_is_mid_pass_counts_that_pass_s_grants():
    """A watch starts reading the door when its camera's first frame reaches it: after a daemon
    (re)start a card or a remote command may have unlocked the door before that. The grants of
    the pass in progress count; grants whose pass ended before the first reading do not."""
    c = PassCounter(grace_s=3)
    c.door(0, "unlocked", 1)  # the first reading: granted before the camera's first frame
    assert c.granted == 1 and not c.crossing(0.5) and c.crossing(1.0)
    c.door(1.5, "open", 1)  # the same grant, read again: not counted twice
    assert c.granted == 1
    late = PassCounter(grace_s=3)
    late.door(0, "locked", 3)  # three passes over before the first reading: nobody to count
    assert not late.watching(0) and late.granted == 0
    late.door(10, "unlocked", 4)  # the next pass has its one grant, not four
    assert late.granted == 1 and not late.crossing(11) and late.crossing(12)


def test_a_watch_whose_first_frame_comes_after_the_grant_still_alerts(tmp_path):
    """The daemon's order: the door is granted (a card) before the camera's first frame reaches
    the watch; the follower on that one grant is a tailgate all the same."""
    rig = Rig(tmp_path)
    try:
        tailgate = next(c for c in clips(DETECTABLE[:2]) if c.tailgate)
        assert tailgate.steps[0].door == ["grant"]  # granted just before the first frame
        assert len(rig.play(tailgate)) == 1
    finally:
        rig.app.close()


class CountingSession:
    """The real YuNet onnxruntime session, its runs counted (each run is one YuNet pass)."""

    def __init__(self, inner):
        self.inner = inner
        self.runs = 0

    def run(self, *args, **kwargs):
        self.runs += 1
        return self.inner.run(*args, **kwargs)


def test_faces_a_detector_keeps_for_others_are_what_their_own_run_finds(tmp_path):
    """A face gate's YuNet (threshold 0.8) keeping its faces down to 0.3: a watch at 0.5 takes
    exactly the faces its own run gives - here two faces the gate itself does not take (0.72,
    0.78) and not the third (0.33) - and nothing from another frame or input scale."""
    from gatectl.config.analysis import MIN_FACE_THRESHOLD
    from gatectl.vision.face.detect import FaceDetector
    from gatectl.vision.models import ModelStore

    models = ModelStore()
    gate = FaceDetector(models, 640, 0.8, share_from=MIN_FACE_THRESHOLD)
    watch = FaceDetector(models, 640, 0.5)
    clip = next(c for c in clips(["person_08", "person_12"], "approach") if c.tailgate)
    image = clip.steps[11].image
    assert gate.detect(image) == [] and gate.shared is not None
    assert len(gate.shared.faces) == 3 and min(f.score for f in gate.shared.faces) < 0.5
    own = watch.detect(image)
    reused = watch.reuse(gate.shared, image)
    assert reused is not None and len(own) == 2
    assert [(f.box.tolist(), f.score) for f in reused] == [(f.box.tolist(), f.score) for f in own]
    assert watch.reuse(gate.shared, image.copy()) is None  # another frame (compared by identity)
    assert FaceDetector(models, 320, 0.5).reuse(gate.shared, image) is None  # another scale
    assert FaceDetector(models, 640, 0.2).reuse(gate.shared, image) is None  # below its floor
    assert FaceDetector(models, 640, 0.5).reuse(None, image) is None
    group = cv2.imread(str(FACES / "multi_rose_kit.jpg"))  # the gate's own faces: unchanged
    alone = [(f.box.tolist(), f.score) for f in FaceDetector(models, 640, 0.8).detect(group)]
    assert len(alone) == 2
    assert [(f.box.tolist(), f.score) for f in gate.detect(group)] == alone


def test_on_a_face_gates_camera_yunet_runs_once_a_frame_and_the_alerts_are_the_same(tmp_path):
    """The tailgate watch rides on the worker of the face gate on its camera: the worker hands
    it the faces the gate found in the same frame, and the watch runs no YuNet of its own.
    person_12's tailgate is found by her face alone, so the faces handed over must be the ones
    the watch's own run finds (the gate's own threshold, 0.8, would drop them)."""
    clip = next(c for c in clips(["person_08", "person_12"], "approach") if c.tailgate)
    own = Rig(tmp_path / "own", **VIEWS["approach"])
    try:
        yunet = own.watch.faces.session = CountingSession(own.watch.faces.session)
        assert len(own.play(clip)) == 1
        assert yunet.runs == own.watch.runs > 0 and own.watch.faces_reused == 0
    finally:
        own.app.close()
    rig = Rig(tmp_path / "shared", **VIEWS["approach"])
    try:
        worker = rig.through_gate()
        yunet = CountingSession(rig.watch.faces.session)
        worker.gate.analyzer.detector.session = rig.watch.faces.session = yunet
        rig.play(clip)
        assert yunet.runs == worker.gate.frames  # one YuNet run per frame, the gate's
        assert rig.watch.runs == own.watch.runs and rig.watch.faces_reused == rig.watch.runs
        assert rig.watch.alerts == 1
    finally:
        rig.app.close()
