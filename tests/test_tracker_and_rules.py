"""Pure parts: track assignment, 2-of-3 confirmation, and the access rules with a fake clock."""

from __future__ import annotations

import numpy as np

from gatectl.domain.access import (
    REENROLL,
    AccountActive,
    decide_resident,
    make_entry_checks,
    resident_state,
)
from gatectl.domain.records import DAY_SECONDS, Resident, WatchEntry
from gatectl.gates.face.tracker import FaceTracker, Vote


def box(x, y, s=100):
    return np.array([x, y, x + s, y + s], np.float32)


def test_tracks_follow_moving_faces_and_expire():
    tr = FaceTracker(window=3, timeout_s=1.0)
    a, b = tr.update([box(0, 0), box(500, 0)], 0.0)
    assert a.id != b.id
    a2, b2 = tr.update([box(510, 5), box(10, 5)], 0.1)  # order swapped, both moved a little
    assert (a2.id, b2.id) == (b.id, a.id)
    [c] = tr.update([box(0, 0)], 2.0)  # both tracks timed out: a new pass
    assert c.id not in (a.id, b.id)


def test_confirmation_two_of_last_three():
    tr = FaceTracker(window=3)
    [t] = tr.update([box(0, 0)], 0)
    m = Vote("match", ("resident", 1), 0.7)
    t.votes.append(m)
    assert t.confirmed(2) is None
    t.votes.append(Vote("unknown", None, 0.1))
    assert t.confirmed(2) is None
    t.votes.append(Vote("match", ("resident", 1), 0.5))
    c = t.confirmed(2)
    assert c.key == ("match", ("resident", 1)) and abs(c.score - 0.6) < 1e-9
    # votes older than the window no longer count
    t.votes.append(Vote("unknown", None, 0.1))
    t.votes.append(Vote("match", ("resident", 2), 0.9))
    assert t.confirmed(2) is None


def resident(created=0.0, seen=None, reactivated=None, status="active"):
    return Resident(1, "u", "Li Lei", "3-2-1501", status, created, seen, reactivated)


def test_reenrollment_rule_counts_from_last_pass_or_reactivation():
    checks = make_entry_checks(["account_active"])
    day = DAY_SECONDS
    assert decide_resident(resident(), None, checks, 14.9 * day, 15).decision == "granted"
    v = decide_resident(resident(), None, checks, 15.1 * day, 15)
    assert (v.decision, v.reason) == ("denied", REENROLL)
    assert decide_resident(resident(seen=10 * day), None, checks, 24 * day, 15).decision == "granted"
    assert decide_resident(resident(seen=1 * day, reactivated=20 * day), None, checks, 30 * day, 15).decision == "granted"
    assert resident_state(resident(), 16 * day, 15) == REENROLL
    assert resident_state(resident(), 16 * day, 30) == "active"
    assert resident_state(resident(status="suspended"), 16 * day, 15) == "suspended"


def test_watchlist_beats_everything_and_checks_are_pluggable():
    w = WatchEntry(3, "w", "Li Lei", "police notice", 1, 0.0)
    v = decide_resident(resident(status="suspended"), w, [AccountActive()], 0, 15)
    assert (v.decision, v.kind, v.reason) == ("alert", "alert", "watchlist #3: police notice")

    class NightCurfew:
        name = "curfew"

        def check(self, r, now):
            return "curfew" if (now // 3600) % 24 < 5 else None

    v = decide_resident(resident(), None, [AccountActive(), NightCurfew()], 2 * 3600, 15)
    assert (v.decision, v.reason) == ("denied", "curfew")
    v = decide_resident(resident(status="suspended"), None, [AccountActive(), NightCurfew()], 12 * 3600, 15)
    assert (v.decision, v.reason) == ("denied", "account suspended")


def test_fused_confirmation_needs_enough_live_frames_and_spoofs_still_win():
    from gatectl.gates.face.tracker import confirm, fuse

    tr = FaceTracker(window=3)
    [t] = tr.update([box(0, 0)], 0)
    seen = []

    def ident(vec):
        seen.append(vec)
        return Vote("match", ("resident", 1), float(vec[0]))

    a, b = np.array([1.0, 0.0], np.float32), np.array([0.6, 0.8], np.float32)
    t.votes.append(Vote("live"))
    t.embeddings.append(a)
    assert confirm(t, 2, "fused", ident) is None and not seen  # one live frame is not enough
    t.votes.append(Vote("live"))
    t.embeddings.append(b)
    c = confirm(t, 2, "fused", ident)
    assert c.kind == "match" and np.allclose(seen[-1], fuse([a, b])) and np.isclose(np.linalg.norm(seen[-1]), 1)
    s = FaceTracker(window=3).update([box(0, 0)], 0)[0]
    s.votes.extend([Vote("spoof", None, 0.2), Vote("spoof", None, 0.3)])
    c = confirm(s, 2, "fused", ident)
    assert c.kind == "spoof" and np.isclose(c.score, 0.25)


def test_enrollment_keeps_the_best_templates_without_near_copies():
    from gatectl.people.directory import select_templates

    a, b, c = np.array([1.0, 0.0], np.float32), np.array([0.6, 0.8], np.float32), np.array([0.0, 1.0], np.float32)
    near_a = np.array([0.999, 0.045], np.float32)
    kept = select_templates([(a, 0.5), (near_a, 0.9), (b, 0.7), (c, 0.1)], keep=2)
    assert [q for _, q in kept] == [0.9, 0.7]  # best first; a is a near-copy of near_a
    assert [q for _, q in select_templates([(a, 0.5), (near_a, 0.9), (b, 0.7), (c, 0.1)], keep=5)] == [0.9, 0.7, 0.1]


def test_threshold_rises_with_the_gallery_to_hold_the_stranger_rate():
    import math

    from gatectl.domain.face_match import size_aware_threshold

    tail = (0.0, 0.12)
    th = [size_aware_threshold(0.40, n, 0.001, tail) for n in (1, 100, 1_000, 10_000)]
    assert th[0] == 0.40 and th == sorted(th) and th[-1] > 0.6
    p = 0.5 * math.erfc((th[-1] - tail[0]) / (tail[1] * math.sqrt(2)))  # per-identity chance at 10k
    assert math.isclose(1 - (1 - p) ** 10_000, 0.001, rel_tol=1e-3)
    assert size_aware_threshold(0.40, 10_000, 0.0, tail) == 0.40  # switched off
    assert size_aware_threshold(0.40, 10_000, 0.001, None) == 0.40  # no measured tail
